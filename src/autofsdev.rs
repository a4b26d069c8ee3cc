//! The kernel's autofs control device, `/dev/autofs` (include/uapi/linux/auto_dev-ioctl.h):
//! ioctls on an autofs mount for a process that is not its master. OPENMOUNT finds the mount
//! by its path and device number (also under mounts stacked on it) and returns a descriptor on
//! it; CATATONIC, through that descriptor, makes its superblock catatonic: every process
//! waiting on it wakes with ENOENT (on Linux 6.6 and later: see `tokens`), and no request is
//! sent any more. None needs a path walk into the mount once the descriptor is held; nor
//! does FAIL, an ioctl on that descriptor itself, which answers one wait by its token.
//!
//! The control device is opened on the host, before entering the container (whose /dev may
//! have no such node): its ioctls take paths in the caller's current mount namespace and root.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, opcode};

use crate::error::{Context, Error, Result};
use crate::mountinfo::Dev;
use crate::show::Shown;

/// `struct autofs_dev_ioctl` without its path: ver_major, ver_minor, size, ioctlfd, and a
/// union of 8 bytes. The path follows it, NUL-terminated; `size` counts both.
const HEADER: usize = 24;
const OPENMOUNT: u8 = 0x74;
const CATATONIC: u8 = 0x79;

/// The control device, held open.
pub struct Control(OwnedFd);

impl Control {
    /// Opens `/dev/autofs`.
    pub fn open() -> Result<Control> {
        rustix::fs::open("/dev/autofs", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map(Control)
            .context("opening /dev/autofs")
    }

    /// The control device as a descriptor handed over by another process.
    pub fn from_fd(fd: OwnedFd) -> Control {
        Control(fd)
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// AUTOFS_DEV_IOCTL_OPENMOUNT: a descriptor on the autofs mount of superblock `dev` at
    /// `path` (absolute, in our mount namespace and root).
    pub fn open_mount(&self, path: &[u8], dev: Dev) -> Result<OwnedFd> {
        let mut param = param(-1, encode_dev(dev), path);
        call(self.0.as_fd(), OPENMOUNT, &mut param).context(format!("opening the autofs mount at {}", Shown(path)))?;
        let raw = i32::from_ne_bytes([param[12], param[13], param[14], param[15]]);
        if raw < 0 {
            return Err(Error::check(format!("opening the autofs mount at {}: no descriptor", Shown(path))));
        }
        // SAFETY: a successful OPENMOUNT put a new descriptor, which nothing else owns, in
        // `ioctlfd`.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    /// AUTOFS_DEV_IOCTL_CATATONIC through a descriptor from `open_mount`.
    pub fn catatonic(&self, mount: BorrowedFd<'_>) -> Result<()> {
        use std::os::fd::AsRawFd;
        let mut param = param(mount.as_raw_fd(), 0, b"");
        call(self.0.as_fd(), CATATONIC, &mut param).context("making it catatonic")
    }
}

/// AUTOFS_IOC_FAIL, `_IO(0x93, 0x61)`: the ioctl on an autofs mount's root directory.
const FAIL: Opcode = opcode::none(0x93, 0x61);

/// AUTOFS_IOC_FAIL through a descriptor on an autofs mount's root (from `open_mount`, or its
/// master's own): answers its superblock's wait `token` with ENOENT, which wakes every
/// process in it. Not through the control device, whose FAIL only the master's process group
/// may use (EACCES); this one takes CAP_SYS_ADMIN. False where the superblock has no such
/// wait (EINVAL: a token of another superblock, or one answered already).
pub fn fail(mount: BorrowedFd<'_>, token: u32) -> Result<bool> {
    // SAFETY: AUTOFS_IOC_FAIL takes its argument, the token, by value, and returns a status.
    let ioctl = unsafe { rustix::ioctl::IntegerSetter::<FAIL>::new_usize(token as usize) };
    // SAFETY: the opcode is autofs's FAIL, whose argument is the integer above.
    match unsafe { rustix::ioctl::ioctl(mount, ioctl) } {
        Ok(()) => Ok(true),
        Err(Errno::INVAL) => Ok(false),
        Err(e) => Err(Error::sys(format!("answering the autofs wait {token}"), e)),
    }
}

/// The parameter block: the header, then `path` and its NUL if there is one.
fn param(ioctlfd: i32, arg: u32, path: &[u8]) -> Vec<u8> {
    let size = if path.is_empty() { HEADER } else { HEADER + path.len() + 1 };
    let mut p = Vec::with_capacity(size);
    for word in [1u32, 1, u32::try_from(size).unwrap_or(u32::MAX)] {
        p.extend_from_slice(&word.to_ne_bytes());
    }
    p.extend_from_slice(&ioctlfd.to_ne_bytes());
    p.extend_from_slice(&arg.to_ne_bytes());
    p.extend_from_slice(&[0; 4]);
    if !path.is_empty() {
        p.extend_from_slice(path);
        p.push(0);
    }
    p
}

/// The kernel's `new_encode_dev`, as OPENMOUNT takes a device number.
fn encode_dev(dev: Dev) -> u32 {
    (dev.minor & 0xff) | (dev.major << 8) | ((dev.minor & !0xff) << 12)
}

/// `_IOWR(0x93, nr, struct autofs_dev_ioctl)` on the control device with parameter block `param`.
fn call(ctl: BorrowedFd<'_>, nr: u8, param: &mut [u8]) -> rustix::io::Result<()> {
    // SAFETY: the opcode is the control device's for this command; `param` is a parameter
    // block at least as long as its `size` field says, which the kernel reads and writes.
    unsafe { rustix::ioctl::ioctl(ctl, DevIoctl { nr, param }) }
}

struct DevIoctl<'a> {
    nr: u8,
    param: &'a mut [u8],
}

// SAFETY: the opcode encodes read-write and the header's size; `as_ptr` points at a block of
// `param.len()` bytes that outlives the call; nothing is returned but the status.
unsafe impl Ioctl for DevIoctl<'_> {
    type Output = ();
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        opcode::read_write::<[u8; HEADER]>(0x93, self.nr)
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        self.param.as_mut_ptr().cast()
    }

    unsafe fn output_from_ptr(_: IoctlOutput, _: *mut std::ffi::c_void) -> rustix::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_blocks() {
        let p = param(-1, 7, b"/srv/idle");
        assert_eq!(p.len(), HEADER + 10);
        assert_eq!(&p[8..12], &34u32.to_ne_bytes(), "size counts the path and its NUL");
        assert_eq!(&p[12..16], &(-1i32).to_ne_bytes());
        assert_eq!(&p[16..20], &7u32.to_ne_bytes());
        assert_eq!(&p[24..], b"/srv/idle\0");
        assert_eq!(param(5, 0, b"").len(), HEADER);
        assert_eq!(FAIL, 0x9361);
    }

    #[test]
    fn device_numbers_as_the_kernel_encodes_them() {
        assert_eq!(encode_dev(Dev { major: 0, minor: 51 }), 51);
        assert_eq!(encode_dev(Dev { major: 8, minor: 1 }), 0x801);
        assert_eq!(encode_dev(Dev { major: 0, minor: 0x1234 }), 0x34 | (0x1200 << 12));
        assert_eq!(opcode::read_write::<[u8; HEADER]>(0x93, OPENMOUNT), 0xc018_9374);
    }
}
