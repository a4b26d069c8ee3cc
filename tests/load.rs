//! Load on one host: after a host-wide migration many containers are restored at once, and
//! their post-resume runs start together. Nothing may cross between them: each run takes its
//! own container's lock, pin and staging namespace.

// The program never starts a thread (clippy.toml); a test starts its containers side by side.
#![allow(clippy::disallowed_methods)]

mod common;

use std::thread;

use common::{Container, Kept, require_containers, spawn_as_criu, stderr};

const ALL: [&str; 3] = ["/proc/sys/fs/binfmt_misc", "/srv/data", "/srv/idle"];
/// Enough to have runs overlap on every step (two vCPUs, or one with the runs' waits), and to
/// tell each container's file from the others'. Twelve showed nothing four do not, at three
/// times the boots.
const N: usize = 4;

/// A container with a file of its own on the tmpfs at /srv/data, all three automounts
/// restored; the hang shown.
fn restored(i: usize) -> (Container, Kept) {
    let ctr = Container::start();
    ctr.ok(&format!("echo kept {i} > /srv/data/file"));
    ctr.restore(&ALL);
    assert_eq!(ctr.answers("/srv/idle", 2), None, "/srv/idle should hang after the restore");
    let kept = Kept::of(&ctr, &["/srv/data"], &["/srv/data/file"]);
    (ctr, kept)
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn several_containers_fixed_at_once() {
    require_containers();
    // Booted side by side; every one that came up is stopped again, also if another failed.
    let started: Vec<thread::Result<(Container, Kept)>> = thread::scope(|s| {
        (0..N).map(|i| s.spawn(move || restored(i))).collect::<Vec<_>>().into_iter().map(|h| h.join()).collect()
    });
    let ctrs: Vec<(Container, Kept)> = started.into_iter().map(|r| r.expect("a container did not come up")).collect();

    let runs: Vec<_> = ctrs.iter().map(|(ctr, _)| spawn_as_criu("post-resume", &ctr.pid, &[])).collect();
    let outs: Vec<_> = runs.into_iter().map(|child| child.wait_with_output().unwrap()).collect();
    for (i, ((ctr, kept), out)) in ctrs.iter().zip(&outs).enumerate() {
        let said = stderr(out);
        assert_eq!(out.status.code(), Some(0), "{i}: {said}");
        assert_eq!(said.lines().filter(|l| l.contains(".automount: restarted")).count(), 3, "{i}: {said}");
        assert!(said.contains("srv-data.automount: restarted, tmpfs srv-data kept on top\n"), "{i}: {said}");
        kept.check(ctr, &format!("container {i}"));
        assert_eq!(ctr.ok("cat /srv/data/file"), format!("kept {i}\n"), "its own file, not another's");
    }
    for (i, (ctr, _)) in ctrs.iter().enumerate() {
        assert_eq!(ctr.answers("/srv/idle", 10), Some(true), "container {i}");
    }
    assert!(!std::path::Path::new("/run/autofs-restart").exists(), "no pin left on the host");
}
