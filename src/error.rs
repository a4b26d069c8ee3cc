//! The one error type. Each error carries what was being done and on what, added where the
//! system call is made; `main` prints it once.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

use rustix::io::Errno;

#[derive(Debug)]
pub enum Error {
    /// The command line or a setting is wrong (exit 2).
    Usage(String),
    /// The container's pid is unusable (exit 2). `name` is where it came from.
    Pid { name: &'static str, value: Option<Box<OsStr>>, why: &'static str },
    /// A system call failed while doing something (exit 1).
    Sys { doing: String, errno: Errno },
    /// Anything else that stops the work (exit 1).
    Failed(String),
}

impl Error {
    pub fn sys(doing: impl Into<String>, errno: Errno) -> Self {
        Error::Sys { doing: doing.into(), errno }
    }

    /// The process exit code: 2 for bad input, 1 for work that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Pid { .. } => 2,
            Error::Sys { .. } | Error::Failed(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) | Error::Failed(msg) => f.write_str(msg),
            Error::Pid { name, value: None, why } => write!(f, "{name} {why}"),
            Error::Pid { name, value: Some(v), why } => {
                write!(f, "{name}='{}': {why}", Shown(v.as_bytes()))
            }
            Error::Sys { doing, errno } => write!(f, "{doing}: {}", errno_name(*errno)),
        }
    }
}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Self {
        Error::Usage(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shows bytes from the system (paths, values) on one line: control characters, backslashes
/// and invalid UTF-8 are written as octal escapes, as in mountinfo.
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() || c == '\\' {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        write!(f, "\\{b:03o}")?;
                    }
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\{b:03o}")?;
            }
        }
        Ok(())
    }
}

/// The symbolic name of an errno, as an operator searches for it.
pub fn errno_name(e: Errno) -> String {
    const NAMES: &[(Errno, &str)] = &[
        (Errno::PERM, "EPERM"),
        (Errno::NOENT, "ENOENT"),
        (Errno::SRCH, "ESRCH"),
        (Errno::INTR, "EINTR"),
        (Errno::IO, "EIO"),
        (Errno::BADF, "EBADF"),
        (Errno::CHILD, "ECHILD"),
        (Errno::AGAIN, "EAGAIN"),
        (Errno::NOMEM, "ENOMEM"),
        (Errno::ACCESS, "EACCES"),
        (Errno::BUSY, "EBUSY"),
        (Errno::EXIST, "EEXIST"),
        (Errno::XDEV, "EXDEV"),
        (Errno::NOTDIR, "ENOTDIR"),
        (Errno::ISDIR, "EISDIR"),
        (Errno::INVAL, "EINVAL"),
        (Errno::MFILE, "EMFILE"),
        (Errno::NOSPC, "ENOSPC"),
        (Errno::ROFS, "EROFS"),
        (Errno::NAMETOOLONG, "ENAMETOOLONG"),
        (Errno::NOSYS, "ENOSYS"),
        (Errno::NOTEMPTY, "ENOTEMPTY"),
        (Errno::LOOP, "ELOOP"),
        (Errno::STALE, "ESTALE"),
        (Errno::NODEV, "ENODEV"),
        (Errno::NOEXEC, "ENOEXEC"),
        (Errno::TIMEDOUT, "ETIMEDOUT"),
        (Errno::OPNOTSUPP, "EOPNOTSUPP"),
    ];
    match NAMES.iter().find(|(n, _)| *n == e) {
        Some((_, name)) => (*name).to_string(),
        None => format!("errno {}", e.raw_os_error()),
    }
}

/// A duration in seconds, for messages: "30", "2.5".
pub fn seconds(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    match ms % 1000 {
        0 => format!("{}", ms / 1000),
        f => format!("{}.{}", ms / 1000, format!("{f:03}").trim_end_matches('0')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_what_would_break_a_log_line() {
        assert_eq!(Shown(b"/srv/a b").to_string(), "/srv/a b");
        assert_eq!(Shown(b"/srv/a\nb\t\\").to_string(), "/srv/a\\012b\\011\\134");
        assert_eq!(Shown(b"/\xff\xc3\xbc").to_string(), "/\\377\u{fc}");
    }

    #[test]
    fn sys_errors_name_the_operation_and_the_errno() {
        let e = Error::sys("moving /proc/sys/fs/binfmt_misc aside", Errno::BUSY);
        assert_eq!(e.to_string(), "moving /proc/sys/fs/binfmt_misc aside: EBUSY");
        assert_eq!(errno_name(Errno::from_raw_os_error(200)), "errno 200");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::Failed("x".into()).exit_code(), 1);
    }
}
