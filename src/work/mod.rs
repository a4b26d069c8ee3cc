//! The work on the container's autofs mounts, once it can be reached (`container`): setting
//! trees aside and putting them back, holding the restored mounts from pre-resume on,
//! releasing old superblocks, our helpers inside the container, and what /proc tells of its
//! processes.

pub mod autofsdev;
pub mod holder;
pub mod mounts;
pub mod once;
pub mod probe;
pub mod release;
pub mod staging;
pub mod survey;
pub mod tokens;

use crate::model::kernel;

/// Whether the kernel this runs on is at least `version` (`model::kernel` names the changes).
pub fn running_at_least(version: (u32, u32)) -> bool {
    kernel::at_least(rustix::system::uname().release().to_bytes(), version)
}
