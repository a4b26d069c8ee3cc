//! The plan: who serves each autofs mount of the container, and what a fix does about it.
//! Pure: made from the parsed table and facts about processes (`Facts`), so that `status`,
//! `--dry-run` and `restart` see one and the same thing, and it is tested without root.
//!
//! A kind of master is a variant of `Master`; the fix has one module per kind (`systemd`,
//! `automount`) and one match arm for it in `restart`.

use crate::error::Result;
use crate::model::autofs::{Autofs, Table};
use crate::model::mountinfo::{AutofsKind, Dev};
use crate::model::multimount::{self, InUse, Reset};
use crate::model::nested::{Namespace, Reach};
use crate::model::units;
use crate::settings::Policy;
use crate::show::Shown;

/// Who serves an autofs mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Master {
    /// The container's systemd: the automount unit named after the mount point.
    Unit(String),
    /// The autofs package's daemon (host pid), and who starts it again.
    Daemon { pid: u32, supervisor: Supervisor },
    /// Another process (host pid), with its command name while it runs.
    Other { pid: u32, comm: Option<Vec<u8>> },
    /// None that we can see: `pgrp=` names no process of our pid namespace.
    None,
}

/// What kind of master serves a mount, as the overview counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedBy {
    Systemd,
    Automount,
    Another,
    Nothing,
}

impl ServedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ServedBy::Systemd => "systemd",
            ServedBy::Automount => "automount",
            ServedBy::Another => "another process",
            ServedBy::Nothing => "nothing",
        }
    }
}

impl Master {
    pub fn served_by(&self) -> ServedBy {
        match self {
            Master::Unit(_) => ServedBy::Systemd,
            Master::Daemon { .. } => ServedBy::Automount,
            Master::Other { .. } => ServedBy::Another,
            Master::None => ServedBy::Nothing,
        }
    }
}

/// Whether nothing serves a mount: catatonic (an access fails at once), or without a master
/// (an access hangs). What `status` counts as needing a look.
pub fn unserved(catatonic: bool, by: ServedBy) -> bool {
    catatonic || by == ServedBy::Nothing
}

/// Who starts an automount daemon again once it is killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervisor {
    /// A service of the container's systemd.
    Systemd(String),
    /// Nobody: it daemonised on its own, and its parent is the container's init.
    Init,
    /// Another process (host pid) that keeps it alive.
    Other(u32),
    /// Nobody: it is the container's init itself (`automount -f` as a runtime's entry
    /// point), and its death would end the container.
    IsInit,
}

/// What the planner asks about processes: the host's /proc in a run, a table in the tests.
pub trait Facts {
    /// The process of group `pgrp` that holds the pipe with inode `ino`: the master.
    fn holder(&mut self, pgrp: u32, ino: u64) -> Result<Option<u32>>;
    fn is_automount(&mut self, pid: u32) -> bool;
    /// The systemd service whose cgroup holds `pid`.
    fn service(&mut self, pid: u32) -> Option<String>;
    fn parent(&mut self, pid: u32) -> Option<u32>;
    fn comm(&mut self, pid: u32) -> Option<Vec<u8>>;
}

/// The container as a plan knows it: its init's host pid, and whether that is systemd.
#[derive(Debug, Clone, Copy)]
pub struct Container {
    pub pid: u32,
    pub systemd: bool,
}

/// Who serves the autofs mount `a`.
pub fn master_of(a: &Autofs<'_, '_>, init: Container, facts: &mut dyn Facts) -> Result<Master> {
    let Some(pgrp) = a.options.pgrp else { return Ok(Master::None) };
    if pgrp == init.pid && init.systemd {
        return Ok(Master::Unit(units::unit_for_path(&a.mount.mount_point)));
    }
    // The master is the process that holds the pipe, in the group `pgrp=` names: under a
    // supervisor, `automount -f` does not lead its group.
    let holder = match a.options.pipe_ino {
        Some(ino) => facts.holder(pgrp, ino)?,
        None => None,
    };
    Ok(match holder {
        Some(pid) if facts.is_automount(pid) => Master::Daemon { pid, supervisor: supervisor_of(pid, init, facts) },
        _ => {
            let pid = holder.unwrap_or(pgrp);
            Master::Other { pid, comm: facts.comm(pid) }
        }
    })
}

/// How a daemon is kept running: by a service of the container's systemd, by nobody (its
/// parent is the init, or it is the init), or by another process.
fn supervisor_of(pid: u32, init: Container, facts: &mut dyn Facts) -> Supervisor {
    if pid == init.pid {
        return Supervisor::IsInit;
    }
    if let Some(unit) = init.systemd.then(|| facts.service(pid)).flatten() {
        return Supervisor::Systemd(unit);
    }
    match facts.parent(pid) {
        Some(parent) if parent != init.pid => Supervisor::Other(parent),
        _ => Supervisor::Init,
    }
}

/// The plan of a fix.
#[derive(Debug, Default)]
pub struct Plan {
    /// Automount units of the container's systemd to restart.
    pub units: Vec<UnitPlan>,
    /// Automount daemons to restart.
    pub daemons: Vec<DaemonPlan>,
    /// Autofs mounts left alone, and their masters: said, not failed.
    pub alone: Vec<(Vec<u8>, Master)>,
    /// Units asked for that no autofs mount of the container's systemd belongs to: failed.
    pub missing: Vec<String>,
}

/// One automount unit to restart.
#[derive(Debug, Clone)]
pub struct UnitPlan {
    pub name: String,
    pub path: Vec<u8>,
    /// The stale autofs mount: its superblock and the master's pipe it is wired to.
    pub dev: Dev,
    pub pipe_ino: Option<u64>,
    /// What sits on it, lowest first.
    pub stack: Vec<Layer>,
}

/// A mount stacked on an autofs mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub dev: Dev,
    pub root: Vec<u8>,
    /// "tmpfs srv-data", for messages.
    pub what: String,
}

/// One automount daemon to restart, and the mounts it serves.
#[derive(Debug, Clone)]
pub struct DaemonPlan {
    /// Host pid: the process that holds the mounts' pipe.
    pub pid: u32,
    pub supervisor: Supervisor,
    /// Its mounts that a restart keeps as they are (the new daemon takes them over).
    pub mounts: Vec<Served>,
    /// Its idle triggered direct multi-mounts, unmounted while no daemon runs (`multimount`).
    pub resets: Vec<Reset>,
    /// A triggered direct multi-mount in use: then it is left running.
    pub in_use: Option<InUse>,
}

/// An autofs mount a daemon serves, as it was before the restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub path: Vec<u8>,
    pub id: u32,
    pub dev: Dev,
    pub pipe_ino: Option<u64>,
    /// What sits on it and inside it: must be the same afterwards.
    pub stack: Vec<u32>,
    pub inside: usize,
    pub kind: Option<AutofsKind>,
}

impl Served {
    pub fn of(a: &Autofs<'_, '_>) -> Self {
        Served {
            path: a.mount.mount_point.to_vec(),
            id: a.mount.id,
            dev: a.mount.dev,
            pipe_ino: a.options.pipe_ino,
            stack: a.stack.iter().map(|m| m.id).collect(),
            inside: a.inside,
            kind: a.options.kind,
        }
    }

    /// A direct or offset mount with nothing on it: what `--probe` triggers. (An indirect
    /// mount has no one key to trigger; a mount with something on top would not trigger.)
    pub fn probe_me(&self) -> bool {
        matches!(self.kind, Some(AutofsKind::Direct | AutofsKind::Offset)) && self.stack.is_empty()
    }
}

/// The layers on an autofs mount, lowest first.
pub fn layers(a: &Autofs<'_, '_>) -> Vec<Layer> {
    let what = |m: &crate::model::mountinfo::Mount<'_>| format!("{} {}", Shown(&m.fs_type), Shown(&m.source()));
    a.stack.iter().map(|m| Layer { dev: m.dev, root: m.root().to_vec(), what: what(m) }).collect()
}

impl Plan {
    /// Plans the fix of the container's autofs mounts in `table`. With `wanted` units, only
    /// those, and nothing of any other master.
    pub fn make(table: &Table<'_>, init: Container, wanted: &[String], facts: &mut dyn Facts) -> Result<Plan> {
        let mut plan = Plan::default();
        for a in table.autofs() {
            let unit =
                (a.options.pgrp == Some(init.pid) && init.systemd).then(|| units::unit_for_path(&a.mount.mount_point));
            if !wanted.is_empty() && !unit.as_ref().is_some_and(|u| wanted.contains(u)) {
                continue;
            }
            match master_of(&a, init, facts)? {
                Master::Unit(name) => plan.units.push(UnitPlan {
                    name,
                    path: a.mount.mount_point.to_vec(),
                    dev: a.mount.dev,
                    pipe_ino: a.options.pipe_ino,
                    stack: layers(&a),
                }),
                Master::Daemon { pid, supervisor } => {
                    let d = match plan.daemons.iter().position(|d| d.pid == pid) {
                        Some(i) => &mut plan.daemons[i],
                        None => {
                            let (mounts, resets, in_use) = (Vec::new(), Vec::new(), None);
                            plan.daemons.push(DaemonPlan { pid, supervisor, mounts, resets, in_use });
                            let last = plan.daemons.len() - 1;
                            &mut plan.daemons[last]
                        }
                    };
                    match multimount::of(table, &a) {
                        Some(Ok(reset)) => d.resets.push(reset),
                        Some(Err(in_use)) => d.in_use = d.in_use.take().or(Some(in_use)),
                        None => d.mounts.push(Served::of(&a)),
                    }
                }
                other => plan.alone.push((a.mount.mount_point.to_vec(), other)),
            }
        }
        plan.missing = wanted.iter().filter(|w| !plan.units.iter().any(|u| &u.name == *w)).cloned().collect();
        // The offsets below a reset base go with it: the new daemon mounts them again later.
        for d in &mut plan.daemons {
            let gone: Vec<&Vec<u8>> = d.resets.iter().flat_map(|r| &r.below).collect();
            d.mounts.retain(|m| !gone.contains(&&m.path));
        }
        Ok(plan)
    }

    /// Whether there is nothing to restart.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty() && self.daemons.is_empty()
    }

    /// The private copies of the units' autofs mounts in nested namespaces, unit by unit.
    pub fn private_copies(&self, namespaces: &[Namespace]) -> Vec<PrivateCopy> {
        let mut found = Vec::new();
        for u in &self.units {
            for ns in namespaces {
                for c in ns.copies.iter().filter(|c| c.reach == Reach::Private && c.dev == u.dev) {
                    found.push(PrivateCopy {
                        unit: u.name.clone(),
                        of: c.of.clone().unwrap_or_default(),
                        path: c.path.clone(),
                        ns: ns.describe(),
                        on_top: c.on_top,
                    });
                }
            }
        }
        found
    }

    /// Applies the nested policy at the fix: finds each private copy of a unit's autofs mount
    /// in the nested namespaces, and with `skip` leaves those units out (`report::nested`
    /// says it all). With `fail`, any copy means nothing is done.
    pub fn apply_nested_policy(&mut self, namespaces: &[Namespace], policy: Policy) -> Nested {
        let copies = self.private_copies(namespaces);
        let mut skipped = Vec::new();
        self.units.retain(|u| {
            let skip = policy == Policy::Skip && copies.iter().any(|c| c.unit == u.name);
            if skip {
                skipped.push(u.name.clone());
            }
            !skip
        });
        Nested { copies, skipped, policy }
    }
}

/// What the nested policy found and did at the fix.
pub struct Nested {
    pub copies: Vec<PrivateCopy>,
    /// The units left out (`skip`), in the plan's order.
    pub skipped: Vec<String>,
    pub policy: Policy,
}

impl Nested {
    /// Whether nothing may be done (`fail`, and a private copy).
    pub fn refuses(&self) -> bool {
        self.policy == Policy::Fail && !self.copies.is_empty()
    }
}

/// A private copy of a unit's autofs mount in a nested namespace: a restart of the unit
/// leaves it without a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateCopy {
    pub unit: String,
    /// The init's mount point of the same superblock, and the copy's in its namespace.
    pub of: Vec<u8>,
    pub path: Vec<u8>,
    /// "the mount namespace of pid N (M in the container, CMD)"
    pub ns: String,
    /// How many mounts sit on it there.
    pub on_top: usize,
}

impl DaemonPlan {
    /// The mount points it serves, for messages (those kept, then the bases of those reset).
    pub fn served(&self) -> String {
        let kept = self.mounts.iter().map(|m| &m.path);
        let reset = self.resets.iter().map(|r| &r.base);
        kept.chain(reset).map(|p| Shown(p).to_string()).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mountinfo::parse;
    use crate::model::report;
    use crate::pids::CtrPid;

    /// A process the fake /proc knows.
    struct Proc {
        pid: u32,
        pgrp: u32,
        pipes: Vec<u64>,
        automount: bool,
        service: Option<&'static str>,
        parent: u32,
        comm: &'static str,
    }

    /// Facts from a list of processes; counts the pipe holders looked for.
    #[derive(Default)]
    struct Known {
        procs: Vec<Proc>,
        asked: usize,
    }

    impl Known {
        fn find(&self, pid: u32) -> Option<&Proc> {
            self.procs.iter().find(|p| p.pid == pid)
        }
    }

    impl Facts for Known {
        fn holder(&mut self, pgrp: u32, ino: u64) -> Result<Option<u32>> {
            self.asked += 1;
            Ok(self.procs.iter().find(|p| p.pgrp == pgrp && p.pipes.contains(&ino)).map(|p| p.pid))
        }
        fn is_automount(&mut self, pid: u32) -> bool {
            self.find(pid).is_some_and(|p| p.automount)
        }
        fn service(&mut self, pid: u32) -> Option<String> {
            self.find(pid).and_then(|p| p.service.map(String::from))
        }
        fn parent(&mut self, pid: u32) -> Option<u32> {
            self.find(pid).map(|p| p.parent)
        }
        fn comm(&mut self, pid: u32) -> Option<Vec<u8>> {
            self.find(pid).map(|p| p.comm.as_bytes().to_vec())
        }
    }

    const RESTORED: &[u8] = include_bytes!("../../tests/fixtures/mountinfo/systemd-container-restored.txt");
    const SYSTEMD: Container = Container { pid: 10632, systemd: true };

    /// The restored container's table, with an automount daemon (pid 300, supervised by 299,
    /// in 299's group) serving a direct and an indirect map, and a mount of another master.
    fn with_daemon() -> Vec<u8> {
        let mut text = RESTORED.to_vec();
        text.extend_from_slice(
            b"900 29 0:90 / /srv/direct rw shared:90 - autofs /etc/auto.direct rw,fd=7,pgrp=299,timeout=300,minproto=5,maxproto=5,direct,pipe_ino=777
901 900 0:91 / /srv/direct rw shared:91 - ext4 /dev/sdb rw
902 29 0:92 / /srv/ind rw shared:92 - autofs /etc/auto.ind rw,fd=8,pgrp=299,timeout=300,minproto=5,maxproto=5,indirect,pipe_ino=778
903 29 0:93 / /srv/other rw shared:93 - autofs other rw,fd=5,pgrp=500,timeout=0,minproto=5,maxproto=5,direct,pipe_ino=779
904 29 0:94 / /srv/dead rw shared:94 - autofs dead rw,fd=-1,pgrp=0,timeout=0,minproto=5,maxproto=5,direct,pipe_ino=-1
",
        );
        text
    }

    fn known() -> Known {
        Known {
            procs: vec![
                Proc { pid: 299, pgrp: 299, pipes: vec![], automount: false, service: None, parent: 10632, comm: "sh" },
                Proc {
                    pid: 300,
                    pgrp: 299,
                    pipes: vec![777, 778],
                    automount: true,
                    service: None,
                    parent: 299,
                    comm: "automount",
                },
                Proc {
                    pid: 500,
                    pgrp: 500,
                    pipes: vec![779],
                    automount: false,
                    service: None,
                    parent: 10632,
                    comm: "mymaster",
                },
            ],
            asked: 0,
        }
    }

    #[test]
    fn unserved_is_catatonic_or_without_a_master() {
        let daemon = Master::Daemon { pid: 7, supervisor: Supervisor::Init };
        assert_eq!(daemon.served_by(), ServedBy::Automount);
        assert!(!unserved(false, daemon.served_by()));
        assert!(unserved(true, daemon.served_by()), "catatonic: an access fails at once");
        assert!(unserved(false, Master::None.served_by()), "no master: an access hangs");
        assert_eq!(Master::Other { pid: 1, comm: None }.served_by().as_str(), "another process");
    }

    #[test]
    fn each_mount_to_its_master() {
        let text = with_daemon();
        let table = Table::new(parse(&text).unwrap());
        let mut facts = known();
        let plan = Plan::make(&table, SYSTEMD, &[], &mut facts).unwrap();
        let names: Vec<&str> = plan.units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["proc-sys-fs-binfmt_misc.automount", "srv-data.automount", "srv-idle.automount"]);
        assert_eq!(plan.units[1].stack.len(), 1);
        assert_eq!(plan.daemons.len(), 1, "one daemon serves both maps");
        let d = &plan.daemons[0];
        assert_eq!((d.pid, &d.supervisor), (300, &Supervisor::Other(299)));
        assert_eq!(d.served(), "/srv/direct, /srv/ind");
        assert_eq!(
            report::notes(&plan),
            [
                "/srv/other: left alone: its master is pid 500 (mymaster), not the container's systemd",
                "/srv/dead: left alone: it has no master",
            ]
        );
        assert!(plan.missing.is_empty());
        let said = report::describe(&plan);
        assert_eq!(
            said[0],
            "automount (pid 300): would SIGKILL it and start it again through its supervisor (pid 299); it serves /srv/direct, /srv/ind"
        );
        assert!(said[2].starts_with("srv-data.automount: would restart it (autofs "), "{said:?}");
        assert!(said[2].ends_with(", setting tmpfs srv-data aside and putting it back"), "{said:?}");
    }

    #[test]
    fn supervisors() {
        let mut facts = known();
        facts.procs[1].service = Some("autofs.service");
        assert_eq!(supervisor_of(300, SYSTEMD, &mut facts), Supervisor::Systemd("autofs.service".into()));
        let not_systemd = Container { pid: 10632, systemd: false };
        assert_eq!(supervisor_of(300, not_systemd, &mut facts), Supervisor::Other(299));
        facts.procs[1].parent = 10632;
        assert_eq!(supervisor_of(300, not_systemd, &mut facts), Supervisor::Init);
        let daemon_is_init = Container { pid: 300, systemd: false };
        assert_eq!(supervisor_of(300, daemon_is_init, &mut facts), Supervisor::IsInit);
    }

    #[test]
    fn wanted_units_only_and_nothing_asked_of_other_masters() {
        let text = with_daemon();
        let table = Table::new(parse(&text).unwrap());
        let mut facts = known();
        let wanted = ["srv-idle.automount".to_string(), "srv-nothing.automount".to_string()];
        let plan = Plan::make(&table, SYSTEMD, &wanted, &mut facts).unwrap();
        assert_eq!(plan.units.len(), 1);
        assert!(plan.daemons.is_empty() && plan.alone.is_empty());
        assert_eq!(facts.asked, 0, "no pipe holder looked for");
        assert_eq!(
            report::notes(&plan),
            ["srv-nothing.automount: failed: no autofs mount of the container's systemd belongs to this unit"]
        );
    }

    #[test]
    fn an_init_that_is_not_systemd_serves_no_unit() {
        let table = Table::new(parse(RESTORED).unwrap());
        let mut facts = Known::default();
        let plan = Plan::make(&table, Container { pid: 10632, systemd: false }, &[], &mut facts).unwrap();
        assert!(plan.is_empty());
        assert_eq!(plan.alone.len(), 3);
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/mountinfo/{name}.txt", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// The restored container with a private and a slave nested namespace (real tables).
    fn nested_plan(policy: Policy) -> (Plan, Vec<String>, usize) {
        let (main, private, slave) =
            (fixture("nested-restored-main"), fixture("nested-restored-private"), fixture("nested-restored-slave"));
        let main = Table::new(parse(&main).unwrap());
        let init = main.autofs()[0].options.pgrp.unwrap();
        let mut plan = Plan::make(&main, Container { pid: init, systemd: true }, &[], &mut Known::default()).unwrap();
        let judged = crate::model::nested::judge(&main, &[(7001, private), (7002, slave)]).unwrap();
        let namespaces: Vec<Namespace> = judged
            .into_iter()
            .map(|(pid, copies)| Namespace { pid, ctr_pid: Some(CtrPid(278)), comm: b"sleep".to_vec(), copies })
            .collect();
        let nested = plan.apply_nested_policy(&namespaces, policy);
        let (lines, private) = (report::nested(&nested), nested.copies.len());
        (plan, lines, private)
    }

    #[test]
    fn nested_policies() {
        let (plan, lines, private) = nested_plan(Policy::Restart);
        assert_eq!((plan.units.len(), private, lines.len()), (3, 3, 3), "{lines:?}");
        assert!(lines[0].ends_with(
            "has a private copy at /proc/sys/fs/binfmt_misc in the mount namespace of pid 7001 (278 in the container, sleep): \
             a restart of its master leaves that copy catatonic"
        ), "{lines:?}");
        let (plan, lines, _) = nested_plan(Policy::Skip);
        assert!(plan.units.is_empty());
        assert_eq!(lines.iter().filter(|l| l.ends_with(": left alone (nested policy: skip)")).count(), 3);
        let (_, lines, _) = nested_plan(Policy::Fail);
        assert_eq!(
            lines.last().unwrap(),
            "failed: nothing restarted: 3 private copies in nested mount namespaces (nested policy: fail)"
        );
    }
}
