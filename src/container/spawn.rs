//! The one way a program is started in the container. A `Spec` says what runs, where and with
//! which privileges: the container's programs (`systemctl`), our own helpers (this binary), a
//! daemon of the container started again as it was. `start` makes the child join the
//! container between fork and exec; `wait` collects it, killing it at the timeout.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, chroot, fchdir, pidfd_open};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use super::confine::{Confine, Trust};
use super::{Place, pidfd};
use crate::error::{Context, Error, Result};
use crate::show::Shown;

/// Where a program of the container is looked for (its own PATH is not ours to trust).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// This very binary, as the child sees it: in the container's pid namespace, whose /proc
/// knows the child.
const OURS: &str = "/proc/self/exe";

/// What to start, and how.
pub struct Spec<'a> {
    /// A path, or a name looked for in `PATH`.
    program: &'a [u8],
    argv0: Option<&'a [u8]>,
    args: Vec<&'a [u8]>,
    /// `None`: a fixed environment (`PATH`, `LANG=C`, `SYSTEMD_PAGER=`).
    env: Option<&'a [Vec<u8>]>,
    trust: Trust,
    /// Real, effective and saved uid and gid, as the container sees them.
    ids: (u32, u32),
    /// Its working directory (else `/`) and cgroup2 directory (else the init's).
    cwd: Option<BorrowedFd<'a>>,
    cgroup2: Option<BorrowedFd<'a>>,
    /// Another mount namespace and root of the container to run in.
    place: Option<&'a Place>,
    /// In a session of its own (a daemon), else killed when we die.
    daemon: bool,
    /// What it is, for messages.
    doing: String,
}

impl<'a> Spec<'a> {
    /// A program of the container, found in its standard directories, run with the
    /// container's privileges only and `no_new_privs`; its stderr is kept for the report.
    pub fn container(program: &'a str, args: &[&'a [u8]]) -> Self {
        let shown: Vec<String> = args.iter().map(|a| Shown(a).to_string()).collect();
        let doing = format!("{program} {}", shown.join(" "));
        Spec::new(program.as_bytes(), args, Trust::Container { no_new_privs: true }, doing)
    }

    /// This very binary as a helper in the container: its namespaces and cgroup, our
    /// credentials (the autofs ioctls need them).
    pub fn ours(args: &[&'a [u8]]) -> Self {
        let shown: Vec<String> = args.iter().map(|a| Shown(a).to_string()).collect();
        Spec::new(OURS.as_bytes(), args, Trust::Ours, format!("{OURS} {}", shown.join(" ")))
    }

    /// A daemon of the container started again as it was: its executable, argv (argv[0]
    /// included) and environment, in a new session, without `no_new_privs`.
    pub fn daemon(exe: &'a [u8], argv: &'a [Vec<u8>], env: &'a [Vec<u8>]) -> Self {
        let args: Vec<&[u8]> = argv.iter().skip(1).map(Vec::as_slice).collect();
        let mut spec = Spec::new(exe, &args, Trust::Container { no_new_privs: false }, String::new());
        spec.argv0 = argv.first().map(Vec::as_slice);
        spec.env = Some(env);
        spec.daemon = true;
        spec.doing = format!("starting {} again", Shown(exe));
        spec
    }

    fn new(program: &'a [u8], args: &[&'a [u8]], trust: Trust, doing: String) -> Self {
        let args = args.to_vec();
        let (argv0, env, ids, cwd, cgroup2, place) = (None, None, (0, 0), None, None, None);
        Spec { program, argv0, args, env, trust, ids, cwd, cgroup2, place, daemon: false, doing }
    }

    /// In that mount namespace and root of the container.
    pub fn in_place(mut self, place: &'a Place) -> Self {
        self.place = Some(place);
        self
    }

    /// As these ids (the container's numbers for them).
    pub fn with_ids(mut self, uid: u32, gid: u32) -> Self {
        self.ids = (uid, gid);
        self
    }

    /// With this working directory.
    pub fn in_dir(mut self, dir: BorrowedFd<'a>) -> Self {
        self.cwd = Some(dir);
        self
    }

    /// In this cgroup2 directory instead of the init's (v1 hierarchies stay the init's).
    pub fn in_cgroup2(mut self, dir: BorrowedFd<'a>) -> Self {
        self.cgroup2 = Some(dir);
        self
    }
}

/// How a program ended and what it said on stderr (its stdout goes to /dev/null).
pub struct Output {
    pub status: ExitStatus,
    pub stderr: Vec<u8>,
}

impl Output {
    /// Itself if it succeeded; else an error saying how it ended and its first line.
    pub fn ok(self, doing: &str) -> Result<Output> {
        if self.status.success() {
            return Ok(self);
        }
        let said = self.stderr.split(|&b| b == b'\n').find(|l| !l.is_empty()).unwrap_or_default().to_vec();
        Err(Error::Exit { doing: doing.to_string(), status: self.status, said })
    }
}

/// Starts `spec` (after entering) in the init's namespaces through its pidfd, confined as
/// `confine` says, and waits for it at most `timeout`.
pub(super) fn run(spec: Spec<'_>, init: BorrowedFd<'_>, confine: &Confine, timeout: Duration) -> Result<Output> {
    let path = resolve(spec.program).ok_or_else(|| {
        Error::check(format!("{}: the container has no {} in {PATH}", spec.doing, Shown(spec.program)))
    })?;
    let mut cmd = Command::new(OsStr::from_bytes(&path));
    if let Some(argv0) = spec.argv0 {
        cmd.arg0(OsStr::from_bytes(argv0));
    }
    cmd.args(spec.args.iter().map(|a| OsStr::from_bytes(a))).env_clear().current_dir("/");
    match spec.env {
        None => cmd.env("PATH", PATH).env("LANG", "C").env("SYSTEMD_PAGER", ""),
        Some(env) => cmd.envs(env.iter().map(|kv| {
            let (k, v) = kv.split_at(kv.iter().position(|&b| b == b'=').unwrap_or(kv.len()));
            (OsStr::from_bytes(k), OsStr::from_bytes(v.get(1..).unwrap_or_default()))
        })),
    };
    let stderr = if spec.daemon { Stdio::null() } else { Stdio::piped() };
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    let mut child = confine.for_child();
    if let Some(dir) = spec.cgroup2 {
        child = child.in_cgroup2(dir.as_raw_fd());
    }
    let raw = |fd: Option<BorrowedFd<'_>>| fd.map(|fd| fd.as_raw_fd());
    let (init, cwd, place) =
        (init.as_raw_fd(), raw(spec.cwd), spec.place.map(|p| (p.mnt.as_raw_fd(), p.root.as_raw_fd())));
    let (trust, (uid, gid), daemon) = (spec.trust, spec.ids, spec.daemon);
    // SAFETY: runs in the forked child before exec. It makes only raw system calls, on file
    // descriptors that the caller keeps open for as long as `spec` and `confine` are borrowed,
    // which outlasts the spawn.
    unsafe {
        cmd.pre_exec(move || {
            let fd = |raw| BorrowedFd::borrow_raw(raw);
            // A run killed half-way leaves no program of ours running in the container; a
            // daemon must outlive us.
            if !daemon {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            }
            child.join(fd(init), trust)?;
            if let Some((mnt, root)) = place {
                move_into_link_name_space(fd(mnt), Some(LinkNameSpaceType::Mount))?;
                fchdir(fd(root))?;
                chroot(".")?;
                rustix::process::chdir("/")?;
            }
            if daemon {
                rustix::process::setsid()?;
            }
            if let Some(cwd) = cwd {
                fchdir(fd(cwd))?;
            }
            child.drop_privileges(trust, uid, gid)
        });
    }
    let started = if spec.daemon { spec.doing.clone() } else { format!("starting {}", spec.doing) };
    let child = cmd.spawn().context(started)?;
    wait(child, timeout, &spec.doing)
}

/// A program's path: as given if absolute, else the first executable of that name in `PATH`
/// (in our root: the container's, after entering).
fn resolve(program: &[u8]) -> Option<Vec<u8>> {
    if program.starts_with(b"/") {
        return Some(program.to_vec());
    }
    let executable =
        |p: &[u8]| rustix::fs::stat(p).is_ok_and(|st| st.st_mode & 0o170000 == 0o100000 && st.st_mode & 0o111 != 0);
    PATH.split(':').map(|dir| [dir.as_bytes(), b"/", program].concat()).find(|p| executable(p))
}

/// Collects a child's stderr until it exits, killing it with SIGKILL at `timeout`.
fn wait(mut child: std::process::Child, timeout: Duration, doing: &str) -> Result<Output> {
    // The child is ours and not yet reaped: its pid cannot have been reused.
    let pidfd = pidfd_open(Pid::from_child(&child), PidfdFlags::empty()).context(format!("pidfd_open for {doing}"))?;
    let reading = format!("reading from {doing}");
    let mut pipe = child.stderr.take().map(OwnedFd::from);
    if let Some(fd) = &pipe {
        rustix::fs::fcntl_setfl(fd, OFlags::NONBLOCK).context(&*reading)?;
    }
    let mut stderr = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let ended = match &pipe {
            Some(fd) => drain(fd, &mut stderr).context(&*reading)?,
            None => false,
        };
        if ended {
            pipe = None;
        }
        // Once it has exited, what it wrote has been read: a grandchild may still hold the pipe.
        if pidfd::exited(pidfd.as_fd())? {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout { doing: doing.to_string(), after: timeout });
        }
        let mut fds: Vec<PollFd<'_>> = pipe.iter().map(|p| PollFd::new(p, PollFlags::IN)).collect();
        fds.push(PollFd::new(&pidfd, PollFlags::IN));
        match poll(&mut fds, Some(&pidfd::timespec(left))) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(Error::sys(format!("waiting for {doing}"), e)),
        }
    }
    if let Some(fd) = &pipe {
        drain(fd, &mut stderr).context(&*reading)?;
    }
    let status = child.wait().context(format!("waiting for {doing}"))?;
    Ok(Output { status, stderr })
}

/// Reads what a non-blocking pipe holds now; true at end of file. Keeps at most 1 MiB: we
/// only ever need the first lines.
fn drain(fd: &OwnedFd, buf: &mut Vec<u8>) -> rustix::io::Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        match rustix::io::read(fd, &mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) if buf.len() < 1 << 20 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) | Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}
