//! Setting a mounted tree aside and putting it back, in the container's mount namespace (after
//! `Container::enter`), so that nothing is lost even if this process is killed half-way.
//!
//! A tree set aside is never held by this process alone: it is attached in a private staging
//! tmpfs at `/run/autofs-restart/N` inside the container, and a journal line there says where
//! it belongs, written before anything moves. Each step, with its undo beside it:
//! 1. journal `N WHERE`;
//! 2. make the top at WHERE private (a copy of a shared mount is its peer, and detaching the
//!    original would unmount the copy's submounts too);
//! 3. copy it, submounts and all, to `N`: `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)` and
//!    `move_mount` (Linux 5.2), or a recursive bind where `open_tree` says ENOSYS (then for the
//!    rest of the run) or the legacy API is asked for; undo: detach `N`;
//! 4. check that `N` is the superblock mountinfo showed at WHERE; undo: detach `N`;
//! 5. detach the original from WHERE; from here `N` is the only copy;
//! 6. later, `MS_MOVE` `N` back onto WHERE (a mount under a shared parent cannot be moved;
//!    the staging is private, so this one can).
//!
//! `recover` replays the journal after an interrupted run: each `N` still mounted either
//! duplicates what still stands at WHERE (killed between 3 and 5: drop the copy) or is the only
//! copy (put it back). Every step of it is idempotent: it decides from the mount table alone.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, major, minor};
use rustix::io::Errno;
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags, mount, mount_bind_recursive,
    mount_change, mount_move, move_mount, open_tree, unmount,
};

use crate::autofs::Table;
use crate::error::{Error, Result, Shown};
use crate::mountinfo::{Dev, escape, unescape};
use crate::paths;

/// The staging mount, inside the container.
pub const STAGING: &str = "/run/autofs-restart";
const JOURNAL: &str = "/run/autofs-restart/journal";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    New,
    Legacy,
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

pub struct Mounter {
    api: Api,
    /// Our root: the container's (after `enter`). Every path is walked from it.
    root: Option<OwnedFd>,
    staging: Option<OwnedFd>,
    journal: Option<std::fs::File>,
    next: u32,
    /// Trees set aside and not yet put back: while there are any, the staging stays.
    staged: u32,
}

impl Mounter {
    pub fn new(api: Api) -> Self {
        Mounter { api, root: None, staging: None, journal: None, next: 0, staged: 0 }
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

    /// Sets the top mount at `path` aside with its submounts and detaches it from `path`.
    /// `dev` is what mountinfo says the top is: the copy is checked against it before the
    /// original is detached, so a table that changed meanwhile is an error, not a lost mount.
    pub fn set_aside(&mut self, path: &[u8], dev: Dev, what: String) -> Result<Saved> {
        let doing = format!("setting {what} at {} aside", Shown(path));
        let (dir, last) = paths::parent(self.root()?, path)?;
        self.make_staging().map_err(|e| Error::Failed(format!("{doing}: {e}")))?;
        let n = self.next;
        self.next += 1;
        let at = format!("{STAGING}/{n}");
        self.journal(n, path).map_err(|e| Error::sys(format!("{doing}: writing {JOURNAL}"), e))?;
        let staging = self.staging.as_ref().expect("made above");
        rustix::fs::mkdirat(staging, n.to_string(), Mode::RWXU)
            .map_err(|e| Error::sys(format!("{doing}: making {at}"), e))?;
        let saved = Saved { what, n, at };
        // The original is about to go, so it leaves its peer group first; the copy goes back
        // under the new, shared autofs mount and is shared again there, in a group of its own.
        if let Err(e) = paths::in_dir(&dir, || {
            mount_change(last.as_slice(), MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        }) {
            self.discard(&saved);
            return Err(Error::sys(format!("making {} at {} private", saved.what, Shown(path)), e));
        }
        if let Err(e) = self.copy(&dir, &last, path, n) {
            self.discard(&saved);
            return Err(Error::sys(doing, e));
        }
        let staging = self.staging.as_ref().expect("made above");
        let copied = rustix::fs::statat(staging, n.to_string(), AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| Dev { major: major(st.st_dev), minor: minor(st.st_dev) });
        match copied {
            Ok(d) if d == dev => {}
            Ok(d) => {
                self.discard(&saved);
                return Err(Error::Failed(format!("{doing}: the mount there is {d}, not {dev}: the table changed")));
            }
            Err(e) => {
                self.discard(&saved);
                return Err(Error::sys(doing, e));
            }
        }
        // The copy holds the superblock now; the original leaves the mount point.
        if let Err(e) = paths::in_dir(&dir, || unmount(last.as_slice(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW))
        {
            self.discard(&saved);
            return Err(Error::sys(format!("detaching {} after copying it", Shown(path)), e));
        }
        self.staged += 1;
        Ok(saved)
    }

    /// Copies the tree at `last` in `dir` (`path`) to staging directory `n`.
    fn copy(&mut self, dir: &OwnedFd, last: &[u8], path: &[u8], n: u32) -> rustix::io::Result<()> {
        let staging = self.staging.as_ref().expect("made before");
        if self.api == Api::New {
            let flags = OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_RECURSIVE
                | OpenTreeFlags::AT_NO_AUTOMOUNT
                | OpenTreeFlags::AT_SYMLINK_NOFOLLOW;
            match open_tree(dir, last, flags) {
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

    /// The private staging tmpfs and its journal, made on first use, below a /run reached
    /// without following any symlink.
    fn make_staging(&mut self) -> Result<()> {
        if self.staging.is_some() {
            return Ok(());
        }
        let run = paths::open_dir(self.root()?, b"/run")?;
        let name = "autofs-restart";
        // Left by an earlier run as an empty directory, it is used again.
        match rustix::fs::mkdirat(&run, name, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(Error::sys(format!("making {STAGING}"), e)),
        }
        let made = paths::parent(self.root()?, STAGING.as_bytes()).and_then(|(run, _)| {
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
        self.staging = Some(paths::open_dir(self.root()?, STAGING.as_bytes())?);
        Ok(())
    }

    /// Appends `N WHERE` to the journal before tree N is copied: after a crash, a staged tree
    /// without its line could not be put back.
    fn journal(&mut self, n: u32, path: &[u8]) -> rustix::io::Result<()> {
        if self.journal.is_none() {
            let staging = self.staging.as_ref().expect("made before");
            let fd = rustix::fs::openat(
                staging,
                "journal",
                OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::RUSR | Mode::WUSR,
            )?;
            self.journal = Some(fd.into());
        }
        let mut line = format!("{n} ").into_bytes();
        line.extend_from_slice(&escape(path));
        line.push(b'\n');
        // One write(2) per line, on a tmpfs: a line is there whole or not at all.
        self.journal.as_mut().map_or(Ok(()), |f| f.write_all(&line).map_err(|e| io_errno(&e)))
    }

    /// Puts a saved tree back on top of whatever is at `path` now. On failure the tree stays
    /// staged and is handed back with the error.
    pub fn put_back(&mut self, path: &[u8], saved: Saved) -> std::result::Result<(), (Saved, Error)> {
        let moved = self.root().map(|_| ()).and_then(|()| match (&self.root, &self.staging) {
            (Some(root), Some(staging)) => move_back(root.as_fd(), staging, saved.n, path),
            _ => Err(Error::Failed(format!("{STAGING} is not open"))),
        });
        match moved {
            Ok(()) => {
                self.staged -= 1;
                Ok(())
            }
            Err(e) => {
                let err = Error::Failed(format!("putting {} back on {}: {e}", saved.what, Shown(path)));
                Err((saved, err))
            }
        }
    }

    /// Detaches the top mount at `path`: what a restart left on top of the new autofs mount.
    pub fn detach(&mut self, path: &[u8]) -> Result<()> {
        let (dir, last) = paths::parent(self.root()?, path)?;
        paths::in_dir(&dir, || unmount(last.as_slice(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW))
            .map_err(|e| Error::sys(format!("detaching what the restart left on {}", Shown(path)), e))
    }

    /// Removes the staging mount, unless a tree is still staged in it: then it stays, with its
    /// journal, for the next run or `autofs-restart recover`.
    pub fn finish(&mut self) -> Result<()> {
        if self.staging.is_none() || self.staged > 0 {
            return Ok(());
        }
        self.journal = None;
        self.staging = None;
        remove_staging(self.root()?)
    }

    /// Undoes a copy whose original was never detached.
    fn discard(&self, saved: &Saved) {
        if let Some(staging) = &self.staging {
            let name = saved.n.to_string();
            let _ = paths::in_dir(staging, || unmount(name.as_str(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW));
            let _ = rustix::fs::unlinkat(staging, name.as_str(), AtFlags::REMOVEDIR);
        }
    }
}

/// Moves staged tree `n` onto `path` (resolved without symlinks), and removes its directory.
/// Moves staged tree `n` onto `path` (resolved without symlinks) and checks that it is what a
/// walk to `path` reaches now, by device and inode of its root: no mount table to read, which
/// at 10 000 mounts costs tens of milliseconds. Removes its directory.
fn move_back(root: BorrowedFd<'_>, staging: &OwnedFd, n: u32, path: &[u8]) -> Result<()> {
    let (dir, last) = paths::parent(root, path)?;
    let name = n.to_string();
    let id = |at: BorrowedFd<'_>, name: &[u8]| {
        rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT)
            .map(|st| (major(st.st_dev), minor(st.st_dev), st.st_ino))
    };
    let staged = id(staging.as_fd(), name.as_bytes()).map_err(|e| Error::sys(format!("stat {STAGING}/{n}"), e))?;
    // move_mount follows no symlink at the target unless asked to.
    let moved = match move_mount(staging, name.as_str(), &dir, last.as_slice(), MoveMountFlags::empty()) {
        Err(Errno::NOSYS) => {
            // The legacy MS_MOVE: the source by its path (it is ours), the target relative.
            let from = format!("{STAGING}/{n}");
            paths::in_dir(&dir, || mount_move(from.as_str(), last.as_slice()))
        }
        other => other,
    };
    moved.map_err(|e| Error::sys("", e).to_string().trim_start_matches(": ").to_string()).map_err(Error::Failed)?;
    let _ = rustix::fs::unlinkat(staging, name.as_str(), AtFlags::REMOVEDIR);
    match id(dir.as_fd(), &last) {
        Ok(now) if now == staged => Ok(()),
        Ok((major, minor, ino)) => Err(Error::Failed(format!(
            "moved it, but the top at {} is {major}:{minor} inode {ino}, not {}:{} inode {}",
            Shown(path),
            staged.0,
            staged.1,
            staged.2
        ))),
        Err(e) => Err(Error::sys(format!("moved it, but stat {}", Shown(path)), e)),
    }
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

/// One step of a recovery. `n` is the tree's number in the staging mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The staged tree is a copy of what still stands at `to`: detach the copy.
    Drop { n: u32, to: Vec<u8> },
    /// The staged tree is the only copy: move it back onto `to`.
    PutBack { n: u32, to: Vec<u8>, what: String },
    /// It cannot go back: `to` has no autofs mount to go on (the journal is not to be
    /// trusted blindly: the container can write it).
    Keep { n: u32, to: Vec<u8>, why: &'static str },
}

/// Whether an interrupted run left its staging mount behind.
pub fn has_staging(table: &Table<'_>) -> bool {
    table.mounts.iter().any(|m| &*m.mount_point == STAGING.as_bytes())
}

/// Plans the recovery from the journal and the container's table (pure). Trees were set aside
/// top first and go back lowest first, so the journal is replayed backwards, and each check
/// sees what the steps before it will have put back.
pub fn plan_recovery(table: &Table<'_>, journal: &[u8]) -> Vec<Step> {
    let mut steps = Vec::new();
    // The top at each mount point as the plan goes: what stands there, or what it put back.
    let mut tops: Vec<(Vec<u8>, Dev, Vec<u8>)> = Vec::new();
    for line in journal.split(|&b| b == b'\n').rev() {
        let Some((n, to)) = line.iter().position(|&b| b == b' ').map(|i| (&line[..i], unescape(&line[i + 1..]))) else {
            continue;
        };
        let Some(n) = std::str::from_utf8(n).ok().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // Not mounted: never copied, or already put back.
        let Some(staged) = table.top_at(format!("{STAGING}/{n}").as_bytes()) else { continue };
        let to = to.into_owned();
        let (dev, root) = (staged.dev, staged.root.to_vec());
        if table.autofs_at(&to).is_none() {
            steps.push(Step::Keep { n, to, why: "no autofs mount there" });
            continue;
        }
        let top = match tops.iter().find(|(p, _, _)| *p == to) {
            Some((_, d, r)) => Some((*d, r.clone())),
            None => table.top_at(&to).map(|m| (m.dev, m.root.to_vec())),
        };
        if top == Some((dev, root.clone())) {
            steps.push(Step::Drop { n, to });
        } else {
            let what = format!("{} {}", Shown(&staged.fs_type), Shown(&staged.source));
            tops.retain(|(p, _, _)| *p != to);
            tops.push((to.clone(), dev, root));
            steps.push(Step::PutBack { n, to, what });
        }
    }
    steps
}

/// Carries out a recovery plan (after `enter`). Returns a line per step, and whether every tree
/// is back; the staging mount goes once it holds no tree.
pub fn recover(steps: &[Step]) -> (Vec<String>, bool) {
    let mut said = Vec::new();
    let (root, staging) = match paths::root().and_then(|r| Ok((paths::open_dir(r.as_fd(), STAGING.as_bytes())?, r))) {
        Ok((staging, root)) => (root, staging),
        Err(e) => return (vec![e.to_string()], false),
    };
    let mut all = true;
    for step in steps {
        match step {
            Step::Drop { n, to } => {
                let name = n.to_string();
                match paths::in_dir(&staging, || unmount(name.as_str(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW))
                {
                    Ok(()) => {
                        let _ = rustix::fs::unlinkat(&staging, name.as_str(), AtFlags::REMOVEDIR);
                        said.push(format!("{STAGING}/{n}: a copy of what still stands on {}: dropped", Shown(to)));
                    }
                    Err(e) => {
                        all = false;
                        said.push(
                            Error::sys(format!("{STAGING}/{n}: detaching a copy of what stands on {}", Shown(to)), e)
                                .to_string(),
                        );
                    }
                }
            }
            Step::PutBack { n, to, what } => match move_back(root.as_fd(), &staging, *n, to) {
                Ok(()) => said.push(format!("{}: put {what} back from {STAGING}/{n}", Shown(to))),
                Err(e) => {
                    all = false;
                    said.push(format!("{}: putting {what} back from {STAGING}/{n}: {e}; it stays there", Shown(to)));
                }
            },
            Step::Keep { n, to, why } => {
                all = false;
                said.push(format!("{STAGING}/{n}: kept: it belongs on {}, but there is {why}", Shown(to)));
            }
        }
    }
    if all && let Err(e) = remove_staging(root.as_fd()) {
        all = false;
        said.push(e.to_string());
    }
    (said, all)
}

/// The journal, if there is one (after `enter`).
pub fn read_journal() -> Result<Vec<u8>> {
    let staging = paths::open_dir(paths::root()?.as_fd(), STAGING.as_bytes())?;
    match rustix::fs::openat(&staging, "journal", OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut text)
                .map_err(|e| Error::sys(format!("reading {JOURNAL}"), io_errno(&e)))?;
            Ok(text)
        }
        Err(Errno::NOENT) => Ok(Vec::new()),
        Err(e) => Err(Error::sys(format!("reading {JOURNAL}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::parse;

    /// The restored container's table: autofs at /srv/data with tmpfs T1 (0:60), then T2
    /// (0:70) on top of it, and the staging mount.
    fn table(extra: &str) -> Vec<u8> {
        format!(
            "\
67 42 0:41 / / rw shared:1 - overlay ctr rw
82 67 0:48 / /run rw shared:16 - tmpfs run rw
55 67 0:62 / /srv/data rw shared:28 - autofs systemd-1 rw,fd=9,pgrp=1,direct,pipe_ino=5
90 82 0:80 / /run/autofs-restart rw - tmpfs autofs-restart rw
{extra}"
        )
        .into_bytes()
    }

    fn plan(extra: &str, journal: &str) -> Vec<Step> {
        let text = table(extra);
        let t = Table::new(parse(&text).unwrap());
        plan_recovery(&t, journal.as_bytes())
    }

    const JOURNAL_BOTH: &str = "0 /srv/data\n1 /srv/data\n";

    #[test]
    fn killed_after_both_layers_went_aside() {
        let steps = plan(
            "91 90 0:70 / /run/autofs-restart/0 rw - tmpfs t2 rw\n92 90 0:60 / /run/autofs-restart/1 rw - tmpfs t1 rw\n",
            JOURNAL_BOTH,
        );
        assert_eq!(
            steps,
            [
                Step::PutBack { n: 1, to: b"/srv/data".to_vec(), what: "tmpfs t1".into() },
                Step::PutBack { n: 0, to: b"/srv/data".to_vec(), what: "tmpfs t2".into() },
            ]
        );
    }

    #[test]
    fn killed_after_copying_the_lower_layer_but_before_detaching_it() {
        // T2 is aside; T1 is staged and still stands on the autofs mount.
        let steps = plan(
            "56 55 0:60 / /srv/data rw - tmpfs t1 rw\n91 90 0:70 / /run/autofs-restart/0 rw - tmpfs t2 rw\n92 90 0:60 / /run/autofs-restart/1 rw - tmpfs t1 rw\n",
            JOURNAL_BOTH,
        );
        assert_eq!(
            steps,
            [
                Step::Drop { n: 1, to: b"/srv/data".to_vec() },
                Step::PutBack { n: 0, to: b"/srv/data".to_vec(), what: "tmpfs t2".into() },
            ]
        );
    }

    #[test]
    fn what_was_put_back_or_never_copied_is_skipped() {
        // T1 went back already; line 1 never got a copy; a torn last line is ignored.
        let steps = plan("56 55 0:60 / /srv/data rw - tmpfs t1 rw\n", "0 /srv/data\n1 /srv/data\n2 /srv/da");
        assert!(steps.is_empty(), "{steps:?}");
    }

    #[test]
    fn a_journal_line_that_points_elsewhere_is_kept_not_followed() {
        let steps = plan("91 90 0:70 / /run/autofs-restart/0 rw - tmpfs t2 rw\n", "0 /etc\n");
        assert_eq!(steps, [Step::Keep { n: 0, to: b"/etc".to_vec(), why: "no autofs mount there" }]);
    }

    #[test]
    fn escaped_paths_round_trip_through_the_journal() {
        let text = "\
67 42 0:41 / / rw shared:1 - overlay ctr rw
55 67 0:62 / /srv/my\\040data rw shared:28 - autofs systemd-1 rw,fd=9,pgrp=1,direct,pipe_ino=5
90 67 0:80 / /run/autofs-restart rw - tmpfs autofs-restart rw
91 90 0:70 / /run/autofs-restart/0 rw - tmpfs t2 rw
";
        let t = Table::new(parse(text.as_bytes()).unwrap());
        let mut journal = b"0 ".to_vec();
        journal.extend_from_slice(&escape(b"/srv/my data"));
        let steps = plan_recovery(&t, &journal);
        assert!(matches!(&steps[..], [Step::PutBack { to, .. }] if to == b"/srv/my data"), "{steps:?}");
    }
}
