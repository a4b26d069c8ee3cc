//! The one way a program is started in the container. A `Spec` says what runs, where and with
//! which privileges: the container's programs (`systemctl`), our own helpers (this binary), a
//! daemon of the container started again as it was. `start` makes the child join the
//! container between fork and exec; `wait` collects it, killing it at the timeout.

use std::cell::Cell;
use std::convert::Infallible;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{Mode, OFlags, open};
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, Signal, WaitOptions, chroot, fchdir, pidfd_send_signal, waitpid};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use super::confine::{Confine, ForChild, Trust};
use super::{Place, pidfd};
use crate::error::{Context, Error, Result};
use crate::settings::Api;
use crate::show::Shown;
use crate::sys::fork::{self, Exec, Forked};

/// How a child gets into the container's cgroup: started there by clone3
/// (CLONE_INTO_CGROUP), or forked and then written into `cgroup.procs` where the kernel or a
/// seccomp filter refuses that. The first refusal is remembered for the rest of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    IntoCgroup,
    ForkThenJoin,
}

impl Start {
    /// Where a run starts: `AUTOFS_RESTART_KERNEL_API=legacy` asks for the fork.
    pub fn first(asked: Api) -> Self {
        match asked {
            Api::New => Start::IntoCgroup,
            Api::Legacy => Start::ForkThenJoin,
        }
    }
}

/// Where a program of the container is looked for (its own PATH is not ours to trust).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
    /// A daemon that stays in the foreground: not waited for once it runs, its stdout and
    /// stderr these (else /dev/null).
    foreground: Option<Option<[BorrowedFd<'a>; 2]>>,
    /// Its stdout kept with its stderr, else sent to /dev/null.
    stdout: bool,
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
        let (daemon, foreground, stdout) = (false, None, false);
        Spec { program, argv0, args, env, trust, ids, cwd, cgroup2, place, daemon, foreground, stdout, doing }
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

    /// With its stdout kept in `Output::stderr` too, for a program that answers there.
    pub fn keeping_stdout(mut self) -> Self {
        self.stdout = true;
        self
    }

    /// With this working directory.
    pub fn in_dir(mut self, dir: BorrowedFd<'a>) -> Self {
        self.cwd = Some(dir);
        self
    }

    /// A daemon that stays in the foreground (`automount -f`): it never returns, so it is not
    /// waited for once it has executed. It is forked by a child that exits at once, so that its
    /// parent is the container's init, as a daemonising start's is, and not this run (whose
    /// children go to the host's init when it ends). Its stdout and stderr are `output`, the
    /// old daemon's, else /dev/null.
    pub fn in_foreground(mut self, output: Option<[BorrowedFd<'a>; 2]>) -> Self {
        self.foreground = Some(output);
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
/// `confine` says, and waits for it at most `timeout`. With the new kernel API, the child
/// starts in its cgroup2 directory (clone3); where the kernel lacks that, `api` turns legacy
/// for the rest of the run and the child writes itself into `cgroup.procs`.
pub(super) fn run(
    spec: Spec<'_>,
    init: BorrowedFd<'_>,
    confine: &Confine,
    start: &Cell<Start>,
    timeout: Duration,
) -> Result<Output> {
    let path = resolve(spec.program).ok_or_else(|| {
        Error::check(format!("{}: the container has no {} in {PATH}", spec.doing, Shown(spec.program)))
    })?;
    let argv: Vec<&[u8]> = [spec.argv0.unwrap_or(&path)].into_iter().chain(spec.args.iter().copied()).collect();
    let path_var = format!("PATH={PATH}");
    let env: Vec<&[u8]> = match spec.env {
        None => vec![path_var.as_bytes(), b"LANG=C", b"SYSTEMD_PAGER="],
        Some(env) => env.iter().map(Vec::as_slice).collect(),
    };
    let started = if spec.daemon { spec.doing.clone() } else { format!("starting {}", spec.doing) };
    let exec = Exec::new(&path, &argv, &env).ok_or_else(|| Error::check(format!("{started}: a NUL byte in it")))?;
    let devnull = open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).context("opening /dev/null")?;
    let (stderr, child_stderr) = match spec.daemon || spec.foreground.is_some() {
        true => (None, None),
        false => pipe_with(PipeFlags::CLOEXEC).map(|(r, w)| (Some(r), Some(w))).context(&*started)?,
    };
    // A daemon's stderr goes to a file of ours, read once its first process has exited: a pipe
    // would break (SIGPIPE) under a daemon that keeps writing to it. Without memfd_create
    // (Linux < 3.17, or a seccomp filter), to /dev/null.
    let kept = match spec.daemon && spec.foreground.is_none() {
        true => rustix::fs::memfd_create("autofs-restart-stderr", rustix::fs::MemfdFlags::CLOEXEC).ok(),
        false => None,
    };
    let (report, child_report) = pipe_with(PipeFlags::CLOEXEC).context(&*started)?;
    let mut confined = confine.for_child();
    if let Some(dir) = spec.cgroup2 {
        confined = confined.in_cgroup2(dir);
    }
    let err = child_stderr.as_ref().or(kept.as_ref()).map_or(devnull.as_fd(), |w| w.as_fd());
    let stdio = match spec.foreground {
        Some(Some([out, err])) => [devnull.as_fd(), out, err],
        Some(None) => [devnull.as_fd(); 3],
        None => [devnull.as_fd(), if spec.stdout { err } else { devnull.as_fd() }, err],
    };
    let child = Child {
        exec,
        stdio,
        init,
        place: spec.place,
        cwd: spec.cwd,
        trust: spec.trust,
        ids: spec.ids,
        daemon: spec.daemon || spec.foreground.is_some(),
        foreground: spec.foreground.is_some(),
        confined,
    };
    let deadline = Instant::now() + timeout;
    let (pid, pidfd) = child.start(start, child_report.as_fd()).context(&*started)?;
    drop((devnull, child_stderr, child_report));
    if let Err(e) = exec_report(&report, deadline) {
        let _ = pidfd_send_signal(&pidfd, Signal::KILL);
        let _ = waitpid(Some(pid), WaitOptions::empty());
        return Err(match e {
            Report::Failed(step, errno) => Error::sys(format!("{started}: {step}"), errno),
            Report::Timeout => Error::Timeout { doing: started, after: timeout },
            Report::Sys(e) => Error::sys(format!("{started}: waiting for its exec"), e),
        });
    }
    if spec.foreground.is_some() {
        // The first child, which exited once it had forked the daemon.
        let _ = waitpid(Some(pid), WaitOptions::empty());
        return Ok(Output { status: ExitStatus::from_raw(0), stderr: Vec::new() });
    }
    let waited = wait(pid, &pidfd, stderr, (deadline, timeout), &spec.doing);
    match kept {
        Some(file) => with_kept(waited, &file, &path),
        None => waited,
    }
}

/// A daemon's output with what it wrote to the file `run` gave it as stderr, until now (at
/// most 1 MiB, as `drain` keeps); killed at the timeout, the error with its last lines.
fn with_kept(waited: Result<Output>, file: &OwnedFd, path: &[u8]) -> Result<Output> {
    let mut said = Vec::new();
    let mut chunk = [0u8; 4096];
    while said.len() < 1 << 20 {
        match rustix::io::pread(file, &mut chunk, said.len() as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => said.extend_from_slice(&chunk[..n]),
        }
    }
    match waited {
        Ok(output) => Ok(Output { stderr: said, ..output }),
        Err(e) => match crate::show::last_lines(&said) {
            said if said.is_empty() => Err(e),
            said => {
                let who = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
                Err(Error::Said { source: Box::new(e), who: Shown(who).to_string(), said })
            }
        },
    }
}

/// The child to be: what it runs, and what it does between fork and exec.
struct Child<'a> {
    exec: Exec,
    /// Its stdin, stdout and stderr.
    stdio: [BorrowedFd<'a>; 3],
    init: BorrowedFd<'a>,
    place: Option<&'a Place>,
    cwd: Option<BorrowedFd<'a>>,
    trust: Trust,
    ids: (u32, u32),
    daemon: bool,
    /// Forked once more after joining the container, the first child exiting at once.
    foreground: bool,
    confined: ForChild<'a>,
}

/// What the child did not get past, as it reports it through a pipe before it exits.
const STEPS: [&str; 6] = [
    "setting up its stdio and signals",
    "joining the container's cgroups",
    "joining the container's namespaces",
    "entering its mount namespace and root",
    "taking the container's privileges",
    "executing it",
];

impl Child<'_> {
    /// Forks; in the child, does the steps and execs, reporting to `report` where it failed.
    /// Returns in the parent only.
    fn start(mut self, start: &Cell<Start>, report: BorrowedFd<'_>) -> rustix::io::Result<(Pid, OwnedFd)> {
        let forked = match (start.get(), self.confined.take_cgroup2()) {
            (Start::IntoCgroup, Some(dir)) => {
                // A seccomp filter may refuse clone3 with EPERM rather than ENOSYS: fork then
                // meets the real refusal, if there is one, at the write.
                // The child makes only system calls until it execs or exits (`steps`,
                // `fork::exit`).
                match fork::clone_into_cgroup(dir) {
                    Err(Errno::NOSYS | Errno::INVAL | Errno::TOOBIG | Errno::PERM) => {
                        start.set(Start::ForkThenJoin);
                        self.confined = self.confined.in_cgroup2(dir);
                        fork::fork()
                    }
                    forked => forked,
                }
            }
            (_, dir) => {
                if let Some(dir) = dir {
                    self.confined = self.confined.in_cgroup2(dir);
                }
                fork::fork()
            }
        }?;
        match forked {
            Forked::Parent(pid, pidfd) => Ok((pid, pidfd)),
            Forked::Child => {
                let Err((step, errno)) = self.steps();
                let mut said = [0u8; 8];
                said[..4].copy_from_slice(&(step as u32).to_ne_bytes());
                said[4..].copy_from_slice(&errno.raw_os_error().to_ne_bytes());
                let _ = rustix::io::write(report, &said);
                fork::exit(127)
            }
        }
    }

    /// In the forked child: joins the container and execs. Returns where it failed.
    fn steps(&self) -> std::result::Result<Infallible, (usize, Errno)> {
        let at = |step: usize| move |e: Errno| (step, e);
        let [stdin, stdout, stderr] = self.stdio;
        rustix::stdio::dup2_stdin(stdin)
            .and_then(|()| rustix::stdio::dup2_stdout(stdout))
            .and_then(|()| rustix::stdio::dup2_stderr(stderr))
            .and_then(|()| fork::default_signals())
            // A run killed half-way leaves no program of ours running in the container; a
            // daemon must outlive us.
            .and_then(|()| match self.daemon {
                true => Ok(()),
                false => rustix::process::set_parent_process_death_signal(Some(Signal::KILL)),
            })
            .map_err(at(0))?;
        self.confined.join_cgroups().map_err(at(1))?;
        self.confined.join_namespaces(self.init, self.trust).map_err(at(2))?;
        if let Some(place) = self.place {
            move_into_link_name_space(place.mnt.as_fd(), Some(LinkNameSpaceType::Mount))
                .and_then(|()| fchdir(&place.root))
                .and_then(|()| chroot("."))
                .map_err(at(3))?;
        }
        let cwd = match self.cwd {
            Some(dir) => fchdir(dir),
            None => rustix::process::chdir("/"),
        };
        let cwd = cwd.and_then(|()| match self.foreground {
            true => fork::fork().map(|forked| {
                if let Forked::Parent(..) = forked {
                    fork::exit(0)
                }
            }),
            false => Ok(()),
        });
        cwd.and_then(|()| if self.daemon { rustix::process::setsid().map(drop) } else { Ok(()) })
            .and_then(|()| self.confined.drop_privileges(self.trust, self.ids.0, self.ids.1))
            .map_err(at(4))?;
        Err((5, self.exec.exec()))
    }
}

enum Report {
    Failed(&'static str, Errno),
    Timeout,
    Sys(Errno),
}

/// Waits for the child's exec: its end of `report` closes (close-on-exec), or it writes the
/// step it failed at and why. At most `timeout`: a step can hang (a frozen cgroup).
fn exec_report(report: &OwnedFd, deadline: Instant) -> std::result::Result<(), Report> {
    let mut fds = [PollFd::new(report, PollFlags::IN)];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match poll(&mut fds, Some(&pidfd::timespec(left))) {
            Ok(0) => return Err(Report::Timeout),
            Ok(_) => break,
            Err(Errno::INTR) => {}
            Err(e) => return Err(Report::Sys(e)),
        }
    }
    let mut said = [0u8; 8];
    let n = loop {
        match rustix::io::read(report, &mut said) {
            Err(Errno::INTR) => {}
            got => break got.map_err(Report::Sys)?,
        }
    };
    if n == 0 {
        return Ok(());
    }
    let step = u32::from_ne_bytes([said[0], said[1], said[2], said[3]]) as usize;
    let errno = Errno::from_raw_os_error(i32::from_ne_bytes([said[4], said[5], said[6], said[7]]));
    Err(Report::Failed(STEPS.get(step).copied().unwrap_or("starting it"), errno))
}

/// A program's path: as given if absolute, else the first executable of that name in `PATH`
/// (in our root: the container's, after entering).
fn resolve(program: &[u8]) -> Option<Vec<u8>> {
    resolve_in(PATH.as_bytes(), program)
}

/// `program` itself if it is a path, else the first executable file of that name in the
/// directories of `path` (`:`-separated, empty ones skipped), in this mount namespace.
pub fn resolve_in(path: &[u8], program: &[u8]) -> Option<Vec<u8>> {
    if program.starts_with(b"/") {
        return Some(program.to_vec());
    }
    let executable =
        |p: &[u8]| rustix::fs::stat(p).is_ok_and(|st| st.st_mode & 0o170000 == 0o100000 && st.st_mode & 0o111 != 0);
    path.split(|&b| b == b':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| [dir, b"/", program].concat())
        .find(|p| executable(p))
}

/// Collects a child's stderr until it exits, killing it with SIGKILL at the deadline.
fn wait(
    pid: Pid,
    pidfd: &OwnedFd,
    mut pipe: Option<OwnedFd>,
    (deadline, timeout): (Instant, Duration),
    doing: &str,
) -> Result<Output> {
    let reading = format!("reading from {doing}");
    if let Some(fd) = &pipe {
        rustix::fs::fcntl_setfl(fd, OFlags::NONBLOCK).context(&*reading)?;
    }
    let mut stderr = Vec::new();
    let reap = || waitpid(Some(pid), WaitOptions::empty()).context(format!("waiting for {doing}"));
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
            let _ = pidfd_send_signal(pidfd, Signal::KILL);
            let _ = reap();
            return Err(Error::Timeout { doing: doing.to_string(), after: timeout });
        }
        let mut fds: Vec<PollFd<'_>> = pipe.iter().map(|p| PollFd::new(p, PollFlags::IN)).collect();
        fds.push(PollFd::new(pidfd, PollFlags::IN));
        match poll(&mut fds, Some(&pidfd::timespec(left))) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(Error::sys(format!("waiting for {doing}"), e)),
        }
    }
    if let Some(fd) = &pipe {
        drain(fd, &mut stderr).context(&*reading)?;
    }
    let status = reap()?.map_or(0, |(_, status)| status.as_raw());
    Ok(Output { status: ExitStatus::from_raw(status), stderr })
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
