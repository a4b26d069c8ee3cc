//! The autofs package's `automount` daemon as a master (inside the container). It matches
//! direct and offset requests by the (dev, ino) it recorded, so after a restore it answers
//! none of them. A fresh daemon re-attaches to the autofs mounts already there and keeps what
//! is mounted on them; so the cure is SIGKILL (never SIGTERM: on SIGTERM it unmounts what it
//! can) and a fresh start, by whoever supervises it (`plan::Supervisor`). Idle triggered
//! direct multi-mounts are unmounted while no daemon runs, else the new one would hang at its
//! start (`multimount`); one in use leaves the daemon running. If no new daemon comes up,
//! what hangs of it is killed and the mounts nobody serves are made catatonic: an access then
//! fails at once, instead of hanging or being killed by SIGPIPE.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags, openat};

use super::leftovers::Leftovers;
use crate::container::paths;
use crate::container::{Inside, Spec, pidfd};
use crate::error::{Context, Error, Result};
use crate::masters::Fixing;
use crate::model::autofs::Table;
use crate::model::mountinfo::AutofsOptions;
use crate::model::plan::{DaemonPlan, Served, Supervisor};
use crate::model::procfs;
use crate::model::report;
use crate::show::{self, Shown};
use crate::work::holder::HeldMount;
use crate::work::mounts;
use crate::work::probe;
use crate::work::release::{self, Release, Waits};
use crate::work::survey::Blocked;

/// What became of a daemon.
pub enum Outcome {
    /// A new one runs (its pid) and serves every mount the old one served.
    Restarted(u32),
    /// It was left running, deliberately: why. Its mounts still hang.
    LeftRunning(String),
    /// Its restart failed; the error says where things stand.
    Failed(Error),
}

/// A daemon to restart, with what it takes to start it again where nobody else does.
pub struct Daemon<'c> {
    pub plan: DaemonPlan,
    respawn: Option<Result<Respawn>>,
    /// Its descriptors on its mounts (the holder's, else its own, taken over while it ran),
    /// and what releases through them (see `release`).
    held: Vec<HeldMount>,
    release: &'c Release,
    /// Whether it was killed: from then on a failure leaves its mounts without a daemon.
    killed: bool,
    /// The processes blocked on its mounts before the fix: host pid, mount point.
    waiting: Vec<(u32, Vec<u8>)>,
    /// The mount points released through `held`, and how (see `release`).
    released: Vec<(Vec<u8>, Result<Waits>)>,
    /// Its files that would stop a successor given its pid, found while it ran; and, once it
    /// was killed, each one's path and whether it was removed.
    leftovers: Leftovers,
    cleared: Vec<(Vec<u8>, Result<bool>)>,
}

impl<'c> Daemon<'c> {
    /// Reads what starting it again takes, if that is ours to do: inside, so that its paths
    /// are the container's; before any restart, while it still runs. Gets a descriptor on
    /// each of its mounts: one the pre-resume run's holder held, else its own (it keeps one on
    /// each direct and offset mount, which a restore opens on the restored mount).
    pub fn prepare(inside: &Inside, plan: DaemonPlan, release: &'c Release, waiting: &[Blocked]) -> Daemon<'c> {
        let respawn = (plan.supervisor == Supervisor::Init).then(|| Respawn::read(inside, plan.pid));
        let mut held = Vec::new();
        if release.can() {
            for m in &plan.mounts {
                if let Some(fd) = release.held_on(m.dev).and_then(|h| h.fd.try_clone().ok()) {
                    held.push(HeldMount { dev: m.dev, path: m.path.clone(), fd });
                }
            }
            for taken in take_fds(inside, &plan) {
                if HeldMount::on(&held, taken.dev).is_none() {
                    held.push(taken);
                }
            }
        }
        let ours = |b: &&Blocked| b.on.as_ref().is_some_and(|on| plan.mounts.iter().any(|m| m.path == *on));
        let waiting = waiting.iter().filter(ours).filter_map(|b| Some((b.pid, b.on.clone()?))).collect();
        let leftovers = Leftovers::find(inside, plan.pid);
        Daemon {
            plan,
            respawn,
            held,
            release,
            waiting,
            killed: false,
            released: Vec::new(),
            leftovers,
            cleared: Vec::new(),
        }
    }

    /// Once it is killed (SIGKILL sent: it runs no more code), before anything can start a
    /// new one: removes its files that would stop a successor given its pid.
    fn killed(&mut self) {
        self.killed = true;
        self.cleared = self.leftovers.clear();
    }

    /// The `-v` lines of what it left behind and what became of it.
    pub fn steps(&self) -> Vec<String> {
        let naming = self.leftovers.pid().map_or_else(String::new, |p| format!(" (naming pid {p} in the container)"));
        self.cleared
            .iter()
            .map(|(path, done)| match done {
                Ok(true) => format!("{}: removed {}{naming}", self.who(), Shown(path)),
                Ok(false) => format!("{}: left {}: it changed since the daemon was killed", self.who(), Shown(path)),
                Err(e) => format!("{}: warning: {e}", self.who()),
            })
            .collect()
    }

    /// The mount points whose waiters were released (see `release`).
    pub fn released(&self) -> Vec<Vec<u8>> {
        self.released
            .iter()
            .filter(|(_, w)| matches!(w, Ok(Waits::Woken | Waits::Answered(_))))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// A warning for each of its mounts whose waiters could not be released.
    pub fn unreleased(&self) -> Vec<String> {
        let line = |path: &[u8], why: String| format!("{}: warning: {}{why}", self.who(), Shown(path));
        self.released
            .iter()
            .filter_map(|(path, w)| match w {
                Ok(w @ Waits::Unanswered(_)) => Some(line(path, format!(": made catatonic{}", w.note()))),
                Err(e) => Some(line(path, format!(" stays as it was: {e}"))),
                Ok(_) => None,
            })
            .collect()
    }

    /// Once the old daemon is dead and before a new one starts: releases the superblocks it
    /// held descriptors on (`release`). A process blocked on one of them wakes (ENOENT); else
    /// the new daemon's own walk to re-attach to that mount would wait for it, and its start
    /// hang. The new daemon makes each mount catatonic anyway, as the first step of
    /// re-attaching, which wakes nobody before Linux 6.6.
    fn release(&mut self, inside: &Inside) {
        let Daemon { held, waiting, released, release, .. } = self;
        for HeldMount { path, fd, .. } in held.iter() {
            let still = || waiting.iter().any(|(pid, on)| on == path && inside.init().procs().still_blocked(*pid));
            if let Some(done) = release.through(fd.as_fd(), still) {
                released.push((path.clone(), done));
            }
        }
    }

    /// Whether a process blocked on `path` would hang this daemon's restart: a mount of its
    /// that it holds no descriptor on, to release that process through.
    pub fn cannot_release(&self, path: &[u8]) -> bool {
        self.plan.mounts.iter().any(|m| m.path == path && HeldMount::on(&self.held, m.dev).is_none())
    }

    /// Who it is, for its line.
    pub fn who(&self) -> String {
        let old = self.plan.pid;
        match &self.plan.supervisor {
            Supervisor::Systemd(unit) => format!("{unit}: automount (pid {old})"),
            Supervisor::Other(sup) => format!("automount (pid {old}) under pid {sup}"),
            Supervisor::Init => format!("automount (pid {old})"),
            Supervisor::IsInit => format!("automount (pid {old}, the container's init)"),
        }
    }

    /// Restarts it (and probes its idle direct mounts, with `fx.probe`). Returns its line.
    /// `blocked_on`: mount points a process of the container is blocked on now.
    pub fn fix(&mut self, fx: &Fixing<'_>, blocked_on: &[&[u8]]) -> Outcome {
        if self.plan.supervisor == Supervisor::IsInit {
            return Outcome::LeftRunning(report::DAEMON_IS_INIT.into());
        }
        if let Some(in_use) = &self.plan.in_use {
            return Outcome::LeftRunning(in_use.to_string());
        }
        // The new daemon's walk to re-attach to a mount would wait for that process, and its
        // start hang, unless we can release it first.
        if let Some(on) = blocked_on.iter().find(|on| self.cannot_release(on)) {
            return Outcome::LeftRunning(format!(
                "a process is blocked on {}, and a new automount would hang at its start until it is gone; end it (see its line, or --blocked kill), then run again",
                Shown(on)
            ));
        }
        match self.restart(fx) {
            Ok(new) => Outcome::Restarted(new),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Kills it and has a new one started (`fix`), then probes its idle direct mounts, with
    /// `fx.probe`. Returns the new daemon's pid.
    /// Called once: what starts it again is taken.
    fn restart(&mut self, fx: &Fixing<'_>) -> Result<u32> {
        let restarted = match self.plan.supervisor.clone() {
            Supervisor::Systemd(unit) => self.restart_through_systemd(fx, &unit),
            Supervisor::Other(_) => self.restart_supervised(fx),
            Supervisor::IsInit => return Err(Error::check(report::DAEMON_IS_INIT)),
            Supervisor::Init => match self.respawn.take() {
                Some(Ok(r)) => self.restart_respawning(fx, &r),
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(Error::check(
                        "nothing known to start it again with (its command line was not read): left running as it was",
                    ));
                }
            },
        };
        let new = match restarted {
            Ok(new) => new,
            // Never killed: it still serves its mounts as it did.
            Err(e) if !self.killed => return Err(e),
            Err(e) => return Err(self.abandon(fx, e)),
        };
        if fx.probe {
            for m in self.plan.mounts.iter().filter(|m| m.probe_me()) {
                probe::trigger(fx.inside, &m.path, fx.timeout).context("probing")?;
            }
        }
        Ok(new)
    }

    /// The line that says `outcome`, and whether it is a failure.
    pub fn line(&self, outcome: &Outcome) -> (String, bool) {
        let who = self.who();
        match outcome {
            Outcome::Restarted(new) => {
                (format!("{who}: restarted (now pid {new}), serving {}", self.plan.served()), false)
            }
            // Deliberate, but the mounts still hang: the run did not do what it is for.
            Outcome::LeftRunning(why) => (format!("{who}: failed: left running: {why}"), true),
            Outcome::Failed(e) => (format!("{who}: failed: {e}"), true),
        }
    }

    /// Through its systemd service: SIGKILL to the main process (systemd runs no ExecStop= for
    /// a process that died), wait until systemd has reaped it, start the service, and wait
    /// until a new daemon serves every mount the old one served. Returns the new daemon's pid.
    fn restart_through_systemd(&mut self, fx: &Fixing<'_>, unit: &str) -> Result<u32> {
        let (inside, timeout) = (fx.inside, fx.timeout);
        let deadline = Instant::now() + timeout;
        inside
            .run("systemctl", &[b"kill", b"--signal=KILL", b"--kill-whom=main", unit.as_bytes()], timeout)?
            .ok("systemctl kill")?;
        self.killed();
        // Reaped means systemd has seen the death: a start sent earlier could find the unit
        // still active and do nothing.
        let old = self.plan.pid;
        wait_until(deadline, || Ok(!inside.init().procs().exists(old)))
            .context(format!("waiting for automount (pid {old}) to die"))?;
        self.release(inside);
        self.reset()?;
        let left = deadline.saturating_duration_since(Instant::now());
        let since = std::time::SystemTime::now();
        let started = inside.run("systemctl", &[b"start", unit.as_bytes()], left).and_then(|o| o.ok("systemctl start"));
        started.and_then(|_| self.wait_reattached(inside, deadline)).map_err(|e| {
            // systemd says only that the start failed: the daemon's words are in the journal.
            let said = unit_said(fx, unit, since);
            if said.is_empty() { e } else { Error::Said { source: Box::new(e), who: "automount".into(), said } }
        })
    }

    /// One that daemonised on its own: SIGKILL through a pidfd, wait for its death, start it
    /// again exactly once as it was (see `Respawn`), detached in a new session, and wait for
    /// the new one to serve every mount. Never retried: a second copy must never run.
    fn restart_respawning(&mut self, fx: &Fixing<'_>, respawn: &Respawn) -> Result<u32> {
        let inside = fx.inside;
        let deadline = Instant::now() + fx.timeout;
        let old = self.plan.pid;
        let dying = pidfd::kill(old)?;
        self.killed();
        wait_until(deadline, || pidfd::exited(dying.as_fd()))
            .context(format!("waiting for automount (pid {old}) to die"))?;
        self.release(inside);
        self.reset()?;
        let left = deadline.saturating_duration_since(Instant::now());
        // In the init's namespaces, in the old daemon's cgroup, as its ids, in its working
        // directory reached without following a symlink (else /).
        let root = crate::container::paths::root()?;
        let cwd = crate::container::paths::open_dir(root.as_fd(), &respawn.cwd).unwrap_or(root);
        let mut spec = Spec::daemon(&respawn.exe, &respawn.argv, &respawn.env)
            .with_ids(respawn.uid, respawn.gid)
            .in_cgroup2(respawn.cgroup.as_fd())
            .in_dir(cwd.as_fd());
        if let Some(output) = &respawn.foreground {
            spec = spec.in_foreground(output.as_ref().map(|[out, err]| [out.as_fd(), err.as_fd()]));
        }
        let started = inside.spawn(spec, left)?;
        // Its own words, on the stderr it had until it daemonised ("program is already
        // running" exits 0). One in the foreground writes where its predecessor did.
        let said = |e: Error| match show::last_lines(&started.stderr) {
            said if said.is_empty() => e,
            said => Error::Said { source: Box::new(e), who: "automount".into(), said },
        };
        if !started.status.success() {
            return Err(said(Error::check(format!("starting {} again: {}", Shown(&respawn.exe), started.status))));
        }
        self.wait_reattached(inside, deadline).map_err(said)
    }

    /// One that another process keeps alive: SIGKILL through a pidfd, and wait for the
    /// supervisor's new daemon to serve every mount. The supervisor starts it again at once,
    /// so idle multi-mounts are unmounted just before the kill (detached: the old daemon holds
    /// them open until it dies); an access in between finds a plain directory.
    fn restart_supervised(&mut self, fx: &Fixing<'_>) -> Result<u32> {
        let inside = fx.inside;
        let deadline = Instant::now() + fx.timeout;
        self.reset()?;
        let dying = pidfd::kill(self.plan.pid)?;
        self.killed();
        // Its supervisor starts a new one at once: released as soon as it is dead.
        let _ = wait_until(Instant::now() + Duration::from_millis(200), || pidfd::exited(dying.as_fd()));
        self.release(inside);
        self.wait_reattached(inside, deadline)
    }

    /// Unmounts the idle triggered direct multi-mounts, offsets first, then their bases.
    fn reset(&self) -> Result<()> {
        let root = paths::root()?;
        for r in &self.plan.resets {
            for path in r.below.iter().chain([&r.base]) {
                mounts::detach(root.as_fd(), path)
                    .context(format!("unmounting the idle multi-mount at {}", Shown(path)))?;
            }
        }
        Ok(())
    }

    /// After the old daemon died and no new one came up: kill what hangs of the new one (what
    /// is ours to start again; a supervisor's own is its business), make the mounts nobody
    /// serves catatonic, and say where things stand.
    fn abandon(&self, fx: &Fixing<'_>, e: Error) -> Error {
        let (inside, timeout) = (fx.inside, fx.timeout);
        let init = inside.init();
        let mut state = Vec::new();
        let killed = match &self.plan.supervisor {
            Supervisor::Systemd(unit) => {
                let out = inside.run("systemctl", &[b"kill", b"--signal=KILL", unit.as_bytes()], timeout);
                out.and_then(|o| o.ok("systemctl kill")).map(|_| format!("killed what was left of {unit}"))
            }
            Supervisor::Init => kill_all(inside).map(|n| format!("killed {n} new automount process(es)")),
            Supervisor::Other(p) => Ok(format!("its supervisor (pid {p}) did not start one that serves them")),
            Supervisor::IsInit => Ok("it was the container's init".into()),
        };
        state.push(killed.unwrap_or_else(|e| format!("could not kill what hangs: {e}")));
        let mut paths: Vec<&[u8]> = self.plan.mounts.iter().map(|m| m.path.as_slice()).collect();
        paths.extend(self.plan.resets.iter().map(|r| r.base.as_slice()));
        paths.sort_unstable();
        let (mut made, mut covered, mut unmounted) = (Vec::new(), Vec::new(), Vec::new());
        let text = inside.mount_table();
        let table = text.as_ref().map_err(Clone::clone).and_then(|t| Table::from_mountinfo(&t.text, init.host_pid()));
        for path in paths {
            let Ok(table) = &table else { break };
            let Some(a) = table.autofs_at(path) else {
                unmounted.push(Shown(path).to_string());
                continue;
            };
            // Made so already (through a held descriptor, or by a new daemon that then hung).
            if a.options.catatonic() && a.stack.is_empty() {
                made.push(Shown(path).to_string());
                continue;
            }
            if !self.unserved(inside, &a.options) && !a.options.catatonic() {
                continue;
            }
            // A path reaches the top, not the autofs mount below it: the top still answers.
            if !a.stack.is_empty() {
                covered.push(Shown(path).to_string());
                continue;
            }
            match release::by_path(inside, None, path, a.mount.dev, timeout) {
                Ok(()) => made.push(Shown(path).to_string()),
                Err(e) => state.push(format!("{} stays as it was: {e}", Shown(path))),
            }
        }
        if let Err(e) = &table {
            state.push(format!("its mounts stay as they were: {e}"));
        }
        if !made.is_empty() {
            state.push(format!(
                "no automount serves {} now: made catatonic, an access fails at once instead of hanging, what is mounted on them stays",
                made.join(", ")
            ));
        }
        if !covered.is_empty() {
            state.push(format!("{} keep what is mounted on them, with no automount below it", covered.join(", ")));
        }
        if !unmounted.is_empty() {
            state.push(format!("{} stays unmounted", unmounted.join(", ")));
        }
        state.push("start the daemon again by hand once it can start".into());
        Error::Left { source: Box::new(e), state: state.join("; ") }
    }

    /// Whether an autofs mount's master is gone: no process holds its pipe any more.
    fn unserved(&self, inside: &Inside, options: &AutofsOptions) -> bool {
        match (options.pgrp, options.pipe_ino) {
            (Some(pgrp), Some(ino)) => !inside.init().procs().pipe_holder(pgrp, ino).is_ok_and(|h| h.is_some()),
            // Catatonic already, or its group is not ours to see.
            _ => false,
        }
    }

    /// Waits until a new automount serves each of our mounts, through a pipe it holds, and
    /// checks that nothing was unmounted. Returns its pid.
    fn wait_reattached(&self, inside: &Inside, deadline: Instant) -> Result<u32> {
        let init = inside.init();
        let mut new = None;
        wait_until(deadline, || {
            let text = inside.mount_table()?.text;
            let table = Table::from_mountinfo(&text, init.host_pid())?;
            new = self.reattached(inside, &table)?;
            Ok(new.is_some())
        })
        .context("waiting for a new automount to serve the mounts")?;
        new.ok_or_else(|| Error::check("no new automount"))
    }

    /// Some(new pid) once every mount is served by one new automount and is unchanged, and
    /// every multi-mount base that was reset is mounted again by it.
    fn reattached(&self, inside: &Inside, table: &Table<'_>) -> Result<Option<u32>> {
        let mut new = None;
        let all = table.autofs();
        for old in &self.plan.mounts {
            let Some(now) = all.iter().find(|a| a.mount.id == old.id) else {
                return Err(Error::check(format!("the autofs mount at {} is gone", Shown(&old.path))));
            };
            let now_served = Served::of(now);
            if (&now_served.path, now_served.dev, &now_served.stack, now_served.inside, now_served.kind)
                != (&old.path, old.dev, &old.stack, old.inside, old.kind)
            {
                return Err(Error::check(format!("what is mounted at {} changed", Shown(&old.path))));
            }
            if now.options.pipe_ino == old.pipe_ino || !self.served_by_new(inside, &now.options, &mut new)? {
                return Ok(None);
            }
        }
        for r in &self.plan.resets {
            match table.autofs_at(&r.base) {
                Some(now) if self.served_by_new(inside, &now.options, &mut new)? => {}
                _ => return Ok(None),
            }
        }
        Ok(new)
    }

    /// Whether a mount's pipe is held by a new automount: the one in `new`, once one is found
    /// (one daemon serves them all).
    fn served_by_new(&self, inside: &Inside, options: &AutofsOptions, new: &mut Option<u32>) -> Result<bool> {
        let init = inside.init();
        let (Some(pgrp), Some(ino)) = (options.pgrp, options.pipe_ino) else { return Ok(false) };
        let holder = match *new {
            Some(n) => return Ok(init.procs().holds_pipe(n, ino).unwrap_or(false)),
            None => init.procs().pipe_holder(pgrp, ino)?,
        };
        match holder {
            Some(h)
                if h != self.plan.pid && init.procs().exe_of(h).is_some_and(|exe| procfs::is_automount_exe(&exe)) =>
            {
                *new = Some(h);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Takes over the daemon's own descriptors on the mounts it serves (with their mount points),
/// through a pidfd: a reused pid is never read from.
fn take_fds(inside: &Inside, plan: &DaemonPlan) -> Vec<HeldMount> {
    let Some(daemon) = pidfd::open(plan.pid) else { return Vec::new() };
    let mut taken = Vec::new();
    for (n, dev) in inside.init().procs().fds(plan.pid) {
        let Some(m) = plan.mounts.iter().find(|m| m.dev == dev) else { continue };
        if HeldMount::on(&taken, dev).is_some() {
            continue;
        }
        if let Ok(fd) = rustix::process::pidfd_getfd(&daemon, n, rustix::process::PidfdGetfdFlags::empty()) {
            taken.push(HeldMount { dev, path: m.path.clone(), fd });
        }
    }
    taken
}

/// The stdout and stderr of process `pid`, through a pidfd; None if either cannot be taken.
fn output_of(pid: u32) -> Option<[OwnedFd; 2]> {
    let daemon = pidfd::open(pid)?;
    let take = |n| rustix::process::pidfd_getfd(&daemon, n, rustix::process::PidfdGetfdFlags::empty()).ok();
    Some([take(1)?, take(2)?])
}

/// Kills every automount process of the container (the old one is known to be gone: these are
/// what hangs of the new one), and waits a little for them to go. Returns how many.
fn kill_all(inside: &Inside) -> Result<usize> {
    let init = inside.init();
    let new: Vec<u32> = init
        .container_pids()?
        .into_iter()
        .filter(|&pid| init.procs().exe_of(pid).is_some_and(|exe| procfs::is_automount_exe(&exe)))
        .collect();
    let killed: Vec<OwnedFd> = new.iter().filter_map(|&pid| pidfd::kill(pid).ok()).collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    let _ = wait_until(deadline, || killed.iter().try_fold(true, |all, fd| Ok(all && pidfd::exited(fd.as_fd())?)));
    Ok(killed.len())
}

/// What it takes to start a daemon again as it was, read before it is killed: its
/// executable, argv, environment, working directory (as the container sees them), ids, and its
/// cgroup (a directory of the host's cgroup2 hierarchy). One that stays in the foreground
/// (`-f`) is started so again, with its stdout and stderr, taken over while it ran.
pub struct Respawn {
    exe: Vec<u8>,
    argv: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    cwd: Vec<u8>,
    uid: u32,
    gid: u32,
    cgroup: OwnedFd,
    foreground: Option<Option<[OwnedFd; 2]>>,
}

impl Respawn {
    /// Reads it from the host's /proc, inside the container, so that its paths are the
    /// container's; its cgroup is opened below the host's cgroup2 root kept from before.
    fn read(inside: &Inside, pid: u32) -> Result<Respawn> {
        let init = inside.init();
        let gone = |what: &str| Error::check(format!("reading the {what} of automount (pid {pid})"));
        let file = |name: &str, what: &str| init.procs().proc_file(pid, name).ok_or_else(|| gone(what));
        let argv = procfs::nul_list(&file("cmdline", "command line")?);
        let env = procfs::nul_list(&file("environ", "environment")?);
        // Upgraded since it started: the new one, at the same path.
        let exe = procfs::exe_path(&init.procs().exe_of(pid).ok_or_else(|| gone("executable"))?).to_vec();
        let cwd = inside.link_of(pid, "cwd").ok_or_else(|| gone("working directory"))?;
        let status = file("status", "status")?;
        let (Some(uid), Some(gid)) = (procfs::real_id(&status, b"Uid:"), procfs::real_id(&status, b"Gid:")) else {
            return Err(gone("ids"));
        };
        // /proc shows host ids; the daemon starts again inside the container's user namespace
        // (if it has one), which knows them by its own numbers.
        let map = |name: &str, id: u32| procfs::id_inside(id, &file(name, name)?).ok_or_else(|| gone(name));
        let (uid, gid) = (map("uid_map", uid)?, map("gid_map", gid)?);
        let cgroup = file("cgroup", "cgroup")?;
        let path = procfs::cgroup2_path(&cgroup).ok_or_else(|| gone("cgroup2 path"))?;
        let rel = String::from_utf8_lossy(path).trim_start_matches('/').to_string();
        let rel = if rel.is_empty() { ".".to_string() } else { rel };
        let cgroup = openat(
            inside.host_cgroup2()?,
            rel.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context(format!("opening the cgroup /{rel} of automount (pid {pid})"))?;
        if argv.is_empty() {
            return Err(gone("command line"));
        }
        let foreground = procfs::stays_in_foreground(&argv).then(|| output_of(pid));
        Ok(Respawn { exe, argv, env, cwd, uid, gid, cgroup, foreground })
    }
}

/// What a service's own processes wrote to the journal since `since` (the daemon's stderr and
/// syslog; not systemd's lines about it), its last lines, through the container's journalctl.
/// Nothing when it cannot be read.
fn unit_said(fx: &Fixing<'_>, unit: &str, since: std::time::SystemTime) -> Vec<Vec<u8>> {
    let Ok(since) = since.duration_since(std::time::UNIX_EPOCH) else { return Vec::new() };
    let since = format!("--since=@{}.{:06}", since.as_secs(), since.subsec_micros());
    let unit = format!("_SYSTEMD_UNIT={unit}");
    let args: [&[u8]; 6] = [b"-q", b"--no-pager", b"-o", b"cat", since.as_bytes(), unit.as_bytes()];
    match fx.inside.spawn(Spec::container("journalctl", &args).keeping_stdout(), fx.timeout) {
        Ok(out) if out.status.success() => show::last_lines(&out.stderr),
        _ => Vec::new(),
    }
}

/// Polls `done` every 10 ms until it is true or the deadline passes.
fn wait_until(deadline: Instant, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::check("timed out"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
