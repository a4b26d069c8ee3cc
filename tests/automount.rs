//! The autofs package's automount daemon as the master, in throwaway systemd containers.

mod common;

use common::{Container, Kept, require_containers, run, run_as_criu, run_env, stderr};

/// The daemon must be on the machine: `.ci/run` installs the autofs package.
fn require_automount() {
    assert!(
        std::path::Path::new("/usr/sbin/automount").exists(),
        "this test needs /usr/sbin/automount (apt-get install autofs)"
    );
}

/// How the tests start the daemon: as Debian's service, or kept alive by a supervisor of the
/// test's own (a shell loop around `automount -f`, which stays in the loop's process group).
const BY_SYSTEMD: &str = "systemctl start autofs.service";
const SUPERVISED: &str = "setsid sh -c 'while true; do automount -f; sleep 0.1; done' </dev/null >/dev/null 2>&1 &
    while ! grep -q ' /srv/ind ' /proc/self/mountinfo; do sleep 0.05; done";

/// After a real restore every task has its old pid, and the pid namespace's counter stands
/// where CRIU left it: the next processes of the container may be given the killed daemon's
/// pid again (issue 34: "program is already running"). The tests set the counter so that they
/// are. `reuse-pid`, in the container, writes the value a test left in /run/reuse-pid (once)
/// to `ns_last_pid`, just before the daemon's start: as an `ExecStartPre=` of Debian's service,
/// or in the supervisor's loop. A daemon we start again ourselves: `set_pid_counter`.
const REUSE_PID: &str = r#"printf '%s\n' '#!/bin/sh' 'if [ -e /run/reuse-pid ]; then' \
        'read -r last < /run/reuse-pid; rm /run/reuse-pid; echo "$last" > /proc/sys/kernel/ns_last_pid' 'fi' \
        > /usr/local/sbin/reuse-pid
    chmod +x /usr/local/sbin/reuse-pid"#;

fn by_systemd_reusing_pids() -> String {
    format!(
        r"{REUSE_PID}
    mkdir -p /etc/systemd/system/autofs.service.d
    printf '[Service]\nExecStartPre=/usr/local/sbin/reuse-pid\n' > /etc/systemd/system/autofs.service.d/reuse-pid.conf
    systemctl daemon-reload
    {BY_SYSTEMD}"
    )
}

fn supervised_reusing_pids() -> String {
    format!(
        r"{REUSE_PID}
    setsid sh -c 'while true; do /usr/local/sbin/reuse-pid; automount -f; sleep 0.1; done' </dev/null >/dev/null 2>&1 &
    while ! grep -q ' /srv/ind ' /proc/self/mountinfo; do sleep 0.05; done"
    )
}

/// The counter's value for the process started `forks` forks from then to get `pid` (in the
/// container), the pids in between free, as they are once the old daemon is gone.
fn counter_for(ctr: &Container, pid: &str, forks: u32) -> u32 {
    let pid: u32 = pid.parse().unwrap();
    for between in pid - forks..pid {
        assert_eq!(ctr.sh(&format!("test -e /proc/{between}")).status.code(), Some(1), "pid {between} is taken");
    }
    pid - forks - 1
}

/// Has `reuse-pid` set the counter at the daemon's next start (see `counter_for`).
fn reuse_pid_at_next_start(ctr: &Container, pid: &str, forks: u32) {
    ctr.ok(&format!("echo {} > /run/reuse-pid", counter_for(ctr, pid, forks)));
}

/// Sets the counter now (see `counter_for`). `echo` is the shell's own: nothing of the
/// container forks after the write.
fn set_pid_counter(ctr: &Container, pid: &str, forks: u32) {
    ctr.ok(&format!("echo {} > /proc/sys/kernel/ns_last_pid", counter_for(ctr, pid, forks)));
}

/// How many processes of ours the release of the old daemon's superblocks starts in the
/// container's pid namespace, after its death and before a new start: before Linux 6.6, one,
/// whose wait reads the kernel's counter of waits (`work/tokens.rs`); after, none.
fn forks_of_a_release() -> u32 {
    u32::from(!common::kernel_at_least(6, 6))
}

/// A process's start time (field 22 of /proc/PID/stat): a new process under an old pid has
/// another.
fn started(ctr: &Container, pid: &str) -> String {
    ctr.ok(&format!("cut -d' ' -f22 /proc/{pid}/stat"))
}

/// A container whose daemon (started by `start`) serves a direct map (`/srv/direct`,
/// triggered, so a bind sits on it; `/srv/direct-idle`, never triggered) and an indirect map
/// (`/srv/ind`, with key `k` mounted inside it). The two direct mounts are then restored.
fn restored_daemon_container(start: &str) -> Container {
    restored_daemon_container_with(start, None)
}

fn restored_daemon_container_with(start: &str, init: Option<&str>) -> Container {
    let ctr = Container::start_with(init);
    ctr.ok(&format!(
        "mkdir -p /srv/data-d /srv/data-i && echo direct > /srv/data-d/f && echo indirect > /srv/data-i/f
         printf '/- /etc/auto.direct\\n/srv/ind /etc/auto.ind\\n' > /etc/auto.master
         printf '/srv/direct -fstype=bind :/srv/data-d\\n/srv/direct-idle -fstype=bind :/srv/data-d\\n' > /etc/auto.direct
         echo 'k -fstype=bind :/srv/data-i' > /etc/auto.ind
         {start}
         cat /srv/direct/f /srv/ind/k/f >/dev/null"
    ));
    ctr.restore(&["/srv/direct", "/srv/direct-idle"]);
    assert_eq!(ctr.answers("/srv/direct-idle", 2), None, "the restored direct mount should hang");
    if start == BY_SYSTEMD {
        let journal = ctr.journal("autofs.service");
        assert!(journal.contains("can't find map entry for"), "{journal}");
    }
    ctr
}

/// The live automount processes (an init that is not systemd may leave the old one a zombie).
/// What must not change under a daemon restart: which mounts, on which superblocks and roots
/// (the autofs mounts' options do change: they name the new daemon's pipe).
fn same(mounts: &[common::MountLine]) -> Vec<(String, String, String)> {
    mounts.iter().map(|m| (m.id.clone(), m.dev.clone(), m.root.clone())).collect()
}

fn daemons(ctr: &Container) -> Vec<String> {
    ctr.ok("ps -eo pid=,stat=,comm= | awk '$3 == \"automount\" && $2 !~ /^Z/ { print $1 }'")
        .lines()
        .map(String::from)
        .collect()
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_daemon_run_by_systemd_is_killed_and_started_again_keeping_every_mount() {
    // Debian's service forks once: the daemon is its first process's child.
    fixed_keeping_every_mount(&by_systemd_reusing_pids(), 1, "autofs.service: automount (pid ");
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_supervised_daemon_is_killed_and_its_supervisor_starts_a_new_one() {
    fixed_keeping_every_mount(&supervised_reusing_pids(), 0, "under pid ");
}

/// The daemon started by `start` is restored, and its successor is given its pid (`forks`:
/// how many of the start's processes come before the daemon itself).
fn fixed_keeping_every_mount(start: &str, forks: u32, said_restarted: &str) {
    require_containers();
    require_automount();
    let ctr = restored_daemon_container(start);
    let before = ctr.mountinfo();
    let kept = Kept::of(&ctr, &["/srv/direct", "/srv/ind/k"], &["/srv/direct/f", "/srv/ind/k/f"]);
    let direct = ctr.at("/srv/direct");
    let key = ctr.at("/srv/ind/k");
    assert_eq!(key.len(), 1);
    let old = daemons(&ctr);
    assert_eq!(old.len(), 1);
    let out = run(&["status", "--pid", &ctr.pid]);
    let table = common::stdout(&out);
    let direct_row = table.lines().find(|l| l.starts_with("/srv/direct ")).unwrap_or_else(|| panic!("{table}"));
    assert!(direct_row.contains("(automount)"), "the master is the daemon, not its supervisor: {table}");

    let out = run(&["restart", "--pid", &ctr.pid, "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("would SIGKILL it and start it again through "), "{}", stderr(&out));
    assert_eq!(daemons(&ctr), old, "a dry run touches nothing");

    let was = started(&ctr, &old[0]);
    reuse_pid_at_next_start(&ctr, &old[0], forks);
    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stderr(&out);
    let line = said.lines().find(|l| l.contains(said_restarted)).unwrap_or_else(|| panic!("{said}"));
    let served: std::collections::BTreeSet<&str> = line.split_once("serving ").unwrap().1.split(", ").collect();
    assert_eq!(served, ["/srv/direct", "/srv/direct-idle", "/srv/ind"].into(), "{line}");

    // Nothing unmounted: the same mounts, ids and superblocks, at the direct and indirect mounts.
    let after = ctr.mountinfo_settled();
    assert_eq!(after.len(), before.len(), "mount count; {}\n{said}", common::mounts_changed(&before, &after));
    assert_eq!(same(&ctr.at("/srv/direct")), same(&direct));
    assert_eq!(same(&ctr.at("/srv/ind/k")), same(&key));
    assert_ne!(ctr.at("/srv/direct")[0].option("pipe_ino"), direct[0].option("pipe_ino"), "served through a new pipe");
    assert_eq!(daemons(&ctr), old, "exactly one daemon, given the old one's pid");
    assert_ne!(started(&ctr, &old[0]), was, "a new process");
    kept.check(&ctr, "after the daemon's restart");
    assert_eq!(ctr.answers("/srv/direct-idle", 10), Some(true));
    assert_eq!(ctr.ok("cat /srv/direct/f /srv/ind/k/f"), "direct\nindirect\n");
}

/// Started by hand from inside the container's cgroup, with its own argv and environment: it
/// daemonises, and its parent becomes the init.
const BY_HAND: &str =
    "echo $$ > /sys/fs/cgroup/cgroup.procs && cd /srv && FOO=bar setsid automount -t 600 </dev/null >/dev/null 2>&1
    while ! grep -q ' /srv/ind ' /proc/self/mountinfo; do sleep 0.05; done";

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_daemon_that_daemonised_itself_is_started_again_as_it_was() {
    require_containers();
    require_automount();
    // An init that reaps, as a container's must: the killed daemon's pid is then free again.
    let reaper = format!("/bin/dash {}/tests/harness/reaper", env!("CARGO_MANIFEST_DIR"));
    let ctr = restored_daemon_container_with(BY_HAND, Some(&reaper));
    let before = ctr.mountinfo();
    let direct = ctr.at("/srv/direct");
    let old = daemons(&ctr);
    assert_eq!(old.len(), 1);
    let describe = |pid: &str| {
        ctr.ok(&format!(
            "tr '\\0' ' ' < /proc/{pid}/cmdline; echo; grep -z '^FOO=' /proc/{pid}/environ | tr '\\0' '\\n'
             cat /proc/{pid}/cgroup; ps -o ppid=,sid= -p {pid}"
        ))
    };
    let was = describe(&old[0]);
    assert!(was.starts_with("automount -t 600 \nFOO=bar\n"), "{was}");

    // Our start forks once (the daemon's first process), as a real restore may leave the counter.
    let old_start = started(&ctr, &old[0]);
    set_pid_counter(&ctr, &old[0], 1 + forks_of_a_release());
    let out = run_as_criu("post-resume", &ctr.pid, &[("AUTOFS_RESTART_PROBE", "1")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(": restarted (now pid "), "{}", stderr(&out));

    let now = daemons(&ctr);
    assert_eq!(now, old, "exactly one daemon, given the old one's pid");
    assert_ne!(started(&ctr, &now[0]), old_start, "a new process");
    // The same argv, environment, cgroup; a child of the init, leading its own session.
    let is = describe(&now[0]);
    let (was_lines, is_lines): (Vec<&str>, Vec<&str>) = (was.lines().collect(), is.lines().collect());
    assert_eq!(is_lines[..is_lines.len() - 1], was_lines[..was_lines.len() - 1], "{is}");
    let ids: Vec<&str> = is_lines.last().unwrap().split_whitespace().collect();
    assert_eq!(ids, ["1", now[0].as_str()], "parent and session");

    // The probe triggered the idle direct mount from inside: its bind is the one new mount.
    let after = ctr.mountinfo_settled();
    assert_eq!(after.len(), before.len() + 1, "mount count; {}", common::mounts_changed(&before, &after));
    let idle: Vec<String> = ctr.at("/srv/direct-idle").into_iter().map(|m| m.fs_type).collect();
    assert_eq!(idle, ["autofs", "overlay"]);
    assert_eq!(same(&ctr.at("/srv/direct")), same(&direct));
    assert_eq!(ctr.ok("cat /srv/direct/f /srv/ind/k/f"), "direct\nindirect\n");
}

/// The same daemon kept in the foreground (`-f`) by a shell that went, as under tini or a
/// shell that then sleeps: started again in the foreground, not waited for as a daemonising
/// start is (it never returns), writing where the old one wrote.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_daemon_in_the_foreground_under_the_init_is_started_again_so() {
    require_containers();
    require_automount();
    let reaper = format!("/bin/dash {}/tests/harness/reaper", env!("CARGO_MANIFEST_DIR"));
    let start = "echo $$ > /sys/fs/cgroup/cgroup.procs && cd /srv
        setsid automount -f -t 600 </dev/null >/run/automount.log 2>&1 &
        while ! grep -q ' /srv/ind ' /proc/self/mountinfo; do sleep 0.05; done";
    let ctr = restored_daemon_container_with(start, Some(&reaper));
    let old = daemons(&ctr);
    assert_eq!(old.len(), 1);
    let describe = |pid: &str| {
        ctr.ok(&format!(
            "tr '\\0' ' ' < /proc/{pid}/cmdline; echo; readlink /proc/{pid}/fd/1 /proc/{pid}/fd/2; ps -o ppid= -p {pid}"
        ))
    };
    let was = describe(&old[0]);
    assert!(was.starts_with("automount -f -t 600 \n/run/automount.log\n/run/automount.log\n"), "{was}");

    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(": restarted (now pid "), "{}", stderr(&out));
    let now = daemons(&ctr);
    assert_eq!(now.len(), 1, "exactly one daemon: {now:?}");
    assert_ne!(now, old);
    // As it was: argv, its output; a child of the init once our run ended.
    assert_eq!(describe(&now[0]).lines().take(3).collect::<Vec<_>>(), was.lines().take(3).collect::<Vec<_>>());
    assert_eq!(describe(&now[0]).lines().nth(3).map(str::trim), Some("1"), "its parent");
    assert_eq!(ctr.ok("cat /srv/direct/f /srv/direct-idle/f /srv/ind/k/f"), "direct\ndirect\nindirect\n");
}

/// A restarted daemon takes the same superblocks over, so a private nested namespace's copies
/// stay served: with `skip`, only the container's systemd automount units (whose restart would
/// orphan their copies) are left alone; the daemon is restarted.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn private_copies_of_a_daemons_mounts_stay_served() {
    require_containers();
    require_automount();
    let ctr = restored_daemon_container(SUPERVISED);
    ctr.ok("(setsid unshare -m --propagation private sleep 1001 </dev/null >/dev/null 2>&1 &)
            while ! pgrep -fx 'sleep 1001' >/dev/null; do sleep 0.05; done");
    let private = ctr.ok("pgrep -fx 'sleep 1001'").trim().to_string();
    let autofs_in = |pid: &str, path: &str| -> common::MountLine {
        let text = ctr.ok(&format!("cat /proc/{pid}/mountinfo"));
        let mut lines =
            text.lines().map(common::MountLine::parse).filter(|m| m.mount_point == path && m.fs_type == "autofs");
        lines.next().unwrap_or_else(|| panic!("no autofs at {path} in {pid}"))
    };
    let copy = autofs_in(&private, "/srv/direct-idle");
    assert_eq!(copy.dev, autofs_in("1", "/srv/direct-idle").dev, "a copy of the restored superblock");

    let out = run_as_criu("post-resume", &ctr.pid, &[("AUTOFS_RESTART_NESTED", "skip")]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("under pid ") && said.contains(": restarted (now pid "), "{said}");
    let named: Vec<&str> = said.lines().filter(|l| l.contains("private copy")).collect();
    assert_eq!(named.len(), 3, "{said}");
    for unit in ["proc-sys-fs-binfmt_misc", "srv-data", "srv-idle"] {
        assert!(named.iter().any(|l| l.starts_with(&format!("autofs-restart: {unit}.automount: "))), "{said}");
        assert!(said.contains(&format!("{unit}.automount: left alone (nested policy: skip)\n")), "{said}");
    }
    assert!(!said.contains("/srv/direct has") && !said.contains("/srv/ind has"), "{said}");

    // The copy is the same superblock, now wired to the new daemon's pipe, like the original.
    let (copy_now, main_now) = (autofs_in(&private, "/srv/direct-idle"), autofs_in("1", "/srv/direct-idle"));
    assert_eq!(copy_now.dev, copy.dev);
    assert_eq!(copy_now.option("pipe_ino"), main_now.option("pipe_ino"));
    assert_ne!(copy_now.option("pipe_ino"), copy.option("pipe_ino"));
    assert_eq!(ctr.answers("/srv/direct-idle", 10), Some(true));
}

/// Maps with a direct multi-mount (`/srv/multi`, offsets `/a` and `/b`) and an indirect one
/// (key `m`, offsets `/x` and `/y`) beside a plain direct mount (`/srv/direct`, triggered), the
/// daemon started by `start`; both multi-mounts triggered, so that their offsets stand as
/// autofs triggers with nothing on them (the state CRIU can dump).
fn multi_container(start: &str) -> Container {
    let ctr = Container::start();
    ctr.ok(&format!(
        "mkdir -p /srv/data-a /srv/data-b /srv/data-x /srv/data-y /srv/data-d
         for d in a b x y d; do echo $d > /srv/data-$d/f; done
         printf '/- /etc/auto.direct\\n/srv/ind /etc/auto.ind\\n' > /etc/auto.master
         printf '/srv/multi /a -fstype=bind :/srv/data-a /b -fstype=bind :/srv/data-b\\n/srv/direct -fstype=bind :/srv/data-d\\n/srv/direct-idle -fstype=bind :/srv/data-d\\n' > /etc/auto.direct
         echo 'm /x -fstype=bind :/srv/data-x /y -fstype=bind :/srv/data-y' > /etc/auto.ind
         {start}
         cat /srv/direct/f >/dev/null && ls /srv/multi /srv/ind/m >/dev/null"
    ));
    for offset in OFFSETS {
        let stack: Vec<String> = ctr.at(offset).into_iter().map(|m| m.fs_type).collect();
        assert_eq!(stack, ["autofs"], "{offset} stands as a trigger with nothing on it");
    }
    ctr
}

const OFFSETS: [&str; 4] = ["/srv/multi/a", "/srv/multi/b", "/srv/ind/m/x", "/srv/ind/m/y"];

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn triggered_multi_mounts_under_systemd_come_back_with_every_offset() {
    multi_mounts_come_back(BY_SYSTEMD, "autofs.service: automount (pid ", "new");
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn triggered_multi_mounts_under_a_supervisor_come_back_with_every_offset() {
    // The mount tables read whole, as a kernel without statmount has them read.
    multi_mounts_come_back(SUPERVISED, "under pid ", "legacy");
}

/// autofs 5.1.8 hangs at start on a triggered direct multi-mount: a plain SIGKILL and start
/// never comes back. One offset and an idle direct mount restored as CRIU leaves them (the
/// direct one hangs), then the fix, with the kernel interfaces `api`.
fn multi_mounts_come_back(start: &str, said_restarted: &str, api: &str) {
    require_containers();
    require_automount();
    let ctr = multi_container(start);
    ctr.restore(&["/srv/multi/a", "/srv/direct-idle"]);
    assert_eq!(ctr.answers("/srv/direct-idle", 2), None, "the restored direct mount should hang");
    let direct = ctr.on_top("/srv/direct");
    let old = daemons(&ctr);
    assert_eq!(old.len(), 1);
    let api = [("AUTOFS_RESTART_KERNEL_API", api)];
    let out = run_env(&["restart", "--pid", &ctr.pid, "--dry-run"], &api);
    assert!(
        stderr(&out).contains("; /srv/multi and its 2 idle offset(s) would be unmounted first"),
        "{}",
        stderr(&out)
    );

    let out = run_as_criu("post-resume", &ctr.pid, &[("AUTOFS_RESTART_TIMEOUT", "15"), api[0]]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let line = said.lines().find(|l| l.contains(said_restarted)).unwrap_or_else(|| panic!("{said}"));
    assert!(line.contains(": restarted (now pid ") && line.contains("/srv/multi"), "{line}");
    let now = daemons(&ctr);
    assert_eq!(now.len(), 1, "exactly one daemon: {now:?}");
    assert_ne!(now, old);
    assert_eq!(ctr.on_top("/srv/direct"), direct, "what was mounted on the direct mount stays");
    common::nothing_left(&ctr, "after the fix");
    // Every offset answers, the direct multi-mount's through its base mounted afresh.
    for (offset, content) in OFFSETS.iter().zip(["a\n", "b\n", "x\n", "y\n"]) {
        assert_eq!(ctr.ok(&format!("timeout -s KILL 10 cat {offset}/f")), content, "{offset}");
    }
    assert_eq!(ctr.ok("cat /srv/direct/f /srv/direct-idle/f"), "d\nd\n");
    assert_eq!(daemons(&ctr), now, "still the one daemon");
}

/// The CLI's case, on a live container: an offset of the direct multi-mount has its mount on
/// it. A new daemon would hang at its start, so the old one is left running, said why, exit 1.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_direct_multi_mount_in_use_leaves_the_daemon_running() {
    require_containers();
    require_automount();
    let ctr = multi_container(BY_SYSTEMD);
    ctr.ok("cat /srv/multi/a/f >/dev/null");
    // The daemon's mounts (the container's own automount units are restarted as usual).
    let of_daemon = |ctr: &Container| -> Vec<common::MountLine> {
        let daemons = ["/srv/multi", "/srv/ind", "/srv/direct"];
        ctr.mountinfo().into_iter().filter(|m| daemons.iter().any(|d| m.mount_point.starts_with(d))).collect()
    };
    let (old, before) = (daemons(&ctr), of_daemon(&ctr));
    let why = "/srv/multi is a direct multi-mount in use (/srv/multi/a has overlay ctr on it): \
               a new automount would hang at its start (autofs 5.1.8 and 5.1.9); unmount that or let it expire, then run again";

    let out = run(&["restart", "--pid", &ctr.pid, "--dry-run"]);
    assert!(stderr(&out).contains(&format!("): would be left running: {why}")), "{}", stderr(&out));
    let out = run(&["restart", "--pid", &ctr.pid]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.lines().any(|l| l.starts_with("autofs-restart: autofs.service: automount (pid ")
            && l.ends_with(&format!("): failed: left running: {why}"))),
        "{said}"
    );
    assert_eq!(daemons(&ctr), old, "the same daemon runs");
    assert_eq!(of_daemon(&ctr), before, "nothing of the daemon's was touched");
    for (offset, content) in OFFSETS.iter().zip(["a\n", "b\n", "x\n", "y\n"]) {
        assert_eq!(ctr.ok(&format!("timeout -s KILL 10 cat {offset}/f")), content, "{offset}");
    }
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_daemon_of_systemd_that_never_comes_back() {
    never_comes_back(BY_SYSTEMD, None, "killed what was left of autofs.service");
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_daemon_started_again_by_us_that_never_comes_back() {
    never_comes_back(BY_HAND, Some("/usr/bin/tail -f /dev/null"), "killed 0 new automount process(es)");
}

/// The next automount started hangs for good (a stand-in at its path, which says so on its
/// stderr): bounded by the timeout, what hangs killed, the mounts nobody serves catatonic (an
/// access fails at once), what is mounted on them kept, exit 1 and a line that says so, with
/// the daemon's own words (from the journal, or from its stderr).
fn never_comes_back(start: &str, init: Option<&str>, killed: &str) {
    require_containers();
    require_automount();
    let ctr = restored_daemon_container_with(start, init);
    let direct = ctr.on_top("/srv/direct");
    ctr.ok("printf '#!/bin/sh\\necho \"automount: hanging (a stand-in)\" >&2\\nexec sleep 1001\\n' > /usr/sbin/automount.hang
            chmod +x /usr/sbin/automount.hang
            mv /usr/sbin/automount.hang /usr/sbin/automount");

    let out = std::process::Command::new("timeout")
        .args(["-s", "KILL", "60", "bash", "-c"])
        .arg(common::criu_line("post-resume", &ctr.pid, &[("AUTOFS_RESTART_TIMEOUT", "3")]))
        .env_clear()
        .output()
        .unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{:?}: {said}", out.status);
    let line = said.lines().find(|l| l.contains("automount (pid ")).unwrap_or_else(|| panic!("{said}"));
    assert!(line.contains(": failed: ") && line.contains(killed), "{line}");
    assert!(line.contains("; automount said: \"automount: hanging (a stand-in)\"; "), "{line}");
    assert!(
        line.contains(
            "; no automount serves /srv/direct-idle, /srv/ind now: made catatonic, an access fails at once \
             instead of hanging, what is mounted on them stays; /srv/direct keep what is mounted on them, with no \
             automount below it; start the daemon again by hand once it can start"
        ),
        "{line}"
    );
    assert_eq!(ctr.ok("pgrep -c -f 'sleep [1]001' || true"), "0\n", "what hung was killed");
    assert!(daemons(&ctr).is_empty());
    assert_eq!(ctr.on_top("/srv/direct"), direct, "what was mounted stays");
    assert_eq!(ctr.ok("cat /srv/direct/f"), "direct\n");
    assert_ne!(ctr.answers("/srv/direct-idle", 5), None, "an access returns at once");
    common::nothing_left(&ctr, "after a daemon that never came back");
}

/// At pre-dump: the daemon holds its direct mounts open, and CRIU refuses to dump an open file
/// on a mount that has a mount on top. Said now, with what lets the dump through; exit 0.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn pre_dump_names_the_direct_mount_criu_would_refuse() {
    require_containers();
    require_automount();
    let ctr = Container::start();
    ctr.ok(&format!(
        "mkdir -p /srv/data-d && echo direct > /srv/data-d/f
         printf '/- /etc/auto.direct\\n' > /etc/auto.master
         printf '/srv/direct -fstype=bind :/srv/data-d\\n/srv/direct-idle -fstype=bind :/srv/data-d\\n' > /etc/auto.direct
         {BY_SYSTEMD}
         cat /srv/direct/f >/dev/null"
    ));
    let before = ctr.mountinfo();
    let out = run_as_criu("pre-dump", &ctr.pid, &[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.starts_with("autofs-restart: warning: /srv/direct: the automount daemon (pid "), "{said}");
    assert!(
        said.ends_with(
            "holds it open, and overlay ctr is mounted on it: CRIU refuses to dump that (\"Open files on overmounted \
             mounts are not supported yet\"); unmount overlay ctr or let it expire, and the dump goes through\n"
        ),
        "{said}"
    );
    assert_eq!(ctr.mountinfo(), before, "nothing changed");
}

/// A process blocked on a restored direct mount of the daemon: the new daemon does not release
/// it (its own walk to re-attach to that mount waits for it, so its start hangs). With a
/// pre-resume run, the held descriptor makes the old superblock catatonic between the old
/// daemon's death and the new one's start: the process is released, the daemon comes back.
/// Without one, the daemon is left running, and the line says why.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn what_blocked_on_a_daemons_mount_is_released_or_the_daemon_left_running() {
    require_containers();
    require_automount();
    let block = |ctr: &Container| {
        ctr.ok("(setsid sh -c 'stat /srv/direct-idle/. 2>/run/stat.err; echo $? > /run/stat' </dev/null >/dev/null 2>&1 &)");
        ctr.wait_for("grep -qx autofs_wait /proc/$(pgrep -x stat)/wchan");
    };

    // No pre-resume run: left running, nothing waits for a timeout.
    let ctr = restored_daemon_container(BY_SYSTEMD);
    let old = daemons(&ctr);
    block(&ctr);
    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(
            "): failed: left running: a process is blocked on /srv/direct-idle, and a new automount would hang at its \
         start until it is gone; end it (see its line, or --blocked kill), then run again\n"
        ),
        "{said}"
    );
    assert!(said.contains("(looking up /srv/direct-idle): it waits on the old superblock"), "{said}");
    assert_eq!(daemons(&ctr), old, "the same daemon runs");
    // Asked to, it kills that process, named, and then restarts the daemon.
    let out = run(&["restart", "--pid", &ctr.pid, "--blocked", "kill"]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let killed = "(looking up /srv/direct-idle): nothing could release it, killed (--blocked kill)\n";
    assert!(said.contains(killed), "{said}");
    assert!(said.contains(": restarted (now pid "), "{said}");
    ctr.wait_for("test -s /run/stat");
    assert_eq!(ctr.ok("cat /run/stat"), "137\n", "SIGKILL ended it");
    assert_eq!(ctr.answers("/srv/direct-idle", 10), Some(true), "a retry is served");
    drop(ctr);

    // With the pre-resume run, as CRIU runs it before the tasks resume.
    let ctr = restored_daemon_container(BY_SYSTEMD);
    let out = run_as_criu("pre-resume", &ctr.pid, &[]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""));
    block(&ctr);
    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("autofs.service: automount (pid ") && said.contains(": restarted (now pid "), "{said}");
    assert!(said.contains("stat) was blocked on /srv/direct-idle (looking up /srv/direct-idle): released"), "{said}");
    ctr.wait_for("test -s /run/stat");
    assert_eq!(ctr.ok("cat /run/stat"), "1\n", "it ended by itself, with an error");
    assert!(ctr.ok("cat /run/stat.err").contains("No such file or directory"));
    assert_eq!(ctr.answers("/srv/direct-idle", 10), Some(true), "a retry is served");
    assert_eq!(daemons(&ctr).len(), 1);
}
