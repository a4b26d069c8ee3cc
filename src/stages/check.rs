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

use crate::error::{Context, Error, Result};
use crate::model::kernel;
use crate::model::readiness::{self, CRIU_CONFS, CRUN_CONF, Item, RPC_SCRIPTS, Verdict};
use crate::settings::{Api, Seen};
use crate::show::{Shown, json_string};
use crate::sys::fork::{self, Exec, Forked};
use crate::work::{self, tokens};

/// Exit status when the host is not ready (as `status` when something needs a look).
use crate::error::NEEDS_A_LOOK as NOT_READY;

/// Where programs are looked for: PATH, and the system directories a user's PATH may lack.
const SYSTEM_DIRS: [&str; 4] = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"];

pub fn run(version: &str, settings: std::result::Result<Vec<Seen>, Error>, json: bool) -> Result<u8> {
    let mut items = vec![];
    let exe = std::fs::read_link("/proc/self/exe").context("reading /proc/self/exe")?;
    let me = std::fs::metadata("/proc/self/exe").context("reading /proc/self/exe")?;
    let exe_shown = exe.display().to_string();
    items.push(Item {
        verdict: Verdict::Ok,
        what: "this binary".into(),
        found: format!("{exe_shown}, {version}"),
        todo: None,
    });
    items.extend(criu_confs(&exe_shown, (me.dev(), me.ino())));
    items.extend(criu_and_runtimes());
    items.extend(kernel_items());
    items.push(match crate::container::privileged() {
        Ok(()) => Item {
            verdict: Verdict::Ok,
            what: "privileges".into(),
            found: "CAP_SYS_ADMIN, CAP_SYS_PTRACE".into(),
            todo: None,
        },
        Err(e) => Item {
            verdict: Verdict::Note,
            what: "privileges".into(),
            found: e.to_string(),
            todo: Some("CRIU runs it as root; run check as root for the whole answer".into()),
        },
    });
    match settings {
        Ok(seen) => items.extend(seen.into_iter().map(|s| Item {
            verdict: Verdict::Ok,
            what: format!("setting {}", s.key),
            found: format!("{} ({})", s.value, s.from),
            todo: None,
        })),
        Err(e) => items.push(Item {
            verdict: Verdict::Fail,
            what: "settings".into(),
            found: e.to_string(),
            todo: Some("fix that line or variable: every run stops on it".into()),
        }),
    }
    let out = if json { readiness::json(&items, json_string) } else { readiness::text(&items) };
    std::io::stdout().lock().write_all(out.as_bytes()).context("writing the check")?;
    Ok(if readiness::ready(&items) { 0 } else { NOT_READY })
}

/// What each CRIU configuration file names, and whether any names an autofs-restart CRIU can
/// run; `exe` is this binary, `me` its device and inode.
fn criu_confs(exe: &str, me: (u64, u64)) -> Vec<Item> {
    let mut items = Vec::new();
    let mut named = false;
    for (conf, readers) in CRIU_CONFS {
        let what = format!("{conf} ({readers})");
        let text = match std::fs::read(conf) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                items.push(Item { verdict: Verdict::Note, what, found: "absent".into(), todo: None });
                continue;
            }
            Err(e) => {
                let todo = Some("make it readable by root".to_string());
                items.push(Item { verdict: Verdict::Fail, what, found: format!("unreadable: {e}"), todo });
                continue;
            }
        };
        let scripts = readiness::action_scripts(&text);
        if scripts.is_empty() {
            items.push(Item {
                verdict: Verdict::Note,
                what: what.clone(),
                found: "names no action script".into(),
                todo: None,
            });
        }
        for script in scripts {
            let item = script_item(&what, &script, me);
            named |= item.verdict == Verdict::Ok;
            items.push(item);
        }
    }
    if !named {
        items.push(Item {
            verdict: Verdict::Fail,
            what: "CRIU's configuration".into(),
            found: "no file names an autofs-restart: CRIU will not run it".into(),
            todo: Some(format!("put `action-script {exe}` in /etc/criu/default.conf")),
        });
    }
    items
}

/// One `action-script` of a configuration file: this binary, another autofs-restart, CRIU's
/// old script, or a script of someone else's.
fn script_item(what: &str, script: &[u8], me: (u64, u64)) -> Item {
    let shown = Shown(script).to_string();
    let path = std::ffi::OsStr::from_bytes(script);
    let name = script.rsplit(|&b| b == b'/').next().unwrap_or_default();
    let item = |verdict, found: String, todo: Option<&str>| Item {
        verdict,
        what: what.to_string(),
        found,
        todo: todo.map(String::from),
    };
    match std::fs::metadata(path) {
        Ok(m) if (m.dev(), m.ino()) == me => item(Verdict::Ok, format!("runs {shown}: this binary"), None),
        Ok(m) if !m.is_file() || m.mode() & 0o111 == 0 => item(
            Verdict::Fail,
            format!("names {shown}, which is not an executable file"),
            Some("chmod 755 it, or name the installed binary"),
        ),
        Ok(_) if name.starts_with(b"autofs-restart") => item(
            Verdict::Ok,
            format!("runs {shown}: an autofs-restart, not this one"),
            Some("`autofs-restart --version` there says which"),
        ),
        Ok(_) if name == b"systemd-autofs-restart.sh" => item(
            Verdict::Fail,
            format!("runs {shown}: CRIU's old script, not autofs-restart"),
            Some(
                "make install-compat puts autofs-restart under that name (MANUAL.md: Coming from systemd-autofs-restart.sh)",
            ),
        ),
        Ok(_) => item(Verdict::Note, format!("runs {shown}: another action script"), None),
        Err(e) => item(Verdict::Fail, format!("names {shown}: {e}"), Some("name the installed binary")),
    }
}

/// The installed CRIU, its version, and the runtimes that drive it: whether it runs the
/// scripts of its configuration files for them.
fn criu_and_runtimes() -> Vec<Item> {
    let runtimes: Vec<&str> = ["runc", "crun", "podman"].into_iter().filter(|r| find(r).is_some()).collect();
    let shown_runtimes = if runtimes.is_empty() { "none".to_string() } else { runtimes.join(", ") };
    let mut items = vec![Item { verdict: Verdict::Ok, what: "runtimes".into(), found: shown_runtimes, todo: None }];
    let Some(criu) = find("criu") else {
        items.push(Item {
            verdict: Verdict::Fail,
            what: "criu".into(),
            found: "not installed".into(),
            todo: Some("install criu".into()),
        });
        return items;
    };
    let shown = criu.display().to_string();
    let said = output_of(&criu, &[b"--version"], Duration::from_secs(5));
    let Some(version) = said.as_deref().and_then(readiness::criu_version) else {
        items.push(Item {
            verdict: Verdict::Fail,
            what: "criu".into(),
            found: format!("{shown} --version says no version"),
            todo: Some("check that criu runs".into()),
        });
        return items;
    };
    let v = format!("{}.{}.{}", version.0, version.1, version.2);
    let rpc = runtimes.iter().any(|r| *r == "runc" || *r == "podman" || *r == "crun");
    items.push(if rpc && !readiness::at_least(version, RPC_SCRIPTS) {
        Item {
            verdict: Verdict::Fail,
            what: "criu".into(),
            found: format!(
                "{v} ({shown}): runs no script of its configuration files under {} (CRIU {}.{} does)",
                runtimes.join(", "),
                RPC_SCRIPTS.0,
                RPC_SCRIPTS.1
            ),
            todo: Some(format!(
                "install CRIU {}.{} or later (Debian 13 has 4.1); `criu restore` by hand still runs it",
                RPC_SCRIPTS.0, RPC_SCRIPTS.1
            )),
        }
    } else {
        Item { verdict: Verdict::Ok, what: "criu".into(), found: format!("{v} ({shown})"), todo: None }
    });
    if runtimes.contains(&"crun") && !readiness::at_least(version, CRUN_CONF) {
        items.push(Item {
            verdict: Verdict::Note,
            what: "crun".into(),
            found: format!("passes /etc/criu/crun.conf with CRIU {}.{} or later only", CRUN_CONF.0, CRUN_CONF.1),
            todo: Some("name the script in /etc/criu/default.conf".into()),
        });
    }
    items
}

/// The kernel: autofs, and the interfaces whose absence the tool falls back from.
fn kernel_items() -> Vec<Item> {
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    let filesystems = std::fs::read("/proc/filesystems").unwrap_or_default();
    let built_in = filesystems.split(|&b| b == b'\n').any(|l| l.ends_with(b"\tautofs"));
    let module = std::path::Path::new(&format!("/lib/modules/{release}/kernel/fs/autofs")).is_dir();
    let mut items = vec![match (built_in, module) {
        (true, _) => {
            Item { verdict: Verdict::Ok, what: format!("kernel {release}"), found: "autofs".into(), todo: None }
        }
        (false, true) => Item {
            verdict: Verdict::Ok,
            what: format!("kernel {release}"),
            found: "autofs as a module, loaded at the first autofs mount".into(),
            todo: None,
        },
        (false, false) => Item {
            verdict: Verdict::Fail,
            what: format!("kernel {release}"),
            found: "no autofs: no container here has an autofs mount to fix".into(),
            todo: Some("use a kernel with CONFIG_AUTOFS_FS".into()),
        },
    }];
    let yes_or = |ok: bool, yes: &str, no: &str| {
        if ok { (Verdict::Ok, yes.to_string()) } else { (Verdict::Note, no.to_string()) }
    };
    let open_tree = rustix::mount::open_tree(rustix::fs::CWD, "/", rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC);
    let (verdict, found) =
        yes_or(open_tree.is_ok(), "open_tree, move_mount", "no open_tree: trees move the legacy way (bind, MS_MOVE)");
    items.push(Item { verdict, what: "mount API".into(), found, todo: None });
    let listed = crate::sys::statmount::list_mounts();
    let (verdict, found) = yes_or(
        listed.is_ok(),
        "listmount, statmount: only the mounts needed are read",
        "no listmount or statmount (Linux 6.8): the whole mountinfo is read",
    );
    items.push(Item { verdict, what: "mount tables".into(), found, todo: None });
    let (verdict, found) = if work::running_at_least(kernel::WAKES_FROM_CATATONIC) {
        (Verdict::Ok, "catatonic mode wakes them (Linux 6.6 and later)".to_string())
    } else {
        match tokens::needed(Api::New).then(tokens::next) {
            Some(Ok(_)) => (Verdict::Ok, "answered one by one by token: the wait counter reads".to_string()),
            Some(Err(e)) => (
                Verdict::Note,
                format!("by token, but the wait counter does not read ({e}): only the last 65536 waits are tried"),
            ),
            None => (Verdict::Ok, "catatonic mode wakes them".to_string()),
        }
    };
    items.push(Item { verdict, what: "processes blocked on a restored mount".into(), found, todo: None });
    items
}

/// `program` in PATH or the system directories, as an executable file.
fn find(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(SYSTEM_DIRS.iter().map(std::path::PathBuf::from));
    dirs.map(|d| d.join(program)).find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
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
