//! Containers dumped and restored by real CRIU (`criu dump`, `criu restore`), each on a Debian
//! root of its own (tests/harness/root), with our binary as CRIU's action script: what a
//! restore really leaves, where the other tests imitate it (tests/harness/restore). Each case
//! is first restored without our script (the bug: an access hangs, the journal says why),
//! then the same dump is restored again with it.

mod common;

use common::{Container, bin, kernel_at_least, refuses_foreign_private_triggers, require_containers, stderr};

/// The processes called automount in the container, zombies left out: container pids.
fn daemons(ctr: &Container) -> Vec<String> {
    ctr.ok("ps -eo pid=,stat=,comm= | awk '$3 == \"automount\" && $2 !~ /^Z/ { print $1 }'")
        .lines()
        .map(String::from)
        .collect()
}

/// The device numbers of the autofs mounts at these paths in the container, for a message: a
/// restore that gave a mount its old number back shows no bug there (tests/harness/container
/// makes that unlikely).
fn autofs_devs(ctr: &Container, paths: &[&str]) -> String {
    let table = ctr.mountinfo();
    let devs = paths.iter().map(|p| {
        let dev =
            table.iter().find(|m| m.mount_point == *p && m.fs_type == "autofs").map_or("none", |m| m.dev.as_str());
        format!("{p} {dev}")
    });
    devs.collect::<Vec<_>>().join(", ")
}

/// Debian 12's systemd and automount daemon in one container:
/// - `srv-data.automount` with a tmpfs on top holding a file, `srv-idle.automount` idle,
///   `proc-sys-fs-binfmt_misc.automount` with a format registered (binfmt_misc on top);
/// - `autofs.service` serving a direct map (idle at the dump: CRIU refuses to dump the daemon
///   while a direct entry is mounted over it) and an indirect one (key `k` mounted).
///
/// As after the restore of issue 34, the new daemon is given the killed one's pid: an
/// `ExecStartPre=` of the service sets the pid counter just before its start, from a value left
/// in /run (a tmpfs, dumped and restored with the container).
#[test]
#[ignore = "needs root, the kernel's autofs and criu: make test runs it"]
fn systemd_and_the_automount_daemon_after_a_real_restore() {
    require_containers();
    common::criu();
    let mut ctr = Container::start_on_root("bookworm");
    ctr.ok(r#"set -e
        mkdir -p /srv/data-d /srv/data-i && echo direct > /srv/data-d/f && echo indirect > /srv/data-i/f
        printf '/- /etc/auto.direct\n/srv/ind /etc/auto.ind\n' > /etc/auto.master
        printf '/srv/direct -fstype=bind :/srv/data-d\n' > /etc/auto.direct
        echo 'k -fstype=bind :/srv/data-i' > /etc/auto.ind
        printf '%s\n' '#!/bin/sh' 'if [ -e /run/reuse-pid ]; then' \
            'read -r last < /run/reuse-pid; rm /run/reuse-pid; echo "$last" > /proc/sys/kernel/ns_last_pid' 'fi' \
            > /usr/local/sbin/reuse-pid
        chmod +x /usr/local/sbin/reuse-pid
        mkdir -p /etc/systemd/system/autofs.service.d
        printf '[Service]\nExecStartPre=/usr/local/sbin/reuse-pid\n' > /etc/systemd/system/autofs.service.d/reuse-pid.conf
        systemctl daemon-reload
        systemctl start autofs.service
        cat /srv/ind/k/f /srv/direct/f >/dev/null && umount /srv/direct
        echo kept > /srv/data/f
        echo ':autofs-test:E::afstest::/bin/true:' > /proc/sys/fs/binfmt_misc/register
        printf '' > /tmp/x.afstest && chmod +x /tmp/x.afstest && /tmp/x.afstest"#);
    let old = daemons(&ctr);
    assert_eq!(old.len(), 1);
    // Debian's service forks once: its first process takes the pid before the daemon's.
    let pid: u32 = old[0].parse().unwrap();
    ctr.ok(&format!("test ! -e /proc/{0} && echo {1} > /run/reuse-pid", pid - 1, pid - 2));
    // Before Linux 6.7 binfmt_misc is one for the whole machine, and its formats go with its
    // last mount: CRIU does not dump them (it restores them only where the kernel keeps them per
    // container). A host that registers formats has it mounted; the test VM has not, so the
    // test holds it open as such a host's mount would.
    let _binfmt = std::fs::File::open(format!("/proc/{}/root/proc/sys/fs/binfmt_misc/status", ctr.pid)).unwrap();
    let ours = bin().to_string_lossy().into_owned();
    let dumped_devs = autofs_devs(&ctr, &["/srv/direct", "/srv/idle"]);
    ctr.criu_dump(&["--action-script", &ours]);
    let dumped = ctr.file("img/dump.log");
    assert!(dumped.contains("Running pre-dump scripts"), "{dumped}");
    assert!(!dumped.contains("autofs-restart: "), "pre-dump finds nothing a restore cannot fix: {dumped}");

    // Without our script: CRIU's new superblocks, which the masters do not know.
    ctr.criu_restore(&[], &[]);
    let devs = format!("{dumped_devs} at the dump, {} now", autofs_devs(&ctr, &["/srv/direct", "/srv/idle"]));
    assert_eq!(ctr.answers("/srv/direct", 3), None, "the daemon's direct mount should hang: {devs}");
    assert_eq!(ctr.answers("/srv/idle", 3), None, "systemd's automount should hang: {devs}");
    assert!(ctr.journal("autofs.service").contains("can't find map entry for"), "{}", ctr.journal("autofs.service"));
    let units = ctr.journal("srv-idle.automount");
    assert!(units.contains("Automount point already active?"), "{units}");
    ctr.kill();

    // With it, as CRIU runs it: pre-resume holds, post-resume fixes.
    ctr.criu_restore(&[], &["--action-script", &ours]);
    let restored = ctr.file("img/restore.2.log");
    let said: Vec<&str> = restored.lines().filter(|l| l.starts_with("autofs-restart: ")).collect();
    for unit in ["srv-data.automount: restarted, tmpfs srv-data kept on top", "srv-idle.automount: restarted"] {
        assert!(said.contains(&format!("autofs-restart: {unit}").as_str()), "{said:#?}");
    }
    assert!(
        said.iter().any(|l| l.starts_with("autofs-restart: proc-sys-fs-binfmt_misc.automount: restarted")),
        "{said:#?}"
    );
    let daemon = said.iter().find(|l| l.contains("autofs.service: automount (pid ")).expect("the daemon's line");
    assert!(daemon.contains(": restarted (now pid ") && daemon.ends_with("serving /srv/direct, /srv/ind"), "{daemon}");
    assert_eq!(daemons(&ctr), old, "one daemon, given the old one's pid");
    assert_eq!(ctr.ok("timeout 10 cat /srv/data/f /srv/ind/k/f /srv/direct/f"), "kept\nindirect\ndirect\n");
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true));
    assert_eq!(ctr.ok("head -n 1 /proc/sys/fs/binfmt_misc/autofs-test"), "enabled\n", "the format stays registered");
    assert!(ctr.sh("/tmp/x.afstest").status.success(), "and runs its files");
}

/// At post-resume, before autofs-restart (CRIU runs the scripts named last first): lets the
/// restored `early.service` go on to its access, and waits until that access blocks on the
/// stale automount. What a process that touches the mount point right after the resume meets.
const EARLY: &str = r#"#!/bin/sh
[ "$CRTOOLS_SCRIPT_ACTION" = post-resume ] || exit 0
inside() { nsenter -t "$CRTOOLS_INIT_PID" -m -p sh -c "$1"; }
inside 'touch /run/go'
for i in $(seq 300); do
    inside 'grep -qx autofs_wait /proc/$(cat /run/early.pid)/wchan' && exit 0
    sleep 0.1
done
"#;

/// Debian 12's systemd with a service in a private mount namespace (copies of the three
/// automounts), and a process dumped and restored with the container that touches
/// /srv/idle right after the resume, before post-resume. Our binary is named in CRIU's
/// configuration file (`--config`), as users name it.
#[test]
#[ignore = "needs root, the kernel's autofs and criu: make test runs it"]
fn a_private_copy_and_an_access_before_the_fix_after_a_real_restore() {
    require_containers();
    common::criu();
    let mut ctr = Container::start_on_root("bookworm");
    ctr.ok(r#"set -e
        echo kept > /srv/data/f
        systemd-run -q --unit=private-ns unshare -m --propagation private sleep 1001
        printf '%s\n' '#!/bin/sh' 'echo $$ > /run/early.pid' 'while [ ! -e /run/go ]; do sleep 0.1; done' \
            'exec stat /srv/idle/.' > /usr/local/sbin/early
        chmod +x /usr/local/sbin/early
        systemd-run -q -r --unit=early /usr/local/sbin/early"#);
    ctr.wait_for("test -s /run/early.pid && pgrep -fx 'sleep 1001'");
    let private = ctr.ok("systemctl show -P MainPID private-ns").trim().to_string();
    let ours = bin().to_string_lossy().into_owned();
    let config = ctr.path("criu.conf");
    std::fs::write(&config, format!("action-script {ours}\n")).unwrap();
    let config = config.to_string_lossy().into_owned();
    let early = ctr.path("early");
    std::fs::write(&early, EARLY).unwrap();
    std::fs::set_permissions(&early, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let early = early.to_string_lossy().into_owned();

    // The nested policy `fail` refuses the real dump, with our reason, and the container runs on.
    let out = ctr.try_criu_dump(&[("AUTOFS_RESTART_NESTED", "fail")], &["--config", &config]);
    assert!(!out.status.success(), "the dump went ahead");
    let refused = ctr.file("img/dump.log");
    assert!(
        refused.contains("the dump is refused: 3 private copies in nested mount namespaces (nested policy: fail)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ctr.ok("cat /srv/data/f"), "kept\n", "the container runs on");

    // By default, the dump goes ahead, naming each copy and what the restore will do to it.
    let dumped_devs = autofs_devs(&ctr, &["/srv/idle"]);
    ctr.criu_dump(&["--config", &config]);
    let dumped = ctr.file("img/dump.log");
    let then = "after the restore the unit is restarted and that copy made catatonic (nested policy: restart)";
    assert_eq!(dumped.lines().filter(|l| l.contains("has a private copy") && l.ends_with(then)).count(), 3, "{dumped}");

    // Without our script: the access right after the resume hangs, and so does the copy.
    ctr.criu_restore(&[], &[]);
    assert_eq!(
        ctr.answers("/srv/idle", 3),
        None,
        "{dumped_devs} at the dump, {} now",
        autofs_devs(&ctr, &["/srv/idle"])
    );
    ctr.ok("touch /run/go");
    ctr.wait_for("grep -qx autofs_wait /proc/$(cat /run/early.pid)/wchan");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(ctr.ok("cat /proc/$(cat /run/early.pid)/wchan"), "autofs_wait", "the access should hang");
    if !refuses_foreign_private_triggers() {
        assert_eq!(ctr.answers_in(&private, "/srv/idle", 3), None, "the private copy should hang");
    }
    ctr.kill();

    // With it: pre-resume holds the mounts while the tasks are frozen; the access made before
    // post-resume is released, on this kernel's way; the copy fails fast.
    // Verbose: the line that says how the wait was answered.
    ctr.criu_restore(&[("AUTOFS_RESTART_VERBOSE", "1")], &["--config", &config, "--action-script", &early]);
    let restored = ctr.file("img/restore.2.log");
    let said: Vec<&str> = restored.lines().filter(|l| l.starts_with("autofs-restart: ")).collect();
    let pid = ctr.ok("cat /run/early.pid");
    let released =
        format!("({} in the container, stat) was blocked on /srv/idle (looking up /srv/idle): released", pid.trim());
    assert!(said.iter().any(|l| l.contains(&released)), "{said:#?}");
    assert!(said.contains(&"autofs-restart: srv-data.automount: restarted, tmpfs srv-data kept on top"), "{said:#?}");
    assert_eq!(said.iter().filter(|l| l.contains("has a private copy")).count(), 3, "{said:#?}");
    // Before Linux 6.6 catatonic mode wakes nobody: the wait is answered by token first.
    let by_token = said.iter().any(|l| {
        l.contains(": srv-idle.automount: made its old autofs mount 0:")
            && l.ends_with(" catatonic (1 wait(s) answered by token first)")
    });
    assert_eq!(by_token, !kernel_at_least(6, 6), "{said:#?}");
    // It ended by itself, with an error, and a retry reaches the new mount.
    ctr.wait_for("systemctl show -P ExecMainCode early | grep -qx 1");
    assert_eq!(ctr.ok("systemctl show -P ExecMainStatus early"), "1\n");
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true));
    assert_eq!(ctr.ok("timeout 10 cat /srv/data/f"), "kept\n");
    assert_eq!(ctr.answers_in(&private, "/srv/idle", 10), Some(true), "the private copy answers at once, catatonic");
    assert_eq!(ctr.ok(&format!("nsenter -t {private} -m cat /srv/data/f")), "kept\n");
}
