//! CRIU's action-script protocol (criu/action-scripts.c): CRIU runs the script with no
//! arguments at every stage and says which one in `CRTOOLS_SCRIPT_ACTION`; the restored tree's
//! root, a host pid, is in `CRTOOLS_INIT_PID`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rustix::process::Pid;

use crate::error::{Error, Result};
use crate::settings::InitPid;

pub const ACTION_VAR: &str = "CRTOOLS_SCRIPT_ACTION";
pub const PID_VAR: &str = "CRTOOLS_INIT_PID";
pub const IMAGE_DIR_VAR: &str = "CRTOOLS_IMAGE_DIR";

/// The CRIU process that runs us, from `CRTOOLS_IMAGE_DIR`: CRIU names its images directory
/// by a descriptor of its own, `/proc/PID/fd/N` (in RPC mode too). None for anything else.
pub fn criu_pid(image_dir: Option<&OsStr>) -> Option<u32> {
    let rest = image_dir?.as_bytes().strip_prefix(b"/proc/")?;
    let (pid, fd) = std::str::from_utf8(rest).ok()?.split_once("/fd/")?;
    fd.parse::<u32>().ok()?;
    pid.parse().ok().filter(|&p| p > 0)
}

/// The stages of CRIU's lifecycle that concern autofs mounts. CRIU has others and may add
/// more: each of them is `Other`, a silent no-op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the dump, while nothing is frozen and a refusal aborts it.
    PreDump,
    /// The restored tasks exist but are still frozen.
    PreResume,
    /// The restored tasks run again, and so does the master of every autofs mount, now
    /// ignoring them: the fix.
    PostResume,
    Other,
}

impl Stage {
    /// The stage `CRTOOLS_SCRIPT_ACTION` names.
    pub fn of(action: &OsStr) -> Stage {
        match action.as_bytes() {
            b"pre-dump" => Stage::PreDump,
            b"pre-resume" => Stage::PreResume,
            b"post-resume" => Stage::PostResume,
            _ => Stage::Other,
        }
    }
}

/// The kernel's PID_MAX_LIMIT on 64-bit: no pid is larger.
const PID_MAX_LIMIT: u32 = 4 * 1024 * 1024;

/// A pid as CRIU or a person writes it: a plain positive decimal, nothing around it; `name`
/// says where it was given.
pub fn parse_pid(name: &'static str, value: Option<&OsStr>) -> Result<InitPid> {
    let bad = |why| Error::Pid { name, value: value.map(Box::from), why };
    let Some(value) = value else {
        return Err(Error::Pid { name, value: None, why: "is not set" });
    };
    let digits = value.as_bytes();
    if digits.is_empty() {
        return Err(bad("is empty"));
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad("is not a plain positive decimal"));
    }
    let n = digits
        .iter()
        .try_fold(0u32, |n, &d| n.checked_mul(10)?.checked_add(u32::from(d - b'0')))
        .filter(|&n| n <= PID_MAX_LIMIT)
        .ok_or_else(|| bad("is out of range"))?;
    let pid = i32::try_from(n).ok().and_then(Pid::from_raw).ok_or_else(|| bad("is not a positive pid"))?;
    Ok(InitPid { pid, from: name })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(v: &str) -> Result<i32> {
        parse_pid(PID_VAR, Some(OsStr::new(v))).map(|i| i32::from(i.pid.as_raw_nonzero()))
    }

    #[test]
    fn stages() {
        assert_eq!(Stage::of(OsStr::new("post-resume")), Stage::PostResume);
        assert_eq!(Stage::of(OsStr::new("pre-resume")), Stage::PreResume);
        assert_eq!(Stage::of(OsStr::new("pre-dump")), Stage::PreDump);
        for other in ["post-restore", "post-dump", "post-resume ", "POST-RESUME", "", "x"] {
            assert_eq!(Stage::of(OsStr::new(other)), Stage::Other, "{other}");
        }
    }

    #[test]
    fn the_criu_process_from_its_images_directory() {
        let pid = |v: &str| criu_pid(Some(OsStr::new(v)));
        assert_eq!(pid("/proc/4242/fd/3"), Some(4242));
        assert_eq!(pid("/proc/self/fd/3"), None);
        assert_eq!(pid("/var/lib/criu/images"), None);
        assert_eq!(pid("/proc/4242/fd/x"), None);
        assert_eq!(criu_pid(None), None);
    }

    #[test]
    fn plain_positive_decimals() {
        assert_eq!(pid("1").unwrap(), 1);
        assert_eq!(pid("4194304").unwrap(), 4194304);
        assert_eq!(pid("007").unwrap(), 7);
    }

    #[test]
    fn everything_else_names_the_variable_and_the_value() {
        for (v, why) in [
            ("", "is empty"),
            ("abc", "is not a plain positive decimal"),
            ("-1", "is not a plain positive decimal"),
            ("+1", "is not a plain positive decimal"),
            ("12x", "is not a plain positive decimal"),
            (" 1", "is not a plain positive decimal"),
            ("1\n", "is not a plain positive decimal"),
            ("0", "is not a positive pid"),
            ("4194305", "is out of range"),
            ("99999999", "is out of range"),
            ("99999999999999999999999", "is out of range"),
        ] {
            let e = parse_pid(PID_VAR, Some(OsStr::new(v))).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let shown = e.to_string();
            assert!(shown.starts_with("CRTOOLS_INIT_PID="), "{shown}");
            assert!(shown.ends_with(why), "{v:?}: {shown}");
        }
        let unset = parse_pid(PID_VAR, None).unwrap_err().to_string();
        assert_eq!(unset, "CRTOOLS_INIT_PID is not set");
        let bytes = parse_pid(PID_VAR, Some(OsStr::from_bytes(b"1\xff"))).unwrap_err().to_string();
        assert_eq!(bytes, "CRTOOLS_INIT_PID='1\\377': is not a plain positive decimal");
    }
}
