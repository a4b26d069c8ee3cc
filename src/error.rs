//! The one error type. Each error carries what was being done and on what, added where the
//! system call is made; callers chain more context on top (`Context`), never a copy of the
//! message. `main` prints it once, on one line.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::io::Errno;

use crate::show::{Shown, seconds};

/// The exit status of `status` when something needs the operator (a mount nothing serves,
/// processes blocked in autofs, trees an interrupted run left aside, a container that could
/// not be read), and of `check` when the host is not ready. 1 and 2 keep their meaning (could
/// not be done, bad input).
pub const NEEDS_A_LOOK: u8 = 3;

#[derive(Debug, Clone)]
pub enum Error {
    /// The command line or a setting is wrong (exit 2).
    Usage(String),
    /// The container's pid is unusable (exit 2). `name` is where it came from.
    Pid { name: &'static str, value: Option<Box<OsStr>>, why: &'static str },
    /// We lack the capabilities it takes to reach a container (exit 1).
    Unprivileged { missing: Vec<&'static str> },
    /// A system call failed while doing something.
    Sys { doing: String, errno: Errno },
    /// A program ran and failed: how it ended, and the first line it wrote on stderr.
    Exit { doing: String, status: ExitStatus, said: Vec<u8> },
    /// A program gave no answer in time and was killed.
    Timeout { doing: String, after: Duration },
    /// Something was found not as it must be: what was found.
    Check(String),
    /// Doing something failed because of `source`.
    Context { doing: String, source: Box<Error> },
    /// Doing something failed, and this is where it left things (`state`, for people).
    Left { source: Box<Error>, state: String },
    /// Doing something failed, and the program it was about said why in its own words
    /// (its journal, its stderr): its lines, last ones.
    Said { source: Box<Error>, who: String, said: Vec<Vec<u8>> },
    /// What was on top of a mount point could not go back because of `source`: it is kept
    /// staged at `at` (one place per layer, lowest first), for `recover`.
    Kept { at: Vec<String>, source: Box<Error> },
}

impl Error {
    pub fn sys(doing: impl Into<String>, errno: Errno) -> Self {
        Error::Sys { doing: doing.into(), errno }
    }

    pub fn check(what: impl Into<String>) -> Self {
        Error::Check(what.into())
    }

    /// This error, as the cause of failing at `doing`.
    pub fn context(self, doing: impl Into<String>) -> Self {
        Error::Context { doing: doing.into(), source: Box::new(self) }
    }

    /// The errno of the system call at the bottom of the chain, if it was one: decisions such
    /// as the fallback on ENOSYS look at this, never at the message.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            Error::Context { source, .. }
            | Error::Kept { source, .. }
            | Error::Left { source, .. }
            | Error::Said { source, .. } => source.errno(),
            _ => None,
        }
    }

    /// The process exit code: 2 for bad input, 1 for work that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Pid { .. } => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) | Error::Check(msg) => f.write_str(msg),
            Error::Pid { name, value: None, why } => write!(f, "{name} {why}"),
            Error::Pid { name, value: Some(v), why } => write!(f, "{name}='{}': {why}", Shown(v.as_bytes())),
            Error::Unprivileged { missing } => {
                let verb = if missing.len() == 1 { "is" } else { "are" };
                write!(
                    f,
                    "needs root: {} {verb} missing (reaching a container takes CAP_SYS_ADMIN and CAP_SYS_PTRACE)",
                    missing.join(" and ")
                )
            }
            Error::Sys { doing, errno } => write!(f, "{doing}: {}", errno_name(*errno)),
            Error::Exit { doing, status, said } if said.is_empty() => write!(f, "{doing}: {status}"),
            Error::Exit { doing, status, said } => write!(f, "{doing}: {status}: {}", Shown(said)),
            Error::Timeout { doing, after } => write!(f, "{doing}: no answer in {} s, killed it", seconds(*after)),
            Error::Context { doing, source } => write!(f, "{doing}: {source}"),
            Error::Left { source, state } => write!(f, "{source}; {state}"),
            Error::Said { source, who, said } => {
                write!(f, "{source}; {who} said: ")?;
                for (i, line) in said.iter().enumerate() {
                    write!(f, "{}\"{}\"", if i > 0 { ", " } else { "" }, Shown(line))?;
                }
                Ok(())
            }
            Error::Kept { at, source } => write!(f, "what was on top is kept at {} ({source})", at.join(", ")),
        }
    }
}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Self {
        Error::Usage(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Says what was being done when a call failed, where it is made.
pub trait Context<T> {
    fn context(self, doing: impl Into<String>) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, Errno> {
    fn context(self, doing: impl Into<String>) -> Result<T> {
        self.map_err(|errno| Error::sys(doing, errno))
    }
}

impl<T> Context<T> for Result<T> {
    fn context(self, doing: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.context(doing))
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn context(self, doing: impl Into<String>) -> Result<T> {
        self.map_err(|e| match e.raw_os_error() {
            Some(n) => Error::sys(doing, Errno::from_raw_os_error(n)),
            None => Error::check(format!("{}: {e}", doing.into())),
        })
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
        (Errno::NODATA, "ENODATA"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_errors_name_the_operation_and_the_errno() {
        let e = Error::sys("moving /proc/sys/fs/binfmt_misc aside", Errno::BUSY);
        assert_eq!(e.to_string(), "moving /proc/sys/fs/binfmt_misc aside: EBUSY");
        assert_eq!(errno_name(Errno::from_raw_os_error(200)), "errno 200");
    }

    #[test]
    fn context_chains_and_keeps_the_errno() {
        let e: Result<()> = Err(Errno::NOSYS).context("open_tree");
        let e = e.context("setting tmpfs t at /srv/data aside").unwrap_err();
        assert_eq!(e.to_string(), "setting tmpfs t at /srv/data aside: open_tree: ENOSYS");
        assert_eq!(e.errno(), Some(Errno::NOSYS));
        assert_eq!(Error::check("the table changed").context("checking").errno(), None);
    }

    #[test]
    fn what_a_program_said_follows_in_its_words() {
        let e = Error::check("timed out").context("waiting for a new automount");
        let said = vec![b"/usr/sbin/automount: program is already running.".to_vec(), b"a\tb".to_vec()];
        let e = Error::Said { source: Box::new(e), who: "automount".into(), said };
        assert_eq!(
            e.to_string(),
            "waiting for a new automount: timed out; automount said: \"/usr/sbin/automount: program is already \
             running.\", \"a\\011b\""
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::check("x").exit_code(), 1);
        assert_eq!(Error::check("x").context("y").exit_code(), 1);
    }
}
