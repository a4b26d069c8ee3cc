//! The masters of autofs mounts, one module each with its fix: the container's systemd
//! (automount units) and the autofs package's `automount` daemon.

pub mod automount;
pub mod leftovers;
pub mod systemd;
