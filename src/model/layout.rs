//! Where autofs-restart keeps what it sets aside, and what each thing is called: the one place
//! that decides. Nothing else names these paths or options.
//!
//! - On the host (the mount namespace we were started in), `DIR/KEY` pins a mount namespace of
//!   ours that holds the trees set aside of one container; KEY is the container's init's host
//!   pid and start time, which no other container gets while the host runs.
//! - In the container (legacy path), a private tmpfs at `DIR` holds them.
//! - In either staging, tree N is the directory (and mount point) `N`, and `JOURNAL` lists
//!   where each belongs (see `journal`).
//! - On the host, `DIR/hold.KEY` pins the holder of a container's restored mounts, from its
//!   pre-resume run to its post-resume run (see `holder`).
//! - On the host, `DIR/STAGE.KEY.CRIU` marks that an action-script run of that stage for that
//!   container was started by that CRIU process (its pid and start time): a second one, as
//!   when CRIU reads the script from two configuration files, does nothing (see `once`).

use std::ffi::CStr;

use rustix::mount::MountFlags;

/// The pins' directory on the host, and the staging mount point in the container.
pub const DIR: &str = "/run/autofs-restart";

/// The journal's name in a staging tmpfs.
pub const JOURNAL: &str = "journal";

/// The staging tmpfs: its source name (as mountinfo shows it), flags and options. Small: it
/// holds mount points and one journal line per tree.
pub const TMPFS_SOURCE: &str = "autofs-restart";
pub const TMPFS_FLAGS: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV).union(MountFlags::NOEXEC);
pub const TMPFS_OPTIONS: &CStr = c"mode=0700,size=64k";

/// The staging mount in the container, as it appears in the middle of a mountinfo line: a
/// quick look at a whole table, before any parsing, for what an interrupted run left.
pub const STAGING_LINE: &[u8] = b" /run/autofs-restart ";

/// The container's name among the pins: its init's host pid and start time (a pid is reused,
/// not within the same clock tick).
pub fn key(pid: u32, start_time: u64) -> String {
    format!("{pid}-{start_time}")
}

/// The host path of a container's pin.
pub fn pin(key: &str) -> String {
    format!("{DIR}/{key}")
}

/// The marker of an action-script run of `stage` on the container `key`, started by the
/// process `criu` (`key` of its pid and start time).
pub fn marker(stage: &str, key: &str, criu: &str) -> String {
    format!("{stage}.{key}.{criu}")
}

/// The CRIU process (pid, start time) a marker's name says, if it is one.
pub fn marker_criu(name: &str) -> Option<(u32, u64)> {
    let (_, criu) = name.rsplit_once('.')?;
    let (pid, start) = criu.split_once('-')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// The host path of the pin of a container's holder (see `holder`): its pid and start time,
/// and the mounts it holds.
pub fn hold(key: &str) -> String {
    format!("{DIR}/hold.{key}")
}

/// Tree `n` in the container's staging.
pub fn in_container(n: u32) -> String {
    format!("{DIR}/{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(pin(&key(4242, 3175)), "/run/autofs-restart/4242-3175");
        assert_eq!(in_container(3), "/run/autofs-restart/3");
        let m = marker("post-resume", &key(4242, 3175), &key(17, 99));
        assert_eq!(m, "post-resume.4242-3175.17-99");
        assert_eq!(marker_criu(&m), Some((17, 99)));
        assert_eq!(marker_criu("4242-3175"), None, "a pin is no marker");
        assert_eq!(marker_criu("journal"), None);
        let line = format!("90 82 0:80 / {DIR} rw - tmpfs {TMPFS_SOURCE} rw\n");
        assert!(crate::model::mountinfo::contains(line.as_bytes(), STAGING_LINE));
    }
}
