//! The pure model: what the mount tables and /proc texts say, and what to do about it. No
//! system call: everything here takes text or values and is tested on fixtures of real tables.

pub mod autofs;
pub mod blocked;
pub mod config;
pub mod journal;
pub mod kernel;
pub mod layout;
pub mod leftovers;
pub mod mountinfo;
pub mod multimount;
pub mod nested;
pub mod partial;
pub mod plan;
pub mod procfs;
pub mod readiness;
pub mod recovery;
pub mod report;
pub mod units;
#[cfg(test)]
pub mod xorshift;
