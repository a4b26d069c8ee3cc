//! The restored container, held by a pidfd: its /proc entries read through the host's procfs,
//! its mount namespace entered, its programs run inside it with a timeout.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{Dir, Mode, OFlags, openat, readlinkat};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, chroot, fchdir, getpid, pidfd_open, pidfd_send_signal};
use rustix::thread::{LinkNameSpaceType, ThreadNameSpaceType, move_into_link_name_space, move_into_thread_name_spaces};

use crate::confine::{Confine, ForChild, Trust};
use crate::error::{Error, Result, Shown};

/// Where a program of the container is looked for (its own PATH is not ours to trust).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Container {
    pub pid: Pid,
    pidfd: OwnedFd,
    /// The host's /proc: pids in it and in mountinfo's `pgrp=` are host pids.
    proc: OwnedFd,
    /// The host's /proc/PID of the init.
    dir: OwnedFd,
    /// The init's root directory.
    root: OwnedFd,
    /// The init's mount namespace, and ours before `enter` (the host's): `hop` moves between
    /// them and the one that holds trees set aside.
    mnt: OwnedFd,
    host_mnt: OwnedFd,
    /// The container's privileges, read by `enter`, for every program started afterwards.
    confine: std::cell::OnceCell<std::result::Result<Confine, String>>,
    /// `key`, once read.
    key: std::cell::OnceCell<String>,
}

/// A mount namespace and a root directory in it, held open.
pub struct Place {
    mnt: OwnedFd,
    root: OwnedFd,
}

/// How a program ended and what it said on stderr (its stdout goes to /dev/null).
pub struct Output {
    pub status: ExitStatus,
    pub stderr: Vec<u8>,
}

impl Output {
    /// The first line of stderr, or how it ended: enough for a one-line report.
    pub fn summary(&self) -> String {
        let line = self.stderr.split(|&b| b == b'\n').find(|l| !l.is_empty()).unwrap_or_default();
        if line.is_empty() { self.status.to_string() } else { format!("{}: {}", self.status, Shown(line)) }
    }
}

impl Container {
    /// `pidfd_open(2)` the init first, then open its /proc entries and check that the pidfd's
    /// process still runs: then the pid was not reused in between, and the entries are its.
    /// `name` says where the pid came from, for errors.
    pub fn open(name: &'static str, pid: Pid) -> Result<Self> {
        let bad = |why| Error::Pid { name, value: Some(OsStr::new(&pid.to_string()).into()), why };
        if pid == getpid() {
            return Err(bad("is autofs-restart itself"));
        }
        let pidfd = pidfd_open(pid, PidfdFlags::empty()).map_err(|e| match e {
            Errno::SRCH => bad("is no running process"),
            e => Error::sys(format!("pidfd_open {pid}"), e),
        })?;
        let proc =
            openat(rustix::fs::CWD, "/proc", dir_flags(), Mode::empty()).map_err(|e| Error::sys("opening /proc", e))?;
        let dir = openat(&proc, pid.to_string(), dir_flags(), Mode::empty()).map_err(|e| match e {
            Errno::NOENT => bad("is no running process"),
            e => Error::sys(format!("opening /proc/{pid}"), e),
        })?;
        // Exited but not reaped yet: a zombie. (Fully gone, pidfd_open would have failed.)
        if exited(pidfd.as_fd())? {
            return Err(bad("has exited: a zombie, not a running init"));
        }
        // A kernel thread has no executable, and neither has a zombie: neither is a container.
        if let Err(Errno::NOENT) = readlinkat(&dir, "exe", Vec::new()) {
            return Err(bad("has no executable: a kernel thread or a zombie, not a container's init"));
        }
        let root = openat(&dir, "root", dir_flags(), Mode::empty())
            .map_err(|e| Error::sys(format!("opening /proc/{pid}/root"), e))?;
        let ns = |at: &OwnedFd, path: &str, shown: String| {
            openat(at, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| Error::sys(shown, e))
        };
        let mnt = ns(&dir, "ns/mnt", format!("opening /proc/{pid}/ns/mnt"))?;
        let host_mnt = ns(&proc, "thread-self/ns/mnt", "opening /proc/thread-self/ns/mnt".into())?;
        let (confine, key) = (std::cell::OnceCell::new(), std::cell::OnceCell::new());
        Ok(Container { pid, pidfd, proc, dir, root, mnt, host_mnt, confine, key })
    }

    /// Whether the init exits within `wait` (or has exited since `open`): then the container
    /// is gone. An init that dies takes a while: it first waits for every other process of
    /// its pid namespace to die.
    pub fn gone_within(&self, wait: Duration) -> bool {
        exited_within(self.pidfd.as_fd(), wait).unwrap_or(true)
    }

    /// The init's executable, as the kernel shows it (` (deleted)` after an upgrade).
    pub fn exe(&self) -> Result<Vec<u8>> {
        readlinkat(&self.dir, "exe", Vec::new())
            .map(|p| p.into_bytes())
            .map_err(|e| Error::sys(format!("reading /proc/{}/exe", self.pid), e))
    }

    /// Whether the init is systemd: only then are there systemd units to restart.
    pub fn is_systemd(&self) -> Result<bool> {
        Ok(is_systemd_exe(&self.exe()?))
    }

    /// The init's mountinfo: paths relative to its root, `pgrp=` in the host's pid namespace.
    pub fn mountinfo(&self) -> Result<Vec<u8>> {
        let doing = || format!("reading /proc/{}/mountinfo", self.pid);
        let fd = openat(&self.dir, "mountinfo", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::sys(doing(), e))?;
        let mut text = Vec::with_capacity(64 * 1024);
        File::from(fd).read_to_end(&mut text).map_err(|e| io_error(doing(), &e))?;
        Ok(text)
    }

    /// A file of host process `pid` in the host's /proc (`comm`, `cgroup`, `stat`), if it
    /// still runs.
    pub fn proc_file(&self, pid: u32, name: &str) -> Option<Vec<u8>> {
        let fd = openat(&self.proc, format!("{pid}/{name}"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        let mut text = Vec::new();
        File::from(fd).read_to_end(&mut text).ok()?;
        Some(text)
    }

    /// The command name of a host pid, if it still runs.
    pub fn comm(&self, pid: u32) -> Option<Vec<u8>> {
        let mut comm = self.proc_file(pid, "comm")?;
        comm.pop_if(|b| *b == b'\n');
        Some(comm)
    }

    /// The executable of a host pid, if it still runs and has one.
    pub fn exe_of(&self, pid: u32) -> Option<Vec<u8>> {
        self.link_of(pid, "exe")
    }

    /// A link of host pid `pid` in the host's /proc (`exe`, `cwd`), resolved against our root:
    /// after `enter`, the container's paths.
    pub fn link_of(&self, pid: u32, name: &str) -> Option<Vec<u8>> {
        readlinkat(&self.proc, format!("{pid}/{name}"), Vec::new()).ok().map(|p| p.into_bytes())
    }

    /// The process of group `pgrp` that holds the pipe with inode `ino`: an autofs master. The
    /// group's leader is not always it: `automount -f` stays in its supervisor's group. One
    /// pass over the host's /proc.
    pub fn pipe_holder(&self, pgrp: u32, ino: u64) -> Result<Option<u32>> {
        if self.holds_pipe(pgrp, ino).unwrap_or(false) {
            return Ok(Some(pgrp));
        }
        for pid in self.pids()? {
            let in_group = self.proc_file(pid, "stat").as_deref().and_then(crate::automount::pgrp_of) == Some(pgrp);
            // A process that exits meanwhile is simply not the one.
            if in_group && self.holds_pipe(pid, ino).unwrap_or(false) {
                return Ok(Some(pid));
            }
        }
        Ok(None)
    }

    /// Every host pid, in one pass over the host's /proc.
    fn pids(&self) -> Result<Vec<u32>> {
        // self.proc is O_PATH, which getdents refuses.
        let procs = openat(&self.proc, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::sys("opening /proc", e))?;
        let mut dir = Dir::read_from(&procs).map_err(|e| Error::sys("reading /proc", e))?;
        let mut pids = Vec::with_capacity(512);
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| Error::sys("reading /proc", e))?;
            if let Some(pid) = entry.file_name().to_str().ok().and_then(|n| n.parse::<u32>().ok()) {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    /// One pass over the host's /proc for the container's processes: those whose pid
    /// namespace is the init's or lies below it. Finds one process in each mount namespace
    /// other than the init's, and every process waiting in the kernel's autofs code.
    pub fn survey(&self) -> Result<Survey> {
        let own = |kind: &str| {
            ns_id(self.dir.as_fd(), &format!("ns/{kind}"))
                .map_err(|e| Error::sys(format!("reading /proc/{}/ns/{kind}", self.pid), e))
        };
        let (own_mnt, own_pid) = (own("mnt")?, own("pid")?);
        let mut survey = Survey::default();
        let mut seen = Vec::new();
        let mut below: HashMap<NsId, bool> = HashMap::new();
        for pid in self.pids()? {
            // A process that exits meanwhile is simply not counted.
            let Ok(pidns) = self.ns(pid, "pid") else { continue };
            if pidns != own_pid && !*below.entry(pidns).or_insert_with(|| self.pid_ns_below(pid, own_pid)) {
                continue;
            }
            if self.proc_file(pid, "wchan").as_deref() == Some(b"autofs_wait") {
                survey.blocked.push(pid);
            }
            let Ok(mnt) = self.ns(pid, "mnt") else { continue };
            if mnt != own_mnt && !seen.contains(&mnt) {
                seen.push(mnt);
                survey.nested.push(pid);
            }
        }
        Ok(survey)
    }

    /// The namespace of kind `kind` ("mnt", "user", ...) of host pid `pid`.
    pub fn ns(&self, pid: u32, kind: &str) -> rustix::io::Result<NsId> {
        ns_id(self.proc.as_fd(), &format!("{pid}/ns/{kind}"))
    }

    /// Whether host pid `pid` still waits in the kernel's autofs code.
    pub fn still_blocked(&self, pid: u32) -> bool {
        self.proc_file(pid, "wchan").as_deref() == Some(b"autofs_wait")
    }

    /// The pid of host pid `pid` in the container's pid namespace.
    pub fn ctr_pid(&self, pid: u32) -> Option<u32> {
        let init = self.pid.as_raw_nonzero().get() as u32;
        // The init is 1 in its namespace: its depth says which NSpid column is the container's.
        let depth = nspid(&self.proc_file(init, "status")?).len();
        nspid(&self.proc_file(pid, "status")?).get(depth.checked_sub(1)?).copied()
    }

    /// The path a blocked process is looking up, as it passed it to the system call it is in
    /// (from /proc/PID/syscall and its memory), made absolute against its working directory
    /// or the directory fd it passed. After `enter`, so that those links read as container
    /// paths. None when the call is not one we know or the memory cannot be read.
    pub fn blocked_path(&self, pid: u32) -> Option<Vec<u8>> {
        let call = crate::blocked::path_arg(&self.proc_file(pid, "syscall")?)?;
        let mem = openat(&self.proc, format!("{pid}/mem"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        let mut buf = vec![0u8; 4096];
        let n = rustix::io::pread(&mem, &mut buf, call.addr).ok()?;
        let path = buf[..n].split(|&b| b == 0).next()?.to_vec();
        let base = match call.dirfd {
            _ if path.starts_with(b"/") => Vec::new(),
            None => self.link_of(pid, "cwd")?,
            Some(fd) => self.link_of(pid, &format!("fd/{fd}"))?,
        };
        Some(crate::blocked::join(&base, &path))
    }

    /// Whether the pid namespace of host pid `pid` lies below the one identified by `top`:
    /// walks up with `ioctl(NS_GET_PARENT)`, which ends in EPERM at our own namespace.
    fn pid_ns_below(&self, pid: u32, top: NsId) -> bool {
        let Ok(mut ns) = openat(&self.proc, format!("{pid}/ns/pid"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        else {
            return false;
        };
        // The kernel nests pid namespaces at most 32 deep.
        for _ in 0..33 {
            // SAFETY: NS_GET_PARENT takes no argument; `ns` is an open nsfs file.
            match unsafe { rustix::ioctl::ioctl(&ns, NsGetParent) } {
                Ok(parent) => ns = parent,
                Err(_) => return false,
            }
            match rustix::fs::fstat(&ns) {
                Ok(st) if (st.st_dev, st.st_ino) == top => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Takes the container's run lock: flock(2) on the container's root directory, waiting at
    /// most `timeout` for another run to end. The kernel drops it when the returned fd closes,
    /// even if we are killed, and it leaves nothing behind in the container. Returns whether
    /// we had to wait: then the mount table read before is stale.
    pub fn lock(&self, timeout: Duration) -> Result<(OwnedFd, bool)> {
        let doing = "locking the container's root directory";
        // "." opens the directory `root` already is: no path walk, nothing to be misled by.
        let fd = openat(&self.root, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::sys(doing, e))?;
        let start = Instant::now();
        let mut waited = false;
        loop {
            match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok((fd, waited)),
                Err(Errno::WOULDBLOCK) if start.elapsed() < timeout => {
                    waited = true;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(Errno::WOULDBLOCK) => {
                    return Err(Error::Failed(format!(
                        "another autofs-restart run on this container holds its lock; gave up after {} s",
                        crate::error::seconds(timeout)
                    )));
                }
                Err(e) => return Err(Error::sys(doing, e)),
            }
        }
    }

    /// The mount namespace and root of host pid `pid` (before `enter`), for `run_in`.
    pub fn open_place(&self, pid: u32) -> Result<Place> {
        let open = |name: &str, flags| {
            openat(&self.proc, format!("{pid}/{name}"), flags, Mode::empty())
                .map_err(|e| Error::sys(format!("opening /proc/{pid}/{name}"), e))
        };
        Ok(Place { mnt: open("ns/mnt", OFlags::RDONLY | OFlags::CLOEXEC)?, root: open("root", dir_flags())? })
    }

    /// Whether host pid `pid` exists, a zombie not yet reaped included.
    pub fn exists(&self, pid: u32) -> bool {
        rustix::fs::statat(&self.proc, pid.to_string(), rustix::fs::AtFlags::empty()).is_ok()
    }

    /// Whether host process `pid` holds the pipe with inode `ino` (an autofs master's end).
    pub fn holds_pipe(&self, pid: u32, ino: u64) -> Result<bool> {
        let doing = || format!("reading /proc/{pid}/fd");
        let fds = openat(
            &self.proc,
            format!("{pid}/fd"),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::sys(doing(), e))?;
        let want = format!("pipe:[{ino}]");
        let mut dir = Dir::read_from(&fds).map_err(|e| Error::sys(doing(), e))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| Error::sys(doing(), e))?;
            // A closed fd between readdir and readlink is simply not the one.
            if let Ok(link) = readlinkat(&fds, entry.file_name(), Vec::new())
                && link.as_bytes() == want.as_bytes()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Joins the container's mount namespace and root for the mount work, and its pid namespace
    /// for the programs started from now on. setns(2) through the pidfd, so the namespaces are
    /// the init's even if its pid were reused; setns into a mount namespace needs a
    /// single-threaded process, and we start no thread before this.
    pub fn enter(&self) -> Result<()> {
        // What the container's programs may have, read while the host's /proc and cgroupfs are
        // in reach. If that fails, no program of the container will run, but the mount work
        // (a recovery above all) goes on.
        let confine = Confine::of(self);
        let _ = self.confine.set(confine.map_err(|e| e.to_string()));
        move_into_thread_name_spaces(self.pidfd.as_fd(), ThreadNameSpaceType::MOUNT | ThreadNameSpaceType::PROCESS_ID)
            .map_err(|e| Error::sys(format!("entering the namespaces of pid {}", self.pid), e))?;
        // setns put us at the namespace's root; a container can be chrooted below it.
        fchdir(&self.root)
            .and_then(|()| chroot("."))
            .and_then(|()| rustix::process::chdir("/"))
            .map_err(|e| Error::sys(format!("entering the root of pid {}", self.pid), e))
    }

    /// Runs `op` in mount namespace `ns` (after `enter`), then goes back into the container's
    /// namespace and root. Going back failing leaves us where no mount call can reach the
    /// container (they check the caller's namespace): an error, not a danger.
    pub fn hop<T>(&self, ns: BorrowedFd<'_>, op: impl FnOnce() -> T) -> Result<T> {
        move_into_link_name_space(ns, Some(LinkNameSpaceType::Mount))
            .map_err(|e| Error::sys("entering a mount namespace of ours", e))?;
        let done = op();
        move_into_link_name_space(self.mnt.as_fd(), Some(LinkNameSpaceType::Mount))
            .and_then(|()| fchdir(&self.root))
            .and_then(|()| chroot("."))
            .and_then(|()| rustix::process::chdir("/"))
            .map_err(|e| Error::sys(format!("going back into the mount namespace of pid {}", self.pid), e))?;
        Ok(done)
    }

    /// The mount namespace we started in: the host's.
    pub fn host_mnt(&self) -> BorrowedFd<'_> {
        self.host_mnt.as_fd()
    }

    /// Opens `name` in the host's /proc/thread-self: of the namespaces we are in now, also
    /// where no /proc is mounted.
    pub fn own_proc_file(&self, name: &str) -> rustix::io::Result<OwnedFd> {
        openat(&self.proc, format!("thread-self/{name}"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
    }

    /// A name for this container that no other gets while the host runs: the init's host pid
    /// and its start time (a pid is reused, not within the same clock tick).
    pub fn key(&self) -> Result<&str> {
        if let Some(key) = self.key.get() {
            return Ok(key);
        }
        let stat = self.proc_file(self.pid.as_raw_nonzero().get() as u32, "stat");
        match stat.as_deref().and_then(crate::automount::start_time_of) {
            Some(t) => Ok(self.key.get_or_init(|| format!("{}-{t}", self.pid))),
            None => Err(Error::Failed(format!("reading /proc/{}/stat: no start time", self.pid))),
        }
    }

    /// Runs a program of the container (after `enter`), found in the container's standard
    /// directories, with the container's privileges only (`confine`): all the init's
    /// namespaces, its cgroup, its bounding set, no_new_privs, a fixed environment, fds 0-2.
    /// After `timeout` it is killed and this is an error; the caller goes on safely.
    pub fn run(&self, program: &str, args: &[&[u8]], timeout: Duration) -> Result<Output> {
        self.run_at(None, program, args, timeout, Trust::Container { no_new_privs: true })
    }

    /// Runs this very program with `args` in the container (after `enter`): its namespaces
    /// and cgroup, our credentials. With `place`, in that other mount namespace and root of
    /// the container (from `open_place`): for work on what only that namespace can reach.
    pub fn run_helper(&self, place: Option<&Place>, args: &[&[u8]], timeout: Duration) -> Result<Output> {
        self.run_at(place, "/proc/self/exe", args, timeout, Trust::Ours)
    }

    fn run_at(
        &self,
        place: Option<&Place>,
        program: &str,
        args: &[&[u8]],
        timeout: Duration,
        trust: Trust,
    ) -> Result<Output> {
        let shown: Vec<String> = args.iter().map(|a| Shown(a).to_string()).collect();
        let doing = format!("{program} {}", shown.join(" "));
        let path = if program.starts_with('/') {
            program.to_string()
        } else {
            PATH.split(':')
                .map(|dir| format!("{dir}/{program}"))
                .find(|p| is_executable(p))
                .ok_or_else(|| Error::Failed(format!("{doing}: the container has no {program} in {PATH}")))?
        };
        let pidfd = self.pidfd.as_raw_fd();
        let confine = self.confined()?;
        let mut cmd = Command::new(&path);
        cmd.args(args.iter().map(|a| OsStr::from_bytes(a)))
            .env_clear()
            .env("PATH", PATH)
            .env("LANG", "C")
            .env("SYSTEMD_PAGER", "")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let place = place.map(|p| (p.mnt.as_raw_fd(), p.root.as_raw_fd()));
        // SAFETY: runs in the forked child before exec; it only makes raw system calls on file
        // descriptors that `self` and `place` keep open for as long as these borrows last.
        unsafe {
            cmd.pre_exec(move || {
                // A run killed half-way leaves no program of ours running in the container.
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                confine.join(BorrowedFd::borrow_raw(pidfd), trust)?;
                if let Some((mnt, root)) = place {
                    rustix::thread::move_into_link_name_space(
                        BorrowedFd::borrow_raw(mnt),
                        Some(rustix::thread::LinkNameSpaceType::Mount),
                    )?;
                    fchdir(BorrowedFd::borrow_raw(root))?;
                    chroot(".")?;
                    rustix::process::chdir("/")?;
                }
                // Root of the container, as it sees itself.
                confine.drop_privileges(trust, 0, 0)
            });
        }
        let child = cmd.spawn().map_err(|e| io_error(format!("starting {doing}"), &e))?;
        wait(child, timeout, &doing)
    }

    /// The host's cgroup2 root (after `enter`, which opened it while it was in reach).
    pub fn host_cgroup2(&self) -> Result<BorrowedFd<'_>> {
        self.confine()?.cgroup2_root().ok_or_else(|| Error::Failed("this host has no cgroup2 hierarchy mounted".into()))
    }

    /// What the container's programs may have (after `enter`).
    fn confined(&self) -> Result<ForChild> {
        self.confine().map(Confine::for_child)
    }

    fn confine(&self) -> Result<&Confine> {
        match self.confine.get() {
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => Err(Error::Failed(format!("the container's privileges are unknown: {e}"))),
            None => Err(Error::Failed("not in the container yet".into())),
        }
    }
}

impl Container {
    /// Starts a daemon of the container again as `Respawn` describes it (after `enter`): in
    /// the init's namespaces, in the old daemon's cgroup, in a new session, with /dev/null as
    /// its standard fds. Waits, bounded, for the started process to exit (a daemon forks and
    /// its parent returns). Never retried: a second copy must never run.
    pub fn respawn(&self, r: &crate::automount::Respawn, timeout: Duration) -> Result<ExitStatus> {
        let doing = format!("starting {} again", Shown(&r.exe));
        let mut cmd = Command::new(OsStr::from_bytes(&r.exe));
        cmd.arg0(OsStr::from_bytes(&r.argv[0]))
            .args(r.argv[1..].iter().map(|a| OsStr::from_bytes(a)))
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for kv in &r.env {
            let (k, v) = kv.split_at(kv.iter().position(|&b| b == b'=').unwrap_or(kv.len()));
            cmd.env(OsStr::from_bytes(k), OsStr::from_bytes(v.get(1..).unwrap_or_default()));
        }
        let pidfd = self.pidfd.as_raw_fd();
        // In the old daemon's cgroup, not the init's.
        let confine = self.confined()?.in_cgroup2(r.cgroup.as_raw_fd());
        // Its working directory, reached without following a symlink (else /).
        let cwd = crate::paths::root().and_then(|root| crate::paths::open_dir(root.as_fd(), &r.cwd));
        let cwd = match cwd {
            Ok(fd) => fd,
            Err(_) => crate::paths::root()?,
        };
        let cwd_fd = cwd.as_raw_fd();
        let (uid, gid) = (r.uid, r.gid);
        let trust = Trust::Container { no_new_privs: false };
        // SAFETY: runs in the forked child before exec; only raw system calls on file
        // descriptors that `self`, `r` and `cwd` keep open for as long as these borrows last.
        unsafe {
            cmd.pre_exec(move || {
                confine.join(BorrowedFd::borrow_raw(pidfd), trust)?;
                rustix::process::setsid()?;
                fchdir(BorrowedFd::borrow_raw(cwd_fd))?;
                confine.drop_privileges(trust, uid, gid)
            });
        }
        let child = cmd.spawn().map_err(|e| io_error(doing.clone(), &e))?;
        wait(child, timeout, &doing).map(|out| out.status)
    }
}

/// A process of the container, for messages: "pid 10483 (278 in the container, sleep)".
pub fn who(pid: u32, ctr_pid: Option<u32>, comm: &[u8]) -> String {
    let inner = ctr_pid.map_or_else(String::new, |p| format!("{p} in the container, "));
    format!("pid {pid} ({inner}{})", Shown(comm))
}

/// The same for a table column: "pid 10483 = 278 inside (sleep)".
pub fn who_short(pid: u32, ctr_pid: Option<u32>, comm: &[u8]) -> String {
    let inner = ctr_pid.map_or_else(String::new, |p| format!(" = {p} inside"));
    format!("pid {pid}{inner} ({})", Shown(comm))
}

/// What one pass over /proc found among the container's processes (host pids).
#[derive(Default)]
pub struct Survey {
    /// One process per mount namespace other than the init's.
    pub nested: Vec<u32>,
    /// Processes waiting in `autofs_wait`: for a mount's master, or for good on a stale one.
    pub blocked: Vec<u32>,
}

/// The `NSpid:` line of /proc/PID/status: the pid in each pid namespace, outermost first.
pub fn nspid(status: &[u8]) -> Vec<u32> {
    status
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"NSpid:"))
        .map(|rest| {
            rest.split(|&b| b == b'\t' || b == b' ')
                .filter(|f| !f.is_empty())
                .map_while(|f| std::str::from_utf8(f).ok()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A namespace, as the kernel identifies it: the device and inode of its nsfs file.
pub type NsId = (u64, u64);

pub fn ns_id(dir: BorrowedFd<'_>, path: &str) -> rustix::io::Result<NsId> {
    rustix::fs::statat(dir, path, rustix::fs::AtFlags::empty()).map(|st| (st.st_dev, st.st_ino))
}

/// `ioctl(fd, NS_GET_PARENT)` (ioctl_ns(2)): the parent of a pid or user namespace, as a new
/// file descriptor.
struct NsGetParent;

// SAFETY: the opcode is NS_GET_PARENT = _IO(0xb7, 0x2); it reads and writes no user memory,
// and on success returns a new file descriptor that the caller owns.
unsafe impl rustix::ioctl::Ioctl for NsGetParent {
    type Output = OwnedFd;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> rustix::ioctl::Opcode {
        rustix::ioctl::opcode::none(0xb7, 0x2)
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: rustix::ioctl::IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<OwnedFd> {
        // SAFETY: a successful NS_GET_PARENT returns a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(out) })
    }
}

fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn is_executable(path: &str) -> bool {
    rustix::fs::stat(path).is_ok_and(|st| st.st_mode & 0o170000 == 0o100000 && st.st_mode & 0o111 != 0)
}

/// Whether `exe` (a /proc/PID/exe link) is systemd. After an upgrade the old binary shows as
/// deleted; merged-/usr and split layouts both occur.
pub fn is_systemd_exe(exe: &[u8]) -> bool {
    let exe = exe.strip_suffix(b" (deleted)").unwrap_or(exe);
    matches!(exe, b"/usr/lib/systemd/systemd" | b"/lib/systemd/systemd")
}

/// Sends SIGKILL to host pid `pid` through a pidfd, so that a pid reused meanwhile is never hit.
pub fn kill_pid(pid: u32) -> Result<OwnedFd> {
    let doing = || format!("killing pid {pid}");
    let raw = i32::try_from(pid).ok().and_then(Pid::from_raw).ok_or_else(|| Error::Failed(doing()))?;
    let pidfd = pidfd_open(raw, PidfdFlags::empty()).map_err(|e| Error::sys(doing(), e))?;
    pidfd_send_signal(&pidfd, Signal::KILL).map_err(|e| Error::sys(doing(), e))?;
    Ok(pidfd)
}

/// Whether the process behind a pidfd has exited (the pidfd polls readable).
pub fn exited(pidfd: BorrowedFd<'_>) -> Result<bool> {
    exited_within(pidfd, Duration::ZERO)
}

/// Whether the process behind a pidfd exits within `wait` (the pidfd polls readable).
fn exited_within(pidfd: BorrowedFd<'_>, wait: Duration) -> Result<bool> {
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let wait = Timespec { tv_sec: wait.as_secs() as i64, tv_nsec: wait.subsec_nanos().into() };
    poll(&mut fds, Some(&wait)).map_err(|e| Error::sys("polling a pidfd", e))?;
    Ok(!fds[0].revents().is_empty())
}

/// Collects a child's output until it exits, killing it with SIGKILL at `timeout`.
fn wait(mut child: std::process::Child, timeout: Duration, doing: &str) -> Result<Output> {
    // The child is ours and not yet reaped: its pid cannot have been reused.
    let pidfd = pidfd_open(Pid::from_child(&child), PidfdFlags::empty())
        .map_err(|e| Error::sys(format!("pidfd_open for {doing}"), e))?;
    let mut pipes = [child.stderr.take().map(OwnedFd::from)];
    for pipe in pipes.iter().flatten() {
        rustix::fs::fcntl_setfl(pipe, OFlags::NONBLOCK).map_err(|e| Error::sys(format!("reading from {doing}"), e))?;
    }
    let mut out = [Vec::new()];
    let deadline = Instant::now() + timeout;
    loop {
        for (pipe, buf) in pipes.iter_mut().zip(out.iter_mut()) {
            if let Some(fd) = pipe
                && drain(fd, buf).map_err(|e| Error::sys(format!("reading from {doing}"), e))?
            {
                *pipe = None;
            }
        }
        // Once it has exited, what it wrote has been read: a grandchild may still hold the pipes.
        if exited(pidfd.as_fd())? {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Failed(format!(
                "{doing}: no answer in {} s, killed it",
                crate::error::seconds(timeout)
            )));
        }
        let mut fds: Vec<PollFd<'_>> = pipes.iter().flatten().map(|p| PollFd::new(p, PollFlags::IN)).collect();
        fds.push(PollFd::new(&pidfd, PollFlags::IN));
        let left = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        match poll(&mut fds, Some(&left)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(Error::sys(format!("waiting for {doing}"), e)),
        }
    }
    for (pipe, buf) in pipes.iter().zip(out.iter_mut()) {
        if let Some(fd) = pipe {
            drain(fd, buf).map_err(|e| Error::sys(format!("reading from {doing}"), e))?;
        }
    }
    let status = child.wait().map_err(|e| io_error(format!("waiting for {doing}"), &e))?;
    let [stderr] = out;
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

fn io_error(doing: String, e: &std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(n) => Error::sys(doing, Errno::from_raw_os_error(n)),
        None => Error::Failed(format!("{doing}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nspid_lines() {
        assert_eq!(nspid(b"Name:\tsleep\nNSpid:\t10483\t278\nNSpgid:\t1\n"), [10483, 278]);
        assert_eq!(nspid(b"NSpid:\t1\n"), [1]);
        assert!(nspid(b"Name:\tx\n").is_empty());
    }

    #[test]
    fn systemd_executables() {
        assert!(is_systemd_exe(b"/usr/lib/systemd/systemd"));
        assert!(is_systemd_exe(b"/lib/systemd/systemd"));
        assert!(is_systemd_exe(b"/usr/lib/systemd/systemd (deleted)"));
        assert!(!is_systemd_exe(b"/usr/sbin/automount"));
        assert!(!is_systemd_exe(b"/usr/lib/systemd/systemd-journald"));
        assert!(!is_systemd_exe(b"/sbin/init"));
    }
}
