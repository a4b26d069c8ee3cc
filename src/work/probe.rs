//! The probe: this very binary, run as a child inside the container (after
//! `setns(CLONE_NEWPID)` the kernel refuses to create threads, so a child it is), as the
//! hidden command `--internal-probe PATH`, walks into PATH, which triggers its automount
//! (`--probe`). Both sides live here; the other helper, which makes a mount catatonic by its
//! path, is `release`'s.

use std::time::Duration;

use crate::container::Inside;
use crate::error::{Context, Result};
use crate::show::Shown;

/// The hidden argument that makes this program the probe.
pub const PROBE_ARG: &str = "--internal-probe";

/// Triggers an automount from inside the container, as its processes would: it mounts the
/// target file system.
pub fn trigger(inside: &Inside, path: &[u8], timeout: Duration) -> Result<()> {
    let out = inside.run_helper(None, &[PROBE_ARG.as_bytes(), path], timeout)?;
    out.ok(&format!("stat {}/.", Shown(path))).map(drop)
}

/// The probe itself, in the child: walk into `path`.
pub fn child(path: &[u8]) -> Result<u8> {
    let mut inside = path.to_vec();
    inside.extend_from_slice(b"/.");
    rustix::fs::stat(inside.as_slice()).context(format!("stat {}", Shown(&inside)))?;
    Ok(0)
}
