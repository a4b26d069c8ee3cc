//! `autofs-restart status`: every autofs mount of the container, read from mountinfo alone, then
//! the copies in its nested mount namespaces.

use std::io::Write;

use rustix::process::Pid;

use crate::autofs::Table;
use crate::container::{Container, who_short};
use crate::error::{Error, Result, Shown};
use crate::nested::{self, Reach};
use crate::systemd;

pub fn run(pid_name: &'static str, pid: Pid) -> Result<u8> {
    let ctr = Container::open(pid_name, pid)?;
    let systemd = ctr.is_systemd()?;
    let init = pid.as_raw_nonzero().get() as u32;
    let text = ctr.mountinfo()?;
    let table = Table::from_mountinfo(&text, pid)?;
    let mut rows = vec![["WHERE".to_string(), "TYPE".into(), "MASTER".into(), "ON TOP".into()]];
    for a in table.autofs() {
        let path = &a.mount.mount_point;
        let mut master = match a.options.pgrp {
            Some(p) if p == init && systemd => format!("systemd {}", systemd::unit_for_path(path)),
            Some(group) => {
                // The master holds the pipe; under a supervisor it does not lead its group.
                let p = a.options.pipe_ino.and_then(|ino| ctr.pipe_holder(group, ino).ok().flatten()).unwrap_or(group);
                match ctr.comm(p) {
                    Some(comm) => format!("pid {p} ({})", Shown(&comm)),
                    None => format!("pid {p} (gone)"),
                }
            }
            None => "none".into(),
        };
        if a.options.catatonic() {
            master.push_str(", catatonic");
        }
        let mut on_top: Vec<String> =
            a.stack.iter().map(|m| format!("{} {}", Shown(&m.fs_type), Shown(&m.source()))).collect();
        if a.inside > 0 {
            on_top.push(format!("{} mount(s) inside", a.inside));
        }
        let kind = a.options.kind.map_or("?", |k| k.as_str());
        let on_top = if on_top.is_empty() { "-".to_string() } else { on_top.join(" + ") };
        rows.push([escaped(path), kind.into(), master, on_top]);
    }
    let mut out = std::io::stdout().lock();
    print(&mut out, &rows)?;
    if let Some(left) = crate::mounts::left_behind(&ctr, &table)? {
        writeln!(
            out,
            "\nAn interrupted run left trees set aside in {}: `autofs-restart recover --pid {pid}` puts them back.",
            left.place()
        )
        .map_err(write_error)?;
    }

    // Nested mount namespaces that hold autofs mounts, and what a restart does to them.
    let survey = ctr.survey()?;
    let nested = nested::scan(&ctr, &table, &survey.nested)?;
    if !nested.is_empty() {
        let mut rows = vec![["NESTED NAMESPACE".to_string(), "WHERE".into(), "TYPE".into(), "STATE".into()]];
        for ns in &nested {
            let who = who_short(ns.pid, ns.ctr_pid, &ns.comm);
            for c in &ns.copies {
                let of = Shown(c.of.as_deref().unwrap_or_default());
                let state = match c.reach {
                    _ if c.options.catatonic() => "catatonic".to_string(),
                    Reach::Follows => format!("follows {of}"),
                    Reach::Private => format!("private copy of {of}: catatonic once its master restarts"),
                    Reach::Elsewhere => {
                        let holder = match (c.options.pgrp, c.options.pipe_ino) {
                            (Some(group), Some(ino)) => ctr.pipe_holder(group, ino).ok().flatten(),
                            _ => None,
                        };
                        match holder {
                            Some(p) => format!("its own master: pid {p} ({})", Shown(&ctr.comm(p).unwrap_or_default())),
                            None => "catatonic: its master is gone".into(),
                        }
                    }
                };
                let state = match c.on_top {
                    n if n > 0 && c.reach != Reach::Follows => format!("{state}; {n} mount(s) on top still answer"),
                    _ => state,
                };
                let kind = c.options.kind.map_or("?", |k| k.as_str());
                rows.push([who.clone(), escaped(&c.path), kind.into(), state]);
            }
        }
        writeln!(out).map_err(write_error)?;
        print(&mut out, &rows)?;
    }
    // Processes waiting on an autofs mount: on a stale one, they wait for good.
    if !survey.blocked.is_empty() {
        let points = table.autofs_points();
        let mut rows = vec![["BLOCKED PROCESS".to_string(), "ON".into(), "LOOKING UP".into(), String::new()]];
        for &p in &survey.blocked {
            let who = who_short(p, ctr.ctr_pid(p), &ctr.comm(p).unwrap_or_default());
            let path = ctr.blocked_path(p);
            let on = path.as_deref().and_then(|l| crate::blocked::mount_of(l, points.iter().copied()));
            let on = on.map_or_else(|| "?".to_string(), escaped);
            rows.push([who, on, path.as_deref().map_or_else(|| "?".to_string(), escaped), String::new()]);
        }
        writeln!(out).map_err(write_error)?;
        print(&mut out, &rows)?;
    }
    Ok(0)
}

/// Spaces in a path would break the columns: shown escaped, as mountinfo does.
fn escaped(path: &[u8]) -> String {
    Shown(path).to_string().replace(' ', "\\040")
}

fn write_error(e: std::io::Error) -> Error {
    Error::Failed(format!("writing the status: {e}"))
}

/// Prints rows of four columns, the first three padded.
fn print(out: &mut impl Write, rows: &[[String; 4]]) -> Result<()> {
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for r in rows {
        writeln!(out, "{:w0$}  {:w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3]).map_err(write_error)?;
    }
    Ok(())
}
