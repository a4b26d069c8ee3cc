//! The autofs package's `automount` daemon as a master. It matches direct and offset requests
//! by the (dev, ino) it recorded, so after a restore it answers none of them. A fresh daemon
//! re-attaches to the autofs mounts already there and keeps what is mounted on them; so the
//! cure is SIGKILL (never SIGTERM: on SIGTERM it unmounts what it can) and a fresh start.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags, openat};

use crate::autofs::{Autofs, Table};
use crate::container::Container;
use crate::error::{Error, Result, Shown};
use crate::mountinfo::{AutofsKind, Dev};

/// Who starts the daemon again once it is killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervisor {
    /// A service of the container's systemd.
    Systemd(String),
    /// Daemonised on its own: its parent is the container's init.
    Init,
    /// Kept alive by another process (host pid).
    Other(u32),
}

/// A daemon and the autofs mounts it serves, as they were before the restart.
pub struct Daemon {
    /// Host pid: the process that holds the mounts' pipe.
    pub pid: u32,
    /// Its process group, as mountinfo's `pgrp=` shows it: its own, or its supervisor's.
    pub pgrp: u32,
    pub supervisor: Supervisor,
    pub mounts: Vec<Served>,
}

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

/// Whether `exe` (a /proc/PID/exe link) is the automount daemon.
pub fn is_automount_exe(exe: &[u8]) -> bool {
    let exe = exe.strip_suffix(b" (deleted)").unwrap_or(exe);
    exe.rsplit(|&b| b == b'/').next() == Some(b"automount")
}

/// The systemd service whose cgroup holds a process, from its /proc/PID/cgroup: the unified
/// line (`0::PATH`) or, on a legacy hierarchy, systemd's own (`N:name=systemd:PATH`).
pub fn service_of(cgroup: &[u8]) -> Option<String> {
    cgroup.split(|&b| b == b'\n').find_map(|line| {
        let mut fields = line.splitn(3, |&b| b == b':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if !controllers.is_empty() && controllers != b"name=systemd" {
            return None;
        }
        let name = std::str::from_utf8(path.rsplit(|&b| b == b'/').next()?).ok()?;
        name.ends_with(".service").then(|| name.to_string())
    })
}

/// The parent pid, field (4) of /proc/PID/stat.
pub fn parent_of(stat: &[u8]) -> Option<u32> {
    stat_field(stat, 4)
}

/// The process group, field (5) of /proc/PID/stat.
pub fn pgrp_of(stat: &[u8]) -> Option<u32> {
    stat_field(stat, 5)
}

/// The start time, field (22) of /proc/PID/stat, in clock ticks since boot.
pub fn start_time_of(stat: &[u8]) -> Option<u64> {
    stat_field(stat, 22)
}

/// Field `n` (from 1, as proc(5) counts, n ≥ 3) of /proc/PID/stat, read after the command
/// name, which may hold spaces and parentheses.
fn stat_field<T: std::str::FromStr>(stat: &[u8], n: usize) -> Option<T> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_ascii_whitespace().nth(n - 3)?.parse().ok()
}

impl Daemon {
    /// Restarts the daemon through its systemd service: SIGKILL to the main process (systemd
    /// runs no ExecStop= for a process that died), wait until systemd has reaped it, start the
    /// service, and wait until a new daemon serves every mount the old one served. Returns the
    /// new daemon's pid.
    pub fn restart_through_systemd(&self, ctr: &Container, unit: &str, timeout: Duration) -> Result<u32> {
        let deadline = Instant::now() + timeout;
        let out = ctr.run("systemctl", &[b"kill", b"--signal=KILL", b"--kill-whom=main", unit.as_bytes()], timeout)?;
        if !out.status.success() {
            return Err(Error::Failed(format!("systemctl kill: {}", out.summary())));
        }
        // Reaped means systemd has seen the death: a start sent earlier could find the unit
        // still active and do nothing.
        wait_until(deadline, || Ok(!ctr.exists(self.pid)))
            .map_err(|e| Error::Failed(format!("waiting for automount (pid {}) to die: {e}", self.pid)))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let out = ctr.run("systemctl", &[b"start", unit.as_bytes()], left)?;
        if !out.status.success() {
            return Err(Error::Failed(format!("systemctl start: {}", out.summary())));
        }
        self.wait_reattached(ctr, deadline)
    }

    /// Restarts a daemon that daemonised on its own: SIGKILL through a pidfd, wait for its
    /// death, start it again exactly once as it was (see `Respawn`), detached in a new session,
    /// and wait for the new one to serve every mount.
    pub fn restart_respawning(&self, ctr: &Container, respawn: &Respawn, timeout: Duration) -> Result<u32> {
        let deadline = Instant::now() + timeout;
        let pidfd = crate::container::kill_pid(self.pid)?;
        wait_until(deadline, || crate::container::exited(pidfd.as_fd()))
            .map_err(|e| Error::Failed(format!("waiting for automount (pid {}) to die: {e}", self.pid)))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let status = ctr.respawn(respawn, left)?;
        if !status.success() {
            return Err(Error::Failed(format!("starting {} again: {status}", Shown(&respawn.exe))));
        }
        self.wait_reattached(ctr, deadline)
    }

    /// Restarts a daemon that another process keeps alive: SIGKILL through a pidfd, and wait
    /// for the supervisor's new daemon to serve every mount.
    pub fn restart_supervised(&self, ctr: &Container, timeout: Duration) -> Result<u32> {
        let deadline = Instant::now() + timeout;
        let _pidfd = crate::container::kill_pid(self.pid)?;
        self.wait_reattached(ctr, deadline)
    }

    /// Waits until a new automount serves each of our mounts, through a pipe it holds, and
    /// checks that nothing was unmounted. Returns its pid.
    fn wait_reattached(&self, ctr: &Container, deadline: Instant) -> Result<u32> {
        let mut new = None;
        wait_until(deadline, || {
            let text = ctr.mountinfo()?;
            let table = Table::from_mountinfo(&text, ctr.pid)?;
            new = self.reattached(ctr, &table)?;
            Ok(new.is_some())
        })
        .map_err(|e| Error::Failed(format!("waiting for a new automount to serve the mounts: {e}")))?;
        new.ok_or_else(|| Error::Failed("no new automount".into()))
    }

    /// Some(new pid) once every mount is served by one new automount and is unchanged.
    fn reattached(&self, ctr: &Container, table: &Table<'_>) -> Result<Option<u32>> {
        let mut new = None;
        let all = table.autofs();
        for old in &self.mounts {
            let Some(now) = all.iter().find(|a| a.mount.id == old.id) else {
                return Err(Error::Failed(format!("the autofs mount at {} is gone", Shown(&old.path))));
            };
            let now_served = Served::of(now);
            if (&now_served.path, now_served.dev, &now_served.stack, now_served.inside, now_served.kind)
                != (&old.path, old.dev, &old.stack, old.inside, old.kind)
            {
                return Err(Error::Failed(format!("what is mounted at {} changed", Shown(&old.path))));
            }
            let (Some(pgrp), Some(ino)) = (now.options.pgrp, now.options.pipe_ino) else { return Ok(None) };
            if now_served.pipe_ino == old.pipe_ino {
                return Ok(None);
            }
            let holder = match new {
                // One daemon serves them all: it holds this pipe too.
                Some(n) if ctr.holds_pipe(n, ino).unwrap_or(false) => n,
                Some(_) => return Ok(None),
                None => match ctr.pipe_holder(pgrp, ino)? {
                    Some(h) => h,
                    None => return Ok(None),
                },
            };
            if holder == self.pid || !is_automount_exe(&ctr.exe_of(holder).unwrap_or_default()) {
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
    pub exe: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub cgroup: OwnedFd,
}

impl Respawn {
    /// Reads it from the host's /proc, after entering the container, so that its paths are
    /// the container's; its cgroup is opened below the host's cgroup2 root that `enter` kept.
    pub fn read(ctr: &Container, pid: u32) -> Result<Respawn> {
        let gone = |what: &str| Error::Failed(format!("reading the {what} of automount (pid {pid})"));
        let nul_list = |b: Vec<u8>| b.split(|&c| c == 0).filter(|a| !a.is_empty()).map(<[u8]>::to_vec).collect();
        let argv: Vec<Vec<u8>> = nul_list(ctr.proc_file(pid, "cmdline").ok_or_else(|| gone("command line"))?);
        let env = nul_list(ctr.proc_file(pid, "environ").ok_or_else(|| gone("environment"))?);
        let exe = ctr.exe_of(pid).ok_or_else(|| gone("executable"))?;
        let cwd = ctr.link_of(pid, "cwd").ok_or_else(|| gone("working directory"))?;
        let status = ctr.proc_file(pid, "status").ok_or_else(|| gone("status"))?;
        let (uid, gid) = (status_id(&status, b"Uid:"), status_id(&status, b"Gid:"));
        let (Some(uid), Some(gid)) = (uid, gid) else { return Err(gone("ids")) };
        // /proc shows host ids; the daemon starts again inside the container's user namespace
        // (if it has one), which knows them by its own numbers.
        let map = |file: &str, id: u32| {
            ctr.proc_file(pid, file).and_then(|m| crate::confine::inside(id, &m)).ok_or_else(|| gone(file))
        };
        let (uid, gid) = (map("uid_map", uid)?, map("gid_map", gid)?);
        let cgroup = ctr.proc_file(pid, "cgroup").ok_or_else(|| gone("cgroup"))?;
        let path =
            cgroup.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(b"0::")).ok_or_else(|| gone("cgroup2 path"))?;
        let rel = String::from_utf8_lossy(path).trim_start_matches('/').to_string();
        let rel = if rel.is_empty() { ".".to_string() } else { rel };
        let cgroup = openat(
            ctr.host_cgroup2()?,
            rel.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("opening the cgroup /{rel} of automount (pid {pid})"), e))?;
        if argv.is_empty() {
            return Err(gone("command line"));
        }
        Ok(Respawn { exe, argv, env, cwd, uid, gid, cgroup })
    }
}

/// The real id of a `Uid:` or `Gid:` line of /proc/PID/status.
fn status_id(status: &[u8], key: &[u8]) -> Option<u32> {
    let line = status.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(key))?;
    std::str::from_utf8(line).ok()?.split_ascii_whitespace().next()?.parse().ok()
}

/// Polls `done` every 10 ms until it is true or the deadline passes.
fn wait_until(deadline: Instant, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Failed("timed out".into()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automount_executables() {
        assert!(is_automount_exe(b"/usr/sbin/automount"));
        assert!(is_automount_exe(b"/usr/sbin/automount (deleted)"));
        assert!(!is_automount_exe(b"/usr/lib/systemd/systemd"));
        assert!(!is_automount_exe(b"/usr/sbin/automountd"));
    }

    #[test]
    fn services_from_cgroup_files() {
        assert_eq!(service_of(b"0::/system.slice/autofs.service\n").as_deref(), Some("autofs.service"));
        assert_eq!(
            service_of(b"0::/autofs-restart-test.x/system.slice/autofs.service\n").as_deref(),
            Some("autofs.service")
        );
        let hybrid = b"9:name=systemd:/system.slice/autofs.service\n8:pids:/\n0::/\n";
        assert_eq!(service_of(hybrid).as_deref(), Some("autofs.service"));
        assert_eq!(service_of(b"0::/init.scope\n"), None);
        assert_eq!(service_of(b"0::/user.slice/user-0.slice/session-1.scope\n"), None);
        assert_eq!(service_of(b""), None);
    }

    #[test]
    fn parents_from_stat() {
        assert_eq!(parent_of(b"98 (automount) S 1 98 98 0 -1 4194624 ..."), Some(1));
        assert_eq!(parent_of(b"7 (a) b (c) R 42 7 7"), Some(42));
        assert_eq!(parent_of(b"garbage"), None);
        let stat =
            b"1 (systemd) S 0 1 1 0 -1 4194560 38201 2226441 110 1446 156 96 7390 2317 20 0 1 0 3175 22962176 2830";
        assert_eq!(start_time_of(stat), Some(3175));
        assert_eq!(start_time_of(b"1 (systemd) S 0 1"), None);
        assert_eq!(pgrp_of(b"96 (automount) S 94 94 94 0 -1"), Some(94));
        assert_eq!(pgrp_of(b"96 (a b) c) S 94 95 94 0 -1"), Some(95));
    }

    #[test]
    fn ids_from_status() {
        let status = b"Name:\tautomount\nUid:\t0\t0\t0\t0\nGid:\t27\t28\t27\t27\n";
        assert_eq!(status_id(status, b"Uid:"), Some(0));
        assert_eq!(status_id(status, b"Gid:"), Some(27));
        assert_eq!(status_id(b"Name:\tx\n", b"Uid:"), None);
    }
}
