//! autofs-restart: brings AutoFS mount points back to life after CRIU restores a container.
//! See README.md for what it does and DESIGN.md for why it does it this way.

#![deny(clippy::undocumented_unsafe_blocks)]
// Every `unsafe` lives in `sys`.
#![deny(unsafe_code)]

// The layers, lowest first; each uses only those below it (DESIGN.md, Architecture).
// 1. The pure model: tables, /proc texts, plans.
mod model;
// 2. The system calls rustix lacks, and every `unsafe`.
#[allow(unsafe_code)]
mod sys;
// 3. Reaching the container: before and after entering, its programs, its paths.
mod container;
// 4. The work on its mounts: setting aside, holding, releasing, surveying.
mod work;
// 5. The masters, one module each with its fix.
mod masters;
// 6. The commands and CRIU stages.
mod stages;

// The command line, CRIU's protocol, and what every layer shares.
mod cli;
mod criu;
mod error;
mod log;
mod pids;
mod settings;
mod show;

use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use rustix::fs::{Mode, OFlags};

use cli::Command;
use stages::{check, overview, predump, preresume, restart, status};
use work::{holder, probe, release};

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    let from = cli::Sources { env: &|name| std::env::var_os(name), read: &|path| std::fs::read(path) };
    let command = cli::parse(args, &from);
    if let Ok(Command::Ignore) = command {
        return ExitCode::SUCCESS;
    }
    if ensure_std_fds().is_err() || sys::fds::cloexec_inherited().is_err() {
        return ExitCode::from(1);
    }
    let result = command.and_then(|command| match command {
        Command::Ignore => Ok(0),
        Command::Help(text) => {
            print!("{text}");
            Ok(0)
        }
        Command::Version => {
            println!("{}", version());
            Ok(0)
        }
        Command::Status { init, api, json: true } => overview::one_json(init, api),
        Command::Status { init, api, json: false } => status::run(init, api),
        Command::Overview { api, json } => overview::run(api, json),
        Command::Check { settings, json } => check::run(&version(), settings, json),
        Command::Recover { init, timeout, api } => restart::recover(init, timeout, api),
        Command::Restart(init, settings) => restart::run(init, &settings),
        Command::PreDump(settings) => Ok(predump::run(settings)),
        Command::PreResume(settings) => Ok(preresume::run(settings)),
        Command::Hold(pin) => holder::hold_child(pin.as_bytes()),
        Command::Probe(path) => probe::child(path.as_bytes()),
        Command::Catatonic(path, dev) => release::catatonic_child(path.as_bytes(), dev.as_bytes()),
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("autofs-restart: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// CRIU starts action scripts with stdin closed. Fill any closed fd of 0–2 with /dev/null, so
/// that no fd opened later (a pidfd, a mount tree) lands there and leaks into a child as its
/// stdin, stdout or stderr.
fn ensure_std_fds() -> rustix::io::Result<()> {
    loop {
        // Without CLOEXEC: these become the standard fds, for children too.
        let fd = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::NOCTTY, Mode::empty())?;
        if fd.as_raw_fd() > 2 {
            return Ok(());
        }
        let _kept_open = fd.into_raw_fd();
    }
}

fn version() -> String {
    format!(
        "autofs-restart {} ({}, {}, {})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        if cfg!(target_env = "musl") { "musl" } else { "glibc" },
        if cfg!(target_feature = "crt-static") { "static" } else { "dynamic" },
    )
}
