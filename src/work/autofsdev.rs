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

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Context, Error, Result};
use crate::model::mountinfo::Dev;
use crate::show::Shown;
use crate::sys::autofs;

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
        autofs::open_mount(self.0.as_fd(), path, encode_dev(dev))
            .context(format!("opening the autofs mount at {}", Shown(path)))
    }

    /// AUTOFS_DEV_IOCTL_CATATONIC through a descriptor from `open_mount`.
    pub fn catatonic(&self, mount: BorrowedFd<'_>) -> Result<()> {
        autofs::catatonic(self.0.as_fd(), mount).context("making it catatonic")
    }
}

/// AUTOFS_IOC_FAIL through a descriptor on an autofs mount's root (from `open_mount`, or its
/// master's own): answers its superblock's wait `token` with ENOENT, which wakes every
/// process in it. Not through the control device, whose FAIL only the master's process group
/// may use (EACCES); this one takes CAP_SYS_ADMIN. False where the superblock has no such
/// wait (EINVAL: a token of another superblock, or one answered already).
pub fn fail(mount: BorrowedFd<'_>, token: u32) -> Result<bool> {
    match autofs::fail(mount, token) {
        Ok(()) => Ok(true),
        Err(Errno::INVAL) => Ok(false),
        Err(e) => Err(Error::sys(format!("answering the autofs wait {token}"), e)),
    }
}

/// The kernel's `new_encode_dev`, as OPENMOUNT takes a device number.
fn encode_dev(dev: Dev) -> u32 {
    (dev.minor & 0xff) | (dev.major << 8) | ((dev.minor & !0xff) << 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_as_the_kernel_encodes_them() {
        assert_eq!(encode_dev(Dev { major: 0, minor: 51 }), 51);
        assert_eq!(encode_dev(Dev { major: 8, minor: 1 }), 0x801);
        assert_eq!(encode_dev(Dev { major: 0, minor: 0x1234 }), 0x34 | (0x1200 << 12));
    }
}
