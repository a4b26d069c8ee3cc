//! A parser for `/proc/PID/mountinfo` (proc(5)). Pure: bytes in, mounts out. Paths stay bytes.
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2) (3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
//! ```
//! (1) mount id, (2) parent id, (3) major:minor, (4) root, (5) mount point, (6) mount options,
//! (7) zero or more optional fields, (8) the separator `-`, (9) file system type,
//! (10) source, (11) super block options.

use std::borrow::Cow;
use std::fmt;

/// One line of mountinfo. Borrowed from the text; escaped fields are decoded on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount<'a> {
    /// (1)
    pub id: u32,
    /// (2)
    pub parent: u32,
    /// (3) the superblock's device number.
    pub dev: Dev,
    /// (4) the directory of the file system that is mounted here, as written (`root()`).
    raw_root: &'a [u8],
    /// (5) relative to the root of the process whose mountinfo this is.
    pub mount_point: Cow<'a, [u8]>,
    /// (6)
    pub options: &'a [u8],
    /// (7)
    pub propagation: Propagation,
    /// (9)
    pub fs_type: Cow<'a, [u8]>,
    /// (10), as written (`source()`).
    raw_source: &'a [u8],
    /// (11), as written (`super_options()`).
    raw_super_options: &'a [u8],
}

/// Fields that few mounts are asked for are decoded when asked: most of a large table is
/// never looked at that closely.
impl<'a> Mount<'a> {
    /// (4)
    pub fn root(&self) -> Cow<'a, [u8]> {
        unescape(self.raw_root)
    }

    /// (10)
    pub fn source(&self) -> Cow<'a, [u8]> {
        unescape(self.raw_source)
    }

    /// (11)
    pub fn super_options(&self) -> Cow<'a, [u8]> {
        unescape(self.raw_super_options)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dev {
    pub major: u32,
    pub minor: u32,
}

impl Dev {
    /// The device of a `stat`'s `st_dev`, split as the kernel encodes it for user space.
    pub fn of_stat(st_dev: u64) -> Dev {
        Dev { major: rustix::fs::major(st_dev), minor: rustix::fs::minor(st_dev) }
    }

    /// `MAJOR:MINOR`, as mountinfo's field 3 and pre-resume's work write it.
    pub fn parse(text: &[u8]) -> Option<Dev> {
        let c = find(text, b':')?;
        Some(Dev { major: number(&text[..c])?, minor: number(&text[c + 1..])? })
    }
}

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// The optional fields (7): peer groups and propagation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Propagation {
    /// `shared:N`: a peer of group N.
    pub shared: Option<u32>,
    /// `master:N`: a slave of group N.
    pub master: Option<u32>,
    /// `propagate_from:N`: receives from group N (the nearest dominant one visible).
    pub propagate_from: Option<u32>,
    /// `unbindable`.
    pub unbindable: bool,
}

/// A line that is not mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub why: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

/// Parses a whole mountinfo text. Fails on the first line that is not mountinfo.
pub fn parse(text: &[u8]) -> Result<Vec<Mount<'_>>, ParseError> {
    // Lines run about 70 bytes: one allocation for most tables.
    let mut mounts = Vec::with_capacity(text.len() / 64 + 1);
    let mut rest = text;
    let mut i = 0;
    while !rest.is_empty() {
        let (end, escaped) = line_end(rest);
        let line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        i += 1;
        if !line.is_empty() {
            mounts.push(parse_fields(line, escaped).map_err(|why| ParseError { line: i, why })?);
        }
    }
    Ok(mounts)
}

/// Where the first line of `text` ends, and whether it has a backslash (an escape): both
/// found in one pass, eight bytes at a time.
#[inline(always)]
fn line_end(text: &[u8]) -> (usize, bool) {
    let mut at = 0;
    let mut escaped = false;
    while let Some(chunk) = text.get(at..at + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else { break };
        let word = u64::from_le_bytes(word);
        let ends = matches(word, b'\n');
        if ends != 0 {
            let end = at + ends.trailing_zeros() as usize / 8;
            // Backslashes past the newline belong to the next line.
            let before = (ends & ends.wrapping_neg()) - 1;
            return (end, escaped || matches(word, b'\\') & before != 0);
        }
        escaped |= matches(word, b'\\') != 0;
        at += 8;
    }
    let tail = &text[at..];
    let end = tail.iter().position(|&c| c == b'\n').map_or(text.len(), |p| at + p);
    (end, escaped || text[at..end].contains(&b'\\'))
}

/// The high bit of every byte of `word` that is `b`, and of no other (no carry crosses a
/// byte).
#[inline(always)]
fn matches(word: u64, b: u8) -> u64 {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ u64::from_le_bytes([b; 8]);
    !((x & LOW).wrapping_add(LOW) | x | LOW)
}

/// The fields of a line, split at single spaces.
struct Fields<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    // Inlined by hand: the size-optimised build inlines nothing this small on its own, and
    // this runs for every field of every line.
    #[inline(always)]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match find(rest, b' ') {
            Some(at) => {
                self.rest = Some(&rest[at + 1..]);
                Some(&rest[..at])
            }
            None => self.rest.take(),
        }
    }
}

/// Whether `mark` is in `text`, found without parsing it: for a quick look at a whole table.
pub fn contains(text: &[u8], mark: &[u8]) -> bool {
    let Some((&first, rest)) = mark.split_first() else { return true };
    let mut at = 0;
    while let Some(i) = find(&text[at..], first) {
        at += i + 1;
        if text[at..].starts_with(rest) {
            return true;
        }
    }
    false
}

/// Where byte `b` first is in `hay`. Eight bytes at a time: every line and every field of
/// the table is scanned this way.
#[inline(always)]
fn find(hay: &[u8], b: u8) -> Option<usize> {
    let mut at = 0;
    while let Some(chunk) = hay.get(at..at + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else { break };
        let found = matches(u64::from_le_bytes(word), b);
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    hay[at..].iter().position(|&c| c == b).map(|p| at + p)
}

/// Parses one line (without its newline), for the tests: `parse` finds the escapes of a line
/// while it looks for its end.
#[cfg(test)]
pub fn parse_line(line: &[u8]) -> Result<Mount<'_>, &'static str> {
    parse_fields(line, find(line, b'\\').is_some())
}

/// Parses one line, which has a backslash if `escaped`: most lines have no escape at all, and
/// then no field needs a look of its own.
fn parse_fields(line: &[u8], escaped: bool) -> Result<Mount<'_>, &'static str> {
    let decode = |field| if escaped { unescape(field) } else { Cow::Borrowed(field) };
    let mut fields = Fields { rest: Some(line) };
    let mut next = |name: &'static str| fields.next().ok_or(name);

    let id = number(next("no mount id (1)")?).ok_or("mount id (1) is not a number")?;
    let parent = number(next("no parent id (2)")?).ok_or("parent id (2) is not a number")?;
    let dev = next("no major:minor (3)")?;
    let dev = Dev::parse(dev).ok_or("major:minor (3) is not two numbers")?;
    let raw_root = non_empty(next("no root (4)")?, "root (4) is empty")?;
    let mount_point = decode(non_empty(next("no mount point (5)")?, "mount point (5) is empty")?);
    let options = next("no mount options (6)")?;

    let mut propagation = Propagation::default();
    loop {
        let field = next("no separator (8) after the optional fields (7)")?;
        if field == b"-" {
            break;
        }
        // Unknown optional fields are skipped: proc(5) allows new ones.
        if let Some(n) = field.strip_prefix(b"shared:") {
            propagation.shared = Some(number(n).ok_or("shared:N (7) is not a number")?);
        } else if let Some(n) = field.strip_prefix(b"master:") {
            propagation.master = Some(number(n).ok_or("master:N (7) is not a number")?);
        } else if let Some(n) = field.strip_prefix(b"propagate_from:") {
            propagation.propagate_from = Some(number(n).ok_or("propagate_from:N (7) is not a number")?);
        } else if field == b"unbindable" {
            propagation.unbindable = true;
        }
    }

    let fs_type = decode(non_empty(next("no file system type (9)")?, "file system type (9) is empty")?);
    // The source may legitimately be empty ("none" is only a convention).
    let raw_source = next("no source (10)")?;
    let raw_super_options = next("no super options (11)")?;
    if fields.next().is_some() {
        return Err("more than 11 fields");
    }
    Ok(Mount { id, parent, dev, raw_root, mount_point, options, propagation, fs_type, raw_source, raw_super_options })
}

fn non_empty<'a>(field: &'a [u8], why: &'static str) -> Result<&'a [u8], &'static str> {
    if field.is_empty() { Err(why) } else { Ok(field) }
}

/// A plain unsigned decimal, as the kernel writes it.
#[inline(always)]
fn number(field: &[u8]) -> Option<u32> {
    number64(field)?.try_into().ok()
}

#[inline(always)]
fn number64(field: &[u8]) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    let mut n = 0u64;
    for &d in field {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// Decodes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash): the one place where escapes are undone. A backslash that does not start three
/// octal digits is kept as it is, as util-linux does.
pub fn unescape(field: &[u8]) -> Cow<'_, [u8]> {
    if !field.contains(&b'\\') {
        return Cow::Borrowed(field);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = match field.get(i..i + 4) {
            Some(&[b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7']) => Some((a, b, c)),
            _ => None,
        };
        if let Some((a, b, c)) = octal {
            out.push(((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'));
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

/// Encodes what `unescape` decodes, as the kernel does for mountinfo: space, tab, newline and
/// backslash as three octal digits. For our own journal, which must keep a path on one line.
pub fn escape(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// The kind of an autofs mount, from its super options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutofsKind {
    Direct,
    Indirect,
    Offset,
}

impl AutofsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AutofsKind::Direct => "direct",
            AutofsKind::Indirect => "indirect",
            AutofsKind::Offset => "offset",
        }
    }
}

/// What an autofs mount's super options (11) say about its master.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AutofsOptions {
    /// `fd=`: the master's write end, in the master's fd table; -1 when catatonic.
    pub fd: Option<i32>,
    /// `pgrp=`: the master's process group, in the pid namespace of the reader.
    pub pgrp: Option<u32>,
    /// `pipe_ino=`: the inode of the pipe; absent (-1) when catatonic.
    pub pipe_ino: Option<u64>,
    pub kind: Option<AutofsKind>,
}

impl AutofsOptions {
    pub fn parse(super_options: &[u8]) -> Self {
        let mut opts = AutofsOptions::default();
        for opt in super_options.split(|&b| b == b',') {
            if let Some(v) = opt.strip_prefix(b"fd=") {
                opts.fd = signed(v).and_then(|n| i32::try_from(n).ok());
            } else if let Some(v) = opt.strip_prefix(b"pgrp=") {
                // A pgrp outside the reader's pid namespace is shown as 0: no master we can see.
                opts.pgrp = number(v).filter(|&p| p > 0);
            } else if let Some(v) = opt.strip_prefix(b"pipe_ino=") {
                opts.pipe_ino = signed(v).and_then(|n| u64::try_from(n).ok());
            } else {
                match opt {
                    b"direct" => opts.kind = Some(AutofsKind::Direct),
                    b"indirect" => opts.kind = Some(AutofsKind::Indirect),
                    b"offset" => opts.kind = Some(AutofsKind::Offset),
                    _ => {}
                }
            }
        }
        opts
    }

    /// The kernel shows `fd=-1` once the mount has lost its master for good.
    pub fn catatonic(&self) -> bool {
        self.fd.is_none_or(|fd| fd < 0) || self.pipe_ino.is_none()
    }
}

/// A decimal that the kernel may print as -1.
fn signed(v: &[u8]) -> Option<i64> {
    match v.strip_prefix(b"-") {
        Some(digits) => number64(digits).and_then(|n| i64::try_from(n).ok()).map(|n| -n),
        None => number64(v).and_then(|n| i64::try_from(n).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::xorshift::Rng;

    #[test]
    fn contains_finds_a_mark_anywhere() {
        let text = b"1 2 0:1 / / rw - ext4 a rw\n3 1 0:2 / /x rw - autofs systemd-1 rw,pgrp=1\n";
        assert!(contains(text, b" - autofs "));
        assert!(contains(text, b"pgrp=1\n"));
        assert!(!contains(text, b" /run/autofs-restart "));
        assert!(!contains(b"", b" - autofs "));
        assert!(!contains(b" - autof", b" - autofs "));
    }

    #[test]
    fn find_agrees_with_a_byte_by_byte_search() {
        let mut rng = Rng(0x5eed_f1d0);
        for _ in 0..20_000 {
            // Every byte value, near misses of the one sought (b ^ 0x80, b - 1, b + 1) above all.
            let b = rng.below(256) as u8;
            let len = rng.below(40);
            let hay: Vec<u8> = (0..len)
                .map(|_| match rng.below(6) {
                    0 => b,
                    1 => b ^ 0x80,
                    2 => b.wrapping_sub(1),
                    3 => b.wrapping_add(1),
                    _ => rng.below(256) as u8,
                })
                .collect();
            assert_eq!(find(&hay, b), hay.iter().position(|&c| c == b), "{b:#x} in {hay:x?}");
        }
    }

    #[test]
    fn a_line_from_proc5() {
        let m = parse_line(b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue").unwrap();
        assert_eq!((m.id, m.parent), (36, 35));
        assert_eq!(m.dev, Dev { major: 98, minor: 0 });
        assert_eq!(Dev::parse(b"0:1234"), Some(Dev { major: 0, minor: 1234 }));
        assert_eq!(Dev::parse(b"0:"), None);
        assert_eq!(Dev::parse(b"8"), None);
        // The kernel's new_encode_dev, as stat gives it: minor bits low and high, major between.
        assert_eq!(Dev::of_stat(0x801), Dev { major: 8, minor: 1 });
        assert_eq!(Dev::of_stat(0x34 | (0x1200 << 12)), Dev { major: 0, minor: 0x1234 });
        assert_eq!(&*m.root(), b"/mnt1");
        assert_eq!(&*m.mount_point, b"/mnt2");
        assert_eq!(m.options, b"rw,noatime");
        assert_eq!(m.propagation, Propagation { master: Some(1), ..Default::default() });
        assert_eq!(&*m.fs_type, b"ext3");
        assert_eq!(&*m.source(), b"/dev/root");
        assert_eq!(&*m.super_options(), b"rw,errors=continue");
    }

    #[test]
    fn every_optional_field_and_unknown_ones() {
        let m = parse_line(b"61 27 0:50 / /x rw shared:7 master:3 propagate_from:2 unbindable future:9 - tmpfs t rw")
            .unwrap();
        assert_eq!(
            m.propagation,
            Propagation { shared: Some(7), master: Some(3), propagate_from: Some(2), unbindable: true }
        );
        let m = parse_line(b"61 27 0:50 / /x rw - tmpfs t rw").unwrap();
        assert_eq!(m.propagation, Propagation::default());
    }

    #[test]
    fn escapes_are_decoded_in_paths_source_and_options() {
        let m = parse_line(b"70 27 0:51 /a\\134b /srv/a\\040b\\011c\\012d rw - tmpfs my\\040src rw,x=\\134").unwrap();
        assert_eq!(&*m.root(), b"/a\\b");
        assert_eq!(&*m.mount_point, b"/srv/a b\tc\nd");
        assert_eq!(&*m.source(), b"my src");
        assert_eq!(&*m.super_options(), b"rw,x=\\");
        assert!(matches!(parse_line(b"1 2 0:1 / / rw - t s o").unwrap().mount_point, Cow::Borrowed(_)));
    }

    #[test]
    fn malformed_escapes_are_kept() {
        assert_eq!(&*unescape(b"\\"), b"\\");
        assert_eq!(&*unescape(b"a\\04"), b"a\\04");
        assert_eq!(&*unescape(b"\\400\\08x"), b"\\400\\08x");
        assert_eq!(&*unescape(b"\\377"), b"\xff");
    }

    /// A path of bytes that mountinfo must escape or that look like its syntax.
    fn path(rng: &mut Rng) -> Vec<u8> {
        const TRICKY: &[u8] = b" \t\n\\-:0123456789/ab\xc3\xa9\x00\x7f";
        let len = 1 + rng.below(24);
        let mut p = vec![b'/'];
        p.extend(
            (0..len)
                .map(|_| if rng.below(3) == 0 { (rng.next() & 0xff) as u8 } else { TRICKY[rng.below(TRICKY.len())] }),
        );
        p
    }

    #[test]
    fn property_any_path_survives_escape_and_parse() {
        for seed in 1..=2000u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let (root, point, source) = (path(&mut rng), path(&mut rng), path(&mut rng));
            let mut line =
                format!("{} {} {}:{} ", rng.below(1 << 20), rng.below(1 << 20), rng.below(4096), rng.below(1 << 20))
                    .into_bytes();
            line.extend(escape(&root));
            line.push(b' ');
            line.extend(escape(&point));
            line.extend_from_slice(b" rw,relatime shared:3 master:1 - tmpfs ");
            line.extend(escape(&source));
            line.extend_from_slice(b" rw,size=1k");
            // Between two other lines, as `parse` sees it: the escapes of a line are found with
            // its end, eight bytes at a time, and those of its neighbours must not count.
            let mut text = b"1 0 0:1 / / rw - t a\\134 o\n".to_vec();
            text.extend_from_slice(&line);
            text.extend_from_slice(b"\n3 1 0:2 /\\134 /z rw - t s o\n");
            let all = parse(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}: {:?}", String::from_utf8_lossy(&line)));
            assert_eq!((&*all[0].source(), &*all[2].root()), (&b"a\\"[..], &b"/\\"[..]), "seed {seed}");
            let m = &all[1];
            assert_eq!(
                (&*m.root(), &*m.mount_point, &*m.source()),
                (&root[..], &point[..], &source[..]),
                "seed {seed}"
            );
            assert_eq!(m.propagation.shared, Some(3), "seed {seed}");
            assert_eq!(&*unescape(&escape(&point)), &point[..], "seed {seed}");
        }
    }

    #[test]
    fn property_garbage_never_panics() {
        let base: &[u8] =
            b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - autofs /dev/root rw,fd=5,pgrp=1,direct,pipe_ino=9";
        for seed in 1..=5000u64 {
            let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
            let mut line = base.to_vec();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(line.len() + 1);
                match rng.below(4) {
                    0 if at < line.len() => line[at] = (rng.next() & 0xff) as u8,
                    1 if at < line.len() => {
                        line.remove(at);
                    }
                    2 => line.insert(at, b" -:\\0\n"[rng.below(6)]),
                    _ => line.truncate(at),
                }
            }
            // Whatever it returns, it returns: no panic, no endless loop.
            if let Ok(mounts) = parse(&line) {
                for m in &mounts {
                    let _ = AutofsOptions::parse(&m.super_options()).catatonic();
                }
            }
        }
    }

    #[test]
    fn an_empty_source_is_allowed() {
        let m = parse_line(b"80 27 0:60 / /mnt rw - fuse  rw").unwrap();
        assert_eq!(&*m.source(), b"");
    }

    #[test]
    fn garbage_is_an_error_that_names_the_line() {
        let text = b"22 27 0:21 / /proc rw - proc proc rw\n\nnonsense\n";
        assert_eq!(parse(text).unwrap_err(), ParseError { line: 3, why: "mount id (1) is not a number" });
        for (line, why) in [
            (&b"1"[..], "no parent id (2)"),
            (b"1 2 3 / / rw - t s o", "major:minor (3) is not two numbers"),
            (b"1 2 3:x / / rw - t s o", "major:minor (3) is not two numbers"),
            (b"1 2 0:1 / / rw shared:7", "no separator (8) after the optional fields (7)"),
            (b"1 2 0:1 / / rw shared:x - t s o", "shared:N (7) is not a number"),
            (b"1 2 0:1 / / rw - t s", "no super options (11)"),
            (b"1 2 0:1 / / rw - t s o extra", "more than 11 fields"),
            (b"1 2 0:1  / rw - t s o", "root (4) is empty"),
            (b"99999999999 2 0:1 / / rw - t s o", "mount id (1) is not a number"),
            (b"-1 2 0:1 / / rw - t s o", "mount id (1) is not a number"),
        ] {
            assert_eq!(parse_line(line), Err(why), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn escape_is_undone_by_unescape() {
        let path = b"/a b\tc\nd\\e\xc3\xa9/\\040";
        let escaped = escape(path);
        assert_eq!(escaped, b"/a\\040b\\011c\\012d\\134e\xc3\xa9/\\134040");
        assert!(!escaped.iter().any(|b| matches!(b, b' ' | b'\t' | b'\n')));
        assert_eq!(&*unescape(&escaped), path);
    }

    #[test]
    fn autofs_options_of_a_live_and_a_catatonic_mount() {
        let live = AutofsOptions::parse(b"rw,fd=9,pgrp=2395,timeout=0,minproto=5,maxproto=5,direct,pipe_ino=5307");
        assert_eq!(
            live,
            AutofsOptions { fd: Some(9), pgrp: Some(2395), pipe_ino: Some(5307), kind: Some(AutofsKind::Direct) }
        );
        assert!(!live.catatonic());
        let dead = AutofsOptions::parse(b"rw,fd=-1,pgrp=12,timeout=300,minproto=5,maxproto=5,indirect,pipe_ino=-1");
        assert_eq!(dead.fd, Some(-1));
        assert_eq!(dead.pipe_ino, None);
        assert_eq!(dead.kind, Some(AutofsKind::Indirect));
        assert!(dead.catatonic());
        let hidden = AutofsOptions::parse(b"rw,fd=5,pgrp=0,offset,pipe_ino=77");
        assert_eq!((hidden.pgrp, hidden.kind), (None, Some(AutofsKind::Offset)));
    }

    const HOST: &[u8] = include_bytes!("../../tests/fixtures/mountinfo/host-hybrid-cgroups.txt");
    const MESSY: &[u8] = include_bytes!("../../tests/fixtures/mountinfo/messy-escapes-and-propagation.txt");

    #[test]
    fn a_real_host_table() {
        let mounts = parse(HOST).unwrap();
        assert_eq!(mounts.len(), 19);
        assert!(mounts.iter().any(|m| &*m.mount_point == b"/" && &*m.fs_type == b"ext4"));
        assert_eq!(mounts.iter().filter(|m| &*m.fs_type == b"cgroup").count(), 9);
    }

    #[test]
    fn a_real_table_with_every_escape_and_propagation() {
        let mounts = parse(MESSY).unwrap();
        let at = |p: &[u8]| mounts.iter().find(|m| &*m.mount_point == p).unwrap_or_else(|| panic!("{p:?}"));
        assert_eq!(&*at(b"/mnt/a b").source(), b"src with space");
        assert_eq!(&*at(b"/mnt/tab\tx").source(), b"tab");
        assert_eq!(&*at(b"/mnt/new\nline").source(), b"nl");
        assert_eq!(&*at(b"/mnt/back\\slash").source(), b"bs");
        assert_eq!(&*at("/mnt/\u{fc}".as_bytes()).source(), b"uml");
        assert_eq!(at(b"/mnt/shared").propagation.shared, Some(1));
        let slave = at(b"/mnt/slave").propagation;
        assert_eq!((slave.shared, slave.master), (Some(2), Some(1)));
        assert!(at(b"/mnt/unbind").propagation.unbindable);
        assert_eq!(at(b"/mnt/slave/sub").dev, at(b"/mnt/a b").dev, "a bind mount shares the superblock");
    }

    #[test]
    fn a_table_cut_short_names_the_line() {
        let cut = &HOST[..HOST.len() - 30];
        let e = parse(cut).unwrap_err();
        assert_eq!(e.line, 19);
    }

    #[test]
    fn long_lines_and_large_tables() {
        let long = format!("1 0 0:1 / /{} rw - tmpfs t rw", "x\\040".repeat(100_000));
        assert_eq!(parse_line(long.as_bytes()).unwrap().mount_point.len(), 1 + 200_000);
        let mut big = Vec::new();
        for i in 2..100_002 {
            big.extend_from_slice(format!("{i} 1 0:{i} / /m/{i} rw shared:{i} - tmpfs t rw\n").as_bytes());
        }
        assert_eq!(parse(&big).unwrap().len(), 100_000);
    }
}
