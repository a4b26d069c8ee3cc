//! Paths that come from the container (mount points in its mountinfo, `Where=`, our journal in
//! its /run), checked and resolved so that a mount call never lands outside it.
//!
//! A container can swap a directory on the way for a symlink between our reading a path and
//! our using it; through a magic link such as `/proc/N/root` of a process whose root is the
//! host's, a mount would then happen on the host. So a path is walked one component at a
//! time from the root, each opened `O_PATH | O_NOFOLLOW | O_DIRECTORY`, which refuses a
//! symlink of either kind (the equivalent of `openat2`'s `RESOLVE_NO_SYMLINKS`, and also
//! where `openat2` is missing). The mount call then takes the last component relative to
//! that directory, never following it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, openat};
use rustix::io::Errno;

use crate::error::{Context, Error, Result};
use crate::show::Shown;

/// Why a path is refused before anything is resolved.
pub fn check(path: &[u8]) -> std::result::Result<(), &'static str> {
    if !path.starts_with(b"/") {
        return Err("is not absolute");
    }
    if path == b"/" {
        return Ok(());
    }
    for part in path[1..].split(|&b| b == b'/') {
        match part {
            b"" => return Err("is not normalised (an empty component)"),
            b"." | b".." => return Err("is not normalised (a . or .. component)"),
            _ => {}
        }
    }
    Ok(())
}

/// Opens the directory `path` (checked, absolute) below `root`, following no symlink.
pub fn open_dir(root: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd> {
    let shown = || Shown(path).to_string();
    check(path).map_err(|why| Error::check(format!("{} {why}", shown())))?;
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = openat(root, ".", flags, Mode::empty()).context(format!("opening {}", shown()))?;
    for part in path[1..].split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        dir = openat(&dir, part, flags, Mode::empty()).map_err(|e| match e {
            // O_NOFOLLOW | O_DIRECTORY on a symlink.
            Errno::NOTDIR | Errno::LOOP => {
                Error::check(format!("{}: {} is a symlink or not a directory: refused", shown(), Shown(part)))
            }
            e => Error::sys(format!("opening {}", shown()), e),
        })?;
    }
    Ok(dir)
}

/// The parent directory of `path`, opened as `open_dir` does, and its last component; the
/// last component itself must be a directory (a mount point), not a symlink.
pub fn parent(root: BorrowedFd<'_>, path: &[u8]) -> Result<(OwnedFd, Vec<u8>)> {
    check(path).map_err(|why| Error::check(format!("{} {why}", Shown(path))))?;
    let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let (dir, last) = (if cut == 0 { &b"/"[..] } else { &path[..cut] }, &path[cut + 1..]);
    if last.is_empty() {
        return Err(Error::check("/ has no parent"));
    }
    let dir = open_dir(root, dir)?;
    let st = rustix::fs::statat(&dir, last, AtFlags::SYMLINK_NOFOLLOW).context(format!("stat {}", Shown(path)))?;
    if st.st_mode & 0o170000 != 0o040000 {
        return Err(Error::check(format!("{} is a symlink or not a directory: refused", Shown(path))));
    }
    Ok((dir, last.to_vec()))
}

/// Our root (inside: the container's).
pub fn root() -> Result<OwnedFd> {
    openat(rustix::fs::CWD, "/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).context("opening /")
}

/// Runs `op` with `dir` as the working directory, for the system calls that take no
/// directory fd (mount(2), umount2(2)), and goes back to /.
pub fn in_dir<T>(dir: &OwnedFd, op: impl FnOnce() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    rustix::process::fchdir(dir.as_fd())?;
    let result = op();
    let _ = rustix::process::chdir("/");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_normalised_paths() {
        assert_eq!(check(b"/srv/data"), Ok(()));
        assert_eq!(check(b"/"), Ok(()));
        assert_eq!(check(b"/srv/my data\n"), Ok(()), "any byte but / is a name");
        assert_eq!(check(b"srv/data"), Err("is not absolute"));
        assert_eq!(check(b""), Err("is not absolute"));
        assert_eq!(check(b"/srv/../etc"), Err("is not normalised (a . or .. component)"));
        assert_eq!(check(b"/srv/./data"), Err("is not normalised (a . or .. component)"));
        assert_eq!(check(b"/srv//data"), Err("is not normalised (an empty component)"));
        assert_eq!(check(b"/srv/data/"), Err("is not normalised (an empty component)"));
    }

    #[test]
    fn a_symlink_on_the_way_is_refused() {
        let base = std::env::temp_dir().join(format!("autofs-restart-paths-{}", std::process::id()));
        std::fs::create_dir_all(base.join("real/mnt")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        std::os::unix::fs::symlink(base.join("real/mnt"), base.join("real/mntlink")).unwrap();
        let root = openat(rustix::fs::CWD, "/", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let path = |p: &str| base.join(p).into_os_string().into_encoded_bytes();
        assert!(open_dir(root.as_fd(), &path("real/mnt")).is_ok());
        let (_, last) = parent(root.as_fd(), &path("real/mnt")).unwrap();
        assert_eq!(last, b"mnt");
        let e = open_dir(root.as_fd(), &path("link/mnt")).unwrap_err().to_string();
        assert!(e.ends_with("link is a symlink or not a directory: refused"), "{e}");
        let e = parent(root.as_fd(), &path("real/mntlink")).unwrap_err().to_string();
        assert!(e.ends_with("mntlink is a symlink or not a directory: refused"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
