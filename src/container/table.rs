//! The container's mount table as a plan reads it: the part it needs (`partial`), by
//! listmount(2) and statmount(2) in the container's mount namespace and root, where the kernel
//! has them; else, or with the legacy API asked for, the init's whole mountinfo. After a
//! pre-resume run, whose holder held the restored autofs mounts, the part is read below those
//! alone: the pre-resume run chose them from every mount already.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::io::Errno;

use super::{Host, Init, Inside};
use crate::error::{Result, errno_name};
use crate::model::layout;
use crate::model::partial;
use crate::settings::Api;
use crate::sys::statmount::{Lister, basic, list_mounts, statmount, top_mount_id};

/// Up to how many held autofs mounts the part is read below them: listing below one mount
/// walks the whole namespace (0.15–0.3 ms at 10 000 mounts), choosing from every mount costs
/// about 50 such walks (9.2 ms there), and both grow with the namespace alike
/// (build/bench-notes.md). 32 stays on the cheaper side of that.
const BELOW_AT_MOST: usize = 32;

/// A mount table as read once: its mountinfo lines, and how they were read. Stages keep the
/// snapshot they plan from, and replace it whole when they read again.
pub struct Snapshot {
    pub text: Vec<u8>,
    pub read: TableRead,
}

/// How a table was read, for `-v`: the part (mounts read of those listed), or the whole
/// mountinfo and why.
pub enum TableRead {
    Part { read: usize, of: usize },
    Below { read: usize, held: usize },
    Whole(Option<Errno>),
}

impl TableRead {
    /// Whether it was read below the mounts pre-resume held.
    pub fn is_below(&self) -> bool {
        matches!(self, TableRead::Below { .. })
    }
}

impl std::fmt::Display for TableRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableRead::Part { read, of } => write!(f, "{read} of its {of} mounts read by statmount"),
            TableRead::Below { read, held } => {
                write!(f, "{read} mounts read by statmount, at and below the {held} autofs mount(s) pre-resume held")
            }
            TableRead::Whole(None) => f.write_str("its whole mountinfo read (legacy API)"),
            TableRead::Whole(Some(Errno::NODATA)) => {
                f.write_str("its whole mountinfo read (statmount lacks a field of a line: a kernel before 6.13, or a mount without a source)")
            }
            TableRead::Whole(Some(e)) => {
                write!(f, "its whole mountinfo read (listmount and statmount: {})", errno_name(*e))
            }
        }
    }
}

/// The part of the table of the mount namespace and root we are in now.
fn part_here() -> std::result::Result<(Vec<u8>, TableRead), Errno> {
    let ids = list_mounts()?;
    // Records without a field of the line (sources, before 6.13) end in the whole mountinfo:
    // told by the first, before every mount's basics are read for nothing.
    if let Some(&first) = ids.first() {
        statmount(first)?;
    }
    let mut all = Vec::with_capacity(ids.len());
    for id in ids {
        match basic(id) {
            Ok(b) => all.push(partial::Basic { id: b.id, parent: b.parent, magic: b.magic }),
            // Unmounted since it was listed, as it could have been before.
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    let mut read = 0;
    let text = partial::lines(&all, layout::DIR.as_bytes(), &mut |id| match statmount(id) {
        Ok(r) => {
            read += 1;
            Ok(Some((r.mount_point().to_vec(), r.mountinfo_line())))
        }
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    })?;
    Ok((text, TableRead::Part { read, of: all.len() }))
}

/// The part at and below the autofs mounts `autofs` (unique ids) that the pre-resume run
/// held: each, the mount it sits on, and everything below it. ENOTEMPTY where an interrupted
/// run's staging is at `layout::DIR`: the recovery needs what the whole part has.
fn part_below(autofs: &[u64], root: BorrowedFd<'_>) -> std::result::Result<(Vec<u8>, TableRead), Errno> {
    if staging_at(root) {
        return Err(Errno::NOTEMPTY);
    }
    let mut ids = Vec::new();
    for &id in autofs {
        let b = match basic(id) {
            Ok(b) => b,
            // Unmounted since: nothing to fix there.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        ids.extend([b.id, b.parent]);
        ids.extend(Lister::below(id).all()?);
    }
    ids.sort_unstable();
    ids.dedup();
    let mut text = Vec::new();
    for &id in &ids {
        match statmount(id) {
            // A mount point our root does not reach (a parent outside a chroot) has no path.
            Ok(r) if !r.mount_point().is_empty() => text.extend(r.mountinfo_line()),
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((text, TableRead::Below { read: ids.len(), held: autofs.len() }))
}

/// Whether a mount is at the staging directory: statx of it, no automount triggered.
fn staging_at(root: BorrowedFd<'_>) -> bool {
    let Some((dir, name)) = layout::DIR.rsplit_once('/') else { return false };
    let Ok(dir) = crate::container::paths::open_dir(root, dir.as_bytes()) else { return false };
    top_mount_id(dir.as_fd(), name.as_bytes())
        .and_then(statmount)
        .is_ok_and(|r| r.mount_point() == layout::DIR.as_bytes())
}

/// The part `part` reads with the new API, else (the legacy API, or the kernel refused it) the
/// init's whole mountinfo. An error of `part` itself (not of its system calls) ends the run.
fn part_or_whole(
    init: &Init,
    api: Api,
    part: impl FnOnce() -> Result<std::result::Result<(Vec<u8>, TableRead), Errno>>,
) -> Result<Snapshot> {
    let why = match api {
        Api::New => match part()? {
            Ok((text, read)) => return Ok(Snapshot { text, read }),
            Err(e) => Some(e),
        },
        Api::Legacy => None,
    };
    Ok(Snapshot { text: init.mountinfo()?, read: TableRead::Whole(why) })
}

impl Host {
    /// The container's table as after a pre-resume run whose holder held the autofs mounts
    /// `held` (unique ids): the part below them (see the module), unless there are too many,
    /// or units were asked for (one of them may be mounted since), or anything in it fails.
    pub fn mount_table_below(&self, api: Api, held: &[u64], units_asked: bool) -> Result<Snapshot> {
        if api == Api::New && !units_asked && (1..=BELOW_AT_MOST).contains(&held.len()) {
            if let Ok((text, read)) = self.visit(|| part_below(held, self.root()))? {
                return Ok(Snapshot { text, read });
            }
        }
        self.mount_table(api)
    }

    /// The container's table (see the module): the part visited in its namespace and root.
    pub fn mount_table(&self, api: Api) -> Result<Snapshot> {
        part_or_whole(self.init(), api, || self.visit(part_here))
    }
}

impl Inside {
    /// The mountinfo lines of those of the mounts `ids` (unique ids) that are still in the
    /// container's namespace.
    pub fn mounts_of(&self, ids: &[u64]) -> Result<Vec<u8>> {
        let mut text = Vec::new();
        for &id in ids {
            match statmount(id) {
                Ok(r) => text.extend(r.mountinfo_line()),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(crate::error::Error::sys("reading a held autofs mount", e)),
            }
        }
        Ok(text)
    }

    /// The container's table (see the module), read where we are, with the kernel
    /// interfaces the run was entered with.
    pub fn mount_table(&self) -> Result<Snapshot> {
        part_or_whole(self.init(), self.asked(), || Ok(part_here()))
    }
}
