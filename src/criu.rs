//! CRIU's action-script protocol (criu/action-scripts.c): CRIU runs the script with no
//! arguments at every stage and says which one in `CRTOOLS_SCRIPT_ACTION`; the restored tree's
//! root, a host pid, is in `CRTOOLS_INIT_PID`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rustix::process::Pid;

use crate::error::{Error, Result};

pub const ACTION_VAR: &str = "CRTOOLS_SCRIPT_ACTION";
pub const PID_VAR: &str = "CRTOOLS_INIT_PID";

/// The one stage at which there is work: the restored tasks run again, and so does the master
/// of every autofs mount, now ignoring them.
pub const POST_RESUME: &[u8] = b"post-resume";

/// The kernel's PID_MAX_LIMIT on 64-bit: no pid is larger.
const PID_MAX_LIMIT: u32 = 4 * 1024 * 1024;

/// Whether this CRIU stage is ours. CRIU has fourteen others and may add more: all are ignored.
pub fn is_post_resume(action: &OsStr) -> bool {
    action.as_bytes() == POST_RESUME
}

/// A pid as CRIU or a person writes it: a plain positive decimal, nothing around it.
pub fn parse_pid(name: &'static str, value: Option<&OsStr>) -> Result<Pid> {
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
    i32::try_from(n).ok().and_then(Pid::from_raw).ok_or_else(|| bad("is not a positive pid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(v: &str) -> Result<i32> {
        parse_pid(PID_VAR, Some(OsStr::new(v))).map(Pid::as_raw_nonzero).map(i32::from)
    }

    #[test]
    fn only_post_resume_is_ours() {
        assert!(is_post_resume(OsStr::new("post-resume")));
        for other in ["pre-dump", "post-restore", "pre-resume", "post-resume ", "POST-RESUME", "", "x"] {
            assert!(!is_post_resume(OsStr::new(other)), "{other}");
        }
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
