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
    let whole = stdout(&out);
    assert!(whole.contains("pre-dump, pre-resume and post-resume do something"), "{whole}");
    // A command's help is its own part.
    for (command, first) in [
        ("restart", "autofs-restart restart: restart the masters"),
        ("status", "autofs-restart status: what the autofs mounts"),
        ("recover", "autofs-restart recover: put back"),
        ("check", "autofs-restart check: is this host ready"),
    ] {
        let out = run(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let text = stdout(&out);
        assert!(text.starts_with(first) && text.lines().count() < whole.lines().count() / 2, "{text}");
    }
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with(&format!("autofs-restart {} (", env!("CARGO_PKG_VERSION"))));
    // A bad setting is quoted, as the others are.
    for (var, msg) in [
        ("AUTOFS_RESTART_KERNEL_API", "AUTOFS_RESTART_KERNEL_API='newest': not new or legacy"),
        ("AUTOFS_RESTART_PROBE", "AUTOFS_RESTART_PROBE='newest': not 0 or 1"),
    ] {
        let out = common::run_env(&["status", "--pid", "1"], &[(var, "newest")]);
        assert_eq!((out.status.code(), stderr(&out)), (Some(2), format!("autofs-restart: {msg}\n")));
    }

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
        ("4194304", "CRTOOLS_INIT_PID='4194304': no process has this pid"),
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

/// Nothing to do is said where asked (status, a dry run, -v), never a silent success; a unit
/// asked for that is not there is a failure.
#[test]
#[ignore = "needs root: make test runs it"]
fn a_container_without_autofs_mounts_is_said_to_need_nothing() {
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    let ns = common::Bare::start();
    let pid = ns.init.clone();
    let none = format!("no autofs mount in the mount namespace of pid {pid}");

    let out = run(&["status", "--pid", &pid]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("No autofs mount in the mount namespace of pid {pid}: nothing to restart.\n"));

    let out = run(&["restart", "--pid", &pid, "--dry-run"]);
    assert_eq!((out.status.code(), stderr(&out)), (Some(0), format!("autofs-restart: nothing to do: {none}\n")));
    // As CRIU runs it: silent, but for -v.
    let out = run_as_criu("post-resume", &pid, &[]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""));
    let out = run_as_criu("post-resume", &pid, &[("AUTOFS_RESTART_VERBOSE", "1")]);
    assert!(stderr(&out).ends_with(&format!("autofs-restart: nothing to do: {none}\n")), "{}", stderr(&out));

    let out = run(&["restart", "--pid", &pid, "--unit", "srv-nothing"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "autofs-restart: srv-nothing.automount: failed: no autofs mount of the container's systemd belongs to this unit\n"
    );
}

/// A pid in this host's own mount namespace is in no container, and the line says so.
#[test]
#[ignore = "needs root: make test runs it"]
fn a_pid_of_the_host_is_said_to_be_in_no_container() {
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    let mut sleeper = std::process::Command::new("sleep").arg("600").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let has_autofs = std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(" - autofs ");
    let out = run(&["restart", "--pid", &pid, "--dry-run"]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    if !has_autofs {
        let own = format!(
            "autofs-restart: nothing to do: no autofs mount in the mount namespace of pid {pid}, this host's own: pid {pid} \
             is in no container\n"
        );
        assert_eq!(stderr(&out), own);
    }
}

/// Root in a user namespace of its own may not reach the host's processes: the line says
/// what it takes.
#[test]
#[ignore = "needs root: make test runs it"]
fn root_that_cannot_trace_the_init_is_told_what_it_takes() {
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    let out =
        std::process::Command::new("unshare").arg("-Ur").arg(bin()).args(["status", "--pid", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "autofs-restart: opening /proc/1/root (run autofs-restart as root in the host's namespaces, where no security \
         module keeps it from tracing pid 1): EACCES\n"
    );
}

/// The words of the interface, said once each in `--help`, the commands' help, the man page
/// and the README, agree: the options, each command's synopsis, the environment and the exit
/// codes.
#[test]
fn help_man_page_and_readme_agree() {
    use std::collections::BTreeSet;
    let file = |name: &str| std::fs::read_to_string(format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let help = stdout(&run(&["--help"]));
    // The man page as words: roff's escaped minus as a plain one, fonts and breaks dropped.
    let man = file("build/autofs-restart.8").replace("\\-", "-").replace("\\&", "");
    let readme = file("README.md");
    let between = |text: &str, start: &str, end: &str| -> String {
        let after = text.split_once(start).unwrap_or_else(|| panic!("no {start:?}")).1;
        after.split_once(end).unwrap_or_else(|| panic!("no {end:?} after {start:?}")).0.to_string()
    };
    let words = |text: &str, starts: &str| -> BTreeSet<String> {
        let cut = |c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_');
        text.split(cut).filter(|w| w.starts_with(starts) && w.len() > starts.len()).map(String::from).collect()
    };

    let options = words(&between(&help, "\nOptions:\n", "\nEnvironment"), "--");
    assert_eq!(words(&between(&man, ".SH OPTIONS", ".SH ENVIRONMENT"), "--"), options, "man page, OPTIONS");
    let synopsis = words(&between(&help, "Usage:\n", "\nCommands:"), "--");
    // The usage lines say -v for --verbose.
    let only_options: Vec<&String> = options.difference(&synopsis).collect();
    assert_eq!(only_options, ["--verbose"], "--help: the usage lines and the options");
    assert!(help.contains("[-v]") && help.contains("  -v, --verbose "), "{help}");
    assert_eq!(words(&between(&man, ".SH SYNOPSIS", ".SH DESCRIPTION"), "--"), synopsis, "man page, SYNOPSIS");
    assert_eq!(words(&between(&readme, "## Command line\n\n```\n", "```"), "--"), synopsis, "README, Command line");

    // Each command's usage, in its own help, in --help's and in the README's synopsis.
    let usage = |text: &str, command: &str| -> String {
        let start = format!("autofs-restart {command} ");
        let mut lines = text.lines().skip_while(|l| !l.trim_start().starts_with(&start));
        let first = lines.next().unwrap_or_else(|| panic!("no usage of {command} in {text}"));
        let rest = lines.take_while(|l| l.starts_with("       ") && !l.trim_start().starts_with("autofs-restart"));
        std::iter::once(first).chain(rest).flat_map(|l| l.split_whitespace()).collect::<Vec<_>>().join(" ")
    };
    let command_line = between(&readme, "## Command line\n\n```\n", "```");
    for command in ["restart", "status", "recover", "check"] {
        let own = stdout(&run(&[command, "--help"]));
        assert_eq!(stdout(&run(&["help", command])), own, "help {command}");
        assert_eq!(stdout(&run(&["--help", command])), own, "--help {command}");
        let own = usage(&between(&format!("{own}\n"), "Usage:\n", "\n\n"), command);
        assert_eq!(usage(&between(&help, "Usage:\n", "\nCommands:"), command), own, "{command}: --help");
        assert_eq!(usage(&command_line, command), own, "{command}: README");
    }

    let variables = |text: &str| -> BTreeSet<String> {
        let mut all = words(text, "AUTOFS_RESTART_");
        all.extend(words(text, "CRTOOLS_"));
        all
    };
    let environment = variables(&between(&help, "\nEnvironment", "\nExit status"));
    assert_eq!(variables(&between(&man, ".SH ENVIRONMENT", ".SH ")), environment, "man page, ENVIRONMENT");
    assert_eq!(variables(&between(&readme, "\n## Environment\n", "\n## ")), environment, "README, Environment");

    let codes = |text: &str, prefix: &str| -> BTreeSet<String> {
        let code =
            |l: &str| l.strip_prefix(prefix)?.split(' ').next().filter(|c| c.parse::<u8>().is_ok()).map(String::from);
        text.lines().filter_map(code).collect()
    };
    let exit = between(&format!("{help}\n"), "\nExit status: ", "\n\n");
    let in_help: BTreeSet<String> = exit
        .split([';', ':'])
        .filter_map(|p| p.split_whitespace().next()?.parse::<u8>().ok())
        .map(|c| c.to_string())
        .collect();
    assert_eq!(in_help, ["0", "1", "2", "3"].map(String::from).into(), "--help: {exit}");
    let man_exit = between(&man, ".SH EXIT STATUS", ".SH ");
    let in_man: BTreeSet<String> = man_exit
        .split(".TP\n.B ")
        .skip(1)
        .filter_map(|p| p.split_whitespace().next().filter(|c| c.parse::<u8>().is_ok()).map(String::from))
        .collect();
    assert_eq!(in_man, in_help, "man page, EXIT STATUS");
    assert_eq!(codes(&between(&readme, "\n## Exit status\n", "\n## "), "| "), in_help, "README, Exit status");
}

/// `autofs-restart check` as an operator runs it, with CRIU's configuration files of the case
/// (in a mount namespace of its own: a tmpfs at /etc/criu) and the host's criu, runtimes and
/// kernel as they are: each line says what this host has, and the exit status is 0 only
/// without a FAIL line.
#[test]
#[ignore = "needs root (a mount namespace of its own): make test runs it"]
fn check_tells_whether_the_host_is_ready() {
    let made = !std::path::Path::new("/etc/criu").exists();
    if made {
        std::fs::create_dir("/etc/criu").unwrap();
    }
    let check = |conf: Option<&str>, env: &[(&str, &str)], args: &[&str]| {
        let write = conf.map_or_else(String::new, |c| format!("printf '%s\\n' '{c}' >/etc/criu/default.conf && "));
        // A file that is not executable, for a configuration to name.
        let write = format!("{write}: >/etc/criu/plain && chmod 644 /etc/criu/plain && ");
        let line = format!("mount -t tmpfs none /etc/criu && {write}exec \"$0\" check \"$@\"");
        let out = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &line])
            .arg(bin())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status.code(), stdout(&out), stderr(&out))
    };
    let bin = bin().canonicalize().unwrap().display().to_string();
    // What this host has, read here as an operator would.
    let old_criu = common::criu_version("criu").unwrap_or((0, 0)) < (3, 19);
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"].iter().any(|p| std::path::Path::new(p).exists());
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let autofs = std::fs::read_to_string("/proc/filesystems").unwrap().lines().any(|l| l.ends_with("\tautofs"))
        || std::path::Path::new(&format!("/lib/modules/{}/kernel/fs/autofs", release.trim())).is_dir();
    let expected_code = |our_fail: bool| Some(if our_fail || !autofs || (runc && old_criu) { 3 } else { 0 });

    let (code, said, err) = check(None, &[], &[]);
    // Where a runtime drives a CRIU before 3.19, the advice to name it waits for a newer CRIU.
    let first = if runc && old_criu { "install CRIU 3.19 or later first (below), then " } else { "" };
    let unnamed = format!(
        "FAIL  CRIU's configuration: no file names an autofs-restart: CRIU will not run it; {first}put `action-script "
    );
    assert!(said.contains(&unnamed) && said.ends_with("not ready: see the FAIL lines\n"), "{said}{err}");
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("note  /etc/criu/default.conf (criu, and every runtime through it): absent\n"), "{said}");
    let kernel = if autofs {
        format!("ok    kernel {}: autofs", release.trim())
    } else {
        format!("FAIL  kernel {}: no autofs", release.trim())
    };
    assert!(said.contains(&kernel), "{said}");
    if runc && old_criu {
        assert!(
            said.contains(
                "runs no script of its configuration files under runc (CRIU 3.19 does); install CRIU 3.19 or later"
            ),
            "{said}"
        );
    } else {
        assert!(said.lines().any(|l| l.starts_with("ok    criu: ")), "{said}");
    }

    let (code, said, _) = check(Some(&format!("action-script {bin}")), &[], &[]);
    assert!(
        said.contains(&format!(
            "ok    /etc/criu/default.conf (criu, and every runtime through it): runs {bin}: this binary\n"
        )),
        "{said}"
    );
    assert!(!said.contains("CRIU's configuration"), "{said}");
    assert_eq!(code, expected_code(false), "{said}");
    if runc && old_criu {
        // tests/criu.rs shows that end under runc.
        let breaks = "fails every checkpoint by runc while /etc/criu/default.conf names an action script (CRIU's \
                      \"BUG at criu/action-scripts.c\"";
        assert!(said.lines().any(|l| l.starts_with("FAIL  criu: ") && l.contains(breaks)), "{said}");
    }

    let (code, said, _) = check(Some("action-script /etc/criu/plain"), &[], &[]);
    let plain = "names /etc/criu/plain, which is not an executable file";
    assert!(
        said.contains(&format!("FAIL  /etc/criu/default.conf (criu, and every runtime through it): {plain}")),
        "{said}"
    );
    assert_eq!(code, Some(3), "{said}");

    // The settings in force, and where each came from; a bad one is a FAIL.
    let file = std::env::temp_dir().join(format!("autofs-restart-check.{}.conf", std::process::id()));
    std::fs::write(&file, "AUTOFS_RESTART_NESTED=fail\n").unwrap();
    let config = ("AUTOFS_RESTART_CONFIG", file.to_str().unwrap());
    let (_, said, _) = check(Some(&format!("action-script {bin}")), &[config, ("AUTOFS_RESTART_TIMEOUT", "9")], &[]);
    assert!(said.contains(&format!("ok    setting AUTOFS_RESTART_NESTED: fail ({}:1)\n", file.display())), "{said}");
    assert!(said.contains("ok    setting AUTOFS_RESTART_TIMEOUT: 9 (the environment)\n"), "{said}");
    std::fs::write(&file, "AUTOFS_RESTART_NESTED=ask\n").unwrap();
    let (code, said, _) = check(Some(&format!("action-script {bin}")), &[config], &["--json"]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, Some(3), "{said}");
    let bad = format!(
        "{{\"verdict\":\"fail\",\"what\":\"settings\",\"found\":\"{}:1: AUTOFS_RESTART_NESTED='ask': not restart, skip or fail\"",
        file.display()
    );
    assert!(said.starts_with("{\"schema\":1,\"ready\":false,\"items\":[") && said.contains(&bad), "{said}");
    if made {
        std::fs::remove_dir("/etc/criu").unwrap();
    }
}
