//! The commands and CRIU stages, each a module that puts the layers below to work:
//! pre-dump, pre-resume, post-resume with `restart` and `recover`, `status` and `check`.

pub mod check;
pub mod opening;
pub mod overview;
pub mod predump;
pub mod preresume;
pub mod restart;
pub mod status;
