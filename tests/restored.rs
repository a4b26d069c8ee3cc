//! Containers dumped and restored by real CRIU (`criu dump`, `criu restore`), each on a Debian
//! root of its own (tests/harness/root), with our binary as CRIU's action script: what a
//! restore really leaves, where the other tests imitate it (tests/harness/restore). Each case
//! is first restored without our script (the bug: an access hangs, the journal says why),
//! then the same dump is restored again with it.

mod common;

use common::{Container, bin, require_containers, require_program};

/// The processes called automount in the container, zombies left out: container pids.
fn daemons(ctr: &Container) -> Vec<String> {
    ctr.ok("ps -eo pid=,stat=,comm= | awk '$3 == \"automount\" && $2 !~ /^Z/ { print $1 }'")
        .lines()
        .map(String::from)
        .collect()
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
    require_program("criu");
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
    ctr.criu_dump(&["--action-script", &ours]);
    let dumped = ctr.file("img/dump.log");
    assert!(dumped.contains("Running pre-dump scripts"), "{dumped}");
    assert!(!dumped.contains("autofs-restart: "), "pre-dump finds nothing a restore cannot fix: {dumped}");

    // Without our script: CRIU's new superblocks, which the masters do not know.
    ctr.criu_restore(&[]);
    assert_eq!(ctr.answers("/srv/direct", 3), None, "the daemon's direct mount should hang");
    assert_eq!(ctr.answers("/srv/idle", 3), None, "systemd's automount should hang");
    assert!(ctr.journal("autofs.service").contains("can't find map entry for"), "{}", ctr.journal("autofs.service"));
    let units = ctr.journal("srv-idle.automount");
    assert!(units.contains("Automount point already active?"), "{units}");
    ctr.kill();

    // With it, as CRIU runs it: pre-resume holds, post-resume fixes.
    ctr.criu_restore(&["--action-script", &ours]);
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
