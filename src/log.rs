//! What a run says on stderr, where CRIU keeps it in its log: one line per unit, daemon or
//! finding, and with `-v` each step. An error of the run itself is not said here but returned,
//! and printed once by `main`. A post-resume run of CRIU's also tells the host's log what it
//! said, in one line (`tell_syslog`): CRIU's log is per restore, and nobody reads it unless a
//! restore fails.

use std::cell::RefCell;
use std::os::fd::OwnedFd;

pub struct Log {
    pub verbose: bool,
    /// What `say` said, for the host's log.
    said: RefCell<Vec<String>>,
}

impl Log {
    pub fn new(verbose: bool) -> Log {
        Log { verbose, said: RefCell::new(Vec::new()) }
    }

    /// Says `msg`: a line, or `format_args!` for one.
    pub fn say(&self, msg: impl std::fmt::Display) {
        let line = msg.to_string();
        eprintln!("autofs-restart: {line}");
        self.said.borrow_mut().push(line);
    }

    pub fn step(&self, msg: impl std::fmt::Display) {
        if self.verbose {
            eprintln!("autofs-restart: {msg}");
        }
    }

    /// Sends the host's log (`syslog`, from `syslog_socket`) one line of what this run said
    /// about container `pid`, and of how it ended; nothing if it said nothing and did not fail.
    /// Best effort: a line the daemon cannot take is dropped.
    pub fn tell_syslog(&self, syslog: &OwnedFd, pid: u32, ended: Ended<'_>) {
        let said = self.said.borrow();
        let Some(line) = syslog_line(pid, &said, ended, rustix::process::getpid().as_raw_pid()) else { return };
        let _ = rustix::net::send(syslog, line.as_bytes(), rustix::net::SendFlags::DONTWAIT);
    }
}

/// How a run ended, as the host's log tells it: its severity, and the error if one ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended<'a> {
    /// Exit status 0: every unit checks out, or there was nothing to do.
    Fixed,
    /// Exit status 1: a unit or daemon did not check out (its line says which).
    NotAllFixed,
    /// The run stopped on this error.
    Failed(&'a str),
}

/// A datagram socket connected to the syslog socket at `path`: made before the run enters the
/// container's mount namespace, where `path` would name the container's log, or nothing. None
/// where no daemon listens.
pub fn syslog_socket(path: &str) -> Option<OwnedFd> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let socket = rustix::net::socket_with(AddressFamily::UNIX, SocketType::DGRAM, SocketFlags::CLOEXEC, None).ok()?;
    rustix::net::connect(&socket, &SocketAddrUnix::new(path).ok()?).ok()?;
    Some(socket)
}

/// The most of a line sent: syslog daemons take 1 KiB at least, journald far more.
const MOST: usize = 4096;

/// One syslog message (RFC 3164's `<PRI>TAG[PID]: `, which journald and rsyslog read; facility
/// daemon), or None when there is nothing to tell.
fn syslog_line(pid: u32, said: &[String], ended: Ended<'_>, ours: i32) -> Option<String> {
    if said.is_empty() && ended == Ended::Fixed {
        return None;
    }
    let mut parts: Vec<&str> = said.iter().map(String::as_str).collect();
    let failure = match ended {
        Ended::Failed(e) => Some(format!("failed: {e}")),
        Ended::Fixed | Ended::NotAllFixed => None,
    };
    parts.extend(failure.as_deref());
    // LOG_DAEMON (3 << 3) with LOG_ERR (3) when the run did not fix everything, else LOG_INFO (6).
    let pri = 24 + if ended == Ended::Fixed { 6 } else { 3 };
    let mut line = format!("<{pri}>autofs-restart[{ours}]: post-resume, container pid {pid}: {}", parts.join("; "));
    if line.len() > MOST {
        let mut cut = MOST - 3;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_for_the_hosts_log() {
        let said = [
            "srv-data.automount: restarted, tmpfs srv-data kept on top".to_string(),
            "srv-idle.automount: restarted".into(),
        ];
        assert_eq!(
            syslog_line(4242, &said, Ended::Fixed, 77).unwrap(),
            "<30>autofs-restart[77]: post-resume, container pid 4242: srv-data.automount: restarted, tmpfs srv-data kept on top; srv-idle.automount: restarted"
        );
        assert_eq!(
            syslog_line(4242, &[], Ended::Failed("another run holds its lock"), 77).unwrap(),
            "<27>autofs-restart[77]: post-resume, container pid 4242: failed: another run holds its lock"
        );
        // The severity is the run's ending, not a word of what it said.
        let unit = [crate::model::report::missing_unit("srv-data.automount")];
        assert!(syslog_line(1, &unit, Ended::NotAllFixed, 2).unwrap().starts_with("<27>"));
        let word = ["x.automount: restarted (a mount named failed kept on top)".to_string()];
        assert!(syslog_line(1, &word, Ended::Fixed, 2).unwrap().starts_with("<30>"));
        assert_eq!(syslog_line(4242, &[], Ended::Fixed, 77), None, "nothing said, nothing done: nothing to tell");
        assert!(syslog_line(4242, &[], Ended::NotAllFixed, 77).is_some());
        let long = vec!["é".repeat(3000)];
        let line = syslog_line(1, &long, Ended::Fixed, 2).unwrap();
        assert!(line.len() <= MOST && line.ends_with("..."), "{}", line.len());
    }

    #[test]
    fn sent_as_one_datagram_never_waiting() {
        let dir = std::env::temp_dir().join(format!("autofs-restart-log-test.{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("sock");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let socket = syslog_socket(path.to_str().unwrap()).expect("connected");
        let log = Log::new(false);
        log.say(format_args!("srv-idle.automount: restarted"));
        log.tell_syslog(&socket, 42, Ended::Fixed);
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            got.starts_with("<30>autofs-restart[")
                && got.ends_with("]: post-resume, container pid 42: srv-idle.automount: restarted"),
            "{got}"
        );
        // A daemon that does not read: the run goes on, the lines are dropped.
        for _ in 0..1000 {
            log.tell_syslog(&socket, 42, Ended::Fixed);
        }
        assert!(syslog_socket(dir.join("none").to_str().unwrap()).is_none(), "no daemon: no socket");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
