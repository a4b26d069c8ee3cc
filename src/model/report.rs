//! The sentences a plan is said in: what is left alone, what a dry run would do, what the
//! nested policy found and did, why there is nothing to do. The plan decides (`plan`); this
//! module only words it, so that the words people and tests read are in one place.

use crate::model::plan::{Master, Nested, Plan, PrivateCopy, Supervisor};
use crate::show::Shown;

/// A line for each mount left alone and each unit asked for that is not there.
pub fn notes(plan: &Plan) -> Vec<String> {
    let alone = plan.alone.iter().map(|(path, master)| match master {
        Master::None => format!("{}: left alone: it has no master", Shown(path)),
        Master::Other { pid, comm } => {
            format!(
                "{}: left alone: its master is {}, not the container's systemd",
                Shown(path),
                process(*pid, comm.as_deref())
            )
        }
        Master::Unit(_) | Master::Daemon { .. } => format!("{}: left alone", Shown(path)),
    });
    alone.chain(plan.missing.iter().map(|u| missing_unit(u))).collect()
}

/// "pid N (COMM)", or "pid N (gone)" where its name could not be read: a process as every
/// line names it.
pub fn process(pid: u32, comm: Option<&[u8]>) -> String {
    format!("pid {pid} ({})", Shown(comm.unwrap_or(b"gone")))
}

/// "N private copy (copies) in nested mount namespaces", as the refusals at the dump and the
/// fix count them.
pub fn private_copies(n: usize) -> String {
    format!("{n} private {} in nested mount namespaces", if n == 1 { "copy" } else { "copies" })
}

/// Why a daemon that is the container's init is never restarted, for every line that says so.
pub const DAEMON_IS_INIT: &str = "it is the container's init: SIGKILL would end the container, and nothing would start \
     it again; restart the container, or run the daemon under an init (a shell that starts it and sleeps, or systemd)";

/// A unit asked for (`--unit`) that has no autofs mount of the container's systemd.
pub fn missing_unit(unit: &str) -> String {
    format!("{unit}: failed: no autofs mount of the container's systemd belongs to this unit")
}

/// Why a run has nothing to do where the container has no autofs mount; `own` when the pid
/// shares this host's mount namespace (it is in no container).
pub fn no_autofs(init: u32, own: bool) -> String {
    let own = if own { format!(", this host's own: pid {init} is in no container") } else { String::new() };
    format!("nothing to do: no autofs mount in the mount namespace of pid {init}{own}")
}

/// Why a run has nothing to do where the container's autofs mounts have no master to restart.
pub const NO_MASTER: &str =
    "nothing to do: no autofs mount of the container is served by its systemd or an automount daemon";

/// "UNIT: OF has a private copy at PATH in NS", the start of every line about a private copy.
pub fn private_copy(c: &PrivateCopy) -> String {
    format!("{}: {} has a private copy at {} in {}", c.unit, Shown(&c.of), Shown(&c.path), c.ns)
}

/// The lines of the nested policy at the fix: each private copy, each unit left out, and
/// the refusal.
pub fn nested(n: &Nested) -> Vec<String> {
    let mut lines = Vec::new();
    for c in &n.copies {
        let on_top = match c.on_top {
            0 => String::new(),
            n => format!(" (the {n} mount(s) on it there still answer)"),
        };
        lines.push(format!("{}: a restart of its master leaves that copy catatonic{on_top}", private_copy(c)));
    }
    for unit in &n.skipped {
        lines.push(format!("{unit}: left alone (nested policy: {})", n.policy.as_str()));
    }
    if n.refuses() {
        let copies = private_copies(n.copies.len());
        lines.push(format!("failed: nothing restarted: {copies} (nested policy: {})", n.policy.as_str()));
    }
    lines
}

/// What a fix would do: a line per daemon, then per unit.
pub fn describe(plan: &Plan) -> Vec<String> {
    let daemons = plan.daemons.iter().map(|d| {
        let how = match &d.supervisor {
            Supervisor::Systemd(unit) => format!("through {unit}"),
            Supervisor::Other(p) => format!("through its supervisor (pid {p})"),
            Supervisor::Init => "as it was (it daemonised on its own)".into(),
            Supervisor::IsInit => return format!("automount (pid {}): would be left running: {DAEMON_IS_INIT}", d.pid),
        };
        if let Some(in_use) = &d.in_use {
            return format!("automount (pid {}): would be left running: {in_use}", d.pid);
        }
        let mut line =
            format!("automount (pid {}): would SIGKILL it and start it again {how}; it serves {}", d.pid, d.served());
        for r in &d.resets {
            let n = r.below.len();
            line.push_str(&format!(
                "; {} and its {n} idle offset(s) would be unmounted first (the new daemon mounts them again)",
                Shown(&r.base)
            ));
        }
        line
    });
    let units = plan.units.iter().map(|u| {
        let mut line = format!("{}: would restart it (autofs {} at {})", u.name, u.dev, Shown(&u.path));
        for l in u.stack.iter().rev() {
            line.push_str(&format!(", setting {} aside", l.what));
        }
        if !u.stack.is_empty() {
            line.push_str(" and putting it back");
        }
        line
    });
    daemons.chain(units).collect()
}
