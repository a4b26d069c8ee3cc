//! The texts of /proc/PID, parsed (proc(5)). Pure: bytes in, values out. They are read on the
//! host, so pids are host pids and cgroup paths start at the host's cgroup root.

/// Field `n` (from 1, as proc(5) counts, n ≥ 3) of /proc/PID/stat, read after the command
/// name, which may hold spaces and parentheses.
fn stat_field<T: std::str::FromStr>(stat: &[u8], n: usize) -> Option<T> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_ascii_whitespace().nth(n - 3)?.parse().ok()
}

/// The pid that holds a flock(2) on the file of device `major:minor` and inode `ino`, from
/// /proc/locks (`1: FLOCK  ADVISORY  WRITE 812 fd:01:1234 0 EOF`, device numbers in hex; a
/// waiter's line has `->` after its number).
pub fn flock_holder(locks: &[u8], major: u32, minor: u32, ino: u64) -> Option<u32> {
    let text = std::str::from_utf8(locks).ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_ascii_whitespace().skip(1);
        if words.next()? != "FLOCK" {
            return None;
        }
        let pid = words.nth(2)?.parse().ok()?;
        let mut file = words.next()?.split(':');
        let (maj, min) = (u32::from_str_radix(file.next()?, 16).ok()?, u32::from_str_radix(file.next()?, 16).ok()?);
        let i: u64 = file.next()?.parse().ok()?;
        (maj == major && min == minor && i == ino).then_some(pid)
    })
}

/// The parent pid, field (4) of /proc/PID/stat.
pub fn parent_of(stat: &[u8]) -> Option<u32> {
    stat_field(stat, 4)
}

/// The process group, field (5) of /proc/PID/stat.
pub fn pgrp_of(stat: &[u8]) -> Option<u32> {
    stat_field(stat, 5)
}

/// The start time, field (22) of /proc/PID/stat, in clock ticks since boot.
pub fn start_time_of(stat: &[u8]) -> Option<u64> {
    stat_field(stat, 22)
}

/// The value after `key` on its line of /proc/PID/status.
fn status_line<'a>(status: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    status.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(key))
}

/// The real id of the `Uid:` or `Gid:` line of /proc/PID/status.
pub fn real_id(status: &[u8], key: &[u8]) -> Option<u32> {
    std::str::from_utf8(status_line(status, key)?).ok()?.split_ascii_whitespace().next()?.parse().ok()
}

/// The `NSpid:` line of /proc/PID/status: the pid in each pid namespace, outermost first.
pub fn nspid(status: &[u8]) -> Vec<u32> {
    status_line(status, b"NSpid:")
        .map(|rest| {
            rest.split(|&b| b == b'\t' || b == b' ')
                .filter(|f| !f.is_empty())
                .map_while(|f| std::str::from_utf8(f).ok()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The `CapBnd:` line of /proc/PID/status.
pub fn cap_bounding(status: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(status_line(status, b"CapBnd:")?).ok()?.trim(), 16).ok()
}

/// The lines of /proc/PID/cgroup: (controllers, path). cgroup2's line has no controllers
/// (`0::/path`); a v1 hierarchy names them (`4:cpu,cpuacct:/path`, `1:name=systemd:/path`).
pub fn cgroups(text: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    text.split(|&b| b == b'\n').filter_map(|line| {
        let mut parts = line.splitn(3, |&b| b == b':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        Some((controllers, path))
    })
}

/// The cgroup2 path of a process, from its /proc/PID/cgroup.
pub fn cgroup2_path(text: &[u8]) -> Option<&[u8]> {
    cgroups(text).find_map(|(controllers, path)| controllers.is_empty().then_some(path))
}

/// The systemd service whose cgroup holds a process, from its /proc/PID/cgroup: the unified
/// line or, on a legacy hierarchy, systemd's own (`N:name=systemd:PATH`).
pub fn service_of(text: &[u8]) -> Option<String> {
    cgroups(text).find_map(|(controllers, path)| {
        if !controllers.is_empty() && controllers != b"name=systemd" {
            return None;
        }
        let name = std::str::from_utf8(path.rsplit(|&b| b == b'/').next()?).ok()?;
        name.ends_with(".service").then(|| name.to_string())
    })
}

/// Whether a /proc/PID/wchan says the process waits in the kernel's autofs code: for a
/// mount's master, or for good on a stale mount.
pub fn in_autofs_wait(wchan: &[u8]) -> bool {
    wchan == b"autofs_wait"
}

/// An executable as /proc/PID/exe shows it, without the ` (deleted)` an upgrade leaves: the
/// path where the program is now.
pub fn exe_path(exe: &[u8]) -> &[u8] {
    exe.strip_suffix(b" (deleted)").unwrap_or(exe)
}

/// Whether a container's init is systemd, by what it is rather than where it lives (NixOS,
/// other prefixes, a copy): systemd names itself `systemd` (its `comm`) however it was started,
/// and a system booted with it has `/run/systemd/system` (`booted`, sd_booted(3)'s test).
pub fn is_systemd(comm: &[u8], booted: bool) -> bool {
    comm == b"systemd" && booted
}

/// Whether `exe` (a /proc/PID/exe link) is the autofs package's daemon.
pub fn is_automount_exe(exe: &[u8]) -> bool {
    exe_path(exe).rsplit(|&b| b == b'/').next() == Some(b"automount")
}

/// Whether the automount daemon of command line `argv` stays in the foreground (`-f`,
/// `--foreground`, or `f` among short options that take no value): started so, it never
/// returns, as a daemonising start does.
pub fn stays_in_foreground(argv: &[Vec<u8>]) -> bool {
    // automount's short options that take no value (its getopt string, autofs 5.1).
    const FLAGS: &[u8] = b"hvmdSfVrCFU";
    argv.iter().skip(1).take_while(|a| a.as_slice() != b"--").any(|a| match a.strip_prefix(b"-") {
        Some(b"-foreground") => true,
        Some(short) if !short.starts_with(b"-") => {
            let flags: Vec<u8> = short.iter().copied().take_while(|c| FLAGS.contains(c)).collect();
            flags.contains(&b'f')
        }
        _ => false,
    })
}

/// A host id (uid or gid) as the user namespace of `map` (its uid_map or gid_map, read on the
/// host) sees it; None if it is not mapped there.
pub fn id_inside(id: u32, map: &[u8]) -> Option<u32> {
    map.split(|&b| b == b'\n').find_map(|line| {
        let f: Vec<u64> =
            std::str::from_utf8(line).ok()?.split_whitespace().map(|n| n.parse().ok()).collect::<Option<_>>()?;
        let [inner, outer, count] = f[..] else { return None };
        let id = u64::from(id);
        (outer <= id && id < outer + count).then(|| u32::try_from(inner + (id - outer)).ok()).flatten()
    })
}

/// A list of NUL-terminated strings (/proc/PID/cmdline, environ), empty ones left out.
pub fn nul_list(text: &[u8]) -> Vec<Vec<u8>> {
    text.split(|&c| c == 0).filter(|a| !a.is_empty()).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreground_daemons() {
        let argv = |a: &[&str]| a.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert!(stays_in_foreground(&argv(&["automount", "-f", "-d", "/etc/auto.master"])));
        assert!(stays_in_foreground(&argv(&["/usr/sbin/automount", "--foreground"])));
        assert!(stays_in_foreground(&argv(&["automount", "-df", "-t", "0"])));
        assert!(!stays_in_foreground(&argv(&["automount", "-d", "-t", "0", "/etc/auto.master"])));
        assert!(!stays_in_foreground(&argv(&["automount", "--pid-file", "/run/autofs.pid"])));
        assert!(!stays_in_foreground(&argv(&["automount", "-tf"])), "-t takes f as its value");
        assert!(!stays_in_foreground(&argv(&["automount", "--", "-f"])));
        assert!(!stays_in_foreground(&argv(&["-f"])), "argv[0] is no option");
    }

    #[test]
    fn stat_fields() {
        assert_eq!(parent_of(b"98 (automount) S 1 98 98 0 -1 4194624 ..."), Some(1));
        assert_eq!(parent_of(b"7 (a) b (c) R 42 7 7"), Some(42));
        assert_eq!(parent_of(b"garbage"), None);
        let stat =
            b"1 (systemd) S 0 1 1 0 -1 4194560 38201 2226441 110 1446 156 96 7390 2317 20 0 1 0 3175 22962176 2830";
        assert_eq!(start_time_of(stat), Some(3175));
        assert_eq!(start_time_of(b"1 (systemd) S 0 1"), None);
        assert_eq!(pgrp_of(b"96 (automount) S 94 94 94 0 -1"), Some(94));
        assert_eq!(pgrp_of(b"96 (a b) c) S 94 95 94 0 -1"), Some(95));
    }

    #[test]
    fn status_lines() {
        let status = b"Name:\tautomount\nUid:\t0\t0\t0\t0\nGid:\t27\t28\t27\t27\n";
        assert_eq!(real_id(status, b"Uid:"), Some(0));
        assert_eq!(real_id(status, b"Gid:"), Some(27));
        assert_eq!(real_id(b"Name:\tx\n", b"Uid:"), None);
        assert_eq!(nspid(b"Name:\tsleep\nNSpid:\t10483\t278\nNSpgid:\t1\n"), [10483, 278]);
        assert_eq!(nspid(b"NSpid:\t1\n"), [1]);
        assert!(nspid(b"Name:\tx\n").is_empty());
        let status = b"Name:\tsystemd\nCapInh:\t0000000000000000\nCapBnd:\t000001fffffcffff\nCapAmb:\t0\n";
        assert_eq!(cap_bounding(status), Some(0x1fffffcffff));
        assert_eq!(cap_bounding(b"Name:\tx\n"), None);
        assert_eq!(cap_bounding(b"CapBnd:\tzz\n"), None);
    }

    #[test]
    fn services_from_cgroup_files() {
        assert_eq!(service_of(b"0::/system.slice/autofs.service\n").as_deref(), Some("autofs.service"));
        assert_eq!(
            service_of(b"0::/autofs-restart-test.x/system.slice/autofs.service\n").as_deref(),
            Some("autofs.service")
        );
        let hybrid = b"9:name=systemd:/system.slice/autofs.service\n8:pids:/\n0::/\n";
        assert_eq!(service_of(hybrid).as_deref(), Some("autofs.service"));
        assert_eq!(cgroup2_path(hybrid), Some(&b"/"[..]));
        assert_eq!(service_of(b"0::/init.scope\n"), None);
        assert_eq!(service_of(b"0::/user.slice/user-0.slice/session-1.scope\n"), None);
        assert_eq!(service_of(b""), None);
        assert_eq!(cgroup2_path(b"4:cpu:/a\n"), None);
    }

    #[test]
    fn executables() {
        assert!(is_systemd(b"systemd", true));
        assert!(!is_systemd(b"systemd", false), "not booted with systemd: a systemd run as a program");
        assert!(!is_systemd(b"init", true));
        assert!(!is_systemd(b"systemd-journal", true));
        assert!(is_automount_exe(b"/usr/sbin/automount"));
        assert!(is_automount_exe(b"/usr/sbin/automount (deleted)"));
        assert!(!is_automount_exe(b"/usr/lib/systemd/systemd"));
        assert!(!is_automount_exe(b"/usr/sbin/automountd"));
    }

    #[test]
    fn ids_through_a_user_namespace_map() {
        let map = b"         0     100000      65536\n     65536       5000          1\n";
        assert_eq!(id_inside(100000, map), Some(0));
        assert_eq!(id_inside(100033, map), Some(33));
        assert_eq!(id_inside(5000, map), Some(65536));
        assert_eq!(id_inside(0, map), None);
        assert_eq!(id_inside(165536, map), None);
        assert_eq!(id_inside(7, b"0 0 4294967295\n"), Some(7));
    }

    #[test]
    fn nul_lists() {
        assert_eq!(nul_list(b"automount\x00-t\x00600\x00"), [b"automount".to_vec(), b"-t".to_vec(), b"600".to_vec()]);
        assert!(nul_list(b"").is_empty());
    }

    #[test]
    fn the_holder_of_a_flock() {
        let locks = b"1: POSIX  ADVISORY  WRITE 700 00:2a:99 0 EOF\n\
                      2: FLOCK  ADVISORY  WRITE 812 fd:01:1234 0 EOF\n\
                      2: -> FLOCK  ADVISORY  WRITE 913 fd:01:1234 0 EOF\n\
                      3: FLOCK  ADVISORY  READ 77 103:05:1234 0 EOF\n";
        assert_eq!(flock_holder(locks, 0xfd, 1, 1234), Some(812), "the holder, not the waiter");
        assert_eq!(flock_holder(locks, 0x103, 5, 1234), Some(77));
        assert_eq!(flock_holder(locks, 0, 0x2a, 99), None, "a POSIX lock is not ours");
        assert_eq!(flock_holder(locks, 0xfd, 1, 12345), None);
        assert_eq!(flock_holder(b"garbage\n\xff", 0xfd, 1, 1234), None);
    }
}
