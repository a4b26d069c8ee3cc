//! The container from inside: after `Host::enter`, our mount namespace and root are the
//! container's. Mount work, the container's programs and our helpers, and hops into mount
//! namespaces of ours take an `Inside`, so none of them can happen before entering.

use std::cell::Cell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::fs::{Mode, OFlags, openat};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use super::confine::Confine;
use super::spawn::{self, Output, Spec, Start};
use super::{Init, Place, move_into};
use crate::error::{Context, Error, Result};
use crate::settings::Api;

pub struct Inside {
    init: Init,
    /// The container's root directory and mount namespace, and the host's (ours before).
    root: OwnedFd,
    mnt: OwnedFd,
    host_mnt: OwnedFd,
    /// What the container's programs may have, read before entering (or why not).
    confine: Result<Confine>,
    /// How programs are started: into their cgroup by clone3, until the kernel refuses it.
    start: Cell<Start>,
    /// The kernel interfaces the run was asked to use, where each fallback starts.
    asked: Api,
}

impl Inside {
    pub(super) fn new(
        init: Init,
        (root, mnt, host_mnt): (OwnedFd, OwnedFd, OwnedFd),
        confine: Result<Confine>,
        api: Api,
    ) -> Self {
        Inside { init, root, mnt, host_mnt, confine, start: Cell::new(Start::first(api)), asked: api }
    }

    pub fn init(&self) -> &Init {
        &self.init
    }

    /// Starts `spec` in the container and waits for it at most `timeout`. After the timeout
    /// it is killed and this is an error; the caller goes on safely.
    pub fn spawn(&self, spec: Spec<'_>, timeout: Duration) -> Result<Output> {
        let confine = self.confine.as_ref().map_err(|e| e.clone().context("the container's privileges are unknown"))?;
        spawn::run(spec, self.init.pidfd(), confine, &self.start, timeout)
    }

    /// Runs a program of the container with the container's privileges only (`Spec::container`).
    pub fn run(&self, program: &str, args: &[&[u8]], timeout: Duration) -> Result<Output> {
        self.spawn(Spec::container(program, args), timeout)
    }

    /// Runs this very program with `args` in the container: its namespaces and cgroup, our
    /// credentials. With `place`, in that other mount namespace and root of the container.
    pub fn run_helper(&self, place: Option<&Place>, args: &[&[u8]], timeout: Duration) -> Result<Output> {
        let spec = Spec::ours(args);
        self.spawn(if let Some(place) = place { spec.in_place(place) } else { spec }, timeout)
    }

    /// The host's cgroup2 root, kept from before entering: a respawned daemon's own cgroup is
    /// found below it.
    pub fn host_cgroup2(&self) -> Result<BorrowedFd<'_>> {
        let confine = self.confine.as_ref().map_err(|e| e.clone().context("the container's privileges are unknown"))?;
        confine.cgroup2_root().ok_or_else(|| Error::check("this host has no cgroup2 hierarchy mounted"))
    }

    /// A link of host pid `pid` in the host's /proc (`cwd`, `fd/N`), as the container's path.
    pub fn link_of(&self, pid: u32, name: &str) -> Option<Vec<u8>> {
        self.init.procs().link_of(pid, name)
    }

    /// The path a blocked process is looking up, as it passed it to the system call it is in
    /// (from /proc/PID/syscall and its memory), made absolute against its working directory
    /// or the directory fd it passed. None when the call is not one we know or the memory
    /// cannot be read.
    pub fn blocked_path(&self, pid: u32) -> Option<Vec<u8>> {
        let call = crate::model::blocked::path_arg(&self.init.procs().proc_file(pid, "syscall")?)?;
        let mem =
            openat(self.init.procs().dir(), format!("{pid}/mem"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .ok()?;
        let mut buf = vec![0u8; 4096];
        let n = rustix::io::pread(&mem, &mut buf, call.addr).ok()?;
        let path = buf[..n].split(|&b| b == 0).next()?.to_vec();
        let base = match call.dirfd {
            _ if path.starts_with(b"/") => Vec::new(),
            None => self.link_of(pid, "cwd")?,
            Some(fd) => self.link_of(pid, &format!("fd/{fd}"))?,
        };
        Some(crate::model::blocked::join(&base, &path))
    }

    /// Runs `op` in mount namespace `ns`, then goes back into the container's namespace and
    /// root. Going back failing leaves us where no mount call can reach the container (they
    /// check the caller's namespace): an error, not a danger.
    pub fn hop<T>(&self, ns: BorrowedFd<'_>, op: impl FnOnce() -> T) -> Result<T> {
        move_into_link_name_space(ns, Some(LinkNameSpaceType::Mount)).context("entering a mount namespace of ours")?;
        let done = op();
        move_into(self.mnt.as_fd(), self.root.as_fd())
            .context(format!("going back into the mount namespace of pid {}", self.init.pid))?;
        Ok(done)
    }

    /// The mountinfo lines of the mounts stacked at each of `paths` (the topmost a path walk
    /// reaches, and each below it at the same mount point, lowest first), made from
    /// statmount(2) records: the cost of the few mounts there, not of the whole table.
    /// ENOSYS where the kernel lacks statmount.
    ///
    /// The walk stops at each mount point without triggering an automount, but a stale
    /// autofs mount in the way can still hold it: only for paths a restart has just served.
    pub fn stacks_at(&self, paths: &[&[u8]]) -> Result<Vec<u8>> {
        use crate::sys::statmount::{statmount, top_mount_id};
        let mut text = Vec::new();
        for &path in paths {
            let (dir, last) = crate::container::paths::parent(self.root.as_fd(), path)?;
            let doing = || format!("reading the mounts at {}", crate::show::Shown(path));
            let mut id = top_mount_id(dir.as_fd(), &last).context(doing())?;
            let mut lines = Vec::new();
            // The chain ends at the mount whose directory holds the mount point.
            for _ in 0..64 {
                let record = statmount(id).context(doing())?;
                if record.mount_point() != path {
                    break;
                }
                lines.push(record.mountinfo_line());
                match record.parent_id() {
                    parent if parent == id => break,
                    parent => id = parent,
                }
            }
            lines.into_iter().rev().for_each(|l| text.extend(l));
        }
        Ok(text)
    }

    /// The kernel interfaces the run was asked to use (`AUTOFS_RESTART_KERNEL_API`).
    pub fn asked(&self) -> Api {
        self.asked
    }

    /// The container's mount namespace.
    pub fn mnt(&self) -> BorrowedFd<'_> {
        self.mnt.as_fd()
    }

    /// The mount namespace we started in: the host's.
    pub fn host_mnt(&self) -> BorrowedFd<'_> {
        self.host_mnt.as_fd()
    }

    /// Opens `name` in the host's /proc/thread-self: of the namespaces we are in now, also
    /// where no /proc is mounted.
    pub fn own_proc_file(&self, name: &str) -> rustix::io::Result<OwnedFd> {
        openat(self.init.procs().dir(), format!("thread-self/{name}"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
    }
}
