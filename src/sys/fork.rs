//! Starting a program without `std::process`: clone3(2) straight into a cgroup, or fork(2),
//! then execve(2). std's `Command` cannot start a child in a cgroup: the child has to move
//! itself by writing to `cgroup.procs`, and that write takes the cgroup threadgroup lock for
//! writing, which waits for an RCU grace period (8 to 16 ms measured here, more than all the
//! rest of a run on a small table). clone3 with CLONE_INTO_CGROUP (Linux 5.7) places the
//! child at its birth, for what a fork costs.
//!
//! Forking is safe here because the program never starts a thread (clippy.toml forbids std's
//! ways to): no other thread can hold a lock that the child would then wait on forever. The
//! child still makes system calls only until it execs or exits (no allocation): `Exec` is made
//! before forking; `exec`, `exit` and `default_signals` are for the child.

use std::ffi::{CString, c_char, c_int, c_long};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions, pidfd_open};

use super::c::{self, errno};
use super::shared_number;

/// clone3's number (elsewhere the fork path is taken).
const SYS_CLONE3: Option<c_long> = shared_number(435);

#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const SIG_SETMASK: c_int = 3;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SIG_SETMASK: c_int = 4;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64", target_arch = "sparc", target_arch = "sparc64")))]
const SIG_SETMASK: c_int = 2;

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// struct clone_args, as far as `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of a fork we are on.
pub enum Forked {
    /// The parent: the child, held by a pidfd.
    Parent(Pid, OwnedFd),
    /// The child: it may only make system calls until it execs or exits.
    Child,
}

/// clone3(2) with CLONE_INTO_CGROUP and CLONE_PIDFD: fork(2), but the child starts in the
/// cgroup2 directory `cgroup` and the parent gets its pidfd. ENOSYS where the kernel (before
/// 5.3), its seccomp filter or this architecture lacks clone3; E2BIG or EINVAL where the kernel
/// lacks CLONE_INTO_CGROUP (before 5.7).
pub fn clone_into_cgroup(cgroup: BorrowedFd<'_>) -> Result<Forked, Errno> {
    let Some(number) = SYS_CLONE3 else { return Err(Errno::NOSYS) };
    let mut pidfd: c_int = -1;
    let args = CloneArgs {
        flags: CLONE_PIDFD | CLONE_INTO_CGROUP,
        pidfd: &raw mut pidfd as u64,
        exit_signal: Signal::CHILD.as_raw() as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a clone_args of the size passed, alive during the call, with no stack
    // (the child runs on a copy of ours, as after fork) and a pidfd field pointing at `pidfd`.
    // The process has one thread (see the module's doc).
    let ret = unsafe { c::syscall(number, &raw const args, size_of::<CloneArgs>()) };
    // A failure is told first: Pid::from_raw asserts (in debug builds) that it is not negative.
    if ret < 0 {
        return Err(errno());
    }
    match Pid::from_raw(ret as i32) {
        None => Ok(Forked::Child),
        // SAFETY: the kernel has just made `pidfd`, and nothing else owns it.
        Some(pid) => Ok(Forked::Parent(pid, unsafe { OwnedFd::from_raw_fd(pidfd) })),
    }
}

/// fork(2), then pidfd_open(2) of the child in the parent.
pub fn fork() -> Result<Forked, Errno> {
    // SAFETY: the process has one thread (see the module's doc).
    let ret = unsafe { c::fork() };
    if ret < 0 {
        return Err(errno());
    }
    let pid = match Pid::from_raw(ret) {
        None => return Ok(Forked::Child),
        Some(pid) => pid,
    };
    // The child is ours and not reaped: its pid cannot have been reused.
    match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(pidfd) => Ok(Forked::Parent(pid, pidfd)),
        Err(e) => {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
            Err(e)
        }
    }
}

/// A program, its argv and its environment as execve(2) takes them: made before forking,
/// since the child cannot allocate.
pub struct Exec {
    path: CString,
    /// Owned by `strings`, whose heap buffers do not move.
    argv: Vec<*const c_char>,
    env: Vec<*const c_char>,
    _strings: Vec<CString>,
}

impl Exec {
    /// None if a string holds a NUL byte.
    pub fn new<'a>(path: &[u8], argv: &[&'a [u8]], env: &[&'a [u8]]) -> Option<Exec> {
        let cstrings = |list: &[&[u8]]| list.iter().map(|s| CString::new(*s).ok()).collect::<Option<Vec<_>>>();
        let (args, vars) = (cstrings(argv)?, cstrings(env)?);
        let pointers = |list: &[CString]| list.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect();
        let (argv, env) = (pointers(&args), pointers(&vars));
        Some(Exec { path: CString::new(path).ok()?, argv, env, _strings: args.into_iter().chain(vars).collect() })
    }

    /// execve(2). Returns only if it failed, with why.
    pub fn exec(&self) -> Errno {
        // SAFETY: the path and both arrays are NUL-terminated C strings and null-terminated
        // arrays of them, alive as long as `self`.
        unsafe { c::execve(self.path.as_ptr(), self.argv.as_ptr(), self.env.as_ptr()) };
        errno()
    }
}

/// _exit(2): the child's end when it could not exec, running nothing of the parent's (no
/// atexit handler, no buffer flushed twice).
pub fn exit(code: i32) -> ! {
    // SAFETY: _exit has no precondition.
    unsafe { c::_exit(code) }
}

/// What exec does not reset itself: the signal mask, emptied (sigprocmask(2)), and SIGPIPE,
/// back to its default (Rust programs ignore it, and an ignored signal stays ignored across
/// exec). The same as std's `Command` does for its children.
pub fn default_signals() -> Result<(), Errno> {
    let empty = c::SigSet([0; 16]);
    // SAFETY: `empty` is a sigset_t of the C library's size; the old set is not asked for.
    if unsafe { c::sigprocmask(SIG_SETMASK, &empty, std::ptr::null_mut()) } != 0 {
        return Err(errno());
    }
    // SAFETY: SIG_DFL (0) is a valid disposition for SIGPIPE.
    if unsafe { c::signal(Signal::PIPE.as_raw(), 0) } == usize::MAX {
        return Err(errno());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_arrays_are_null_terminated_and_refuse_nul_bytes() {
        let exec = Exec::new(b"/bin/true", &[b"true", b"x"], &[b"A=1"]).unwrap();
        assert_eq!(exec.argv.len(), 3);
        assert!(exec.argv[2].is_null() && exec.env[1].is_null());
        assert!(Exec::new(b"/bin/true", &[b"a\0b"], &[]).is_none());
        assert!(Exec::new(b"/bin/\0", &[], &[]).is_none());
    }
}
