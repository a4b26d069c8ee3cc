//! The container's programs run with the container's privileges only, and paths from the
//! container never lead a mount call astray. Against real systemd in a container with its own
//! network and time namespaces and a narrowed capability bounding set.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{Container, Kept, criu_line, require_containers, run_as_criu, stderr, stdout};

/// What the recording systemctl wrote about itself, one record per call.
#[derive(Debug)]
struct Record {
    args: String,
    status: BTreeMap<String, String>,
    ns: BTreeMap<String, String>,
    cgroup: String,
    root: String,
    cwd: String,
    fds: String,
    env: Vec<String>,
}

/// Replaces /usr/bin/systemctl with a wrapper that records its own privileges, then runs the
/// real one.
fn install_recorder(ctr: &Container) {
    ctr.ok(r#"cp -a /usr/bin/systemctl /usr/bin/systemctl.real && mkdir -p /run/records
cat > /usr/bin/systemctl <<'WRAPPER'
#!/bin/sh
# ls is a new process with exactly the fds this one has, plus its own directory fd (3).
fds=$(ls /proc/self/fd | tr '\n' ' ')
{
    echo "FDS $fds"
    echo "ARGS $*"
    grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Uid):' /proc/$$/status | sed 's/^/STATUS /'
    for n in mnt pid uts ipc net cgroup time user; do echo "NS $n $(readlink /proc/$$/ns/$n)"; done
    echo "CGROUP $(tr '\n' ';' < /proc/$$/cgroup)"
    echo "ROOT $(stat -Lc %d:%i /proc/$$/root)"
    echo "CWD $(readlink /proc/$$/cwd)"
    env | sed 's/^/ENV /'
} > "$(mktemp /run/records/rec.XXXXXX)"
exec /usr/bin/systemctl.real "$@"
WRAPPER"#);
}

fn records(ctr: &Container) -> Vec<Record> {
    let text = ctr.ok("for f in /run/records/rec.*; do cat \"$f\"; echo END; done");
    text.split("END\n")
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            let mut rec = Record {
                args: String::new(),
                status: BTreeMap::new(),
                ns: BTreeMap::new(),
                cgroup: String::new(),
                root: String::new(),
                cwd: String::new(),
                fds: String::new(),
                env: Vec::new(),
            };
            for line in r.lines() {
                let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
                match kind {
                    "ARGS" => rec.args = rest.into(),
                    "STATUS" => {
                        let (k, v) = rest.split_once(':').unwrap();
                        rec.status.insert(k.into(), v.trim().into());
                    }
                    "NS" => {
                        let (k, v) = rest.split_once(' ').unwrap();
                        rec.ns.insert(k.into(), v.into());
                    }
                    "CGROUP" => rec.cgroup = rest.into(),
                    "ROOT" => rec.root = rest.into(),
                    "CWD" => rec.cwd = rest.into(),
                    "FDS" => rec.fds = rest.trim().into(),
                    "ENV" => rec.env.push(rest.into()),
                    _ => {}
                }
            }
            rec
        })
        .collect()
}

/// A child process killed and reaped when dropped, also when the test fails.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const NAMESPACES: [&str; 8] = ["mnt", "pid", "uts", "ipc", "net", "cgroup", "time", "user"];

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn the_containers_systemctl_gets_the_containers_privileges_only() {
    containers_privileges_only("new");
}

/// The same, systemctl started by fork and joining its cgroup by cgroup.procs.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn the_containers_privileges_only_with_the_legacy_kernel_api_too() {
    containers_privileges_only("legacy");
}

fn containers_privileges_only(api: &str) {
    require_containers();
    let ctr = Container::start_env(&[
        ("CONTAINER_NET", "1"),
        ("CONTAINER_TIME", "1"),
        ("CONTAINER_BOUNDING", "-sys_module,-sys_rawio,-sys_time"),
    ]);
    ctr.ok("echo kept > /srv/data/file");
    ctr.restore(&["/srv/data", "/srv/idle"]);
    assert_eq!(ctr.answers("/srv/idle", 2), None, "/srv/idle should hang after the restore");
    install_recorder(&ctr);
    let kept = Kept::of(&ctr, &["/srv/data"], &["/srv/data/file"]);
    // The init's own view of what it has.
    let init_ns: BTreeMap<String, String> = NAMESPACES
        .iter()
        .map(|n| (n.to_string(), ctr.ok(&format!("readlink /proc/1/ns/{n}")).trim().to_string()))
        .collect();
    let init_bounding = u64::from_str_radix(ctr.ok("sed -n 's/^CapBnd:\\t//p' /proc/1/status").trim(), 16).unwrap();
    assert_eq!(init_bounding & (1 << 16), 0, "CAP_SYS_MODULE is out of the init's bounding set");
    let init_root = ctr.ok("stat -Lc %d:%i /proc/1/root").trim().to_string();
    let init_cgroup = ctr.ok("tr '\\n' ';' < /proc/1/cgroup").to_string();
    assert_ne!(
        init_ns["net"],
        Command::new("readlink").arg("/proc/self/ns/net").output().map(|o| stdout(&o).trim().to_string()).unwrap(),
        "the container has a network namespace of its own"
    );
    assert_ne!(
        init_ns["time"],
        Command::new("readlink").arg("/proc/self/ns/time").output().map(|o| stdout(&o).trim().to_string()).unwrap(),
        "and a time namespace"
    );

    // As CRIU runs it, with a canary in the environment and a canary fd (7) left open.
    let line = format!(
        "exec 7</etc/hostname; {}",
        criu_line("post-resume", &ctr.pid, &[("CANARY", "leaked"), ("AUTOFS_RESTART_KERNEL_API", api)])
    );
    let out = Command::new("bash").arg("-c").arg(line).env_clear().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("srv-data.automount: restarted, tmpfs srv-data kept on top\n"), "{}", stderr(&out));
    kept.check(&ctr, "after the fix");
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true), "fixed");
    assert_eq!(ctr.ok("cat /srv/data/file"), "kept\n");

    let recs = records(&ctr);
    assert!(recs.iter().any(|r| r.args.starts_with("restart ")), "{recs:?}");
    for r in &recs {
        assert_eq!(r.ns, init_ns, "every namespace of the init: {r:?}");
        assert_eq!(r.cgroup, init_cgroup, "in the init's cgroup: {r:?}");
        assert!(!r.cgroup.contains("/.."), "{r:?}");
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd"] {
            let caps = u64::from_str_radix(&r.status[set], 16).unwrap();
            assert_eq!(caps & !init_bounding, 0, "{set} {caps:x} has more than the init's {init_bounding:x}: {r:?}");
        }
        assert_eq!(u64::from_str_radix(&r.status["CapAmb"], 16).unwrap(), 0, "{r:?}");
        assert_eq!(r.status["NoNewPrivs"], "1", "{r:?}");
        assert_eq!(r.root, init_root, "the init's root directory: {r:?}");
        assert_eq!(r.cwd, "/", "{r:?}");
        assert!(!r.env.iter().any(|e| e.contains("CANARY")), "the caller's environment leaked: {r:?}");
        assert!(r.env.contains(&"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()));
        assert_eq!(r.fds, "0 1 2 3", "fds 0-2 only (3 is ls's own): the canary fd 7 leaked? {r:?}");
    }
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_symlink_planted_on_the_way_leads_no_mount_astray() {
    require_containers();
    let ctr = Container::start();
    // An automount below a directory the container can rename (tmpfs; overlayfs would copy
    // the tree instead, and walk into the stale mount).
    ctr.ok("printf '[Automount]\\nWhere=/run/t/data\\n' > /etc/systemd/system/run-t-data.automount
            printf '[Mount]\\nWhat=t\\nWhere=/run/t/data\\nType=tmpfs\\n' > /etc/systemd/system/run-t-data.mount
            systemctl daemon-reload && systemctl start run-t-data.automount && echo kept > /run/t/data/file");
    ctr.restore(&["/run/t/data"]);
    // A host directory, and a process in the container's pid namespace whose root is the
    // host's: the container sees the host through /proc/N/root.
    let victim = stdout(&Command::new("mktemp").args(["-d", "/tmp/autofs-restart-victim.XXXXXX"]).output().unwrap())
        .trim()
        .to_string();
    std::fs::create_dir(format!("{victim}/data")).unwrap();
    let host_side =
        Reaped(Command::new("nsenter").args(["-t", &ctr.pid, "-p", "--", "sleep", "600"]).spawn().expect("nsenter"));
    let inner = (0..100)
        .find_map(|_| {
            let kids =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", host_side.0.id())).unwrap_or_default();
            let pid = kids.split_whitespace().next().and_then(|k| {
                let status = std::fs::read_to_string(format!("/proc/{k}/status")).ok()?;
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|l| l.split_whitespace().last().map(String::from))
            });
            if pid.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            pid
        })
        .expect("the host-side process");
    assert!(ctr.ok(&format!("readlink /proc/{inner}/root")).trim() == "/", "it is visible in the container");
    let host_mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap().matches(&victim).count();

    // While the restart runs, the container swaps /run/t for a symlink to the host's
    // directory, and the restart fails: our put-back is the only mount call that would follow
    // it.
    ctr.inject_systemctl_fault(&format!("mv /run/t /run/t.moved && ln -s /proc/{inner}/root{victim} /run/t; exit 1"));
    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    let said = stderr(&out);
    drop(host_side);
    let host_mounts_after = std::fs::read_to_string("/proc/self/mountinfo").unwrap().matches(&victim).count();
    let victim_entries: Vec<String> = std::fs::read_dir(format!("{victim}/data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    std::fs::remove_dir_all(&victim).unwrap();

    assert_eq!(host_mounts_after, host_mounts_before, "a mount landed on the host: {said}");
    assert!(victim_entries.is_empty(), "the host directory was written: {victim_entries:?}");
    assert_eq!(out.status.code(), Some(1), "{said}");
    let line = said.lines().find(|l| l.contains("run-t-data.automount: failed")).unwrap_or_else(|| panic!("{said}"));
    let pin = ctr.pin().expect("the copy is kept in a pinned namespace");
    assert!(line.contains(&format!("what was on top is kept at /0 in the mount namespace pinned at {pin}")), "{line}");
    assert!(line.contains("/run/t: t is a symlink or not a directory: refused"), "{line}");
    // The restart never happened: the original stands where the container moved it, whole.
    assert_eq!(ctr.ok("cat /run/t.moved/data/file"), "kept\n");

    // The same inside the container: a symlink to a decoy directory of its own. (A mount
    // call on the host's side is refused by the kernel too, since the mount would be in
    // another namespace; inside the container only our walk stands in the way.) Undo the
    // swap and recover first.
    ctr.ok("rm /run/t && mv /run/t.moved /run/t");
    let out = common::run(&["recover", "--pid", &ctr.pid]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ctr.ok("cat /run/t/data/file"), "kept\n");
    ctr.inject_systemctl_fault("mv /run/t /run/t.moved && mkdir -p /run/decoy/data && ln -s /run/decoy /run/t; exit 1");
    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(
        ctr.ok("grep -c ' /run/decoy' /proc/1/mountinfo || true"),
        "0\n",
        "a mount followed the symlink: {said}"
    );
    assert!(
        said.contains("what was on top is kept at /0 in the mount namespace pinned at /run/autofs-restart/"),
        "{said}"
    );
    assert_eq!(ctr.ok("cat /run/t.moved/data/file"), "kept\n");
    assert!(ctr.pin().is_some());
}
