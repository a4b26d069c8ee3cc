//! post-resume, `restart` and `recover`: the fix, phase by phase. What to do is `plan`'s;
//! each kind of master has its module (`systemd`, `automount`); this file puts the phases in
//! order and says the outcome. Each phase is a function from one value to the next, and
//! `run_logged` only orders them:
//! 1. `open` → `Opened`: a quick look (nothing to do: nothing to lock), the lock, and what an
//!    interrupted run left goes back first;
//! 2. `plan` → `Planned`: the plan, the nested namespaces and the policy (a dry run stops here
//!    and says the plan);
//! 3. `enter` → `Entered`, then `fix` → `Fixed`: restart the systemd units (`systemd`),
//!    release their old superblocks (`Release`), restart the daemons (`automount`); then
//!    `blocked` names the processes still blocked.

use std::time::Duration;

use rustix::process::{Signal, pidfd_send_signal};

use std::os::fd::{AsFd, OwnedFd};

use crate::container::{Host, Inside, Reached, pidfd};
use crate::error::{Context, Result};
use crate::log::{Ended, Log};
use crate::masters::Fixing;
use crate::masters::automount::Daemon;
use crate::masters::systemd::{self, Outcome};
use crate::model::autofs::{self, Table};
use crate::model::mountinfo::Dev;
use crate::model::nested::Namespace;
use crate::model::plan::Plan;
use crate::model::report;
use crate::settings::{Api, InitPid, OnBlocked, Settings};
use crate::show::Shown;
use crate::work::autofsdev::Control;
use crate::work::holder::{self, Held};
use crate::work::mounts;
use crate::work::once;
use crate::work::release::{Copies, CopyReleased, Release, Released, Releaser, Waits};
use crate::work::staging;
use crate::work::survey::{self, Blocked, Places, ProcFacts};
use crate::work::tokens;

/// Runs the fix. Returns the exit code: 0 when every unit checks out (or there was nothing to
/// do), 1 when one did not; each unit's outcome has been said on stderr.
pub fn run(init: InitPid, s: &Settings) -> Result<u8> {
    let log = Log::new(s.verbose);
    // CRIU's post-resume run (not a person's `restart`, who reads stderr) tells the host's log:
    // connected now, in the host's mount namespace, which the run then leaves.
    let by_criu = init.from == crate::criu::PID_VAR && !s.dry_run;
    let syslog = s.syslog.as_deref().filter(|_| by_criu).and_then(crate::log::syslog_socket);
    let done = run_logged(init, s, &log);
    if let Some(socket) = &syslog {
        let error;
        let ended = match &done {
            Ok(0) => Ended::Fixed,
            Ok(_) => Ended::NotAllFixed,
            Err(e) => {
                error = e.to_string();
                Ended::Failed(&error)
            }
        };
        log.tell_syslog(socket, init.pid.as_raw_nonzero().get().unsigned_abs(), ended);
    }
    done
}

/// The phases in order, each a value handed to the next; a phase may end the run with its
/// exit code (`Step::Done`).
fn run_logged(init: InitPid, s: &Settings, log: &Log) -> Result<u8> {
    let opened = match open(init, s, log)? {
        Step::Go(opened) => opened,
        Step::Done(code) => return Ok(code),
    };
    let planned = match plan(opened, s, log)? {
        Step::Go(planned) => planned,
        Step::Done(code) => return Ok(code),
    };
    let (entered, plan) = enter(planned, s.api)?;
    let fx = Fixing { inside: &entered.inside, timeout: s.timeout, probe: s.probe, blocked: s.blocked, log };
    let found = entered.found();
    let fixed = fix(&fx, plan, &found);
    blocked(&fx, found.waiting, &fixed.released);
    Ok(entered.missing.max(u8::from(fixed.failed)))
}

/// Where a phase leaves the run: on to the next phase, or done with this exit code.
enum Step<T> {
    Go(T),
    Done(u8),
}

/// Phase 1's outcome: the container reached (entered where an interrupted run's trees went
/// back), its mount table, and what releases old superblocks.
struct Opened {
    /// The container's run lock (`Host::lock`), handed on from phase to phase until the run
    /// ends: closing it frees the container for another run.
    lock: OwnedFd,
    reached: Reached,
    text: Vec<u8>,
    holding: Holding,
}

/// Phase 1: a quick look (nothing to do: nothing to lock), the lock, and what an interrupted
/// run left set aside goes back first.
fn open(init: InitPid, s: &Settings, log: &Log) -> Result<Step<Opened>> {
    let host = Host::open(init)?;
    // A second run by the same CRIU process (the script named twice in its configuration).
    match once::first("post-resume", host.init(), s.criu) {
        Ok(true) => {}
        Ok(false) => {
            log.step(format_args!("nothing to do: this CRIU process ran post-resume on this container already"));
            return Ok(Step::Done(0));
        }
        Err(e) => log.say(format_args!("warning: {e}")),
    }
    // What the pre-resume run's holder holds, if it ran: taken over before entering, as the
    // control device to use it with is opened (the container's /dev may have none).
    let held = if s.dry_run { None } else { take_held(&host, log) };
    let first = held.as_ref().and_then(|h| h.first_token);
    let releaser = Control::open().ok().map(|ctl| Releaser::new(ctl, tokens::needed(s.api), first));
    // The pre-resume run chose the autofs mounts from every mount: read what is below them.
    let below: Vec<u64> = held.as_ref().map_or_else(Vec::new, Held::mount_ids);
    let table = |host: &Host| host.mount_table_below(s.api, &below, !s.units.is_empty());
    let mut snapshot = table(&host)?;
    log.step(format_args!("the container's mount table: {}", snapshot.read));
    // No autofs mount and nothing left by an interrupted run: nothing to lock either.
    if !autofs::any(&snapshot.text) && !staging::anything_left(host.init(), &snapshot.text) {
        return Ok(Step::Done(no_autofs(&host, s, log)));
    }
    let (lock, waited) = host.lock(s.timeout)?;
    if waited {
        snapshot = table(&host)?;
    }
    let reached = if s.dry_run {
        Reached::Outside(host)
    } else {
        // What an interrupted run left set aside goes back first: the plan must see it in place.
        match recover_staged(host, &snapshot.text, s.api, log)? {
            Recovered::Nothing(host) => Reached::Outside(host),
            Recovered::NotAll => return Ok(Step::Done(1)),
            Recovered::AllBack(inside) => {
                snapshot = inside.mount_table()?;
                Reached::In(inside)
            }
        }
    };
    let below = if snapshot.read.is_below() { below } else { Vec::new() };
    let release = Release::new(releaser, held.map_or_else(Vec::new, |h| h.mounts), s.timeout);
    Ok(Step::Go(Opened { lock, reached, text: snapshot.text, holding: Holding { release, below } }))
}

/// The end of a run on a container without autofs mounts: a unit asked for is not there (a
/// failure each, exit 1); else nothing to do, said where asked (a dry run, `-v`).
fn no_autofs(host: &Host, s: &Settings, log: &Log) -> u8 {
    for u in &s.units {
        log.say(report::missing_unit(u));
    }
    if s.units.is_empty() {
        let init = host.init().host_pid();
        say_nothing_to_do(&report::no_autofs(init, host.shares_our_mount_namespace()), s, log);
    }
    u8::from(!s.units.is_empty())
}

/// A "nothing to do" line: said on a dry run, a step otherwise (silent without `-v`, as CRIU's
/// log wants it).
fn say_nothing_to_do(line: &str, s: &Settings, log: &Log) {
    if s.dry_run {
        log.say(line);
    } else {
        log.step(line);
    }
}

/// What releases old superblocks without a path walk, and the held mounts' unique ids where
/// the plan's table was read below them.
struct Holding {
    release: Release,
    below: Vec<u64>,
}

/// Takes over what the holder of the pre-resume run holds, if one runs. Without it the fix
/// goes on as it would have without a pre-resume run.
fn take_held(host: &Host, log: &Log) -> Option<Held> {
    holder::take(host.init()).unwrap_or_else(|e| {
        log.say(format_args!("warning: what the pre-resume run held is not used: {e}"));
        None
    })
}

/// Phase 2's outcome: the plan, the container's copies in nested namespaces and the
/// processes blocked on its mounts, found while still outside; what releases.
struct Planned {
    lock: OwnedFd,
    reached: Reached,
    plan: Plan,
    holding: Holding,
    namespaces: Vec<Namespace>,
    places: Places,
    /// How many of the copies are private.
    private: usize,
    /// Host pids of the processes blocked in autofs, and the autofs mount points they may
    /// wait on.
    blocked: Vec<u32>,
    points: Vec<Vec<u8>>,
    /// 1 where a unit asked for is not there, else 0.
    missing: u8,
}

/// Phase 2: the plan, the nested namespaces and the policy. A dry run stops here and says the
/// plan; so does a run with nothing to do.
fn plan(opened: Opened, s: &Settings, log: &Log) -> Result<Step<Planned>> {
    let Opened { lock, reached, text, holding } = opened;
    let init = reached.init();
    let table = Table::from_mountinfo(&text, init.host_pid())?;
    if s.dry_run {
        if let Some(left) = staging::left_behind(init, &table)? {
            log.say(format_args!(
                "an interrupted run left trees set aside in {}: they would go back first",
                left.place()
            ));
        }
    }
    let who = init.as_planned();
    let mut plan = Plan::make(&table, who, &s.units, &mut ProcFacts::new(init))?;
    report::notes(&plan).iter().for_each(|l| log.say(l));
    let missing = u8::from(!plan.missing.is_empty());
    if plan.is_empty() {
        if plan.missing.is_empty() {
            say_nothing_to_do(report::NO_MASTER, s, log);
        }
        return Ok(Step::Done(missing));
    }
    // Copies in nested mount namespaces that the restart does not reach: named, then the
    // policy says. Only systemd's restart makes new superblocks; a restarted automount daemon
    // takes the same ones over, so every copy of them stays served as it was.
    let survey = init.survey()?;
    let namespaces = if plan.units.is_empty() { Vec::new() } else { survey::namespaces(init, &table, &survey.nested)? };
    let places = Places::open(init, &namespaces);
    let nested = plan.apply_nested_policy(&namespaces, s.nested);
    report::nested(&nested).iter().for_each(|l| log.say(l));
    if nested.refuses() {
        return Ok(Step::Done(1));
    }
    let private = nested.copies.len();
    if plan.is_empty() || s.dry_run {
        report::describe(&plan).iter().for_each(|l| log.say(l));
        return Ok(Step::Done(missing));
    }
    // What follows needs only what it owns, not the table: a large one would stay in memory
    // while phase 4 reads the table again (peak RSS, build/bench-notes.md).
    let points: Vec<Vec<u8>> = table.autofs_points().into_iter().map(<[u8]>::to_vec).collect();
    drop(table);
    drop(text);
    let planned =
        Planned { lock, reached, plan, holding, namespaces, places, private, blocked: survey.blocked, points, missing };
    Ok(Step::Go(planned))
}

/// Phase 3's start: inside the container, with what the blocked processes wait for, read
/// while they still wait (the plan goes apart from it, to the fix).
struct Entered {
    inside: Inside,
    holding: Holding,
    namespaces: Vec<Namespace>,
    places: Places,
    private: usize,
    waiting: Vec<Blocked>,
    missing: u8,
    /// Kept, not read: the run lock, closed when the run ends, after all else here (fields
    /// drop in order).
    _lock: OwnedFd,
}

fn enter(planned: Planned, api: Api) -> Result<(Entered, Plan)> {
    let Planned { lock, reached, plan, holding, namespaces, places, private, blocked, points, missing } = planned;
    let inside = reached.enter(api)?;
    let waiting: Vec<Blocked> =
        blocked.iter().map(|&pid| Blocked::of(&inside, pid, points.iter().map(Vec::as_slice))).collect();
    Ok((Entered { _lock: lock, inside, holding, namespaces, places, private, waiting, missing }, plan))
}

impl Entered {
    /// What the fix must know of what was found.
    fn found(&self) -> Found<'_> {
        let copies = Copies { namespaces: &self.namespaces, places: &self.places };
        Found { copies, private: self.private, waiting: &self.waiting, holding: &self.holding }
    }
}

/// What the survey found that the fix must know: the copies in nested namespaces, how many of
/// them are private, and the processes blocked before the fix; and what releases.
struct Found<'a> {
    copies: Copies<'a>,
    private: usize,
    waiting: &'a [Blocked],
    /// What releases old superblocks without a path walk.
    holding: &'a Holding,
}

/// Says, of each process that was blocked before the fix, whether it was released (its old
/// superblock released through a held descriptor) or still waits; kills those that still
/// wait where `fx.blocked` says so.
fn blocked(fx: &Fixing<'_>, waiting: &[Blocked], released: &[Vec<u8>]) {
    let (inside, log) = (fx.inside, fx.log);
    for b in waiting {
        let expected = b.on.as_ref().is_some_and(|on| released.contains(on));
        // A released process leaves its wait at once; it may take a moment to be scheduled.
        let deadline = std::time::Instant::now() + Duration::from_millis(if expected { 500 } else { 0 });
        let mut still = inside.init().procs().still_blocked(b.pid);
        while still && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            still = inside.init().procs().still_blocked(b.pid);
        }
        if still && fx.blocked == OnBlocked::Kill {
            kill_and_say(fx, b);
        } else if still {
            log.say(b.warning());
        } else if expected {
            log.say(b.released());
        }
    }
}

/// Kills the blocked process `b` (`kill_blocked`) and says so, or why it could not. Whether it
/// no longer waits (killed, or its wait ended by itself).
fn kill_and_say(fx: &Fixing<'_>, b: &Blocked) -> bool {
    match kill_blocked(fx.inside, b.pid) {
        Ok(killed) => {
            if killed {
                fx.log.say(b.killed());
            }
            true
        }
        Err(e) => {
            fx.log.say(format_args!("{}; {e}", b.warning()));
            false
        }
    }
}

/// SIGKILLs host pid `pid` if it is still blocked in autofs: checked once it is held by a
/// pidfd, so a pid reused meanwhile is never hit. Whether it was.
fn kill_blocked(inside: &Inside, pid: u32) -> Result<bool> {
    let Some(pidfd) = pidfd::open(pid) else { return Ok(false) };
    if !inside.init().procs().still_blocked(pid) {
        return Ok(false);
    }
    pidfd_send_signal(&pidfd, Signal::KILL).context(format!("killing pid {pid}"))?;
    // Until it is gone it keeps its lookup pending, which a new master's walk would wait for.
    let _ = pidfd::exited_within(pidfd.as_fd(), Duration::from_secs(2));
    Ok(true)
}

/// What phase 3 came to.
struct Fixed {
    /// Whether a unit or a daemon failed (each said).
    failed: bool,
    /// The mount points whose old superblock was released through a held descriptor.
    released: Vec<Vec<u8>>,
}

/// Phase 3 (inside): restarts the units, releases their old superblocks where held or copied,
/// restarts the daemons, and says each outcome.
fn fix(fx: &Fixing<'_>, plan: Plan, found: &Found<'_>) -> Fixed {
    let (inside, log) = (fx.inside, fx.log);
    let mut failed = false;
    // Read while the daemons still run, before anything restarts.
    let mut daemons: Vec<Daemon> =
        plan.daemons.into_iter().map(|d| Daemon::prepare(inside, d, &found.holding.release, found.waiting)).collect();
    let outcomes = if plan.units.is_empty() {
        Vec::new()
    } else {
        let (outcomes, unfinished) = systemd::restart(fx, plan.units);
        if let Some(e) = unfinished {
            log.say(e);
            failed = true;
        }
        outcomes
    };
    let mut released =
        if found.private > 0 || found.holding.release.holds_any() { release(fx, found, &outcomes) } else { Vec::new() };
    for o in &outcomes {
        log.say(o.line());
        failed |= o.result.is_err();
    }
    let mut blocked_on: Vec<&[u8]> = found.waiting.iter().filter_map(|b| b.on.as_deref()).collect();
    if fx.blocked == OnBlocked::Kill {
        // What would hang a daemon's start and nothing can release goes first.
        for b in found.waiting {
            let Some(on) = b.on.as_deref() else { continue };
            if daemons.iter().any(|d| d.cannot_release(on)) && kill_and_say(fx, b) {
                blocked_on.retain(|p| *p != on);
            }
        }
    }
    for d in &mut daemons {
        let outcome = d.fix(fx, &blocked_on);
        d.steps().iter().for_each(|l| log.step(l));
        let (line, failure) = d.line(&outcome);
        log.say(line);
        failed |= failure;
        d.unreleased().iter().for_each(|l| log.say(l));
        released.extend(d.released());
    }
    Fixed { failed, released }
}

/// Releases the restarted units' old superblocks (`Release::replaced` says how) and says so.
/// A copy that stays as it was is worth a warning, not a failure: the unit is fixed. Returns
/// the mount points released through a held descriptor.
fn release(fx: &Fixing<'_>, found: &Found<'_>, outcomes: &[Outcome]) -> Vec<Vec<u8>> {
    let (inside, log) = (fx.inside, fx.log);
    // Only superblocks the container's own namespace no longer has: catatonic is for good,
    // and for every namespace that has the superblock. Where the plan read below the held
    // mounts, pre-resume found every autofs mount then: of those, the ones still mounted.
    let (init, holding) = (inside.init(), found.holding);
    let text =
        if holding.below.is_empty() { inside.mount_table().map(|t| t.text) } else { inside.mounts_of(&holding.below) };
    let live: Vec<Dev> = match text
        .and_then(|t| Ok(Table::from_mountinfo(&t, init.host_pid())?.autofs().iter().map(|a| a.mount.dev).collect()))
    {
        Ok(live) => live,
        Err(e) => {
            log.say(format_args!("warning: the old autofs mounts stay as they were: {e}"));
            return Vec::new();
        }
    };
    let mut released = Vec::new();
    for u in outcomes.iter().filter(|o| o.result.is_ok()).map(|o| &o.unit) {
        if live.contains(&u.dev) {
            log.say(format_args!(
                "{}: warning: its old autofs mount {} is still in use: copies stay as they were",
                u.name, u.dev
            ));
            continue;
        }
        let waiting =
            || found.waiting.iter().any(|b| b.on.as_ref() == Some(&u.path) && init.procs().still_blocked(b.pid));
        let Released { held, copies } = holding.release.replaced(inside, u.dev, &found.copies, waiting);
        match held {
            Some(Ok(waits)) => {
                let line = format!("{}: made its old autofs mount {} catatonic{}", u.name, u.dev, waits.note());
                match waits {
                    Waits::Unanswered(_) => log.say(format_args!("warning: {line}")),
                    _ => log.step(line),
                }
                released.push(u.path.clone());
            }
            Some(Err(e)) => {
                log.say(format_args!("{}: warning: its old autofs mount {} stays as it was: {e}", u.name, u.dev))
            }
            None => {}
        }
        for CopyReleased { path, namespace: ns, done } in copies {
            let path = Shown(&path);
            match done {
                Ok(()) => log.step(format_args!("{}: made the copy at {path} in {ns} catatonic", u.name)),
                Err(e) => log.say(format_args!("{}: warning: the copy at {path} in {ns} stays as it was: {e}", u.name)),
            }
        }
    }
    released
}

/// What putting back an interrupted run's trees came to.
enum Recovered {
    /// Nothing was left: still outside.
    Nothing(Host),
    /// Everything went back: inside, where it was done.
    AllBack(Inside),
    /// Not everything went back (each step said): nothing else is to be done.
    NotAll,
}

/// Puts back what an interrupted run left set aside in the table `text`, entering the
/// container to do so (under the lock), and says each step.
fn recover_staged(host: Host, text: &[u8], api: Api, log: &Log) -> Result<Recovered> {
    if !staging::anything_left(host.init(), text) {
        return Ok(Recovered::Nothing(host));
    }
    let table = Table::from_mountinfo(text, host.init().host_pid())?;
    let Some(left) = staging::left_behind(host.init(), &table)? else { return Ok(Recovered::Nothing(host)) };
    let place = left.place();
    let inside = host.enter(api)?;
    let steps = left.plan(&inside, &table)?;
    let (said, all) = mounts::recover(&inside, left, &steps);
    for line in said {
        log.say(format_args!("recovering: {line}"));
    }
    if !all {
        log.say(format_args!(
            "failed: what an interrupted run set aside in {place} did not all go back; nothing else done"
        ));
        return Ok(Recovered::NotAll);
    }
    Ok(Recovered::AllBack(inside))
}

/// `autofs-restart recover`: puts back what an interrupted run left set aside, and nothing
/// else. Returns the exit code.
pub fn recover(init: InitPid, timeout: Duration, api: Api) -> Result<u8> {
    let log = Log::new(false);
    let host = Host::open(init)?;
    if staging::anything_left(host.init(), &host.init().mountinfo()?) {
        let (_lock, _) = host.lock(timeout)?;
        // Read again under the lock: a run that held it may have finished meanwhile.
        let text = host.init().mountinfo()?;
        match recover_staged(host, &text, api, &log)? {
            Recovered::Nothing(_) => {}
            Recovered::AllBack(_) => return Ok(0),
            Recovered::NotAll => return Ok(1),
        }
    }
    log.say(format_args!("nothing to recover"));
    Ok(0)
}
