//! Nested mount namespaces of a container, and their copies of its autofs mounts.
//!
//! A restart replaces the autofs mount in the init's namespace. The replacement reaches another
//! namespace only by propagation from the mount below it: where the copy's parent is a peer or
//! a slave (directly or down a chain) of the original's parent, the copy is unmounted and the
//! new mount appears with it. Any other copy keeps the old superblock, whose master is gone
//! after the restart: it goes catatonic. Which is the lesser evil is the user's choice
//! (`settings::Policy`).

use std::collections::HashMap;

use crate::error::Result;
use crate::model::autofs::Table;
use crate::model::mountinfo::{AutofsOptions, Dev, Mount, Propagation};
use crate::pids::CtrPid;
use crate::show::who;

/// A mount namespace of the container other than its init's, seen through one of its
/// processes, with the autofs mounts it holds.
pub struct Namespace {
    /// A process in it: host pid, pid in the container, command.
    pub pid: u32,
    pub ctr_pid: Option<CtrPid>,
    pub comm: Vec<u8>,
    pub copies: Vec<Copy>,
}

impl Namespace {
    /// "the mount namespace of pid 10483 (278 in the container, sleep)"
    pub fn describe(&self) -> String {
        format!("the mount namespace of {}", who(self.pid, self.ctr_pid, &self.comm))
    }
}

/// An autofs mount in a nested namespace.
#[derive(Debug)]
pub struct Copy {
    /// Its mount point there.
    pub path: Vec<u8>,
    pub dev: Dev,
    pub options: AutofsOptions,
    /// The init's mount point of the same superblock, while the init still has it.
    pub of: Option<Vec<u8>>,
    pub reach: Reach,
    /// How many mounts sit on it there: a path walk reaches the top one, not the autofs mount.
    pub on_top: usize,
    /// It is itself in no peer group and receives from none (the kernel's MS_PRIVATE): from
    /// 6.19 a trigger on it from a namespace not its superblock's fails with EPERM.
    pub private: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A copy of one of the init's autofs mounts that receives propagation: a restart
    /// replaces it too.
    Follows,
    /// A copy of one of the init's autofs mounts that receives none: a restart of its master
    /// leaves it catatonic.
    Private,
    /// Not a superblock the init has (any more): an old copy, or a mount of the namespace's own.
    Elsewhere,
}

/// Peer group → the group it receives propagation from. Peer group ids are the kernel's, the
/// same in every namespace, so the tables of all namespaces fill one map.
#[derive(Default)]
pub struct Groups(HashMap<u32, [Option<u32>; 2]>);

impl Groups {
    pub fn add(&mut self, table: &Table<'_>) {
        for m in &table.mounts {
            let p = m.propagation;
            match p.shared {
                Some(group) if p.master.is_some() || p.propagate_from.is_some() => {
                    self.0.insert(group, [p.master, p.propagate_from]);
                }
                _ => {}
            }
        }
    }

    /// Whether a mount with propagation `p` receives what is mounted and unmounted in peer
    /// group `group`: it is a peer, or a slave of it, or a slave of a slave of it...
    pub fn receives(&self, p: &Propagation, group: u32) -> bool {
        if p.shared == Some(group) {
            return true;
        }
        let mut todo: Vec<u32> = [p.master, p.propagate_from].into_iter().flatten().collect();
        // Bounded by the map's size: a cycle in garbage must not spin.
        let mut steps = 0;
        while let Some(g) = todo.pop() {
            if g == group {
                return true;
            }
            steps += 1;
            if steps > self.0.len() + 2 {
                break;
            }
            todo.extend(self.0.get(&g).into_iter().flatten().flatten());
        }
        false
    }
}

/// The init's autofs mounts by superblock: where each is, and the peer group of the mount below
/// it (propagation to a copy comes from there). Built once per scan, not once per namespace.
pub struct Originals(HashMap<Dev, (Vec<u8>, Option<u32>)>);

impl Originals {
    pub fn of(main: &Table<'_>) -> Self {
        let autofs: Vec<&Mount<'_>> = main.mounts.iter().filter(|m| &*m.fs_type == b"autofs").collect();
        let below = propagation_of_parents(main, &autofs);
        // The first in mountinfo order wins, as for a bind of one autofs mount elsewhere.
        let mut map = HashMap::new();
        for m in autofs {
            let group = below.get(&m.parent).and_then(|p| p.shared);
            map.entry(m.dev).or_insert_with(|| (m.mount_point.to_vec(), group));
        }
        Originals(map)
    }
}

/// The propagation of the parents of `mounts`, by parent id: one pass over the table.
fn propagation_of_parents(t: &Table<'_>, mounts: &[&Mount<'_>]) -> HashMap<u32, Propagation> {
    let mut wanted: Vec<u32> = mounts.iter().map(|m| m.parent).collect();
    wanted.sort_unstable();
    t.mounts.iter().filter(|m| wanted.binary_search(&m.id).is_ok()).map(|m| (m.id, m.propagation)).collect()
}

/// The autofs mounts of a nested namespace's table, each judged against the init's. Pure:
/// tables in, copies out; O(mounts).
pub fn copies(originals: &Originals, nested: &Table<'_>, groups: &Groups) -> Vec<Copy> {
    let autofs = nested.autofs();
    let mounts: Vec<&Mount<'_>> = autofs.iter().map(|a| a.mount).collect();
    let below = propagation_of_parents(nested, &mounts);
    autofs
        .into_iter()
        .map(|a| {
            let m = a.mount;
            let original = originals.0.get(&m.dev);
            let reach = match original {
                None => Reach::Elsewhere,
                Some((_, group)) => {
                    let follows = group.zip(below.get(&m.parent)).is_some_and(|(group, p)| groups.receives(p, group));
                    if follows { Reach::Follows } else { Reach::Private }
                }
            };
            Copy {
                path: m.mount_point.to_vec(),
                dev: m.dev,
                options: a.options,
                of: original.map(|(path, _)| path.clone()),
                reach,
                on_top: a.stack.len(),
                private: m.propagation.shared.is_none() && m.propagation.master.is_none() && !m.propagation.unbindable,
            }
        })
        .collect()
}

/// The autofs mounts of each nested namespace's table (`(pid, mountinfo)`), judged against the
/// init's table, with peer groups followed through all of them. Pure.
pub fn judge(main: &Table<'_>, nested: &[(u32, Vec<u8>)]) -> Result<Vec<(u32, Vec<Copy>)>> {
    let mut tables = Vec::with_capacity(nested.len());
    for (pid, text) in nested {
        tables.push((*pid, Table::from_mountinfo(text, *pid)?));
    }
    let mut groups = Groups::default();
    groups.add(main);
    for (_, t) in &tables {
        groups.add(t);
    }
    let originals = Originals::of(main);
    Ok(tables.iter().map(|(pid, t)| (*pid, copies(&originals, t, &groups))).filter(|(_, c)| !c.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mountinfo::parse;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/mountinfo/{name}.txt", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// (mount point, reach) of each autofs mount of `nested` judged against `main`, with the
    /// groups of all of `all`.
    fn judge(main: &str, nested: &str, all: &[&str]) -> Vec<(String, Reach, Option<String>)> {
        let (m, n) = (fixture(main), fixture(nested));
        let texts: Vec<Vec<u8>> = all.iter().map(|f| fixture(f)).collect();
        let main = Table::new(parse(&m).unwrap());
        let nested = Table::new(parse(&n).unwrap());
        let others: Vec<Table<'_>> = texts.iter().map(|t| Table::new(parse(t).unwrap())).collect();
        let mut groups = Groups::default();
        groups.add(&main);
        groups.add(&nested);
        others.iter().for_each(|t| groups.add(t));
        copies(&Originals::of(&main), &nested, &groups)
            .into_iter()
            .map(|c| {
                let of = c.of.map(|o| String::from_utf8(o).unwrap());
                (String::from_utf8(c.path).unwrap(), c.reach, of)
            })
            .collect()
    }

    fn paths(reach: Reach) -> Vec<(String, Reach, Option<String>)> {
        ["/proc/sys/fs/binfmt_misc", "/srv/data", "/srv/idle"]
            .into_iter()
            .map(|p| (p.to_string(), reach, Some(p.to_string())))
            .collect()
    }

    #[test]
    fn after_a_restore_a_private_namespace_holds_private_copies() {
        let got = judge("nested-restored-main", "nested-restored-private", &[]);
        assert_eq!(got, paths(Reach::Private));
    }

    /// Whether each copy is itself private: the kernel's test for refusing a trigger (6.19).
    #[test]
    fn copies_in_a_private_namespace_are_themselves_private_and_slaves_are_not() {
        let private = |nested: &str| -> Vec<bool> {
            let (m, n) = (fixture("nested-restored-main"), fixture(nested));
            let (main, nested) = (Table::new(parse(&m).unwrap()), Table::new(parse(&n).unwrap()));
            let mut groups = Groups::default();
            groups.add(&main);
            groups.add(&nested);
            copies(&Originals::of(&main), &nested, &groups).iter().map(|c| c.private).collect()
        };
        assert_eq!(private("nested-restored-private"), [true; 3]);
        assert_eq!(private("nested-restored-slave"), [false; 3]);
        assert_eq!(private("nested-restored-privatetmp"), [false; 3]);
    }

    #[test]
    fn slave_and_private_tmp_namespaces_follow() {
        assert_eq!(judge("nested-restored-main", "nested-restored-slave", &[]), paths(Reach::Follows));
        // systemd's PrivateTmp=: a slave that is itself shared again ("shared:32 master:1").
        assert_eq!(judge("nested-restored-main", "nested-restored-privatetmp", &[]), paths(Reach::Follows));
    }

    #[test]
    fn after_the_fix_the_private_copies_are_of_superblocks_the_init_no_longer_has() {
        let got = judge("nested-fixed-main", "nested-fixed-private", &[]);
        assert!(got.iter().all(|(_, r, of)| *r == Reach::Elsewhere && of.is_none()), "{got:?}");
        assert_eq!(got.len(), 3);
        assert_eq!(judge("nested-fixed-main", "nested-fixed-slave", &[]), paths(Reach::Follows));
    }

    #[test]
    fn propagation_down_a_chain_of_slaves() {
        let mut groups = Groups::default();
        let text = b"\
1 0 0:1 / / rw shared:5 master:1 - ext4 a rw
2 0 0:2 / / rw shared:9 master:5 - ext4 b rw
3 0 0:3 / / rw shared:7 master:7 - ext4 c rw
";
        let t = Table::new(parse(text).unwrap());
        groups.add(&t);
        let slave_of = |g| Propagation { master: Some(g), ..Default::default() };
        assert!(groups.receives(&slave_of(9), 1), "9 ← 5 ← 1");
        assert!(groups.receives(&slave_of(1), 1));
        assert!(groups.receives(&Propagation { shared: Some(1), ..Default::default() }, 1));
        assert!(!groups.receives(&slave_of(9), 2));
        assert!(!groups.receives(&Propagation::default(), 1), "private");
        assert!(!groups.receives(&slave_of(7), 1), "a cycle ends");
        let from = Propagation { master: Some(40), propagate_from: Some(5), ..Default::default() };
        assert!(groups.receives(&from, 1), "propagate_from names a dominant group");
    }
}
