//! Setting a mounted tree aside and putting it back, in the container's mount namespace (after
//! `Container::enter`). Every step that changes the mount table has its undo beside it.
//!
//! New API (Linux 5.2): `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)` copies the tree, submounts
//! and all, into a detached mount held by a file descriptor; `move_mount` attaches it again.
//! Legacy: a recursive bind into a private staging tmpfs under the container's /run, and
//! `MS_MOVE` back (a mount under a shared parent cannot be moved, so the staging mount is made
//! private). The legacy path is taken when `open_tree` says ENOSYS, and then for the rest of the
//! run.

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, major, minor};
use rustix::io::Errno;
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags, mount, mount_bind_recursive,
    mount_change, mount_move, move_mount, open_tree, unmount,
};

use crate::error::{Error, Result, Shown};
use crate::mountinfo::Dev;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    New,
    Legacy,
}

/// A tree that was on a mount point, now held aside.
pub struct Saved {
    /// "tmpfs srv-data", for messages.
    pub what: String,
    held: Held,
}

enum Held {
    /// A detached mount tree (new API).
    Detached(OwnedFd),
    /// A copy at this path in the staging mount (legacy).
    Staged(String),
}

pub struct Mounter {
    api: Api,
    staging: Option<String>,
    next: u32,
    parked: u32,
}

impl Mounter {
    pub fn new(api: Api) -> Self {
        Mounter { api, staging: None, next: 0, parked: 0 }
    }

    pub fn api(&self) -> Api {
        self.api
    }

    /// Sets the top mount at `path` aside with its submounts and detaches it from `path`.
    /// `dev` is what mountinfo says the top is: the copy is checked against it before the
    /// original is detached, so a table that changed meanwhile is an error, not a lost mount.
    pub fn set_aside(&mut self, path: &[u8], dev: Dev, what: String) -> Result<Saved> {
        let doing = format!("setting {what} at {} aside", Shown(path));
        // A copy of a shared mount is its peer, and detaching the original would then unmount
        // the copy's submounts too (umount propagates to peers). The original is about to go,
        // so it leaves its peer group first; the copy goes back under the new, shared autofs
        // mount and is shared again there, in a group of its own.
        mount_change(path, MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
            .map_err(|e| Error::sys(format!("making {what} at {} private", Shown(path)), e))?;
        let held = self.copy(path).map_err(|e| Error::sys(doing.clone(), e))?;
        let copied = match &held {
            Held::Detached(fd) => rustix::fs::fstat(fd),
            Held::Staged(at) => rustix::fs::stat(at.as_str()),
        }
        .map(|st| Dev { major: major(st.st_dev), minor: minor(st.st_dev) });
        let saved = Saved { what, held };
        match copied {
            Ok(d) if d == dev => {}
            Ok(d) => {
                self.discard(saved);
                return Err(Error::Failed(format!("{doing}: the mount there is {d}, not {dev}: the table changed")));
            }
            Err(e) => {
                self.discard(saved);
                return Err(Error::sys(doing, e));
            }
        }
        // The copy holds the superblock now; the original leaves the mount point.
        if let Err(e) = unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            self.discard(saved);
            return Err(Error::sys(format!("detaching {} after copying it", Shown(path)), e));
        }
        Ok(saved)
    }

    fn copy(&mut self, path: &[u8]) -> rustix::io::Result<Held> {
        if self.api == Api::New {
            let flags = OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_RECURSIVE
                | OpenTreeFlags::AT_NO_AUTOMOUNT
                | OpenTreeFlags::AT_SYMLINK_NOFOLLOW;
            match open_tree(rustix::fs::CWD, path, flags) {
                Ok(fd) => return Ok(Held::Detached(fd)),
                // Remembered: every later tree takes the legacy path too.
                Err(Errno::NOSYS) => self.api = Api::Legacy,
                Err(e) => return Err(e),
            }
        }
        let staging = self.staging()?;
        let at = format!("{staging}/{}", self.next);
        self.next += 1;
        rustix::fs::mkdir(at.as_str(), Mode::RWXU)?;
        if let Err(e) = mount_bind_recursive(path, at.as_str()) {
            let _ = rustix::fs::rmdir(at.as_str());
            return Err(e);
        }
        Ok(Held::Staged(at))
    }

    /// The private staging tmpfs, made on first use.
    fn staging(&mut self) -> rustix::io::Result<String> {
        if let Some(s) = &self.staging {
            return Ok(s.clone());
        }
        let dir = format!("/run/autofs-restart.{}", rustix::process::getpid().as_raw_nonzero());
        rustix::fs::mkdir(dir.as_str(), Mode::RWXU)?;
        let made = mount(
            "autofs-restart",
            dir.as_str(),
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            c"mode=0700,size=16k",
        )
        .and_then(|()| mount_change(dir.as_str(), MountPropagationFlags::PRIVATE));
        if let Err(e) = made {
            let _ = unmount(dir.as_str(), UnmountFlags::DETACH);
            let _ = rustix::fs::rmdir(dir.as_str());
            return Err(e);
        }
        self.staging = Some(dir.clone());
        Ok(dir)
    }

    /// Undoes a copy whose original was never detached.
    fn discard(&mut self, saved: Saved) {
        if let Held::Staged(at) = saved.held {
            let _ = unmount(at.as_str(), UnmountFlags::DETACH);
            let _ = rustix::fs::rmdir(at.as_str());
        }
    }

    /// Puts a saved tree back on top of whatever is at `path` now. On failure the tree stays
    /// held and is handed back with the error, so the caller can still try elsewhere.
    pub fn put_back(&mut self, path: &[u8], saved: Saved) -> std::result::Result<(), (Saved, Error)> {
        let result = match &saved.held {
            Held::Detached(fd) => move_mount(fd, c"", rustix::fs::CWD, path, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH),
            Held::Staged(at) => mount_move(at.as_str(), path).inspect(|()| {
                let _ = rustix::fs::rmdir(at.as_str());
            }),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = Error::sys(format!("putting {} back on {}", saved.what, Shown(path)), e);
                Err((saved, err))
            }
        }
    }

    /// Detaches the top mount at `path`: what a restart left on top of the new autofs mount.
    pub fn detach(&self, path: &[u8]) -> Result<()> {
        unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
            .map_err(|e| Error::sys(format!("detaching what the restart left on {}", Shown(path)), e))
    }

    /// Last resort when a tree cannot go back: attach it in the staging mount under the
    /// container's /run, where it outlives this process (a detached tree would die with us).
    /// Returns where it is.
    pub fn park(&mut self, saved: Saved) -> Result<String> {
        let doing = |e| Error::sys(format!("keeping {} under /run", saved.what), e);
        match &saved.held {
            Held::Staged(at) => {
                self.parked += 1;
                Ok(at.clone())
            }
            Held::Detached(fd) => {
                let staging = self.staging().map_err(doing)?;
                let at = format!("{staging}/{}", self.next);
                self.next += 1;
                rustix::fs::mkdir(at.as_str(), Mode::RWXU).map_err(doing)?;
                move_mount(fd, c"", rustix::fs::CWD, at.as_str(), MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
                    .map_err(doing)?;
                self.parked += 1;
                Ok(at)
            }
        }
    }

    /// Removes the staging mount, unless a tree is parked in it.
    pub fn finish(&mut self) -> Result<()> {
        if self.parked > 0 {
            return Ok(());
        }
        if let Some(dir) = self.staging.take() {
            unmount(dir.as_str(), UnmountFlags::DETACH).map_err(|e| Error::sys(format!("unmounting {dir}"), e))?;
            rustix::fs::rmdir(dir.as_str()).map_err(|e| Error::sys(format!("removing {dir}"), e))?;
        }
        Ok(())
    }
}
