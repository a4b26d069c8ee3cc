//! What the host's /proc says about the container's processes: the masters of its autofs mounts
//! (the planner's `Facts`), its nested mount namespaces and their copies of its autofs mounts
//! (judged by `nested`), and its processes blocked on autofs mounts.

use crate::container::{Init, Inside, Place};
use crate::error::Result;
use crate::model::autofs::Table;
use crate::model::blocked;
use crate::model::nested::{self, Namespace, Reach};
use crate::model::plan::Facts;
use crate::model::procfs;
use crate::pids::CtrPid;
use crate::show::{Shown, who};

/// The planner's facts, read from the host's /proc.
pub struct ProcFacts<'i> {
    init: &'i Init,
    /// Masters found so far, by group: a daemon serves many mounts, and its group is checked
    /// first (`Init::pipe_holder` may take a pass over all of /proc).
    known: Vec<(u32, u32)>,
}

impl<'i> ProcFacts<'i> {
    pub fn new(init: &'i Init) -> Self {
        ProcFacts { init, known: Vec::new() }
    }
}

impl Facts for ProcFacts<'_> {
    fn holder(&mut self, pgrp: u32, ino: u64) -> Result<Option<u32>> {
        let init = self.init;
        if let Some(&(_, pid)) =
            self.known.iter().find(|&&(group, pid)| group == pgrp && init.procs().holds_pipe(pid, ino).unwrap_or(false))
        {
            return Ok(Some(pid));
        }
        let found = init.procs().pipe_holder(pgrp, ino)?;
        if let Some(pid) = found {
            self.known.push((pgrp, pid));
        }
        Ok(found)
    }

    fn is_automount(&mut self, pid: u32) -> bool {
        self.init.procs().exe_of(pid).is_some_and(|exe| procfs::is_automount_exe(&exe))
    }

    fn service(&mut self, pid: u32) -> Option<String> {
        self.init.procs().proc_file(pid, "cgroup").as_deref().and_then(procfs::service_of)
    }

    fn parent(&mut self, pid: u32) -> Option<u32> {
        self.init.procs().proc_file(pid, "stat").as_deref().and_then(procfs::parent_of)
    }

    fn comm(&mut self, pid: u32) -> Option<Vec<u8>> {
        self.init.procs().comm(pid)
    }
}

/// The container's nested mount namespaces that hold autofs mounts, from one process of each
/// (`Init::survey`): one mountinfo read per namespace.
pub fn namespaces(init: &Init, main: &Table<'_>, pids: &[u32]) -> Result<Vec<Namespace>> {
    // A process that exits meanwhile takes its namespace's view with it; fine.
    let found: Vec<(u32, Vec<u8>)> =
        pids.iter().filter_map(|&pid| init.procs().proc_file(pid, "mountinfo").map(|text| (pid, text))).collect();
    let judged = nested::judge(main, &found)?;
    Ok(judged
        .into_iter()
        .map(|(pid, copies)| Namespace {
            pid,
            ctr_pid: init.ctr_pid(pid),
            comm: init.procs().comm(pid).unwrap_or_else(|| b"gone".to_vec()),
            copies,
        })
        .collect())
}

/// The mount namespace and root of each of `namespaces` with private copies, held open by the
/// pid that names it: they stay even if its processes end before the copies are made
/// catatonic.
pub struct Places(Vec<(u32, Place)>);

impl Places {
    pub fn open(init: &Init, namespaces: &[Namespace]) -> Places {
        let private = namespaces.iter().filter(|ns| ns.copies.iter().any(|c| c.reach == Reach::Private));
        Places(private.filter_map(|ns| Some((ns.pid, init.procs().open_place(ns.pid).ok()?))).collect())
    }

    /// That of the namespace named by `pid`, if it was held.
    pub fn of(&self, pid: u32) -> Option<&Place> {
        self.0.iter().find(|(p, _)| *p == pid).map(|(_, place)| place)
    }
}

/// A process blocked on an autofs mount: who, on which mount point, looking up which path.
pub struct Blocked {
    pub pid: u32,
    pub ctr_pid: Option<CtrPid>,
    pub comm: Vec<u8>,
    pub on: Option<Vec<u8>>,
    pub path: Option<Vec<u8>>,
}

impl Blocked {
    /// Reads what `pid`, blocked in the kernel's autofs code, is looking up (inside: its links
    /// are then the container's paths), and on which of the autofs mount `points`.
    pub fn of<'p>(inside: &Inside, pid: u32, points: impl IntoIterator<Item = &'p [u8]>) -> Blocked {
        let init = inside.init();
        let path = inside.blocked_path(pid);
        let on = path.as_deref().and_then(|p| blocked::mount_of(p, points)).map(<[u8]>::to_vec);
        Blocked { pid, ctr_pid: init.ctr_pid(pid), comm: init.procs().comm(pid).unwrap_or_default(), on, path }
    }

    /// The warning for a process still blocked after the fix.
    pub fn warning(&self) -> String {
        format!(
            "warning: {} is still blocked {}: it waits on the old superblock, which nothing answers any more; SIGKILL ends it",
            who(self.pid, self.ctr_pid, &self.comm),
            self.on_what()
        )
    }

    /// The line for a process released by making its old superblock catatonic.
    pub fn released(&self) -> String {
        format!(
            "{} was blocked {}: released, its call failed with ENOENT; a retry reaches the new mount",
            who(self.pid, self.ctr_pid, &self.comm),
            self.on_what()
        )
    }

    /// The line for a process killed as `--blocked kill` asks.
    pub fn killed(&self) -> String {
        format!(
            "{} was blocked {}: nothing could release it, killed (--blocked kill)",
            who(self.pid, self.ctr_pid, &self.comm),
            self.on_what()
        )
    }

    /// "pid N (M in the container, CMD) waits on /mount (looking up /path)"
    pub fn waiting(&self) -> String {
        format!("{} waits {}", who(self.pid, self.ctr_pid, &self.comm), self.on_what())
    }

    /// "on /mount (looking up /path)"
    fn on_what(&self) -> String {
        let on = match &self.on {
            Some(point) => format!("on {}", Shown(point)),
            None => "on an autofs mount".into(),
        };
        let looking = self.path.as_ref().map_or_else(String::new, |p| format!(" (looking up {})", Shown(p)));
        format!("{on}{looking}")
    }
}
