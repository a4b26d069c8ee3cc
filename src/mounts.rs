//! Setting a mounted tree aside and putting it back (after `Container::enter`), so that nothing
//! is lost even if this process is killed half-way.
//!
//! A tree set aside is never held by this process alone: it is attached at once in a staging
//! tmpfs, and a journal line there says where it belongs, written before anything moves. The
//! staging is, where the kernel has `open_tree` (Linux 5.2):
//! - a mount namespace of our own that holds only that tmpfs, pinned on the host at
//!   `/run/autofs-restart/KEY` (KEY: the init's host pid and start time). Nothing of it is in
//!   the container's mount table: the container's systemd re-reads its whole table at every
//!   mount event there (tens of milliseconds at 10 000 mounts), and would do so before it
//!   even looks at our restart. It also outlives the container, should that die meanwhile;
//! - otherwise (or if that namespace cannot be made), a private tmpfs at `/run/autofs-restart`
//!   inside the container, reached by path, as the legacy `MS_MOVE` needs.
//!
//! Each step, with its undo beside it:
//! 1. journal `N WHERE`;
//! 2. copy the top at WHERE, submounts and all, to `N`: `open_tree(OPEN_TREE_CLONE |
//!    AT_RECURSIVE)` then `move_mount` in the staging namespace, or a recursive bind in the
//!    container (the legacy API, or `open_tree` said ENOSYS: then for the rest of the run);
//!    then make the copy private: a copy of a shared mount is its peer, and unmounting the
//!    original would unmount the copy's submounts too (in the container's staging, the
//!    original is made private before the bind instead); undo: detach `N`;
//! 3. check that `N` is the superblock mountinfo showed at WHERE; undo: detach `N`;
//! 4. detach the original from WHERE, so that the layer below can be reached. The lowest layer
//!    in a namespace of our own stays: the restart unmounts it anyway, and a restart that never
//!    happened leaves it where it was;
//! 5. after the restart, each copy whose original no longer stands at WHERE goes back: moved
//!    (legacy: `MS_MOVE`), or cloned from the staging namespace and attached; then `N` is
//!    detached. A copy whose original still stands is only detached.
//!
//! `recover` replays the journal after an interrupted run with the same rule: each `N` still
//! mounted either duplicates what still stands at WHERE (drop the copy) or is the only copy
//! (put it back). Every step of it is idempotent: it decides from the mount tables alone.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, major, minor};
use rustix::io::Errno;
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags, mount, mount_bind_recursive,
    mount_change, mount_move, move_mount, open_tree, unmount,
};

use crate::autofs::Table;
use crate::container::Container;
use crate::error::{Error, Result, Shown};
use crate::mountinfo::{Dev, escape};
use crate::paths;
use crate::recovery::{Step, plan_recovery};

/// The staging mount inside the container, and the directory of pins on the host.
pub use crate::recovery::STAGING;
const JOURNAL: &str = "journal";

/// A copy of a whole tree, held by an fd, reached without following a symlink or triggering an
/// automount at the last component.
const CLONE: OpenTreeFlags = OpenTreeFlags::OPEN_TREE_CLONE
    .union(OpenTreeFlags::OPEN_TREE_CLOEXEC)
    .union(OpenTreeFlags::AT_RECURSIVE)
    .union(OpenTreeFlags::AT_NO_AUTOMOUNT)
    .union(OpenTreeFlags::AT_SYMLINK_NOFOLLOW);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    New,
    Legacy,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::New => "new",
            Api::Legacy => "legacy",
        }
    }
}

/// A tree that was on a mount point, now attached in the staging mount.
pub struct Saved {
    /// "tmpfs srv-data", for messages.
    pub what: String,
    /// Its number in the staging mount.
    n: u32,
    /// Where it is staged, for messages.
    pub at: String,
}

/// Where the trees set aside are held.
enum Staging {
    /// A mount namespace of our own: `dir` is its root, the staging tmpfs; `pin` is the host
    /// path of the pin.
    Ns { ns: OwnedFd, dir: OwnedFd, pin: String },
    /// The private tmpfs at `STAGING` in the container.
    Container { dir: OwnedFd },
}

impl Staging {
    fn dir(&self) -> &OwnedFd {
        match self {
            Staging::Ns { dir, .. } | Staging::Container { dir } => dir,
        }
    }

    /// Where tree `n` is, for people.
    fn at(&self, n: u32) -> String {
        match self {
            Staging::Ns { pin, .. } => format!("/{n} in the mount namespace pinned at {pin}"),
            Staging::Container { .. } => format!("{STAGING}/{n}"),
        }
    }
}

pub struct Mounter<'c> {
    ctr: &'c Container,
    api: Api,
    /// Our root: the container's (after `enter`). Every path is walked from it.
    root: Option<OwnedFd>,
    staging: Option<Staging>,
    journal: Option<std::fs::File>,
    next: u32,
    /// Trees set aside and not yet put back: while there are any, the staging stays.
    staged: u32,
}

impl<'c> Mounter<'c> {
    pub fn new(ctr: &'c Container, api: Api) -> Self {
        Mounter { ctr, api, root: None, staging: None, journal: None, next: 0, staged: 0 }
    }

    pub fn api(&self) -> Api {
        self.api
    }

    fn root(&mut self) -> Result<BorrowedFd<'_>> {
        if self.root.is_none() {
            self.root = Some(paths::root()?);
        }
        Ok(self.root.as_ref().map(|r| r.as_fd()).expect("just set"))
    }

    /// Sets the top mount at `path` aside with its submounts; `lowest` says whether it is the
    /// last layer to come off. `dev` is what mountinfo says the top is: the copy is checked
    /// against it before the original is detached, so a table that changed meanwhile is an
    /// error, not a lost mount.
    pub fn set_aside(&mut self, path: &[u8], dev: Dev, what: String, lowest: bool) -> Result<Saved> {
        let doing = format!("setting {what} at {} aside", Shown(path));
        let (dir, last) = paths::parent(self.root()?, path)?;
        self.make_staging().map_err(|e| Error::Failed(format!("{doing}: {e}")))?;
        let n = self.next;
        self.next += 1;
        self.journal(n, path).map_err(|e| Error::sys(format!("{doing}: writing the journal"), e))?;
        let saved = Saved { what, n, at: self.staging.as_ref().expect("made above").at(n) };
        let copied = if let Some(Staging::Ns { ns, dir: to, .. }) = &self.staging {
            match open_tree(&dir, last.as_slice(), CLONE) {
                Ok(tree) => self.ctr.hop(ns.as_fd(), || attach(to, n, &tree, dev)).and_then(|r| r),
                Err(e) => Err(Error::sys("open_tree", e)),
            }
        } else {
            // The original leaves its peer group before it is copied (see step 2).
            paths::in_dir(&dir, || {
                mount_change(last.as_slice(), MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
            })
            .map_err(|e| Error::sys("making it private", e))
            .and_then(|()| self.copy(&dir, &last, path, n).map_err(|e| Error::sys("copying it", e)))
            .and_then(|()| self.check_copy(n, dev))
        };
        if let Err(e) = copied {
            self.discard(&saved);
            return Err(Error::Failed(format!("{doing}: {e}")));
        }
        self.staged += 1;
        let keep = lowest && matches!(self.staging, Some(Staging::Ns { .. }));
        if !keep
            && let Err(e) =
                paths::in_dir(&dir, || unmount(last.as_slice(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW))
        {
            self.staged -= 1;
            self.discard(&saved);
            return Err(Error::sys(format!("detaching {} after copying it", Shown(path)), e));
        }
        Ok(saved)
    }

    /// Copies the tree at `last` in `dir` (`path`) to staging directory `n` in the container.
    fn copy(&mut self, dir: &OwnedFd, last: &[u8], path: &[u8], n: u32) -> rustix::io::Result<()> {
        let staging = self.staging.as_ref().expect("made before").dir();
        rustix::fs::mkdirat(staging, n.to_string(), Mode::RWXU)?;
        if self.api == Api::New {
            match open_tree(dir, last, CLONE) {
                // Attached at once: a detached tree would die with this process.
                Ok(fd) => {
                    return move_mount(&fd, c"", staging, n.to_string(), MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH);
                }
                // Remembered: every later tree takes the legacy path too.
                Err(Errno::NOSYS) => self.api = Api::Legacy,
                Err(e) => return Err(e),
            }
        }
        // mount(2) takes paths only: the target is relative to the staging fd; the source is
        // the full path, and the device check that follows refuses a copy of anything else.
        paths::in_dir(staging, || mount_bind_recursive(path, n.to_string().as_str()))
    }

    fn check_copy(&self, n: u32, dev: Dev) -> Result<()> {
        let staging = self.staging.as_ref().expect("made before").dir();
        check_dev(staging, n, dev)
    }

    /// The staging and its journal, made on first use: a namespace of our own where the kernel
    /// has the new mount API and that works, else the tmpfs in the container.
    fn make_staging(&mut self) -> Result<()> {
        if self.staging.is_some() {
            return Ok(());
        }
        if self.api == Api::New {
            match make_ns(self.ctr) {
                Ok((staging, journal)) => {
                    self.staging = Some(staging);
                    self.journal = Some(journal);
                    return Ok(());
                }
                // Nothing was made: the next best place is the container.
                Err(Error::Sys { errno: Errno::NOSYS, .. }) => self.api = Api::Legacy,
                Err(_) => {}
            }
        }
        let root = self.root()?;
        let dir = make_container_staging(root)?;
        let journal = open_journal(&dir).map_err(|e| Error::sys(format!("creating {STAGING}/{JOURNAL}"), e))?;
        self.staging = Some(Staging::Container { dir });
        self.journal = Some(journal);
        Ok(())
    }

    /// Appends `N WHERE` to the journal before tree N is copied: after a crash, a staged tree
    /// without its line could not be put back.
    fn journal(&mut self, n: u32, path: &[u8]) -> rustix::io::Result<()> {
        let mut line = format!("{n} ").into_bytes();
        line.extend_from_slice(&escape(path));
        line.push(b'\n');
        // One write(2) per line, on a tmpfs: a line is there whole or not at all.
        self.journal.as_mut().map_or(Ok(()), |f| f.write_all(&line).map_err(|e| io_errno(&e)))
    }

    /// Puts a saved tree back on top of whatever is at `path` now, or, if `stands` (its
    /// original is still there), only drops the copy. Returns whether it moved. On failure the
    /// tree stays staged and is handed back with the error.
    pub fn put_back(&mut self, path: &[u8], saved: Saved, stands: bool) -> std::result::Result<bool, (Saved, Error)> {
        let done =
            if stands { self.drop_copy(saved.n).map(|()| false) } else { self.move_back(saved.n, path).map(|()| true) };
        match done {
            Ok(moved) => {
                self.staged -= 1;
                Ok(moved)
            }
            Err(e) => {
                let doing = if stands { "dropping the copy of" } else { "putting back" };
                let err = Error::Failed(format!("{doing} {} on {}: {e}", saved.what, Shown(path)));
                Err((saved, err))
            }
        }
    }

    /// Moves staged tree `n` onto `path` (resolved without symlinks) and checks that it is what
    /// a walk to `path` reaches now, by device and inode of its root: no mount table to read,
    /// which at 10 000 mounts costs tens of milliseconds.
    fn move_back(&mut self, n: u32, path: &[u8]) -> Result<()> {
        let (dir, last) = paths::parent(self.root()?, path)?;
        let name = n.to_string();
        let staging = self.staging.as_ref().ok_or_else(|| Error::Failed("nothing is staged".into()))?;
        let staged;
        match staging {
            Staging::Ns { ns, dir: from, .. } => {
                // A mount moves only within a namespace: a clone of it comes over instead, and
                // the staged tree is dropped once the clone stands (a crash in between leaves a
                // duplicate, which recovery drops).
                let (tree, id) = self
                    .ctr
                    .hop(ns.as_fd(), || {
                        Ok::<_, Errno>((
                            open_tree(from, name.as_str(), CLONE)?,
                            root_id(from.as_fd(), name.as_bytes())?,
                        ))
                    })?
                    .map_err(|e| Error::sys("cloning it", e))?;
                staged = id;
                move_mount(&tree, c"", &dir, last.as_slice(), MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
                    .map_err(|e| Error::sys("", e).to_string().trim_start_matches(": ").to_string())
                    .map_err(Error::Failed)?;
            }
            Staging::Container { dir: from } => {
                staged = root_id(from.as_fd(), name.as_bytes()).map_err(|e| Error::sys(format!("stat {n}"), e))?;
                // move_mount follows no symlink at the target unless asked to.
                let moved = match move_mount(from, name.as_str(), &dir, last.as_slice(), MoveMountFlags::empty()) {
                    Err(Errno::NOSYS) => {
                        // The legacy MS_MOVE: the source by its path (it is ours), the target relative.
                        let from = format!("{STAGING}/{n}");
                        paths::in_dir(&dir, || mount_move(from.as_str(), last.as_slice()))
                    }
                    other => other,
                };
                moved
                    .map_err(|e| Error::sys("", e).to_string().trim_start_matches(": ").to_string())
                    .map_err(Error::Failed)?;
            }
        }
        // What went back is checked before the staged tree (or what is left of it) goes.
        let checked = match root_id(dir.as_fd(), &last) {
            Ok(now) if now == staged => Ok(()),
            Ok((major, minor, ino)) => Err(Error::Failed(format!(
                "moved it, but the top at {} is {major}:{minor} inode {ino}, not {}:{} inode {}",
                Shown(path),
                staged.0,
                staged.1,
                staged.2
            ))),
            Err(e) => Err(Error::sys(format!("moved it, but stat {}", Shown(path)), e)),
        };
        checked?;
        self.drop_copy(n)
    }

    /// Detaches staged tree `n`, or its directory only where the tree moved away.
    fn drop_copy(&self, n: u32) -> Result<()> {
        let staging = self.staging.as_ref().ok_or_else(|| Error::Failed("nothing is staged".into()))?;
        let name = n.to_string();
        let drop = |dir: &OwnedFd| {
            let detached =
                match paths::in_dir(dir, || unmount(name.as_str(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)) {
                    // Moved away (MS_MOVE): only the directory is left.
                    Err(Errno::INVAL) => Ok(()),
                    other => other,
                };
            detached.map(|()| {
                let _ = rustix::fs::unlinkat(dir, name.as_str(), AtFlags::REMOVEDIR);
            })
        };
        let dropped = match staging {
            Staging::Ns { ns, dir, .. } => self.ctr.hop(ns.as_fd(), || drop(dir))?,
            Staging::Container { dir } => drop(dir),
        };
        dropped.map_err(|e| Error::sys(format!("detaching {}", staging.at(n)), e))
    }

    /// Detaches the top mount at `path`: what a restart left on top of the new autofs mount.
    pub fn detach(&mut self, path: &[u8]) -> Result<()> {
        let (dir, last) = paths::parent(self.root()?, path)?;
        paths::in_dir(&dir, || unmount(last.as_slice(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW))
            .map_err(|e| Error::sys(format!("detaching what the restart left on {}", Shown(path)), e))
    }

    /// Removes the staging, unless a tree is still staged in it: then it stays, with its
    /// journal, for the next run or `autofs-restart recover`.
    pub fn finish(&mut self) -> Result<()> {
        if self.staging.is_none() || self.staged > 0 {
            return Ok(());
        }
        self.journal = None;
        match self.staging.take().expect("checked above") {
            Staging::Ns { pin, .. } => self.ctr.hop(self.ctr.host_mnt(), || unpin(&pin))?,
            Staging::Container { .. } => remove_staging(self.root()?),
        }
    }

    /// Undoes a copy whose original was never detached.
    fn discard(&self, saved: &Saved) {
        let _ = self.drop_copy(saved.n);
    }
}

/// In the staging namespace: attaches `tree` as `n` in `to`, makes it private and checks that
/// it is superblock `dev`.
fn attach(to: &OwnedFd, n: u32, tree: &OwnedFd, dev: Dev) -> Result<()> {
    let name = n.to_string();
    rustix::fs::mkdirat(to, name.as_str(), Mode::RWXU).map_err(|e| Error::sys(format!("making /{n}"), e))?;
    move_mount(tree, c"", to, name.as_str(), MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .and_then(|()| {
            paths::in_dir(to, || {
                mount_change(name.as_str(), MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
            })
        })
        .map_err(|e| Error::sys("attaching the copy", e))?;
    check_dev(to, n, dev)
}

fn check_dev(staging: &OwnedFd, n: u32, dev: Dev) -> Result<()> {
    match rustix::fs::statat(staging, n.to_string(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if Dev { major: major(st.st_dev), minor: minor(st.st_dev) } == dev => Ok(()),
        Ok(st) => Err(Error::Failed(format!(
            "the mount there is {}, not {dev}: the table changed",
            Dev { major: major(st.st_dev), minor: minor(st.st_dev) }
        ))),
        Err(e) => Err(Error::sys("checking the copy", e)),
    }
}

/// Device and inode of the root of what `name` in `at` is, found without triggering anything.
fn root_id(at: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<(u32, u32, u64)> {
    rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT)
        .map(|st| (major(st.st_dev), minor(st.st_dev), st.st_ino))
}

/// Makes the staging namespace: a copy of the host's, made private, whose only mount is then
/// a new tmpfs (the copied mounts would otherwise keep the host's file systems busy for as
/// long as the pin lives), with its journal; then pins it on the host.
fn make_ns(ctr: &Container) -> Result<(Staging, std::fs::File)> {
    let pin = pin_of(ctr)?;
    let made = ctr.hop(ctr.host_mnt(), || -> Result<(OwnedFd, OwnedFd, std::fs::File)> {
        // SAFETY: CLONE_NEWNS alone; this process has no other thread to share it with.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
            .map_err(|e| Error::sys("unshare(CLONE_NEWNS)", e))?;
        let step = |doing: &'static str, r: rustix::io::Result<()>| r.map_err(|e| Error::sys(doing, e));
        step(
            "making the staging namespace private",
            mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC),
        )?;
        step(
            "mounting the staging tmpfs",
            mount(
                "autofs-restart",
                "/run",
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                c"mode=0700,size=64k",
            ),
        )?;
        // The old root is stacked on the new one, then detached: no directory for it needed.
        step(
            "pivot_root to the staging tmpfs",
            rustix::process::chdir("/run").and_then(|()| rustix::process::pivot_root(".", ".")),
        )?;
        step("detaching the host's mounts from the staging namespace", unmount(".", UnmountFlags::DETACH))?;
        step("chdir /", rustix::process::chdir("/"))?;
        let ns = ctr.own_proc_file("ns/mnt").map_err(|e| Error::sys("opening the staging namespace", e))?;
        let dir = paths::root()?;
        let journal = open_journal(&dir).map_err(|e| Error::sys("creating the journal", e))?;
        Ok((ns, dir, journal))
    })??;
    let (ns, dir, journal) = made;
    ctr.hop(ctr.host_mnt(), || pin_ns(&ns, &pin))??;
    Ok((Staging::Ns { ns, dir, pin }, journal))
}

/// Binds namespace `ns` onto a new file at `pin` on the host (under /run, which is ours).
fn pin_ns(ns: &OwnedFd, pin: &str) -> Result<()> {
    match rustix::fs::mkdir(STAGING, Mode::RWXU) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Error::sys(format!("making {STAGING}"), e)),
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::open(pin, flags, Mode::RUSR).map_err(|e| Error::sys(format!("creating {pin}"), e))?;
    let bound = open_tree(
        ns,
        c"",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .and_then(|tree| move_mount(&tree, c"", rustix::fs::CWD, pin, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH));
    if let Err(e) = bound {
        let _ = rustix::fs::unlink(pin);
        return Err(Error::sys(format!("pinning the staging namespace at {pin}"), e));
    }
    Ok(())
}

/// Removes a pin; the namespace goes with the last reference to it.
fn unpin(pin: &str) -> Result<()> {
    unmount(pin, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
        .map_err(|e| Error::sys(format!("unpinning {pin}"), e))?;
    let _ = rustix::fs::unlink(pin);
    // Other containers' pins may be there.
    let _ = rustix::fs::rmdir(STAGING);
    Ok(())
}

/// The private staging tmpfs in the container, below a /run reached without following any
/// symlink.
fn make_container_staging(root: BorrowedFd<'_>) -> Result<OwnedFd> {
    let run = paths::open_dir(root, b"/run")?;
    let name = "autofs-restart";
    // Left by an earlier run as an empty directory, it is used again.
    match rustix::fs::mkdirat(&run, name, Mode::RWXU) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Error::sys(format!("making {STAGING}"), e)),
    }
    let made = paths::parent(root, STAGING.as_bytes()).and_then(|(run, _)| {
        paths::in_dir(&run, || {
            mount(
                "autofs-restart",
                name,
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                c"mode=0700,size=64k",
            )
            .and_then(|()| mount_change(name, MountPropagationFlags::PRIVATE))
        })
        .map_err(|e| Error::sys(format!("mounting {STAGING}"), e))
    });
    if let Err(e) = made {
        let _ = paths::in_dir(&run, || unmount(name, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW));
        let _ = rustix::fs::unlinkat(&run, name, AtFlags::REMOVEDIR);
        return Err(e);
    }
    paths::open_dir(root, STAGING.as_bytes())
}

fn open_journal(dir: &OwnedFd) -> rustix::io::Result<std::fs::File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, JOURNAL, flags, Mode::RUSR | Mode::WUSR).map(std::fs::File::from)
}

fn remove_staging(root: BorrowedFd<'_>) -> Result<()> {
    let (run, name) = paths::parent(root, STAGING.as_bytes())?;
    paths::in_dir(&run, || unmount(name.as_slice(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW))
        .map_err(|e| Error::sys(format!("unmounting {STAGING}"), e))?;
    rustix::fs::unlinkat(&run, name.as_slice(), AtFlags::REMOVEDIR)
        .map_err(|e| Error::sys(format!("removing {STAGING}"), e))
}

fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::IO, Errno::from_raw_os_error)
}

/// What an interrupted run left set aside.
pub enum Left {
    /// The staging tmpfs in the container.
    Container,
    /// A pinned namespace of ours: the pin's path and the namespace.
    Ns { pin: String, ns: OwnedFd },
}

impl Left {
    pub fn place(&self) -> String {
        match self {
            Left::Container => STAGING.to_string(),
            Left::Ns { pin, .. } => format!("the mount namespace pinned at {pin}"),
        }
    }
}

/// The host path where a run on this container pins its staging namespace.
pub fn pin_of(ctr: &Container) -> Result<String> {
    Ok(format!("{STAGING}/{}", ctr.key()?))
}

/// What an interrupted run left (before `enter`): a staging mount in `table`, the
/// container's, or a pin on the host.
pub fn left_behind(ctr: &Container, table: &Table<'_>) -> Result<Option<Left>> {
    if table.mounts.iter().any(|m| &*m.mount_point == STAGING.as_bytes()) {
        return Ok(Some(Left::Container));
    }
    let pin = pin_of(ctr)?;
    match rustix::fs::open(pin.as_str(), OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(ns) => Ok(Some(Left::Ns { pin, ns })),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(Error::sys(format!("opening {pin}"), e)),
    }
}

/// Whether a pin of this container is on the host: cheaper than `left_behind`, no table.
pub fn pinned(ctr: &Container) -> bool {
    pin_of(ctr).is_ok_and(|pin| rustix::fs::stat(pin.as_str()).is_ok())
}

/// Plans the recovery of what was left (after `enter`): reads the staging's table and journal.
pub fn plan_left(ctr: &Container, table: &Table<'_>, left: &Left) -> Result<Vec<Step>> {
    match left {
        Left::Container => {
            let staging = paths::open_dir(paths::root()?.as_fd(), STAGING.as_bytes())?;
            let journal = read_journal(&staging).map_err(|e| Error::sys(format!("reading {STAGING}/{JOURNAL}"), e))?;
            Ok(plan_recovery(table, table, STAGING.as_bytes(), &journal))
        }
        Left::Ns { pin, ns } => {
            let (text, journal) = ctr
                .hop(ns.as_fd(), || -> rustix::io::Result<_> {
                    let mut text = Vec::new();
                    std::fs::File::from(ctr.own_proc_file("mountinfo")?)
                        .read_to_end(&mut text)
                        .map_err(|e| io_errno(&e))?;
                    Ok((text, read_journal(&paths::root().map_err(|_| Errno::IO)?)?))
                })?
                .map_err(|e| Error::sys(format!("reading the namespace pinned at {pin}"), e))?;
            let staged = Table::from_mountinfo(&text, ctr.pid)?;
            Ok(plan_recovery(table, &staged, b"", &journal))
        }
    }
}

/// Carries out a recovery plan (after `enter`). Returns a line per step, and whether every tree
/// is back; the staging goes once it holds no tree.
pub fn recover(ctr: &Container, left: Left, steps: &[Step]) -> (Vec<String>, bool) {
    let mut said = Vec::new();
    let staging = match left {
        Left::Container => match paths::root().and_then(|r| paths::open_dir(r.as_fd(), STAGING.as_bytes())) {
            Ok(dir) => Staging::Container { dir },
            Err(e) => return (vec![e.to_string()], false),
        },
        Left::Ns { pin, ns } => match ctr.hop(ns.as_fd(), paths::root).and_then(|r| r) {
            Ok(dir) => Staging::Ns { ns, dir, pin },
            Err(e) => return (vec![e.to_string()], false),
        },
    };
    let mut m = Mounter::new(ctr, Api::New);
    m.staging = Some(staging);
    // Trees not in the plan (never journaled whole) keep the staging.
    m.staged = steps.len() as u32;
    let mut all = true;
    for step in steps {
        let (n, to, stands, what) = match step {
            Step::Drop { n, to } => (*n, to, true, String::new()),
            Step::PutBack { n, to, what } => (*n, to, false, what.clone()),
            Step::Keep { n, to, why } => {
                all = false;
                let at = m.staging.as_ref().map(|s| s.at(*n)).unwrap_or_default();
                said.push(format!("{at}: kept: it belongs on {}, but there is {why}", Shown(to)));
                continue;
            }
        };
        let at = m.staging.as_ref().map(|s| s.at(n)).unwrap_or_default();
        match m.put_back(to, Saved { what: what.clone(), n, at: at.clone() }, stands) {
            Ok(false) => said.push(format!("{at}: a copy of what still stands on {}: dropped", Shown(to))),
            Ok(true) => said.push(format!("{}: put {what} back from {at}", Shown(to))),
            Err((_, e)) => {
                all = false;
                said.push(format!("{e}; it stays at {at}"));
            }
        }
    }
    if all && let Err(e) = m.finish() {
        all = false;
        said.push(e.to_string());
    }
    (said, all)
}

/// The journal in staging directory `dir`; none is an empty one.
fn read_journal(dir: &OwnedFd) -> rustix::io::Result<Vec<u8>> {
    match rustix::fs::openat(dir, JOURNAL, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => {
            let mut text = Vec::new();
            std::fs::File::from(fd).read_to_end(&mut text).map_err(|e| io_errno(&e))?;
            Ok(text)
        }
        Err(Errno::NOENT) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
