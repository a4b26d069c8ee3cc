//! What a program we start in the container may have: the container's namespaces, its cgroup,
//! its capabilities, nothing of ours. The container is not trusted: if its `systemctl` ran
//! with host powers, a container that replaced that file would escape at the next restore.
//!
//! `Confine::read` reads it all from the host before we enter the container; `ForChild`
//! applies it in the forked child, before exec (see `spawn`). `cgroup_dirs` is pure.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags, openat};
use rustix::io::Errno;
use rustix::thread::{CapabilitySet, CapabilitySets, ThreadNameSpaceType};

use super::{Init, ns};
use crate::error::{Context, Error, Result};
use crate::model::autofs::Table;
use crate::model::procfs;
use crate::show::Shown;

/// Whose program it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The container's (`systemctl`, `automount`): its namespaces, user namespace included,
    /// its cgroup, capabilities cut to its init's bounding set.
    Container { no_new_privs: bool },
    /// Ours (`--internal-*` helpers of this very binary): the container's namespaces and
    /// cgroup, but host credentials, which the autofs ioctl needs.
    Ours,
}

/// The container's privileges, as its init has them.
pub struct Confine {
    /// Namespaces to join through the init's pidfd, besides mount and pid (entering joined
    /// those for us and our children): uts, ipc, net, cgroup, and time if it has its own.
    ns: ThreadNameSpaceType,
    /// Whether it has a user namespace of its own (joined only by the container's programs).
    user: bool,
    /// The init's cgroup directories in the host's cgroupfs where it is not in ours (a child
    /// of ours starts there): its cgroup2 directory, and one per v1 hierarchy.
    cgroup2: Option<OwnedFd>,
    cgroups_v1: Vec<OwnedFd>,
    /// The init's capability bounding set.
    bounding: u64,
    /// The host's cgroup2 root, where a respawned daemon's own cgroup is found.
    cgroup2_root: Option<OwnedFd>,
}

/// What the child needs of a `Confine`, borrowed from it while the child is being made.
#[derive(Clone)]
pub struct ForChild<'a> {
    ns: ThreadNameSpaceType,
    user: bool,
    cgroup2: Option<BorrowedFd<'a>>,
    cgroups_v1: Vec<BorrowedFd<'a>>,
    bounding: u64,
}

impl Confine {
    /// Reads the init's privileges from the host's /proc and our own mountinfo (the host's
    /// cgroupfs). Before entering: afterwards neither is in reach.
    pub fn read(init: &Init) -> Result<Confine> {
        let pid = init.host_pid();
        let read = |name: &str| {
            init.procs().proc_file(pid, name).ok_or_else(|| Error::check(format!("reading /proc/{pid}/{name}")))
        };
        let differs = |kind: &str| -> Result<bool> {
            let ours = ns::id(rustix::fs::CWD, &format!("/proc/self/ns/{kind}"));
            match (ours, init.procs().ns(pid, kind)) {
                (Ok(a), Ok(b)) => Ok(a != b),
                // A kernel without time namespaces has no such file, for either.
                (Err(_), Err(_)) => Ok(false),
                (_, Err(e)) | (Err(e), _) => Err(Error::sys(format!("reading /proc/{pid}/ns/{kind}"), e)),
            }
        };
        let mut ns = ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME
            | ThreadNameSpaceType::INTER_PROCESS_COMMUNICATION
            | ThreadNameSpaceType::NETWORK
            | ThreadNameSpaceType::CONTROL_GROUP;
        if differs("time")? {
            ns |= ThreadNameSpaceType::TIME;
        }
        let user = differs("user")?;
        let bounding = procfs::cap_bounding(&read("status")?)
            .ok_or_else(|| Error::check(format!("/proc/{pid}/status has no CapBnd line")))?;
        let (theirs, ours) =
            (read("cgroup")?, std::fs::read("/proc/self/cgroup").context("reading /proc/self/cgroup")?);
        let mounts_text = host_cgroup_mounts(&theirs, &ours)?;
        let mounts = Table::from_mountinfo(&mounts_text, std::process::id())?;
        let (mut cgroup2, mut cgroups_v1) = (None, Vec::new());
        for (v2, dir) in cgroup_dirs(&theirs, &ours, &mounts) {
            let fd = open_dir(&dir).context(format!("opening the init's cgroup {}", Shown(&dir)))?;
            if v2 { cgroup2 = Some(fd) } else { cgroups_v1.push(fd) }
        }
        let root = mounts.mounts.iter().find(|m| &*m.fs_type == b"cgroup2");
        let cgroup2_root = root.and_then(|m| open_dir(&m.mount_point).ok());
        Ok(Confine { ns, user, cgroup2, cgroups_v1, bounding, cgroup2_root })
    }

    pub fn cgroup2_root(&self) -> Option<BorrowedFd<'_>> {
        self.cgroup2_root.as_ref().map(|fd| fd.as_fd())
    }

    pub fn for_child(&self) -> ForChild<'_> {
        ForChild {
            ns: self.ns,
            user: self.user,
            cgroup2: self.cgroup2.as_ref().map(|fd| fd.as_fd()),
            cgroups_v1: self.cgroups_v1.iter().map(|fd| fd.as_fd()).collect(),
            bounding: self.bounding,
        }
    }
}

impl<'a> ForChild<'a> {
    /// The same, but joining this cgroup2 directory instead of the init's (the v1 hierarchies
    /// stay the init's).
    pub fn in_cgroup2(mut self, dir: BorrowedFd<'a>) -> Self {
        self.cgroup2 = Some(dir);
        self
    }

    /// The cgroup2 directory to join, taken out of what `join_cgroups` writes to: for a child
    /// started straight into it (`clone3` with CLONE_INTO_CGROUP).
    pub fn take_cgroup2(&mut self) -> Option<BorrowedFd<'a>> {
        self.cgroup2.take()
    }

    /// Joins the init's cgroups by writing to their `cgroup.procs`. In the forked child, first
    /// thing: the move needs our host privileges.
    pub fn join_cgroups(&self) -> rustix::io::Result<()> {
        for &dir in self.cgroup2.iter().chain(&self.cgroups_v1) {
            let procs = openat(dir, "cgroup.procs", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
            rustix::io::write(&procs, b"0")?;
        }
        Ok(())
    }

    /// Joins the init's namespaces through its pidfd (its user namespace only for the
    /// container's programs).
    pub fn join_namespaces(&self, pidfd: BorrowedFd<'_>, trust: Trust) -> rustix::io::Result<()> {
        let mut ns = self.ns;
        if self.user && matches!(trust, Trust::Container { .. }) {
            ns |= ThreadNameSpaceType::USER;
        }
        rustix::thread::move_into_thread_name_spaces(pidfd, ns)
    }

    /// Becomes `uid`/`gid` (the container's ids, as it sees them) and cuts the capabilities
    /// to the init's bounding set; `no_new_privs` if asked. Last thing before exec: joining
    /// namespaces and changing root need capabilities the container may not have.
    pub fn drop_privileges(&self, trust: Trust, uid: u32, gid: u32) -> rustix::io::Result<()> {
        let Trust::Container { no_new_privs } = trust else { return Ok(()) };
        use rustix::process::{Gid, Uid};
        use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
        // The bounding set first: dropping from it needs CAP_SETPCAP, which a uid other than 0
        // loses below. (It limits what exec grants, not what we hold now: CAP_SETUID stays.)
        for cap in 0..64u32 {
            if self.bounding & (1 << cap) == 0 {
                // Numbers past the kernel's last capability are refused: nothing to drop.
                match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap)) {
                    Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        rustix::thread::clear_ambient_capability_set()?;
        // A user namespace whose setgroups is "deny" refuses this; there are no groups to drop
        // there anyway.
        match set_thread_groups(&[]) {
            Ok(()) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(e),
        }
        let (gid, uid) = (Gid::from_raw(gid), Uid::from_raw(uid));
        set_thread_res_gid(gid, gid, gid)?;
        // All uids non-zero: the kernel clears the permitted and effective sets itself.
        set_thread_res_uid(uid, uid, uid)?;
        let mut sets = rustix::thread::capabilities(None)?;
        let keep = CapabilitySet::from_bits_retain(self.bounding);
        sets = CapabilitySets {
            effective: sets.effective & keep,
            permitted: sets.permitted & keep,
            inheritable: sets.inheritable & keep,
        };
        rustix::thread::set_capabilities(None, sets)?;
        if no_new_privs {
            rustix::thread::set_no_new_privs(true)?;
        }
        Ok(())
    }
}

/// The host's cgroup mounts that `cgroup_dirs` needs for a process whose /proc/PID/cgroup is
/// `theirs` (and `cgroup2_root`), as mountinfo lines. Looked for where they usually are (under
/// /sys/fs/cgroup, by controller) with statmount: reading all of our mountinfo costs the kernel
/// 18 ms on a host with 10 000 mounts. Where one is not found there, or statmount is missing,
/// all of it is read.
fn host_cgroup_mounts(theirs: &[u8], ours: &[u8]) -> Result<Vec<u8>> {
    use crate::sys::statmount::{statmount, top_mount_id};
    let at = |path: &[u8]| match top_mount_id(rustix::fs::CWD, path).and_then(statmount) {
        Ok(record) if record.mount_point() == path => Ok(Some(record.mountinfo_line())),
        Ok(_) | Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e),
    };
    let whole = || std::fs::read("/proc/self/mountinfo").context("reading /proc/self/mountinfo");
    cgroup_mounts(theirs, ours, at, whole)
}

/// `host_cgroup_mounts` with the reads given: `at`, the line of the topmost mount at a path if
/// one is mounted right there (an error: it cannot tell); `whole`, the whole table.
fn cgroup_mounts(
    theirs: &[u8],
    ours: &[u8],
    mut at: impl FnMut(&[u8]) -> std::result::Result<Option<Vec<u8>>, Errno>,
    whole: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let mut paths = vec![b"/sys/fs/cgroup".to_vec(), b"/sys/fs/cgroup/unified".to_vec()];
    for (ctrls, _) in procfs::cgroups(theirs).filter(|(ctrls, _)| !ctrls.is_empty()) {
        let names = ctrls.split(|&b| b == b',').map(|c| c.strip_prefix(b"name=").unwrap_or(c));
        paths.extend([ctrls].into_iter().chain(names).map(|c| [&b"/sys/fs/cgroup/"[..], c].concat()));
    }
    paths.sort_unstable();
    paths.dedup();
    let mut text = Vec::new();
    for path in &paths {
        match at(path) {
            Ok(line) => text.extend(line.unwrap_or_default()),
            Err(_) => return whole(),
        }
    }
    let found = Table::from_mountinfo(&text, std::process::id())?;
    let needed = procfs::cgroups(theirs)
        .filter(|&(ctrls, path)| ctrls.is_empty() || !procfs::cgroups(ours).any(|line| line == (ctrls, path)));
    if needed.map(|(ctrls, _)| ctrls).all(|ctrls| hierarchy_mount(ctrls, &found).is_some()) {
        return Ok(text);
    }
    whole()
}

/// The host's mount of the cgroup hierarchy of `ctrls` (a /proc/PID/cgroup line's second
/// field: empty for cgroup2), if the host has mounted it.
fn hierarchy_mount<'t, 'a>(ctrls: &[u8], host: &'t Table<'a>) -> Option<&'t crate::model::mountinfo::Mount<'a>> {
    host.mounts.iter().find(|m| {
        if ctrls.is_empty() {
            &*m.fs_type == b"cgroup2"
        } else {
            let opts = m.super_options();
            let opts: Vec<&[u8]> = opts.split(|&b| b == b',').collect();
            &*m.fs_type == b"cgroup" && ctrls.split(|&b| b == b',').all(|c| opts.contains(&c))
        }
    })
}

/// The init's cgroup directories in the host's cgroupfs, from its /proc/PID/cgroup (read on
/// the host: paths from the host's cgroup root) and the host's mount table: the cgroup2
/// directory (`0::/path`), and for each v1 hierarchy (`N:cpu,cpuacct:/path`) the directory
/// in the mount of those controllers. Each comes with whether it is the cgroup2 one.
///
/// Skipped: a hierarchy the host has not mounted, and one where the init is in our own cgroup
/// (`ours`, our /proc/self/cgroup): a child of ours starts there, and every write to a
/// `cgroup.procs`, even one that moves nothing, waits for an RCU grace period.
pub fn cgroup_dirs(cgroup: &[u8], ours: &[u8], host: &Table<'_>) -> Vec<(bool, Vec<u8>)> {
    let mut dirs = Vec::new();
    for (ctrls, path) in procfs::cgroups(cgroup) {
        if procfs::cgroups(ours).any(|line| line == (ctrls, path)) {
            continue;
        }
        let Some(m) = hierarchy_mount(ctrls, host) else { continue };
        // The path is from the cgroup root; the mount shows the part below its own root.
        let root = m.root();
        let root: &[u8] = if &*root == b"/" { b"" } else { &root };
        let Some(below) = path.strip_prefix(root) else { continue };
        let mut dir = m.mount_point.to_vec();
        if !below.is_empty() && below != b"/" {
            if dir.last() == Some(&b'/') {
                dir.pop();
            }
            if !below.starts_with(b"/") {
                dir.push(b'/');
            }
            dir.extend_from_slice(below);
        }
        dirs.push((ctrls.is_empty(), dir));
    }
    dirs
}

fn open_dir(path: &[u8]) -> rustix::io::Result<OwnedFd> {
    openat(rustix::fs::CWD, path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mountinfo::parse;

    const HOST: &[u8] = include_bytes!("../../tests/fixtures/mountinfo/host-hybrid-cgroups.txt");

    #[test]
    fn cgroup_directories_on_a_hybrid_host() {
        let host = Table::new(parse(HOST).unwrap());
        let cgroup = b"12:cpu:/ctr/init.scope\n13:cpu,cpuacct:/ctr/init.scope\n11:memory:/ctr/init.scope\n1:name=systemd:/ctr/init.scope\n0::/ctr/init.scope\n99:nosuch:/x\n";
        let all = cgroup_dirs(cgroup, b"0::/\n", &host);
        assert_eq!(all.iter().filter(|(v2, _)| *v2).count(), 1);
        let dirs: Vec<String> = all.into_iter().map(|(_, d)| String::from_utf8(d).unwrap()).collect();
        assert!(dirs.contains(&"/sys/fs/cgroup/unified/ctr/init.scope".to_string()), "{dirs:?}");
        assert!(dirs.contains(&"/sys/fs/cgroup/memory/ctr/init.scope".to_string()), "{dirs:?}");
        assert!(dirs.contains(&"/sys/fs/cgroup/cpu/ctr/init.scope".to_string()), "{dirs:?}");
        assert!(dirs.contains(&"/sys/fs/cgroup/systemd/ctr/init.scope".to_string()), "{dirs:?}");
        assert_eq!(dirs.len(), 4, "hierarchies the host has not mounted are skipped: {dirs:?}");
    }

    #[test]
    fn cgroup2_alone_and_the_root() {
        let host = Table::new(parse(b"30 1 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n").unwrap());
        assert_eq!(cgroup_dirs(b"0::/a/b\n", b"0::/\n", &host), [(true, b"/sys/fs/cgroup/a/b".to_vec())]);
        assert_eq!(cgroup_dirs(b"0::/\n", b"0::/x\n", &host), [(true, b"/sys/fs/cgroup".to_vec())]);
    }

    #[test]
    fn hierarchies_where_the_init_is_in_our_cgroup_are_not_joined() {
        let host = Table::new(parse(HOST).unwrap());
        let init = b"12:cpu:/ctr\n11:memory:/ctr\n1:name=systemd:/\n0::/ctr/init.scope\n";
        let ours = b"12:cpu:/ctr\n11:memory:/\n1:name=systemd:/\n0::/user.slice\n";
        let dirs: Vec<(bool, String)> =
            cgroup_dirs(init, ours, &host).into_iter().map(|(v2, d)| (v2, String::from_utf8(d).unwrap())).collect();
        assert_eq!(
            dirs,
            [
                (false, "/sys/fs/cgroup/memory/ctr".to_string()),
                (true, "/sys/fs/cgroup/unified/ctr/init.scope".to_string())
            ]
        );
        assert_eq!(cgroup_dirs(init, init, &host), [], "all ours: nothing to join");
    }

    /// `at` of `cgroup_mounts` on a table: the line of the last mount (the topmost, in a
    /// table without moves) at a path.
    fn at_in(table: &[u8]) -> impl FnMut(&[u8]) -> std::result::Result<Option<Vec<u8>>, Errno> + '_ {
        move |path| {
            let mut lines = table.split_inclusive(|&b| b == b'\n');
            Ok(lines.rfind(|l| parse(l).is_ok_and(|m| &*m[0].mount_point == path)).map(<[u8]>::to_vec))
        }
    }

    /// A hybrid host (cgroup v1 controllers and cgroup2 under /sys/fs/cgroup): the mounts found
    /// where they usually are give the same directories as the whole table, which is not read.
    #[test]
    fn cgroup_mounts_where_they_usually_are_give_what_the_table_gives() {
        let init = b"12:cpu:/ctr\n11:memory:/ctr\n9:pids:/ctr\n1:name=systemd:/ctr\n0::/ctr/init.scope\n";
        let ours = b"12:cpu:/\n11:memory:/\n9:pids:/\n1:name=systemd:/\n0::/\n";
        let found = cgroup_mounts(init, ours, at_in(HOST), || panic!("the whole table was read")).unwrap();
        let (found, full) = (Table::from_mountinfo(&found, 0).unwrap(), Table::from_mountinfo(HOST, 0).unwrap());
        assert_eq!(found.mounts.len(), 6, "/sys/fs/cgroup, unified, cpu, memory, pids, systemd");
        assert_eq!(cgroup_dirs(init, ours, &found), cgroup_dirs(init, ours, &full));
        assert_eq!(cgroup_dirs(init, ours, &found).len(), 5);
    }

    /// A hierarchy mounted elsewhere, or a kernel that cannot tell: the whole table is read.
    #[test]
    fn cgroup_mounts_elsewhere_read_the_whole_table() {
        let init = b"12:cpu:/ctr\n11:memory:/ctr\n0::/ctr\n";
        let moved = String::from_utf8_lossy(HOST).replace(" /sys/fs/cgroup/memory ", " /mnt/memory ");
        let whole = || Ok(b"whole".to_vec());
        assert_eq!(cgroup_mounts(init, b"", at_in(moved.as_bytes()), whole).unwrap(), b"whole");
        assert_eq!(cgroup_mounts(init, b"", |_| Err(Errno::NOSYS), whole).unwrap(), b"whole");
        assert_ne!(cgroup_mounts(init, b"", at_in(HOST), whole).unwrap(), b"whole");
    }

    /// The child of a real spawn, dropped to `uid` with a narrow bounding set: what its
    /// /proc/self/status says. Needs root: ignored by a plain `cargo test`, run by `make test`.
    fn dropped_to(uid: u32, no_new_privs: bool) -> String {
        use crate::sys::fork::{self, Exec, Forked};
        use std::io::Read;
        assert!(rustix::process::geteuid().is_root(), "this test needs root");
        // CAP_CHOWN (0), CAP_SETUID (7), CAP_NET_BIND_SERVICE (10) only.
        let child = ForChild {
            ns: ThreadNameSpaceType::empty(),
            user: false,
            cgroup2: None,
            cgroups_v1: Vec::new(),
            bounding: (1 << 0) | (1 << 7) | (1 << 10),
        };
        let exec = Exec::new(b"/bin/cat", &[b"/bin/cat", b"/proc/self/status"], &[]).unwrap();
        let (from_child, to_us) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let pid = match fork::fork().unwrap() {
            Forked::Parent(pid, _) => pid,
            Forked::Child => {
                let dropped = rustix::stdio::dup2_stdout(&to_us)
                    .and_then(|()| child.drop_privileges(Trust::Container { no_new_privs }, uid, uid));
                let _ = dropped.map(|()| exec.exec());
                fork::exit(127)
            }
        };
        drop(to_us);
        let mut out = String::new();
        std::fs::File::from(from_child).read_to_string(&mut out).unwrap();
        let status = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()).unwrap().unwrap();
        assert_eq!(status.1.exit_status(), Some(0), "{out}");
        out
    }

    fn field<'a>(status: &'a str, name: &str) -> &'a str {
        status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim()
    }

    #[test]
    #[ignore = "needs root: make test runs it"]
    fn root_keeps_only_the_bounding_set() {
        let status = dropped_to(0, true);
        assert_eq!(field(&status, "Uid:"), "0\t0\t0\t0");
        assert_eq!(field(&status, "CapBnd:"), "0000000000000481");
        assert_eq!(field(&status, "CapEff:"), "0000000000000481", "exec gives root its bounding set");
        assert_eq!(field(&status, "CapAmb:"), "0000000000000000");
        assert_eq!(field(&status, "NoNewPrivs:"), "1");
    }

    #[test]
    #[ignore = "needs root: make test runs it"]
    fn another_uid_ends_with_nothing() {
        let status = dropped_to(65534, false);
        assert_eq!(field(&status, "Uid:"), "65534\t65534\t65534\t65534");
        assert_eq!(field(&status, "Gid:"), "65534\t65534\t65534\t65534");
        assert_eq!(field(&status, "Groups:"), "");
        assert_eq!(field(&status, "CapBnd:"), "0000000000000481");
        assert_eq!(field(&status, "CapPrm:"), "0000000000000000");
        assert_eq!(field(&status, "NoNewPrivs:"), "0");
    }
}
