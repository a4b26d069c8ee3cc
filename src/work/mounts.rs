//! Setting a mounted tree aside and putting it back (inside the container), so that nothing
//! is lost even if this process is killed half-way.
//!
//! A tree set aside is never held by this process alone: it is attached at once in a staging
//! (see `staging`), and a journal line there says where it belongs, written before anything
//! moves. Each step, with its undo beside it:
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
//! `recover` replays the journal after an interrupted run with the same rule (planned by
//! `recovery`): each `N` still mounted either duplicates what still stands at WHERE (drop the
//! copy) or is the only copy (put it back).

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, major, minor};
use rustix::io::Errno;
use rustix::mount::{
    MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags, mount_bind_recursive, mount_change, mount_move,
    move_mount, open_tree, unmount,
};

use crate::container::Inside;
use crate::container::paths;
use crate::error::{Context, Error, Result};
use crate::model::journal;
use crate::model::layout;
use crate::model::mountinfo::Dev;
use crate::model::recovery::Step;
use crate::settings::Api;
use crate::show::Shown;
use crate::work::staging::{Left, Staging};

/// A copy of a whole tree, held by an fd, reached without following a symlink or triggering an
/// automount at the last component.
const CLONE: OpenTreeFlags = OpenTreeFlags::OPEN_TREE_CLONE
    .union(OpenTreeFlags::OPEN_TREE_CLOEXEC)
    .union(OpenTreeFlags::AT_RECURSIVE)
    .union(OpenTreeFlags::AT_NO_AUTOMOUNT)
    .union(OpenTreeFlags::AT_SYMLINK_NOFOLLOW);

/// A tree that was on a mount point, now attached in the staging.
pub struct Saved {
    /// "tmpfs srv-data", for messages.
    pub what: String,
    /// Its number in the staging.
    n: u32,
    /// Where it is staged, for messages.
    pub at: String,
}

/// How trees move: with the new mount API (`open_tree`, `move_mount`), until the kernel lacks
/// it, after which every later tree takes bind mounts and `MS_MOVE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moves {
    Detached,
    Bind,
}

impl Moves {
    /// For people: which mount API.
    pub fn as_str(self) -> &'static str {
        match self {
            Moves::Detached => "new",
            Moves::Bind => "legacy",
        }
    }
}

pub struct Mounter<'i> {
    inside: &'i Inside,
    moves: Moves,
    /// Our root: the container's. Every path is walked from it.
    root: OwnedFd,
    staging: Option<Staging>,
    journal: Option<std::fs::File>,
    next: u32,
    /// Trees set aside and not yet put back: while there are any, the staging stays.
    staged: u32,
    /// Where the staging is, for people.
    staged_in: &'static str,
}

impl<'i> Mounter<'i> {
    /// Starts as the run was asked (`AUTOFS_RESTART_KERNEL_API`).
    pub fn new(inside: &'i Inside) -> Result<Self> {
        let moves = match inside.asked() {
            Api::New => Moves::Detached,
            Api::Legacy => Moves::Bind,
        };
        Self::moving(inside, moves)
    }

    fn moving(inside: &'i Inside, moves: Moves) -> Result<Self> {
        let root = paths::root()?;
        Ok(Mounter { inside, moves, root, staging: None, journal: None, next: 0, staged: 0, staged_in: "" })
    }

    pub fn moves(&self) -> Moves {
        self.moves
    }

    /// Where trees are staged, once they are: a namespace copied from the host's or the
    /// container's, or the container's /run.
    pub fn staged_in(&self) -> &'static str {
        self.staged_in
    }

    fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The staging, once made.
    fn staging(&self) -> Result<&Staging> {
        self.staging.as_ref().ok_or_else(|| Error::check("nothing is staged"))
    }

    /// Sets the top mount at `path` aside with its submounts; `lowest` says whether it is the
    /// last layer to come off. `dev` is what mountinfo says the top is: the copy is checked
    /// against it before the original is detached, so a table that changed meanwhile is an
    /// error, not a lost mount.
    pub fn set_aside(&mut self, path: &[u8], dev: Dev, what: &str, lowest: bool) -> Result<Saved> {
        let doing = format!("setting {what} at {} aside", Shown(path));
        let (dir, last) = paths::parent(self.root(), path).context(&*doing)?;
        self.make_staging().context(&*doing)?;
        let n = self.next;
        self.next += 1;
        self.journal(n, path).context(format!("{doing}: writing the journal"))?;
        let at = self.staging()?.at(n);
        let saved = Saved { what: what.to_string(), n, at };
        if let Err(e) = self.copy(&dir, &last, path, n, dev) {
            self.discard(n);
            return Err(e.context(doing));
        }
        self.staged += 1;
        let keep = lowest && matches!(self.staging, Some(Staging::Ns { .. }));
        let detached = if keep {
            Ok(())
        } else {
            paths::in_dir(&dir, || unmount(last.as_slice(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW))
        };
        if let Err(e) = detached {
            self.staged -= 1;
            self.discard(n);
            return Err(Error::sys(format!("detaching {} after copying it", Shown(path)), e));
        }
        Ok(saved)
    }

    /// Copies the tree at `last` in `dir` (`path`) to `n` in the staging and checks that it is
    /// superblock `dev`.
    fn copy(&mut self, dir: &OwnedFd, last: &[u8], path: &[u8], n: u32, dev: Dev) -> Result<()> {
        if let Some(Staging::Ns { ns, dir: to, .. }) = &self.staging {
            let tree = open_tree(dir, last, CLONE).context("open_tree")?;
            return self.inside.hop(ns.as_fd(), || attach(to, n, &tree, dev))?;
        }
        // The original leaves its peer group before it is copied (see step 2).
        paths::in_dir(dir, || mount_change(last, MountPropagationFlags::PRIVATE | MountPropagationFlags::REC))
            .context("making it private")?;
        self.copy_in_container(dir, last, path, n).context("copying it")?;
        check_dev(self.staging()?.dir(), n, dev)
    }

    /// Copies the tree at `last` in `dir` (`path`) to staging directory `n` in the container.
    fn copy_in_container(&mut self, dir: &OwnedFd, last: &[u8], path: &[u8], n: u32) -> rustix::io::Result<()> {
        let staging = self.staging.as_ref().map(Staging::dir).ok_or(Errno::NOENT)?;
        rustix::fs::mkdirat(staging, n.to_string(), Mode::RWXU)?;
        if self.moves == Moves::Detached {
            match open_tree(dir, last, CLONE) {
                // Attached at once: a detached tree would die with this process.
                Ok(fd) => {
                    return move_mount(&fd, c"", staging, n.to_string(), MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH);
                }
                // Remembered: every later tree takes the legacy path too.
                Err(Errno::NOSYS) => self.moves = Moves::Bind,
                Err(e) => return Err(e),
            }
        }
        // mount(2) takes paths only: the target is relative to the staging fd; the source is
        // the full path, and the device check that follows refuses a copy of anything else.
        paths::in_dir(staging, || mount_bind_recursive(path, n.to_string().as_str()))
    }

    /// The staging and its journal, made on first use: a namespace of our own where the kernel
    /// has the new mount API and that works, else the tmpfs in the container.
    fn make_staging(&mut self) -> Result<()> {
        if self.staging.is_some() {
            return Ok(());
        }
        let made = match self.moves {
            Moves::Detached => match Staging::make_ns(self.inside) {
                Ok((staging, journal, from)) => {
                    self.staged_in = from;
                    Some((staging, journal))
                }
                // Nothing was made: the next best place is the container.
                Err(e) => {
                    if e.errno() == Some(Errno::NOSYS) {
                        self.moves = Moves::Bind;
                    }
                    None
                }
            },
            Moves::Bind => None,
        };
        let (staging, journal) = match made {
            Some(made) => made,
            None => {
                let made = Staging::make_in_container(self.root())?;
                self.staged_in = "the container's /run";
                made
            }
        };
        self.staging = Some(staging);
        self.journal = Some(journal);
        Ok(())
    }

    /// Appends `N WHERE` to the journal before tree N is copied: after a crash, a staged tree
    /// without its line could not be put back.
    fn journal(&mut self, n: u32, path: &[u8]) -> std::io::Result<()> {
        // One write(2) per line, on a tmpfs: a line is there whole or not at all.
        self.journal.as_mut().map_or(Ok(()), |f| f.write_all(&journal::line(n, path)))
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
                let e = e.context(format!("{doing} {} on {}", saved.what, Shown(path)));
                Err((saved, e))
            }
        }
    }

    /// Moves staged tree `n` onto `path` (resolved without symlinks) and checks that it is what
    /// a walk to `path` reaches now, by device and inode of its root: no mount table to read,
    /// whose cost grows with the table.
    fn move_back(&mut self, n: u32, path: &[u8]) -> Result<()> {
        let (dir, last) = paths::parent(self.root(), path)?;
        let name = n.to_string();
        let staged = match self.staging()? {
            Staging::Ns { ns, dir: from, .. } => {
                // A mount moves only within a namespace: a clone of it comes over instead, and
                // the staged tree is dropped once the clone stands (a crash in between leaves a
                // duplicate, which recovery drops).
                let cloned = self.inside.hop(ns.as_fd(), || {
                    Ok::<_, Errno>((open_tree(from, name.as_str(), CLONE)?, root_id(from.as_fd(), name.as_bytes())?))
                })?;
                let (tree, id) = cloned.context("cloning it")?;
                move_mount(&tree, c"", &dir, last.as_slice(), MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
                    .context("attaching it")?;
                id
            }
            Staging::Container { dir: from } => {
                let id = root_id(from.as_fd(), name.as_bytes()).context(format!("stat {n}"))?;
                // move_mount follows no symlink at the target unless asked to.
                match move_mount(from, name.as_str(), &dir, last.as_slice(), MoveMountFlags::empty()) {
                    // The legacy MS_MOVE: the source by its path (it is ours), the target relative.
                    Err(Errno::NOSYS) => {
                        let from = layout::in_container(n);
                        paths::in_dir(&dir, || mount_move(from.as_str(), last.as_slice())).context("MS_MOVE")?;
                    }
                    moved => moved.context("move_mount")?,
                }
                id
            }
        };
        // What went back is checked before the staged tree (or what is left of it) goes.
        match root_id(dir.as_fd(), &last) {
            Ok(now) if now == staged => {}
            Ok((major, minor, ino)) => {
                let (smaj, smin, sino) = staged;
                return Err(Error::check(format!(
                    "moved it, but the top at {} is {major}:{minor} inode {ino}, not {smaj}:{smin} inode {sino}",
                    Shown(path)
                )));
            }
            Err(e) => return Err(Error::sys(format!("moved it, but stat {}", Shown(path)), e)),
        }
        self.drop_copy(n)
    }

    /// Detaches staged tree `n`, or its directory only where the tree moved away.
    fn drop_copy(&self, n: u32) -> Result<()> {
        let staging = self.staging()?;
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
            Staging::Ns { ns, dir, .. } => self.inside.hop(ns.as_fd(), || drop(dir))?,
            Staging::Container { dir } => drop(dir),
        };
        dropped.context(format!("detaching {}", staging.at(n)))
    }

    /// Detaches the top mount at `path`: what a restart left on top of the new autofs mount.
    pub fn detach(&mut self, path: &[u8]) -> Result<()> {
        detach(self.root(), path).context(format!("detaching what the restart left on {}", Shown(path)))
    }

    /// Removes the staging, unless a tree is still staged in it: then it stays, with its
    /// journal, for the next run or `autofs-restart recover`.
    pub fn finish(&mut self) -> Result<()> {
        if self.staged > 0 {
            return Ok(());
        }
        self.journal = None;
        match self.staging.take() {
            Some(staging) => staging.remove(self.inside, self.root.as_fd()),
            None => Ok(()),
        }
    }

    /// Undoes a copy whose original was never detached.
    fn discard(&self, n: u32) {
        let _ = self.drop_copy(n);
    }
}

/// Detaches the top mount at `path` (below `root`, walked without following a symlink).
pub fn detach(root: BorrowedFd<'_>, path: &[u8]) -> Result<()> {
    let (dir, last) = paths::parent(root, path)?;
    paths::in_dir(&dir, || unmount(last.as_slice(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)).context("umount2")
}

/// In the staging namespace: attaches `tree` as `n` in `to`, makes it private and checks that
/// it is superblock `dev`.
fn attach(to: &OwnedFd, n: u32, tree: &OwnedFd, dev: Dev) -> Result<()> {
    let name = n.to_string();
    rustix::fs::mkdirat(to, name.as_str(), Mode::RWXU).context(format!("making /{n}"))?;
    move_mount(tree, c"", to, name.as_str(), MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .and_then(|()| {
            paths::in_dir(to, || {
                mount_change(name.as_str(), MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
            })
        })
        .context("attaching the copy")?;
    check_dev(to, n, dev)
}

fn check_dev(staging: &OwnedFd, n: u32, dev: Dev) -> Result<()> {
    let st = rustix::fs::statat(staging, n.to_string(), AtFlags::SYMLINK_NOFOLLOW).context("checking the copy")?;
    let found = Dev::of_stat(st.st_dev);
    if found != dev {
        return Err(Error::check(format!(
            "the mount there is {found}, not {dev}: the container's mounts changed during the run; run again"
        )));
    }
    Ok(())
}

/// Device and inode of the root of what `name` in `at` is, found without triggering anything.
fn root_id(at: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<(u32, u32, u64)> {
    rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT)
        .map(|st| (major(st.st_dev), minor(st.st_dev), st.st_ino))
}

/// Carries out a recovery plan (inside). Returns a line per step, and whether every tree is
/// back; the staging goes once it holds no tree.
pub fn recover(inside: &Inside, left: Left, steps: &[Step]) -> (Vec<String>, bool) {
    // The new API whatever was asked: a tree staged in a namespace of its own comes back
    // only through move_mount; where the kernel lacks it, nothing was staged that way.
    let mut m = match Mounter::moving(inside, Moves::Detached) {
        Ok(m) => m,
        Err(e) => return (vec![e.to_string()], false),
    };
    match left.reopen(inside) {
        Ok(staging) => m.staging = Some(staging),
        Err(e) => return (vec![e.to_string()], false),
    }
    // Trees not in the plan (never journaled whole) keep the staging.
    m.staged = u32::try_from(steps.len()).unwrap_or(u32::MAX);
    let mut said = Vec::new();
    let mut all = true;
    for step in steps {
        let at = |n| m.staging.as_ref().map(|s| s.at(n)).unwrap_or_default();
        let (n, to, stands, what) = match step {
            Step::Drop { n, to } => (*n, to, true, String::new()),
            Step::PutBack { n, to, what } => (*n, to, false, what.clone()),
            Step::Keep { n, to, why } => {
                all = false;
                said.push(format!("{}: kept: it belongs on {}, but there is {why}", at(*n), Shown(to)));
                continue;
            }
        };
        let at = at(n);
        match m.put_back(to, Saved { what: what.clone(), n, at: at.clone() }, stands) {
            Ok(false) => said.push(format!("{at}: a copy of what still stands on {}: dropped", Shown(to))),
            Ok(true) => said.push(format!("{}: put {what} back from {at}", Shown(to))),
            Err((_, e)) => {
                all = false;
                said.push(format!("{e}; it stays at {at}"));
            }
        }
    }
    if all {
        if let Err(e) = m.finish() {
            all = false;
            said.push(e.to_string());
        }
    }
    (said, all)
}
