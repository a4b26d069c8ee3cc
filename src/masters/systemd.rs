//! The container's systemd as a master: its automount units are restarted in one
//! `systemctl restart`, keeping what is mounted on top of them (inside the container).
//!
//! 2. set aside what sits on each autofs mount, the top first (`mounts`);
//! 3. `systemctl restart` every unit whose top is safely aside, at once (in one call, unless
//!    their names would not fit one command line);
//! 4. check each new autofs mount, clear what the restart left on top, put the saved trees
//!    back (also when the restart failed), lowest first.
//!
//! Phase 1, the plan, is `plan::Plan`. Each unit ends in one `Outcome`.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::container::{Inside, Snapshot};
use crate::error::{Error, Result};
use crate::log::Log;
use crate::masters::Fixing;
use crate::model::autofs::Table;
use crate::model::plan::{Layer, UnitPlan};
use crate::settings::Api;
use crate::show::Shown;
use crate::work::mounts::{Mounter, Saved};
use crate::work::probe;

/// How a unit's fix ended.
pub struct Outcome {
    pub unit: UnitPlan,
    /// The first step that failed; later steps still ran, to put things back.
    pub result: Result<()>,
    /// What could not go back, and where it is kept: said even when an earlier step failed.
    pub kept: Option<Error>,
}

impl Outcome {
    /// The unit's line in the report.
    pub fn line(&self) -> String {
        let u = &self.unit;
        match &self.result {
            Ok(()) if u.stack.is_empty() => format!("{}: restarted", u.name),
            Ok(()) => {
                let tops: Vec<&str> = u.stack.iter().map(|l| l.what.as_str()).collect();
                format!("{}: restarted, {} kept on top", u.name, tops.join(", "))
            }
            Err(e) => {
                let kept = self.kept.as_ref().map_or_else(String::new, |k| format!("; {k}"));
                format!("{}: failed {e}{kept}", u.name)
            }
        }
    }

    fn fail(&mut self, step: &str, e: Error) {
        // The first failure is the one to report.
        if self.result.is_ok() {
            self.result = Err(e.context(step));
        }
    }
}

/// A unit on its way through the phases.
struct Run {
    out: Outcome,
    /// Set aside, highest first (the order they came off), each with the layer it was.
    saved: Vec<(Layer, Saved)>,
    /// How the `systemctl restart` that named it failed, if it did.
    restart: Option<Error>,
}

/// The most bytes of unit names one `systemctl` call takes: far under the kernel's smallest
/// limit on a program's arguments and environment (ARG_MAX is at least 128 KiB; systemctl's
/// environment is three short variables).
const ARGS_MAX: usize = 64 * 1024;

/// Phases 2 to 4 for the units of the plan, each wait bounded by `fx.timeout`; with
/// `fx.probe`, each fixed mount point is then triggered. Returns each unit's outcome, and an
/// error that belongs to no unit (the staging could not be removed).
pub fn restart(fx: &Fixing<'_>, units: Vec<UnitPlan>) -> (Vec<Outcome>, Option<Error>) {
    let (inside, log) = (fx.inside, fx.log);
    let mut runs: Vec<Run> = units
        .into_iter()
        .map(|unit| Run { out: Outcome { unit, result: Ok(()), kept: None }, saved: Vec::new(), restart: None })
        .collect();
    let mut mounter = match Mounter::new(inside) {
        Ok(m) => m,
        Err(e) => {
            runs.iter_mut().for_each(|r| r.out.fail("setting aside", e.clone()));
            return (runs.into_iter().map(|r| r.out).collect(), None);
        }
    };
    for run in &mut runs {
        set_aside(&mut mounter, run, log);
    }
    restart_all(fx, &mut runs);
    let after = mounts_after(fx, &runs);
    check_and_put_back(fx, &mut mounter, &mut runs, after);
    let finished = mounter.finish().err();
    if fx.probe {
        for run in runs.iter_mut().filter(|r| r.out.result.is_ok()) {
            if let Err(e) = probe::trigger(inside, &run.out.unit.path, fx.timeout) {
                run.out.fail("probing", e);
            }
        }
    }
    (runs.into_iter().map(|r| r.out).collect(), finished)
}

/// Phase 2 for one unit: its layers, the top first.
fn set_aside(mounter: &mut Mounter<'_>, run: &mut Run, log: &Log) {
    let u = &run.out.unit;
    for (i, layer) in u.stack.iter().enumerate().rev() {
        match mounter.set_aside(&u.path, layer.dev, &layer.what, i == 0) {
            Ok(saved) => {
                let (api, staged) = (mounter.moves().as_str(), mounter.staged_in());
                log.step(format_args!("{}: set {} aside ({api} API, staged in {staged})", u.name, layer.what));
                run.saved.push((layer.clone(), saved));
            }
            Err(e) => {
                run.out.fail("setting aside", e);
                return;
            }
        }
    }
}

/// Phase 3: one restart for every unit whose top is safely aside (a call per batch of names
/// that fits a command line); each unit keeps its call's error.
fn restart_all(fx: &Fixing<'_>, runs: &mut [Run]) {
    let names: Vec<String> = runs.iter().filter(|r| r.out.result.is_ok()).map(|r| r.out.unit.name.clone()).collect();
    for batch in batches(&names, ARGS_MAX) {
        let failed = restart_batch(fx, batch);
        for run in runs.iter_mut().filter(|r| batch.contains(&r.out.unit.name)) {
            run.restart = failed.clone();
        }
    }
}

/// `names` in consecutive batches whose bytes (with a NUL each) stay within `max`; a name
/// longer than that is a batch of its own.
fn batches(names: &[String], max: usize) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, name) in names.iter().enumerate() {
        if i > start && bytes + name.len() + 1 > max {
            out.push(&names[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += name.len() + 1;
    }
    if start < names.len() {
        out.push(&names[start..]);
    }
    out
}

/// One `systemctl restart` of `names`. Its error, if it failed.
fn restart_batch(fx: &Fixing<'_>, names: &[String]) -> Option<Error> {
    let inside = fx.inside;
    let mut args: Vec<&[u8]> = vec![b"restart"];
    args.extend(names.iter().map(|n| n.as_bytes()));
    fx.log.step(format_args!("systemctl restart {}", names.join(" ")));
    match inside.run("systemctl", &args, fx.timeout) {
        Ok(out) if out.status.success() => None,
        // Killed by a signal we did not send: when the init died, its pid namespace took
        // systemctl with it. Then say why, not how systemctl ended.
        Ok(out) if out.status.signal().is_some() && inside.init().gone_within(Duration::from_secs(1)) => {
            Some(Error::check(format!("the container's init (pid {}) died", inside.init().pid)))
        }
        Ok(out) => out.ok("systemctl restart").err(),
        Err(e) => Some(e),
    }
}

/// What phase 4 checks: the mounts at each unit's path, by statmount where the kernel has it
/// and every restart succeeded (a failed one may have left a stale mount, which a walk must not
/// cross), else the table as `Inside::mount_table` reads it, which walks no path. The first is
/// only faster: where it fails for any reason (no statmount, a path that is no directory now),
/// the second says what stands.
fn mounts_after(fx: &Fixing<'_>, runs: &[Run]) -> Result<Vec<u8>> {
    let (inside, log) = (fx.inside, fx.log);
    if inside.asked() == Api::New && runs.iter().all(|r| r.restart.is_none()) {
        let paths: Vec<&[u8]> = runs.iter().map(|r| r.out.unit.path.as_slice()).collect();
        if let Ok(text) = inside.stacks_at(&paths) {
            log.step(format_args!("checking the mounts at {} path(s), read by statmount", paths.len()));
            return Ok(text);
        }
    }
    let Snapshot { text, read } = inside.mount_table()?;
    log.step(format_args!("checking the mounts against the container's mount table: {read}"));
    Ok(text)
}

/// Phase 4: check, clear, put back. No error may end it before every saved tree is back, or
/// said to be kept in the staging.
fn check_and_put_back(fx: &Fixing<'_>, mounter: &mut Mounter<'_>, runs: &mut [Run], after: Result<Vec<u8>>) {
    let (inside, log) = (fx.inside, fx.log);
    let init = inside.init();
    let table = after.as_ref().map_err(Clone::clone).and_then(|text| Table::from_mountinfo(text, init.host_pid()));
    // The pipes systemd holds now: read once for every unit.
    let held = init.procs().pipes(init.host_pid());
    for run in runs {
        // Whether we detached anything at the mount point here: then the phase-4 table no
        // longer says what stands there, and no copy is dropped on its word.
        let mut cleared = false;
        if run.out.result.is_ok() {
            let checked = table.as_ref().map_err(Clone::clone).and_then(|t| check(inside, t, &held, &run.out.unit));
            match checked {
                Ok(left_on_top) => cleared = clear(mounter, run, left_on_top, log),
                Err(e) => match run.restart.take() {
                    Some(r) => run.out.fail("restarting", r),
                    None => run.out.fail("checking the restart", e),
                },
            }
        }
        let path = run.out.unit.path.clone();
        let stands = |layer: &Layer| {
            !cleared
                && table.as_ref().is_ok_and(|t| {
                    t.autofs_at(&path)
                        .is_some_and(|a| a.stack.iter().any(|m| m.dev == layer.dev && *m.root() == *layer.root))
                })
        };
        put_back(mounter, run, &stands, log);
    }
}

/// Detaches what the restart left on top of the new autofs mount. Returns whether it did.
fn clear(mounter: &mut Mounter<'_>, run: &mut Run, left_on_top: usize, log: &Log) -> bool {
    for _ in 0..left_on_top {
        if let Err(e) = mounter.detach(&run.out.unit.path) {
            run.out.fail("clearing the mount point", e);
            break;
        }
    }
    if left_on_top > 0 {
        log.step(format_args!("{}: detached {left_on_top} mount(s) the restart left on top", run.out.unit.name));
    }
    left_on_top > 0
}

/// Puts back what was set aside, the lowest first; `stands` says whether a layer's original
/// still stands at the mount point (a restart that never happened left it there, see
/// `mounts`). What cannot go back stays staged, with all above it, for `recover`: never out
/// of order.
fn put_back(mounter: &mut Mounter<'_>, run: &mut Run, stands: &dyn Fn(&Layer) -> bool, log: &Log) {
    let name = run.out.unit.name.clone();
    while let Some((layer, saved)) = run.saved.pop() {
        let what = saved.what.clone();
        match mounter.put_back(&run.out.unit.path, saved, stands(&layer)) {
            Ok(true) => log.step(format_args!("{name}: put {what} back")),
            Ok(false) => log.step(format_args!("{name}: {what} still stands: its copy dropped")),
            Err((saved, e)) => {
                let mut at: Vec<String> = vec![saved.at];
                at.extend(run.saved.drain(..).rev().map(|(_, s)| s.at));
                let kept = Error::Kept { at, source: Box::new(e) };
                if run.out.result.is_ok() {
                    run.out.fail("putting back", kept);
                } else {
                    run.out.kept = Some(kept);
                }
            }
        }
    }
}

/// Checks structurally that the unit's autofs mount is a new one served by the container's
/// systemd. Returns how many mounts the restart left on top of it.
///
/// "New" is told by the pipe: systemd makes a new one at every start. The mount id and the
/// device number are no proof either way: the kernel hands freed ones out again, and the stale
/// mount's are freed by the restart.
fn check(inside: &Inside, after: &Table<'_>, held: &Result<Vec<u64>>, u: &UnitPlan) -> Result<usize> {
    let init = inside.init().host_pid();
    let path = Shown(&u.path);
    let a = after.autofs_at(&u.path).ok_or_else(|| Error::check(format!("no autofs mount at {path} any more")))?;
    let ino = match a.options.pipe_ino {
        Some(ino) if Some(ino) != u.pipe_ino => ino,
        Some(_) => return Err(Error::check(format!("the autofs mount at {path} still has the old pipe"))),
        None => return Err(Error::check(format!("the autofs mount at {path} has no master (catatonic)"))),
    };
    if a.options.pgrp != Some(init) {
        return Err(Error::check(format!("the new autofs mount at {path} is not served by pid {init}")));
    }
    if held.as_ref().map_err(Clone::clone)?.binary_search(&ino).is_err() {
        return Err(Error::check(format!("pid {init} does not hold the pipe of the new autofs mount at {path}")));
    }
    Ok(a.stack.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_batches_that_fit_a_command_line() {
        let names: Vec<String> = (0..10).map(|i| format!("u{i}.automount")).collect();
        assert_eq!(batches(&names, ARGS_MAX), [&names[..]], "one call for all");
        let sizes: Vec<usize> = batches(&names, 40).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [3, 3, 3, 1], "13 bytes each with the NUL, 40 at most");
        let long = vec!["x".repeat(100), "y.automount".to_string()];
        let sizes: Vec<usize> = batches(&long, 40).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1, 1]);
        assert!(batches(&[], 40).is_empty());
    }
}
