//! Our own helpers: this very binary, run as a child inside the container for what must be
//! done from there (after `setns(CLONE_NEWPID)` the kernel refuses to create threads, so a
//! child it is). Each is a hidden command; both sides of it live here.
//! - `--internal-probe PATH`: walks into PATH, which triggers its automount (`--probe`);
//! - `--internal-catatonic PATH DEV`: makes the autofs mount at PATH catatonic, in a nested
//!   namespace whose private copy of a restarted unit's mount lost its master.

use std::os::fd::AsFd;
use std::time::Duration;

use rustix::fs::{CWD, Mode, OFlags};

use crate::container::{Inside, Place};
use crate::error::{Context, Error, Result};
use crate::model::mountinfo::Dev;
use crate::show::Shown;

/// The hidden arguments that make this program a helper.
pub const PROBE_ARG: &str = "--internal-probe";
pub const CATATONIC_ARG: &str = "--internal-catatonic";

/// How long the catatonic helper may take: milliseconds unless it is blocked, and then
/// waiting longer does not help (see `catatonic`).
const CATATONIC_TIMEOUT: Duration = Duration::from_secs(2);

/// Triggers an automount from inside the container, as its processes would: it mounts the
/// target file system.
pub fn probe(inside: &Inside, path: &[u8], timeout: Duration) -> Result<()> {
    let out = inside.run_helper(None, &[PROBE_ARG.as_bytes(), path], timeout)?;
    out.ok(&format!("stat {}/.", Shown(path))).map(drop)
}

/// The probe itself, in the child: walk into `path`.
pub fn probe_child(path: &[u8]) -> Result<u8> {
    let mut inside = path.to_vec();
    inside.extend_from_slice(b"/.");
    rustix::fs::stat(inside.as_slice()).context(format!("stat {}", Shown(&inside)))?;
    Ok(0)
}

/// Makes the autofs mount at `path` catatonic, if it is still superblock `dev`: its waiters
/// wake, and every later access returns at once. In `place`, a nested namespace, else in the
/// container's own. The child's walk to the mount point waits while some process is blocked
/// in that mount's automount right now, and waiting longer does not help: such a process
/// waits for good. So it gets at most two seconds.
pub fn catatonic(inside: &Inside, place: Option<&Place>, path: &[u8], dev: Dev, timeout: Duration) -> Result<()> {
    let dev = dev.to_string();
    let args: [&[u8]; 3] = [CATATONIC_ARG.as_bytes(), path, dev.as_bytes()];
    let out = inside.run_helper(place, &args, timeout.min(CATATONIC_TIMEOUT))?;
    out.ok("making it catatonic").map(drop)
}

/// The catatonic helper, in the child, inside the namespace.
pub fn catatonic_child(path: &[u8], dev: &[u8]) -> Result<u8> {
    let shown = Shown(path);
    // O_PATH without O_DIRECTORY: reaching the mount's root triggers no automount.
    let fd = rustix::fs::openat(CWD, path, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .context(format!("opening {shown}"))?;
    let st = rustix::fs::fstat(&fd).context(format!("stat {shown}"))?;
    let found = format!("{}:{}", rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    if found.as_bytes() != dev || st.st_mode & 0o170000 != 0o040000 {
        return Err(Error::check(format!("{shown} is no longer the autofs mount {}", Shown(dev))));
    }
    // "." opens the directory the fd already is: no lookup, so again no automount.
    let dir = rustix::fs::openat(&fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .context(format!("opening {shown}"))?;
    crate::sys::autofs::root_catatonic(dir.as_fd()).context(format!("AUTOFS_IOC_CATATONIC on {shown}"))?;
    Ok(0)
}
