//! The start the CRIU stages share: the container reached from the host, one run of the stage
//! per CRIU process (`once`), and its mount table as the plan reads it, with nothing more done
//! where it has no autofs mount.

use crate::container::{Host, Snapshot};
use crate::error::Result;
use crate::log::Log;
use crate::model::autofs;
use crate::settings::{InitPid, Settings};
use crate::work::once;

/// The log of a CRIU stage whose settings may not have been read: their `-v`, else quiet
/// (the stage then warns in one line why it could not look).
pub fn log(settings: &Result<(InitPid, Settings)>) -> Log {
    Log::new(settings.as_ref().is_ok_and(|(_, s)| s.verbose))
}

/// A stage's start: the container, and its mount table (mountinfo lines).
pub struct Opened {
    pub host: Host,
    pub text: Vec<u8>,
}

/// Opens the container of `init` for `stage` ("pre-dump"). None, with the reason said as a
/// step, where this CRIU process ran the stage already or the container has no autofs mount.
pub fn open(stage: &'static str, init: InitPid, s: &Settings, log: &Log) -> Result<Option<Opened>> {
    let host = Host::open(init)?;
    if !once::first(stage, host.init(), s.criu)? {
        log.step(format_args!("{stage}: nothing to do: this CRIU process ran {stage} on this container already"));
        return Ok(None);
    }
    let Snapshot { text, read } = host.mount_table(s.api)?;
    log.step(format_args!("{stage}: the container's mount table: {read}"));
    if !autofs::any(&text) {
        log.step(format_args!("{stage}: nothing to do: the container has no autofs mount"));
        return Ok(None);
    }
    Ok(Some(Opened { host, text }))
}
