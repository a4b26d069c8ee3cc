//! Namespaces as the kernel identifies them, and a mount namespace with a root in it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A namespace: the device and inode of its nsfs file (ioctl_ns(2)).
pub type NsId = (u64, u64);

/// The namespace whose nsfs file is `path` below `dir`.
pub fn id(dir: BorrowedFd<'_>, path: &str) -> rustix::io::Result<NsId> {
    rustix::fs::statat(dir, path, rustix::fs::AtFlags::empty()).map(|st| (st.st_dev, st.st_ino))
}

/// Whether pid namespace `ns` lies below the one identified by `top`: walks up with
/// `ioctl(NS_GET_PARENT)`, which ends in EPERM at our own namespace.
pub fn below(mut ns: OwnedFd, top: NsId) -> bool {
    // The kernel nests pid namespaces at most 32 deep.
    for _ in 0..33 {
        match crate::sys::nsfs::parent(ns.as_fd()) {
            Ok(parent) => ns = parent,
            Err(_) => return false,
        }
        match rustix::fs::fstat(&ns) {
            Ok(st) if (st.st_dev, st.st_ino) == top => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// A mount namespace and a root directory in it, held open: a nested namespace of the
/// container, where our helpers work on what only it can reach. Held, it outlives its processes.
pub struct Place {
    pub(super) mnt: OwnedFd,
    pub(super) root: OwnedFd,
}
