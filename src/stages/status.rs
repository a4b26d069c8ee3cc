//! `autofs-restart status`: every autofs mount of the container and its master, as the plan
//! sees them; then the copies in its nested mount namespaces, and the processes blocked on
//! autofs mounts. It changes nothing and takes no lock.

use std::io::Write;

use crate::container::{Host, Init};
use crate::error::{Context, Result};
use crate::model::autofs::Table;
use crate::model::kernel;
use crate::model::nested::{Namespace, Reach};
use crate::model::plan::{self, Master};
use crate::model::report;
use crate::settings::{Api, InitPid};
use crate::show::{Shown, column, who_short};
use crate::work::survey::{self, Blocked, ProcFacts};
use crate::work::{self, staging};

type Row = [String; 4];

pub fn run(init: InitPid, api: Api) -> Result<u8> {
    let host = Host::open(init)?;
    let init = host.init();
    let text = host.mount_table(api)?.text;
    let table = Table::from_mountinfo(&text, init.host_pid())?;
    let mut out = std::io::stdout().lock();
    let (rows, mut needs_a_look) = mounts(init, &table)?;
    if rows.len() > 1 {
        print(&mut out, &rows)?;
    } else {
        let own = if host.shares_our_mount_namespace() { ", this host's own: it is in no container" } else { "" };
        writeln!(out, "No autofs mount in the mount namespace of pid {}{own}: nothing to restart.", init.host_pid())
            .context("writing the status")?;
    }
    // Before entering: the pins are on the host.
    if let Some(left) = staging::left_behind(init, &table)? {
        if host.run_in_progress() {
            writeln!(out, "\nA run in progress has trees set aside in {}.", left.place())
                .context("writing the status")?;
        } else {
            needs_a_look = true;
            writeln!(
                out,
                "\nAn interrupted run left trees set aside in {}: `autofs-restart recover --pid {}` puts them back.",
                left.place(),
                init.host_pid()
            )
            .context("writing the status")?;
        }
    }
    let holder = crate::work::holder::live(init);
    if let Some(h) = &holder {
        writeln!(
            out,
            "\nA pre-resume holder keeps {} restored autofs mount(s) of this container open for its post-resume run.",
            h.mounts
        )
        .context("writing the status")?;
    }
    let survey = init.survey()?;
    let namespaces = survey::namespaces(init, &table, &survey.nested)?;
    if !namespaces.is_empty() {
        writeln!(out).context("writing the status")?;
        print(&mut out, &nested(init, &namespaces))?;
    }
    // Processes waiting on an autofs mount: on a stale one, they wait for good. What they
    // look up reads as the container's paths only from inside.
    if !survey.blocked.is_empty() {
        needs_a_look = true;
        let points = table.autofs_points();
        let inside = host.enter(api)?;
        let mut rows = vec![["BLOCKED PROCESS".to_string(), "ON".into(), "LOOKING UP".into(), String::new()]];
        for &p in &survey.blocked {
            let b = Blocked::of(&inside, p, points.iter().copied());
            let shown = |p: &Option<Vec<u8>>| p.as_deref().map_or_else(|| "?".to_string(), column);
            rows.push([who_short(b.pid, b.ctr_pid, &b.comm), shown(&b.on), shown(&b.path), String::new()]);
        }
        writeln!(out).context("writing the status")?;
        print(&mut out, &rows)?;
        writeln!(out, "{}", release_note(holder.as_ref(), crate::work::tokens::needed(api)))
            .context("writing the status")?;
    }
    Ok(if needs_a_look { crate::error::NEEDS_A_LOOK } else { 0 })
}

/// Whether the blocked processes can be released, on this kernel (`by_token`: one before 6.6,
/// where only a reply by token wakes them), with or without a pre-resume holder.
fn release_note(holder: Option<&crate::work::holder::Live>, by_token: bool) -> &'static str {
    match holder {
        Some(h) if h.by_token || !by_token => {
            "Those blocked on a mount the holder keeps are released by the post-resume run (their call fails with ENOENT, a retry reaches the new mount); only SIGKILL ends the others (restart --blocked kill)."
        }
        Some(_) => {
            "The pre-resume run could not read the wait counter that this kernel (before 6.6) needs: the post-resume run looks for their waits among the last 65536 only; SIGKILL ends those it misses (restart --blocked kill)."
        }
        None => {
            "Without a pre-resume run, only those on a mount whose automount daemon keeps a descriptor on it are released; only SIGKILL ends the others (restart --blocked kill)."
        }
    }
}

/// How `status` (one container or all) names a mount's master.
pub(super) fn master_words(init: &Init, master: &Master) -> String {
    match master {
        Master::Unit(name) => format!("systemd {name}"),
        Master::Daemon { pid, .. } => report::process(*pid, init.procs().comm(*pid).as_deref()),
        Master::Other { pid, comm } => report::process(*pid, comm.as_deref()),
        Master::None => "none".into(),
    }
}

/// A row per autofs mount: where, its type, its master, what is on top; and whether one is
/// served by nothing (catatonic, or no master: an access fails, or hangs).
fn mounts(init: &Init, table: &Table<'_>) -> Result<(Vec<Row>, bool)> {
    let who = init.as_planned();
    let mut facts = ProcFacts::new(init);
    let mut rows = vec![["WHERE".to_string(), "TYPE".into(), "MASTER".into(), "ON TOP".into()]];
    let mut unserved = false;
    for a in table.autofs() {
        let master = plan::master_of(&a, who, &mut facts)?;
        unserved |= plan::unserved(a.options.catatonic(), master.served_by());
        let mut master = master_words(init, &master);
        if a.options.catatonic() {
            master.push_str(", catatonic");
        }
        let mut on_top: Vec<String> = plan::layers(&a).into_iter().map(|l| l.what).collect();
        if a.inside > 0 {
            on_top.push(format!("{} mount(s) inside", a.inside));
        }
        let kind = a.options.kind.map_or("?", |k| k.as_str());
        let on_top = if on_top.is_empty() { "-".to_string() } else { on_top.join(" + ") };
        rows.push([column(&a.mount.mount_point), kind.into(), master, on_top]);
    }
    Ok((rows, unserved))
}

/// A row per autofs mount of a nested namespace, and what a restart does to it.
fn nested(init: &Init, namespaces: &[Namespace]) -> Vec<Row> {
    let refuses = work::running_at_least(kernel::REFUSES_FOREIGN_PRIVATE);
    let mut rows = vec![["NESTED NAMESPACE".to_string(), "WHERE".into(), "TYPE".into(), "STATE".into()]];
    for ns in namespaces {
        let who = who_short(ns.pid, ns.ctr_pid, &ns.comm);
        for c in &ns.copies {
            let of = Shown(c.of.as_deref().unwrap_or_default());
            let state = match c.reach {
                _ if c.options.catatonic() => "catatonic".to_string(),
                Reach::Follows => format!("follows {of}"),
                // Until then, a trigger from there waits for the master, or is refused at once.
                Reach::Private if refuses && c.private && c.on_top == 0 => {
                    format!("private copy of {of}: an access fails with EPERM; catatonic once its master restarts")
                }
                Reach::Private => format!("private copy of {of}: catatonic once its master restarts"),
                Reach::Elsewhere => {
                    let holder = match (c.options.pgrp, c.options.pipe_ino) {
                        (Some(group), Some(ino)) => init.procs().pipe_holder(group, ino).ok().flatten(),
                        _ => None,
                    };
                    match holder {
                        Some(p) => {
                            format!("its own master: pid {p} ({})", Shown(&init.procs().comm(p).unwrap_or_default()))
                        }
                        None => "catatonic: its master is gone".into(),
                    }
                }
            };
            let state = match c.on_top {
                n if n > 0 && c.reach != Reach::Follows => format!("{state}; {n} mount(s) on top still answer"),
                _ => state,
            };
            let kind = c.options.kind.map_or("?", |k| k.as_str());
            rows.push([who.clone(), column(&c.path), kind.into(), state]);
        }
    }
    rows
}

/// Prints rows of four columns, the first three padded.
fn print(out: &mut impl Write, rows: &[Row]) -> Result<()> {
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for r in rows {
        writeln!(out, "{:w0$}  {:w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3]).context("writing the status")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::holder::Live;

    #[test]
    fn what_releases_blocked_processes() {
        let held = |by_token| Live { mounts: 3, by_token };
        let released = "Those blocked on a mount the holder keeps are released by the post-resume run";
        assert!(release_note(Some(&held(false)), false).starts_with(released), "6.6 and later");
        assert!(release_note(Some(&held(true)), true).starts_with(released), "before 6.6, the counter read");
        assert!(release_note(Some(&held(false)), true).contains("could not read the wait counter"));
        assert!(release_note(None, false).starts_with("Without a pre-resume run"));
        assert!(release_note(None, true).starts_with("Without a pre-resume run"));
    }
}
