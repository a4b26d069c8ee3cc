//! What a run is asked to do: the values the command line and the environment set, and that
//! the work reads. Plain values, shared by both sides without either importing the other.

use std::time::Duration;

use rustix::process::Pid;

/// The container a run is about: its init's host pid, and where that pid was given
/// (`CRTOOLS_INIT_PID`, `--pid`), for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitPid {
    pub pid: Pid,
    pub from: &'static str,
}

/// How a run works, whichever container it is about (`InitPid`).
pub struct Settings {
    /// Only these automount units; all when empty.
    pub units: Vec<String>,
    pub dry_run: bool,
    pub probe: bool,
    pub verbose: bool,
    pub timeout: Duration,
    pub api: Api,
    /// What to do with masters whose mounts have private copies in nested namespaces.
    pub nested: Policy,
    /// What to do with processes blocked on a stale mount that nothing can release.
    pub blocked: OnBlocked,
    /// The CRIU process that runs us as an action script (from `CRTOOLS_IMAGE_DIR`): a
    /// second run of the same stage by it does nothing (`once`).
    pub criu: Option<u32>,
    /// The syslog socket a post-resume run of CRIU's tells its outcome to (`/dev/log`), or
    /// None: off.
    pub syslog: Option<String>,
}

/// Where a post-resume run tells the host's log, unless told otherwise.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// A setting as `check` shows it: its name, its value, where it came from.
pub struct Seen {
    pub key: &'static str,
    pub value: String,
    pub from: String,
}

/// The kernel interfaces a run was asked to use (`AUTOFS_RESTART_KERNEL_API`): the new ones,
/// each falling back on its own where the kernel lacks it (`mounts::Moves`, `spawn::Start`,
/// the tables read by statmount, waits released by catatonic mode), or the legacy ones for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    New,
    Legacy,
}

/// What to do with a master whose mount has private copies in nested namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Restart it anyway, and name the copies that go catatonic.
    Restart,
    /// Leave that master alone, and name the copies.
    Skip,
    /// Touch nothing at all, name the copies, exit 1.
    Fail,
}

impl Policy {
    pub fn parse(v: &[u8]) -> Option<Self> {
        match v {
            b"restart" => Some(Policy::Restart),
            b"skip" => Some(Policy::Skip),
            b"fail" => Some(Policy::Fail),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Restart => "restart",
            Policy::Skip => "skip",
            Policy::Fail => "fail",
        }
    }
}

/// What to do with a process blocked on a stale autofs mount that nothing can release (no
/// pre-resume holder, or a kernel where its release failed): only SIGKILL ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBlocked {
    /// Name it, for the operator to act on.
    Name,
    /// SIGKILL it, and name it: its supervisor starts it again.
    Kill,
}

impl OnBlocked {
    pub fn parse(v: &[u8]) -> Option<Self> {
        match v {
            b"name" => Some(OnBlocked::Name),
            b"kill" => Some(OnBlocked::Kill),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        for p in [Policy::Restart, Policy::Skip, Policy::Fail] {
            assert_eq!(Policy::parse(p.as_str().as_bytes()), Some(p));
        }
        assert_eq!(Policy::parse(b"Skip"), None);
        assert_eq!(OnBlocked::parse(b"name"), Some(OnBlocked::Name));
        assert_eq!(OnBlocked::parse(b"kill"), Some(OnBlocked::Kill));
        assert_eq!(OnBlocked::parse(b"KILL"), None);
    }
}
