//! pre-resume takes hold of the restored autofs mounts while the tasks are frozen; post-resume
//! releases, after each unit's restart, whatever blocked on them meanwhile. Run stage by stage
//! as CRIU runs them, on a restored container.

mod common;

use common::{
    Container, Kept, kernel_at_least, require_containers, run, run_as_criu, statmount_reads_lines, stderr, stdout,
    whole_read,
};

const ALL: [&str; 3] = ["/proc/sys/fs/binfmt_misc", "/srv/data", "/srv/idle"];

/// A restored container (a file on the tmpfs at /srv/data) after its pre-resume run: the
/// holder runs, `status` says so. Returns the holder's host pid.
fn held() -> (Container, String) {
    held_with(&[])
}

/// As `held`, with more settings for pre-resume (`env`).
fn held_with(env: &[(&str, &str)]) -> (Container, String) {
    let ctr = Container::start();
    ctr.ok("echo kept > /srv/data/file");
    ctr.restore(&ALL);
    let out = run_as_criu("pre-resume", &ctr.pid, env);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""), "pre-resume is silent");
    let holder = holder_of(&ctr).expect("a holder runs");
    let status = stdout(&run(&["status", "--pid", &ctr.pid]));
    assert!(status.contains("A pre-resume holder keeps 3 restored autofs mount(s) of this container open"), "{status}");
    (ctr, holder)
}

/// The host pid of the holder of this container, if one runs.
fn holder_of(ctr: &Container) -> Option<String> {
    let pin = ctr.host_entries("hold.").into_iter().next()?;
    let text = std::fs::read_to_string(pin).ok()?;
    let pid = text.split_whitespace().next()?.to_string();
    std::path::Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// Whether host process `pid` ends within two seconds (gone, or a zombie not yet reaped by
/// whoever inherited it).
fn ended(pid: &str) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')) => return true,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    false
}

/// Starts `stat PATH/.` in the mount namespace of container pid `ns` (the init's: 1), which
/// blocks on the stale automount; its exit status and what it said go to /run/stat.N.
fn blocked_stat(ctr: &Container, ns: &str, path: &str, n: u32) -> String {
    ctr.ok(&format!(
        "(setsid nsenter -t {ns} -m sh -c 'stat {path}/. 2>/run/stat.{n}.err; echo $? > /run/stat.{n}' </dev/null >/dev/null 2>&1 &)"
    ));
    ctr.wait_for(&format!(
        "pgrep -f '^stat {path}/.$' && grep -qx autofs_wait /proc/$(pgrep -f '^stat {path}/.$')/wchan"
    ));
    ctr.ok(&format!("pgrep -f '^stat {path}/.$'")).trim().to_string()
}

#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn what_blocked_between_resume_and_the_fix_is_released_by_itself() {
    require_containers();
    // Before Linux 6.6 catatonic mode wakes nobody: its wait is answered by token first.
    released_by_itself(&[], !kernel_at_least(6, 6));
}

/// The same, releasing by token as on a kernel before 6.6 whatever this one is.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn released_by_token_where_asked_on_any_kernel() {
    require_containers();
    released_by_itself(&[("AUTOFS_RESTART_KERNEL_API", "legacy")], true);
}

/// A process blocked between resume and post-resume ends by itself with an error, and a retry
/// reaches the new mount; its wait answered `by_token` first. `asked`: more settings.
fn released_by_itself(asked: &[(&str, &str)], by_token: bool) {
    let (ctr, holder) = held_with(asked);
    let kept = Kept::of(&ctr, &["/srv/data"], &["/srv/data/file"]);
    // Between resume and post-resume, a process touches the stale automount: it hangs.
    let waiting = blocked_stat(&ctr, "1", "/srv/idle", 1);

    let env = [asked, &[("AUTOFS_RESTART_VERBOSE", "1")]].concat();
    let out = run_as_criu("post-resume", &ctr.pid, &env);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    // The table is read at and below what the holder held, not chosen from every mount again
    // (where statmount gives whole lines).
    if !asked.is_empty() {
        assert!(said.contains("the container's mount table: its whole mountinfo read (legacy API)\n"), "{said}");
    } else if statmount_reads_lines() {
        let below = " mounts read by statmount, at and below the 3 autofs mount(s) pre-resume held\n";
        assert!(said.contains(below), "{said}");
    } else {
        assert!(said.contains(&format!("the container's mount table: {}\n", whole_read())), "{said}");
    }
    assert!(
        said.contains(&format!(
            "({waiting} in the container, stat) was blocked on /srv/idle (looking up /srv/idle): released, its call \
         failed with ENOENT; a retry reaches the new mount\n"
        )),
        "{said}"
    );
    assert!(!said.contains("still blocked"), "{said}");
    let answered = said.lines().any(|l| {
        l.contains(": srv-idle.automount: made its old autofs mount 0:")
            && l.ends_with(" catatonic (1 wait(s) answered by token first)")
    });
    assert_eq!(answered, by_token, "{said}");
    // It ended by itself, with an error: nothing sent it a signal.
    ctr.wait_for("test -s /run/stat.1");
    assert_eq!(ctr.ok("cat /run/stat.1"), "1\n");
    assert!(ctr.ok("cat /run/stat.1.err").contains("No such file or directory"));
    kept.check(&ctr, "after the fix");
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true), "a retry reaches the new mount");
    assert!(ended(&holder), "the holder is gone");
    assert_eq!(holder_of(&ctr), None);
}

/// A private nested namespace whose copy of the restored mount has a process blocked on it
/// right now: a path walk to that copy waits too, so without a held descriptor it stays hung
/// (a warning). Through the held one it goes catatonic, the process is released, and the
/// copy answers at once. Where the kernel refuses triggers from a namespace that is not the
/// superblock's on a private mount, nothing can block there: the access fails at once, and
/// the fix makes the copy catatonic all the same.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_blocked_private_copy_in_a_nested_namespace_is_released_too() {
    require_containers();
    let (ctr, _) = held();
    ctr.ok("(setsid unshare -m --propagation private sleep 1001 </dev/null >/dev/null 2>&1 &)
            while ! pgrep -fx 'sleep 1001' >/dev/null; do sleep 0.05; done");
    let private = ctr.ok("pgrep -fx 'sleep 1001'").trim().to_string();
    if common::refuses_foreign_private_triggers() {
        ctr.assert_refused(Some(&private), "/srv/idle");
        let out = run_as_criu("post-resume", &ctr.pid, &[]);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{said}");
        assert!(!said.contains("blocked"), "{said}");
        let answers = ctr.sh(&format!("exec timeout -s KILL 5 nsenter -t {private} -m ls /srv/idle/"));
        assert_eq!(answers.status.code(), Some(0), "the private copy answers at once: {}", stderr(&answers));
        assert_eq!(ctr.answers("/srv/idle", 10), Some(true));
        return;
    }
    let waiting = blocked_stat(&ctr, &private, "/srv/idle", 2);

    let out = run_as_criu("post-resume", &ctr.pid, &[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("stays as it was"), "{said}");
    assert!(said.contains(&format!("({waiting} in the container, stat) was blocked on /srv/idle")), "{said}");
    ctr.wait_for("test -s /run/stat.2");
    assert_eq!(ctr.ok("cat /run/stat.2"), "1\n");
    let answers = ctr.sh(&format!("exec timeout -s KILL 5 nsenter -t {private} -m ls /srv/idle/"));
    assert_eq!(answers.status.code(), Some(0), "the private copy answers at once: {}", stderr(&answers));
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true));
}

/// A holder whose post-resume never comes ends with the container; there is only ever one.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn a_holder_ends_with_its_container_and_is_started_once() {
    require_containers();
    let (ctr, holder) = held();
    // A second pre-resume run starts no second holder (whoever runs it).
    let again = run_as_criu("pre-resume", &ctr.pid, &[]);
    assert_eq!((again.status.code(), stderr(&again).as_str()), (Some(0), ""));
    let holders = std::process::Command::new("pgrep").args(["-f", "--", "--[i]nternal-hold hold."]).output().unwrap();
    let mine: Vec<String> = stdout(&holders)
        .lines()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .contains(&format!(".{}-", ctr.pid))
        })
        .map(String::from)
        .collect();
    assert_eq!(mine, std::slice::from_ref(&holder), "one holder");
    let pid = ctr.pid.clone();
    drop(ctr);
    assert!(ended(&holder), "the holder outlived its container");
    let left: Vec<String> = std::fs::read_dir("/run/autofs-restart")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(!left.iter().any(|n| n.starts_with(&format!("hold.{pid}-"))), "a pin left: {left:?}");
}

/// `status` without `--pid`, on a host with a restored container (its holder, then a process
/// blocked on it), a fixed one and one without autofs mounts: a line for each container with
/// autofs mounts, then what needs a look; the same in JSON, an object a line.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn the_overview_of_every_container_names_what_needs_a_look() {
    require_containers();
    let (ctr, _) = held();
    let (fixed, _) = held();
    let out = run_as_criu("post-resume", &fixed.pid, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bare = common::Bare::start();
    let of = |pid: &str, text: &str| -> Vec<String> {
        let mut lines = text.lines().skip_while(|l| !l.starts_with(&format!("pid {pid} (")));
        let first = lines.next().map(String::from).into_iter();
        first.chain(lines.take_while(|l| l.starts_with("  ")).map(String::from)).collect()
    };
    let head = |pid: &str| format!("pid {pid} (systemd): autofs mounts served by systemd (3)");
    let out = run(&["status"]);
    let text = stdout(&out);
    // Other tests' containers share this host: the exit status follows what is listed.
    assert_eq!(out.status.code(), Some(needs_a_look_in_text(&text)), "{text}{}", stderr(&out));
    let holder = "  a pre-resume holder keeps 3 restored mount(s) for its post-resume run";
    assert_eq!(of(&ctr.pid, &text), [head(&ctr.pid), holder.to_string()], "{text}");
    assert_eq!(of(&fixed.pid, &text), [head(&fixed.pid)], "{text}");
    assert_eq!(of(&bare.init, &text), Vec::<String>::new(), "no autofs mount, no line: {text}");

    let waiting = blocked_stat(&ctr, "1", "/srv/idle", 3);
    let text = stdout(&run(&["status"]));
    let lines = of(&ctr.pid, &text);
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!((lines[0].clone(), lines[2].as_str()), (head(&ctr.pid), holder), "{text}");
    let blocked = format!("({waiting} in the container, stat); `autofs-restart status --pid {}` says on what", ctr.pid);
    assert!(lines[1].starts_with("  blocked in autofs: pid ") && lines[1].ends_with(&blocked), "{text}");

    let out = run(&["status"]);
    assert_eq!(out.status.code(), Some(3), "a process blocked: {}", stdout(&out));
    let out = run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(3), "a process blocked: {}", stderr(&out));
    let json = stdout(&out);
    assert_eq!(
        json.lines().filter(|l| !l.starts_with("{\"schema\":1,\"pid\":")).count(),
        0,
        "one object a line: {json}"
    );
    let object =
        |pid: &str| json.lines().find(|l| l.starts_with(&format!("{{\"schema\":1,\"pid\":{pid},"))).map(String::from);
    let line = object(&ctr.pid).unwrap_or_else(|| panic!("{json}"));
    assert!(
        line.starts_with(&format!("{{\"schema\":1,\"pid\":{},\"comm\":\"systemd\",\"mounts\":[{{\"where\":", ctr.pid)),
        "{line}"
    );
    let idle =
        "{\"where\":\"/srv/idle\",\"type\":\"direct\",\"master\":\"systemd srv-idle.automount\",\"catatonic\":false}";
    assert!(line.contains(idle), "{line}");
    let blocked = format!("\"ctr_pid\":{waiting},\"comm\":\"stat\"}}],\"held\":3,\"interrupted\":false}}");
    assert!(line.contains("\"blocked\":[{\"pid\":") && line.ends_with(&blocked), "{line}");
    let line = object(&fixed.pid).unwrap_or_else(|| panic!("{json}"));
    assert!(line.contains(idle) && line.ends_with("\"blocked\":[],\"held\":null,\"interrupted\":false}"), "{line}");
    assert_eq!(object(&bare.init), None, "{json}");

    // One container: the same object, and an exit status of its own.
    let one = |pid: &str, code: i32, json: bool| {
        let args = if json { vec!["status", "--pid", pid, "--json"] } else { vec!["status", "--pid", pid] };
        let out = run(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}{}", stdout(&out), stderr(&out));
        stdout(&out)
    };
    assert_eq!(one(&ctr.pid, 3, true), format!("{}\n", object(&ctr.pid).unwrap()), "blocked");
    assert!(one(&ctr.pid, 3, false).contains("BLOCKED PROCESS"));
    assert_eq!(one(&fixed.pid, 0, true), format!("{}\n", object(&fixed.pid).unwrap()), "nothing to look at");
    one(&fixed.pid, 0, false);
    let bare_json = one(&bare.init, 0, true);
    assert!(bare_json.contains("\"mounts\":[],\"blocked\":[],\"held\":null,\"interrupted\":false}\n"), "{bare_json}");
}

/// The exit status `status` (every container, text) should give for `text`: 3 when a line
/// names a need (a mount served by nothing, catatonic, blocked processes, trees left aside,
/// a container not read); a pre-resume holder alone is none.
fn needs_a_look_in_text(text: &str) -> i32 {
    let need = text.lines().any(|l| {
        (l.starts_with("pid ") && !l.contains("): autofs mounts served by "))
            || l.contains("served by") && l.contains("nothing (")
            || (l.starts_with("  ") && !l.starts_with("  a pre-resume holder keeps "))
    });
    if need { 3 } else { 0 }
}

/// Where the wait counter cannot be read (fsopen refused, as by a seccomp filter), the release
/// on a kernel that needs tokens is catatonic mode alone, and both runs say so: from 6.6 on
/// that still wakes the blocked process; before, it is named as still blocked.
#[test]
#[ignore = "needs root and the kernel's autofs: make test runs it"]
fn without_the_wait_counter_the_release_is_catatonic_mode_alone_and_says_so() {
    require_containers();
    let enosys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/harness/enosys");
    // fsopen(2), 430 on x86_64 and aarch64 alike.
    let under = |action: &str, pid: &str, extra: &[(&str, &str)]| {
        let line = common::criu_line(action, pid, extra);
        let line = format!("exec {enosys} 430 {}", line.strip_prefix("exec ").unwrap());
        std::process::Command::new("bash").arg("-c").arg(line).env_clear().output().unwrap()
    };
    let legacy = [("AUTOFS_RESTART_KERNEL_API", "legacy")];
    let ctr = Container::start();
    ctr.restore(&ALL);
    let why = "mounting an autofs of our own: fsopen autofs: ENOSYS";
    let out = under("pre-resume", &ctr.pid, &legacy);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let warning = format!(
        "autofs-restart: warning: pre-resume: a process that blocks on a restored mount will stay blocked: {why}\n"
    );
    assert_eq!(stderr(&out), warning);
    let waiting = blocked_stat(&ctr, "1", "/srv/idle", 4);

    let out = under("post-resume", &ctr.pid, &legacy);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let released = said.lines().any(|l| {
        l.contains("warning: srv-idle.automount: made its old autofs mount 0:")
            && l.ends_with(&format!(" catatonic (a process blocked on it stays blocked: {why})"))
    });
    assert!(released, "{said}");
    if kernel_at_least(6, 6) {
        ctr.wait_for("test -s /run/stat.4");
        assert_eq!(ctr.ok("cat /run/stat.4"), "1\n", "catatonic mode woke it");
    } else {
        let still = format!("({waiting} in the container, stat) is still blocked on /srv/idle (looking up /srv/idle)");
        assert!(said.contains(&still), "{said}");
    }
    assert_eq!(ctr.answers("/srv/idle", 10), Some(true), "a new access reaches the new mount");
}
