//! The journal of a staging: one line `N WHERE` per tree set aside, written before the tree is
//! copied, so that after a crash every staged tree says where it belongs. WHERE is escaped as
//! mountinfo does, so a line is one path whatever it holds. The format is written and read
//! here only.

use std::borrow::Cow;

use crate::model::mountinfo::{escape, unescape};

/// The line for tree `n`, which belongs on `path`.
pub fn line(n: u32, path: &[u8]) -> Vec<u8> {
    let mut line = format!("{n} ").into_bytes();
    line.extend_from_slice(&escape(path));
    line.push(b'\n');
    line
}

/// The entries of a journal, in the order they were written. A torn or garbled line (a crash
/// mid-write, or a container that wrote the legacy journal) is skipped.
pub fn entries(text: &[u8]) -> impl DoubleEndedIterator<Item = (u32, Cow<'_, [u8]>)> {
    text.split(|&b| b == b'\n').filter_map(|line| {
        let space = line.iter().position(|&b| b == b' ')?;
        let n = std::str::from_utf8(&line[..space]).ok()?.parse::<u32>().ok()?;
        Some((n, unescape(&line[space + 1..])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let mut text = line(0, b"/srv/my data");
        text.extend(line(1, b"/srv/a\nb\\c"));
        text.extend_from_slice(b"junk\nx /srv\n2 /srv/da");
        let got: Vec<(u32, Vec<u8>)> = entries(&text).map(|(n, p)| (n, p.into_owned())).collect();
        assert_eq!(got, [(0, b"/srv/my data".to_vec()), (1, b"/srv/a\nb\\c".to_vec()), (2, b"/srv/da".to_vec())]);
        assert_eq!(entries(&text).next_back().map(|(n, _)| n), Some(2));
    }
}
