//! Triggered direct multi-mounts of the automount daemon. autofs 5.1.8 and 5.1.9 hang at start
//! on a direct multi-mount whose offsets are mounted: `mount_autofs_direct` holds the direct
//! map's cache read lock while the busy entry is remounted, and `parse_mount` then asks for the
//! write lock on the same cache. The new daemon never comes up (a forking start never returns).
//!
//! An idle one (every mount below its base an offset trigger with nothing on it) gets through:
//! with the old daemon dead, the offsets and the base are unmounted, and the new daemon mounts
//! the base afresh, as at boot; the next access to it mounts the offsets again. Nothing was on
//! them. One in use (a mount on an offset or on the base) stops the daemon's restart. Pure:
//! from the table alone.

use std::fmt;

use crate::model::autofs::{Autofs, Table};
use crate::model::mountinfo::{AutofsKind, AutofsOptions, Mount};
use crate::show::Shown;

/// An idle triggered direct multi-mount: what is unmounted, the deepest first, then its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    pub base: Vec<u8>,
    pub below: Vec<Vec<u8>>,
}

/// A triggered direct multi-mount in use: a mount sits on one of its offsets, or on its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    pub base: Vec<u8>,
    /// Where the mount is, and what it is.
    pub at: Vec<u8>,
    pub what: String,
}

impl fmt::Display for InUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is a direct multi-mount in use ({} has {} on it): a new automount would hang at its start \
             (autofs 5.1.8 and 5.1.9); unmount that or let it expire, then run again",
            Shown(&self.base),
            Shown(&self.at),
            self.what
        )
    }
}

/// Whether direct mount `a` is a triggered multi-mount (autofs offsets below it), and if so
/// whether it is idle. None for any other mount.
pub fn of(table: &Table<'_>, a: &Autofs<'_, '_>) -> Option<Result<Reset, InUse>> {
    if a.options.kind != Some(AutofsKind::Direct) {
        return None;
    }
    let below = table.subtree(a.mount.id);
    let offset = |m: &Mount<'_>| {
        &*m.fs_type == b"autofs" && AutofsOptions::parse(&m.super_options()).kind == Some(AutofsKind::Offset)
    };
    if !below.iter().any(|m| offset(m)) {
        return None;
    }
    let base = a.mount.mount_point.to_vec();
    // Everything below must be an offset trigger, and nothing may sit on one: a mount on the
    // base is a child at the same mount point, and any other mount is below some offset.
    if let Some(busy) = below.iter().find(|m| !offset(m) || m.mount_point == a.mount.mount_point) {
        let what = format!("{} {}", Shown(&busy.fs_type), Shown(&busy.source()));
        return Some(Err(InUse { base, at: busy.mount_point.to_vec(), what }));
    }
    Some(Ok(Reset { base, below: below.iter().rev().map(|m| m.mount_point.to_vec()).collect() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mountinfo::parse;

    const OPTS: &str = "rw,fd=6,pgrp=96,timeout=300,minproto=5,maxproto=5";

    fn table(extra: &str) -> Vec<u8> {
        format!(
            "67 42 0:41 / / rw shared:1 - overlay ctr rw
52 67 0:60 / /srv/multi rw shared:31 - autofs /etc/auto.direct {OPTS},direct,pipe_ino=9
53 67 0:61 / /srv/direct rw shared:32 - autofs /etc/auto.direct {OPTS},direct,pipe_ino=9
54 67 0:62 / /srv/ind rw shared:33 - autofs /etc/auto.ind {OPTS},indirect,pipe_ino=8
57 54 0:65 / /srv/ind/m/x rw shared:36 - autofs /etc/auto.ind {OPTS},offset,pipe_ino=8
{extra}"
        )
        .into_bytes()
    }

    fn judge(text: &[u8], path: &[u8]) -> Option<Result<Reset, InUse>> {
        let table = Table::new(parse(text).unwrap());
        let a = table.autofs_at(path).unwrap();
        of(&table, &a)
    }

    const OFFSETS: &str =
        "55 52 0:63 / /srv/multi/a rw shared:34 - autofs /etc/auto.direct rw,fd=6,pgrp=96,offset,pipe_ino=9
56 52 0:64 / /srv/multi/b rw shared:35 - autofs /etc/auto.direct rw,fd=6,pgrp=96,offset,pipe_ino=9
58 56 0:66 / /srv/multi/b/c rw shared:37 - autofs /etc/auto.direct rw,fd=6,pgrp=96,offset,pipe_ino=9
";

    #[test]
    fn an_idle_triggered_direct_multi_mount_is_reset_deepest_first() {
        let text = table(OFFSETS);
        let reset = judge(&text, b"/srv/multi").unwrap().unwrap();
        assert_eq!(reset.base, b"/srv/multi");
        let below: Vec<&[u8]> = reset.below.iter().map(Vec::as_slice).collect();
        assert_eq!(below.len(), 3);
        let at = |p: &[u8]| below.iter().position(|b| *b == p).unwrap();
        assert!(at(b"/srv/multi/b/c") < at(b"/srv/multi/b"), "{below:?}");
    }

    #[test]
    fn other_mounts_are_no_multi_mounts() {
        let text = table("");
        assert_eq!(judge(&text, b"/srv/multi"), None, "not triggered");
        assert_eq!(judge(&text, b"/srv/ind"), None, "indirect: its offsets restart fine");
        let text = table("59 53 0:41 /srv/data-d /srv/direct rw - overlay ctr rw\n");
        assert_eq!(judge(&text, b"/srv/direct"), None, "a direct mount with its bind on it");
    }

    #[test]
    fn a_mount_on_an_offset_or_on_the_base_is_in_use() {
        let text = table(&format!("{OFFSETS}60 55 0:41 /srv/data-a /srv/multi/a rw - ext4 /dev/sdb rw\n"));
        let in_use = judge(&text, b"/srv/multi").unwrap().unwrap_err();
        assert_eq!((in_use.at.as_slice(), in_use.what.as_str()), (&b"/srv/multi/a"[..], "ext4 /dev/sdb"));
        assert!(in_use.to_string().starts_with("/srv/multi is a direct multi-mount in use (/srv/multi/a has ext4"));
        let text = table(&format!("{OFFSETS}61 52 0:41 /srv/data /srv/multi rw - overlay ctr rw\n"));
        assert_eq!(judge(&text, b"/srv/multi").unwrap().unwrap_err().at, b"/srv/multi");
    }
}
