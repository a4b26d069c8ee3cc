//! The autofs package's `automount` daemon as a master (inside the container). It matches
//! direct and offset requests by the (dev, ino) it recorded, so after a restore it answers
//! none of them. A fresh daemon re-attaches to the autofs mounts already there and keeps what
//! is mounted on them; so the cure is SIGKILL (never SIGTERM: on SIGTERM it unmounts what it
//! can) and a fresh start, by whoever supervises it (`plan::Supervisor`).

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags, openat};

use crate::autofs::Table;
use crate::container::{Inside, Spec, pidfd};
use crate::error::{Context, Error, Result};
use crate::helper;
use crate::plan::{DaemonPlan, Served, Supervisor};
use crate::procfs;
use crate::show::Shown;

/// A daemon to restart, with what it takes to start it again where nobody else does.
pub struct Daemon {
    pub plan: DaemonPlan,
    respawn: Option<Result<Respawn>>,
}

impl Daemon {
    /// Reads what starting it again takes, if that is ours to do: inside, so that its paths
    /// are the container's; before any restart, while it still runs.
    pub fn prepare(inside: &Inside, plan: DaemonPlan) -> Daemon {
        let respawn = (plan.supervisor == Supervisor::Init).then(|| Respawn::read(inside, plan.pid));
        Daemon { plan, respawn }
    }

    /// Who it is, for its line.
    pub fn who(&self) -> String {
        let old = self.plan.pid;
        match &self.plan.supervisor {
            Supervisor::Systemd(unit) => format!("{unit}: automount (pid {old})"),
            Supervisor::Other(sup) => format!("automount (pid {old}) under pid {sup}"),
            Supervisor::Init => format!("automount (pid {old})"),
        }
    }

    /// Restarts it (and probes its idle direct mounts, with `probe`). Returns its line.
    pub fn fix(&self, inside: &Inside, timeout: Duration, probe: bool) -> Result<String> {
        let new = match &self.plan.supervisor {
            Supervisor::Systemd(unit) => self.restart_through_systemd(inside, unit, timeout)?,
            Supervisor::Other(_) => self.restart_supervised(inside, timeout)?,
            Supervisor::Init => match &self.respawn {
                Some(Ok(r)) => self.restart_respawning(inside, r, timeout)?,
                Some(Err(e)) => return Err(e.clone()),
                None => return Err(Error::check("nothing known to start it again with")),
            },
        };
        if probe {
            for m in self.plan.mounts.iter().filter(|m| m.probe_me()) {
                helper::probe(inside, &m.path, timeout).context("probing")?;
            }
        }
        Ok(format!("{}: restarted (now pid {new}), serving {}", self.who(), self.plan.served()))
    }

    /// Through its systemd service: SIGKILL to the main process (systemd runs no ExecStop= for
    /// a process that died), wait until systemd has reaped it, start the service, and wait
    /// until a new daemon serves every mount the old one served. Returns the new daemon's pid.
    fn restart_through_systemd(&self, inside: &Inside, unit: &str, timeout: Duration) -> Result<u32> {
        let deadline = Instant::now() + timeout;
        inside
            .run("systemctl", &[b"kill", b"--signal=KILL", b"--kill-whom=main", unit.as_bytes()], timeout)?
            .ok("systemctl kill")?;
        // Reaped means systemd has seen the death: a start sent earlier could find the unit
        // still active and do nothing.
        let old = self.plan.pid;
        wait_until(deadline, || Ok(!inside.init().exists(old)))
            .context(format!("waiting for automount (pid {old}) to die"))?;
        let left = deadline.saturating_duration_since(Instant::now());
        inside.run("systemctl", &[b"start", unit.as_bytes()], left)?.ok("systemctl start")?;
        self.wait_reattached(inside, deadline)
    }

    /// One that daemonised on its own: SIGKILL through a pidfd, wait for its death, start it
    /// again exactly once as it was (see `Respawn`), detached in a new session, and wait for
    /// the new one to serve every mount. Never retried: a second copy must never run.
    fn restart_respawning(&self, inside: &Inside, respawn: &Respawn, timeout: Duration) -> Result<u32> {
        let deadline = Instant::now() + timeout;
        let old = self.plan.pid;
        let killed = pidfd::kill(old)?;
        wait_until(deadline, || pidfd::exited(killed.as_fd()))
            .context(format!("waiting for automount (pid {old}) to die"))?;
        let left = deadline.saturating_duration_since(Instant::now());
        // In the init's namespaces, in the old daemon's cgroup, as its ids, in its working
        // directory reached without following a symlink (else /).
        let root = crate::paths::root()?;
        let cwd = crate::paths::open_dir(root.as_fd(), &respawn.cwd).unwrap_or(root);
        let spec = Spec::daemon(&respawn.exe, &respawn.argv, &respawn.env)
            .with_ids(respawn.uid, respawn.gid)
            .in_cgroup2(respawn.cgroup.as_fd())
            .in_dir(cwd.as_fd());
        let status = inside.spawn(spec, left)?.status;
        if !status.success() {
            return Err(Error::check(format!("starting {} again: {status}", Shown(&respawn.exe))));
        }
        self.wait_reattached(inside, deadline)
    }

    /// One that another process keeps alive: SIGKILL through a pidfd, and wait for the
    /// supervisor's new daemon to serve every mount.
    fn restart_supervised(&self, inside: &Inside, timeout: Duration) -> Result<u32> {
        let deadline = Instant::now() + timeout;
        let _killed = pidfd::kill(self.plan.pid)?;
        self.wait_reattached(inside, deadline)
    }

    /// Waits until a new automount serves each of our mounts, through a pipe it holds, and
    /// checks that nothing was unmounted. Returns its pid.
    fn wait_reattached(&self, inside: &Inside, deadline: Instant) -> Result<u32> {
        let init = inside.init();
        let mut new = None;
        wait_until(deadline, || {
            let text = init.mountinfo()?;
            let table = Table::from_mountinfo(&text, init.host_pid())?;
            new = self.reattached(inside, &table)?;
            Ok(new.is_some())
        })
        .context("waiting for a new automount to serve the mounts")?;
        new.ok_or_else(|| Error::check("no new automount"))
    }

    /// Some(new pid) once every mount is served by one new automount and is unchanged.
    fn reattached(&self, inside: &Inside, table: &Table<'_>) -> Result<Option<u32>> {
        let init = inside.init();
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
            let (Some(pgrp), Some(ino)) = (now.options.pgrp, now.options.pipe_ino) else { return Ok(None) };
            if now_served.pipe_ino == old.pipe_ino {
                return Ok(None);
            }
            let holder = match new {
                // One daemon serves them all: it holds this pipe too.
                Some(n) if init.holds_pipe(n, ino).unwrap_or(false) => n,
                Some(_) => return Ok(None),
                None => match init.pipe_holder(pgrp, ino)? {
                    Some(h) => h,
                    None => return Ok(None),
                },
            };
            if holder == self.plan.pid || !init.exe_of(holder).is_some_and(|exe| procfs::is_automount_exe(&exe)) {
                return Ok(None);
            }
            new = Some(holder);
        }
        Ok(new)
    }
}

/// What it takes to start a daemon again as it was, read before it is killed: its
/// executable, argv, environment, working directory (as the container sees them), ids, and its
/// cgroup (a directory of the host's cgroup2 hierarchy).
pub struct Respawn {
    exe: Vec<u8>,
    argv: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    cwd: Vec<u8>,
    uid: u32,
    gid: u32,
    cgroup: OwnedFd,
}

impl Respawn {
    /// Reads it from the host's /proc, inside the container, so that its paths are the
    /// container's; its cgroup is opened below the host's cgroup2 root kept from before.
    fn read(inside: &Inside, pid: u32) -> Result<Respawn> {
        let init = inside.init();
        let gone = |what: &str| Error::check(format!("reading the {what} of automount (pid {pid})"));
        let file = |name: &str, what: &str| init.proc_file(pid, name).ok_or_else(|| gone(what));
        let argv = procfs::nul_list(&file("cmdline", "command line")?);
        let env = procfs::nul_list(&file("environ", "environment")?);
        // Upgraded since it started: the new one, at the same path.
        let exe = procfs::exe_path(&init.exe_of(pid).ok_or_else(|| gone("executable"))?).to_vec();
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
        Ok(Respawn { exe, argv, env, cwd, uid, gid, cgroup })
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
