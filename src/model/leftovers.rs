//! What a killed automount daemon leaves behind that can stop its successor from starting,
//! by name and content (autofs 5.1.8 and 5.1.9, `daemon/flag.c`, `daemon/automount.c`).
//!
//! - Its **flag file**, `FLAGDIR/autofs-running` (`--with-flagdir`; Debian: `/var/run`),
//!   holding its pid and a newline. A daemon starting takes the flag unless the file names a
//!   live process whose executable is its own: then it says "program is already running" and
//!   exits. A SIGKILL leaves the file, and after a restore the pid namespace may give the
//!   killed daemon's pid to its successor (or to the successor's first process, when it
//!   forks): that one then finds itself (or its parent) named, and refuses.
//! - Its **pid file** (`--pid-file`/`-p`), written after the flag is taken, also its pid and a
//!   newline. A successor overwrites it; but left behind it names a pid that someone else may
//!   now have, to whoever reads it (`PIDFile=`, an init script).
//!
//! The directory of the flag is built into the daemon: its executable holds the path.

use crate::pids::CtrPid;

/// The flag's file name.
const FLAG: &[u8] = b"/autofs-running";

/// Where autofs's configure puts the flag when not told (`AF_FLAG_D`), for a daemon whose
/// executable cannot be read.
const FLAG_DIRS: [&[u8]; 3] = [b"/run", b"/var/run", b"/tmp"];

/// The flag files a daemon may use: the paths of its executable's strings that name one, else
/// (`exe` unreadable, or without one) those of configure's directories.
pub fn flag_paths(exe: Option<&[u8]>) -> Vec<Vec<u8>> {
    let mut found: Vec<Vec<u8>> = Vec::new();
    let exe = exe.unwrap_or_default();
    let needle = [FLAG, b"\0"].concat();
    let mut from = 0;
    while let Some(at) = exe[from..].windows(needle.len()).position(|w| w == needle) {
        let end = from + at + FLAG.len();
        // The string it ends: back to the NUL before it.
        let start = exe[..end].iter().rposition(|&b| b == 0).map_or(0, |nul| nul + 1);
        let path = &exe[start..end];
        if path.starts_with(b"/") && path.iter().all(|&b| b.is_ascii_graphic()) && !found.iter().any(|p| p == path) {
            found.push(path.to_vec());
        }
        from = end + 1;
    }
    if found.is_empty() {
        found = FLAG_DIRS.iter().map(|dir| [dir, FLAG].concat()).collect();
    }
    found
}

/// Whether a flag or pid file's content names `pid` (its pid in the daemon's pid namespace),
/// as the daemon writes it: the number and a newline.
pub fn names(content: &[u8], pid: CtrPid) -> bool {
    content == format!("{pid}\n").as_bytes()
}

/// What an option of the daemon takes after it.
#[derive(Clone, Copy, PartialEq)]
enum Takes {
    Nothing,
    Value,
    /// Only glued to it (`-d3`, `--debug=3`), as getopt's `::`.
    Glued,
}

/// The daemon's long options (`long_options` in `daemon/automount.c`).
const LONG: [(&str, Takes); 19] = [
    ("help", Takes::Nothing),
    ("pid-file", Takes::Value),
    ("timeout", Takes::Value),
    ("verbose", Takes::Nothing),
    ("debug", Takes::Glued),
    ("define", Takes::Value),
    ("systemd-service", Takes::Nothing),
    ("foreground", Takes::Nothing),
    ("random-multimount-selection", Takes::Nothing),
    ("negative-timeout", Takes::Value),
    ("positive-timeout", Takes::Value),
    ("dumpmaps", Takes::Nothing),
    ("global-options", Takes::Value),
    ("version", Takes::Nothing),
    ("set-log-priority", Takes::Value),
    ("dont-check-daemon", Takes::Nothing),
    ("force", Takes::Nothing),
    ("force-exit", Takes::Nothing),
    ("master-wait", Takes::Value),
];

/// What a short option takes (the daemon's `"+hp:t:vmd::D:SfVrO:l:n:P:CFUM:"`).
fn short(c: u8) -> Takes {
    match c {
        b'p' | b't' | b'D' | b'O' | b'l' | b'n' | b'P' | b'M' => Takes::Value,
        b'd' => Takes::Glued,
        _ => Takes::Nothing,
    }
}

/// A long option by its name or a prefix of it that names only one, as getopt_long finds it.
fn long(name: &[u8]) -> Option<(&'static str, Takes)> {
    if let Some(exact) = LONG.iter().find(|(n, _)| n.as_bytes() == name) {
        return Some(*exact);
    }
    let mut prefixed = LONG.iter().filter(|(n, _)| n.as_bytes().starts_with(name));
    match (prefixed.next(), prefixed.next()) {
        (Some(one), None) if !name.is_empty() => Some(*one),
        _ => None,
    }
}

/// The pid file the daemon's command line names (`--pid-file`, `-p`, the last one as getopt
/// leaves it), absolute: the daemon writes it after `chdir("/")`. Options end at the first
/// word that is not one (`+`) or at `--`.
pub fn pid_file(argv: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut found: Option<&[u8]> = None;
    let mut words = argv.iter().skip(1).map(Vec::as_slice);
    while let Some(word) = words.next() {
        if word == b"--" || !word.starts_with(b"-") || word == b"-" {
            break;
        }
        if let Some(option) = word.strip_prefix(b"--") {
            let (name, glued) = match option.iter().position(|&b| b == b'=') {
                Some(eq) => (&option[..eq], Some(&option[eq + 1..])),
                None => (option, None),
            };
            let Some((full, takes)) = long(name) else { continue };
            let value = match (takes, glued) {
                (Takes::Value, None) => words.next(),
                (Takes::Nothing, _) => None,
                (_, glued) => glued,
            };
            if full == "pid-file" {
                found = value.or(found);
            }
            continue;
        }
        for (i, &c) in word.iter().enumerate().skip(1) {
            match short(c) {
                Takes::Nothing => continue,
                Takes::Glued => {}
                Takes::Value => {
                    let value = if i + 1 < word.len() { Some(&word[i + 1..]) } else { words.next() };
                    if c == b'p' {
                        found = value.or(found);
                    }
                }
            }
            break;
        }
    }
    let path = found.filter(|p| !p.is_empty())?;
    Some(if path.starts_with(b"/") { path.to_vec() } else { [b"/", path].concat() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn the_flag_is_where_the_executable_says() {
        let exe = b"\x7fELF\0\0junk\0/var/run/autofs-running\0%s.%d\0/var/run/autofs-running\0more";
        assert_eq!(flag_paths(Some(exe)), [b"/var/run/autofs-running".to_vec()]);
        let exe = b"x\0/run/autofs-running\0";
        assert_eq!(flag_paths(Some(exe)), [b"/run/autofs-running".to_vec()]);
        // Part of another string, or not a path: not the flag.
        let others = flag_paths(Some(b"\0no/autofs-running\0\0/x/autofs-running.lock\0"));
        assert_eq!(others, [&b"/run/autofs-running"[..], b"/var/run/autofs-running", b"/tmp/autofs-running"]);
        assert_eq!(flag_paths(None), others, "unreadable: configure's directories");
    }

    #[test]
    fn a_file_names_a_pid_as_the_daemon_writes_it() {
        assert!(names(b"42\n", CtrPid(42)));
        assert!(!names(b"42", CtrPid(42)), "unfinished: the daemon takes it for stale itself");
        assert!(!names(b"420\n", CtrPid(42)));
        assert!(!names(b"4\n", CtrPid(42)));
        assert!(!names(b"", CtrPid(42)));
    }

    #[test]
    fn the_pid_file_from_the_command_line() {
        let p = |words: &[&str]| pid_file(&argv(words)).map(|p| String::from_utf8(p).unwrap());
        // Debian's autofs.service and init script.
        assert_eq!(
            p(&["/usr/sbin/automount", "--pid-file", "/var/run/autofs.pid"]).as_deref(),
            Some("/var/run/autofs.pid")
        );
        assert_eq!(p(&["automount", "--pid-file=/run/a.pid"]).as_deref(), Some("/run/a.pid"));
        assert_eq!(p(&["automount", "--pi", "/run/a.pid"]).as_deref(), Some("/run/a.pid"), "a prefix");
        assert_eq!(p(&["automount", "--p", "/run/a.pid"]), None, "ambiguous: positive-timeout too");
        assert_eq!(p(&["automount", "-p", "/run/a.pid"]).as_deref(), Some("/run/a.pid"));
        assert_eq!(p(&["automount", "-p/run/a.pid"]).as_deref(), Some("/run/a.pid"));
        assert_eq!(p(&["automount", "-vfp", "/run/a.pid"]).as_deref(), Some("/run/a.pid"), "in a cluster");
        assert_eq!(p(&["automount", "-fp/run/a.pid"]).as_deref(), Some("/run/a.pid"));
        assert_eq!(p(&["automount", "-p", "a.pid"]).as_deref(), Some("/a.pid"), "relative to /, where it writes");
        assert_eq!(p(&["automount", "-p", "/1", "--pid-file", "/2"]).as_deref(), Some("/2"), "the last one");
        // The values of other options are not options.
        assert_eq!(p(&["automount", "-t", "-p", "x"]), None);
        assert_eq!(p(&["automount", "-tp", "-p", "/x"]).as_deref(), Some("/x"), "-t took p");
        assert_eq!(p(&["automount", "--timeout", "-p"]), None);
        assert_eq!(p(&["automount", "-dp", "/x"]), None, "-d takes only what is glued to it: p");
        assert_eq!(p(&["automount", "--debug", "-p", "/x"]).as_deref(), Some("/x"));
        // Options end at the first other word, or at --.
        assert_eq!(p(&["automount", "/etc/auto.master", "-p", "/x"]), None);
        assert_eq!(p(&["automount", "--", "-p", "/x"]), None);
        assert_eq!(p(&["automount", "-f"]), None);
        assert_eq!(p(&["automount", "-p"]), None, "no value");
        assert_eq!(p(&[]), None);
    }
}
