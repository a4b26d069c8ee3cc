//! The holder: from pre-resume to post-resume, a descriptor on each restored autofs superblock
//! with a master, opened while the restored tasks are still frozen (so no request can be
//! pending, and no walk waits). After a unit's restart, its old superblock is made catatonic
//! through that descriptor (for the automount daemon: between the old one's death and the new
//! one's start): every process that blocked on it meanwhile wakes (ENOENT), in every namespace
//! that has a copy of it, with no path walk, which would wait.
//!
//! The pre-resume run starts it (this binary, `--internal-hold PIN`) from the host's side, so
//! it lives in no namespace of the container but its mount namespace, where it opens the
//! mounts. It holds nothing else, never blocks, and ends when the init dies, when its
//! descriptors are taken over (the post-resume run takes them with `pidfd_getfd`, then ends
//! it), or after `BOUND`. Its pin on the host (`layout::hold`) says its pid and start time,
//! the first token a wait on the held superblocks can have where they are to be released by
//! token (`tokens`), and what each descriptor is; the post-resume run trusts a pid only with
//! that start time.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdGetfdFlags, Signal, pidfd_getfd, pidfd_send_signal};

use crate::container::{Host, Init, pidfd};
use crate::error::{Context, Error, Result};
use crate::model::layout::{self, DIR};
use crate::model::mountinfo::{Dev, escape, unescape};
use crate::model::procfs;
use crate::show::Shown;
use crate::work::autofsdev::Control;

/// The hidden argument that makes this program the holder.
pub const HOLD_ARG: &str = "--internal-hold";

/// How long the holder lives at most: post-resume follows pre-resume within seconds.
const BOUND: Duration = Duration::from_secs(600);

/// How long opening the mounts may take: microseconds, unless a walk would wait.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// The descriptors the holder inherits: the init's pidfd, its root, the control device, the
/// host's directory of pins.
const FDS: [i32; 4] = [3, 4, 5, 6];

/// Starts the holder for the restored autofs mounts `mounts` (mount point, superblock) of the
/// container of `host`, waits until it holds them (bounded), and pins it, with `first`: the
/// first token a wait on them can have, where their waits are to be released by token
/// (`tokens`). Before entering. Returns how many it holds.
pub fn start(host: &Host, mounts: &[(Vec<u8>, Dev)], first: Option<u32>) -> Result<usize> {
    let init = host.init();
    // Never a second one: it holds them already.
    if let Some(held) = live(init) {
        return Ok(held.mounts);
    }
    let pin = layout::hold(init.key()?);
    let ctl = Control::open()?;
    match rustix::fs::mkdir(DIR, Mode::RWXU) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Error::sys(format!("making {DIR}"), e)),
    }
    let dir = rustix::fs::open(DIR, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .context(format!("opening {DIR}"))?;
    let name = pin.rsplit('/').next().unwrap_or_default().to_string();
    let given = [init.pidfd(), host.root(), ctl.as_fd(), dir.as_fd()];
    let (pid, pidfd, stdin, stdout) = spawn(&name, given).context("starting the holder")?;
    let held = match talk(stdin, &stdout, mounts) {
        Ok(held) => held,
        Err(e) => {
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            return Err(e);
        }
    };
    let start = procfs::start_time_of(&init.procs().proc_file(pid.as_raw_pid() as u32, "stat").unwrap_or_default())
        .ok_or_else(|| {
            Error::check("the holder ended at once: post-resume fixes the mounts without it (what blocks on them before is named, or killed with --blocked kill)")
        })?;
    let first = first.map_or_else(String::new, |t| format!(" {t}"));
    let mut text = format!("{} {start}{first}\n", pid.as_raw_pid()).into_bytes();
    text.extend_from_slice(&held);
    write_pin(&pin, &text)?;
    Ok(lines(&held).count())
}

/// Starts this very binary as the holder (`HOLD_ARG NAME`), in a session of its own, with an
/// empty environment, the `given` descriptors at `FDS`, pipes as stdin and stdout. Its pid and
/// pidfd, and our ends of the pipes.
fn spawn(name: &str, given: [BorrowedFd<'_>; 4]) -> rustix::io::Result<(Pid, OwnedFd, OwnedFd, OwnedFd)> {
    use crate::sys::fork::{self, Exec, Forked};
    let argv: [&[u8]; 3] = [b"/proc/self/exe", HOLD_ARG.as_bytes(), name.as_bytes()];
    let exec = Exec::new(argv[0], &argv, &[]).ok_or(Errno::INVAL)?;
    let (child_in, to_child) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (from_child, child_out) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    // The child makes only system calls until it execs or exits (`hold_steps`, `fork::exit`).
    match fork::fork()? {
        Forked::Parent(pid, pidfd) => Ok((pid, pidfd, to_child, from_child)),
        Forked::Child => {
            let _ = hold_steps([&child_in, &child_out, &null], given).map(|()| exec.exec());
            // What the parent reads last, as the reason.
            let _ = rustix::io::write(&child_out, b"could not start\n");
            fork::exit(127)
        }
    }
}

/// In the holder's child before exec: its stdio, the given descriptors at `FDS` (left open
/// across exec), its own session, default signals.
fn hold_steps(stdio: [&OwnedFd; 3], given: [BorrowedFd<'_>; 4]) -> rustix::io::Result<()> {
    rustix::stdio::dup2_stdin(stdio[0])?;
    rustix::stdio::dup2_stdout(stdio[1])?;
    rustix::stdio::dup2_stderr(stdio[2])?;
    // Out of the way first: a descriptor may already sit at one of `FDS`, where dup2 onto
    // itself would keep close-on-exec, or onto another would overwrite it.
    let [a, b, c, d] = given.map(|from| rustix::io::fcntl_dupfd_cloexec(from, 100));
    let high = [a?, b?, c?, d?];
    for (from, to) in high.iter().zip(FDS) {
        crate::sys::fds::dup2_onto(from.as_fd(), to)?;
    }
    rustix::process::setsid()?;
    crate::sys::fork::default_signals()
}

/// Hands the holder its work on stdin (`MAJOR:MINOR PATH` lines) and reads, bounded, what it
/// holds from its stdout (`FD PATH` lines, then `ready`).
fn talk(stdin: OwnedFd, stdout: &OwnedFd, mounts: &[(Vec<u8>, Dev)]) -> Result<Vec<u8>> {
    let work: Vec<u8> = mounts.iter().flat_map(|(path, dev)| line(&dev.to_string(), path)).collect();
    std::fs::File::from(stdin).write_all(&work).context("handing the holder its work")?;
    let mut said = Vec::new();
    let deadline = Instant::now() + OPEN_TIMEOUT;
    while !said.ends_with(READY) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout { doing: "opening the restored mounts".into(), after: OPEN_TIMEOUT });
        }
        let mut fds = [PollFd::new(stdout, PollFlags::IN)];
        poll(&mut fds, Some(&pidfd::timespec(left))).context("waiting for the holder")?;
        let mut chunk = [0u8; 4096];
        match rustix::io::read(stdout, &mut chunk) {
            // It ended without holding them all: its last line says why.
            Ok(0) => {
                let why = said.split(|&b| b == b'\n').rfind(|l| !l.is_empty()).unwrap_or_default();
                return Err(Error::check(format!("the holder failed: {}", Shown(why))));
            }
            Ok(n) => said.extend_from_slice(&chunk[..n]),
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(e) => return Err(Error::sys("reading from the holder", e)),
        }
    }
    said.truncate(said.len() - READY.len());
    Ok(said)
}

/// What the holder says last, once it holds everything.
const READY: &[u8] = b"ready\n";

/// A line of the holder's protocol and pin: a word, then a path escaped as mountinfo does.
fn line(word: &str, path: &[u8]) -> Vec<u8> {
    let mut line = format!("{word} ").into_bytes();
    line.extend_from_slice(&escape(path));
    line.push(b'\n');
    line
}

/// The (word, path) of each line of `text`; a line without both is skipped.
fn lines(text: &[u8]) -> impl Iterator<Item = (&str, Vec<u8>)> {
    text.split(|&b| b == b'\n').filter_map(|l| {
        let space = l.iter().position(|&b| b == b' ')?;
        Some((std::str::from_utf8(&l[..space]).ok()?, unescape(&l[space + 1..]).into_owned()))
    })
}

/// Writes the pin whole or not at all: into a new file, then renamed over.
fn write_pin(pin: &str, text: &[u8]) -> Result<()> {
    let tmp = format!("{pin}.new");
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(tmp.as_str(), flags, Mode::RUSR | Mode::WUSR).context(format!("creating {tmp}"))?;
    std::fs::File::from(fd).write_all(text).context(format!("writing {tmp}"))?;
    rustix::fs::rename(tmp.as_str(), pin).context(format!("renaming {tmp}"))
}

/// The holder itself, in the child: opens the mounts it is given in the init's mount
/// namespace and root, says what it holds and `ready`, then waits for the init's death, or
/// `BOUND`. Removes its pin `pin` when it ends by itself (a post-resume run ends it with
/// SIGKILL, after it removed the pin).
pub fn hold_child(pin: &[u8]) -> Result<u8> {
    // The descriptors the pre-resume run gave us at `FDS`, owned by nothing else yet.
    let [init, root, ctl, dir] = crate::sys::fds::inherited(FDS);
    rustix::thread::move_into_thread_name_spaces(init.as_fd(), rustix::thread::ThreadNameSpaceType::MOUNT)
        .context("entering the container's mount namespace")?;
    rustix::process::fchdir(&root).and_then(|()| rustix::process::chroot(".")).context("entering its root")?;
    let ctl = Control::from_fd(ctl);
    let mut work = Vec::new();
    std::io::stdin().read_to_end(&mut work).context("reading the work")?;
    let mut held = Vec::new();
    let mut out = std::io::stdout().lock();
    for (dev, path) in lines(&work) {
        let dev = Dev::parse(dev.as_bytes())
            .ok_or_else(|| Error::check("a bad device number in the work (pre-resume's, a bug: report it)"))?;
        let fd = ctl.open_mount(&path, dev)?;
        out.write_all(&line(&fd.as_raw_fd().to_string(), &path)).context("reporting")?;
        held.push(fd);
    }
    out.write_all(READY).and_then(|()| out.flush()).context("reporting")?;
    drop(out);
    let mut fds = [PollFd::new(&init, PollFlags::IN)];
    let _ = poll(&mut fds, Some(&pidfd::timespec(BOUND)));
    if let Ok(pin) = std::str::from_utf8(pin) {
        let _ = rustix::fs::unlinkat(&dir, pin, AtFlags::empty());
    }
    Ok(0)
}

/// A restored autofs superblock held open: its device (by `fstat` of the descriptor), its
/// mount point, the descriptor.
pub struct HeldMount {
    pub dev: Dev,
    pub path: Vec<u8>,
    pub fd: OwnedFd,
}

impl HeldMount {
    /// The one of `mounts` on superblock `dev`.
    pub fn on(mounts: &[HeldMount], dev: Dev) -> Option<&HeldMount> {
        mounts.iter().find(|m| m.dev == dev)
    }
}

/// What a post-resume run took over from the holder: each restored superblock it held; the
/// first token a wait on them can have, where their waits are released by token.
pub struct Held {
    pub mounts: Vec<HeldMount>,
    pub first_token: Option<u32>,
}

impl Held {
    /// The unique ids of the held mounts; none if one is not known (a kernel before 6.8).
    pub fn mount_ids(&self) -> Vec<u64> {
        let ids: std::result::Result<Vec<u64>, _> =
            self.mounts.iter().map(|m| crate::sys::statmount::mount_id(m.fd.as_fd())).collect();
        ids.unwrap_or_default()
    }
}

/// Takes over what the holder of the container of `init` holds, if one runs, and ends it.
/// Before entering: the pin is on the host. A pin whose holder is gone is removed.
pub fn take(init: &Init) -> Result<Option<Held>> {
    let pin = layout::hold(init.key()?);
    let text = match std::fs::read(&pin) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(format!("reading {pin}")),
    };
    let Some((holder, first_token)) = alive(&text) else {
        let _ = std::fs::remove_file(&pin);
        return Ok(None);
    };
    // The pin goes first: the holder, ended below, must not be looked for again.
    let _ = std::fs::remove_file(&pin);
    let mut mounts = Vec::new();
    let rest = text.splitn(2, |&b| b == b'\n').nth(1).unwrap_or_default();
    for (fd, path) in lines(rest) {
        let fd: i32 = fd.parse().map_err(|_| Error::check(format!("{pin}: a bad descriptor number")))?;
        let taken = pidfd_getfd(&holder, fd, PidfdGetfdFlags::empty())
            .context(format!("taking over the holder's descriptor {fd}"))?;
        let st = rustix::fs::fstat(&taken).context("stat of a held mount")?;
        mounts.push(HeldMount { dev: Dev::of_stat(st.st_dev), path, fd: taken });
    }
    let _ = pidfd_send_signal(&holder, Signal::KILL);
    Ok(Some(Held { mounts, first_token }))
}

/// A pidfd on the holder a pin's first line names (`PID START [FIRST_TOKEN]`), if that
/// process still runs with that start time; and the token.
fn alive(text: &[u8]) -> Option<(OwnedFd, Option<u32>)> {
    let (pid, start, first) = first_line(text)?;
    let fd = pidfd::open(pid)?;
    // Checked once the pidfd is held: the pid cannot be reused under it any more.
    let now = procfs::start_time_of(&std::fs::read(format!("/proc/{pid}/stat")).ok()?)?;
    (now == start && !pidfd::exited(fd.as_fd()).unwrap_or(true)).then_some((fd, first))
}

/// A pin's first line: `PID START [FIRST_TOKEN]`.
fn first_line(text: &[u8]) -> Option<(u32, u64, Option<u32>)> {
    let line = std::str::from_utf8(text.split(|&b| b == b'\n').next()?).ok()?;
    let mut words = line.split(' ');
    let (pid, start) = (words.next()?.parse().ok()?, words.next()?.parse().ok()?);
    let first = match words.next() {
        Some(t) => Some(t.parse().ok()?),
        None => None,
    };
    (words.next().is_none() && pid > 0).then_some((pid, start, first))
}

/// What a live holder of the container of `init` holds (for `status`). Before entering.
pub struct Live {
    /// How many restored autofs mounts.
    pub mounts: usize,
    /// Whether their waits will be released by token (`tokens`).
    pub by_token: bool,
}

/// Whether the container of `init` has a live holder, and what it holds. Before entering.
pub fn live(init: &Init) -> Option<Live> {
    let text = std::fs::read(layout::hold(init.key().ok()?)).ok()?;
    let (_, first) = alive(&text)?;
    let mounts = lines(text.splitn(2, |&b| b == b'\n').nth(1).unwrap_or_default()).count();
    Some(Live { mounts, by_token: first.is_some() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lines_round_trip() {
        let mut text = line("0:51", b"/srv/my data");
        text.extend(line("7", b"/srv/a\nb"));
        text.extend_from_slice(b"ready\n");
        let got: Vec<(&str, Vec<u8>)> = lines(&text).collect();
        assert_eq!(got, [("0:51", b"/srv/my data".to_vec()), ("7", b"/srv/a\nb".to_vec())]);
    }

    #[test]
    fn first_lines_of_pins() {
        assert_eq!(first_line(b"812 4711\n5 /srv\n"), Some((812, 4711, None)));
        assert_eq!(first_line(b"812 4711 90210\n5 /srv\n"), Some((812, 4711, Some(90210))));
        assert_eq!(first_line(b"812 4711 x\n"), None);
        assert_eq!(first_line(b"812 4711 1 2\n"), None);
        assert_eq!(first_line(b"812\n"), None);
        assert_eq!(first_line(b"-812 4711\n"), None);
        assert_eq!(first_line(b"0 4711\n"), None);
    }
}
