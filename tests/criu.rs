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

/// The version `criu --version` gives: (major, minor).
fn criu_version(criu: &str) -> (u32, u32) {
    let out = Command::new(criu).arg("--version").output().expect("running criu --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = text.lines().find_map(|l| l.strip_prefix("Version: ")).unwrap_or_else(|| panic!("{text}"));
    let mut n = v.split('.').map(|p| p.trim().parse::<u32>().unwrap_or(0));
    (n.next().unwrap_or(0), n.next().unwrap_or(0))
}

/// A runc container (`runc run -d`) and its directory: killed, deleted and removed on drop,
/// even on failure.
struct Runc {
    dir: PathBuf,
    id: String,
    /// The container's init pids (before the checkpoint, after the restore): our runs leave
    /// their markers under /run/autofs-restart by them.
    pids: std::cell::RefCell<Vec<u32>>,
}

impl Runc {
    /// `runc ARGS` with its state under the test's directory and `criu` as its CRIU, more
    /// environment `env`; asserts success.
    fn run(&self, criu: &str, args: &[&str], env: &[(&str, &str)]) {
        if let Err(said) = self.try_run(criu, args, env) {
            panic!("runc {args:?}: {said}");
        }
    }

    /// Notes the container's init pid now (`runc state`), for the markers dropped with it.
    fn note_pid(&self) {
        let out = Command::new("runc").arg("--root").arg(self.dir.join("state")).args(["state", &self.id]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let pid =
            text.split("\"pid\":").nth(1).and_then(|r| r.trim_start().split(|c: char| !c.is_ascii_digit()).next());
        if let Some(pid) = pid.and_then(|p| p.parse().ok()) {
            self.pids.borrow_mut().push(pid);
        }
    }

    /// The same, returning on failure what runc said and the end of CRIU's logs. Its output
    /// goes to a file: a pipe would stay open as long as a container started by `run -d` ran,
    /// and that container's own output is /dev/null (CRIU dumps no file of another mount
    /// namespace).
    fn try_run(&self, criu: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
        let out = self.dir.join("runc.out");
        let file = if args[0] == "run" { std::fs::File::create("/dev/null") } else { std::fs::File::create(&out) };
        let file = file.unwrap();
        let status = Command::new("runc")
            .arg("--root")
            .arg(self.dir.join("state"))
            .args(["--criu", criu])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .expect("running runc");
        if status.success() {
            return Ok(());
        }
        let said = std::fs::read_to_string(&out).unwrap_or_default();
        let logs = ["dump.log", "restore.log"].map(|l| std::fs::read_to_string(self.dir.join("work").join(l)));
        let tail = |log: String| {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        let tails: Vec<String> = logs.into_iter().flatten().map(tail).collect();
        Err(format!("{said}\n{}", tails.join("\n")))
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let state = self.dir.join("state");
        let _ = Command::new("runc").arg("--root").arg(&state).args(["kill", &self.id, "KILL"]).output();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let _ = Command::new("runc").arg("--root").arg(&state).args(["delete", "-f", &self.id]).output();
        for pid in self.pids.borrow().iter() {
            let markers =
                format!("rm -f /run/autofs-restart/*.{pid}-*.*; rmdir /run/autofs-restart 2>/dev/null || true");
            let _ = Command::new("sh").args(["-c", &markers]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `runc spec`'s configuration, made into a container that sleeps in a busybox root, shares
/// this host's network (CRIU locks a network namespace of its own with iptables), and names
/// `conf` as CRIU's configuration file (runc's annotation `org.criu.config`). Each change must
/// apply: a runc whose spec reads otherwise fails here, not later.
fn runc_config(spec: &str, conf: &Path) -> String {
    let changes = [
        ("\"terminal\": true", "\"terminal\": false".to_string()),
        ("\"args\": [\n\t\t\t\"sh\"\n\t\t]", "\"args\": [\"/bin/busybox\", \"sleep\", \"1000\"]".into()),
        ("\"readonly\": true", "\"readonly\": false".into()),
        ("\t\t\t{\n\t\t\t\t\"type\": \"network\"\n\t\t\t},\n", String::new()),
        (
            "\"ociVersion\": ",
            format!("\"annotations\": {{\"org.criu.config\": \"{}\"}},\n\t\"ociVersion\": ", conf.display()),
        ),
    ];
    let mut config = spec.to_string();
    for (from, to) in changes {
        assert!(config.contains(from), "runc spec has no {from:?}:\n{spec}");
        config = config.replacen(from, &to, 1);
    }
    config
}

/// Under runc, which drives CRIU over RPC (`criu swrk`), CRIU runs the scripts of its
/// configuration file from 3.19 on (CRIU's "action-scripts: allow shell scripts in rpc mode"),
/// ours among them, its settings read from a settings file. Before, a configuration file that names an action script breaks every
/// checkpoint: CRIU stops on its own assertion (`BUG at criu/action-scripts.c`), where a shell
/// script and runc's RPC meet, and the container runs on. What README and `check` tell an
/// operator; the file here is named by runc's annotation (`org.criu.config`), and Debian 12's
/// criu reads /etc/criu/default.conf under runc too, with the same end.
#[test]
#[ignore = "needs root, runc and criu: make test runs it"]
fn under_runc_a_configured_script_runs_from_criu_3_19_on_and_breaks_checkpoints_before() {
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    let criu = common::criu();
    common::require_program("runc");
    common::require_program("busybox");
    let runs_scripts = criu_version(&criu) >= (3, 19);
    let dir = PathBuf::from(format!("/tmp/autofs-restart-runc.{}", std::process::id()));
    let rootfs = dir.join("bundle/rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let runc =
        Runc { dir: dir.clone(), id: format!("autofs-restart-test-{}", std::process::id()), pids: Default::default() };
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists()).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    let logger = dir.join("logger");
    std::fs::write(&logger, "#!/bin/sh\necho \"$CRTOOLS_SCRIPT_ACTION\" >>\"$CHAIN_LOG\"\n").unwrap();
    Command::new("chmod").arg("+x").arg(&logger).status().unwrap();
    let ours = bin().to_string_lossy().into_owned();
    let conf = dir.join("runc.conf");
    std::fs::write(&conf, format!("action-script {}\naction-script {ours}\n", logger.display())).unwrap();
    let out = Command::new("runc").arg("spec").current_dir(dir.join("bundle")).output().unwrap();
    assert!(out.status.success(), "runc spec: {}", String::from_utf8_lossy(&out.stderr));
    let spec = std::fs::read_to_string(dir.join("bundle/config.json")).unwrap();
    std::fs::write(dir.join("bundle/config.json"), runc_config(&spec, &conf)).unwrap();

    let bundle = dir.join("bundle").to_string_lossy().into_owned();
    let (img, work) = (dir.join("img"), dir.join("work"));
    let (img, work) = (img.to_string_lossy().into_owned(), work.to_string_lossy().into_owned());
    let chain = dir.join("chain.log").to_string_lossy().into_owned();
    // Our settings from a settings file, as where a runtime starts CRIU: verbose, for lines
    // that show which stages ours ran at.
    let settings = dir.join("autofs-restart.conf");
    std::fs::write(&settings, "AUTOFS_RESTART_VERBOSE=1\n").unwrap();
    let settings = settings.to_string_lossy().into_owned();
    let env = [("CHAIN_LOG", chain.as_str()), ("AUTOFS_RESTART_CONFIG", settings.as_str())];
    runc.run(&criu, &["run", "-d", "--bundle", &bundle, &runc.id], &[]);
    runc.note_pid();
    let checkpoint = runc.try_run(&criu, &["checkpoint", "--image-path", &img, "--work-path", &work, &runc.id], &env);
    if !runs_scripts {
        let said = checkpoint.expect_err("CRIU before 3.19 checkpointed under runc with a configured action script");
        assert!(said.contains("BUG at criu/action-scripts.c"), "{criu}: {said}");
        assert!(said.contains("container still running"), "{criu}: {said}");
        assert!(!Path::new(&chain).exists(), "{criu}: a script of the configuration file ran under runc");
        return;
    }
    if let Err(said) = checkpoint {
        panic!("{criu}: runc checkpoint: {said}");
    }
    runc.run(
        &criu,
        &["restore", "-d", "--image-path", &img, "--work-path", &work, "--bundle", &bundle, &runc.id],
        &env,
    );
    runc.note_pid();

    let chain = std::fs::read_to_string(&chain).unwrap_or_default();
    let dump = std::fs::read_to_string(dir.join("work/dump.log")).unwrap();
    let restore = std::fs::read_to_string(dir.join("work/restore.log")).unwrap();
    let ours_said = |log: &str, line: &str| log.lines().any(|l| l == line);
    let (at_dump, at_resume) = (
        "autofs-restart: pre-dump: nothing to do: the container has no autofs mount",
        "autofs-restart: pre-resume: nothing to do: the container has no autofs mount",
    );
    for stage in STAGES {
        assert!(chain.lines().any(|l| l == stage), "{criu}: the other script did not run at {stage}: {chain}");
    }
    assert!(ours_said(&dump, at_dump), "{criu}: ours did not run at pre-dump:\n{dump}");
    let verbose = "autofs-restart: pre-dump: the container's mount table: ";
    assert!(dump.lines().any(|l| l.starts_with(verbose)), "{criu}: the settings file did not reach ours:\n{dump}");
    assert!(ours_said(&restore, at_resume), "{criu}: ours did not run at pre-resume:\n{restore}");
    let post = "autofs-restart: nothing to do: no autofs mount in the mount namespace of pid ";
    assert!(restore.lines().any(|l| l.starts_with(post)), "{criu}: ours did not run at post-resume:\n{restore}");
}
