//! The two numberings of a process. A pid this host's /proc shows (a host pid) is a plain
//! `u32` everywhere; a pid as the container numbers it, in its own pid namespace (what its
//! pid files and its own /proc hold, what a person inside it sees), is a `CtrPid`, so that the
//! one is never taken for the other.

use std::fmt;

/// A pid in the container's pid namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtrPid(pub u32);

impl fmt::Display for CtrPid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
