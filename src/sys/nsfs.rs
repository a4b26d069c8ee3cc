//! The nsfs ioctls (ioctl_ns(2)).

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, opcode};

/// `ioctl(ns, NS_GET_PARENT)`: the parent of the pid or user namespace `ns`, as a new file
/// descriptor; EPERM at the caller's own namespace's parent.
pub fn parent(ns: BorrowedFd<'_>) -> rustix::io::Result<OwnedFd> {
    // SAFETY: NS_GET_PARENT takes no argument; `ns` is a descriptor the caller holds.
    unsafe { rustix::ioctl::ioctl(ns, NsGetParent) }
}

struct NsGetParent;

// SAFETY: the opcode is NS_GET_PARENT = _IO(0xb7, 0x2); it reads and writes no user memory,
// and on success returns a new file descriptor that the caller owns.
unsafe impl Ioctl for NsGetParent {
    type Output = OwnedFd;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        opcode::none(0xb7, 0x2)
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut std::ffi::c_void) -> rustix::io::Result<OwnedFd> {
        // SAFETY: a successful NS_GET_PARENT returns a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(out) })
    }
}
