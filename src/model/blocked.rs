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

/// (system call number, index of the path argument, index of the dirfd argument) for the
/// calls that look a path up.
#[cfg(target_arch = "x86_64")]
const CALLS: &[(u64, usize, Option<usize>)] = &[
    (2, 0, None),      // open
    (4, 0, None),      // stat
    (6, 0, None),      // lstat
    (21, 0, None),     // access
    (59, 0, None),     // execve
    (80, 0, None),     // chdir
    (83, 0, None),     // mkdir
    (89, 0, None),     // readlink
    (137, 0, None),    // statfs
    (161, 0, None),    // chroot
    (191, 0, None),    // getxattr
    (192, 0, None),    // lgetxattr
    (257, 1, Some(0)), // openat
    (262, 1, Some(0)), // newfstatat
    (267, 1, Some(0)), // readlinkat
    (269, 1, Some(0)), // faccessat
    (332, 1, Some(0)), // statx
    (437, 1, Some(0)), // openat2
    (439, 1, Some(0)), // faccessat2
];

#[cfg(target_arch = "aarch64")]
const CALLS: &[(u64, usize, Option<usize>)] = &[
    (34, 1, Some(0)),  // mkdirat
    (43, 0, None),     // statfs
    (48, 1, Some(0)),  // faccessat
    (49, 0, None),     // chdir
    (51, 0, None),     // chroot
    (56, 1, Some(0)),  // openat
    (78, 1, Some(0)),  // readlinkat
    (79, 1, Some(0)),  // newfstatat
    (221, 0, None),    // execve
    (291, 1, Some(0)), // statx
    (437, 1, Some(0)), // openat2
    (439, 1, Some(0)), // faccessat2
];

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const CALLS: &[(u64, usize, Option<usize>)] = &[];

/// AT_FDCWD, as the kernel shows it among the arguments.
const AT_FDCWD: i32 = -100;

/// Reads a /proc/PID/syscall line: `NR ARG0 ... ARG5 SP PC`, in hexadecimal but for NR.
pub fn path_arg(line: &[u8]) -> Option<PathArg> {
    let text = std::str::from_utf8(line).ok()?;
    let mut fields = text.split_whitespace();
    let nr: u64 = fields.next()?.parse().ok()?;
    let args: Vec<u64> =
        fields.take(6).map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16)).collect::<Result<_, _>>().ok()?;
    let &(_, path, dirfd) = CALLS.iter().find(|(n, _, _)| *n == nr)?;
    let dirfd = match dirfd {
        None => None,
        // The kernel prints the register: the low 32 bits are the int.
        Some(i) => Some(*args.get(i)? as u32 as i32).filter(|&fd| fd != AT_FDCWD),
    };
    Some(PathArg { addr: *args.get(path)?, dirfd })
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
