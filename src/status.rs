//! `autofs-restart status`: every autofs mount of the container, read from mountinfo alone.

use std::io::Write;

use rustix::process::Pid;

use crate::autofs::Table;
use crate::container::Container;
use crate::error::{Error, Result, Shown};
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
            a.stack.iter().map(|m| format!("{} {}", Shown(&m.fs_type), Shown(&m.source))).collect();
        if a.inside > 0 {
            on_top.push(format!("{} mount(s) inside", a.inside));
        }
        let kind = a.options.kind.map_or("?", |k| k.as_str());
        let on_top = if on_top.is_empty() { "-".to_string() } else { on_top.join(" + ") };
        // Spaces in a path would break the columns: show them escaped, as mountinfo does.
        let shown = Shown(path).to_string().replace(' ', "\\040");
        rows.push([shown, kind.into(), master, on_top]);
    }
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let mut out = std::io::stdout().lock();
    for r in &rows {
        writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
        .map_err(|e| Error::Failed(format!("writing the status: {e}")))?;
    }
    Ok(0)
}
