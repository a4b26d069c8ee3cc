//! One action-script run per stage, per container, per CRIU process. runc drives CRIU through
//! RPC, and CRIU then reads both `/etc/criu/default.conf` and runc's `/etc/criu/runc.conf`: a
//! script named in both runs twice at every stage, and a second post-resume run would restart
//! every unit again (against systemd's start rate limit too). The first run of a stage leaves
//! a marker on the host (`layout::marker`); a run that finds its own does nothing, says
//! nothing. The CRIU process is the one whose descriptor `CRTOOLS_IMAGE_DIR` names (CRIU
//! always sets it): a run by hand, or by another CRIU process (another restore), still acts.
//! Markers of CRIU processes that are gone are swept by the next run.

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::container::Init;
use crate::error::{Context, Error, Result};
use crate::model::layout::{self, DIR};
use crate::model::procfs;

/// Whether this is the first run of `stage` on the container of `init` by the CRIU process
/// `criu`; leaves the marker that makes any later one not the first. Without a CRIU process,
/// every run is a first.
pub fn first(stage: &str, init: &Init, criu: Option<u32>) -> Result<bool> {
    let Some(criu_key) = criu.and_then(|pid| start_time(pid).map(|t| layout::key(pid, t))) else {
        return Ok(true);
    };
    match rustix::fs::mkdir(DIR, Mode::RWXU) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Error::sys(format!("making {DIR}"), e)),
    }
    sweep();
    let path = format!("{DIR}/{}", layout::marker(stage, init.key()?, &criu_key));
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::open(path.as_str(), flags, Mode::RUSR) {
        Ok(_) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(Error::sys(format!("creating {path}"), e)),
    }
    .context("telling this run from an earlier one of the same CRIU process")
}

/// Removes the markers of CRIU processes that are gone (a pid reused since has another start
/// time).
fn sweep() {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(dir) = rustix::fs::open(DIR, flags, Mode::empty()) else { return };
    let Ok(entries) = rustix::fs::Dir::read_from(&dir) else { return };
    for entry in entries.flatten() {
        let Some((pid, start)) = entry.file_name().to_str().ok().and_then(layout::marker_criu) else { continue };
        if start_time(pid) != Some(start) {
            let _ = rustix::fs::unlinkat(&dir, entry.file_name(), AtFlags::empty());
        }
    }
}

/// The start time of host pid `pid`, while it runs.
fn start_time(pid: u32) -> Option<u64> {
    procfs::start_time_of(&std::fs::read(format!("/proc/{pid}/stat")).ok()?)
}
