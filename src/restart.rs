//! The fix: restart the masters of a restored container's autofs mounts, keeping what was
//! mounted on top of them.
//!
//! Phases, each with one read of mountinfo and at most one `systemctl` call:
//! 1. plan from mountinfo alone (no path walk into a stale mount);
//! 2. set aside what sits on each autofs mount;
//! 3. `systemctl restart` every unit at once;
//! 4. check each new autofs mount, clear what the restart left on top, put the saved trees back
//!    (also when the restart failed), and check that they are the same superblocks.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use rustix::process::Pid;

use crate::autofs::{Autofs, Table};
use crate::automount::{Daemon, Respawn, Served, Supervisor, is_automount_exe, parent_of, service_of};
use crate::container::Container;
use crate::error::{Error, Result, Shown};
use crate::mountinfo::{Dev, contains};
use crate::mounts::{self, Api, Mounter, Saved};
use crate::nested::{self, Namespace, Policy, Reach};
use crate::systemd;

pub struct Settings {
    pub pid: Pid,
    /// Where the pid came from (`CRTOOLS_INIT_PID`, `--pid`), for errors.
    pub pid_name: &'static str,
    /// Only these automount units; all when empty.
    pub units: Vec<String>,
    pub dry_run: bool,
    pub probe: bool,
    pub verbose: bool,
    pub timeout: Duration,
    pub api: Api,
    /// What to do with masters whose mounts have private copies in nested namespaces.
    pub nested: Policy,
}

/// One automount unit to restart.
struct Unit {
    name: String,
    path: Vec<u8>,
    /// The stale autofs mount: its superblock and the master's pipe it is wired to.
    dev: Dev,
    pipe_ino: Option<u64>,
    /// What sat on it, lowest first.
    stack: Vec<Layer>,
    /// Set aside, highest first (the order they came off).
    saved: Vec<Saved>,
    error: Option<String>,
    /// What could not go back, and where it is kept: said even when an earlier step failed.
    kept: Option<String>,
}

#[derive(Debug, Clone)]
struct Layer {
    dev: Dev,
    root: Vec<u8>,
    what: String,
}

impl Unit {
    fn fail(&mut self, step: &str, e: impl std::fmt::Display) {
        // The first failure is the one to report; later steps still run to put things back.
        if self.error.is_none() {
            self.error = Some(format!("{step}: {e}"));
        }
    }
}

struct Log {
    verbose: bool,
}

impl Log {
    fn say(&self, msg: std::fmt::Arguments<'_>) {
        eprintln!("autofs-restart: {msg}");
    }
    fn step(&self, msg: std::fmt::Arguments<'_>) {
        if self.verbose {
            self.say(msg);
        }
    }
}

fn layers(a: &Autofs<'_, '_>) -> Vec<Layer> {
    a.stack
        .iter()
        .map(|m| Layer {
            dev: m.dev,
            root: m.root().to_vec(),
            what: format!("{} {}", Shown(&m.fs_type), Shown(&m.source())),
        })
        .collect()
}

/// Runs the fix. Returns the exit code: 0 when every unit checks out (or there was nothing to
/// do), 1 when one did not; each unit's outcome has been said on stderr.
pub fn run(s: &Settings) -> Result<u8> {
    let log = Log { verbose: s.verbose };
    let ctr = Container::open(s.pid_name, s.pid)?;
    let systemd = ctr.is_systemd()?;
    let mut text = ctr.mountinfo()?;
    // No autofs mount and nothing left by an interrupted run: nothing to lock either.
    if !contains(&text, AUTOFS_LINE) && !contains(&text, STAGING_LINE) && !mounts::pinned(&ctr) {
        return Ok(0);
    }
    let (_lock, waited) = ctr.lock(s.timeout)?;
    if waited {
        text = ctr.mountinfo()?;
    }
    // What an interrupted run left set aside goes back first: the plan must see it in place.
    let mut entered = false;
    if !s.dry_run {
        match recover_staged(&ctr, &text, &log)? {
            None => {}
            Some(false) => return Ok(1),
            Some(true) => {
                entered = true;
                text = ctr.mountinfo()?;
            }
        }
    }
    let table = Table::from_mountinfo(&text, s.pid)?;
    if s.dry_run
        && let Some(left) = mounts::left_behind(&ctr, &table)?
    {
        log.say(format_args!("an interrupted run left trees set aside in {}: they would go back first", left.place()));
    }
    let init = s.pid.as_raw_nonzero().get() as u32;

    // Phase 1: the plan.
    let mut units = Vec::new();
    let mut daemons: Vec<Daemon> = Vec::new();
    let mut failed = 0;
    for a in table.autofs() {
        let path = a.mount.mount_point.to_vec();
        match a.options.pgrp {
            Some(pgrp) if pgrp == init && systemd => {
                let name = systemd::unit_for_path(&path);
                if s.units.is_empty() || s.units.contains(&name) {
                    let stack = layers(&a);
                    let (dev, pipe_ino) = (a.mount.dev, a.options.pipe_ino);
                    units.push(Unit { name, path, dev, pipe_ino, stack, saved: vec![], error: None, kept: None });
                }
            }
            Some(pgrp) if s.units.is_empty() => {
                // The master is the process that holds the pipe, in the group `pgrp=` names.
                if let Some(d) = daemons.iter_mut().find(|d| {
                    d.pgrp == pgrp && a.options.pipe_ino.is_some_and(|i| ctr.holds_pipe(d.pid, i).unwrap_or(false))
                }) {
                    d.mounts.push(Served::of(&a));
                    continue;
                }
                let holder = match a.options.pipe_ino {
                    Some(ino) => ctr.pipe_holder(pgrp, ino)?,
                    None => None,
                };
                match holder {
                    Some(pid) if is_automount_exe(&ctr.exe_of(pid).unwrap_or_default()) => {
                        let supervisor = supervisor_of(&ctr, pid, init, systemd);
                        daemons.push(Daemon { pid, pgrp, supervisor, mounts: vec![Served::of(&a)] });
                    }
                    // Any other master is not ours to restart.
                    _ => {
                        let pid = holder.unwrap_or(pgrp);
                        log.say(format_args!(
                            "{}: left alone: its master is pid {pid} ({}), not the container's systemd",
                            Shown(&path),
                            Shown(&ctr.comm(pid).unwrap_or_else(|| b"gone".to_vec())),
                        ))
                    }
                }
            }
            None if s.units.is_empty() => log.say(format_args!("{}: left alone: it has no master", Shown(&path))),
            _ => {}
        }
    }
    for wanted in &s.units {
        if !units.iter().any(|u| &u.name == wanted) {
            log.say(format_args!("{wanted}: failed: no autofs mount of the container's systemd belongs to this unit"));
            failed += 1;
        }
    }
    if units.is_empty() && daemons.is_empty() {
        return Ok(u8::from(failed > 0));
    }

    // Copies in nested mount namespaces that the restart does not reach: named, then the
    // policy says. Only systemd's restart makes new superblocks; a restarted automount daemon
    // takes the same ones over, so every copy of them stays served as it was.
    let survey = ctr.survey()?;
    let nested = if units.is_empty() { Vec::new() } else { nested::scan(&ctr, &table, &survey.nested)? };
    let mut private = 0;
    units.retain(|u| keeps(&log, &u.name, u.dev, &nested, s.nested, &mut private));
    if private > 0 && s.nested == Policy::Fail {
        let copies = if private == 1 { "copy" } else { "copies" };
        log.say(format_args!(
            "failed: nothing restarted: {private} private {copies} in nested mount namespaces (nested policy: {})",
            s.nested.as_str()
        ));
        return Ok(1);
    }
    if units.is_empty() && daemons.is_empty() {
        return Ok(u8::from(failed > 0));
    }
    if s.dry_run {
        for d in &daemons {
            let how = match &d.supervisor {
                Supervisor::Systemd(unit) => format!("through {unit}"),
                Supervisor::Other(p) => format!("through its supervisor (pid {p})"),
                Supervisor::Init => "as it was (it daemonised on its own)".into(),
            };
            log.say(format_args!(
                "automount (pid {}): would SIGKILL it and start it again {how}; it serves {}",
                d.pid,
                served(d)
            ));
        }
        for u in &units {
            let mut plan = format!("would restart it (autofs {} at {})", u.dev, Shown(&u.path));
            for l in u.stack.iter().rev() {
                plan.push_str(&format!(", setting {} aside", l.what));
            }
            if !u.stack.is_empty() {
                plan.push_str(" and putting it back");
            }
            log.say(format_args!("{}: {plan}", u.name));
        }
        return Ok(u8::from(failed > 0));
    }

    // The plan is made: what follows needs only what it owns, not the table (at 10 000 mounts,
    // megabytes that would stay while phase 4 reads the table again).
    let points: Vec<Vec<u8>> = table.autofs_points().into_iter().map(<[u8]>::to_vec).collect();
    drop(table);
    drop(text);
    if !entered {
        ctr.enter()?;
    }
    let respawns: Vec<(u32, Result<Respawn>)> = daemons
        .iter()
        .filter(|d| d.supervisor == Supervisor::Init)
        .map(|d| (d.pid, Respawn::read(&ctr, d.pid)))
        .collect();
    if !units.is_empty() {
        failed += restart_units(&ctr, s, &mut units, init, &log);
    }
    if private > 0 {
        release(&ctr, &nested, &units, s.timeout, &log);
    }
    for u in &units {
        match &u.error {
            None if u.stack.is_empty() => log.say(format_args!("{}: restarted", u.name)),
            None => {
                let tops: Vec<&str> = u.stack.iter().map(|l| l.what.as_str()).collect();
                log.say(format_args!("{}: restarted, {} kept on top", u.name, tops.join(", ")))
            }
            Some(e) => {
                failed += 1;
                let kept = u.kept.as_deref().map_or_else(String::new, |k| format!("; {k}"));
                log.say(format_args!("{}: failed {e}{kept}", u.name))
            }
        }
    }
    for d in &daemons {
        let old = d.pid;
        let (who, restarted) = match &d.supervisor {
            Supervisor::Systemd(unit) => {
                (format!("{unit}: automount (pid {old})"), d.restart_through_systemd(&ctr, unit, s.timeout))
            }
            Supervisor::Other(sup) => {
                (format!("automount (pid {old}) under pid {sup}"), d.restart_supervised(&ctr, s.timeout))
            }
            Supervisor::Init => {
                let restarted = match respawns.iter().find(|(pid, _)| *pid == old) {
                    Some((_, Ok(r))) => d.restart_respawning(&ctr, r, s.timeout),
                    Some((_, Err(e))) => Err(Error::Failed(e.to_string())),
                    None => Err(Error::Failed("nothing known to start it again with".into())),
                };
                (format!("automount (pid {old})"), restarted)
            }
        };
        let probed = match restarted {
            Ok(new) if s.probe => d
                .mounts
                .iter()
                .filter(|m| m.probe_me())
                .try_for_each(|m| probe(&ctr, &m.path, s.timeout))
                .map(|()| new)
                .map_err(|e| Error::Failed(format!("probing: {e}"))),
            other => other,
        };
        match probed {
            Ok(new) => log.say(format_args!("{who}: restarted (now pid {new}), serving {}", served(d))),
            Err(e) => {
                failed += 1;
                log.say(format_args!("{who}: failed: {e}"));
            }
        }
    }
    still_blocked(&ctr, &survey.blocked, &points, &log);
    Ok(u8::from(failed > 0))
}

/// Names the processes that were blocked on an autofs mount before the fix and still are:
/// nothing safe wakes them (see `blocked`), and everyone else is served again.
fn still_blocked(ctr: &Container, blocked: &[u32], points: &[Vec<u8>], log: &Log) {
    for &pid in blocked.iter().filter(|&&pid| ctr.still_blocked(pid)) {
        let path = ctr.blocked_path(pid);
        let on = match path.as_deref().and_then(|p| crate::blocked::mount_of(p, points.iter().map(|p| p.as_slice()))) {
            Some(point) => format!("on {}", Shown(point)),
            None => "on an autofs mount".into(),
        };
        let looking = path.map_or_else(String::new, |p| format!(" (looking up {})", Shown(&p)));
        let who = crate::container::who(pid, ctr.ctr_pid(pid), &ctr.comm(pid).unwrap_or_default());
        log.say(format_args!(
            "warning: {who} is still blocked {on}{looking}: it waits on the old superblock, which nothing answers any more; SIGKILL ends it"
        ));
    }
}

/// Names each private copy of a unit's autofs mount (superblock `dev`) in a nested namespace,
/// counting them in `private`; returns whether the unit stays in the plan under `policy`.
fn keeps(log: &Log, who: &str, dev: Dev, nested: &[Namespace], policy: Policy, private: &mut usize) -> bool {
    let mut any = false;
    for ns in nested {
        for c in ns.copies.iter().filter(|c| c.reach == Reach::Private && c.dev == dev) {
            any = true;
            *private += 1;
            let on_top = match c.on_top {
                0 => String::new(),
                n => format!(" (the {n} mount(s) on it there still answer)"),
            };
            log.say(format_args!(
                "{who}: {} has a private copy at {} in {}: a restart of its master leaves that copy catatonic{on_top}",
                Shown(c.of.as_deref().unwrap_or_default()),
                Shown(&c.path),
                ns.describe()
            ));
        }
    }
    if any && policy == Policy::Skip {
        log.say(format_args!("{who}: left alone (nested policy: {})", policy.as_str()));
        return false;
    }
    true
}

/// Makes the private copies of the restarted units' old mounts catatonic (see
/// `nested::release`). A copy that stays as it was is worth a warning, not a failure: the
/// unit is fixed.
fn release(ctr: &Container, nested: &[Namespace], units: &[Unit], timeout: Duration, log: &Log) {
    // Only superblocks the container's own namespace no longer has: catatonic is for good,
    // and for every namespace that has the superblock.
    let text = ctr.mountinfo();
    let live: Vec<Dev> = match reread(ctr, &text) {
        Ok(t) => t.autofs().iter().map(|a| a.mount.dev).collect(),
        Err(e) => {
            log.say(format_args!("warning: private copies in nested namespaces stay as they were: {e}"));
            return;
        }
    };
    for u in units.iter().filter(|u| u.error.is_none()) {
        if live.contains(&u.dev) {
            log.say(format_args!(
                "{}: warning: its old autofs mount {} is still in use: copies stay as they were",
                u.name, u.dev
            ));
            continue;
        }
        for ns in nested {
            for (path, result) in nested::release(ctr, ns, &[u.dev], timeout) {
                let (path, ns) = (Shown(&path), ns.describe());
                match result {
                    Ok(()) => log.step(format_args!("{}: made the copy at {path} in {ns} catatonic", u.name)),
                    Err(e) => {
                        log.say(format_args!("{}: warning: the copy at {path} in {ns} stays as it was: {e}", u.name))
                    }
                }
            }
        }
    }
}

/// Marks of a mountinfo text, found without parsing it: an autofs mount (paths are escaped, so
/// " - autofs " is always the type field), and our staging mount as a mount point.
const AUTOFS_LINE: &[u8] = b" - autofs ";
const STAGING_LINE: &[u8] = b" /run/autofs-restart ";

/// Puts back what an interrupted run left set aside in the table `text`, entering the
/// container to do so (under the lock), and says each step. None when nothing was left; else
/// whether all went back.
fn recover_staged(ctr: &Container, text: &[u8], log: &Log) -> Result<Option<bool>> {
    if !contains(text, STAGING_LINE) && !mounts::pinned(ctr) {
        return Ok(None);
    }
    let table = Table::from_mountinfo(text, ctr.pid)?;
    let Some(left) = mounts::left_behind(ctr, &table)? else { return Ok(None) };
    let place = left.place();
    ctr.enter()?;
    let steps = mounts::plan_left(ctr, &table, &left)?;
    let (said, all) = mounts::recover(ctr, left, &steps);
    for line in said {
        log.say(format_args!("recovering: {line}"));
    }
    if !all {
        log.say(format_args!(
            "failed: what an interrupted run set aside in {place} did not all go back; nothing else done"
        ));
    }
    Ok(Some(all))
}

/// `autofs-restart recover`: puts back what an interrupted run left set aside, and nothing
/// else. Returns the exit code.
pub fn recover(pid_name: &'static str, pid: Pid, timeout: Duration) -> Result<u8> {
    let log = Log { verbose: false };
    let ctr = Container::open(pid_name, pid)?;
    let text = ctr.mountinfo()?;
    if contains(&text, STAGING_LINE) || mounts::pinned(&ctr) {
        let (_lock, _) = ctr.lock(timeout)?;
        // Read again under the lock: a run that held it may have finished meanwhile.
        if let Some(all) = recover_staged(&ctr, &ctr.mountinfo()?, &log)? {
            return Ok(u8::from(!all));
        }
    }
    log.say(format_args!("nothing to recover"));
    Ok(0)
}

/// The mount points a daemon serves, for messages.
fn served(d: &Daemon) -> String {
    d.mounts.iter().map(|m| Shown(&m.path).to_string()).collect::<Vec<_>>().join(", ")
}

/// How a daemon is kept running: by a service of the container's systemd, by the init it was
/// reparented to, or by another process.
fn supervisor_of(ctr: &Container, pid: u32, init: u32, systemd: bool) -> Supervisor {
    if systemd && let Some(unit) = ctr.proc_file(pid, "cgroup").as_deref().and_then(service_of) {
        return Supervisor::Systemd(unit);
    }
    match ctr.proc_file(pid, "stat").as_deref().and_then(parent_of) {
        Some(parent) if parent != init => Supervisor::Other(parent),
        _ => Supervisor::Init,
    }
}

/// Phases 2 to 4 for the systemd automount units (after `enter`). Each unit's outcome is in
/// its `error`; returns the failures that belong to no unit.
fn restart_units(ctr: &Container, s: &Settings, units: &mut [Unit], init: u32, log: &Log) -> u32 {
    let mut failed = 0;
    let mut mounter = Mounter::new(ctr, s.api);

    // Phase 2: set aside what sits on each autofs mount, the top first.
    for u in units.iter_mut() {
        for (i, layer) in u.stack.clone().into_iter().enumerate().rev() {
            match mounter.set_aside(&u.path, layer.dev, layer.what.clone(), i == 0) {
                Ok(saved) => {
                    log.step(format_args!("{}: set {} aside ({} API)", u.name, layer.what, mounter.api().as_str()));
                    u.saved.push(saved);
                }
                Err(e) => {
                    u.fail("setting aside", e);
                    break;
                }
            }
        }
    }

    // Phase 3: one restart for every unit whose top is safely aside.
    let names: Vec<&str> = units.iter().filter(|u| u.error.is_none()).map(|u| u.name.as_str()).collect();
    let restart_error = if names.is_empty() {
        None
    } else {
        let mut args: Vec<&[u8]> = vec![b"restart"];
        args.extend(names.iter().map(|n| n.as_bytes()));
        log.step(format_args!("systemctl restart {}", names.join(" ")));
        match ctr.run("systemctl", &args, s.timeout) {
            Ok(out) if out.status.success() => None,
            // Killed by a signal we did not send: when the init died, its pid namespace took
            // systemctl with it. Then say why, not how systemctl ended.
            Ok(out) if out.status.signal().is_some() && ctr.gone_within(Duration::from_secs(1)) => {
                Some(format!("the container's init (pid {init}) died"))
            }
            Ok(out) => Some(format!("systemctl restart: {}", out.summary())),
            Err(e) => Some(e.to_string()),
        }
    };

    // Phase 4: check, clear, put back. From here on no error may end the run before every
    // saved tree is back, or said to be kept in the staging mount.
    let phase4 = ctr.mountinfo();
    let after = reread(ctr, &phase4);
    for u in units.iter_mut() {
        // Whether we detached anything at the mount point here: then the phase-4 table no
        // longer says what stands there, and no copy is dropped on its word.
        let mut cleared = false;
        if u.error.is_none() {
            let checked = match &after {
                Ok(after) => check(ctr, after, u, init),
                Err(e) => Err(Error::Failed(e.clone())),
            };
            match checked {
                Ok(left_on_top) => {
                    cleared = left_on_top > 0;
                    for _ in 0..left_on_top {
                        if let Err(e) = mounter.detach(&u.path) {
                            u.fail("clearing the mount point", e);
                            break;
                        }
                    }
                    if left_on_top > 0 {
                        log.step(format_args!("{}: detached {left_on_top} mount(s) the restart left on top", u.name));
                    }
                }
                Err(e) => match &restart_error {
                    Some(r) => u.fail("restarting", r),
                    None => u.fail("checking the restart", e),
                },
            }
        }
        // Whatever happened above, what was set aside goes back, the lowest first. What cannot
        // go back stays staged, with all above it, for `recover`: never out of order.
        while let Some(saved) = u.saved.pop() {
            let what = saved.what.clone();
            // A restart that never happened left the original standing (see mounts).
            let layer = &u.stack[u.stack.len() - 1 - u.saved.len()];
            let stands = !cleared
                && after.as_ref().is_ok_and(|t| {
                    t.autofs_at(&u.path)
                        .is_some_and(|a| a.stack.iter().any(|m| m.dev == layer.dev && *m.root() == *layer.root))
                });
            match mounter.put_back(&u.path, saved, stands) {
                Ok(true) => log.step(format_args!("{}: put {what} back", u.name)),
                Ok(false) => log.step(format_args!("{}: {what} still stands: its copy dropped", u.name)),
                Err((saved, e)) => {
                    let mut kept: Vec<String> = vec![saved.at];
                    kept.extend(u.saved.drain(..).rev().map(|s| s.at));
                    let kept = format!("what was on top is kept at {} ({e})", kept.join(", "));
                    if u.error.is_none() {
                        u.fail("putting back", &kept);
                    } else {
                        u.kept = Some(kept);
                    }
                }
            }
        }
    }
    if let Err(e) = mounter.finish() {
        log.say(format_args!("{e}"));
        failed += 1;
    }

    if s.probe {
        for u in units.iter_mut().filter(|u| u.error.is_none()) {
            if let Err(e) = probe(ctr, &u.path, s.timeout) {
                u.fail("probing", e);
            }
        }
    }

    failed
}

/// The container's table after a change, or why it could not be had. Phase 4 records that
/// per unit instead of returning: trees set aside must still go back.
fn reread<'a>(ctr: &Container, text: &'a Result<Vec<u8>>) -> Result<Table<'a>, String> {
    match text {
        Ok(text) => Table::from_mountinfo(text, ctr.pid).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks structurally that the unit's autofs mount is a new one served by the container's
/// systemd. Returns how many mounts the restart left on top of it.
///
/// "New" is told by the pipe: systemd makes a new one at every start. The mount id and the
/// device number are no proof either way: the kernel hands freed ones out again, and the stale
/// mount's are freed by the restart.
fn check(ctr: &Container, after: &Table<'_>, u: &Unit, init: u32) -> Result<usize> {
    let path = Shown(&u.path);
    let a = after.autofs_at(&u.path).ok_or_else(|| Error::Failed(format!("no autofs mount at {path} any more")))?;
    let ino = match a.options.pipe_ino {
        Some(ino) if Some(ino) != u.pipe_ino => ino,
        Some(_) => return Err(Error::Failed(format!("the autofs mount at {path} still has the old pipe"))),
        None => return Err(Error::Failed(format!("the autofs mount at {path} has no master (catatonic)"))),
    };
    if a.options.pgrp != Some(init) {
        return Err(Error::Failed(format!("the new autofs mount at {path} is not served by pid {init}")));
    }
    if !ctr.holds_pipe(init, ino)? {
        return Err(Error::Failed(format!("pid {init} does not hold the pipe of the new autofs mount at {path}")));
    }
    Ok(a.stack.len())
}

/// Triggers an automount from inside the container, as its processes would: a child, in its
/// namespaces, that walks into the mount point. It mounts the target file system. The child
/// is this very program (`/proc/self/exe` is ours in the child, whose pid the container's /proc
/// knows); a thread would not do, since none can be made after joining a pid namespace.
fn probe(ctr: &Container, path: &[u8], timeout: Duration) -> Result<()> {
    let out = ctr.run_helper(None, &[PROBE_ARG.as_bytes(), path], timeout)?;
    if out.status.success() { Ok(()) } else { Err(Error::Failed(format!("stat {}/.: {}", Shown(path), out.summary()))) }
}

/// The hidden argument that makes this program a probe.
pub const PROBE_ARG: &str = "--internal-probe";

/// The probe itself, in the child: walk into `path`, which triggers its automount.
pub fn probe_child(path: &[u8]) -> Result<u8> {
    let mut inside = path.to_vec();
    inside.extend_from_slice(b"/.");
    rustix::fs::stat(inside.as_slice()).map_err(|e| Error::sys(format!("stat {}", Shown(&inside)), e))?;
    Ok(0)
}
