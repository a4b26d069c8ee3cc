//! The container's mount table as a plan reads it: the part it needs (`partial`), by
//! listmount(2) and statmount(2) in the container's mount namespace and root, where the kernel
//! has them; else, or with the legacy API asked for, the init's whole mountinfo.

use rustix::io::Errno;

use super::{Host, Inside, Reached};
use crate::error::Result;
use crate::layout;
use crate::partial;
use crate::settings::Api;
use crate::sys::statmount::{basic, list_mounts, statmount};

/// How a table was read, for `-v`: the part (mounts read of those listed), or the whole
/// mountinfo and why.
pub enum TableRead {
    Part { read: usize, of: usize },
    Whole(Option<Errno>),
}

impl std::fmt::Display for TableRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableRead::Part { read, of } => write!(f, "{read} of its {of} mounts read by statmount"),
            TableRead::Whole(None) => f.write_str("its whole mountinfo read (legacy API)"),
            TableRead::Whole(Some(e)) => write!(f, "its whole mountinfo read (listmount and statmount: {e})"),
        }
    }
}

/// The part of the table of the mount namespace and root we are in now.
fn part_here() -> std::result::Result<(Vec<u8>, TableRead), Errno> {
    let ids = list_mounts()?;
    let mut all = Vec::with_capacity(ids.len());
    for id in ids {
        match basic(id) {
            Ok(b) => all.push(b),
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

impl Host {
    /// The container's table (see the module): the part visited in its namespace and root.
    pub fn mount_table(&self, api: Api) -> Result<(Vec<u8>, TableRead)> {
        let why = match api {
            Api::New => match self.visit(part_here)? {
                Ok(part) => return Ok(part),
                Err(e) => Some(e),
            },
            Api::Legacy => None,
        };
        Ok((self.init().mountinfo()?, TableRead::Whole(why)))
    }
}

impl Inside {
    /// The container's table (see the module), read where we are, with the kernel
    /// interfaces the run was entered with.
    pub fn mount_table(&self) -> Result<(Vec<u8>, TableRead)> {
        let why = match self.asked() {
            Api::New => match part_here() {
                Ok(part) => return Ok(part),
                Err(e) => Some(e),
            },
            Api::Legacy => None,
        };
        Ok((self.init().mountinfo()?, TableRead::Whole(why)))
    }
}

impl Reached {
    /// `api` as the run was asked: an `Inside` was entered with it.
    pub fn mount_table(&self, api: Api) -> Result<(Vec<u8>, TableRead)> {
        match self {
            Reached::Outside(host) => host.mount_table(api),
            Reached::In(inside) => inside.mount_table(),
        }
    }
}
