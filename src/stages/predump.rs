//! pre-dump: decide while nothing is lost. CRIU runs the action script before it freezes
//! anything, with `CRTOOLS_INIT_PID` the dumped tree's root, and aborts the dump if the script
//! fails. So this says now, one line each, what a restore will not be able to fix, and with
//! the `fail` nested policy refuses the dump while the container still runs untouched. It runs
//! no program of the container and changes nothing. Its own faults are one warning and exit 0:
//! only the `fail` policy ever aborts a dump.

use crate::container::Init;
use crate::error::Result;
use crate::log::Log;
use crate::model::autofs::Table;
use crate::model::nested::Namespace;
use crate::model::plan::{DaemonPlan, Master, Plan, Supervisor};
use crate::model::report;
use crate::settings::{InitPid, Policy, Settings};
use crate::show::Shown;
use crate::stages::opening::{self, Opened};
use crate::work::survey::{self, Blocked, ProcFacts};

/// Runs the pre-dump checks on `settings`, or warns about why they could not be read. Returns
/// the exit code: 1 only to refuse the dump.
pub fn run(settings: Result<(InitPid, Settings)>) -> u8 {
    let log = opening::log(&settings);
    match settings.and_then(|(init, s)| check(init, &s, &log)) {
        Ok(code) => code,
        Err(e) => {
            log.say(format_args!("warning: pre-dump: {e}"));
            0
        }
    }
}

fn check(init: InitPid, s: &Settings, log: &Log) -> Result<u8> {
    let Some(Opened { host, text }) = opening::open("pre-dump", init, s, log)? else { return Ok(0) };
    let init = host.init();
    let table = Table::from_mountinfo(&text, init.host_pid())?;
    let who = init.as_planned();
    let plan = Plan::make(&table, who, &[], &mut ProcFacts::new(init))?;
    for (path, master) in &plan.alone {
        if let Master::Other { pid, comm } = master {
            log.say(format_args!(
                "warning: {}: its master is {}, neither the container's systemd nor the automount daemon: after a \
                 restore it hangs, and autofs-restart cannot restart it",
                Shown(path),
                report::process(*pid, comm.as_deref())
            ));
        }
    }
    for d in &plan.daemons {
        if d.supervisor == Supervisor::IsInit {
            log.say(format_args!(
                "warning: {}: after a restore they hang, and autofs-restart cannot restart the automount daemon \
                 that serves them (pid {}): {}",
                d.served(),
                d.pid,
                report::DAEMON_IS_INIT
            ));
        }
        overmounted(init, &table, d).iter().for_each(|l| log.say(l));
    }
    let survey = init.survey()?;
    let namespaces = if plan.units.is_empty() { Vec::new() } else { survey::namespaces(init, &table, &survey.nested)? };
    let private = nested(&plan, &namespaces, s.nested, log);
    if !survey.blocked.is_empty() {
        let points = table.autofs_points();
        // What they look up reads as the container's paths only from inside.
        let inside = host.enter(s.api)?;
        for &pid in &survey.blocked {
            let b = Blocked::of(&inside, pid, points.iter().copied());
            log.say(format_args!(
                "warning: {}: if that wait outlasts the dump, the restored process waits for good; let it finish first",
                b.waiting()
            ));
        }
    }
    if private > 0 && s.nested == Policy::Fail {
        let copies = report::private_copies(private);
        log.say(format_args!("failed: the dump is refused: {copies} (nested policy: fail); nothing was changed"));
        return Ok(1);
    }
    Ok(0)
}

/// The daemon's mounts that it holds open and that have a mount on top: CRIU refuses to dump
/// an open file on an overmounted mount, so it refuses the whole dump. A line each.
fn overmounted(init: &Init, table: &Table<'_>, d: &DaemonPlan) -> Vec<String> {
    let open = init.procs().fd_devs(d.pid);
    let mut lines = Vec::new();
    for m in d.mounts.iter().filter(|m| !m.stack.is_empty() && open.contains(&m.dev)) {
        let top = table
            .autofs_at(&m.path)
            .and_then(|a| a.stack.last().map(|t| format!("{} {}", Shown(&t.fs_type), Shown(&t.source()))));
        let top = top.unwrap_or_else(|| "a mount".into());
        lines.push(format!(
            "warning: {}: the automount daemon (pid {}) holds it open, and {top} is mounted on it: CRIU refuses to dump \
             that (\"Open files on overmounted mounts are not supported yet\"); unmount {top} or let it expire, and the \
             dump goes through",
            Shown(&m.path),
            d.pid
        ));
    }
    lines
}

/// A line for each private copy of a unit's mount in a nested namespace, saying what the
/// restore will do to it under `policy`. Returns how many there are.
fn nested(plan: &Plan, namespaces: &[Namespace], policy: Policy, log: &Log) -> usize {
    let copies = plan.private_copies(namespaces);
    for c in &copies {
        let then = match policy {
            Policy::Restart => "after the restore the unit is restarted and that copy made catatonic",
            Policy::Skip => "after the restore the unit is left alone, and it keeps hanging",
            Policy::Fail => "the dump is refused",
        };
        log.say(format_args!("{}: {then} (nested policy: {})", report::private_copy(c), policy.as_str()));
    }
    copies.len()
}
