//! The restored container, reached in two phases that the types keep apart:
//! - `Host` (host.rs): before entering. Its init held by a pidfd, the host's /proc, the run's
//!   lock, and what must be read while the host is in reach.
//! - `Inside` (inside.rs): after `Host::enter`. Our mount namespace and root are the
//!   container's: mount work, programs of the container, namespace hopping.
//!
//! Both hold the init through `Init` (this file: its pidfd, its /proc directory, what it is)
//! and read other processes through its `Procs` (procs.rs: the host's /proc), by file
//! descriptors opened at the start, so those reads work in either phase. `spawn` is the one
//! way a program is started in the container, with the privileges `confine` says.

mod confine;
mod host;
mod inside;
pub mod ns;
pub mod paths;
pub mod pidfd;
mod procs;
mod spawn;
mod table;

use std::cell::OnceCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::fs::{Mode, OFlags, openat, readlinkat};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, getpid, pidfd_open};

pub use host::{Host, privileged};
pub use inside::Inside;
pub use ns::{NsId, Place};
pub use procs::Procs;
pub use spawn::{PATH as PROGRAM_PATH, Spec, resolve_in};
pub use table::Snapshot;

use crate::error::{Context, Error, Result};
use crate::model::procfs;
use crate::pids::CtrPid;
use crate::settings::{Api, InitPid};

/// The container's init, held by a pidfd (its identity: the pid cannot be reused under it),
/// with its /proc directory; and the host's /proc, through which it reads other processes.
pub struct Init {
    pub pid: Pid,
    pidfd: OwnedFd,
    /// The host's /proc: pids in it and in mountinfo's `pgrp=` are host pids.
    procs: Procs,
    /// The host's /proc/PID of the init.
    dir: OwnedFd,
    /// `key`, once read.
    key: OnceCell<String>,
    /// Whether the init is systemd (`procfs::is_systemd`), found when the host opened it.
    systemd: bool,
}

/// Where a run stands: still outside, or already inside (a recovery entered first).
pub enum Reached {
    Outside(Host),
    In(Inside),
}

impl Reached {
    pub fn init(&self) -> &Init {
        match self {
            Reached::Outside(host) => host.init(),
            Reached::In(inside) => inside.init(),
        }
    }

    pub fn enter(self, api: Api) -> Result<Inside> {
        match self {
            Reached::Outside(host) => host.enter(api),
            Reached::In(inside) => Ok(inside),
        }
    }
}

impl Init {
    /// The container as a plan knows it.
    pub fn as_planned(&self) -> crate::model::plan::Container {
        crate::model::plan::Container { pid: self.host_pid(), systemd: self.is_systemd() }
    }

    /// `pidfd_open(2)` the init first, then open its /proc entries and check that the pidfd's
    /// process still runs: then the pid was not reused in between, and the entries are its.
    /// `init.from` says where the pid came from, for errors.
    fn open(init: InitPid) -> Result<Self> {
        let InitPid { pid, from: name } = init;
        let bad = |why| Error::Pid { name, value: Some(OsStr::new(&pid.to_string()).into()), why };
        if pid == getpid() {
            return Err(bad("is autofs-restart itself"));
        }
        let pidfd = pidfd_open(pid, PidfdFlags::empty()).map_err(|e| match e {
            Errno::SRCH => bad("no process has this pid"),
            e => Error::sys(format!("pidfd_open {pid}"), e),
        })?;
        let procs = Procs::open()?;
        let dir = openat(procs.dir(), pid.to_string(), dir_flags(), Mode::empty()).map_err(|e| match e {
            Errno::NOENT => bad("no process has this pid"),
            e => Error::sys(format!("opening /proc/{pid}"), e),
        })?;
        // Exited but not reaped yet: a zombie. (Fully gone, pidfd_open would have failed.)
        if pidfd::exited(pidfd.as_fd())? {
            return Err(bad("has exited: a zombie, not a running init"));
        }
        // A kernel thread has no executable, and neither has a zombie: neither is a container.
        if let Err(Errno::NOENT) = readlinkat(&dir, "exe", Vec::new()) {
            return Err(bad("has no executable: a kernel thread or a zombie, not a container's init"));
        }
        Ok(Init { pid, pidfd, procs, dir, key: OnceCell::new(), systemd: false })
    }

    /// The host's /proc, for what other processes (host pids) show there.
    pub fn procs(&self) -> &Procs {
        &self.procs
    }

    /// The init's host pid, as mountinfo's `pgrp=` shows it.
    pub fn host_pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get().unsigned_abs()
    }

    /// The pidfd the init is held by.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Opens `path` below the init's /proc directory.
    fn open_own(&self, path: &str, flags: OFlags) -> Result<OwnedFd> {
        openat(&self.dir, path, flags, Mode::empty()).map_err(|e| {
            let pid = self.pid;
            match e {
                // Root lacks the ptrace access these links take: it is not in the host's user
                // namespace, or a security module (Yama, SELinux, AppArmor) refuses it.
                Errno::ACCESS | Errno::PERM => Error::sys(
                    format!(
                        "opening /proc/{pid}/{path} (run autofs-restart as root in the host's namespaces, where no \
                         security module keeps it from tracing pid {pid})"
                    ),
                    e,
                ),
                e => Error::sys(format!("opening /proc/{pid}/{path}"), e),
            }
        })
    }

    /// Whether the init exits within `wait` (or has exited since `open`): then the container
    /// is gone. An init that dies takes a while: it first waits for every other process of
    /// its pid namespace to die.
    pub fn gone_within(&self, wait: Duration) -> bool {
        pidfd::exited_within(self.pidfd.as_fd(), wait).unwrap_or(true)
    }

    /// Whether the init is systemd: only then are there systemd units to restart.
    pub fn is_systemd(&self) -> bool {
        self.systemd
    }

    /// The init's mountinfo: paths relative to its root, `pgrp=` in the host's pid namespace.
    pub fn mountinfo(&self) -> Result<Vec<u8>> {
        let doing = format!("reading /proc/{}/mountinfo", self.pid);
        let fd = openat(&self.dir, "mountinfo", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).context(&*doing)?;
        let mut text = Vec::with_capacity(64 * 1024);
        File::from(fd).read_to_end(&mut text).context(doing)?;
        Ok(text)
    }

    /// The container's processes (host pids): those whose pid namespace is the init's or lies
    /// below it. One pass over the host's /proc.
    pub fn container_pids(&self) -> Result<Vec<u32>> {
        let own_pid = self.own_ns("pid")?;
        let mut below: HashMap<NsId, bool> = HashMap::new();
        let mut pids = self.procs().pids()?;
        // A process that exits meanwhile is simply not counted.
        pids.retain(|&pid| match self.procs().ns(pid, "pid") {
            Ok(ns) => ns == own_pid || *below.entry(ns).or_insert_with(|| self.procs().pid_ns_below(pid, own_pid)),
            Err(_) => false,
        });
        Ok(pids)
    }

    /// The init's namespace of kind `kind`.
    fn own_ns(&self, kind: &str) -> Result<NsId> {
        ns::id(self.dir.as_fd(), &format!("ns/{kind}")).context(self.shown(&format!("ns/{kind}")))
    }

    /// One pass over the container's processes: finds one process in each mount namespace
    /// other than the init's, and every process waiting in the kernel's autofs code.
    pub fn survey(&self) -> Result<Survey> {
        let own_mnt = self.own_ns("mnt")?;
        let mut survey = Survey::default();
        let mut seen = Vec::new();
        for pid in self.container_pids()? {
            if self.procs().still_blocked(pid) {
                survey.blocked.push(pid);
            }
            let Ok(mnt) = self.procs().ns(pid, "mnt") else { continue };
            if mnt != own_mnt && !seen.contains(&mnt) {
                seen.push(mnt);
                survey.nested.push(pid);
            }
        }
        Ok(survey)
    }

    /// "reading /proc/PID/NAME", for errors.
    fn shown(&self, name: &str) -> String {
        format!("reading /proc/{}/{name}", self.pid)
    }

    /// The pid of host pid `pid` in the container's pid namespace.
    pub fn ctr_pid(&self, pid: u32) -> Option<CtrPid> {
        // The init is 1 in its namespace: its depth says which NSpid column is the container's.
        let depth = procfs::nspid(&self.procs().proc_file(self.host_pid(), "status")?).len();
        procfs::nspid(&self.procs().proc_file(pid, "status")?).get(depth.checked_sub(1)?).copied().map(CtrPid)
    }

    /// A name for this container that no other gets while the host runs (see `layout::key`).
    pub fn key(&self) -> Result<&str> {
        if let Some(key) = self.key.get() {
            return Ok(key);
        }
        let stat = self.procs().proc_file(self.host_pid(), "stat");
        match stat.as_deref().and_then(procfs::start_time_of) {
            Some(t) => Ok(self.key.get_or_init(|| crate::model::layout::key(self.host_pid(), t))),
            None => Err(Error::check(format!("reading /proc/{}/stat: no start time", self.pid))),
        }
    }
}

/// What one pass over /proc found among the container's processes (host pids).
#[derive(Default)]
pub struct Survey {
    /// One process per mount namespace other than the init's.
    pub nested: Vec<u32>,
    /// Processes waiting in `autofs_wait`: for a mount's master, or for good on a stale one.
    pub blocked: Vec<u32>,
}

/// Joins mount namespace `mnt` and makes `root`, a directory in it, our root and working
/// directory: setns(2) puts us at the namespace's root, and a container can be chrooted below it.
fn move_into(mnt: BorrowedFd<'_>, root: BorrowedFd<'_>) -> rustix::io::Result<()> {
    rustix::thread::move_into_link_name_space(mnt, Some(rustix::thread::LinkNameSpaceType::Mount))?;
    rustix::process::fchdir(root)?;
    rustix::process::chroot(".")?;
    rustix::process::chdir("/")
}

fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}
