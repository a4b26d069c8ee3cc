//! The host's /proc, read by file descriptors opened at the start (so the reads work before
//! and after entering the container): other processes' files, links, namespaces and
//! descriptors, by host pid. A process may end at any moment: a read of one that is gone is
//! None, or empty, never the run's error.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Dir, Mode, OFlags, openat, readlinkat};

use super::dir_flags;
use super::ns::{self, NsId, Place};
use crate::error::{Context, Result};
use crate::model::procfs;

pub struct Procs {
    /// The host's /proc: pids in it and in mountinfo's `pgrp=` are host pids.
    proc: OwnedFd,
}

impl Procs {
    pub(super) fn open() -> Result<Procs> {
        let proc = openat(rustix::fs::CWD, "/proc", dir_flags(), Mode::empty()).context("opening /proc")?;
        Ok(Procs { proc })
    }

    /// /proc itself, to open a process's directory in.
    pub(super) fn dir(&self) -> &OwnedFd {
        &self.proc
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
        if comm.last() == Some(&b'\n') {
            comm.pop();
        }
        Some(comm)
    }

    /// The executable of a host pid, if it still runs and has one.
    pub fn exe_of(&self, pid: u32) -> Option<Vec<u8>> {
        self.link_of(pid, "exe")
    }

    /// A link of host pid `pid` in the host's /proc (`exe`, `cwd`), resolved against our root:
    /// the container's paths only once inside (`Inside::link_of`).
    pub(super) fn link_of(&self, pid: u32, name: &str) -> Option<Vec<u8>> {
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
            let in_group = self.proc_file(pid, "stat").as_deref().and_then(procfs::pgrp_of) == Some(pgrp);
            // A process that exits meanwhile is simply not the one.
            if in_group && self.holds_pipe(pid, ino).unwrap_or(false) {
                return Ok(Some(pid));
            }
        }
        Ok(None)
    }

    /// Every host pid, in one pass over the host's /proc.
    pub(super) fn pids(&self) -> Result<Vec<u32>> {
        // self.proc is O_PATH, which getdents refuses.
        let procs = openat(&self.proc, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .context("opening /proc")?;
        let mut dir = Dir::read_from(&procs).context("reading /proc")?;
        let mut pids = Vec::with_capacity(512);
        while let Some(entry) = dir.read() {
            if let Some(pid) = entry.context("reading /proc")?.file_name().to_str().ok().and_then(|n| n.parse().ok()) {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    /// The namespace of kind `kind` ("mnt", "user", ...) of host pid `pid`.
    pub fn ns(&self, pid: u32, kind: &str) -> rustix::io::Result<NsId> {
        ns::id(self.proc.as_fd(), &format!("{pid}/ns/{kind}"))
    }

    /// Whether the pid namespace of host pid `pid` lies below the one identified by `top`.
    pub(super) fn pid_ns_below(&self, pid: u32, top: NsId) -> bool {
        openat(&self.proc, format!("{pid}/ns/pid"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .is_ok_and(|ns| ns::below(ns, top))
    }

    /// Whether host pid `pid` waits in the kernel's autofs code.
    pub fn still_blocked(&self, pid: u32) -> bool {
        self.proc_file(pid, "wchan").as_deref().is_some_and(procfs::in_autofs_wait)
    }

    /// The mount namespace and root of host pid `pid`, held open: they stay while we hold
    /// them, even if every process in them ends.
    pub fn open_place(&self, pid: u32) -> Result<Place> {
        let open = |name: &str, flags| {
            openat(&self.proc, format!("{pid}/{name}"), flags, Mode::empty())
                .context(format!("opening /proc/{pid}/{name}"))
        };
        Ok(Place { mnt: open("ns/mnt", OFlags::RDONLY | OFlags::CLOEXEC)?, root: open("root", dir_flags())? })
    }

    /// The superblocks (device numbers) of the files host pid `pid` holds open.
    pub fn fd_devs(&self, pid: u32) -> Vec<crate::model::mountinfo::Dev> {
        let mut devs: Vec<crate::model::mountinfo::Dev> = self.fds(pid).into_iter().map(|(_, dev)| dev).collect();
        devs.sort_unstable();
        devs.dedup();
        devs
    }

    /// Each descriptor host pid `pid` holds open, with the superblock of its file, found
    /// through the fd links themselves: no path walk, so nothing is triggered. Empty once it
    /// is gone.
    pub fn fds(&self, pid: u32) -> Vec<(i32, crate::model::mountinfo::Dev)> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let Ok(fds) = openat(&self.proc, format!("{pid}/fd"), flags, Mode::empty()) else { return Vec::new() };
        let Ok(mut dir) = Dir::read_from(&fds) else { return Vec::new() };
        let mut found = Vec::new();
        while let Some(Ok(entry)) = dir.read() {
            let Some(n) = entry.file_name().to_str().ok().and_then(|n| n.parse().ok()) else { continue };
            if let Ok(st) = rustix::fs::statat(&fds, entry.file_name(), rustix::fs::AtFlags::empty()) {
                found.push((n, crate::model::mountinfo::Dev::of_stat(st.st_dev)));
            }
        }
        found
    }

    /// Whether host pid `pid` exists, a zombie not yet reaped included.
    pub fn exists(&self, pid: u32) -> bool {
        rustix::fs::statat(&self.proc, pid.to_string(), rustix::fs::AtFlags::empty()).is_ok()
    }

    /// Whether host process `pid` holds the pipe with inode `ino` (an autofs master's end).
    pub fn holds_pipe(&self, pid: u32, ino: u64) -> Result<bool> {
        Ok(self.pipes(pid)?.binary_search(&ino).is_ok())
    }

    /// The inodes of the pipes host process `pid` holds, sorted: one pass over its fds, for
    /// as many pipes as one asks about (systemd holds one per automount unit).
    pub fn pipes(&self, pid: u32) -> Result<Vec<u64>> {
        let doing = format!("reading /proc/{pid}/fd");
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fds = openat(&self.proc, format!("{pid}/fd"), flags, Mode::empty()).context(&*doing)?;
        let mut dir = Dir::read_from(&fds).context(&*doing)?;
        let mut pipes = Vec::new();
        while let Some(entry) = dir.read() {
            // A closed fd between readdir and readlink is simply not one.
            let link = readlinkat(&fds, entry.context(&*doing)?.file_name(), Vec::new());
            let ino: Option<u64> =
                link.ok().and_then(|l| l.to_str().ok()?.strip_prefix("pipe:[")?.strip_suffix(']')?.parse().ok());
            pipes.extend(ino);
        }
        pipes.sort_unstable();
        Ok(pipes)
    }
}
