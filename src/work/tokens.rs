//! Releasing waits by their tokens, for kernels before 6.6. There, making a superblock
//! catatonic empties its wait queues but does not wake the processes in them: it wakes with
//! `wake_up_interruptible()`, and `autofs_wait` sleeps killable (fixed by "autofs: use
//! wake_up() instead of wake_up_interruptible()", Linux 6.6). A reply to a wait by its token
//! (`AUTOFS_DEV_IOCTL_FAIL`) wakes them on every kernel, but only the reader of a superblock's
//! pipe (its master) learns the tokens.
//!
//! What we can learn is the counter they come from: one for the whole kernel, each new wait
//! taking the next number. A wait on an autofs mount of our own, whose pipe we read, carries
//! it (`next`). The pre-resume run reads it while the restored tasks are frozen, before any
//! wait on a restored superblock can exist; the post-resume run reads it again before the
//! release. Every wait on a held superblock then has a token between the two, and a FAIL of
//! each (`between`) answers them all: a token of another superblock's wait is refused (EINVAL)
//! on this one and touches nothing. Then the superblock is made catatonic, as on newer kernels.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use crate::container::pidfd;
use crate::error::{Context, Error, Result};
use crate::model::kernel;
use crate::settings::Api;
use crate::work::autofsdev;

/// How long our own wait may take to reach our pipe: microseconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The most tokens tried on one superblock: about a second of ioctls.
pub const MOST: u32 = 1 << 22;

/// The most tokens tried below the first one, for a process still waiting: waits made since
/// the restore, before the pre-resume run (about 30 ms of ioctls).
pub const OLDER: u32 = 1 << 16;

/// Whether releasing waits needs their tokens: on a kernel before 6.6, or when asked to act
/// as on one (`AUTOFS_RESTART_KERNEL_API=legacy`).
pub fn needed(api: Api) -> bool {
    api == Api::Legacy || !super::running_at_least(kernel::WAKES_FROM_CATATONIC)
}

/// The tokens from `first` up to, not including, `next`, newest first, across the counter's
/// wrap (it skips 0); at most `MOST` of them.
pub fn between(first: u32, next: u32) -> impl Iterator<Item = u32> {
    let span = if next >= first { next - first } else { (u32::MAX - first) + next };
    (1..=span.min(MOST)).map(move |back| {
        let t = next.wrapping_sub(back);
        // Past the wrap, 0 is never a token: the one before 1 is u32::MAX.
        if next > back || next >= first { t } else { t.wrapping_sub(1) }
    })
}

/// The token the kernel gives the next autofs wait: one after that of a wait on a detached autofs
/// mount of our own (fsopen(2), fsmount(2); Linux 5.2), made by a child that leaves our
/// process group, which the mount serves as its master's. Its request is answered with a
/// failure, and the mount goes with its descriptors.
pub fn next() -> Result<u32> {
    let (from_kernel, to_us) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("making a pipe")?;
    let mnt = own_mount(&to_us).context("mounting an autofs of our own")?;
    drop(to_us);
    // We are its master: opening its root waits for nothing.
    let root = rustix::fs::openat(&mnt, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .context("opening our autofs mount")?;
    let (child, pidfd) = trigger(&mnt).context("starting a process that waits on it")?;
    let read = packet(&from_kernel);
    // The one after ours; the counter skips 0.
    let answered =
        read.and_then(|token| autofsdev::fail(root.as_fd(), token).map(|_| token.checked_add(1).unwrap_or(1)));
    // Answered, it ends at once; else its wait is killable.
    if answered.is_err() || !pidfd::exited_within(pidfd.as_fd(), PROBE_TIMEOUT).unwrap_or(false) {
        let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
    }
    let _ = rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty());
    answered.context("reading the kernel's next autofs wait token")
}

/// A detached, indirect autofs mount whose requests go to `pipe`, served by our process group.
fn own_mount(pipe: &OwnedFd) -> Result<OwnedFd> {
    use rustix::mount::{fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen};
    let fs = fsopen("autofs", FsOpenFlags::FSOPEN_CLOEXEC).context("fsopen autofs")?;
    let fd = pipe.as_raw_fd().to_string();
    for (key, value) in [("fd", fd.as_str()), ("minproto", "5"), ("maxproto", "5")] {
        fsconfig_set_string(&fs, key, value).context(format!("setting {key}"))?;
    }
    fsconfig_set_flag(&fs, "indirect").context("setting indirect")?;
    fsconfig_create(&fs).context("creating the superblock")?;
    fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).context("fsmount")
}

/// Forks a child that leaves our process group (so the mount no longer takes it for its
/// master) and looks up a name below `mnt`, which waits for our answer.
fn trigger(mnt: &OwnedFd) -> rustix::io::Result<(rustix::process::Pid, OwnedFd)> {
    use crate::sys::fork::{self, Forked};
    // The child makes only system calls until it exits.
    match fork::fork()? {
        Forked::Parent(pid, pidfd) => Ok((pid, pidfd)),
        Forked::Child => {
            let left = rustix::process::setpgid(None, None);
            let _ = left.and_then(|()| rustix::fs::statat(mnt, "probe/.", AtFlags::empty()).map(drop));
            fork::exit(0)
        }
    }
}

/// The token of the first request on our pipe `from_kernel`: a v5 packet (`struct
/// autofs_v5_packet`: protocol version, type, token, ...), bounded in time.
fn packet(from_kernel: &OwnedFd) -> Result<u32> {
    let mut fds = [PollFd::new(from_kernel, PollFlags::IN)];
    if poll(&mut fds, Some(&pidfd::timespec(PROBE_TIMEOUT))).context("waiting for our request")? == 0 {
        return Err(Error::Timeout { doing: "waiting for our own autofs request".into(), after: PROBE_TIMEOUT });
    }
    let mut buf = [0u8; 512];
    let n = rustix::io::read(from_kernel, &mut buf).context("reading our request")?;
    let word = |at: usize| buf.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_ne_bytes);
    match (n >= 12, word(0), word(4), word(8)) {
        // Version 5, autofs_ptype_missing_indirect.
        (true, Some(5), Some(3), Some(token)) => Ok(token),
        _ => Err(Error::sys("reading our request", Errno::PROTO)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_between_two_readings() {
        assert_eq!(between(5, 9).collect::<Vec<_>>(), [8, 7, 6, 5]);
        assert_eq!(between(9, 9).count(), 0, "no wait since");
        // Across the wrap: after u32::MAX comes 1.
        assert_eq!(between(u32::MAX - 1, 3).collect::<Vec<_>>(), [2, 1, u32::MAX, u32::MAX - 1]);
        assert_eq!(between(u32::MAX, 1).collect::<Vec<_>>(), [u32::MAX]);
        assert_eq!(between(1, u32::MAX).count(), MOST as usize, "bounded");
        assert_eq!(between(1, u32::MAX).next(), Some(u32::MAX - 1), "newest first");
    }
}
