//! `autofs-restart status` without `--pid`: every container of the host at a glance, for the
//! operator who has just restored dozens. A container is the init of a pid namespace other
//! than ours (what CRIU restores, and names to its action scripts in CRTOOLS_INIT_PID); those
//! with autofs mounts are listed: one line when nothing there needs the operator, more when
//! something does (a mount whose master is gone, processes blocked in autofs, a pre-resume
//! holder, trees an interrupted run left aside). Nothing is walked into and nothing entered:
//! a restored mount that nobody touched yet cannot be told from a live one without an access,
//! which would hang; processes blocked in autofs are the sign of one that was touched.
//! `--json`: one object per container, a line each, for tooling (keys: the man page's JSON
//! OUTPUT, schema 1). For monitoring, the exit status is NEEDS_A_LOOK when some container
//! needs the operator or could not be read.

use std::io::Write;

use crate::container::{Host, Init, pidfd};
use crate::error::{Context, Error, NEEDS_A_LOOK, Result};
use crate::model::autofs::{self, Table};
use crate::model::mountinfo::AutofsKind;
use crate::model::plan::{self, ServedBy};
use crate::model::procfs;
use crate::pids::CtrPid;
use crate::settings::{Api, InitPid};
use crate::show::{Shown, json_string as string, who};
use crate::stages::status;
use crate::work::holder;
use crate::work::staging;
use crate::work::survey::ProcFacts;

/// What the overview says of one container.
struct Container {
    pid: u32,
    comm: Vec<u8>,
    mounts: Vec<Mount>,
    /// Processes in autofs waits: host pid, pid in the container, command.
    blocked: Vec<(u32, Option<CtrPid>, Vec<u8>)>,
    /// How many restored mounts a pre-resume holder keeps.
    held: Option<usize>,
    interrupted: bool,
}

#[derive(Clone)]
struct Mount {
    path: Vec<u8>,
    /// None where its options do not say (the JSON's "?").
    kind: Option<AutofsKind>,
    master: String,
    /// What kind of master, for the one line.
    by: ServedBy,
    /// Whether nothing serves it any more: every access fails at once.
    catatonic: bool,
}

/// The version of the JSON objects' keys (the man page's JSON OUTPUT): raised when a key
/// changes meaning or goes, not when one is added.
const SCHEMA: u32 = 1;

pub fn run(api: Api, json: bool) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    let mut listed = 0;
    let mut needs_a_look = false;
    for pid in inits()? {
        let seen = pidfd::pid(pid)
            .ok_or_else(|| Error::check("a bad pid"))
            .and_then(|p| look(InitPid { pid: p, from: "pid" }, api, false));
        needs_a_look |= seen.as_ref().map_or(true, |c| c.as_ref().is_some_and(Container::needs_a_look));
        let line = match seen {
            Ok(None) => continue,
            Ok(Some(c)) if json => c.json(),
            Ok(Some(c)) => c.text(),
            // Gone since it was listed, or not to be looked at: said, and on to the next.
            Err(e) if json => error_json(pid, &e),
            Err(e) => format!("pid {pid}: {e}\n"),
        };
        out.write_all(line.as_bytes()).context("writing the status")?;
        listed += 1;
    }
    if listed == 0 && !json {
        writeln!(out, "No container of this host has an autofs mount.").context("writing the status")?;
    }
    Ok(if needs_a_look { NEEDS_A_LOOK } else { 0 })
}

/// `status --pid PID --json`: that container's object, also when it has no autofs mount; one
/// that cannot be read is an error (exit 1), as without --json.
pub fn one_json(init: InitPid, api: Api) -> Result<u8> {
    let c = look(init, api, true)?.ok_or_else(|| Error::check("no container"))?;
    std::io::stdout().lock().write_all(c.json().as_bytes()).context("writing the status")?;
    Ok(if c.needs_a_look() { NEEDS_A_LOOK } else { 0 })
}

fn error_json(pid: u32, e: &Error) -> String {
    format!("{{\"schema\":{SCHEMA},\"pid\":{pid},\"error\":{}}}\n", string(e.to_string().as_bytes()))
}

/// The host pids of the inits of pid namespaces below ours: 1 in their own namespace.
fn inits() -> Result<Vec<u32>> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .context("listing /proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let init = |pid: &u32| {
        let status = std::fs::read(format!("/proc/{pid}/status")).unwrap_or_default();
        let ns = procfs::nspid(&status);
        ns.len() > 1 && ns.last() == Some(&1)
    };
    Ok(pids.into_iter().filter(init).collect())
}

/// The container of init `pid`, if it has autofs mounts (or `always`).
fn look(init: InitPid, api: Api, always: bool) -> Result<Option<Container>> {
    let host = Host::open(init)?;
    let init = host.init();
    let text = host.mount_table(api)?.text;
    if !always && !autofs::any(&text) {
        return Ok(None);
    }
    let table = Table::from_mountinfo(&text, init.host_pid())?;
    let survey = init.survey()?;
    Ok(Some(Container {
        pid: init.host_pid(),
        comm: init.procs().comm(init.host_pid()).unwrap_or_default(),
        mounts: mounts(init, &table)?,
        blocked: survey
            .blocked
            .iter()
            .map(|&p| (p, init.ctr_pid(p), init.procs().comm(p).unwrap_or_default()))
            .collect(),
        held: holder::live(init).map(|l| l.mounts),
        interrupted: staging::left_behind(init, &table)?.is_some() && !host.run_in_progress(),
    }))
}

fn mounts(init: &Init, table: &Table<'_>) -> Result<Vec<Mount>> {
    let who = init.as_planned();
    let mut facts = ProcFacts::new(init);
    let mut mounts = Vec::new();
    for a in table.autofs() {
        let master = plan::master_of(&a, who, &mut facts)?;
        let by = master.served_by();
        let master = status::master_words(init, &master);
        let catatonic = a.options.catatonic();
        mounts.push(Mount { path: a.mount.mount_point.to_vec(), kind: a.options.kind, master, by, catatonic });
    }
    Ok(mounts)
}

impl Container {
    /// Whether the operator should look: a mount nothing serves (catatonic, or without a
    /// master, where an access hangs), processes blocked in autofs, trees left aside. A
    /// pre-resume holder is a restore in progress, not a fault.
    fn needs_a_look(&self) -> bool {
        self.mounts.iter().any(|m| plan::unserved(m.catatonic, m.by)) || !self.blocked.is_empty() || self.interrupted
    }

    /// One line when nothing needs the operator; then one more for each thing that does.
    fn text(&self) -> String {
        let pid = self.pid;
        let mut by: Vec<(ServedBy, usize)> = Vec::new();
        for m in &self.mounts {
            match by.iter_mut().find(|(b, _)| *b == m.by) {
                Some((_, n)) => *n += 1,
                None => by.push((m.by, 1)),
            }
        }
        let by: Vec<String> = by.iter().map(|(b, n)| format!("{} ({n})", b.as_str())).collect();
        let mut text = format!("pid {pid} ({}): autofs mounts served by {}\n", Shown(&self.comm), by.join(", "));
        for m in self.mounts.iter().filter(|m| m.catatonic) {
            text.push_str(&format!("  {}: catatonic: nothing serves it, an access fails at once\n", Shown(&m.path)));
        }
        if !self.blocked.is_empty() {
            let who: Vec<String> = self.blocked.iter().map(|(p, inner, c)| who(*p, *inner, c)).collect();
            text.push_str(&format!(
                "  blocked in autofs: {}; `autofs-restart status --pid {pid}` says on what\n",
                who.join(", ")
            ));
        }
        if let Some(n) = self.held {
            text.push_str(&format!("  a pre-resume holder keeps {n} restored mount(s) for its post-resume run\n"));
        }
        if self.interrupted {
            text.push_str(&format!(
                "  an interrupted run left trees set aside: `autofs-restart recover --pid {pid}` puts them back\n"
            ));
        }
        text
    }

    /// One JSON object, on one line.
    fn json(&self) -> String {
        let mounts: Vec<String> = self
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{{\"where\":{},\"type\":{},\"master\":{},\"catatonic\":{}}}",
                    string(&m.path),
                    string(m.kind.map_or("?", AutofsKind::as_str).as_bytes()),
                    string(m.master.as_bytes()),
                    m.catatonic
                )
            })
            .collect();
        let blocked: Vec<String> = self
            .blocked
            .iter()
            .map(|(p, inner, c)| {
                let inner = inner.map_or_else(|| "null".to_string(), |i| i.to_string());
                format!("{{\"pid\":{p},\"ctr_pid\":{inner},\"comm\":{}}}", string(c))
            })
            .collect();
        let held = self.held.map_or_else(|| "null".to_string(), |n| n.to_string());
        format!(
            "{{\"schema\":{SCHEMA},\"pid\":{},\"comm\":{},\"mounts\":[{}],\"blocked\":[{}],\"held\":{held},\"interrupted\":{}}}\n",
            self.pid,
            string(&self.comm),
            mounts.join(","),
            blocked.join(","),
            self.interrupted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> Container {
        Container {
            pid: 4242,
            comm: b"systemd".to_vec(),
            mounts: vec![
                Mount {
                    path: b"/srv/idle".to_vec(),
                    kind: Some(AutofsKind::Direct),
                    master: "systemd srv-idle.automount".into(),
                    by: ServedBy::Systemd,
                    catatonic: false,
                },
                Mount {
                    path: b"/srv/a \"b\"".to_vec(),
                    kind: Some(AutofsKind::Indirect),
                    master: "none".into(),
                    by: ServedBy::Nothing,
                    catatonic: true,
                },
            ],
            blocked: vec![(4300, Some(CtrPid(78)), b"stat".to_vec())],
            held: Some(2),
            interrupted: false,
        }
    }

    #[test]
    fn json_strings() {
        assert_eq!(string(b"/srv/idle"), "\"/srv/idle\"");
        assert_eq!(string(b"a\"b\\c\nd\x01"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(string(b"\xff"), "\"\u{fffd}\"");
    }

    #[test]
    fn one_object_a_line() {
        assert_eq!(
            container().json(),
            "{\"schema\":1,\"pid\":4242,\"comm\":\"systemd\",\"mounts\":[{\"where\":\"/srv/idle\",\"type\":\"direct\",\"master\":\
             \"systemd srv-idle.automount\",\"catatonic\":false},{\"where\":\"/srv/a \\\"b\\\"\",\"type\":\"indirect\",\
             \"master\":\"none\",\"catatonic\":true}],\"blocked\":[{\"pid\":4300,\"ctr_pid\":78,\"comm\":\"stat\"}],\"held\":2,\
             \"interrupted\":false}\n"
        );
    }

    #[test]
    fn a_line_and_what_needs_the_operator() {
        assert_eq!(
            container().text(),
            "pid 4242 (systemd): autofs mounts served by systemd (1), nothing (1)\n  /srv/a \"b\": catatonic: nothing serves it, \
             an access fails at once\n  blocked in autofs: pid 4300 (78 in the container, stat); `autofs-restart status --pid 4242` says on what\n  \
             a pre-resume holder keeps 2 restored mount(s) for its post-resume run\n"
        );
        let calm =
            Container { blocked: Vec::new(), held: None, mounts: container().mounts[..1].to_vec(), ..container() };
        assert_eq!(calm.text(), "pid 4242 (systemd): autofs mounts served by systemd (1)\n");
    }

    #[test]
    fn what_needs_a_look() {
        let mounts = container().mounts;
        let calm = Container { blocked: Vec::new(), held: Some(1), mounts: mounts[..1].to_vec(), ..container() };
        assert!(!calm.needs_a_look(), "served mounts and a holder: a restore on its way");
        assert!(container().needs_a_look());
        let masterless = Mount { catatonic: false, ..mounts[1].clone() };
        assert!(Container { mounts: vec![masterless], ..calm_of() }.needs_a_look(), "an access would hang");
        let catatonic = Mount { by: ServedBy::Systemd, ..mounts[1].clone() };
        assert!(Container { mounts: vec![catatonic], ..calm_of() }.needs_a_look(), "an access fails");
        assert!(Container { blocked: container().blocked, ..calm_of() }.needs_a_look());
        assert!(Container { interrupted: true, ..calm_of() }.needs_a_look());
        assert_eq!(
            error_json(7, &Error::check("gone")),
            format!("{{\"schema\":1,\"pid\":7,\"error\":{}}}\n", string(Error::check("gone").to_string().as_bytes()))
        );
    }

    fn calm_of() -> Container {
        Container { blocked: Vec::new(), held: None, mounts: container().mounts[..1].to_vec(), ..container() }
    }
}
