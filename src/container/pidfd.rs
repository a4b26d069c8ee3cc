//! Processes held by pidfds (pidfd_open(2)): signalled and watched without ever hitting a pid
//! that was reused meanwhile.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::error::{Context, Error, Result};

/// Host pid `pid` as the system calls take it; None for 0 and numbers past `i32`.
pub fn pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

/// A pidfd on host pid `pid`; None where there is no such process (or no such pid).
pub fn open(pid: u32) -> Option<OwnedFd> {
    pidfd_open(self::pid(pid)?, PidfdFlags::empty()).ok()
}

/// Sends SIGKILL to host pid `pid` through a pidfd, and returns the pidfd to watch it die.
pub fn kill(pid: u32) -> Result<OwnedFd> {
    let doing = format!("killing pid {pid}");
    let raw = self::pid(pid).ok_or_else(|| Error::check(doing.clone()))?;
    let pidfd = pidfd_open(raw, PidfdFlags::empty()).context(doing.clone())?;
    pidfd_send_signal(&pidfd, Signal::KILL).context(doing)?;
    Ok(pidfd)
}

/// Whether the process behind a pidfd has exited (the pidfd polls readable).
pub fn exited(pidfd: BorrowedFd<'_>) -> Result<bool> {
    exited_within(pidfd, Duration::ZERO)
}

/// Whether the process behind a pidfd exits within `wait`.
pub fn exited_within(pidfd: BorrowedFd<'_>, wait: Duration) -> Result<bool> {
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    poll(&mut fds, Some(&timespec(wait))).context("polling a pidfd")?;
    Ok(!fds[0].revents().is_empty())
}

pub fn timespec(d: Duration) -> Timespec {
    Timespec { tv_sec: d.as_secs().try_into().unwrap_or(i64::MAX), tv_nsec: d.subsec_nanos().into() }
}
