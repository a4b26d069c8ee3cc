//! CRIU itself runs us: a real `criu dump` and `criu restore` of a process, with our binary
//! named as an action script twice (in a configuration file and on the command line) beside
//! another script, as when a runtime or LXC passes its own. CRIU runs every script it is given
//! at every stage; ours acts once per stage and CRIU process, and says so with `-v`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::bin;

/// The stages CRIU runs the scripts at for a process without namespaces of its own.
const STAGES: [&str; 6] = ["pre-dump", "post-dump", "pre-restore", "post-restore", "pre-resume", "post-resume"];

/// A directory of the test's, the process dumped and restored (one pid), and the markers our
/// runs left for it under /run/autofs-restart: all gone on drop, even on failure.
struct Scene {
    dir: PathBuf,
    pid: Option<u32>,
}

impl Drop for Scene {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            let markers =
                format!("rm -f /run/autofs-restart/*.{pid}-*.*; rmdir /run/autofs-restart 2>/dev/null || true");
            let _ = Command::new("sh").args(["-c", &markers]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The script paths CRIU ran at `stage`, in order, from its log (`-v4`): each a line of
/// CRIU's, followed by what the script said.
fn scripts_at(log: &str, stage: &str) -> Vec<String> {
    let start = format!("Running {stage} scripts");
    log.lines()
        .skip_while(|l| !l.ends_with(&start))
        .skip(1)
        .take_while(|l| l.contains("\t[") || l.starts_with("autofs-restart: "))
        .filter_map(|l| l.split_once("\t[").and_then(|(_, p)| p.strip_suffix(']')))
        .map(str::to_string)
        .collect()
}

/// Runs `criu ARGS` with `logger` and `ours` named on its command line, `ours` again in its
/// configuration file; returns its log.
fn criu(dir: &Path, args: &[&str], logger: &Path, ours: &str) -> String {
    let out = Command::new(common::criu())
        .args(args)
        .args(["-D", &dir.join("img").to_string_lossy(), "-v4"])
        .args(["--config", &dir.join("criu.conf").to_string_lossy()])
        .args(["--action-script", &logger.to_string_lossy(), "--action-script", ours])
        .env("CHAIN_LOG", dir.join("chain.log"))
        .env("AUTOFS_RESTART_VERBOSE", "1")
        .output()
        .expect("running criu");
    let log = std::fs::read_to_string(dir.join("img").join(format!("{}.log", args[0]))).unwrap_or_default();
    assert!(out.status.success(), "criu {args:?}: {}\n{log}", String::from_utf8_lossy(&out.stderr));
    log
}

#[test]
#[ignore = "needs root and criu: make test runs it"]
fn criu_runs_every_action_script_and_ours_acts_once_per_stage() {
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    common::criu();
    let dir = PathBuf::from(format!("/tmp/autofs-restart-criu.{}", std::process::id()));
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut scene = Scene { dir: dir.clone(), pid: None };
    let logger = dir.join("logger");
    std::fs::write(&logger, "#!/bin/sh\necho \"$CRTOOLS_SCRIPT_ACTION\" >>\"$CHAIN_LOG\"\n").unwrap();
    Command::new("chmod").arg("+x").arg(&logger).status().unwrap();
    let ours = bin().to_string_lossy().into_owned();
    std::fs::write(dir.join("criu.conf"), format!("action-script {ours}\n")).unwrap();

    // A process of its own session, with no descriptor but 0 to 2 (CRIU dumps each it finds).
    let mut child = Command::new("setsid")
        .args([
            "sh",
            "-c",
            "for f in /proc/$$/fd/*; do n=${f##*/}; [ $n -gt 2 ] && eval \"exec $n>&-\"; done; exec sleep 1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    scene.pid = Some(pid);
    while std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.starts_with("sleep")) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dump = criu(&dir, &["dump", "-t", &pid.to_string(), "-o", "dump.log"], &logger, &ours);
    // Reaped, so that its pid is free for the restore.
    child.wait().unwrap();
    let restore = criu(&dir, &["restore", "-d", "-o", "restore.log"], &logger, &ours);

    // Every script ran at every stage, ours twice (the configuration file's and the command
    // line's), the other once.
    let chain = std::fs::read_to_string(dir.join("chain.log")).unwrap();
    assert_eq!(chain.lines().collect::<Vec<_>>(), STAGES, "the other script's runs");
    for stage in STAGES {
        let log = if stage.ends_with("-dump") { &dump } else { &restore };
        let ran = scripts_at(log, stage);
        assert_eq!(ran.len(), 3, "{stage}: {ran:?}\n{log}");
        assert_eq!(ran.iter().filter(|p| **p == ours).count(), 2, "{stage}: {ran:?}");
    }

    // Ours acted at the first run of each of its stages, and the second said it had: the
    // first left a marker on the host, for this CRIU process.
    for (stage, log) in [("pre-dump", &dump), ("pre-resume", &restore), ("post-resume", &restore)] {
        let prefix = if stage == "post-resume" { String::new() } else { format!("{stage}: ") };
        let read = format!("autofs-restart: {prefix}the container's mount table: ");
        let again =
            format!("autofs-restart: {prefix}nothing to do: this CRIU process ran {stage} on this container already");
        assert_eq!(log.lines().filter(|l| l.starts_with(&read)).count(), 1, "{stage}:\n{log}");
        assert_eq!(log.lines().filter(|l| *l == again).count(), 1, "{stage}:\n{log}");
    }
    // The other stages are silent no-ops.
    let said = |log: &str| log.lines().filter(|l| l.starts_with("autofs-restart: ")).count();
    let between = |log: &str, from: &str, to: &str| {
        let start = log.find(&format!("Running {from} scripts")).unwrap();
        let end = log.find(&format!("Running {to} scripts")).unwrap_or(log.len());
        said(&log[start..end])
    };
    assert_eq!(between(&dump, "post-dump", "never"), 0, "post-dump:\n{dump}");
    assert_eq!(between(&restore, "pre-restore", "pre-resume"), 0, "pre-restore, post-restore:\n{restore}");
}
