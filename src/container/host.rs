//! The container seen from the host, before we enter it. What must happen first takes a
//! `Host`; `enter` consumes it and gives the `Inside` that everything afterwards takes.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags, openat};
use rustix::io::Errno;
use rustix::process::{chroot, fchdir};
use rustix::thread::{ThreadNameSpaceType, move_into_thread_name_spaces};

use super::confine::Confine;
use super::{Init, Inside, dir_flags, move_into};
use crate::error::{Context, Error, Result};
use crate::model::procfs;
use crate::settings::{Api, InitPid};
use crate::show::seconds;

/// What reaching into another container takes: entering its namespaces and mounting there
/// (CAP_SYS_ADMIN), reading its processes' /proc entries (CAP_SYS_PTRACE).
const NEEDED: [(u32, &str); 2] = [(21, "CAP_SYS_ADMIN"), (19, "CAP_SYS_PTRACE")];

/// Fails with one line naming what is missing, unless we have what reaching the container
/// takes: else the first refusal would be a bare EACCES or EPERM on some /proc path.
pub fn privileged() -> Result<()> {
    let effective = rustix::thread::capabilities(None).context("reading our capabilities")?.effective;
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| !effective.contains(rustix::thread::CapabilitySet::from_bits_retain(1 << bit)))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Unprivileged { missing })
}

pub struct Host {
    init: Init,
    /// The init's root directory.
    root: OwnedFd,
    /// The init's mount namespace, and ours (the host's).
    mnt: OwnedFd,
    host_mnt: OwnedFd,
}

impl Host {
    /// Holds the init (see `Init::open`) and opens its root and mount namespace; finds out
    /// whether it is systemd.
    pub fn open(init: InitPid) -> Result<Self> {
        privileged()?;
        let mut init = Init::open(init)?;
        let root = init.open_own("root", dir_flags())?;
        // sd_booted(3), in the init's root: walked without following a symlink.
        let booted = crate::container::paths::open_dir(root.as_fd(), b"/run/systemd/system").is_ok();
        init.systemd = procfs::is_systemd(&init.procs().comm(init.host_pid()).unwrap_or_default(), booted);
        let mnt = init.open_own("ns/mnt", OFlags::RDONLY | OFlags::CLOEXEC)?;
        let host_mnt =
            openat(init.procs().dir(), "thread-self/ns/mnt", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .context("opening /proc/thread-self/ns/mnt")?;
        Ok(Host { init, root, mnt, host_mnt })
    }

    pub fn init(&self) -> &Init {
        &self.init
    }

    /// Whether the init is in our own mount namespace: then it is in no container.
    pub fn shares_our_mount_namespace(&self) -> bool {
        let id = |fd: &OwnedFd| rustix::fs::fstat(fd).map(|st| (st.st_dev, st.st_ino)).ok();
        id(&self.mnt).is_some() && id(&self.mnt) == id(&self.host_mnt)
    }

    /// The init's root directory.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Takes the container's run lock: flock(2) on the container's root directory, waiting at
    /// most `timeout` for another run to end. The kernel drops it when the returned fd closes,
    /// even if we are killed, and it leaves nothing behind in the container. Returns whether
    /// we had to wait: then the mount table read before is stale.
    pub fn lock(&self, timeout: Duration) -> Result<(OwnedFd, bool)> {
        let doing = "locking the container's root directory";
        let fd = self.root_dir().context(doing)?;
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
                    return Err(Error::check(format!(
                        "another autofs-restart run{} on this container holds its lock; gave up after {} s: \
                         let it end (`autofs-restart status --pid {}` says what it has set aside), then run again",
                        lock_holder(&fd).map_or_else(String::new, |p| format!(" (pid {p})")),
                        seconds(timeout),
                        self.init.pid,
                    )));
                }
                Err(e) => return Err(Error::sys(doing, e)),
            }
        }
    }

    /// Whether a run holds the container's lock now: a shared flock(2) that cannot be had.
    /// Held for no longer than the try: a run that wants the lock then retries in 20 ms.
    /// Tells a run in progress from what an interrupted one left; false where it cannot tell.
    pub fn run_in_progress(&self) -> bool {
        self.root_dir().is_ok_and(|fd| {
            rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockShared) == Err(Errno::WOULDBLOCK)
        })
    }

    /// The container's root directory as a file of its own, for the lock: "." opens the
    /// directory `root` already is, with no path walk to be misled by.
    fn root_dir(&self) -> rustix::io::Result<OwnedFd> {
        openat(&self.root, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
    }

    /// Runs `op` in the container's mount namespace and root, then goes back to ours: to read
    /// what is relative to them before entering (a dry run never enters). Going back failing
    /// leaves us in the container's namespace: an error, the run ends there.
    pub fn visit<T>(&self, op: impl FnOnce() -> T) -> Result<T> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let ours = openat(rustix::fs::CWD, "/", flags, Mode::empty()).context("opening our root")?;
        let cwd = openat(rustix::fs::CWD, ".", flags, Mode::empty()).context("opening our working directory")?;
        let done = move_into(self.mnt.as_fd(), self.root.as_fd()).map(|()| op());
        move_into(self.host_mnt.as_fd(), ours.as_fd())
            .and_then(|()| fchdir(&cwd))
            .context("going back into our mount namespace and root")?;
        done.context(format!("visiting the mount namespace of pid {}", self.init.pid))
    }

    /// Joins the container's mount namespace and root for the mount work, and its pid namespace
    /// for the programs started from now on. setns(2) through the pidfd, so the namespaces are
    /// the init's even if its pid were reused; setns into a mount namespace needs a
    /// single-threaded process, and we start no thread before this.
    ///
    /// What the container's programs may have is read first, while the host's /proc and
    /// cgroupfs are in reach. If that fails, no program of the container will run, but the
    /// mount work (a recovery above all) goes on. `api` says how the container's programs are
    /// started (see `spawn`).
    pub fn enter(self, api: Api) -> Result<Inside> {
        let confine = Confine::read(&self.init);
        let Host { init, root, mnt, host_mnt } = self;
        move_into_thread_name_spaces(init.pidfd(), ThreadNameSpaceType::MOUNT | ThreadNameSpaceType::PROCESS_ID)
            .context(format!("entering the namespaces of pid {}", init.pid))?;
        // setns put us at the namespace's root; a container can be chrooted below it.
        fchdir(root.as_fd())
            .and_then(|()| chroot("."))
            .and_then(|()| rustix::process::chdir("/"))
            .context(format!("entering the root of pid {}", init.pid))?;
        Ok(Inside::new(init, (root, mnt, host_mnt), confine, api))
    }
}

/// The host pid of the process holding the flock on `fd`'s file, from /proc/locks.
fn lock_holder(fd: &OwnedFd) -> Option<u32> {
    let st = rustix::fs::fstat(fd).ok()?;
    let locks = std::fs::read("/proc/locks").ok()?;
    procfs::flock_holder(&locks, rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev), st.st_ino)
}
