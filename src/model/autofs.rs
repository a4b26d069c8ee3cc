//! The autofs mounts of a mount table and what sits on them, from mountinfo alone: nothing here
//! walks a path, so nothing here can wait on a master that no longer answers.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::model::mountinfo::{self, AutofsOptions, Mount};

/// Whether a mountinfo text has an autofs mount, found without parsing it: paths are escaped,
/// so " - autofs " is always the type field.
pub fn any(text: &[u8]) -> bool {
    mountinfo::contains(text, b" - autofs ")
}

/// A mount table with its parent → children index. Built once per read, O(mounts).
pub struct Table<'a> {
    pub mounts: Vec<Mount<'a>>,
    children: HashMap<u32, Vec<usize>>,
}

/// An autofs mount and what is mounted on it.
pub struct Autofs<'t, 'a> {
    pub mount: &'t Mount<'a>,
    pub options: AutofsOptions,
    /// The mounts stacked on its root, at the same mount point, the lowest first.
    pub stack: Vec<&'t Mount<'a>>,
    /// How many more mounts sit below its mount point: submounts of the stack, or the keys of
    /// an indirect map mounted inside it.
    pub inside: usize,
}

impl<'a> Table<'a> {
    pub fn new(mounts: Vec<Mount<'a>>) -> Self {
        let mut children: HashMap<u32, Vec<usize>> = HashMap::with_capacity(mounts.len());
        for (i, m) in mounts.iter().enumerate() {
            // The root's parent is outside the table (or itself): never a child.
            if m.parent != m.id {
                children.entry(m.parent).or_default().push(i);
            }
        }
        Table { mounts, children }
    }

    fn children(&self, id: u32) -> impl Iterator<Item = &Mount<'a>> {
        self.children.get(&id).into_iter().flatten().map(|&i| &self.mounts[i])
    }

    /// Bounded by the table's size: garbage with a parent cycle must not make this spin.
    fn descendants(&self, id: u32) -> usize {
        let mut count = 0;
        let mut todo = vec![id];
        while let Some(id) = todo.pop() {
            if count > self.mounts.len() {
                break;
            }
            for c in self.children(id) {
                count += 1;
                todo.push(c.id);
            }
        }
        count
    }

    /// The mounts below mount `id`, stacked on it or inside it, each before what is below it.
    /// Bounded by the table's size, as `descendants`.
    pub fn subtree(&self, id: u32) -> Vec<&Mount<'a>> {
        let mut found = Vec::new();
        let mut todo = vec![id];
        while let Some(id) = todo.pop() {
            if found.len() > self.mounts.len() {
                break;
            }
            for c in self.children(id) {
                found.push(c);
                todo.push(c.id);
            }
        }
        found
    }

    /// Parses the mountinfo of process `pid`; an error names the file and the line.
    pub fn from_mountinfo(text: &'a [u8], pid: u32) -> Result<Self> {
        mountinfo::parse(text).map(Table::new).map_err(|e| Error::check(format!("parsing /proc/{pid}/mountinfo: {e}")))
    }

    /// Every autofs mount, in mountinfo order.
    pub fn autofs(&self) -> Vec<Autofs<'_, 'a>> {
        self.mounts.iter().filter(|m| &*m.fs_type == b"autofs").map(|m| self.describe(m)).collect()
    }

    /// The mount points of every autofs mount, in mountinfo order.
    pub fn autofs_points(&self) -> Vec<&[u8]> {
        self.mounts.iter().filter(|m| &*m.fs_type == b"autofs").map(|m| &*m.mount_point).collect()
    }

    /// The autofs mount at `mount_point` that is highest in its stack (after a restart, the
    /// new one).
    pub fn autofs_at(&self, mount_point: &[u8]) -> Option<Autofs<'_, 'a>> {
        self.mounts
            .iter()
            .rfind(|m| &*m.fs_type == b"autofs" && &*m.mount_point == mount_point)
            .map(|m| self.describe(m))
    }

    /// The topmost mount at `mount_point`: the one a path walk reaches.
    pub fn top_at(&self, mount_point: &[u8]) -> Option<&Mount<'a>> {
        let here = |m: &Mount<'_>| &*m.mount_point == mount_point;
        let lowest = self
            .mounts
            .iter()
            .filter(|m| here(m))
            .rfind(|m| !self.mounts.iter().any(|p| p.id == m.parent && p.id != m.id && here(p)))?;
        let mut top = lowest;
        for _ in 0..self.mounts.len() {
            match self.children(top.id).filter(|c| here(c)).last() {
                Some(c) => top = c,
                None => break,
            }
        }
        Some(top)
    }

    fn describe<'t>(&'t self, mount: &'t Mount<'a>) -> Autofs<'t, 'a> {
        let mut stack = Vec::new();
        let mut top = mount.id;
        // A mount stacked on `top` is its child at the same mount point. With tucked mounts
        // (propagation) there can be two: the later one is the one a path walk reaches.
        while stack.len() < self.mounts.len() {
            let Some(m) = self.children(top).filter(|c| c.mount_point == mount.mount_point).last() else { break };
            stack.push(m);
            top = m.id;
        }
        let inside = self.descendants(mount.id).saturating_sub(stack.len());
        Autofs { mount, options: AutofsOptions::parse(&mount.super_options()), stack, inside }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mountinfo::{AutofsKind, parse};

    const TABLE: &[u8] = b"\
67 42 0:41 / / rw,relatime shared:1 - overlay ctr rw
68 67 0:44 / /proc rw,relatime shared:2 - proc proc rw
45 68 0:51 / /proc/sys/fs/binfmt_misc rw,relatime shared:19 - autofs systemd-1 rw,fd=26,pgrp=2395,timeout=0,minproto=5,maxproto=5,direct,pipe_ino=6044
51 67 0:57 / /srv/data rw,relatime shared:28 - autofs systemd-1 rw,fd=38,pgrp=2395,timeout=0,minproto=5,maxproto=5,direct,pipe_ino=5608
54 51 0:61 / /srv/data rw,relatime shared:32 - tmpfs srv-data rw,size=1024k
55 54 0:62 / /srv/data/sub rw,relatime shared:33 - tmpfs sub rw
56 54 0:63 / /srv/data rw,relatime shared:34 - tmpfs upper rw
60 67 0:70 / /srv/ind rw,relatime shared:40 - autofs /etc/auto.ind rw,fd=7,pgrp=300,timeout=300,minproto=5,maxproto=5,indirect,pipe_ino=999
61 60 0:71 / /srv/ind/k rw,relatime shared:41 - tmpfs k rw
";

    #[test]
    fn stacks_submounts_and_mounts_inside() {
        let table = Table::new(parse(TABLE).unwrap());
        let all = table.autofs();
        assert_eq!(all.len(), 3);

        let binfmt = &all[0];
        assert_eq!(&*binfmt.mount.mount_point, b"/proc/sys/fs/binfmt_misc");
        assert!(binfmt.stack.is_empty());
        assert_eq!(binfmt.inside, 0);
        assert_eq!(binfmt.options.pgrp, Some(2395));

        let data = &all[1];
        assert_eq!(data.stack.iter().map(|m| m.id).collect::<Vec<_>>(), [54, 56]);
        assert_eq!(data.inside, 1, "the submount of the lower tmpfs");

        let ind = &all[2];
        assert_eq!(ind.options.kind, Some(AutofsKind::Indirect));
        assert!(ind.stack.is_empty());
        assert_eq!(ind.inside, 1);
    }

    #[test]
    fn autofs_at_takes_the_highest_one() {
        let text = b"\
1 0 0:1 / / rw - ext4 r rw
10 1 0:50 / /w rw - autofs old rw,fd=-1,pgrp=1,direct,pipe_ino=-1
11 10 0:51 / /w rw - autofs new rw,fd=5,pgrp=1,direct,pipe_ino=8
";
        let table = Table::new(parse(text).unwrap());
        assert_eq!(table.autofs_at(b"/w").unwrap().mount.id, 11);
        assert!(table.autofs_at(b"/x").is_none());
    }

    const RESTORED: &[u8] = include_bytes!("../../tests/fixtures/mountinfo/systemd-container-restored.txt");
    const FIXED: &[u8] = include_bytes!("../../tests/fixtures/mountinfo/systemd-container-fixed.txt");

    #[test]
    fn a_restored_systemd_container_and_the_same_after_the_fix() {
        let restored = Table::new(parse(RESTORED).unwrap());
        let before = restored.autofs();
        let paths: Vec<&[u8]> = before.iter().map(|a| &*a.mount.mount_point).collect();
        assert_eq!(paths, [&b"/proc/sys/fs/binfmt_misc"[..], b"/srv/data", b"/srv/idle"]);
        assert!(before.iter().all(|a| a.options.pgrp == Some(10632) && a.options.kind == Some(AutofsKind::Direct)));
        let tops: Vec<usize> = before.iter().map(|a| a.stack.len()).collect();
        assert_eq!(tops, [0, 1, 0]);

        let fixed = Table::new(parse(FIXED).unwrap());
        for old in &before {
            let new = fixed.autofs_at(&old.mount.mount_point).unwrap();
            assert_ne!(new.options.pipe_ino, old.options.pipe_ino, "systemd made a new pipe");
        }
        // The kernel gave /srv/data's new autofs mount the freed id and device number back.
        let (old, new) = (&before[1], fixed.autofs_at(b"/srv/data").unwrap());
        assert_eq!((old.mount.id, old.mount.dev), (new.mount.id, new.mount.dev));
        assert_eq!(old.stack[0].dev, new.stack[0].dev, "the tmpfs on top is the same superblock");
        // --probe mounted the two that had nothing on top.
        assert_eq!(fixed.autofs_at(b"/proc/sys/fs/binfmt_misc").unwrap().stack[0].fs_type, &b"binfmt_misc"[..]);
    }

    #[test]
    fn subtrees() {
        let table = Table::new(parse(TABLE).unwrap());
        let ids = |id| table.subtree(id).iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(51), [54, 55, 56]);
        assert_eq!(ids(60), [61]);
        assert!(ids(45).is_empty());
    }

    #[test]
    fn top_at_follows_the_stack() {
        let table = Table::new(parse(TABLE).unwrap());
        assert_eq!(table.top_at(b"/srv/data").unwrap().id, 56);
        assert_eq!(table.top_at(b"/srv/ind").unwrap().id, 60);
        assert_eq!(table.top_at(b"/").unwrap().id, 67);
        assert!(table.top_at(b"/nowhere").is_none());
    }

    #[test]
    fn a_parent_cycle_does_not_spin() {
        let text = b"\
1 2 0:1 / /w rw - autofs a rw,fd=5,pgrp=1,direct,pipe_ino=8
2 1 0:2 / /w rw - tmpfs t rw
";
        let table = Table::new(parse(text).unwrap());
        let all = table.autofs();
        assert_eq!(all.len(), 1);
        assert!(all[0].stack.len() <= 2);
    }
}
