//! Releasing an old autofs superblock through a descriptor held on it, for every kind of
//! master: every process waiting on it wakes (its call fails with ENOENT), in every namespace
//! that has a copy of it, and no request is sent any more; with no path walk, which would
//! wait. Catatonic mode does it on Linux 6.6 and later; before, its waits are first answered
//! one by one, by token (`tokens`).

use std::os::fd::BorrowedFd;

use crate::error::{Error, Result};
use crate::work::autofsdev::{self, Control};
use crate::work::tokens;

/// What releases: the control device; where this kernel needs waits answered by token, the
/// first token a wait on a held superblock can have, if the pre-resume run read it.
pub struct Releaser {
    ctl: Control,
    by_token: Option<Option<u32>>,
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
        Releaser { ctl, by_token: by_token.then_some(first) }
    }

    /// Releases the superblock of `fd`, a descriptor from `Control::open_mount`. `waiting`:
    /// whether a process known to be blocked on it still waits.
    pub fn release(&self, fd: BorrowedFd<'_>, waiting: impl Fn() -> bool) -> Result<Waits> {
        let waits = match self.by_token {
            None => Waits::Woken,
            Some(first) => match self.answer(fd, first, waiting) {
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
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}
