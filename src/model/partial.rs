//! The part of a mount table that a plan reads: every autofs mount, the mount it sits on and
//! every mount below it (its stack, its offsets, the keys mounted inside it), and the mounts on
//! the way to the staging directory. Chosen from every mount's parent and file system type
//! (statmount without strings), then read as mountinfo lines (`sys::statmount::Record`): the
//! kernel makes the paths of these mounts only, where mountinfo makes every mount's (18 ms at
//! 10 000 mounts, build/bench-notes.md). The parser and everything after it see a mountinfo,
//! shorter. Pure: the records come from `fetch`, so that fixtures test it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// What a plan's choice reads of every mount (statmount(2) without strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Basic {
    pub id: u64,
    /// Its parent's unique id (its own for the root of the namespace).
    pub parent: u64,
    /// The file system's magic number (statfs(2)'s f_type).
    pub magic: u64,
}

/// statfs(2)'s f_type of autofs (linux/magic.h).
pub const AUTOFS_SUPER_MAGIC: u64 = 0x0187;

/// A mount's point (relative to our root) and its mountinfo line; None when it is gone.
pub type Fetched = Option<(Vec<u8>, Vec<u8>)>;

/// The mountinfo lines, in the table's order, of the mounts of `all` (every mount of the
/// namespace, in its order) that a plan needs, and of those on the way to `toward` (the
/// staging directory: a stack there, and each mount whose directory holds it). `fetch` reads
/// one mount, a kernel call per mount: the way is walked from the top mounts down, one level
/// at a time, never through the whole table.
pub fn lines<E>(all: &[Basic], toward: &[u8], fetch: &mut dyn FnMut(u64) -> Result<Fetched, E>) -> Result<Vec<u8>, E> {
    let known: HashSet<u64> = all.iter().map(|b| b.id).collect();
    let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
    for b in all.iter().filter(|b| b.parent != b.id) {
        children.entry(b.parent).or_default().push(b.id);
    }
    // Every line fetched, and which of them go into the part.
    let mut fetched: HashMap<u64, Fetched> = HashMap::new();
    let mut keep: Vec<u64> = Vec::new();
    // The way: the top mounts (their parent, the root, is not listed), then the children of
    // each mount on it. Bounded by the table's size, should garbage hold a cycle.
    let mut todo: Vec<u64> =
        all.iter().filter(|b| b.parent == b.id || !known.contains(&b.parent)).map(|b| b.id).collect();
    while let Some(id) = todo.pop() {
        if fetched.len() > all.len() || fetched.contains_key(&id) {
            continue;
        }
        let got = fetch(id)?;
        if got.as_ref().is_some_and(|(point, _)| on_the_way(point, toward)) {
            keep.push(id);
            todo.extend(children.get(&id).into_iter().flatten());
        }
        fetched.insert(id, got);
    }
    for id in wanted(all, &known, &children) {
        if let Entry::Vacant(e) = fetched.entry(id) {
            e.insert(fetch(id)?);
        }
        keep.push(id);
    }
    // Unique ids grow in the namespace's order, mountinfo's.
    keep.sort_unstable();
    keep.dedup();
    Ok(keep
        .iter()
        .filter_map(|id| fetched.get(id).and_then(Option::as_ref))
        .flat_map(|(_, line)| line.iter().copied())
        .collect())
}

/// Whether a mount at `point` holds `toward` or is stacked there.
fn on_the_way(point: &[u8], toward: &[u8]) -> bool {
    point == b"/" || point == toward || toward.strip_prefix(point).is_some_and(|rest| rest.starts_with(b"/"))
}

/// Every autofs mount, its parent (the propagation copies in nested namespaces receive comes
/// from there), and every mount below it.
fn wanted(all: &[Basic], known: &HashSet<u64>, children: &HashMap<u64, Vec<u64>>) -> Vec<u64> {
    let mut wanted = Vec::new();
    // The mounts whose children are in already: each is gone down once, below however many
    // autofs mounts it is, and a cycle in garbage ends.
    let mut gone_down = HashSet::new();
    for b in all.iter().filter(|b| b.magic == AUTOFS_SUPER_MAGIC) {
        if known.contains(&b.parent) {
            wanted.push(b.parent);
        }
        let mut todo = vec![b.id];
        while let Some(id) = todo.pop() {
            wanted.push(id);
            if gone_down.insert(id) {
                todo.extend(children.get(&id).into_iter().flatten());
            }
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::autofs::Table;
    use crate::model::mountinfo::parse;

    /// A table as listmount and statmount would give it: unique ids in the table's order (old
    /// ids need not be), parents and types from the parsed lines, each line fetched as it is.
    /// Returns the part and how many were fetched.
    fn part(text: &[u8], toward: &[u8]) -> (Vec<u8>, usize) {
        let mounts = parse(text).unwrap();
        let unique = |old: u32| mounts.iter().position(|m| m.id == old).map_or(1, |i| i as u64 + 1000);
        let all: Vec<Basic> = mounts
            .iter()
            .map(|m| Basic {
                id: unique(m.id),
                parent: unique(m.parent),
                magic: if &*m.fs_type == b"autofs" { AUTOFS_SUPER_MAGIC } else { 0x0102_1994 },
            })
            .collect();
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        let mut fetched = 0;
        let mut fetch = |id: u64| -> Result<Fetched, ()> {
            fetched += 1;
            let i = id as usize - 1000;
            Ok(Some((mounts[i].mount_point.to_vec(), lines[i].to_vec())))
        };
        let out = lines_of(&all, toward, &mut fetch);
        (out, fetched)
    }

    fn lines_of(all: &[Basic], toward: &[u8], fetch: &mut dyn FnMut(u64) -> Result<Fetched, ()>) -> Vec<u8> {
        lines(all, toward, fetch).unwrap()
    }

    /// What the plan reads of each autofs mount: the same from the part as from the whole.
    fn described(text: &[u8]) -> Vec<String> {
        let table = Table::new(parse(text).unwrap());
        table
            .autofs()
            .iter()
            .map(|a| {
                let stack: Vec<String> =
                    a.stack.iter().map(|m| String::from_utf8_lossy(&m.mount_point).into_owned()).collect();
                format!("{} {:?} {:?} {} {:?}", a.mount.id, a.options, stack, a.inside, table.subtree(a.mount.id).len())
            })
            .collect()
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/mountinfo/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn the_part_describes_every_autofs_mount_as_the_whole_does() {
        for name in ["systemd-container-restored.txt", "systemd-container-fixed.txt", "nested-restored-main.txt"] {
            let text = fixture(name);
            let (part, fetched) = part(&text, b"/run/autofs-restart");
            assert!(!described(&text).is_empty(), "{name}: no autofs mount");
            assert_eq!(described(&part), described(&text), "{name}");
            assert!(fetched < parse(&text).unwrap().len(), "{name}: every mount fetched");
        }
    }

    /// Nested namespaces are judged against the init's table: the part judges them alike.
    #[test]
    fn copies_in_nested_namespaces_are_judged_alike() {
        let main = fixture("nested-restored-main.txt");
        let (part, _) = part(&main, b"/run/autofs-restart");
        let nested: Vec<(u32, Vec<u8>)> =
            ["nested-restored-private.txt", "nested-restored-slave.txt", "nested-restored-privatetmp.txt"]
                .iter()
                .zip(1..)
                .map(|(name, pid)| (pid, fixture(name)))
                .collect();
        let judged = |text: &[u8]| {
            format!("{:?}", crate::model::nested::judge(&Table::new(parse(text).unwrap()), &nested).unwrap())
        };
        assert_eq!(judged(&part), judged(&main));
    }

    #[test]
    fn only_autofs_mounts_their_parents_what_is_below_and_the_way_are_read() {
        let text = b"20 1 0:20 / / rw - ext4 /dev/vda rw\n\
            21 20 0:21 / /proc rw - proc proc rw\n\
            22 20 0:22 / /run rw - tmpfs tmpfs rw\n\
            23 20 0:23 / /srv rw - tmpfs tmpfs rw\n\
            24 23 0:24 / /srv/data rw - autofs systemd-1 rw,fd=5,pgrp=1,direct,pipe_ino=7\n\
            25 24 0:25 / /srv/data rw - tmpfs tmpfs rw\n\
            26 25 0:26 / /srv/data/sub rw - tmpfs tmpfs rw\n\
            27 23 0:27 / /srv/other rw - tmpfs tmpfs rw\n\
            28 22 0:28 / /run/user rw - tmpfs tmpfs rw\n\
            29 22 0:29 / /run/autofs-restart rw - tmpfs autofs-restart rw\n\
            30 29 0:30 / /run/autofs-restart/0 rw - tmpfs tmpfs rw\n";
        let (part, fetched) = part(text, b"/run/autofs-restart");
        let ids: Vec<u32> = parse(&part).unwrap().iter().map(|m| m.id).collect();
        // 21 (/proc), 27, 28 and 30 (below the staging: the recovery reads it from the
        // staging's own table) are fetched on the way and left out; 27 is never fetched.
        assert_eq!(ids, [20, 22, 23, 24, 25, 26, 29]);
        assert_eq!(fetched, 10, "each mount fetched once, 27 never");
    }

    /// A mount moved (MS_MOVE) keeps its id: a parent can come after its child in the table,
    /// and an autofs mount's parent can be what another autofs mount has on top.
    #[test]
    fn whatever_the_order_everything_below_an_autofs_mount_is_read() {
        let all = [
            Basic { id: 5, parent: 30, magic: AUTOFS_SUPER_MAGIC },
            Basic { id: 20, parent: 1, magic: AUTOFS_SUPER_MAGIC },
            Basic { id: 30, parent: 20, magic: 0x0102_1994 },
            Basic { id: 40, parent: 30, magic: 0x0102_1994 },
        ];
        let mut fetch = |id: u64| -> Result<Fetched, ()> { Ok(Some((b"/x".to_vec(), format!("{id}\n").into_bytes()))) };
        assert_eq!(lines_of(&all, b"/run/autofs-restart", &mut fetch), b"5\n20\n30\n40\n");
    }

    #[test]
    fn a_cycle_in_garbage_ends() {
        let all = [
            Basic { id: 1, parent: 2, magic: AUTOFS_SUPER_MAGIC },
            Basic { id: 2, parent: 1, magic: AUTOFS_SUPER_MAGIC },
        ];
        let mut fetch = |id: u64| -> Result<Fetched, ()> { Ok(Some((b"/x".to_vec(), format!("{id}\n").into_bytes()))) };
        assert_eq!(lines_of(&all, b"/run/autofs-restart", &mut fetch), b"1\n2\n");
    }

    #[test]
    fn a_mount_gone_meanwhile_is_left_out_and_an_error_ends_the_read() {
        let all = [Basic { id: 1, parent: 1, magic: 0 }, Basic { id: 2, parent: 1, magic: AUTOFS_SUPER_MAGIC }];
        let mut gone = |id: u64| -> Result<Fetched, ()> { Ok((id == 1).then(|| (b"/".to_vec(), b"1\n".to_vec()))) };
        assert_eq!(lines_of(&all, b"/run/autofs-restart", &mut gone), b"1\n");
        let mut failing = |_: u64| -> Result<Fetched, ()> { Err(()) };
        assert!(lines(&all, b"/run/autofs-restart", &mut failing).is_err());
    }
}
