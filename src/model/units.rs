//! systemd automount units: their names, which systemd derives from their mount points.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};

/// The name systemd gives the automount unit at `path`, as `systemd-escape --path --suffix
/// automount` writes it: systemd refuses an automount unit whose name does not match its
/// `Where=`, so the autofs mounts that systemd serves name their units.
pub fn unit_for_path(path: &[u8]) -> String {
    let mut name = String::with_capacity(path.len() + 10);
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|p| !p.is_empty() && *p != b".").collect();
    if parts.is_empty() {
        name.push('-');
    }
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            name.push('-');
        }
        for (j, &b) in part.iter().enumerate() {
            let plain = b.is_ascii_alphanumeric() || b == b':' || b == b'_' || (b == b'.' && (i, j) != (0, 0));
            if plain {
                name.push(char::from(b));
            } else {
                name.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    name.push_str(".automount");
    name
}

/// A unit named by a person: `srv-data.automount`, `srv-data`, or the path `/srv/data`.
pub fn unit_from_arg(arg: &OsStr) -> Result<String> {
    let bytes = arg.as_bytes();
    if bytes.starts_with(b"/") {
        return Ok(unit_for_path(bytes));
    }
    let name = std::str::from_utf8(bytes)
        .ok()
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| Error::Usage(format!("'{}' is not a unit name", arg.to_string_lossy())))?;
    match name.rsplit_once('.') {
        Some((_, "automount")) => Ok(name.to_string()),
        Some((_, "mount" | "service" | "socket" | "target" | "timer" | "path")) => {
            Err(Error::Usage(format!("'{name}' is not an automount unit")))
        }
        _ => Ok(format!("{name}.automount")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_systemd_escape() {
        // Each right-hand side is what `systemd-escape --path` printed on systemd 252.
        for (path, unit) in [
            (&b"/srv/data"[..], "srv-data"),
            (b"/proc/sys/fs/binfmt_misc", "proc-sys-fs-binfmt_misc"),
            (b"/a b/c", "a\\x20b-c"),
            (b"/x-y/.z", "x\\x2dy-.z"),
            (b"/.hidden/a", "\\x2ehidden-a"),
            (b"/", "-"),
            (b"//a//b/", "a-b"),
            (b"/\xc3\xbc", "\\xc3\\xbc"),
            (b"/a\\b", "a\\x5cb"),
        ] {
            assert_eq!(unit_for_path(path), format!("{unit}.automount"), "{}", String::from_utf8_lossy(path));
        }
    }

    #[test]
    fn unit_arguments() {
        let arg = |s: &str| unit_from_arg(OsStr::new(s));
        assert_eq!(arg("srv-data.automount").unwrap(), "srv-data.automount");
        assert_eq!(arg("srv-data").unwrap(), "srv-data.automount");
        assert_eq!(arg("/srv/data").unwrap(), "srv-data.automount");
        assert!(arg("srv-data.mount").is_err());
        assert!(arg("").is_err());
        assert!(arg("a b").is_err());
    }
}
