//! The places where a descriptor is known only by its number: those a program inherits, and
//! those a child puts at agreed numbers before exec.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

/// Whatever else the caller left open (CRIU's fds, a shell's) must not reach the programs we
/// start in the container: every fd above 2 becomes close-on-exec. Ours are opened so anyway.
pub fn cloexec_inherited() -> rustix::io::Result<()> {
    let dir = rustix::fs::open("/proc/self/fd", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut fds = Vec::new();
    let mut entries = rustix::fs::Dir::read_from(&dir)?;
    while let Some(entry) = entries.read() {
        if let Some(fd) = entry?.file_name().to_str().ok().and_then(|n| n.parse::<i32>().ok()) {
            fds.push(fd);
        }
    }
    for fd in fds.into_iter().filter(|&fd| fd > 2) {
        // SAFETY: the number was just listed as open, and this single-threaded program closes
        // nothing meanwhile; the listing's own fd, closed since, merely fails with EBADF.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC) {
            Ok(()) | Err(rustix::io::Errno::BADF) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Takes the descriptors a parent left open across exec at the agreed `numbers`. Only at the
/// start of the program that was given them, once: nothing else owns those numbers yet.
pub fn inherited<const N: usize>(numbers: [i32; N]) -> [OwnedFd; N] {
    // SAFETY: the caller's promise above; each number is distinct and taken once.
    numbers.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// dup2(2) of `from` onto the number `to`, left open across exec: for a child before exec,
/// where `to` is a number none of its descriptors owns (rustix's dup2 takes an owned target).
pub fn dup2_onto(from: BorrowedFd<'_>, to: i32) -> rustix::io::Result<()> {
    // SAFETY: `to` is forgotten, never closed, below: ownership of the number stays with
    // whoever the caller gives it to across exec.
    let mut target = unsafe { OwnedFd::from_raw_fd(to) };
    let done = rustix::io::dup2(from, &mut target);
    std::mem::forget(target);
    done
}
