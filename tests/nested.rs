//! Nested mount namespaces in a restored systemd container: a private one (`unshare -m
//! --propagation private`, two processes), a slave one (`unshare -m --propagation slave`) and
//! a service with `PrivateTmp=yes`. Only the private one keeps its own copies, which a restart
//! leaves catatonic; each policy is checked against the real kernel.

mod common;

use common::{Container, Kept, MountLine, require_containers, run, run_as_criu, stderr, stdout};

const ALL: [&str; 3] = ["/proc/sys/fs/binfmt_misc", "/srv/data", "/srv/idle"];

struct Nested {
    ctr: Container,
    /// Container pids of a process in each namespace.
    private: String,
    slave: String,
    private_tmp: String,
}

impl Nested {
    /// Runs `script` in the mount namespace of container pid `pid`.
    fn sh_in(&self, pid: &str, script: &str) -> std::process::Output {
        self.ctr.sh(&format!("exec nsenter -t {pid} -m sh -c '{script}'"))
    }

    /// The namespace's mountinfo, as the tests read it.
    fn mountinfo_of(&self, pid: &str) -> String {
        self.ctr.ok(&format!("cat /proc/{pid}/mountinfo"))
    }

    /// The autofs line at `path` in a mountinfo text.
    fn autofs_at(text: &str, path: &str) -> MountLine {
        let lines: Vec<MountLine> =
            text.lines().map(MountLine::parse).filter(|m| m.mount_point == path && m.fs_type == "autofs").collect();
        assert_eq!(lines.len(), 1, "{path}: {lines:?}");
        lines.into_iter().next().unwrap()
    }
}

/// A restored container (a file on /srv/data's tmpfs, all three automounts broken), then the
/// three nested namespaces, made after the restore so that they hold the restored mounts, as
/// CRIU recreates them.
fn setup() -> Nested {
    let ctr = Container::start();
    ctr.ok("echo kept > /srv/data/file");
    ctr.restore(&ALL);
    assert_eq!(ctr.answers("/srv/idle", 2), None, "/srv/idle should hang after the restore");
    ctr.ok(
        "(setsid unshare -m --propagation private sh -c 'sleep 1000 & exec sleep 1001' </dev/null >/dev/null 2>&1 &)
         (setsid unshare -m --propagation slave sleep 1002 </dev/null >/dev/null 2>&1 &)
         systemd-run -q -p PrivateTmp=yes --unit=private-tmp sleep 1003",
    );
    let pid = |cmd: &str| {
        for _ in 0..100 {
            // systemd-run starts /usr/bin/sleep by its full path.
            let out = ctr.sh(&format!("pgrep -f '^(/usr/bin/)?{cmd}$'"));
            if out.status.success() {
                return stdout(&out).trim().to_string();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{cmd} did not start");
    };
    let (private, slave, private_tmp) = (pid("sleep 1001"), pid("sleep 1002"), pid("sleep 1003"));
    pid("sleep 1000");
    Nested { ctr, private, slave, private_tmp }
}

/// The lines that name private copies, and whether each names the private namespace.
fn private_lines(said: &str, n: &Nested) -> Vec<String> {
    let lines: Vec<String> = said.lines().filter(|l| l.contains("has a private copy")).map(String::from).collect();
    for l in &lines {
        assert!(l.contains(" in the container, sleep)"), "{l}");
        assert!(!l.contains(&format!("({} in", n.slave)) && !l.contains(&format!("({} in", n.private_tmp)), "{l}");
    }
    lines
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn each_policy_against_private_slave_and_private_tmp_namespaces() {
    require_containers();
    let n = setup();
    let ctr = &n.ctr;
    let main_before = ctr.ok("cat /proc/1/mountinfo");
    let nested_before: Vec<String> = [&n.private, &n.slave, &n.private_tmp].map(|p| n.mountinfo_of(p)).into();

    // status: the private namespace's copies are private, the others follow.
    let out = run(&["status", "--pid", &ctr.pid]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status = stdout(&out);
    let rows = |pid: &str| -> Vec<String> {
        status.lines().filter(|l| l.contains(&format!(" = {pid} inside (sleep)"))).map(String::from).collect()
    };
    assert!(status.contains("\nNESTED NAMESPACE "), "{status}");
    let private_rows = rows(&n.private);
    assert_eq!(private_rows.len(), 3, "one row per autofs mount, once for the namespace's two processes: {status}");
    assert!(private_rows.iter().all(|r| r.contains("private copy of ")), "{status}");
    // From 6.19 the kernel refuses a trigger there, and status says so; older ones wait. A
    // mount on top takes the access first.
    let refuses = common::refuses_foreign_private_triggers();
    for r in &private_rows {
        assert_eq!(r.contains(": an access fails with EPERM;"), refuses && !r.contains(" on top "), "{status}");
    }
    if refuses {
        ctr.assert_refused(Some(&n.private), "/srv/idle");
    }
    assert!(private_rows.iter().any(|r| r.contains("/srv/data") && r.contains("1 mount(s) on top still answer")));
    for pid in [&n.slave, &n.private_tmp] {
        let r = rows(pid);
        assert_eq!(r.len(), 3, "{status}");
        assert!(r.iter().all(|r| r.contains(" follows /")), "{status}");
    }

    // fail: nothing at all is touched, exit 1, the list.
    let out = run_as_criu("post-resume", &ctr.pid, &[("AUTOFS_RESTART_NESTED", "fail")]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(private_lines(&said, &n).len(), 3, "{said}");
    assert!(
        said.ends_with(
            "failed: nothing restarted: 3 private copies in nested mount namespaces (nested policy: fail)\n"
        )
    );
    assert_eq!(ctr.ok("cat /proc/1/mountinfo"), main_before, "fail changed the container's mounts");

    // skip: every master has a private copy here, so all are left alone; exit 0.
    let out = run_as_criu("post-resume", &ctr.pid, &[("AUTOFS_RESTART_NESTED", "skip")]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(private_lines(&said, &n).len(), 3, "{said}");
    assert_eq!(said.matches(": left alone (nested policy: skip)\n").count(), 3, "{said}");
    assert!(!said.contains("restarted"), "{said}");
    assert_eq!(ctr.ok("cat /proc/1/mountinfo"), main_before, "skip changed the container's mounts");
    let nested_now: Vec<String> = [&n.private, &n.slave, &n.private_tmp].map(|p| n.mountinfo_of(p)).into();
    assert_eq!(nested_now, nested_before, "fail or skip changed a nested namespace");
    assert_eq!(ctr.answers("/srv/idle", 2), None, "left alone, it still hangs");

    // restart (the default): go ahead, naming only the private copies.
    let kept = Kept::of(ctr, &["/srv/data"], &["/srv/data/file"]);
    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(private_lines(&said, &n).len(), 3, "{said}");
    assert!(said.contains("srv-data.automount: restarted, tmpfs srv-data kept on top\n"), "{said}");
    kept.check(ctr, "after the restart");
    for path in ALL {
        assert_eq!(ctr.answers(path, 10), Some(true), "{path} in the init's namespace");
    }
    assert_eq!(ctr.ok("cat /srv/data/file"), "kept\n");

    // The namespaces that receive propagation have the new mounts, and they answer there.
    let main_now = ctr.ok("cat /proc/1/mountinfo");
    for pid in [&n.slave, &n.private_tmp] {
        let text = n.mountinfo_of(pid);
        for path in ALL {
            let (theirs, ours) = (Nested::autofs_at(&text, path), Nested::autofs_at(&main_now, path));
            assert_eq!((&theirs.dev, theirs.option("pipe_ino")), (&ours.dev, ours.option("pipe_ino")), "{pid} {path}");
        }
        assert_eq!(n.ctr.answers_in(pid, "/srv/idle", 10), Some(true), "{pid}");
        let out = n.sh_in(pid, "cat /srv/data/file");
        assert_eq!(stdout(&out), "kept\n", "{pid}: {}", stderr(&out));
    }
    // The private copies were made catatonic. Left to the kernel, /srv/idle's would hang
    // for good: the access killed in setup() left a request pending on that superblock, so a
    // new access waits on it and never writes to the closed pipe. Catatonic, it answers at
    // once (an empty directory). The tmpfs on its copy of /srv/data still holds the file.
    let text = n.mountinfo_of(&n.private);
    for path in ["/proc/sys/fs/binfmt_misc", "/srv/idle"] {
        let copy = Nested::autofs_at(&text, path);
        assert_eq!(
            (copy.option("fd").as_deref(), copy.option("pipe_ino").as_deref()),
            (Some("-1"), Some("-1")),
            "{path}"
        );
    }
    assert_eq!(n.ctr.answers_in(&n.private, "/srv/idle", 10), Some(true), "the private copy hangs");
    assert_eq!(stdout(&n.sh_in(&n.private, "cat /srv/data/file")), "kept\n");

    let status = stdout(&run(&["status", "--pid", &ctr.pid]));
    let private_rows: Vec<&str> = status.lines().filter(|l| l.contains(&format!(" = {} inside", n.private))).collect();
    assert_eq!(private_rows.len(), 3, "{status}");
    assert!(private_rows.iter().all(|r| r.contains("catatonic")), "{status}");
    assert_eq!(status.matches(" follows /").count(), 6, "{status}");
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn dry_run_names_the_private_copies_and_changes_nothing() {
    require_containers();
    let n = setup();
    let before = n.ctr.ok("cat /proc/1/mountinfo");
    let out = run(&["restart", "--pid", &n.ctr.pid, "--dry-run", "--nested", "skip", "--unit", "srv-idle"]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let lines = private_lines(&said, &n);
    assert_eq!(lines.len(), 1, "only the unit asked for: {said}");
    assert!(lines[0].starts_with("autofs-restart: srv-idle.automount: /srv/idle has a private copy at /srv/idle"));
    assert!(said.contains("srv-idle.automount: left alone (nested policy: skip)\n"), "{said}");
    assert!(!said.contains("would restart"), "{said}");
    assert_eq!(n.ctr.ok("cat /proc/1/mountinfo"), before);
}
