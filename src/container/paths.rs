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

/// Opens the directory `path` (checked, absolute) below `root` as the container resolves it,
/// symlinks followed (`/var/run` is one to `/run`), but never out of `root` (an absolute
/// target starts again at `root`, `..` stops there) and never through a magic link of /proc:
/// openat2's `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (Linux 5.6), else the same walk by hand.
/// For the files of the container's programs; a mount point is never reached so (`open_dir`).
pub fn open_dir_in_root(root: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd> {
    check(path).map_err(|why| Error::check(format!("{} {why}", Shown(path))))?;
    let rel = if path == b"/" { &b"."[..] } else { &path[1..] };
    let resolve = rustix::fs::ResolveFlags::IN_ROOT | rustix::fs::ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve) {
        // No openat2, or a seccomp filter that refuses it.
        Err(Errno::NOSYS | Errno::PERM) => walk_in_root(root, path),
        opened => opened,
    }
    .context(format!("opening {}", Shown(path)))
}

/// `open_dir_in_root` without openat2: one component at a time, each opened without following
/// it; a symlink's target (read, never followed) takes its place in what is left to walk.
fn walk_in_root(root: BorrowedFd<'_>, path: &[u8]) -> rustix::io::Result<OwnedFd> {
    // As the kernel's MAXSYMLINKS.
    const MAX_LINKS: usize = 40;
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let parts = |p: &[u8]| -> Vec<Vec<u8>> {
        p.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").map(<[u8]>::to_vec).rev().collect()
    };
    // What is left, the next component last; the directories walked from `root`.
    let (mut left, mut walked, mut links) = (parts(path), Vec::<OwnedFd>::new(), 0);
    while let Some(part) = left.pop() {
        if part == b".." {
            walked.pop();
            continue;
        }
        let dir = walked.last().map_or(root, |d| d.as_fd());
        match openat(dir, part.as_slice(), flags, Mode::empty()) {
            Ok(next) => walked.push(next),
            Err(e @ (Errno::NOTDIR | Errno::LOOP)) => {
                let target = rustix::fs::readlinkat(dir, part.as_slice(), Vec::new()).map_err(|_| e)?.into_bytes();
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::LOOP);
                }
                if target.starts_with(b"/") {
                    walked.clear();
                }
                left.extend(parts(&target));
            }
            Err(e) => return Err(e),
        }
    }
    match walked.pop() {
        Some(dir) => Ok(dir),
        None => openat(root, ".", flags, Mode::empty()),
    }
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

    /// A root of our own, with /run, and symlinks as containers have them and as they could
    /// be made to escape.
    #[test]
    fn symlinks_are_followed_within_the_root_only() {
        use std::os::unix::fs::symlink;
        let base = std::env::temp_dir().join(format!("autofs-restart-in-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for dir in ["run/sub", "var", "a/b"] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
        symlink("/run", base.join("var/run")).unwrap();
        symlink("../run/sub", base.join("var/sub")).unwrap();
        symlink("../../../../../..", base.join("a/b/up")).unwrap();
        symlink("/proc/self/root", base.join("magic")).unwrap();
        symlink("loop", base.join("loop")).unwrap();
        symlink("/run/file", base.join("tofile")).unwrap();
        std::fs::write(base.join("run/file"), "").unwrap();
        let root = openat(rustix::fs::CWD, &base, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let ino = |fd: &OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
        let of = |p: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(base.join(p)).unwrap());
        type Opener = fn(BorrowedFd<'_>, &[u8]) -> Result<OwnedFd>;
        let by_hand: Opener = |root, path| walk_in_root(root, path).context("walking");
        for (how, open) in [("openat2", open_dir_in_root as Opener), ("by hand", by_hand)] {
            let at = |p: &str| open(root.as_fd(), p.as_bytes()).map(|fd| ino(&fd));
            assert_eq!(at("/var/run").unwrap(), of("run"), "{how}: an absolute link, from the root");
            assert_eq!(at("/var/sub").unwrap(), of("run/sub"), "{how}: a relative one");
            assert_eq!(at("/a/b/up/run").unwrap(), of("run"), "{how}: .. stops at the root");
            assert_eq!(at("/").unwrap(), of(""), "{how}");
            assert_eq!(at("/loop").unwrap_err().errno(), Some(Errno::LOOP), "{how}");
            assert_eq!(at("/tofile").unwrap_err().errno(), Some(Errno::NOTDIR), "{how}");
            assert_eq!(at("/none").unwrap_err().errno(), Some(Errno::NOENT), "{how}");
            // The root's /proc, which it has not: never the host's.
            assert_eq!(at("/magic").unwrap_err().errno(), Some(Errno::NOENT), "{how}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
