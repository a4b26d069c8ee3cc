//! pre-resume: take hold while the restored tasks are still frozen. CRIU runs the script after
//! the tasks are restored and before it lets them run (criu/cr-restore.c), so no request can
//! be pending on any restored autofs mount yet, and opening one waits for nothing. A holder
//! keeps a descriptor on each restored autofs superblock that has a master (the container's
//! systemd, the automount daemon, another), for the post-resume run to release, after each
//! master's restart, whatever blocked on it meanwhile.
//! It runs no program of the container, and never fails the restore: its faults are a warning.

use crate::error::Result;
use crate::log::Log;
use crate::model::autofs::Table;
use crate::model::mountinfo::Dev;
use crate::settings::{InitPid, Settings};
use crate::stages::opening::{self, Opened};
use crate::work::holder;
use crate::work::tokens;

/// Starts the holder, or warns about why not. Always 0: a restore must not fail for this.
pub fn run(settings: Result<(InitPid, Settings)>) -> u8 {
    let log = opening::log(&settings);
    if let Err(e) = settings.and_then(|(init, s)| hold(init, &s, &log)) {
        log.say(format_args!("warning: pre-resume: {e}"));
    }
    0
}

fn hold(init: InitPid, s: &Settings, log: &Log) -> Result<()> {
    let Some(Opened { host, text }) = opening::open("pre-resume", init, s, log)? else { return Ok(()) };
    let init = host.init();
    let table = Table::from_mountinfo(&text, init.host_pid())?;
    let mounts: Vec<(Vec<u8>, Dev)> = table
        .autofs()
        .iter()
        .filter(|a| !a.options.catatonic())
        .map(|a| (a.mount.mount_point.to_vec(), a.mount.dev))
        .collect();
    if mounts.is_empty() {
        return Ok(());
    }
    // Before any wait on them can exist: the tasks are frozen.
    let first = if tokens::needed(s.api) { first_token(log) } else { None };
    let held = holder::start(&host, &mounts, first)?;
    log.step(format_args!("pre-resume: holding {held} restored autofs mount(s) for post-resume"));
    Ok(())
}

/// The first token a wait on the restored mounts can have, for the post-resume run to release
/// them by token; None, with a warning, where it cannot be read: catatonic mode alone then
/// leaves blocked processes waiting on this kernel, and they are named.
fn first_token(log: &Log) -> Option<u32> {
    match tokens::next() {
        Ok(first) => {
            log.step(format_args!("pre-resume: this kernel wakes blocked processes by token only; the first: {first}"));
            Some(first)
        }
        Err(e) => {
            log.say(format_args!(
                "warning: pre-resume: a process that blocks on a restored mount will stay blocked: {e}"
            ));
            None
        }
    }
}
