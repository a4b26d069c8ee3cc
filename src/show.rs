//! How values from the system appear in messages and tables: paths on one line, seconds
//! without floating point, a process of the container.

use std::fmt;
use std::time::Duration;

use crate::pids::CtrPid;

/// Shows bytes from the system (paths, values) on one line: control characters, backslashes
/// and invalid UTF-8 are written as octal escapes, as in mountinfo.
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() || c == '\\' {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        write!(f, "\\{b:03o}")?;
                    }
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\{b:03o}")?;
            }
        }
        Ok(())
    }
}

/// A duration in seconds, for messages: "30", "2.5".
pub fn seconds(d: Duration) -> String {
    // In u64: u128's formatting would be a kilobyte of code for durations no setting reaches.
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match ms % 1000 {
        0 => format!("{}", ms / 1000),
        f => format!("{}.{}", ms / 1000, format!("{f:03}").trim_end_matches('0')),
    }
}

/// A process of the container, for messages: "pid 10483 (278 in the container, sleep)".
pub fn who(pid: u32, ctr_pid: Option<CtrPid>, comm: &[u8]) -> String {
    let inner = ctr_pid.map_or_else(String::new, |p| format!("{p} in the container, "));
    format!("pid {pid} ({inner}{})", Shown(comm))
}

/// The same for a table column: "pid 10483 = 278 inside (sleep)".
pub fn who_short(pid: u32, ctr_pid: Option<CtrPid>, comm: &[u8]) -> String {
    let inner = ctr_pid.map_or_else(String::new, |p| format!(" = {p} inside"));
    format!("pid {pid}{inner} ({})", Shown(comm))
}

/// The last lines (at most three) a program wrote, trimmed, the empty ones left out: what
/// a message quotes of it.
pub fn last_lines(text: &[u8]) -> Vec<Vec<u8>> {
    const LAST: usize = 3;
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').map(<[u8]>::trim_ascii).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(LAST)..].iter().map(|l| l.to_vec()).collect()
}

/// A path in a table column: spaces would break the columns, so they are escaped as
/// mountinfo does.
pub fn column(path: &[u8]) -> String {
    Shown(path).to_string().replace(' ', "\\040")
}

/// A JSON string of `bytes`: UTF-8 as it is (a byte that is not, as U+FFFD), quotes,
/// backslashes and control characters escaped.
pub fn json_string(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_what_would_break_a_log_line() {
        assert_eq!(Shown(b"/srv/a b").to_string(), "/srv/a b");
        assert_eq!(Shown(b"/srv/a\nb\t\\").to_string(), "/srv/a\\012b\\011\\134");
        assert_eq!(Shown(b"/\xff\xc3\xbc").to_string(), "/\\377\u{fc}");
        assert_eq!(column(b"/srv/a b"), "/srv/a\\040b");
    }

    #[test]
    fn seconds_print_without_floating_point() {
        assert_eq!(seconds(Duration::from_secs(30)), "30");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5");
        assert_eq!(seconds(Duration::from_millis(50)), "0.05");
        assert_eq!(seconds(Duration::from_millis(1001)), "1.001");
    }

    #[test]
    fn processes() {
        assert_eq!(who(10483, Some(CtrPid(278)), b"sleep"), "pid 10483 (278 in the container, sleep)");
        assert_eq!(who(10483, None, b"sleep"), "pid 10483 (sleep)");
        assert_eq!(who_short(10483, Some(CtrPid(278)), b"sleep"), "pid 10483 = 278 inside (sleep)");
    }

    #[test]
    fn a_programs_last_lines() {
        let text = b"first\n\n  second  \nthird\n\nfourth\n";
        assert_eq!(last_lines(text), [&b"second"[..], b"third", b"fourth"]);
        assert_eq!(last_lines(b"one"), [b"one"]);
        assert!(last_lines(b"\n \n").is_empty());
    }
}
