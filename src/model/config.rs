//! The settings file (`/etc/autofs-restart.conf`, or `AUTOFS_RESTART_CONFIG`): for hosts where
//! a container runtime starts CRIU, and so us, with an environment nobody chooses. Lines of
//! `KEY=value` with the environment's names; blank lines and `#` comments; a value may be
//! quoted with one pair of `"` or `'` (as in a shell's assignment, without expansions). Pure:
//! bytes in, entries out; a line that is not one of these is an error naming it.

/// The names a file may set: the environment's, less CRIU's own and the file's name.
pub const KEYS: [&str; 8] = [
    "AUTOFS_RESTART_UNITS",
    "AUTOFS_RESTART_TIMEOUT",
    "AUTOFS_RESTART_PROBE",
    "AUTOFS_RESTART_VERBOSE",
    "AUTOFS_RESTART_NESTED",
    "AUTOFS_RESTART_BLOCKED",
    "AUTOFS_RESTART_KERNEL_API",
    "AUTOFS_RESTART_SYSLOG",
];

/// One setting of the file, with its line (from 1) for errors.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub key: &'static str,
    pub value: Vec<u8>,
}

/// The entries of `text`, or the first line that is not one and why. A key set twice is an
/// error too: which one was meant cannot be told.
pub fn parse(text: &[u8]) -> Result<Vec<Entry>, (usize, String)> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with(b"#") {
            continue;
        }
        let shown = String::from_utf8_lossy(trimmed);
        let Some(eq) = trimmed.iter().position(|&b| b == b'=') else {
            return Err((line, format!("not KEY=value: {shown}")));
        };
        let name = trimmed[..eq].trim_ascii();
        let Some(&key) = KEYS.iter().find(|k| k.as_bytes() == name) else {
            let name = String::from_utf8_lossy(name);
            return Err((line, format!("{name} is not a setting (one of {})", KEYS.join(", "))));
        };
        if let Some(first) = entries.iter().find(|e| e.key == key) {
            return Err((line, format!("{key} again (first on line {})", first.line)));
        }
        let value = unquote(trimmed[eq + 1..].trim_ascii())
            .ok_or_else(|| (line, format!("{key}: an unmatched quote: {shown}")))?;
        entries.push(Entry { line, key, value: value.to_vec() });
    }
    Ok(entries)
}

/// `value` without one pair of matching quotes around it; None where a quote opens or closes
/// alone.
fn unquote(value: &[u8]) -> Option<&[u8]> {
    match value {
        [q @ (b'"' | b'\''), inner @ .., last] if last == q && !inner.contains(q) => Some(inner),
        [b'"' | b'\'', ..] | [.., b'"' | b'\''] => None,
        _ => Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_comments_and_quotes() {
        let text = b"# for runc\n\nAUTOFS_RESTART_NESTED=fail\n  AUTOFS_RESTART_UNITS = \"a b\"  \nAUTOFS_RESTART_TIMEOUT='2.5'\nAUTOFS_RESTART_PROBE=\n";
        let entries = parse(text).unwrap();
        let got: Vec<(usize, &str, &[u8])> = entries.iter().map(|e| (e.line, e.key, &e.value[..])).collect();
        assert_eq!(
            got,
            [
                (3, "AUTOFS_RESTART_NESTED", &b"fail"[..]),
                (4, "AUTOFS_RESTART_UNITS", b"a b"),
                (5, "AUTOFS_RESTART_TIMEOUT", b"2.5"),
                (6, "AUTOFS_RESTART_PROBE", b""),
            ]
        );
        assert_eq!(parse(b"").unwrap(), []);
        assert_eq!(parse(b"# only\n").unwrap(), []);
    }

    #[test]
    fn every_bad_line_is_named() {
        for (text, line, said) in [
            (&b"AUTOFS_RESTART_NESTED fail"[..], 1, "not KEY=value: AUTOFS_RESTART_NESTED fail"),
            (b"\nNESTED=fail", 2, "NESTED is not a setting (one of AUTOFS_RESTART_UNITS, "),
            (b"CRTOOLS_INIT_PID=1", 1, "CRTOOLS_INIT_PID is not a setting"),
            (b"AUTOFS_RESTART_NESTED=\"fail", 1, "AUTOFS_RESTART_NESTED: an unmatched quote"),
            (b"AUTOFS_RESTART_NESTED='fail\"", 1, "AUTOFS_RESTART_NESTED: an unmatched quote"),
            (
                b"AUTOFS_RESTART_NESTED=fail\nAUTOFS_RESTART_NESTED=skip",
                2,
                "AUTOFS_RESTART_NESTED again (first on line 1)",
            ),
        ] {
            let (n, e) = parse(text).unwrap_err();
            assert!(n == line && e.starts_with(said), "{n}: {e}");
        }
    }
}
