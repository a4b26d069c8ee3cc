//! CRIU's stages besides the fix itself, run exactly as CRIU runs them: pre-dump (decide while
//! nothing is lost), and a stage run twice by one CRIU process (the script named in two of its
//! configuration files, as with runc).

mod common;

use std::process::Command;

use common::{Container, bin, require_containers, run, run_as_criu, stderr};

const ALL: [&str; 3] = ["/proc/sys/fs/binfmt_misc", "/srv/data", "/srv/idle"];

/// Runs the binary as CRIU does, `times` times from one parent process with the same
/// environment, `CRTOOLS_IMAGE_DIR` naming a descriptor of that parent, as CRIU sets it.
/// Returns each run's exit code and what it said.
fn from_one_criu(action: &str, pid: &str, times: usize) -> Vec<(i32, String)> {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let one = format!(
        "env -i CRTOOLS_SCRIPT_ACTION={action} CRTOOLS_INIT_PID={pid} CRTOOLS_IMAGE_DIR=/proc/$$/fd/3 {} 2>&1 <&-; echo \"--- $?\"",
        quote(&bin().to_string_lossy())
    );
    let script = format!("exec 3</tmp\n{}", vec![one; times].join("\n"));
    let out = Command::new("bash").arg("-c").arg(script).env_clear().output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut runs = Vec::new();
    let mut said = String::new();
    for line in text.lines() {
        match line.strip_prefix("--- ") {
            Some(code) => runs.push((code.parse().unwrap(), std::mem::take(&mut said))),
            None => said.push_str(&format!("{line}\n")),
        }
    }
    runs
}

/// What a pre-dump must not change: the whole mount table (autofs mounts, their pipes, the
/// count), of the init and of the namespace of `others`.
fn tables(ctr: &Container, others: &[&str]) -> Vec<String> {
    ["1"].iter().chain(others).map(|p| ctr.ok(&format!("cat /proc/{p}/mountinfo"))).collect()
}

/// A wrapper around the container's systemctl that records every call.
fn record_calls(ctr: &Container) {
    ctr.ok("cp -a /usr/bin/systemctl /usr/bin/systemctl.real
            printf '#!/bin/sh\\necho \"$*\" >> /run/systemctl-calls\\nexec /usr/bin/systemctl.real \"$@\"\\n' > /usr/bin/systemctl");
}

fn calls(ctr: &Container) -> Vec<String> {
    ctr.ok("cat /run/systemctl-calls 2>/dev/null || true").lines().map(String::from).collect()
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn pre_dump_is_silent_on_a_plain_container_and_changes_nothing() {
    require_containers();
    let ctr = Container::start();
    ctr.ok("echo kept > /srv/data/file");
    record_calls(&ctr);
    let before = tables(&ctr, &[]);
    let out = run_as_criu("pre-dump", &ctr.pid, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((stderr(&out).as_str(), out.stdout.len()), ("", 0), "nothing to say");
    assert_eq!(tables(&ctr, &[]), before, "the mount table, autofs pipes included");
    assert!(calls(&ctr).is_empty(), "no program of the container ran: {:?}", calls(&ctr));
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn pre_dump_with_a_private_nested_namespace_under_each_policy() {
    require_containers();
    let ctr = Container::start();
    ctr.ok("(setsid unshare -m --propagation private sleep 1001 </dev/null >/dev/null 2>&1 &)
            while ! pgrep -fx 'sleep 1001' >/dev/null; do sleep 0.05; done");
    let private = ctr.ok("pgrep -fx 'sleep 1001'").trim().to_string();
    record_calls(&ctr);
    let before = tables(&ctr, &[&private]);
    let copy_of = |said: &str| -> Vec<String> {
        said.lines().filter(|l| l.contains(" has a private copy at ")).map(String::from).collect()
    };
    let named = "in the mount namespace of pid"; // then the host pid, then ours
    let ours = format!("({private} in the container, sleep)");

    let out = run_as_criu("pre-dump", &ctr.pid, &[("AUTOFS_RESTART_NESTED", "fail")]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "the dump is refused: {said}");
    let lines = copy_of(&said);
    assert_eq!(lines.len(), 3, "one line per copy: {said}");
    for (line, path) in lines.iter().zip(ALL) {
        assert!(line.contains(&format!("{path} has a private copy at {path} {named}")), "{line}");
        assert!(line.contains(&ours) && line.ends_with(": the dump is refused (nested policy: fail)"), "{line}");
    }
    assert!(said.ends_with(
        "autofs-restart: failed: the dump is refused: 3 private copies in nested mount namespaces (nested policy: fail); nothing was changed\n"
    ), "{said}");

    // The same policy from the settings file, as where a runtime starts CRIU; the
    // environment over it.
    let file = std::env::temp_dir().join(format!("autofs-restart-test.{}.conf", std::process::id()));
    std::fs::write(&file, "# as an operator writes it\nAUTOFS_RESTART_NESTED=fail\n").unwrap();
    let config = ("AUTOFS_RESTART_CONFIG", file.to_str().unwrap());
    let out = run_as_criu("pre-dump", &ctr.pid, &[config]);
    assert_eq!((out.status.code(), copy_of(&stderr(&out)).len()), (Some(1), 3), "from the file: {}", stderr(&out));
    let out = run_as_criu("pre-dump", &ctr.pid, &[config, ("AUTOFS_RESTART_NESTED", "skip")]);
    assert_eq!(out.status.code(), Some(0), "the environment wins: {}", stderr(&out));
    std::fs::write(&file, "AUTOFS_RESTART_NESTED=fail\nAUTOFS_RESTART_NESTED=skip\n").unwrap();
    let out = run_as_criu("post-resume", &ctr.pid, &[config]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(2), format!("autofs-restart: {}:2: AUTOFS_RESTART_NESTED again (first on line 1)\n", file.display())),
        "a bad file is named, and nothing done"
    );

    for (policy, then) in [
        ("restart", "after the restore the unit is restarted and that copy made catatonic (nested policy: restart)"),
        ("skip", "after the restore the unit is left alone, and it keeps hanging (nested policy: skip)"),
    ] {
        let out = run_as_criu("pre-dump", &ctr.pid, &[("AUTOFS_RESTART_NESTED", policy)]);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{policy}: {said}");
        let lines = copy_of(&said);
        assert_eq!(lines.len(), 3, "{policy}: {said}");
        assert!(lines.iter().all(|l| l.contains(&ours) && l.ends_with(then)), "{policy}: {said}");
        assert_eq!(said.lines().count(), 3, "{policy}: nothing else: {said}");
    }
    assert_eq!(tables(&ctr, &[&private]), before, "no policy changed a table");
    assert!(calls(&ctr).is_empty(), "no program of the container ran: {:?}", calls(&ctr));
}

/// Their own faults are a warning, never a refused dump or a failed restore: a pid that is no
/// process (or, without root, the missing privileges), junk, a bad setting.
#[test]
fn pre_dump_and_pre_resume_faults_are_one_warning_and_exit_0() {
    for stage in ["pre-dump", "pre-resume"] {
        for pid in ["4194304", "junk"] {
            let out = run_as_criu(stage, pid, &[]);
            assert_eq!(out.status.code(), Some(0), "{stage} {pid}: {}", stderr(&out));
            let said = stderr(&out);
            assert!(said.starts_with(&format!("autofs-restart: warning: {stage}: ")), "{said}");
            assert_eq!(said.lines().count(), 1, "{said}");
        }
        let out = run_as_criu(stage, "junk", &[]);
        assert!(
            stderr(&out).ends_with("CRTOOLS_INIT_PID='junk': is not a plain positive decimal\n"),
            "{}",
            stderr(&out)
        );
    }
    let out = run_as_criu("pre-dump", "1", &[("AUTOFS_RESTART_NESTED", "sometimes")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning: pre-dump: AUTOFS_RESTART_NESTED='sometimes'"), "{}", stderr(&out));
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_second_run_of_a_stage_by_the_same_criu_does_nothing() {
    require_containers();
    let ctr = Container::start();
    ctr.ok("echo kept > /srv/data/file");
    ctr.restore(&ALL);
    assert_eq!(ctr.answers("/srv/idle", 2), None, "/srv/idle should hang after the restore");
    record_calls(&ctr);

    let runs = from_one_criu("post-resume", &ctr.pid, 2);
    assert_eq!(runs[0].0, 0, "{}", runs[0].1);
    assert!(runs[0].1.contains("srv-data.automount: restarted, tmpfs srv-data kept on top\n"), "{}", runs[0].1);
    assert_eq!(runs[1], (0, String::new()), "the second run does nothing, says nothing");
    let restarts = calls(&ctr).iter().filter(|c| c.starts_with("restart ")).count();
    assert_eq!(restarts, 1, "{:?}", calls(&ctr));
    common::nothing_left(&ctr, "after two runs");
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true));
    assert_eq!(ctr.host_entries("post-resume.").len(), 1, "one marker, of the CRIU process");

    // Another CRIU process (another restore) acts again, and so does a run by hand.
    let runs = from_one_criu("post-resume", &ctr.pid, 1);
    assert_eq!(ctr.host_entries("post-resume.").len(), 1, "the marker of the CRIU process that is gone is swept");
    // (The access above mounted /srv/idle's tmpfs: it is kept on top.)
    assert!(runs[0].1.contains("srv-idle.automount: restarted, tmpfs srv-idle kept on top\n"), "{}", runs[0].1);
    let out = run(&["restart", "--pid", &ctr.pid, "--unit", "srv-idle"]);
    assert_eq!(stderr(&out), "autofs-restart: srv-idle.automount: restarted, tmpfs srv-idle kept on top\n");
    assert_eq!(calls(&ctr).iter().filter(|c| c.starts_with("restart ")).count(), 3);

    // pre-dump too: the second set of lines is not said.
    ctr.ok("(setsid unshare -m --propagation private sleep 1001 </dev/null >/dev/null 2>&1 &)
            while ! pgrep -fx 'sleep 1001' >/dev/null; do sleep 0.05; done");
    let runs = from_one_criu("pre-dump", &ctr.pid, 2);
    assert_eq!(runs[0].0, 0);
    assert_eq!(runs[0].1.lines().filter(|l| l.contains(" has a private copy at ")).count(), 3, "{}", runs[0].1);
    assert_eq!(runs[1], (0, String::new()));
}

/// At pre-dump, a process already waiting on an autofs mount is named: if its wait outlasts
/// the dump, the restored process waits for good.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn pre_dump_names_a_process_waiting_on_an_automount() {
    require_containers();
    let ctr = Container::start();
    // A stand-in for a slow mount: the stale binfmt_misc automount never answers.
    ctr.restore(&["/proc/sys/fs/binfmt_misc"]);
    ctr.ok("(cd /proc/sys/fs && setsid stat binfmt_misc/. </dev/null >/dev/null 2>&1 &)");
    ctr.wait_for("grep -qx autofs_wait /proc/$(pgrep -x stat)/wchan");
    let waiting = ctr.ok("pgrep -x stat").trim().to_string();
    let out = run_as_criu("pre-dump", &ctr.pid, &[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains(&format!(
        "({waiting} in the container, stat) waits on /proc/sys/fs/binfmt_misc (looking up /proc/sys/fs/binfmt_misc): \
         if that wait outlasts the dump, the restored process waits for good; let it finish first\n"
    )), "{said}");
    ctr.ok(&format!("kill -KILL {waiting}"));
}
