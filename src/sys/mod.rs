//! Every `unsafe` of the program: the system calls rustix lacks, each behind a small typed
//! front whose doc names the call (`fork`: clone3 into a cgroup, fork, execve; `statmount`:
//! one mount's record), the ioctls rustix has no front for (`autofs`, `nsfs`), and the few
//! places where a descriptor is known by its number (`fds`).
//! They come from the C library we link anyway (std needs it): no crate more, no assembly.
//! Where the kernel, its seccomp filter or the architecture lacks one, it fails with ENOSYS
//! (or EINVAL for a flag the kernel does not know) and the caller takes the older way.

pub mod autofs;
pub mod fds;
pub mod fork;
pub mod nsfs;
pub mod statmount;

use std::ffi::c_long;

/// The number of a system call added since Linux 5.3, on architectures that share one table
/// for those; None on the others (mips, with its own numbers), where it is left alone.
const fn shared_number(number: c_long) -> Option<c_long> {
    let shared = cfg!(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "riscv32",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "s390x",
        target_arch = "loongarch64"
    ));
    if shared { Some(number) } else { None }
}

/// unshare(CLONE_NEWNS): a mount namespace of this process's own, a copy of the one it was in.
pub fn unshare_mount_namespace() -> rustix::io::Result<()> {
    // SAFETY: CLONE_NEWNS alone, which shares nothing between threads that another could be
    // using (rustix's concern is CLONE_FILES).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
}

/// The C library's wrappers, for the calls rustix does not offer.
mod c {
    use std::ffi::{c_char, c_int, c_long};

    use rustix::io::Errno;

    /// sigset_t of glibc and musl: 1024 bits, all clear for an empty set.
    #[repr(C)]
    pub struct SigSet(pub [u64; 16]);

    unsafe extern "C" {
        pub fn syscall(number: c_long, ...) -> c_long;
        pub fn fork() -> c_int;
        pub fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
        pub fn _exit(status: c_int) -> !;
        pub fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
        pub fn signal(signum: c_int, handler: usize) -> usize;
    }

    /// The last error of the C library.
    pub fn errno() -> Errno {
        Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}
