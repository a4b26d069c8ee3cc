//! Releasing an old autofs superblock, for every kind of master, from here only: every
//! process waiting on it wakes (its call fails with ENOENT), and no request is sent any more.
//! A post-resume run's `Release` owns what releases without a path: systemd's units and the
//! automount daemon ask it.
//! - Through a descriptor held on it (`Releaser`): in every namespace that has a copy of it,
//!   with no path walk, which would wait. Catatonic mode does it on Linux 6.6 and later;
//!   before, its waits are first answered one by one, by token (`tokens`).
//! - By its path, where nothing holds it (`by_path`): this very binary, run as a child in the
//!   namespace that has it (a nested one, or the container's), as the hidden command
//!   `--internal-catatonic PATH DEV`, makes it catatonic.
//!
//! `Release::replaced` decides between the two for a superblock a unit's restart replaced.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use rustix::fs::{CWD, Mode, OFlags};

use crate::container::{Inside, Place};
use crate::error::{Context, Error, Result};
use crate::model::mountinfo::Dev;
use crate::model::nested::{Namespace, Reach};
use crate::show::Shown;
use crate::work::autofsdev::{self, Control};
use crate::work::holder::HeldMount;
use crate::work::survey::Places;
use crate::work::tokens;

/// What releases old superblocks in a post-resume run without a path walk: the descriptors
/// the pre-resume run's holder held, and the control device that releases through them (and
/// through a daemon's own). Where it has neither, superblocks are released by path
/// (`by_path`, each bounded by `timeout`) or not at all.
pub struct Release {
    releaser: Option<Releaser>,
    held: Vec<HeldMount>,
    timeout: Duration,
}

/// The copies of the container's autofs mounts in nested namespaces, and the places held open
/// to reach the private ones by path (`survey`).
pub struct Copies<'a> {
    pub namespaces: &'a [Namespace],
    pub places: &'a Places,
}

/// How a superblock that a restart replaced was released (`Release::replaced`).
pub struct Released {
    /// Through the descriptor held on it, where one was: how its waits were answered.
    pub held: Option<Result<Waits>>,
    /// Where none was, or that failed: each private copy of it with nothing on top, by its path.
    pub copies: Vec<CopyReleased>,
}

/// A private copy released by its path: where, in which namespace (described), and how.
pub struct CopyReleased {
    pub path: Vec<u8>,
    pub namespace: String,
    pub done: Result<()>,
}

impl Release {
    pub fn new(releaser: Option<Releaser>, held: Vec<HeldMount>, timeout: Duration) -> Release {
        Release { releaser, held, timeout }
    }

    /// Releases superblock `dev`, which a restart replaced and the container's own namespace
    /// no longer has: through the descriptor held on it, which wakes every waiter in every
    /// namespace with no path walk; else each private copy of it in a nested namespace, by
    /// its path. A copy with mounts on top is left as it is: no path reaches it, and the top
    /// answers. `waiting`: whether a process known to be blocked on it still waits.
    pub fn replaced(&self, inside: &Inside, dev: Dev, copies: &Copies<'_>, waiting: impl Fn() -> bool) -> Released {
        let held = self.superblock(dev, waiting);
        if let Some(Ok(_)) = held {
            return Released { held, copies: Vec::new() };
        }
        let mut done = Vec::new();
        for ns in copies.namespaces {
            for c in ns.copies.iter().filter(|c| c.reach == Reach::Private && c.on_top == 0 && c.dev == dev) {
                let how = match copies.places.of(ns.pid) {
                    Some(place) => by_path(inside, Some(place), &c.path, c.dev, self.timeout),
                    None => Err(Error::check(format!("{} went away", ns.describe()))),
                };
                done.push(CopyReleased { path: c.path.clone(), namespace: ns.describe(), done: how });
            }
        }
        Released { held, copies: done }
    }

    /// Whether it can release through descriptors at all: the control device is open.
    pub fn can(&self) -> bool {
        self.releaser.is_some()
    }

    /// Whether the pre-resume run's holder held anything.
    pub fn holds_any(&self) -> bool {
        !self.held.is_empty()
    }

    /// The descriptor the holder held on superblock `dev`, if it can be released through it.
    pub fn held_on(&self, dev: Dev) -> Option<&HeldMount> {
        self.releaser.as_ref().and(HeldMount::on(&self.held, dev))
    }

    /// Releases the superblock of a held descriptor `fd` (`Releaser::release`); None where
    /// there is no control device.
    pub fn through(&self, fd: BorrowedFd<'_>, waiting: impl Fn() -> bool) -> Option<Result<Waits>> {
        Some(self.releaser.as_ref()?.release(fd, waiting))
    }

    /// Releases superblock `dev` through the descriptor the holder held on it; None where it
    /// held none (or there is no control device).
    pub fn superblock(&self, dev: Dev, waiting: impl Fn() -> bool) -> Option<Result<Waits>> {
        self.through(self.held_on(dev)?.fd.as_fd(), waiting)
    }
}

/// What releases: the control device, and how this kernel wakes the waits.
pub struct Releaser {
    ctl: Control,
    way: Way,
}

/// How the waits of a superblock are woken.
enum Way {
    /// Catatonic mode wakes them (Linux 6.6 and later).
    Catatonic,
    /// Each is answered by its token first; `first`, the first token a wait on a held
    /// superblock can have, if the pre-resume run read it.
    ByToken { first: Option<u32> },
}

/// How the waits on a released superblock were answered.
#[derive(Debug)]
pub enum Waits {
    /// By catatonic mode alone: this kernel wakes them so.
    Woken,
    /// So many by token, before catatonic mode.
    Answered(usize),
    /// Not by token, as this kernel needs: processes blocked on it stay blocked.
    Unanswered(Error),
}

impl Waits {
    /// What to add to the line that says the superblock was released.
    pub fn note(&self) -> String {
        match self {
            Waits::Woken | Waits::Answered(0) => String::new(),
            Waits::Answered(n) => format!(" ({n} wait(s) answered by token first)"),
            Waits::Unanswered(e) => format!(" (a process blocked on it stays blocked: {e})"),
        }
    }
}

impl Releaser {
    /// `by_token`: whether this kernel needs waits answered by token (`tokens::needed`);
    /// `first`: the first token, from the pre-resume run.
    pub fn new(ctl: Control, by_token: bool, first: Option<u32>) -> Releaser {
        let way = if by_token { Way::ByToken { first } } else { Way::Catatonic };
        Releaser { ctl, way }
    }

    /// Releases the superblock of `fd`, a descriptor from `Control::open_mount`. `waiting`:
    /// whether a process known to be blocked on it still waits.
    pub fn release(&self, fd: BorrowedFd<'_>, waiting: impl Fn() -> bool) -> Result<Waits> {
        let waits = match self.way {
            Way::Catatonic => Waits::Woken,
            Way::ByToken { first } => match self.answer(fd, first, waiting) {
                Ok(n) => Waits::Answered(n),
                Err(e) => Waits::Unanswered(e),
            },
        };
        self.ctl.catatonic(fd)?;
        Ok(waits)
    }

    /// Answers with a failure every wait of the superblock of `fd` whose token is from `first`
    /// on: they were all made before the counter is read now. Then older ones, a bounded way,
    /// while a process known to be blocked on it still waits (`waiting`): one that joined a
    /// wait made before the pre-resume run (a process killed in it leaves it pending), or
    /// every one where no pre-resume run read `first`. How many waits there were.
    fn answer(&self, fd: BorrowedFd<'_>, first: Option<u32>, waiting: impl Fn() -> bool) -> Result<usize> {
        let next = tokens::next()?;
        let first = first.unwrap_or(next);
        let mut answered = 0;
        for token in tokens::between(first, next) {
            answered += usize::from(autofsdev::fail(fd, token)?);
        }
        if !settled(&waiting) {
            for token in tokens::between(first.wrapping_sub(tokens::OLDER).max(1), first) {
                if autofsdev::fail(fd, token)? {
                    answered += 1;
                    if settled(&waiting) {
                        break;
                    }
                }
            }
        }
        Ok(answered)
    }
}

/// Whether no known process waits any more, given a moment to leave a wait just answered.
fn settled(waiting: &impl Fn() -> bool) -> bool {
    for _ in 0..10 {
        if !waiting() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The hidden argument that makes this program the catatonic helper.
pub const CATATONIC_ARG: &str = "--internal-catatonic";

/// How long the catatonic helper may take: milliseconds unless it is blocked, and then
/// waiting longer does not help (see `by_path`).
const CATATONIC_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes the autofs mount at `path` catatonic, if it is still superblock `dev`: its waiters
/// wake, and every later access returns at once. In `place`, a nested namespace, else in the
/// container's own. The child's walk to the mount point waits while some process is blocked
/// in that mount's automount right now, and waiting longer does not help: such a process
/// waits for good. So it gets at most two seconds.
pub fn by_path(inside: &Inside, place: Option<&Place>, path: &[u8], dev: Dev, timeout: Duration) -> Result<()> {
    let dev = dev.to_string();
    let args: [&[u8]; 3] = [CATATONIC_ARG.as_bytes(), path, dev.as_bytes()];
    let out = inside.run_helper(place, &args, timeout.min(CATATONIC_TIMEOUT))?;
    out.ok("making it catatonic").map(drop)
}

/// The catatonic helper, in the child, inside the namespace.
pub fn catatonic_child(path: &[u8], dev: &[u8]) -> Result<u8> {
    let shown = Shown(path);
    // O_PATH without O_DIRECTORY: reaching the mount's root triggers no automount.
    let fd = rustix::fs::openat(CWD, path, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .context(format!("opening {shown}"))?;
    let st = rustix::fs::fstat(&fd).context(format!("stat {shown}"))?;
    if Dev::parse(dev) != Some(Dev::of_stat(st.st_dev)) || st.st_mode & 0o170000 != 0o040000 {
        return Err(Error::check(format!("{shown} is no longer the autofs mount {}", Shown(dev))));
    }
    // "." opens the directory the fd already is: no lookup, so again no automount.
    let dir = rustix::fs::openat(&fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .context(format!("opening {shown}"))?;
    crate::sys::autofs::root_catatonic(dir.as_fd()).context(format!("AUTOFS_IOC_CATATONIC on {shown}"))?;
    Ok(0)
}
