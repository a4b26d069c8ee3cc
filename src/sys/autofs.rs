//! The autofs ioctls: the control device's (`/dev/autofs`, include/uapi/linux/auto_dev-ioctl.h),
//! which take a parameter block, and those of an autofs mount's root directory
//! (include/uapi/linux/auto_fs.h), which take an integer or nothing.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::{Errno, Result};
use rustix::ioctl::{Ioctl, IoctlOutput, NoArg, Opcode, opcode};

/// `struct autofs_dev_ioctl` without its path: ver_major, ver_minor, size, ioctlfd, and a
/// union of 8 bytes. The path follows it, NUL-terminated; `size` counts both.
const HEADER: usize = 24;
const OPENMOUNT: u8 = 0x74;
const CATATONIC: u8 = 0x79;

/// AUTOFS_IOC_FAIL, `_IO(0x93, 0x61)`, on a mount's root: takes the token by value.
const ROOT_FAIL: Opcode = opcode::none(0x93, 0x61);
/// AUTOFS_IOC_CATATONIC, `_IO(0x93, 0x62)`, on a mount's root: takes nothing.
const ROOT_CATATONIC: Opcode = opcode::none(0x93, 0x62);

/// AUTOFS_DEV_IOCTL_OPENMOUNT on the control device `ctl`: a descriptor on the autofs mount
/// of device number `devid` (`new_encode_dev`) at `path`, in the caller's mount namespace.
pub fn open_mount(ctl: BorrowedFd<'_>, path: &[u8], devid: u32) -> Result<OwnedFd> {
    let mut param = param(-1, devid, path);
    call(ctl, OPENMOUNT, &mut param)?;
    let raw = i32::from_ne_bytes([param[12], param[13], param[14], param[15]]);
    if raw < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: a successful OPENMOUNT put a new descriptor, which nothing else owns, in
    // `ioctlfd`.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// AUTOFS_DEV_IOCTL_CATATONIC on the control device `ctl`, through `mount`, a descriptor on
/// an autofs mount's root. The only command of the control device that a process outside
/// the mount's process group may use (`_autofs_dev_ioctl`); the others answer EACCES.
pub fn catatonic(ctl: BorrowedFd<'_>, mount: BorrowedFd<'_>) -> Result<()> {
    call(ctl, CATATONIC, &mut param(mount.as_raw_fd(), 0, b""))
}

/// AUTOFS_IOC_FAIL on `root`, an autofs mount's root directory: answers the wait `token` of
/// its superblock with ENOENT. Takes CAP_SYS_ADMIN (or the mount's process group).
pub fn fail(root: BorrowedFd<'_>, token: u32) -> Result<()> {
    // SAFETY: AUTOFS_IOC_FAIL takes its argument, the token, by value.
    let ioctl = unsafe { rustix::ioctl::IntegerSetter::<ROOT_FAIL>::new_usize(token as usize) };
    // SAFETY: the opcode is autofs's FAIL, whose argument is the integer above; nothing is
    // read or written through a pointer.
    unsafe { rustix::ioctl::ioctl(root, ioctl) }
}

/// AUTOFS_IOC_CATATONIC on `root`, an autofs mount's root directory.
pub fn root_catatonic(root: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: AUTOFS_IOC_CATATONIC takes no argument.
    unsafe { rustix::ioctl::ioctl(root, NoArg::<ROOT_CATATONIC>::new()) }
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

/// `_IOWR(0x93, nr, struct autofs_dev_ioctl)` on the control device with parameter block `param`.
fn call(ctl: BorrowedFd<'_>, nr: u8, param: &mut [u8]) -> Result<()> {
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

    unsafe fn output_from_ptr(_: IoctlOutput, _: *mut std::ffi::c_void) -> Result<()> {
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
    }

    /// `_IO`'s direction bits: none in the generic encoding (asm-generic/ioctl.h), `_IOC_VOID`
    /// where powerpc, mips and sparc have their own (arch/*/include/uapi/asm/ioctl.h).
    const IO_NONE: Opcode = if cfg!(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )) {
        0x2000_0000
    } else {
        0
    };

    /// The opcodes as the kernel's headers encode them on this architecture. Where the build
    /// checks give the values the headers' own macros produce for the target
    /// (`AUTOFS_RESTART_HEADER_IOCTLS`: build/check-cross compiles them), those too.
    #[test]
    fn opcodes() {
        let ours = [
            opcode::read_write::<[u8; HEADER]>(0x93, OPENMOUNT),
            opcode::read_write::<[u8; HEADER]>(0x93, CATATONIC),
            ROOT_FAIL,
            ROOT_CATATONIC,
        ];
        assert_eq!(ours, [0xc018_9374, 0xc018_9379, IO_NONE | 0x9361, IO_NONE | 0x9362]);
        if let Ok(headers) = std::env::var("AUTOFS_RESTART_HEADER_IOCTLS") {
            let theirs: Vec<u64> = headers
                .split_whitespace()
                .map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap())
                .collect();
            let ours: Vec<u64> = ours.iter().map(|&o| u64::from(o)).chain([HEADER as u64]).collect();
            assert_eq!(ours, theirs, "OPENMOUNT, CATATONIC, FAIL, CATATONIC, header size: ours, the headers'");
        }
    }
}
