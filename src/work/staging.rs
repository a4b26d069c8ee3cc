//! Where trees set aside are held (names and options in `layout`), made on first use:
//! - where the kernel has `open_tree` (Linux 5.2), a mount namespace of our own that holds
//!   only a staging tmpfs, pinned on the host. Nothing of it is in the container's mount
//!   table: the container's systemd re-reads its whole table at every mount event there,
//!   which costs in proportion to the table, before it even looks at our restart. It also outlives the container, should that die meanwhile;
//! - otherwise (or if that namespace cannot be made or pinned), a private tmpfs in the
//!   container, reached by path, as the legacy `MS_MOVE` needs.
//!
//! Also: finding what an interrupted run left in either, and reading it for recovery.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{
    MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags, mount, mount_change, move_mount, open_tree,
    unmount,
};

use crate::container::paths;
use crate::container::{Init, Inside};
use crate::error::{Context, Error, Result};
use crate::model::autofs::Table;
use crate::model::layout::{self, DIR, JOURNAL, TMPFS_FLAGS, TMPFS_OPTIONS, TMPFS_SOURCE};
use crate::model::recovery::{Step, plan_recovery};
use crate::sys::statmount::Lister;

/// Where the trees set aside are held.
pub enum Staging {
    /// A mount namespace of our own: `dir` is its root, the staging tmpfs; `pin` is the host
    /// path of the pin.
    Ns { ns: OwnedFd, dir: OwnedFd, pin: String },
    /// The private tmpfs at `layout::DIR` in the container.
    Container { dir: OwnedFd },
}

/// Whether the container's mount namespace (the one we are in) has fewer mounts than the
/// host's: both listed a page at a time, in turns, until one is through, so the cost is that of
/// the smaller (a host can have tens of thousands, a container too). False where listmount
/// fails; an error where we could not go back into the container.
fn fewer_here(inside: &Inside) -> Result<bool> {
    const PAGE: usize = 256;
    let (mut here, mut host, mut ids) = (Lister::default(), Lister::default(), Vec::with_capacity(PAGE));
    while !here.done && !host.done {
        ids.clear();
        if here.page(&mut ids, PAGE).is_err() {
            return Ok(false);
        }
        ids.clear();
        if inside.hop(inside.host_mnt(), || host.page(&mut ids, PAGE))?.is_err() {
            return Ok(false);
        }
    }
    Ok(here.done && (!host.done || here.count < host.count))
}

impl Staging {
    pub fn dir(&self) -> &OwnedFd {
        match self {
            Staging::Ns { dir, .. } | Staging::Container { dir } => dir,
        }
    }

    /// Where tree `n` is, for people.
    pub fn at(&self, n: u32) -> String {
        match self {
            Staging::Ns { pin, .. } => format!("/{n} in the mount namespace pinned at {pin}"),
            Staging::Container { .. } => layout::in_container(n),
        }
    }

    /// Makes the staging namespace: a copy of the host's or the container's, whichever has
    /// fewer mounts (the copy, making it private and detaching it cost about 2 ms per 1 000
    /// mounts, and a host running many containers can have tens of thousands), made private,
    /// whose only mount is then a new tmpfs (the copied mounts would otherwise keep their file
    /// systems busy for as long as the pin lives), with its journal; then pins it on the host.
    /// Also says, for people, whose it copied.
    pub fn make_ns(inside: &Inside) -> Result<(Staging, File, &'static str)> {
        let pin = layout::pin(inside.init().key()?);
        let made = match fewer_here(inside)? {
            // Where /run is missing there, or anything else fails, the host's copy is made.
            true => inside.hop(inside.mnt(), || own_namespace(inside))?.ok(),
            false => None,
        };
        let ((ns, dir, journal), from) = match made {
            Some(made) => (made, "a namespace copied from the container's"),
            None => (inside.hop(inside.host_mnt(), || own_namespace(inside))??, "a namespace copied from the host's"),
        };
        inside.hop(inside.host_mnt(), || pin_ns(&ns, &pin))??;
        Ok((Staging::Ns { ns, dir, pin }, journal, from))
    }

    /// Makes the private staging tmpfs in the container, below a /run reached without
    /// following any symlink, with its journal.
    pub fn make_in_container(root: BorrowedFd<'_>) -> Result<(Staging, File)> {
        let run = paths::open_dir(root, b"/run")?;
        let name = TMPFS_SOURCE;
        // Left by an earlier run as an empty directory, it is used again.
        match rustix::fs::mkdirat(&run, name, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(Error::sys(format!("making {DIR}"), e)),
        }
        let made = paths::in_dir(&run, || {
            mount(TMPFS_SOURCE, name, "tmpfs", TMPFS_FLAGS, TMPFS_OPTIONS)
                .and_then(|()| mount_change(name, MountPropagationFlags::PRIVATE))
        })
        .context(format!("mounting {DIR}"));
        if let Err(e) = made {
            let _ = paths::in_dir(&run, || unmount(name, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW));
            let _ = rustix::fs::unlinkat(&run, name, AtFlags::REMOVEDIR);
            return Err(e);
        }
        let dir = paths::open_dir(root, DIR.as_bytes())?;
        let journal = open_journal(&dir).context(format!("creating {DIR}/{JOURNAL}"))?;
        Ok((Staging::Container { dir }, journal))
    }

    /// Removes the staging (it holds no tree any more): unpins the namespace, or unmounts the
    /// container's tmpfs.
    pub fn remove(self, inside: &Inside, root: BorrowedFd<'_>) -> Result<()> {
        match self {
            Staging::Ns { pin, .. } => inside.hop(inside.host_mnt(), || unpin(&pin))?,
            Staging::Container { .. } => {
                let (run, name) = paths::parent(root, DIR.as_bytes())?;
                paths::in_dir(&run, || unmount(name.as_slice(), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW))
                    .context(format!("unmounting {DIR}"))?;
                rustix::fs::unlinkat(&run, name.as_slice(), AtFlags::REMOVEDIR).context(format!("removing {DIR}"))
            }
        }
    }
}

/// In the host's or the container's namespace: a new mount namespace, private, whose root
/// becomes a staging tmpfs with its journal (the old root is stacked on the new one, then
/// detached: no directory needed for it).
fn own_namespace(inside: &Inside) -> Result<(OwnedFd, OwnedFd, File)> {
    crate::sys::unshare_mount_namespace().context("unshare(CLONE_NEWNS)")?;
    mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        .context("making the staging namespace private")?;
    mount(TMPFS_SOURCE, "/run", "tmpfs", TMPFS_FLAGS, TMPFS_OPTIONS).context("mounting the staging tmpfs")?;
    rustix::process::chdir("/run")
        .and_then(|()| rustix::process::pivot_root(".", "."))
        .context("pivot_root to the staging tmpfs")?;
    unmount(".", UnmountFlags::DETACH).context("detaching the copied mounts from the staging namespace")?;
    rustix::process::chdir("/").context("chdir /")?;
    let ns = inside.own_proc_file("ns/mnt").context("opening the staging namespace")?;
    let dir = paths::root()?;
    let journal = open_journal(&dir).context("creating the journal")?;
    Ok((ns, dir, journal))
}

/// Binds namespace `ns` onto a new file at `pin` on the host (under /run, which is ours).
fn pin_ns(ns: &OwnedFd, pin: &str) -> Result<()> {
    match rustix::fs::mkdir(DIR, Mode::RWXU) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Error::sys(format!("making {DIR}"), e)),
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::open(pin, flags, Mode::RUSR).context(format!("creating {pin}"))?;
    let clone = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_EMPTY_PATH;
    let bound = open_tree(ns, c"", clone)
        .and_then(|tree| move_mount(&tree, c"", rustix::fs::CWD, pin, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH));
    if let Err(e) = bound {
        let _ = rustix::fs::unlink(pin);
        return Err(Error::sys(format!("pinning the staging namespace at {pin}"), e));
    }
    Ok(())
}

/// Removes a pin; the namespace goes with the last reference to it.
fn unpin(pin: &str) -> Result<()> {
    unmount(pin, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW).context(format!("unpinning {pin}"))?;
    let _ = rustix::fs::unlink(pin);
    // Other containers' pins may be there.
    let _ = rustix::fs::rmdir(DIR);
    Ok(())
}

fn open_journal(dir: &OwnedFd) -> rustix::io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, JOURNAL, flags, Mode::RUSR | Mode::WUSR).map(File::from)
}

/// The journal in staging directory `dir`; none is an empty one.
fn read_journal(dir: &OwnedFd) -> rustix::io::Result<Vec<u8>> {
    match rustix::fs::openat(dir, JOURNAL, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => {
            let mut text = Vec::new();
            File::from(fd)
                .read_to_end(&mut text)
                .map_err(|e| e.raw_os_error().map_or(Errno::IO, Errno::from_raw_os_error))?;
            Ok(text)
        }
        Err(Errno::NOENT) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
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
            Left::Container => DIR.to_string(),
            Left::Ns { pin, .. } => format!("the mount namespace pinned at {pin}"),
        }
    }

    /// Plans its recovery (inside): reads the staging's table and journal.
    pub fn plan(&self, inside: &Inside, table: &Table<'_>) -> Result<Vec<Step>> {
        match self {
            Left::Container => {
                let staging = paths::open_dir(paths::root()?.as_fd(), DIR.as_bytes())?;
                let journal = read_journal(&staging).context(format!("reading {DIR}/{JOURNAL}"))?;
                Ok(plan_recovery(table, table, DIR.as_bytes(), &journal))
            }
            Left::Ns { pin, ns } => {
                let (text, journal) = inside
                    .hop(ns.as_fd(), || -> rustix::io::Result<_> {
                        let mut text = Vec::new();
                        File::from(inside.own_proc_file("mountinfo")?)
                            .read_to_end(&mut text)
                            .map_err(|e| e.raw_os_error().map_or(Errno::IO, Errno::from_raw_os_error))?;
                        Ok((text, read_journal(&paths::root().map_err(|_| Errno::IO)?)?))
                    })?
                    .context(format!("reading the namespace pinned at {pin}"))?;
                let staged = Table::from_mountinfo(&text, inside.init().host_pid())?;
                Ok(plan_recovery(table, &staged, b"", &journal))
            }
        }
    }

    /// The staging it is, opened again (inside) to carry out the recovery.
    pub fn reopen(self, inside: &Inside) -> Result<Staging> {
        match self {
            Left::Container => Ok(Staging::Container { dir: paths::open_dir(paths::root()?.as_fd(), DIR.as_bytes())? }),
            Left::Ns { pin, ns } => {
                let dir = inside.hop(ns.as_fd(), paths::root)??;
                Ok(Staging::Ns { ns, dir, pin })
            }
        }
    }
}

/// What an interrupted run left (before entering): a staging mount in `table`, the
/// container's, or a pin on the host.
pub fn left_behind(init: &Init, table: &Table<'_>) -> Result<Option<Left>> {
    if table.mounts.iter().any(|m| &*m.mount_point == DIR.as_bytes()) {
        return Ok(Some(Left::Container));
    }
    let pin = layout::pin(init.key()?);
    match rustix::fs::open(pin.as_str(), OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(ns) => Ok(Some(Left::Ns { pin, ns })),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(Error::sys(format!("opening {pin}"), e)),
    }
}

/// Whether a pin of this container is on the host, or a staging mount in its table (`text`):
/// a quick look, before any parsing.
pub fn anything_left(init: &Init, text: &[u8]) -> bool {
    crate::model::mountinfo::contains(text, layout::STAGING_LINE)
        || init.key().is_ok_and(|key| rustix::fs::stat(layout::pin(key).as_str()).is_ok())
}
