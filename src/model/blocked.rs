//! Processes blocked on a stale autofs mount. A process that touched a restored mount point
//! before the fix sent a request nobody answers; the kernel keeps it in a killable wait on the
//! old superblock, and the master's restart does not wake it. Nothing safe wakes it either:
//! every way to the old superblock (a path walk, the ioctl interface) waits the same way. So
//! the fix names each one, with the path it is looking up, for the operator to act on.
//!
//! Pure helpers: which argument of the system call a process is in is the path, and how that
//! path relates to the autofs mounts.

/// The path argument of the system call a process is blocked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathArg {
    /// Where the path string is in the process's memory.
    pub addr: u64,
    /// The directory fd it is relative to; None for the working directory.
    pub dirfd: Option<i32>,
}

/// A system call that looks a path up: its number on this architecture, its name (as the
/// kernel's headers have it: `__NR_name`), and which of its arguments are the path and the
/// directory fd it is relative to.
#[derive(Debug, Clone, Copy)]
struct Call {
    nr: u64,
    #[cfg_attr(not(test), expect(dead_code, reason = "for the tests, which check each number against the headers"))]
    name: &'static str,
    path: usize,
    dirfd: Option<usize>,
}

/// A call whose path is its first argument.
const fn path(nr: u64, name: &'static str) -> Call {
    Call { nr, name, path: 0, dirfd: None }
}

/// A call `name(dirfd, path, ...)`.
const fn at(nr: u64, name: &'static str) -> Call {
    Call { nr, name, path: 1, dirfd: Some(0) }
}

/// The calls that look a path up, by this architecture's numbers; build/check-cross compares
/// each with the target's headers (`numbers_are_the_headers`).
#[cfg(target_arch = "x86_64")]
const CALLS: &[Call] = &[
    path(2, "open"),
    path(4, "stat"),
    path(6, "lstat"),
    path(21, "access"),
    path(59, "execve"),
    path(80, "chdir"),
    path(83, "mkdir"),
    path(89, "readlink"),
    path(137, "statfs"),
    path(161, "chroot"),
    path(191, "getxattr"),
    path(192, "lgetxattr"),
    at(257, "openat"),
    at(262, "newfstatat"),
    at(267, "readlinkat"),
    at(269, "faccessat"),
    at(332, "statx"),
    at(437, "openat2"),
    at(439, "faccessat2"),
];

/// The generic table (asm-generic/unistd.h) that arm64 and riscv64 share: no `open` or `stat`.
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
const CALLS: &[Call] = &[
    path(8, "getxattr"),
    path(9, "lgetxattr"),
    at(34, "mkdirat"),
    path(43, "statfs"),
    at(48, "faccessat"),
    path(49, "chdir"),
    path(51, "chroot"),
    at(56, "openat"),
    at(78, "readlinkat"),
    at(79, "newfstatat"),
    path(221, "execve"),
    at(291, "statx"),
    at(437, "openat2"),
    at(439, "faccessat2"),
];

/// 32-bit arm (EABI): the stat calls are the 64-bit-size ones glibc makes.
#[cfg(target_arch = "arm")]
const CALLS: &[Call] = &[
    path(5, "open"),
    path(11, "execve"),
    path(12, "chdir"),
    path(33, "access"),
    path(39, "mkdir"),
    path(61, "chroot"),
    path(85, "readlink"),
    path(99, "statfs"),
    path(106, "stat"),
    path(107, "lstat"),
    path(195, "stat64"),
    path(196, "lstat64"),
    path(229, "getxattr"),
    path(230, "lgetxattr"),
    path(266, "statfs64"),
    at(322, "openat"),
    at(323, "mkdirat"),
    at(327, "fstatat64"),
    at(332, "readlinkat"),
    at(334, "faccessat"),
    at(397, "statx"),
    at(437, "openat2"),
    at(439, "faccessat2"),
];

#[cfg(target_arch = "powerpc64")]
const CALLS: &[Call] = &[
    path(5, "open"),
    path(11, "execve"),
    path(12, "chdir"),
    path(33, "access"),
    path(39, "mkdir"),
    path(61, "chroot"),
    path(85, "readlink"),
    path(99, "statfs"),
    path(106, "stat"),
    path(107, "lstat"),
    path(212, "getxattr"),
    path(213, "lgetxattr"),
    at(286, "openat"),
    at(287, "mkdirat"),
    at(291, "newfstatat"),
    at(296, "readlinkat"),
    at(298, "faccessat"),
    at(383, "statx"),
    at(437, "openat2"),
    at(439, "faccessat2"),
];

#[cfg(target_arch = "s390x")]
const CALLS: &[Call] = &[
    path(5, "open"),
    path(11, "execve"),
    path(12, "chdir"),
    path(33, "access"),
    path(39, "mkdir"),
    path(61, "chroot"),
    path(85, "readlink"),
    path(99, "statfs"),
    path(106, "stat"),
    path(107, "lstat"),
    path(227, "getxattr"),
    path(228, "lgetxattr"),
    at(288, "openat"),
    at(289, "mkdirat"),
    at(293, "newfstatat"),
    at(298, "readlinkat"),
    at(300, "faccessat"),
    at(379, "statx"),
    at(437, "openat2"),
    at(439, "faccessat2"),
];

/// Elsewhere no process's path is read: it is named without one.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "arm",
    target_arch = "powerpc64",
    target_arch = "s390x"
)))]
const CALLS: &[Call] = &[];

/// AT_FDCWD, as the kernel shows it among the arguments.
const AT_FDCWD: i32 = -100;

/// Reads a /proc/PID/syscall line: `NR ARG0 ... ARG5 SP PC`, in hexadecimal but for NR.
pub fn path_arg(line: &[u8]) -> Option<PathArg> {
    let text = std::str::from_utf8(line).ok()?;
    let mut fields = text.split_whitespace();
    let nr: u64 = fields.next()?.parse().ok()?;
    let args: Vec<u64> =
        fields.take(6).map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16)).collect::<Result<_, _>>().ok()?;
    let call = CALLS.iter().find(|c| c.nr == nr)?;
    let dirfd = match call.dirfd {
        None => None,
        // The kernel prints the register: the low 32 bits are the int.
        Some(i) => Some(*args.get(i)? as u32 as i32).filter(|&fd| fd != AT_FDCWD),
    };
    Some(PathArg { addr: *args.get(call.path)?, dirfd })
}

/// `path` made absolute against `base` (an absolute directory) and normalised lexically:
/// good enough to name a mount point, never used to reach one.
pub fn join(base: &[u8], path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let whole = if path.starts_with(b"/") { [&b""[..], path] } else { [base, path] };
    for part in whole.iter().flat_map(|p| p.split(|&b| b == b'/')) {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = Vec::new();
    for p in &parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// The longest of `points` that `path` is at or below.
pub fn mount_of<'p>(path: &[u8], points: impl IntoIterator<Item = &'p [u8]>) -> Option<&'p [u8]> {
    points
        .into_iter()
        .filter(|p| path == *p || (path.starts_with(p) && (p.ends_with(b"/") || path.get(p.len()) == Some(&b'/'))))
        .max_by_key(|p| p.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn syscall_lines() {
        // stat("/srv/idle/.", ...) and newfstatat(AT_FDCWD, ...), as /proc/PID/syscall shows them.
        let stat = b"4 0x7ffd5a3c1f2e 0x7ffd5a3c0e00 0x0 0x0 0x0 0x0 0x7ffd5a3c0d98 0x7f1e6b0e8f3e\n";
        assert_eq!(path_arg(stat), Some(PathArg { addr: 0x7ffd5a3c1f2e, dirfd: None }));
        let at = b"262 0xffffffffffffff9c 0x55d0c0a1b2c0 0x7ffc1 0x0 0x0 0x0 0x7ffc0 0x7f00\n";
        assert_eq!(path_arg(at), Some(PathArg { addr: 0x55d0c0a1b2c0, dirfd: None }));
        let dir = b"257 0x3 0x55d0c0a1b2c0 0x0 0x0 0x0 0x0 0x7ffc0 0x7f00\n";
        assert_eq!(path_arg(dir), Some(PathArg { addr: 0x55d0c0a1b2c0, dirfd: Some(3) }));
        assert_eq!(path_arg(b"0 0x3 0x7fc5fe00c000 0x20000 0x0 0x0 0x0 0x7fff 0x7fc5\n"), None, "read(2)");
        assert_eq!(path_arg(b"running\n"), None);
        assert_eq!(path_arg(b"-1 0x7fff 0x7fc5\n"), None);
        assert_eq!(path_arg(b"4 0xzz 0x0\n"), None);
    }

    /// Lines as /proc/PID/syscall shows them, by this architecture's numbers: a call relative
    /// to a directory fd, to the working directory (AT_FDCWD, as a 32-bit or 64-bit register
    /// prints it), and one whose path is its first argument.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "arm",
        target_arch = "powerpc64",
        target_arch = "s390x"
    ))]
    #[test]
    fn syscall_lines_of_this_architecture() {
        let nr = |name| CALLS.iter().find(|c| c.name == name).unwrap().nr;
        let (openat, execve) = (nr("openat"), nr("execve"));
        let dir = format!("{openat} 0x3 0x55d0c0a1b2c0 0x0 0x0 0x0 0x0 0x7ffc0 0x7f00\n");
        assert_eq!(path_arg(dir.as_bytes()), Some(PathArg { addr: 0x55d0c0a1b2c0, dirfd: Some(3) }));
        for cwd in ["0xffffff9c", "0xffffffffffffff9c"] {
            let line = format!("{openat} {cwd} 0x1000 0x0 0x0 0x0 0x0 0x7ffc0 0x7f00\n");
            assert_eq!(path_arg(line.as_bytes()), Some(PathArg { addr: 0x1000, dirfd: None }), "{line}");
        }
        let exec = format!("{execve} 0x2000 0x3000 0x4000 0x0 0x0 0x0 0x7ffc0 0x7f00\n");
        assert_eq!(path_arg(exec.as_bytes()), Some(PathArg { addr: 0x2000, dirfd: None }));
        let mut numbers: Vec<u64> = CALLS.iter().map(|c| c.nr).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), CALLS.len(), "a number twice");
    }

    /// Each number is the one the kernel's headers give the call on this architecture, where
    /// build/check-cross compiled them (`AUTOFS_RESTART_HEADER_SYSCALLS`: "name=nr ...").
    #[test]
    fn numbers_are_the_headers() {
        let Ok(headers) = std::env::var("AUTOFS_RESTART_HEADER_SYSCALLS") else { return };
        let theirs = |name: &str| {
            headers.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok())
        };
        for c in CALLS {
            assert_eq!(Some(c.nr), theirs(c.name), "{}: ours, the headers' ({headers})", c.name);
        }
    }

    #[test]
    fn joining_and_normalising() {
        assert_eq!(join(b"/srv", b"idle/."), b"/srv/idle");
        assert_eq!(join(b"/home/u", b"/srv/idle/x"), b"/srv/idle/x");
        assert_eq!(join(b"/a/b", b"../../srv//idle/"), b"/srv/idle");
        assert_eq!(join(b"/", b".."), b"/");
    }

    #[test]
    fn the_mount_a_path_is_below() {
        let points: [&[u8]; 3] = [b"/srv/idle", b"/srv", b"/proc/sys/fs/binfmt_misc"];
        assert_eq!(mount_of(b"/srv/idle/x", points), Some(&b"/srv/idle"[..]));
        assert_eq!(mount_of(b"/srv/idle", points), Some(&b"/srv/idle"[..]));
        assert_eq!(mount_of(b"/srv/idler", points), Some(&b"/srv"[..]));
        assert_eq!(mount_of(b"/etc", points), None);
    }
}
