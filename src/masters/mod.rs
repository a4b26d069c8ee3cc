//! The masters of autofs mounts, one module each with its fix: the container's systemd
//! (automount units) and the autofs package's `automount` daemon.

use std::time::Duration;

use crate::container::Inside;
use crate::log::Log;
use crate::settings::OnBlocked;

pub mod automount;
pub mod leftovers;
pub mod systemd;

/// What every step of a fix shares: the container, entered; the bound on each wait (a
/// program's run, a daemon's re-attach); whether each fixed mount point is then triggered
/// (`--probe`); what becomes of a process blocked on a stale mount (`--blocked`); and the log
/// each step is said to.
pub struct Fixing<'a> {
    pub inside: &'a Inside,
    pub timeout: Duration,
    pub probe: bool,
    pub blocked: OnBlocked,
    pub log: &'a Log,
}
