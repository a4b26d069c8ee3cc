//! Shared by the black-box tests: the built binary, and throwaway systemd containers driven
//! through tests/harness/container.

#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Runs `f`, and with TEST_TIMES=FILE set appends how long it took to FILE: the test's name,
/// `what`, seconds. For the bench notes (where a suite's minutes go), never asserted.
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let Some(file) = std::env::var_os("TEST_TIMES") else { return f() };
    let start = std::time::Instant::now();
    let result = f();
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("{test} {what} {:.2}\n", start.elapsed().as_secs_f64());
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    result
}

/// The binary under test: the static one `make` built, else cargo's.
pub fn bin() -> PathBuf {
    std::env::var_os("AUTOFS_RESTART_BIN").map_or_else(|| env!("CARGO_BIN_EXE_autofs-restart").into(), PathBuf::from)
}

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/harness/container")
}

/// Runs the binary exactly as CRIU does: argv = [path], an empty environment but for the
/// CRTOOLS_ variables (and `extra`), stdin closed, no fds above 2 (Command closes them).
pub fn run_as_criu(action: &str, pid: &str, extra: &[(&str, &str)]) -> Output {
    timed("ours", || criu_command(action, pid, extra).output().expect("running bash"))
}

/// As `run_as_criu`, in the background: the child's pid is autofs-restart's (bash execs it).
pub fn spawn_as_criu(action: &str, pid: &str, extra: &[(&str, &str)]) -> std::process::Child {
    criu_command(action, pid, extra).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("running bash")
}

fn criu_command(action: &str, pid: &str, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(criu_line(action, pid, extra)).env_clear();
    cmd
}

/// The shell line that runs the binary as CRIU does, for tests that open more fds first.
pub fn criu_line(action: &str, pid: &str, extra: &[(&str, &str)]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = vec!["exec env -i".to_string()];
    line.push(quote(&format!("CRTOOLS_SCRIPT_ACTION={action}")));
    line.push(quote(&format!("CRTOOLS_INIT_PID={pid}")));
    line.extend(extra.iter().map(|(k, v)| quote(&format!("{k}={v}"))));
    line.push(quote(&bin().to_string_lossy()));
    line.push("<&-".into());
    line.join(" ")
}

pub fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

/// `run` with these environment variables.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    timed("ours", || {
        Command::new(bin()).args(args).env_clear().envs(env.iter().copied()).output().expect("running autofs-restart")
    })
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails, with what is missing, unless this test can run: root and the kernel's autofs. The
/// container tests are `#[ignore]`d, so they run only when asked for (`make test`, CI), and
/// then they must run: a test that cannot is a failure, never a pass.
pub fn require_containers() {
    let root = rustix::process::geteuid().is_root();
    let autofs = std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("\tautofs\n"));
    assert!(root && autofs, "this test needs root and the kernel's autofs (root: {root}, autofs: {autofs})");
}

/// Fails unless `program` is installed (.ci/run installs what the tests use).
pub fn require_program(program: &str) {
    let found =
        ["/usr/bin", "/bin", "/usr/sbin", "/sbin"].iter().any(|d| std::path::Path::new(d).join(program).exists());
    assert!(found, "this test needs {program} (apt-get install {program})");
}

/// The criu the tests run: $CRIU (tests/harness/suite chooses one per kernel), else `criu`;
/// asserted to be there.
/// The tar file of a Debian root for containers that real CRIU dumps (`tests/harness/root
/// RELEASE`: bookworm or trixie), made once.
pub fn root_tar(release: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/harness/root");
    let out = Command::new(root).arg(release).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "no Debian {release} root");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn criu() -> String {
    match std::env::var("CRIU") {
        Ok(path) if !path.is_empty() => {
            assert!(std::path::Path::new(&path).exists(), "no criu at {path} (CRIU)");
            path
        }
        _ => {
            require_program("criu");
            "criu".to_string()
        }
    }
}

/// What a listing killed after its time (`timeout -s KILL`) tells: Some(true) if it answered,
/// Some(false) if it failed, None if it hung and was killed.
fn listing(out: &Output) -> Option<bool> {
    match (out.status.code(), out.status.signal()) {
        (Some(0), _) => Some(true),
        (Some(137), _) | (None, Some(9)) => None,
        _ => Some(false),
    }
}

/// `criu --version`'s major and minor number; None where it does not run or says none.
pub fn criu_version(criu: &str) -> Option<(u32, u32)> {
    let out = Command::new(criu).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text.lines().find_map(|l| l.strip_prefix("Version: "))?;
    let mut n = version.split('.').map(|p| p.trim().parse::<u32>().ok());
    Some((n.next()??, n.next()??))
}

/// What a run must never lose, taken before it: the container's mount count, what is stacked
/// on each watched mount point above its autofs mount (superblock and root, lowest first), and
/// the content of watched files. `check` also asserts that nothing of a run is left behind.
pub struct Kept {
    mounts: Vec<MountLine>,
    stacks: Vec<(String, Vec<(String, String)>)>,
    files: Vec<(String, String)>,
}

impl Kept {
    pub fn of(ctr: &Container, stacks: &[&str], files: &[&str]) -> Kept {
        let stacks = stacks.iter().map(|p| (p.to_string(), ctr.on_top(p))).collect();
        let files = files.iter().map(|f| (f.to_string(), ctr.read(f))).collect();
        Kept { mounts: ctr.mountinfo(), stacks, files }
    }

    /// What was on `path` when it was taken (see `on_top`).
    pub fn stack(&self, path: &str) -> &[(String, String)] {
        self.stacks.iter().find(|(p, _)| p == path).map_or(&[], |(_, s)| s.as_slice())
    }

    /// Nothing lost since `of`, and nothing left behind.
    pub fn check(&self, ctr: &Container, when: &str) {
        let now = ctr.mountinfo_settled();
        assert_eq!(now.len(), self.mounts.len(), "{when}: mount count; {}", mounts_changed(&self.mounts, &now));
        for (path, stack) in &self.stacks {
            assert_eq!(&ctr.on_top(path), stack, "{when}: the same superblocks on {path}, in the same order");
        }
        for (file, content) in &self.files {
            assert_eq!(&ctr.read(file), content, "{when}: {file}");
        }
        nothing_left(ctr, when);
    }
}

/// Nothing of a run is left behind: no staging mount or directory in the container, no pin on
/// the host, no program a run started still running in the container.
/// Looked at from the host, through the init's /proc: no program started in the container.
pub fn nothing_left(ctr: &Container, when: &str) {
    let staged: Vec<MountLine> =
        ctr.mountinfo().into_iter().filter(|m| m.mount_point.starts_with("/run/autofs-restart")).collect();
    assert!(staged.is_empty(), "{when}: staging left: {staged:?}");
    let run = std::fs::read_dir(format!("/proc/{}/root/run", ctr.pid)).expect("listing the container's /run");
    let names: Vec<String> = run.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned())).collect();
    assert!(!names.iter().any(|n| n.contains("autofs-restart")), "{when}: staging directory left: {names:?}");
    assert_eq!(ctr.pin(), None, "{when}: pin left");
    let helpers =
        ctr.processes().into_iter().filter(|(_, cmdline)| cmdline.contains("--internal-")).collect::<Vec<_>>();
    assert!(helpers.is_empty(), "{when}: a helper of ours still runs: {helpers:?}");
}

/// A new directory `PREFIX.PID.N` (as `mktemp -d` makes, without a program started: each costs
/// a tenth of a second under emulation, and every container has one).
fn fresh_dir(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    loop {
        let dir = PathBuf::from(format!("{prefix}.{}.{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            made => break made.map(|()| dir).unwrap_or_else(|e| panic!("making a container's directory: {e}")),
        }
    }
}

/// A throwaway systemd container, stopped (SIGKILL to its init, by pid) when dropped, also
/// when the test fails.
pub struct Container {
    dir: PathBuf,
    pub pid: String,
}

impl Container {
    pub fn start() -> Container {
        Container::start_with(None)
    }

    /// With `init` ("PROG ARGS"), a container whose init is that program, not systemd.
    pub fn start_with(init: Option<&str>) -> Container {
        match init {
            Some(init) => Container::start_env(&[("CONTAINER_INIT", init)]),
            None => Container::start_env(&[]),
        }
    }

    /// With the harness's CONTAINER_* settings (see tests/harness/container).
    pub fn start_env(settings: &[(&str, &str)]) -> Container {
        let dir = fresh_dir("/tmp/autofs-restart-test");
        let mut ctr = Container { dir, pid: String::new() };
        let mut cmd = Command::new(harness());
        cmd.envs(settings.iter().copied());
        let out = timed("boot", || cmd.arg("start").arg(&ctr.dir).stderr(Stdio::inherit()).output().unwrap());
        assert!(out.status.success(), "the container did not start");
        ctr.pid = String::from_utf8(out.stdout).unwrap().trim().to_string();
        ctr
    }

    /// A container on a Debian root of its own (`tests/harness/root RELEASE`: bookworm or
    /// trixie), which real CRIU can dump and restore (`criu_dump`, `criu_restore`).
    pub fn start_on_root(release: &str) -> Container {
        Container::start_env(&[("CONTAINER_ROOT", &root_tar(release))])
    }

    /// `criu dump` of it (it is gone afterwards), `args` added; fails with the end of CRIU's log.
    pub fn criu_dump(&self, args: &[&str]) {
        let out = self.try_criu_dump(&[], args);
        assert!(out.status.success(), "criu dump: {}", stderr(&out));
    }

    /// A `criu dump` that may fail, CRIU (and so its action scripts) given `env` too; on
    /// failure the harness's stderr ends with the end of CRIU's log.
    pub fn try_criu_dump(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        timed("criu", || {
            Command::new(harness()).arg("dump").arg(&self.dir).args(args).envs(env.iter().copied()).output().unwrap()
        })
    }

    /// `criu restore` of that dump, CRIU (and so its action scripts) given `env` too, `args`
    /// added: the restored container, whose init has another host pid.
    pub fn criu_restore(&mut self, env: &[(&str, &str)], args: &[&str]) {
        let out = timed("criu", || {
            Command::new(harness()).arg("undump").arg(&self.dir).args(args).envs(env.iter().copied()).output().unwrap()
        });
        assert!(out.status.success(), "criu restore: {}", stderr(&out));
        self.pid = stdout(&out).trim().to_string();
    }

    /// SIGKILL to its init: the container is gone, its dump and root stay.
    pub fn kill(&self) {
        let out = Command::new(harness()).arg("kill").arg(&self.dir).output().unwrap();
        assert!(out.status.success(), "kill: {}", stderr(&out));
    }

    /// Where a file of its directory is on the host.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A file of its directory on the host (CRIU's logs are in `img/`).
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Runs a shell command inside; returns its output. As `container exec` does, without the
    /// harness's bash in between: tests run thousands of these, and a program started costs
    /// ~60 ms on an emulated CPU.
    pub fn sh(&self, script: &str) -> Output {
        timed("sh", || {
            Command::new("nsenter")
                .args(["-t", &self.pid, "-m", "-u", "-i", "-p", "-C", "-r", "-w", "sh", "-c", script])
                .env_clear()
                .envs([("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), ("LANG", "C")])
                .output()
                .unwrap()
        })
    }

    /// Runs a shell command inside that must succeed; returns its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "{script}: {}", stderr(&out));
        stdout(&out)
    }

    /// Breaks these automounts as a CRIU restore does.
    pub fn restore(&self, paths: &[&str]) {
        let out =
            timed("restore", || Command::new(harness()).args(["restore", &self.pid]).args(paths).output().unwrap());
        assert!(out.status.success(), "restore: {}", stderr(&out));
    }

    /// The same, each new superblock made in the host's mount namespace and moved in, as CRIU's
    /// mount-v2 engine does (tests/harness/restore, RESTORE_FROM_OUTSIDE).
    pub fn restore_from_outside(&self, paths: &[&str]) {
        let out = Command::new(harness())
            .args(["restore", &self.pid])
            .args(paths)
            .env("RESTORE_FROM_OUTSIDE", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "restore: {}", stderr(&out));
    }

    /// A file of the container, read on the host through its init's root: the same path walk
    /// in its mount namespace, without a program started in it.
    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/root{path}", self.pid))
            .unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    /// The processes of its pid namespace, by host pid, with their command lines (NULs as
    /// spaces), found on the host.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let ours = ns(&self.pid).expect("the init's pid namespace");
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(pid) = name.parse::<u32>() else { continue };
            if ns(&name).as_ref() != Some(&ours) {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
        found
    }

    /// Its init's mount table, read on the host: the same lines the container reads (paths
    /// from its root), without a program started in it.
    pub fn mountinfo(&self) -> Vec<MountLine> {
        let text = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).expect("reading its mountinfo");
        text.lines().map(MountLine::parse).collect()
    }

    /// Its mount table once an automount daemon's start has settled: the daemon's bind module,
    /// first used when its start re-attaches a mounted entry, tries a mount in a directory
    /// `/tmp/autoXXXXXX` and removes it again (autofs's `mount_bind.c`, `mount_init`). A daemon
    /// started in the foreground (no readiness to wait for) may still be at it when the fix
    /// has seen every mount served again. Bounded: a test mount that stays fails the test.
    pub fn mountinfo_settled(&self) -> Vec<MountLine> {
        let trial = |m: &MountLine| m.mount_point.starts_with("/tmp/auto");
        for _ in 0..200 {
            let table = self.mountinfo();
            if !table.iter().any(trial) {
                return table;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let left: Vec<MountLine> = self.mountinfo().into_iter().filter(trial).collect();
        panic!("the automount daemon's trial mount stayed: {left:?}");
    }

    /// What is stacked on the autofs mount at `path`, or at `path` if it has none (superblock
    /// and root), lowest first. The autofs mount itself is left out: a restart replaces it.
    pub fn on_top(&self, path: &str) -> Vec<(String, String)> {
        let stack = self.at(path);
        let above = stack.iter().position(|m| m.fs_type == "autofs").map_or(0, |i| i + 1);
        stack[above..].iter().map(|m| (m.dev.clone(), m.root.clone())).collect()
    }

    /// The mounts stacked at `path`, the lowest first (mountinfo's order is not the stack's).
    pub fn at(&self, path: &str) -> Vec<MountLine> {
        let mut here: Vec<MountLine> = self.mountinfo().into_iter().filter(|m| m.mount_point == path).collect();
        let mut stack: Vec<MountLine> = Vec::new();
        loop {
            let next = match stack.last() {
                None => here.iter().position(|m| !here.iter().any(|o| o.id == m.parent)),
                Some(top) => here.iter().position(|m| m.parent == top.id),
            };
            let Some(i) = next else { break };
            stack.push(here.remove(i));
        }
        assert!(here.is_empty(), "mounts at {path} that are not one stack: {here:?}");
        stack
    }

    /// Lists `path/` from inside, killing the listing after `secs`: Some(true) if it
    /// answered, Some(false) if it failed, None if it hung.
    pub fn answers(&self, path: &str, secs: u32) -> Option<bool> {
        listing(&self.sh(&format!("exec timeout -s KILL {secs} ls {path}/")))
    }

    /// The same in the mount namespace of the container's process `pid` (as the container
    /// numbers it): a service's private copy.
    pub fn answers_in(&self, pid: &str, path: &str, secs: u32) -> Option<bool> {
        listing(&self.sh(&format!("exec timeout -s KILL {secs} nsenter -t {pid} -m ls {path}/")))
    }

    /// Asserts that a `stat` of `path` fails at once with EPERM (the kernel refusing the
    /// trigger), from the container or from the mount namespace of its process `from`.
    pub fn assert_refused(&self, from: Option<&str>, path: &str) {
        let enter = from.map_or(String::new(), |pid| format!("nsenter -t {pid} -m "));
        let refused = self.sh(&format!("exec timeout -s KILL 5 {enter}stat {path}/."));
        assert_eq!(refused.status.code(), Some(1), "refused at once: {}", stderr(&refused));
        assert!(stderr(&refused).contains("Operation not permitted"), "{}", stderr(&refused));
    }

    /// Waits, bounded, until `script` succeeds inside; else fails with the container's
    /// processes, where they wait.
    pub fn wait_for(&self, script: &str) {
        for _ in 0..200 {
            if self.sh(script).status.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let ps = stdout(&self.sh("ps -eo pid,stat,wchan:24,args"));
        panic!("still not true after 200 tries: {script}\n{ps}");
    }

    /// Replaces the container's systemctl with a wrapper that runs `fault` on restart and passes
    /// everything else to the real one (kept as systemctl.real).
    pub fn inject_systemctl_fault(&self, fault: &str) {
        self.ok(&format!(
            "[ -e /usr/bin/systemctl.real ] || cp -a /usr/bin/systemctl /usr/bin/systemctl.real
cat > /usr/bin/systemctl <<'WRAPPER'
#!/bin/sh
if [ \"$1\" = restart ]; then {fault}; fi
exec /usr/bin/systemctl.real \"$@\"
WRAPPER"
        ));
    }

    /// The host paths of this container's entries in /run/autofs-restart of one `kind`: named
    /// `kind`, then the init's pid and start time. Pins: "", the holder's: "hold.", a stage's
    /// markers: "post-resume." and so on.
    pub fn host_entries(&self, kind: &str) -> Vec<String> {
        let prefix = format!("{kind}{}-", self.pid);
        let Ok(names) = std::fs::read_dir("/run/autofs-restart") else { return Vec::new() };
        names
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&prefix))
            .map(|name| format!("/run/autofs-restart/{name}"))
            .collect()
    }

    /// The host path of the mount namespace a run pins for this container, if there is one.
    pub fn pin(&self) -> Option<String> {
        self.host_entries("").into_iter().next()
    }

    /// Puts the real systemctl back.
    pub fn heal_systemctl(&self) {
        self.ok("mv /usr/bin/systemctl.real /usr/bin/systemctl");
    }

    /// The container's journal, for one unit.
    pub fn journal(&self, unit: &str) -> String {
        self.ok(&format!("journalctl -q --no-pager -u {unit}"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(harness()).arg("stop").arg(&self.dir).status();
    }
}

/// Which mounts `after` lacks and which it has new, against `before` (by mount id), for an
/// assertion's message.
pub fn mounts_changed(before: &[MountLine], after: &[MountLine]) -> String {
    let missing = |of: &[MountLine], from: &[MountLine]| -> Vec<String> {
        of.iter()
            .filter(|m| !from.iter().any(|o| o.id == m.id))
            .map(|m| format!("{} {} on {} ({} {})", m.id, m.fs_type, m.mount_point, m.dev, m.super_options))
            .collect()
    };
    format!("gone: {:?}, new: {:?}", missing(before, after), missing(after, before))
}

/// The fields of a mountinfo line the tests look at. Test paths have no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    pub id: String,
    pub parent: String,
    pub dev: String,
    pub root: String,
    pub mount_point: String,
    pub fs_type: String,
    pub super_options: String,
}

impl MountLine {
    pub fn parse(line: &str) -> MountLine {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f.iter().position(|&x| x == "-").expect("a mountinfo line");
        MountLine {
            id: f[0].into(),
            parent: f[1].into(),
            dev: f[2].into(),
            root: f[3].into(),
            mount_point: f[4].into(),
            fs_type: f[sep + 1].into(),
            super_options: f[sep + 3].into(),
        }
    }

    pub fn option(&self, name: &str) -> Option<String> {
        self.super_options.split(',').find_map(|o| o.strip_prefix(&format!("{name}=")).map(String::from))
    }
}

/// Whether the running kernel is at least `major.minor` (/proc/sys/kernel/osrelease).
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("reading the kernel's release");
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (major, minor)
}

/// Whether the kernel refuses at once (EPERM) a trigger on a private autofs mount from a mount
/// namespace other than the one its superblock was made (or last given a pipe) in, where
/// older ones wait for the master: "autofs: don't trigger mount if it can't succeed" (Linux
/// 6.19; 6.12 has it not, Debian sid's 7.2 has it).
pub fn refuses_foreign_private_triggers() -> bool {
    kernel_at_least(6, 19)
}

/// Whether a run with the new kernel API reads mount tables by statmount: where the kernel's
/// statmount gives every field of a mountinfo line, the source last (Linux 6.13). Before that
/// (and before 6.8, without statmount) it reads the whole mountinfo, and `-v` says why.
pub fn statmount_reads_lines() -> bool {
    kernel_at_least(6, 13)
}

/// What `-v` says of a whole mountinfo read because statmount cannot give the lines: the
/// kernel has none (before 6.8), or its records lack a field of a line (before 6.13).
pub fn whole_read() -> &'static str {
    if kernel_at_least(6, 8) {
        "its whole mountinfo read (statmount lacks a field of a line: a kernel before 6.13, or a mount without a source)"
    } else {
        "its whole mountinfo read (listmount and statmount: ENOSYS)"
    }
}

/// A pid namespace of its own whose mount namespace has no autofs mount: a container
/// `status` leaves out, and a pid with nothing to restart. Its init is ended on drop.
pub struct Bare {
    unshare: std::process::Child,
    /// The init's host pid.
    pub init: String,
}

impl Bare {
    pub fn start() -> Bare {
        let script = "findmnt -rn -t autofs -o TARGET | sort -r | while read -r m; do umount -l \"$m\"; done
                      echo $$; exec sleep 600";
        let mut unshare = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--mount", "--propagation", "private", "sh", "-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut said = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(unshare.stdout.take().unwrap()), &mut said).unwrap();
        assert_eq!(said, "1\n", "sh is the init of its pid namespace");
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
        Bare { unshare, init: children.trim().to_string() }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-KILL", &self.init]).status();
        let _ = self.unshare.wait();
    }
}

/// A syslog socket of the test's own, to give a run as AUTOFS_RESTART_SYSLOG: what the run
/// tells the host's log arrives here. Removed when dropped.
pub struct Syslog {
    dir: PathBuf,
    socket: std::os::unix::net::UnixDatagram,
}

impl Syslog {
    pub fn bind() -> Syslog {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("autofs-restart-syslog.{}.{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = std::os::unix::net::UnixDatagram::bind(dir.join("log")).unwrap();
        socket.set_nonblocking(true).unwrap();
        Syslog { dir, socket }
    }

    pub fn path(&self) -> String {
        self.dir.join("log").to_str().unwrap().to_string()
    }

    /// The messages received so far (a run sends before it exits).
    pub fn messages(&self) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
