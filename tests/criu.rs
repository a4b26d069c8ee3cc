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
/// `criu --version`'s major and minor number, asserted to be there.
fn criu_version(criu: &str) -> (u32, u32) {
    common::criu_version(criu).unwrap_or_else(|| panic!("{criu} --version names no version"))
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

    /// `sh -c script` in the container (`runc exec`), killed after `secs` from inside (an access
    /// that hangs on an autofs mount is a killable wait).
    fn exec(&self, script: &str, secs: u32) -> std::process::Output {
        let state = self.dir.join("state");
        let secs = secs.to_string();
        let args = ["exec", &self.id, "timeout", "-s", "KILL", &secs, "sh", "-c", script];
        Command::new("runc").arg("--root").arg(state).args(args).stdin(Stdio::null()).output().expect("runc exec")
    }

    /// What `exec` printed, asserting success.
    fn ok(&self, script: &str) -> String {
        let out = self.exec(script, 60);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "in the container: {script}: {said}{}", String::from_utf8_lossy(&out.stderr));
        said
    }

    /// SIGKILL to the container, then `runc delete`, waiting (10 s at most) until its cgroup
    /// has no process left (a restore of the same name makes it again). Whether it went (or
    /// was not there).
    fn end(&self) -> bool {
        let state = self.dir.join("state");
        let cgroup = Path::new("/sys/fs/cgroup").join(&self.id);
        if !state.join(&self.id).exists() && !cgroup.exists() {
            return true;
        }
        let _ = Command::new("runc").arg("--root").arg(&state).args(["kill", &self.id, "KILL"]).output();
        for _ in 0..100 {
            let out = Command::new("runc").arg("--root").arg(&state).args(["delete", "-f", &self.id]).output();
            if out.is_ok_and(|o| o.status.success()) && !cgroup.exists() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    }

    /// `end`, asserting that the container went.
    fn stop(&self) {
        assert!(self.end(), "the runc container {} did not go", self.id);
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
        self.end();
        for pid in self.pids.borrow().iter() {
            let markers =
                format!("rm -f /run/autofs-restart/*.{pid}-*.*; rmdir /run/autofs-restart 2>/dev/null || true");
            let _ = Command::new("sh").args(["-c", &markers]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A tmpfs mounted at a path of the test's, unmounted on drop, even on failure.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        let status = Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(at).status().unwrap();
        assert!(status.success(), "mounting a tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }

    /// A lazy unmount, once.
    fn unmount(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            self.0 = PathBuf::new();
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// What a runc container of the tests runs as its init.
enum Init<'a> {
    /// `sh -c SCRIPT`.
    Shell(&'a str),
    /// Debian's systemd, booting `autofs-test.target` (tests/harness/units) in a cgroup
    /// namespace of its own with its cgroup file system writable, as systemd needs to run as
    /// a container's init.
    Systemd,
}

/// runc's configuration of a container on `rootfs` (a Debian root) whose init is `init`: with
/// the autofs control device and the capabilities that systemd and the automount daemon need,
/// its own /run and /tmp, this host's network (CRIU locks a network namespace of its own with
/// iptables), and `conf` as CRIU's configuration file when given (runc's annotation
/// `org.criu.config`). Its cgroup is runc's default, `/ID`.
fn autofs_config(init: Init, conf: Option<&Path>) -> String {
    let mut caps = vec!["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"];
    caps.extend(["SETPCAP", "SYS_CHROOT", "SYS_PTRACE", "SYS_ADMIN", "MKNOD", "AUDIT_WRITE", "SETFCAP"]);
    let (args, env, namespaces, mounts) = match init {
        Init::Shell(script) => (format!(r#""/bin/sh", "-c", "{script}""#), "", "", ""),
        Init::Systemd => {
            caps.extend(["NET_ADMIN", "SYS_RESOURCE", "SYS_BOOT", "SYS_NICE", "IPC_LOCK", "LINUX_IMMUTABLE"]);
            (
                r#""/lib/systemd/systemd", "--unit=autofs-test.target""#.to_string(),
                // No generators: what they would make, a container of the tests has no use for.
                r#", "container=oci", "SYSTEMD_GENERATOR_PATH=/nonexistent""#,
                r#", {"type": "cgroup"}"#,
                r#", {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
  {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "rw"]}"#,
            )
        }
    };
    let caps = caps.iter().map(|c| format!("\"CAP_{c}\"")).collect::<Vec<_>>().join(", ");
    let annotations =
        conf.map_or(String::new(), |c| format!("\"annotations\": {{\"org.criu.config\": \"{}\"}},", c.display()));
    // /dev holds the device nodes runc makes: not nodev.
    let tmpfs = |at: &str, options: &str| {
        format!("{{\"destination\": \"{at}\", \"type\": \"tmpfs\", \"source\": \"tmpfs\", \"options\": [{options}]}}")
    };
    format!(
        r#"{{"ociVersion": "1.0.2", {annotations}
"process": {{"terminal": false, "user": {{"uid": 0, "gid": 0}}, "args": [{args}],
  "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"{env}], "cwd": "/",
  "capabilities": {{"bounding": [{caps}], "effective": [{caps}], "permitted": [{caps}]}}}},
"root": {{"path": "rootfs", "readonly": false}},
"hostname": "autofs-test",
"mounts": [{{"destination": "/proc", "type": "proc", "source": "proc"}}, {}, {}, {}{mounts}],
"linux": {{"namespaces": [{{"type": "pid"}}, {{"type": "ipc"}}, {{"type": "uts"}}, {{"type": "mount"}}{namespaces}],
  "devices": [{{"path": "/dev/autofs", "type": "c", "major": 10, "minor": 235, "fileMode": 384, "uid": 0, "gid": 0}}],
  "resources": {{"devices": [{{"allow": true, "access": "rwm"}}]}}}}}}"#,
        tmpfs("/dev", r#""nosuid", "mode=755""#),
        tmpfs("/run", r#""nosuid", "nodev""#),
        tmpfs("/tmp", r#""nosuid", "nodev""#)
    )
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

/// Runc containers on one Debian 12 root (in a tmpfs of the test's; unpacking it takes a
/// minute or two under emulation, so the scenarios take turns on it) whose init is `sh -c
/// INIT`, with the automount daemon's maps: a direct one, `/srv/direct`, and an indirect one,
/// `/srv/ind` with key `k`. Logs are to go to /run, a tmpfs that CRIU dumps with its contents:
/// a file of the root that one restore grew would fail the next ("has bad size").
struct AutofsRunc {
    runc: Runc,
    root: Tmpfs,
    criu: String,
    /// CRIU's configuration file naming our binary, runc's paths as arguments.
    conf: PathBuf,
    bundle: String,
    img: String,
    work: String,
}

impl AutofsRunc {
    fn new() -> AutofsRunc {
        common::require_containers();
        let criu = common::criu();
        common::require_program("runc");
        let dir = PathBuf::from(format!("/tmp/autofs-restart-runc-autofs.{}", std::process::id()));
        let rootfs = dir.join("bundle/rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let id = format!("autofs-restart-autofs-{}", std::process::id());
        let runc = Runc { dir: dir.clone(), id, pids: Default::default() };
        let root = Tmpfs::mount(&rootfs);
        let tar = common::root_tar("bookworm");
        let unpacked =
            common::timed("unpack", || Command::new("tar").arg("xf").arg(&tar).arg("-C").arg(&rootfs).status());
        assert!(unpacked.unwrap().success());
        let write = |path: &str, text: &str| std::fs::write(rootfs.join(path), text).unwrap();
        for d in ["srv/data-d", "srv/data-i", "srv/direct"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        write("srv/data-d/f", "direct\n");
        write("srv/data-i/f", "indirect\n");
        write("etc/auto.master", "/- /etc/auto.direct\n/srv/ind /etc/auto.ind\n");
        write("etc/auto.direct", "/srv/direct -fstype=bind :/srv/data-d\n");
        write("etc/auto.ind", "k -fstype=bind :/srv/data-i\n");
        let conf = dir.join("criu.conf");
        std::fs::write(&conf, format!("action-script {}\n", bin().display())).unwrap();
        let path = |p: &str| dir.join(p).to_string_lossy().into_owned();
        let (bundle, img, work) = (path("bundle"), path("img"), path("work"));
        AutofsRunc { runc, root, criu, conf, bundle, img, work }
    }

    /// Writes runc's configuration: `init`, and CRIU's configuration file (our script) named
    /// or not.
    fn configure(&self, init: &str, ours: bool) {
        self.write_config(Init::Shell(init), ours.then_some(self.conf.as_path()));
    }

    /// Writes runc's configuration: `init`, and `conf` as CRIU's configuration file if given.
    fn write_config(&self, init: Init, conf: Option<&Path>) {
        std::fs::write(Path::new(&self.bundle).join("config.json"), autofs_config(init, conf)).unwrap();
    }

    /// `runc run -d` as configured, with no images left of an earlier scenario.
    fn start(&self) {
        for d in [&self.img, &self.work] {
            let _ = std::fs::remove_dir_all(d);
        }
        let runc = &self.runc;
        runc.run(&self.criu, &["run", "-d", "--bundle", &self.bundle, &runc.id], &[]);
        runc.note_pid();
    }

    /// `runc checkpoint` into the scene's images.
    fn checkpoint(&self) -> Result<(), String> {
        let args = ["checkpoint", "--image-path", &self.img, "--work-path", &self.work, &self.runc.id];
        common::timed("criu", || self.runc.try_run(&self.criu, &args, &[]))
    }

    /// Starts it (as configured), waits for both maps, uses both, and unmounts the direct one
    /// (CRIU refuses to dump the daemon while a direct entry is mounted over it); then the
    /// checkpoint.
    fn run_and_checkpoint(&self) -> Result<(), String> {
        self.start();
        let runc = &self.runc;
        runc.ok("until [ -e /srv/ind ] && grep -q ' /srv/direct ' /proc/self/mountinfo; do sleep 0.2; done");
        assert_eq!(runc.ok("cat /srv/direct/f /srv/ind/k/f && umount /srv/direct"), "direct\nindirect\n");
        self.checkpoint()
    }

    /// Restores the checkpoint as configured (without our script): an access to `path` hangs,
    /// and what `why` prints in the container (its master's log) says `says`; then stops the
    /// container. Whether this CRIU runs our script under runc (3.19 and later).
    fn restore_shows_the_hang(&self, path: &str, why: &str, says: &str) -> bool {
        let (runc, criu) = (&self.runc, &self.criu);
        self.restore();
        let out = runc.exec(&format!("ls {path}/"), 10);
        assert_eq!(out.status.code(), Some(137), "{criu}: the access to {path} did not hang: {out:?}");
        let said = runc.ok(why);
        assert!(said.contains(says), "{criu}: {why}:\n{said}");
        runc.stop();
        criu_version(criu) >= (3, 19)
    }

    /// `runc restore -d` of the checkpoint; returns CRIU's log of it.
    fn restore(&self) -> String {
        let runc = &self.runc;
        let args = ["restore", "-d", "--image-path", &self.img, "--work-path", &self.work, "--bundle", &self.bundle];
        common::timed("criu", || runc.run(&self.criu, &[&args[..], &[runc.id.as_str()]].concat(), &[]));
        runc.note_pid();
        std::fs::read_to_string(Path::new(&self.work).join("restore.log")).unwrap()
    }
}

impl Drop for AutofsRunc {
    /// The container first, then its root (a lazy unmount, whatever still uses it), then
    /// `Runc`'s directory: never 300 MB removed file by file.
    fn drop(&mut self) {
        self.runc.end();
        self.root.unmount();
    }
}

/// Under runc, on one container root (each scenario's container stopped before the next
/// starts): the automount daemon in both places a container image puts it,
/// `a_daemon_under_the_shell_is_restarted` and `a_daemon_that_is_the_init_is_left_running`,
/// then `systemd_as_the_init_has_its_automounts_restarted`. CRIU before 3.19 cannot run the
/// script under runc (the test above): there the first and the last scenario end once they
/// have shown the hang, the second shows the broken checkpoint.
#[test]
#[ignore = "needs root, the kernel's autofs, runc and criu: make test runs it"]
fn under_runc_the_automount_daemon_and_systemd_after_a_restore() {
    let scene = AutofsRunc::new();
    a_daemon_under_the_shell_is_restarted(&scene);
    scene.runc.stop();
    a_daemon_that_is_the_init_is_left_running(&scene);
    scene.runc.stop();
    systemd_as_the_init_has_its_automounts_restarted(&scene);
}

/// The container's shell starts the automount daemon in the foreground, in a session of its
/// own (CRIU needs each mount's master to lead its group), its log on /run; its parent is the
/// container's init, which starts nothing again. Restored without our script, an access to
/// the direct mount hangs and the daemon says why; restored again from the same checkpoint
/// with our script named in CRIU's configuration file (runc's annotation), it is started again
/// as it was, in the foreground, writing to the same log: one daemon serves both maps and the
/// key's mount is kept.
fn a_daemon_under_the_shell_is_restarted(scene: &AutofsRunc) {
    let init = "setsid /usr/sbin/automount -f -d /etc/auto.master >/run/automount.log 2>&1 & exec sleep 100000";
    let (runc, criu) = (&scene.runc, &scene.criu);
    scene.configure(init, false);
    if let Err(said) = scene.run_and_checkpoint() {
        panic!("{criu}: runc checkpoint: {said}");
    }

    // Without our script: the access hangs, and the daemon says why.
    if !scene.restore_shows_the_hang("/srv/direct", "cat /run/automount.log", "can't find map entry for") {
        return;
    }

    // With it, from CRIU's configuration file: the same checkpoint restored once more.
    scene.configure(init, true);
    let log = scene.restore();
    let restarted = log.lines().find(|l| l.contains("automount (pid ") && l.contains("): restarted (now pid "));
    let restarted = restarted.unwrap_or_else(|| panic!("{criu}: ours did not restart the daemon:\n{log}"));
    assert!(restarted.ends_with(", serving /srv/direct, /srv/ind"), "{restarted}");
    assert_eq!(runc.ok("grep -c ' /srv/ind/k ' /proc/self/mountinfo"), "1\n", "the key's mount was not kept");
    assert_eq!(runc.ok("cat /srv/direct/f /srv/ind/k/f"), "direct\nindirect\n");
    let daemons = runc.ok("ps -eo stat=,comm=,args= | awk '$2 == \"automount\" && $1 !~ /^Z/'");
    assert_eq!(daemons.lines().count(), 1, "{criu}: automount daemons after the fix:\n{daemons}");
    assert!(daemons.contains("automount -f -d /etc/auto.master"), "{criu}: not as it was: {daemons}");
    // The new one writes where the old one did: the restored log, with its own start after.
    let log = runc.ok("cat /run/automount.log");
    let starts = log.lines().filter(|l| l.starts_with("Starting automounter version")).count();
    assert!(starts >= 2, "{criu}: the new daemon's log is not in /run/automount.log:\n{log}");
}

/// The automount daemon as the container's init (`automount -f` as the entry point, as
/// container images do): its death would end the container. Ours says so at the checkpoint
/// already, and after the restore leaves it running, says why and fails; the container runs
/// on. With CRIU before 3.19 the script cannot run under runc and a configuration file that
/// names it breaks the checkpoint: that is asserted instead.
fn a_daemon_that_is_the_init_is_left_running(scene: &AutofsRunc) {
    let (runc, criu) = (&scene.runc, &scene.criu);
    scene.configure("exec /usr/sbin/automount -f -d /etc/auto.master >/run/automount.log 2>&1", true);
    let checkpoint = scene.run_and_checkpoint();
    if criu_version(criu) < (3, 19) {
        let said = checkpoint.expect_err("CRIU before 3.19 checkpointed under runc with a configured action script");
        assert!(said.contains("BUG at criu/action-scripts.c"), "{criu}: {said}");
        return;
    }
    if let Err(said) = checkpoint {
        panic!("{criu}: runc checkpoint: {said}");
    }
    let dump = std::fs::read_to_string(Path::new(&scene.work).join("dump.log")).unwrap();
    let warned = dump.lines().find(|l| l.contains("warning: /srv/direct, /srv/ind: after a restore they hang"));
    let warned = warned.unwrap_or_else(|| panic!("{criu}: no warning at pre-dump:\n{dump}"));
    assert!(warned.contains("it is the container's init"), "{warned}");

    let log = scene.restore();
    let line =
        log.lines().find(|l| l.contains("the container's init): failed: left running: it is the container's init"));
    assert!(line.is_some(), "{criu}: ours did not say why it left the daemon:\n{log}");
    assert_eq!(runc.ok("cat /proc/1/comm"), "automount\n", "{criu}: the container's init is not the daemon any more");
    let out = runc.exec("ls /srv/direct/", 10);
    assert_eq!(out.status.code(), Some(137), "{criu}: the access did not hang, as said: {out:?}");
    let said = runc.ok("cat /run/automount.log");
    assert!(said.contains("can't find map entry for"), "{criu}: the daemon said:\n{said}");
}

/// Debian 12's systemd as the container's init, booting `autofs-test.target`: a tmpfs on
/// `srv-data.automount` holding a file, `srv-idle.automount` and the binfmt_misc automount
/// idle. What CRIU needs to restore a systemd container under runc at all, whatever the
/// action scripts (DESIGN "Under runc"): `cgroup-root` in its configuration file, so that
/// the dump takes the container's whole cgroup tree (systemd watches the empty cgroup a
/// mount unit keeps; CRIU otherwise dumps only its tasks' cgroups), and no cgroup controller
/// enabled by the container's systemd (CRIU enables them after the restored processes have
/// opened their watches). Restored without our script, the idle automount hangs and systemd
/// says why; restored again from the same checkpoint with it, each unit is restarted, the
/// tmpfs kept on top.
fn systemd_as_the_init_has_its_automounts_restarted(scene: &AutofsRunc) {
    let (runc, criu) = (&scene.runc, &scene.criu);
    let rootfs = Path::new(&scene.bundle).join("rootfs");
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/units/.");
    let copied = Command::new("cp").arg("-a").arg(units).arg(rootfs.join("etc/systemd/system")).status();
    assert!(copied.unwrap().success(), "copying tests/harness/units");
    for d in ["srv/data", "srv/idle", "etc/systemd/system.conf.d"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let accounting = "[Manager]\nDefaultMemoryAccounting=no\nDefaultTasksAccounting=no\nDefaultTasksMax=infinity\n";
    std::fs::write(rootfs.join("etc/systemd/system.conf.d/criu.conf"), accounting).unwrap();
    let settings = format!("cgroup-root /{}\n", runc.id);
    let (plain, ours) = (runc.dir.join("criu-systemd.conf"), runc.dir.join("criu-systemd-ours.conf"));
    std::fs::write(&plain, &settings).unwrap();
    std::fs::write(&ours, format!("{settings}action-script {}\n", bin().display())).unwrap();

    scene.write_config(Init::Systemd, Some(&plain));
    scene.start();
    runc.ok("until [ -e /run/autofs-test.ready ]; do sleep 0.2; done");
    // CRIU cannot dump systemd's credentials (ramfs), which it uses only while a unit starts.
    runc.ok("for m in /run/credentials/*; do [ -d \"$m\" ] || continue; umount \"$m\" && rmdir \"$m\"; done");
    assert_eq!(runc.ok("echo kept > /srv/data/f && cat /srv/data/f"), "kept\n");
    if let Err(said) = scene.checkpoint() {
        panic!("{criu}: runc checkpoint of systemd: {said}");
    }

    // Without our script: the access hangs, and systemd says why.
    let journal = "journalctl --no-pager -u srv-idle.automount";
    if !scene.restore_shows_the_hang("/srv/idle", journal, "Automount point already active?") {
        return;
    }

    // With it, from CRIU's configuration file: the same checkpoint restored once more.
    scene.write_config(Init::Systemd, Some(&ours));
    let log = scene.restore();
    let said: Vec<&str> = log.lines().filter(|l| l.starts_with("autofs-restart: ")).collect();
    let restarted = ["srv-data.automount: restarted, tmpfs srv-data kept on top", "srv-idle.automount: restarted"];
    for unit in restarted {
        assert!(said.contains(&format!("autofs-restart: {unit}").as_str()), "{criu}: {said:#?}\n{log}");
    }
    let binfmt = "autofs-restart: proc-sys-fs-binfmt_misc.automount: restarted";
    assert!(said.iter().any(|l| l.starts_with(binfmt)), "{criu}: {said:#?}");
    assert_eq!(runc.ok("cat /srv/data/f"), "kept\n", "{criu}: the tmpfs on top was not kept");
    let out = runc.exec("ls /srv/idle/", 10);
    assert!(out.status.success(), "{criu}: the idle automount does not answer: {out:?}");
    let units = runc.ok("systemctl is-active srv-data.automount srv-idle.automount srv-data.mount");
    assert_eq!(units, "active\nactive\nactive\n", "{criu}");
}
