//! The fix against real systemd and the kernel's autofs, in throwaway containers, with the
//! restore simulated as tests/harness/restore describes. Each test shows the hang first.

mod common;

use std::path::PathBuf;

use common::{
    Container, Kept, require_containers, run, run_as_criu, run_env, statmount_reads_lines, stderr, stdout, whole_read,
};

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";
const ALL: [&str; 3] = [BINFMT, "/srv/data", "/srv/idle"];

/// Boots a container, puts a file on the tmpfs automounted at /srv/data and another on a
/// submount of it, and restores all three automounts. Checks that the restore broke them.
fn restored_container() -> Container {
    let ctr = Container::start();
    ctr.ok("echo kept > /srv/data/file && mkdir /srv/data/sub && mount -t tmpfs -o size=1m sub /srv/data/sub");
    ctr.ok("echo kept too > /srv/data/sub/file");
    ctr.restore(&ALL);
    for path in [BINFMT, "/srv/idle"] {
        assert_eq!(ctr.answers(path, 2), None, "{path} should hang after the restore");
    }
    let unit = "srv-idle.automount";
    assert!(ctr.journal(unit).contains("Automount point already active?"), "{}", ctr.journal(unit));
    ctr
}

/// The fix leaves every automount answering and what was on top the same superblock. Returns
/// what the run said.
fn fix_and_check(extra: &[(&str, &str)]) -> String {
    fix_and_check_under("", extra)
}

/// `fix_and_check`, the run started by `wrapper` (a command line that runs the rest), if any.
fn fix_and_check_under(wrapper: &str, extra: &[(&str, &str)]) -> String {
    require_containers();
    let ctr = restored_container();
    let data_top = ctr.at("/srv/data").pop().unwrap();
    assert_eq!(data_top.fs_type, "tmpfs");
    let kept = Kept::of(&ctr, &["/srv/data", "/srv/data/sub"], &["/srv/data/file", "/srv/data/sub/file"]);
    assert_eq!(ctr.ok("cat /srv/data/file /srv/data/sub/file"), "kept\nkept too\n");

    let out = if wrapper.is_empty() {
        run_as_criu("post-resume", &ctr.pid, extra)
    } else {
        let line = common::criu_line("post-resume", &ctr.pid, extra);
        let line = format!("exec {wrapper} {}", line.strip_prefix("exec ").unwrap());
        std::process::Command::new("bash").arg("-c").arg(line).env_clear().output().unwrap()
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "CRIU keeps stdout in its log; we say nothing there");
    let said = stderr(&out);
    for line in [
        "autofs-restart: proc-sys-fs-binfmt_misc.automount: restarted\n",
        "autofs-restart: srv-data.automount: restarted, tmpfs srv-data kept on top\n",
        "autofs-restart: srv-idle.automount: restarted\n",
    ] {
        assert!(said.contains(line), "{said}");
    }

    // Nothing added, nothing lost: the same superblocks on top, with their files; nothing left.
    kept.check(&ctr, "after the fix");
    let now = ctr.at("/srv/data");
    assert_eq!(now.len(), 2, "{now:?}");
    let (autofs, top) = (&now[0], &now[1]);
    assert_eq!(autofs.fs_type, "autofs");
    assert_eq!(top.fs_type, data_top.fs_type);
    let sub_now = ctr.at("/srv/data/sub");
    assert_eq!(sub_now.len(), 1, "the submount came back with its parent: {sub_now:?}");
    assert_eq!(sub_now[0].parent, top.id);

    // The automounts answer again, including the one that had a mount on top.
    for path in [BINFMT, "/srv/idle"] {
        assert_eq!(ctr.answers(path, 10), Some(true), "{path}");
    }
    ctr.ok("umount /srv/data/sub /srv/data");
    assert_eq!(ctr.answers("/srv/data", 10), Some(true), "/srv/data after its tmpfs went away");
    assert_eq!(ctr.at("/srv/data").len(), 2, "systemd mounted a new tmpfs on the new autofs mount");
    said
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn fixes_every_automount_and_keeps_what_is_on_top() {
    let syslog = common::Syslog::bind();
    let said = fix_and_check(&[("AUTOFS_RESTART_VERBOSE", "1"), ("AUTOFS_RESTART_SYSLOG", &syslog.path())]);
    // The host's log gets one line: what was restarted, not the steps.
    let told = syslog.messages();
    assert_eq!(told.len(), 1, "{told:?}");
    let told = &told[0];
    assert!(told.starts_with("<30>autofs-restart[") && told.contains("]: post-resume, container pid "), "{told}");
    for unit in
        ["proc-sys-fs-binfmt_misc.automount: restarted", "srv-data.automount: restarted, tmpfs srv-data kept on top"]
    {
        assert!(told.contains(unit), "{told}");
    }
    assert!(!told.contains("the container's mount table"), "no step: {told}");
    let read = said.lines().find_map(|l| l.strip_prefix("autofs-restart: the container's mount table: ")).unwrap_or("");
    if statmount_reads_lines() {
        // The part of the table a plan needs: far fewer mounts than the container has.
        let counts: Vec<usize> = read.split(' ').filter_map(|w| w.parse().ok()).collect();
        assert!(read.ends_with(" mounts read by statmount") && counts.len() == 2 && counts[0] < counts[1], "{said}");
        assert!(said.contains("checking the mounts at 3 path(s), read by statmount\n"), "{said}");
    } else {
        assert_eq!(read, whole_read(), "{said}");
        let check = format!("checking the mounts against the container's mount table: {}\n", whole_read());
        assert!(said.contains(&check), "{said}");
    }
    // From the host's or the container's: whichever has fewer mounts now (tests run side by side).
    assert!(said.contains("set tmpfs srv-data aside (new API, staged in a namespace copied from the "), "{said}");
}

/// A restored automount that is private in the container (as under a runtime that makes its
/// mounts private), its superblock made in the restorer's mount namespace as CRIU's mount-v2
/// makes it: from 6.19 the kernel refuses every access at once (EPERM) where older ones hang.
/// The fix makes it answer on both: the new mount is the container's own.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_restored_automount_private_in_the_container_is_fixed_too() {
    require_containers();
    let ctr = Container::start();
    ctr.restore_from_outside(&["/srv/idle"]);
    ctr.ok("mount --make-private /srv/idle");
    if common::refuses_foreign_private_triggers() {
        ctr.assert_refused(None, "/srv/idle");
    } else {
        assert_eq!(ctr.answers("/srv/idle", 2), None, "/srv/idle should hang after the restore");
    }
    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("autofs-restart: srv-idle.automount: restarted\n"), "{said}");
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true));
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn fixes_with_the_legacy_kernel_api_too() {
    let said = fix_and_check(&[("AUTOFS_RESTART_KERNEL_API", "legacy"), ("AUTOFS_RESTART_VERBOSE", "1")]);
    assert!(said.contains("set tmpfs srv-data aside (legacy API, staged in the container's /run)"), "{said}");
    assert!(said.contains("the container's mount table: its whole mountinfo read (legacy API)\n"), "{said}");
    assert!(
        said.contains(
            "checking the mounts against the container's mount table: its whole mountinfo read (legacy API)\n"
        ),
        "{said}"
    );
}

/// On a kernel without listmount (6.8), and without statmount, the plan and the check read the
/// whole mountinfo by themselves, and the fix is the same.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn on_a_kernel_without_listmount_or_statmount_the_whole_mountinfo_is_read() {
    let enosys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/harness/enosys");
    let verbose = [("AUTOFS_RESTART_VERBOSE", "1")];
    let whole = "its whole mountinfo read (listmount and statmount: ";
    // listmount (458) refused: the plan reads the whole table, the check still each stack
    // (where statmount gives whole lines).
    let said = fix_and_check_under(&format!("{enosys} 458"), &verbose);
    assert!(said.contains(&format!("the container's mount table: {whole}")), "{said}");
    if statmount_reads_lines() {
        assert!(said.contains("checking the mounts at 3 path(s), read by statmount\n"), "{said}");
    } else {
        // The check's statmount lacks a field of a line, and its whole read says why the
        // table's was whole: listmount refused.
        let check = format!("checking the mounts against the container's mount table: {whole}ENOSYS)\n");
        assert!(said.contains(&check), "{said}");
    }
    // statmount (457) refused too: the check reads the whole table as well.
    let said = fix_and_check_under(&format!("{enosys} 457,458"), &verbose);
    assert!(said.contains(&format!("the container's mount table: {whole}")), "{said}");
    assert!(said.contains(&format!("checking the mounts against the container's mount table: {whole}")), "{said}");
}

/// Mounts of the host's own (bind mounts on a private tmpfs), removed when dropped: a host
/// running many containers has more mounts than any one of them. Made by system calls: under
/// emulation a `mount` program costs a third of a second.
struct HostMounts(PathBuf);

impl HostMounts {
    fn new(n: usize) -> HostMounts {
        use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_bind, mount_change};
        let top = PathBuf::from(format!("/run/autofs-restart-test.host-mounts.{}", std::process::id()));
        std::fs::create_dir(&top).unwrap();
        let guard = HostMounts(top.clone());
        mount("host-mounts", &top, "tmpfs", MountFlags::empty(), None).unwrap();
        mount_change(&top, MountPropagationFlags::PRIVATE).unwrap();
        std::fs::create_dir(top.join("src")).unwrap();
        for i in 1..=n {
            let at = top.join(i.to_string());
            std::fs::create_dir(&at).unwrap();
            mount_bind(top.join("src"), &at).unwrap();
        }
        guard
    }
}

impl Drop for HostMounts {
    /// A lazy unmount of the tmpfs takes the bind mounts on it along.
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The staging namespace is copied from whichever of the host's and the container's has fewer
/// mounts: the test containers have fewer than this host has once it has 100 more. Counting
/// them takes listmount (6.8); before it, the host's is copied without counting.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn on_a_host_with_more_mounts_the_staging_is_copied_from_the_container() {
    let _host = HostMounts::new(100);
    let said = fix_and_check(&[("AUTOFS_RESTART_VERBOSE", "1")]);
    let from = if common::kernel_at_least(6, 8) { "container's" } else { "host's" };
    assert!(
        said.contains(&format!("set tmpfs srv-data aside (new API, staged in a namespace copied from the {from})")),
        "{said}"
    );
}

/// How systemctl is started, as strace sees our process (the clone and fork calls): with the new
/// API, by clone3 straight into the init's cgroup; where the kernel refuses that (ENOSYS
/// before 5.3 or under a seccomp filter such as Docker's default, EINVAL before 5.7, EPERM
/// under other filters; injected by strace) and with the legacy API, by fork, the child writing itself into cgroup.procs.
/// glibc's fork is a clone(2), musl's a fork(2): either counts.
/// Each way fixes the container; a refusal is not tried again in the same run.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn programs_start_in_their_cgroup_by_clone3_else_by_fork() {
    require_containers();
    common::require_program("strace");
    // One container, restored again for each case: each run fixes what a restore broke.
    let ctr = restored_container();
    let cases = [("new", ""), ("new", "ENOSYS"), ("new", "EINVAL"), ("new", "EPERM"), ("legacy", "")];
    for (i, (api, refused)) in cases.into_iter().enumerate() {
        if i > 0 {
            // What the last case's accesses mounted comes off first, as it was before.
            ctr.ok(&format!("umount {BINFMT} /srv/idle"));
            ctr.restore(&ALL);
            assert_eq!(ctr.answers("/srv/idle", 2), None, "/srv/idle should hang after the restore");
        }
        let log = format!("/tmp/autofs-restart-test.strace.{}", std::process::id());
        let inject = if refused.is_empty() { String::new() } else { format!("-e inject=clone3:error={refused}") };
        let run = common::criu_line("post-resume", &ctr.pid, &[("AUTOFS_RESTART_KERNEL_API", api)]);
        let line = format!("exec strace -qq -o {log} -e trace=clone,clone3,fork,vfork {inject} /usr/bin/{}", &run[5..]);
        let out = std::process::Command::new("bash").arg("-c").arg(&line).env_clear().output().unwrap();
        let traced = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let case = format!("{api} {refused}");
        assert_eq!(out.status.code(), Some(0), "{case}: {}\n{traced}", stderr(&out));
        assert_eq!(stderr(&out).matches(": restarted").count(), 3, "{case}: {}", stderr(&out));
        for path in ALL {
            assert_eq!(ctr.answers(path, 10), Some(true), "{case}: {path}");
        }
        let forked = |l: &&&str| ["clone(", "fork(", "vfork("].iter().any(|call| l.starts_with(call));
        let calls: Vec<&str> = traced.lines().filter(|l| l.starts_with("clone") || l.contains("fork(")).collect();
        let (clone3, forks) = (calls.iter().filter(|l| l.starts_with("clone3(")), calls.iter().filter(forked));
        let (clone3, forks): (Vec<&&str>, Vec<&&str>) = (clone3.collect(), forks.collect());
        match (api, refused) {
            ("new", "") => {
                assert!(!clone3.is_empty() && forks.is_empty(), "{case}: {traced}");
                for call in clone3 {
                    assert!(call.contains("CLONE_INTO_CGROUP") && !call.contains("= -1"), "{case}: {call}");
                }
            }
            ("new", _) => {
                assert_eq!(clone3.len(), 1, "{case}: tried once, then fork for the rest of the run: {traced}");
                assert!(clone3[0].contains(&format!("= -1 {refused}")), "{case}: {traced}");
                assert!(!forks.is_empty(), "{case}: {traced}");
            }
            _ => assert!(clone3.is_empty() && !forks.is_empty(), "{case}: {traced}"),
        }
    }
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_unit_of_the_command_line_is_the_only_one_restarted() {
    require_containers();
    let ctr = Container::start();
    ctr.restore(&ALL);
    assert_eq!(ctr.answers("/srv/idle", 2), None);
    let binfmt_before = ctr.at(BINFMT);

    let out = run(&["restart", "--pid", &ctr.pid, "--unit", "/srv/idle"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "autofs-restart: srv-idle.automount: restarted\n");
    assert_eq!(ctr.at(BINFMT), binfmt_before, "binfmt_misc was not to be touched");
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true));

    let out = run(&["restart", "--pid", &ctr.pid, "--unit", "srv-nothing"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "autofs-restart: srv-nothing.automount: failed: no autofs mount of the container's systemd belongs to this unit\n"
    );
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn dry_run_and_status_change_nothing() {
    require_containers();
    let ctr = restored_container();
    let before = ctr.mountinfo();

    let out = run(&["restart", "--pid", &ctr.pid, "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("srv-data.automount: would restart it (autofs "), "{said}");
    assert!(said.contains(", setting tmpfs srv-data aside and putting it back"), "{said}");
    assert_eq!(said.lines().count(), 3, "{said}");

    let out = run(&["status", "--pid", &ctr.pid]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["WHERE", "TYPE", "MASTER", "ON", "TOP"]);
    assert!(rows.contains(&vec![BINFMT, "direct", "systemd", "proc-sys-fs-binfmt_misc.automount", "-"]), "{table}");
    assert!(
        rows.contains(&vec![
            "/srv/data",
            "direct",
            "systemd",
            "srv-data.automount",
            "tmpfs",
            "srv-data",
            "+",
            "1",
            "mount(s)",
            "inside"
        ]),
        "{table}"
    );
    assert!(rows.contains(&vec!["/srv/idle", "direct", "systemd", "srv-idle.automount", "-"]), "{table}");

    // The part of the table read by statmount says what the whole mountinfo says.
    let legacy = [("AUTOFS_RESTART_KERNEL_API", "legacy")];
    assert_eq!(stdout(&run_env(&["status", "--pid", &ctr.pid], &legacy)), table);
    assert_eq!(stderr(&run_env(&["restart", "--pid", &ctr.pid, "--dry-run"], &legacy)), said);

    assert_eq!(ctr.mountinfo(), before);
    assert_eq!(ctr.answers("/srv/idle", 2), None, "still broken: nothing was done");
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn probe_triggers_each_automount_from_inside() {
    require_containers();
    let ctr = Container::start();
    ctr.restore(&[BINFMT]);
    let out = run(&["restart", "--pid", &ctr.pid, "--unit", "proc-sys-fs-binfmt_misc", "--probe", "-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let top = ctr.at(BINFMT);
    assert_eq!(top.iter().map(|m| m.fs_type.as_str()).collect::<Vec<_>>(), ["autofs", "binfmt_misc"]);
    assert!(ctr.journal("proc-sys-fs-binfmt_misc.automount").contains("Got automount request"));
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_container_whose_init_is_not_systemd_has_nothing_to_restart() {
    require_containers();
    let mut child = std::process::Command::new("unshare")
        .args(["--pid", "--mount", "--fork", "--kill-child", "sleep", "60"])
        .spawn()
        .unwrap();
    // unshare's child is the new namespace's init.
    let init = (0..100)
        .find_map(|_| {
            let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap_or_default();
            let pid = kids.split_whitespace().next().map(String::from);
            if pid.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            pid
        })
        .expect("unshare's child");
    let out = run_as_criu("post-resume", &init, &[]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "quiet when there is nothing to do: {}", stderr(&out));
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_failed_or_hung_restart_puts_everything_back_and_exits_1() {
    require_containers();
    let ctr = restored_container();
    let kept = Kept::of(&ctr, &["/srv/data", "/srv/data/sub"], &["/srv/data/file", "/srv/data/sub/file"]);

    for (fault, extra, said) in [
        (
            "echo 'Job for srv-data.automount failed.' >&2; exit 1",
            &[][..],
            "autofs-restart: srv-data.automount: failed restarting: systemctl restart: exit status: 1: \
             Job for srv-data.automount failed.\n",
        ),
        (
            "exec sleep 600",
            &[("AUTOFS_RESTART_TIMEOUT", "1")][..],
            "autofs-restart: srv-data.automount: failed restarting: \
             systemctl restart proc-sys-fs-binfmt_misc.automount srv-data.automount srv-idle.automount: \
             no answer in 1 s, killed it\n",
        ),
    ] {
        ctr.inject_systemctl_fault(fault);
        let out = run_as_criu("post-resume", &ctr.pid, extra);
        assert_eq!(out.status.code(), Some(1), "{fault}: {}", stderr(&out));
        let lines = stderr(&out);
        assert!(lines.contains(said), "{fault}: {lines}");
        assert_eq!(lines.lines().count(), 3, "one line per unit: {lines}");
        // The tree went back on the stale mount: the same table, the same superblock, the file.
        kept.check(&ctr, fault);
        assert_eq!(ctr.ok("pgrep -c -x sleep || true"), "0\n", "{fault}: the hung systemctl was killed");
    }

    // With the real systemctl back, the same container is fixed.
    ctr.heal_systemctl();
    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true));
    assert_eq!(ctr.ok("cat /srv/data/file"), "kept\n");
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_stack_of_mounts_comes_back_in_order() {
    require_containers();
    let ctr = Container::start();
    ctr.ok("echo lower > /srv/data/file && mount -t tmpfs -o size=1m upper /srv/data && echo upper > /srv/data/file");
    ctr.restore(&["/srv/data"]);
    let before = ctr.at("/srv/data");
    let kinds: Vec<&str> = before.iter().map(|m| m.fs_type.as_str()).collect();
    assert_eq!(kinds, ["autofs", "tmpfs", "tmpfs"]);
    let kept = Kept::of(&ctr, &["/srv/data"], &["/srv/data/file"]);

    for api in ["new", "legacy"] {
        let out = run_as_criu("post-resume", &ctr.pid, &[("AUTOFS_RESTART_KERNEL_API", api)]);
        assert_eq!(out.status.code(), Some(0), "{api}: {}", stderr(&out));
        assert!(stderr(&out).contains("srv-data.automount: restarted, tmpfs srv-data, tmpfs upper kept on top\n"));
        let now = ctr.at("/srv/data");
        let tops = |s: &[common::MountLine]| s[1..].iter().map(|m| (m.dev.clone(), m.root.clone())).collect::<Vec<_>>();
        assert_eq!(tops(&now), tops(&before), "{api}: the same superblocks, in the same order");
        assert_eq!(ctr.ok("cat /srv/data/file"), "upper\n");
        kept.check(&ctr, api);
    }
    ctr.ok("umount /srv/data");
    assert_eq!(ctr.ok("cat /srv/data/file"), "lower\n");
    ctr.ok("umount /srv/data");
    assert_eq!(ctr.answers("/srv/data", 10), Some(true));
}

/// systemd is told by what it is, not where it lives (NixOS's /nix/store/..., another
/// prefix): here a copy of it at another path, under another name, is the container's init.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_systemd_installed_elsewhere_is_still_systemd() {
    require_containers();
    let ctr = Container::start_env(&[("CONTAINER_SYSTEMD", "/opt/elsewhere/init")]);
    let exe = std::fs::read_link(format!("/proc/{}/exe", ctr.pid)).unwrap();
    assert_eq!(exe.to_str(), Some("/opt/elsewhere/init"));
    ctr.restore(&["/srv/idle"]);
    assert_eq!(ctr.answers("/srv/idle", 2), None, "/srv/idle should hang after the restore");
    let table = stdout(&run(&["status", "--pid", &ctr.pid]));
    assert!(table.lines().any(|l| l.contains("systemd srv-idle.automount")), "{table}");

    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("autofs-restart: srv-idle.automount: restarted\n"), "{}", stderr(&out));
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true));
}

/// A few hundred automount units in one container, restored and fixed as CRIU runs the
/// stages: pre-resume holds them all; post-resume, past the held mounts it reads below, chooses
/// from every mount again, restarts them all in one `systemctl restart` (their names fit one
/// command line), and each is fixed.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn two_hundred_units_in_one_systemctl_call() {
    require_containers();
    const N: usize = 200;
    let ctr = Container::start();
    ctr.ok(&format!(
        "for i in $(seq {N}); do
             printf '[Automount]\\nWhere=/srv/many/u%s\\n' $i > /etc/systemd/system/srv-many-u$i.automount
             printf '[Mount]\\nWhat=u%s\\nWhere=/srv/many/u%s\\nType=tmpfs\\n' $i $i > /etc/systemd/system/srv-many-u$i.mount
         done
         systemctl daemon-reload && systemctl start $(seq -f 'srv-many-u%g.automount' {N})"
    ));
    let paths: Vec<String> = (1..=N).map(|i| format!("/srv/many/u{i}")).collect();
    ctr.restore(&paths.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(ctr.answers("/srv/many/u7", 2), None, "a restored unit should hang");
    // Every restart call, with its number of arguments.
    ctr.inject_systemctl_fault("echo \"$#\" >> /run/restart-calls");
    let kept = Kept::of(&ctr, &[], &[]);

    let out = run_as_criu("pre-resume", &ctr.pid, &[]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""), "pre-resume is silent");
    let out = run_as_criu("post-resume", &ctr.pid, &[("AUTOFS_RESTART_VERBOSE", "1")]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let read = said.lines().find(|l| l.contains("the container's mount table: ")).unwrap_or_default();
    if statmount_reads_lines() {
        assert!(read.contains(" mounts read by statmount") && !read.contains("held"), "{said}");
    } else {
        assert!(read.ends_with(whole_read()), "{said}");
    }
    // The container's three units of the harness, and the N.
    assert_eq!(said.lines().filter(|l| l.ends_with(".automount: restarted")).count(), N + 3, "{said}");
    assert_eq!(ctr.ok("cat /run/restart-calls"), format!("{}\n", N + 3 + 1), "one call: restart and every unit");
    kept.check(&ctr, "after the fix");
    for path in ["/srv/many/u7", "/srv/many/u200"] {
        assert_eq!(ctr.answers(path, 10), Some(true), "{path}");
    }
}
