//! The binary as CRIU and people run it, on input that needs no container.

mod common;

use common::{bin, run, run_as_criu, stderr, stdout};

#[test]
fn every_other_criu_stage_exits_0_silently() {
    for action in [
        "post-dump",
        "pre-restore",
        "post-restore",
        "network-lock",
        "network-unlock",
        "setup-namespaces",
        "post-setup-namespaces",
        "orphan-pts-master",
        "status-ready",
        "query-ext-files",
        "pre-stream",
        "a-stage-of-the-future",
    ] {
        // Whatever else the environment holds.
        let out = run_as_criu(action, "junk", &[("AUTOFS_RESTART_TIMEOUT", "junk")]);
        assert_eq!(out.status.code(), Some(0), "{action}: {}", stderr(&out));
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{action}");
    }
}

#[test]
fn a_bad_init_pid_is_one_line_and_exit_2() {
    for (value, why) in [
        ("", "CRTOOLS_INIT_PID='': is empty"),
        ("abc", "CRTOOLS_INIT_PID='abc': is not a plain positive decimal"),
        ("0", "CRTOOLS_INIT_PID='0': is not a positive pid"),
        ("-1", "CRTOOLS_INIT_PID='-1': is not a plain positive decimal"),
        ("12x", "CRTOOLS_INIT_PID='12x': is not a plain positive decimal"),
        (" 1", "CRTOOLS_INIT_PID=' 1': is not a plain positive decimal"),
        ("99999999", "CRTOOLS_INIT_PID='99999999': is out of range"),
    ] {
        let out = run_as_criu("post-resume", value, &[]);
        assert_eq!(out.status.code(), Some(2), "{value:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), format!("autofs-restart: {why}\n"), "{value:?}");
    }
    let unset =
        std::process::Command::new(bin()).env_clear().env("CRTOOLS_SCRIPT_ACTION", "post-resume").output().unwrap();
    assert_eq!(unset.status.code(), Some(2));
    assert_eq!(stderr(&unset), "autofs-restart: CRTOOLS_INIT_PID is not set\n");
}

#[test]
fn people_get_help_version_and_usage_errors() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("autofs-restart restart --pid PID"));
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with(&format!("autofs-restart {} (", env!("CARGO_PKG_VERSION"))));

    for (args, msg) in [
        (&[][..], "no command (see --help)"),
        (&["restart"], "restart needs --pid PID"),
        (&["restart", "--pid", "1", "--frob"], "invalid option '--frob'"),
        (&["status", "--pid", "x"], "--pid='x': is not a plain positive decimal"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out), format!("autofs-restart: {msg}\n"), "{args:?}");
    }
}

/// A pid that is no container's init. Finding that out takes looking at the process, which
/// takes root: a normal user is told that first (`without_root_one_line_says_what_is_needed`).
#[test]
#[ignore = "needs root: make test runs it"]
fn a_pid_that_is_no_init_is_one_line_and_exit_2() {
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    for (value, why) in [
        ("4194304", "CRTOOLS_INIT_PID='4194304': is no running process"),
        ("2", "CRTOOLS_INIT_PID='2': has no executable: a kernel thread or a zombie, not a container's init"),
    ] {
        let out = run_as_criu("post-resume", value, &[]);
        assert_eq!(out.status.code(), Some(2), "{value:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), format!("autofs-restart: {why}\n"), "{value:?}");
    }
}

#[test]
#[ignore = "needs root: make test runs it"]
fn our_own_pid_is_refused() {
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    let out = std::process::Command::new("sh")
        .args(["-c", "exec \"$0\" status --pid $$"])
        .arg(bin())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).ends_with(": is autofs-restart itself\n"), "{}", stderr(&out));
}

#[test]
#[ignore = "needs root: make test runs it"]
fn a_zombie_is_refused() {
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    // A child of this test that exited and is not reaped yet.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id().to_string();
    let state = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    for _ in 0..200 {
        if state(&pid).rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = run_as_criu("post-resume", &pid, &[]);
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!("autofs-restart: CRTOOLS_INIT_PID='{pid}': has exited: a zombie, not a running init\n")
    );
}

/// Without the privileges it takes to reach a container: one line naming what is missing,
/// exit 1, before anything is opened. Needs root to drop them.
#[test]
#[ignore = "needs root: make test runs it"]
fn without_root_one_line_says_what_is_needed() {
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    let as_nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let without_admin = ["--bounding-set=-sys_admin", "--inh-caps=-all", "--ambient-caps=-all"];
    for (drop, missing) in [
        (&as_nobody[..], "CAP_SYS_ADMIN and CAP_SYS_PTRACE are missing"),
        (&without_admin[..], "CAP_SYS_ADMIN is missing"),
    ] {
        let expected = format!(
            "autofs-restart: needs root: {missing} (reaching a container takes CAP_SYS_ADMIN and CAP_SYS_PTRACE)\n"
        );
        let setpriv = |args: &[&str], env: &[(&str, &str)]| {
            std::process::Command::new("setpriv")
                .args(drop)
                .arg(bin())
                .args(args)
                .env_clear()
                .envs(env.iter().copied())
                .output()
                .unwrap()
        };
        for out in [
            setpriv(&["status", "--pid", "1"], &[]),
            setpriv(&["restart", "--pid", "1"], &[]),
            setpriv(&[], &[("CRTOOLS_SCRIPT_ACTION", "post-resume"), ("CRTOOLS_INIT_PID", "1")]),
        ] {
            assert_eq!(out.status.code(), Some(1), "{drop:?}: {}", stderr(&out));
            assert_eq!(stderr(&out), expected, "{drop:?}");
        }
        // Bad input still comes first, and every other stage stays silent.
        assert_eq!(setpriv(&["status", "--pid", "x"], &[]).status.code(), Some(2));
        let other = setpriv(&[], &[("CRTOOLS_SCRIPT_ACTION", "post-dump"), ("CRTOOLS_INIT_PID", "1")]);
        assert_eq!((other.status.code(), other.stderr.len()), (Some(0), 0));
    }
}
