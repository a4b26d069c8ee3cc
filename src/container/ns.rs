//! Namespaces as the kernel identifies them, and a mount namespace with a root in it.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

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
        // SAFETY: NS_GET_PARENT takes no argument; `ns` is an open nsfs file.
        match unsafe { rustix::ioctl::ioctl(&ns, NsGetParent) } {
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

/// `ioctl(fd, NS_GET_PARENT)` (ioctl_ns(2)): the parent of a pid or user namespace, as a new
/// file descriptor.
struct NsGetParent;

// SAFETY: the opcode is NS_GET_PARENT = _IO(0xb7, 0x2); it reads and writes no user memory,
// and on success returns a new file descriptor that the caller owns.
unsafe impl rustix::ioctl::Ioctl for NsGetParent {
    type Output = OwnedFd;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> rustix::ioctl::Opcode {
        rustix::ioctl::opcode::none(0xb7, 0x2)
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: rustix::ioctl::IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<OwnedFd> {
        // SAFETY: a successful NS_GET_PARENT returns a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(out) })
    }
}

/// A mount namespace and a root directory in it, held open: a nested namespace of the
/// container, where our helpers work on what only it can reach. Held, it outlives its processes.
pub struct Place {
    pub(super) mnt: OwnedFd,
    pub(super) root: OwnedFd,
}
