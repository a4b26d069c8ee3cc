//! `autofs-restart check`: is this host ready for CRIU to run us at its restores? One line an
//! item, read off the host as it is: CRIU's configuration files and what they name, the
//! installed CRIU and runtimes and whether that CRIU runs the scripts of those files for them,
//! the kernel (autofs, the mount API, statmount, how blocked processes are released), our
//! privileges, and the settings in force with where each came from. It changes nothing: the
//! one probe that mounts (the wait counter, before Linux 6.6) mounts nowhere.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::container::{PROGRAM_PATH, resolve_in};
use crate::error::{Context, Error, Result};
use crate::model::kernel;
use crate::model::readiness::{self, CRIU_CONFS, CRUN_CONF, Item, RPC_SCRIPTS, Verdict};
use crate::settings::{Api, Seen};
use crate::show::{Shown, json_string};
use crate::sys::fork::{self, Exec, Forked};
use crate::work::{self, tokens};

// The exit status when the host is not ready, as `status`'s when something needs a look.
use crate::error::NEEDS_A_LOOK as NOT_READY;

pub fn run(version: &str, settings: std::result::Result<Vec<Seen>, Error>, json: bool) -> Result<u8> {
    let exe = std::fs::read_link("/proc/self/exe").context("reading /proc/self/exe")?;
    let me = std::fs::metadata("/proc/self/exe").context("reading /proc/self/exe")?;
    let exe = exe.display().to_string();
    let mut items = vec![Item::ok("this binary", format!("{exe}, {version}"))];
    let found = Found::look();
    let (confs, scripted) = criu_confs(&exe, (me.dev(), me.ino()), found.old_criu_under_runtimes());
    items.extend(confs);
    items.extend(criu_and_runtimes(&found, &scripted));
    items.extend(kernel_items());
    items.push(match crate::container::privileged() {
        Ok(()) => Item::ok("privileges", "CAP_SYS_ADMIN, CAP_SYS_PTRACE"),
        Err(e) => {
            Item::note("privileges", e.to_string()).todo("CRIU runs it as root; run check as root for the whole answer")
        }
    });
    match settings {
        Ok(seen) => items.extend(
            seen.into_iter().map(|s| Item::ok(format!("setting {}", s.key), format!("{} ({})", s.value, s.from))),
        ),
        Err(e) => items.push(Item::fail("settings", e.to_string(), "fix that line or variable: every run stops on it")),
    }
    let out = if json { readiness::json(&items, json_string) } else { readiness::text(&items) };
    std::io::stdout().lock().write_all(out.as_bytes()).context("writing the check")?;
    Ok(if readiness::ready(&items) { 0 } else { NOT_READY })
}

/// The installed CRIU and the runtimes that drive it, as found on PATH.
struct Found {
    runtimes: Vec<&'static str>,
    criu: Option<std::path::PathBuf>,
    /// What `criu --version` says, if it says a version.
    version: Option<(u32, u32, u32)>,
}

impl Found {
    fn look() -> Found {
        let runtimes = ["runc", "crun", "podman"].into_iter().filter(|r| find(r).is_some()).collect();
        let criu = find("criu");
        let said = criu.as_deref().and_then(|c| output_of(c, &[b"--version"], Duration::from_secs(5)));
        let version = said.as_deref().and_then(readiness::criu_version);
        Found { runtimes, criu, version }
    }

    /// Whether a runtime here drives a CRIU that runs no script of its configuration files
    /// over RPC, and stops every checkpoint where one of them names an action script.
    fn old_criu_under_runtimes(&self) -> bool {
        self.version.is_some_and(|v| !readiness::at_least(v, RPC_SCRIPTS)) && !self.runtimes.is_empty()
    }
}

/// What each CRIU configuration file names, and whether any names an autofs-restart CRIU can
/// run; `exe` is this binary, `me` its device and inode; `old_criu`: as
/// `Found::old_criu_under_runtimes`. Also the files that name an action script, whoever's.
fn criu_confs(exe: &str, me: (u64, u64), old_criu: bool) -> (Vec<Item>, Vec<&'static str>) {
    let mut items = Vec::new();
    let mut scripted = Vec::new();
    let mut named = false;
    for (conf, readers) in CRIU_CONFS {
        let what = format!("{conf} ({readers})");
        let text = match std::fs::read(conf) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                items.push(Item::note(what, "absent"));
                continue;
            }
            Err(e) => {
                items.push(Item::fail(what, format!("unreadable: {e}"), "make it readable by root"));
                continue;
            }
        };
        let scripts = readiness::action_scripts(&text);
        if scripts.is_empty() {
            items.push(Item::note(what.clone(), "names no action script"));
        } else {
            scripted.push(conf);
        }
        for script in scripts {
            let item = script_item(&what, &script, me);
            named |= item.verdict == Verdict::Ok;
            items.push(item);
        }
    }
    if !named {
        let (major, minor) = RPC_SCRIPTS;
        let first = if old_criu {
            format!("install CRIU {major}.{minor} or later first (below), then ")
        } else {
            String::new()
        };
        let todo = format!("{first}put `action-script {exe}` in /etc/criu/default.conf");
        items.push(Item::fail("CRIU's configuration", "no file names an autofs-restart: CRIU will not run it", todo));
    }
    (items, scripted)
}

/// One `action-script` of a configuration file: this binary, another autofs-restart, CRIU's
/// old script, or a script of someone else's.
fn script_item(what: &str, script: &[u8], me: (u64, u64)) -> Item {
    let shown = Shown(script).to_string();
    let name = script.rsplit(|&b| b == b'/').next().unwrap_or_default();
    match std::fs::metadata(std::ffi::OsStr::from_bytes(script)) {
        Ok(m) if (m.dev(), m.ino()) == me => Item::ok(what, format!("runs {shown}: this binary")),
        Ok(m) if !m.is_file() || m.mode() & 0o111 == 0 => Item::fail(
            what,
            format!("names {shown}, which is not an executable file"),
            "chmod 755 it, or name the installed binary",
        ),
        Ok(_) if name.starts_with(b"autofs-restart") => {
            Item::ok(what, format!("runs {shown}: an autofs-restart, not this one"))
                .todo("`autofs-restart --version` there says which")
        }
        Ok(_) if name == b"systemd-autofs-restart.sh" => Item::fail(
            what,
            format!("runs {shown}: CRIU's old script, not autofs-restart"),
            "make install-compat puts autofs-restart under that name (MANUAL.md: Coming from systemd-autofs-restart.sh)",
        ),
        Ok(_) => Item::note(what, format!("runs {shown}: another action script")),
        Err(e) => Item::fail(what, format!("names {shown}: {e}"), "name the installed binary"),
    }
}

/// The installed CRIU, its version, and the runtimes that drive it: whether it runs the
/// scripts of its configuration files for them; `scripted`, the files that name one.
fn criu_and_runtimes(found: &Found, scripted: &[&str]) -> Vec<Item> {
    let runtimes = &found.runtimes;
    let mut items =
        vec![Item::ok("runtimes", if runtimes.is_empty() { "none".to_string() } else { runtimes.join(", ") })];
    let Some(criu) = &found.criu else {
        items.push(Item::fail("criu", "not installed", "install criu"));
        return items;
    };
    let shown = criu.display().to_string();
    let Some(version) = found.version else {
        items.push(Item::fail("criu", format!("{shown} --version says no version"), "check that criu runs"));
        return items;
    };
    let v = format!("{}.{}.{}", version.0, version.1, version.2);
    // Every runtime drives CRIU over RPC; crun passes crun.conf only from CRIU 4.2.
    let (major, minor) = RPC_SCRIPTS;
    let read_under_rpc: Vec<&str> = scripted.iter().copied().filter(|c| !c.ends_with("/crun.conf")).collect();
    let old_criu = found.old_criu_under_runtimes();
    items.push(if old_criu && !read_under_rpc.is_empty() {
        Item::fail(
            "criu",
            format!(
                "{v} ({shown}): fails every checkpoint by {} while {} names an action script (CRIU's \
                 \"BUG at criu/action-scripts.c\": shell scripts and RPC at once; CRIU {major}.{minor} runs them)",
                runtimes.join(", "),
                read_under_rpc.join(" and ")
            ),
            format!(
                "install CRIU {major}.{minor} or later (Debian 13 has 4.1); until then take action-script out of \
                 those files, and name autofs-restart on criu's command line (--action-script) where criu is run by hand"
            ),
        )
    } else if old_criu {
        Item::fail(
            "criu",
            format!(
                "{v} ({shown}): runs no script of its configuration files under {} (CRIU {major}.{minor} does)",
                runtimes.join(", ")
            ),
            format!(
                "install CRIU {major}.{minor} or later (Debian 13 has 4.1); until then name autofs-restart only on \
                 criu's command line (--action-script): in a configuration file it would stop every checkpoint by {}",
                runtimes.join(", ")
            ),
        )
    } else {
        Item::ok("criu", format!("{v} ({shown})"))
    });
    if runtimes.contains(&"crun") && !readiness::at_least(version, CRUN_CONF) {
        let (major, minor) = CRUN_CONF;
        items.push(
            Item::note("crun", format!("passes /etc/criu/crun.conf with CRIU {major}.{minor} or later only"))
                .todo("name the script in /etc/criu/default.conf"),
        );
    }
    items
}

/// The kernel: autofs, and the interfaces whose absence the tool falls back from.
fn kernel_items() -> Vec<Item> {
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    let filesystems = std::fs::read("/proc/filesystems").unwrap_or_default();
    let built_in = filesystems.split(|&b| b == b'\n').any(|l| l.ends_with(b"\tautofs"));
    let module = std::path::Path::new(&format!("/lib/modules/{release}/kernel/fs/autofs")).is_dir();
    let kernel = format!("kernel {release}");
    let mut items = vec![match (built_in, module) {
        (true, _) => Item::ok(kernel, "autofs"),
        (false, true) => Item::ok(kernel, "autofs as a module, loaded at the first autofs mount"),
        (false, false) => Item::fail(
            kernel,
            "no autofs: no container here has an autofs mount to fix",
            "use a kernel with CONFIG_AUTOFS_FS",
        ),
    }];
    let open_tree = rustix::mount::open_tree(rustix::fs::CWD, "/", rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC);
    items.push(match open_tree {
        Ok(_) => Item::ok("mount API", "open_tree, move_mount"),
        Err(_) => Item::note("mount API", "no open_tree: trees move the legacy way (bind, MS_MOVE)"),
    });
    items.push(match crate::sys::statmount::list_mounts() {
        Ok(_) => Item::ok("mount tables", "listmount, statmount: only the mounts needed are read"),
        Err(_) => Item::note("mount tables", "no listmount or statmount (Linux 6.8): the whole mountinfo is read"),
    });
    let blocked = "processes blocked on a restored mount";
    items.push(if work::running_at_least(kernel::WAKES_FROM_CATATONIC) || !tokens::needed(Api::New) {
        Item::ok(blocked, "catatonic mode wakes them (Linux 6.6 and later)")
    } else {
        match tokens::next() {
            Ok(_) => Item::ok(blocked, "answered one by one by token: the wait counter reads"),
            Err(e) => Item::note(
                blocked,
                format!("by token, but the wait counter does not read ({e}): only the last 65536 waits are tried"),
            ),
        }
    });
    items
}

/// `program` in PATH, then in the system directories a user's PATH may lack (those the
/// container's programs are looked for in), as an executable file.
fn find(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let ours = std::env::var_os("PATH").unwrap_or_default();
    let path = [ours.as_bytes(), b":", PROGRAM_PATH.as_bytes()].concat();
    resolve_in(&path, program.as_bytes()).map(|p| std::ffi::OsString::from_vec(p).into())
}

/// What `program args` writes to stdout and stderr (at most 64 KiB), or None if it could not
/// run or took longer than `timeout` (then it is killed).
fn output_of(program: &std::path::Path, args: &[&[u8]], timeout: Duration) -> Option<Vec<u8>> {
    let path = program.as_os_str().as_bytes();
    let argv: Vec<&[u8]> = [path].into_iter().chain(args.iter().copied()).collect();
    let exec = Exec::new(path, &argv, &[b"PATH=/usr/sbin:/usr/bin:/sbin:/bin", b"LANG=C"])?;
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
    let (pid, pidfd) = match fork::fork().ok()? {
        Forked::Parent(pid, pidfd) => (pid, pidfd),
        // Only system calls until exec or exit (sys::fork's rule).
        Forked::Child => {
            let _ = rustix::stdio::dup2_stdout(&write).and_then(|()| rustix::stdio::dup2_stderr(&write));
            let _ = fork::default_signals();
            exec.exec();
            fork::exit(127)
        }
    };
    drop(write);
    let said = read_until(read, Instant::now() + timeout);
    if said.is_none() {
        let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
    }
    let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
    said
}

/// Everything until end of file, unless `deadline` comes first.
fn read_until(fd: OwnedFd, deadline: Instant) -> Option<Vec<u8>> {
    let mut file = std::fs::File::from(fd);
    let mut said = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let fd = file.as_fd();
        let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        if rustix::event::poll(&mut fds, Some(&crate::container::pidfd::timespec(left))).ok()? == 0 {
            return None;
        }
        match file.read(&mut chunk).ok()? {
            0 => return Some(said),
            n if said.len() < 1 << 16 => said.extend_from_slice(&chunk[..n]),
            _ => {}
        }
    }
}
