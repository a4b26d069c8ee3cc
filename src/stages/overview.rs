//! `autofs-restart status` without `--pid`: every container of the host at a glance, for the
//! operator who has just restored dozens. A container is the init of a pid namespace other
//! than ours (what CRIU restores, and names to its action scripts in CRTOOLS_INIT_PID); those
//! with autofs mounts are listed: one line when nothing there needs the operator, more when
//! something does (a mount whose master is gone, processes blocked in autofs, a pre-resume
//! holder, trees an interrupted run left aside). Nothing is walked into and nothing entered:
//! a restored mount that nobody touched yet cannot be told from a live one without an access,
//! which would hang; processes blocked in autofs are the sign of one that was touched.
//! `--json`: one object per container, a line each, for tooling.

use std::io::Write;

use rustix::process::Pid;

use crate::container::{Host, Init};
use crate::error::{Context, Error, Result};
use crate::model::autofs::{self, Table};
use crate::model::plan::{self, Master};
use crate::model::procfs;
use crate::settings::Api;
use crate::show::{Shown, who};
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
    blocked: Vec<(u32, Option<u32>, Vec<u8>)>,
    /// How many restored mounts a pre-resume holder keeps.
    held: Option<usize>,
    interrupted: bool,
}

#[derive(Clone)]
struct Mount {
    path: Vec<u8>,
    kind: &'static str,
    master: String,
    /// What kind of master, for the one line: systemd, automount, another process, nothing.
    by: &'static str,
    /// Whether nothing serves it any more: every access fails at once.
    catatonic: bool,
}

pub fn run(api: Api, json: bool) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    let mut listed = 0;
    for pid in inits()? {
        let seen = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| Error::check("a bad pid"))
            .and_then(|p| look(p, api));
        let line = match seen {
            Ok(None) => continue,
            Ok(Some(c)) if json => c.json(),
            Ok(Some(c)) => c.text(),
            // Gone since it was listed, or not to be looked at: said, and on to the next.
            Err(e) if json => format!("{{\"pid\":{pid},\"error\":{}}}\n", string(e.to_string().as_bytes())),
            Err(e) => format!("pid {pid}: {e}\n"),
        };
        out.write_all(line.as_bytes()).context("writing the status")?;
        listed += 1;
    }
    if listed == 0 && !json {
        writeln!(out, "No container of this host has an autofs mount.").context("writing the status")?;
    }
    Ok(0)
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

/// The container of init `pid`, if it has autofs mounts.
fn look(pid: Pid, api: Api) -> Result<Option<Container>> {
    let host = Host::open("pid", pid)?;
    let init = host.init();
    let text = host.mount_table(api)?.text;
    if !autofs::any(&text) {
        return Ok(None);
    }
    let table = Table::from_mountinfo(&text, init.host_pid())?;
    let survey = init.survey()?;
    Ok(Some(Container {
        pid: init.host_pid(),
        comm: init.comm(init.host_pid()).unwrap_or_default(),
        mounts: mounts(init, &table)?,
        blocked: survey.blocked.iter().map(|&p| (p, init.ctr_pid(p), init.comm(p).unwrap_or_default())).collect(),
        held: holder::live(init).map(|l| l.mounts),
        interrupted: staging::left_behind(init, &table)?.is_some(),
    }))
}

fn mounts(init: &Init, table: &Table<'_>) -> Result<Vec<Mount>> {
    let who = init.as_planned();
    let mut facts = ProcFacts::new(init);
    let mut mounts = Vec::new();
    for a in table.autofs() {
        let master = plan::master_of(&a, who, &mut facts)?;
        let by = match master {
            Master::Unit(_) => "systemd",
            Master::Daemon { .. } => "automount",
            Master::Other { .. } => "another process",
            Master::None => "nothing",
        };
        let master = status::master_words(init, &master);
        let kind = a.options.kind.map_or("?", |k| k.as_str());
        let catatonic = a.options.catatonic();
        mounts.push(Mount { path: a.mount.mount_point.to_vec(), kind, master, by, catatonic });
    }
    Ok(mounts)
}

impl Container {
    /// One line when nothing needs the operator; then one more for each thing that does.
    fn text(&self) -> String {
        let pid = self.pid;
        let mut by: Vec<(&str, usize)> = Vec::new();
        for m in &self.mounts {
            match by.iter_mut().find(|(b, _)| *b == m.by) {
                Some((_, n)) => *n += 1,
                None => by.push((m.by, 1)),
            }
        }
        let by: Vec<String> = by.iter().map(|(b, n)| format!("{b} ({n})")).collect();
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
                    string(m.kind.as_bytes()),
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
            "{{\"pid\":{},\"comm\":{},\"mounts\":[{}],\"blocked\":[{}],\"held\":{held},\"interrupted\":{}}}\n",
            self.pid,
            string(&self.comm),
            mounts.join(","),
            blocked.join(","),
            self.interrupted
        )
    }
}

/// A JSON string of `bytes`: UTF-8 as it is (a byte that is not, as U+FFFD), quotes,
/// backslashes and control characters escaped.
fn string(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
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
                    kind: "direct",
                    master: "systemd srv-idle.automount".into(),
                    by: "systemd",
                    catatonic: false,
                },
                Mount {
                    path: b"/srv/a \"b\"".to_vec(),
                    kind: "indirect",
                    master: "none".into(),
                    by: "nothing",
                    catatonic: true,
                },
            ],
            blocked: vec![(4300, Some(78), b"stat".to_vec())],
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
            "{\"pid\":4242,\"comm\":\"systemd\",\"mounts\":[{\"where\":\"/srv/idle\",\"type\":\"direct\",\"master\":\
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
}
