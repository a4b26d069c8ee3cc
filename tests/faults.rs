//! Faults: autofs-restart killed half-way, two runs at once, the container's systemctl missing,
//! a busy mount point, the container's init dying during the run. Each against real systemd and
//! the kernel's autofs, in throwaway containers; in each, nothing on top is lost.

mod common;

use std::process::Child;

use common::{Container, Kept, MountLine, require_containers, run, run_as_criu, spawn_as_criu, stderr, stdout};

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// A container with a file on the tmpfs automounted at /srv/data, /srv/data and binfmt_misc
/// restored as CRIU leaves them; the hang shown.
fn restored() -> Container {
    let ctr = Container::start();
    ctr.ok("echo kept > /srv/data/file");
    ctr.restore(&[BINFMT, "/srv/data"]);
    assert_eq!(ctr.answers(BINFMT, 2), None, "binfmt_misc should hang after the restore");
    ctr
}

/// What must survive any fault: the mount count, the tmpfs on top of /srv/data (the same
/// superblock and root) with its file; and nothing of a run left behind.
fn kept(ctr: &Container) -> Kept {
    assert_eq!(ctr.at("/srv/data").pop().unwrap().fs_type, "tmpfs");
    let kept = Kept::of(ctr, &["/srv/data"], &["/srv/data/file"]);
    assert_eq!(ctr.ok("cat /srv/data/file"), "kept\n");
    kept
}

/// Kills a child by its pid and reaps it; returns what it had said.
fn kill(child: Child) -> String {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    stderr(&child.wait_with_output().unwrap())
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn killed_half_way_then_recover_or_the_next_run_puts_everything_back() {
    require_containers();
    let ctr = restored();
    let kept = kept(&ctr);

    // Killed before the restart (systemctl hangs at once): the tmpfs still stands and its copy
    // waits in the pinned namespace; `recover` drops the copy. Killed after the restart
    // (systemctl hangs once it is done): the copy is the only one left; the next run puts it
    // back first.
    for (round, finish) in ["recover", "next run"].into_iter().enumerate() {
        let restart = if round == 0 { "" } else { "/usr/bin/systemctl.real \"$@\"; " };
        ctr.inject_systemctl_fault(&format!("{restart}touch /run/restart-started; exec sleep 600"));
        ctr.ok("rm -f /run/restart-started");
        let child = spawn_as_criu("post-resume", &ctr.pid, &[]);
        ctr.wait_for("test -e /run/restart-started");
        kill(child);
        // The hung systemctl died with the run that started it.
        ctr.wait_for("! pgrep -x sleep");

        let tops: Vec<String> = ctr.at("/srv/data").into_iter().map(|m| m.fs_type).collect();
        let expected: &[&str] = if round == 0 { &["autofs", "tmpfs"] } else { &["autofs"] };
        assert_eq!(tops, expected, "{finish}: what stands on /srv/data");
        // Nothing of the run is in the container's table: the copy is in a namespace of ours.
        assert_eq!(ctr.ok("grep -c ' /run/autofs-restart' /proc/1/mountinfo || true"), "0\n");
        let pin = ctr.pin().expect("a pinned staging namespace");
        let pinned = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let pinned = pinned.lines().map(MountLine::parse).find(|m| m.mount_point == pin).expect("the pin is a mount");
        assert_eq!(pinned.fs_type, "nsfs", "{finish}");
        // That the copy there is the tmpfs, superblock and file, shows once it is back (Kept).
        let out = run(&["status", "--pid", &ctr.pid]);
        let status = stdout(&out);
        assert!(
            status.contains(&format!("An interrupted run left trees set aside in the mount namespace pinned at {pin}")),
            "{status}"
        );
        assert_eq!(out.status.code(), Some(3), "needs a look: {status}");

        if round == 0 {
            let out = run(&["recover", "--pid", &ctr.pid]);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            assert_eq!(
                stderr(&out),
                format!(
                    "autofs-restart: recovering: /0 in the mount namespace pinned at {pin}: a copy of what still stands on /srv/data: dropped\n"
                )
            );
            kept.check(&ctr, "after recover");
            let out = run(&["recover", "--pid", &ctr.pid]);
            assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), "autofs-restart: nothing to recover\n"));
            assert_eq!(ctr.answers(BINFMT, 2), None, "recover restarts nothing");
        } else {
            ctr.heal_systemctl();
            let out = run_as_criu("post-resume", &ctr.pid, &[]);
            let said = stderr(&out);
            assert_eq!(out.status.code(), Some(0), "{said}");
            assert!(
                said.starts_with(&format!(
                    "autofs-restart: recovering: /srv/data: put tmpfs srv-data back from /0 in the mount namespace pinned at {pin}\n"
                )),
                "{said}"
            );
            assert!(said.contains("srv-data.automount: restarted, tmpfs srv-data kept on top\n"), "{said}");
            kept.check(&ctr, "after the next run");
            assert_eq!(ctr.answers(BINFMT, 10), Some(true));
            ctr.ok("umount /srv/data");
            assert_eq!(ctr.answers("/srv/data", 10), Some(true), "the restarted automount answers");
        }
    }
}

/// Kills `child`, a run whose systemctl hangs before restarting anything, once that hang has
/// begun; then the tree it set aside must be staged in the container's /run/autofs-restart
/// (the original detached, nothing pinned on the host), and `recover` must put it back.
fn killed_with_the_tree_in_the_container_then_recover(ctr: &Container, kept: &Kept, child: Child) {
    ctr.wait_for("test -e /run/restart-started");
    kill(child);
    ctr.wait_for("! pgrep -x sleep");

    let tops: Vec<String> = ctr.at("/srv/data").into_iter().map(|m| m.fs_type).collect();
    assert_eq!(tops, ["autofs"], "the tmpfs was set aside");
    let staged = ctr.at("/run/autofs-restart/0").pop().unwrap();
    assert_eq!([(staged.dev, staged.root)], kept.stack("/srv/data"));
    assert_eq!(ctr.ok("cat /run/autofs-restart/0/file"), "kept\n");
    assert_eq!(ctr.pin(), None, "nothing pinned on the host");
    let out = run(&["status", "--pid", &ctr.pid]);
    let status = stdout(&out);
    assert!(status.contains("An interrupted run left trees set aside in /run/autofs-restart:"), "{status}");
    assert_eq!(out.status.code(), Some(3), "needs a look: {status}");

    let out = run(&["recover", "--pid", &ctr.pid]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "autofs-restart: recovering: /srv/data: put tmpfs srv-data back from /run/autofs-restart/0\n"
    );
    kept.check(ctr, "after recover");
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn killed_half_way_with_the_legacy_api_then_recover() {
    require_containers();
    let ctr = restored();
    let kept = kept(&ctr);
    ctr.inject_systemctl_fault("touch /run/restart-started; exec sleep 600");
    // The legacy API stages in the container.
    let child = spawn_as_criu("post-resume", &ctr.pid, &[("AUTOFS_RESTART_KERNEL_API", "legacy")]);
    killed_with_the_tree_in_the_container_then_recover(&ctr, &kept, child);
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn with_nowhere_to_pin_on_the_host_the_container_stages_and_recovery_works() {
    require_containers();
    let ctr = restored();
    let kept = kept(&ctr);
    // The run starts in a mount namespace of its own whose /run/autofs-restart is a file: no
    // pin can be made there (and the host's /run is not touched). It falls back to staging
    // in the container, with the new API's copy.
    let nowhere = |line: String| {
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["-m", "sh", "-c"])
            .arg(format!("mount -t tmpfs none /run && : > /run/autofs-restart && {line}"))
            .env_clear()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    ctr.inject_systemctl_fault("touch /run/restart-started; exec sleep 600");
    let child = nowhere(common::criu_line("post-resume", &ctr.pid, &[])).spawn().unwrap();
    killed_with_the_tree_in_the_container_then_recover(&ctr, &kept, child);

    // And a whole run there fixes the container, keeping the tmpfs.
    ctr.heal_systemctl();
    let out = nowhere(common::criu_line("post-resume", &ctr.pid, &[])).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("srv-data.automount: restarted, tmpfs srv-data kept on top"), "{}", stderr(&out));
    kept.check(&ctr, "after a run with nowhere to pin");
    assert_eq!(ctr.answers(BINFMT, 10), Some(true));
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn one_run_at_a_time() {
    require_containers();
    let ctr = restored();
    let kept = kept(&ctr);
    ctr.inject_systemctl_fault("touch /run/restart-started; while [ ! -e /run/go ]; do sleep 0.05; done");
    let first = spawn_as_criu("post-resume", &ctr.pid, &[]);
    ctr.wait_for("test -e /run/restart-started");

    let syslog = common::Syslog::bind();
    let out = run_as_criu(
        "post-resume",
        &ctr.pid,
        &[("AUTOFS_RESTART_TIMEOUT", "1"), ("AUTOFS_RESTART_SYSLOG", &syslog.path())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let told = syslog.messages();
    assert!(
        told.len() == 1
            && told[0].starts_with("<27>autofs-restart[")
            && told[0].contains(": failed: another autofs-restart run (pid "),
        "the host's log told of the failure: {told:?}"
    );
    assert_eq!(
        stderr(&out),
        format!(
            "autofs-restart: another autofs-restart run (pid {}) on this container holds its lock; gave up after 1 s: \
             let it end (`autofs-restart status --pid {}` says what it has set aside), then run again\n",
            first.id(),
            ctr.pid
        ),
        "the holder named, and what to do"
    );
    let out = run(&["status", "--pid", &ctr.pid]);
    // A run in progress is not an interrupted one: nothing to recover, nothing to look at.
    assert_eq!(out.status.code(), Some(0), "status needs no lock: {}", stdout(&out));
    assert!(stdout(&out).contains("\nA run in progress has trees set aside in "), "{}", stdout(&out));

    ctr.ok("touch /run/go");
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    kept.check(&ctr, "after the first run");
    assert_eq!(ctr.answers(BINFMT, 10), Some(true));
}

/// A post-resume run on `ctr` that fails with exit 1 and one line per unit (three): the lines.
fn each_unit_fails(ctr: &Container) -> String {
    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(said.lines().count(), 3, "one line per unit: {said}");
    said
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn systemctl_missing_or_a_busy_mount_point() {
    require_containers();
    let ctr = restored();
    let kept = kept(&ctr);
    // A process keeps a working directory and an open file on the tmpfs on top.
    ctr.ok("(cd /srv/data && setsid sh -c 'exec 3</srv/data/file; exec sleep 600' </dev/null >/dev/null 2>&1 &)");
    ctr.wait_for("pgrep -x sleep");

    ctr.ok("mv /usr/bin/systemctl /usr/bin/systemctl.gone");
    let said = each_unit_fails(&ctr);
    for l in said.lines() {
        assert!(l.contains(".automount: failed restarting: systemctl restart "), "{said}");
        assert!(l.contains(": the container has no systemctl in /usr/local/sbin:"), "{said}");
    }
    kept.check(&ctr, "without systemctl");

    // One the kernel cannot execute: the child says at which step it failed.
    ctr.ok("printf '#!/nonexistent/sh\\n' > /usr/bin/systemctl && chmod 755 /usr/bin/systemctl");
    let said = each_unit_fails(&ctr);
    for l in said.lines() {
        assert!(l.contains(".automount: failed restarting: starting systemctl restart "), "{said}");
        assert!(l.ends_with(": executing it: ENOENT"), "{said}");
    }
    kept.check(&ctr, "with a systemctl that cannot be executed");

    ctr.ok("mv /usr/bin/systemctl.gone /usr/bin/systemctl");
    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    kept.check(&ctr, "busy");
    // The busy process still reads its file through the same superblock.
    let sleep = ctr.ok("pgrep -x sleep").trim().to_string();
    assert_eq!(ctr.ok(&format!("cat /proc/{sleep}/cwd/file")), "kept\n");
    assert_eq!(ctr.answers(BINFMT, 10), Some(true));
    ctr.ok(&format!("kill -KILL {sleep}"));
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn the_init_dying_during_the_run_ends_it_with_one_line_per_unit() {
    require_containers();
    let ctr = restored();
    ctr.inject_systemctl_fault("touch /run/restart-started; exec sleep 600");
    let child = spawn_as_criu("post-resume", &ctr.pid, &[]);
    ctr.wait_for("test -e /run/restart-started");
    // The container's init dies: its pid namespace, the hung systemctl with it.
    let init = rustix::process::Pid::from_raw(ctr.pid.parse().unwrap()).unwrap();
    rustix::process::kill_process(init, rustix::process::Signal::KILL).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(said.lines().count(), 3, "one line per unit: {said}");
    let why = format!(".automount: failed restarting: the container's init (pid {}) died", ctr.pid);
    assert!(said.lines().all(|l| l.starts_with("autofs-restart: ") && l.ends_with(&why)), "{said}");
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_process_blocked_before_the_fix_is_named_and_everyone_else_is_served() {
    require_containers();
    let ctr = restored();
    let kept = kept(&ctr);
    // It touched the restored mount point between resume and post-resume: a relative lookup,
    // from a working directory above it.
    ctr.ok("(cd /proc/sys/fs && setsid stat binfmt_misc/. </dev/null >/dev/null 2>&1 &)");
    ctr.wait_for("grep -qx autofs_wait /proc/$(pgrep -x stat)/wchan");
    let blocked = ctr.ok("pgrep -x stat").trim().to_string();

    let status = stdout(&run(&["status", "--pid", &ctr.pid]));
    let row = status
        .lines()
        .find(|l| l.contains(&format!(" = {blocked} inside (stat)")))
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(row.split_whitespace().rev().take(2).collect::<Vec<_>>(), [BINFMT, BINFMT], "{status}");
    // No pre-resume run held its mount: status says what can end it.
    assert!(status.contains("only SIGKILL ends") && status.contains("(restart --blocked kill)"), "{status}");

    let out = run_as_criu("post-resume", &ctr.pid, &[("AUTOFS_RESTART_TIMEOUT", "5")]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "the fix itself worked: {said}");
    let named = format!(
        "({blocked} in the container, stat) is still blocked on {BINFMT} (looking up {BINFMT}): it waits on the old superblock"
    );
    assert!(said.contains(&named), "{said}");
    assert_eq!(said.lines().filter(|l| l.contains("still blocked")).count(), 1, "{said}");
    kept.check(&ctr, "with a blocked process");
    assert_eq!(ctr.answers(BINFMT, 10), Some(true), "new accesses are served");
    // Killable, as the line says.
    ctr.ok(&format!("kill -KILL {blocked}"));
    ctr.wait_for(&format!("! kill -0 {blocked} 2>/dev/null"));
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn with_blocked_kill_what_nothing_can_release_is_killed_and_named() {
    require_containers();
    let ctr = restored();
    let kept = kept(&ctr);
    ctr.ok("(setsid sh -c 'stat /proc/sys/fs/binfmt_misc/.; echo $? > /run/stat' </dev/null >/dev/null 2>&1 &)");
    ctr.wait_for("grep -qx autofs_wait /proc/$(pgrep -x stat)/wchan");
    let blocked = ctr.ok("pgrep -x stat").trim().to_string();

    let out = run_as_criu("post-resume", &ctr.pid, &[("AUTOFS_RESTART_BLOCKED", "kill")]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let named = format!(
        "({blocked} in the container, stat) was blocked on {BINFMT} (looking up {BINFMT}): nothing could release it, \
         killed (--blocked kill)\n"
    );
    assert!(said.contains(&named), "{said}");
    assert!(!said.contains("still blocked"), "{said}");
    // Its shell saw it die of SIGKILL.
    ctr.wait_for("test -s /run/stat");
    assert_eq!(ctr.ok("cat /run/stat"), "137\n");
    kept.check(&ctr, "after the kill");
    assert_eq!(ctr.answers(BINFMT, 10), Some(true), "new accesses are served");
}
