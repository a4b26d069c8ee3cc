//! The command line and the environment: what to do, with which settings.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;

use lexopt::prelude::*;

use crate::criu::{self, Stage};
use crate::error::{Error, Result};
use crate::model::{config, units};
use crate::settings::{Api, InitPid, OnBlocked, Policy, SYSLOG_SOCKET, Seen, Settings};
use crate::work::holder::HOLD_ARG;
use crate::work::probe::PROBE_ARG;
use crate::work::release::CATATONIC_ARG;

pub const HELP: &str = "\
autofs-restart: bring AutoFS mount points back to life after CRIU restores a container

Usage:
  autofs-restart                          as a CRIU action script (CRTOOLS_* environment)
  autofs-restart restart --pid PID [--unit UNIT]... [--nested POLICY] [--blocked WHAT]
                         [--timeout SECS] [--dry-run] [--probe] [-v]
  autofs-restart status [--pid PID] [--json]
  autofs-restart recover --pid PID [--timeout SECS]
  autofs-restart check [--json]
  autofs-restart help [COMMAND] | --help | --version

Commands:
  restart      restart the masters of the container's autofs mounts, keeping what is
               mounted on top of them
  status       list the container's autofs mounts: where, type, master, what is on top;
               their copies in nested mount namespaces; processes blocked on them.
               Without --pid: every container with autofs mounts, a line each, and what
               needs a look (--json: one JSON object a container, a line each)
  recover      put back what an interrupted run left set aside (every run does this first)
  check        whether this host is ready: CRIU's configuration names this binary, its
               CRIU runs it for the runtimes installed, the kernel, the settings in force

Options:
  --pid PID        the container's init, as a host pid
  --unit UNIT      only this automount unit (name, name without .automount, or path);
                   repeatable
  --timeout SECS   how long a program in the container may take (default 30)
  --nested POLICY  when a mount has a private copy in a nested mount namespace, which a
                   restart leaves catatonic: restart (default: restart, name the copies),
                   skip (leave that master alone), fail (change nothing, exit 1)
  --blocked WHAT   a process blocked on a stale mount that nothing can release (no
                   pre-resume run): name (default: name it) or kill (SIGKILL it, named,
                   for its supervisor to start it again)
  --dry-run        say what would be done, change nothing
  --probe          trigger each restarted automount afterwards (mounts its file system)
  -v, --verbose    say each step
  --json           status: one JSON object a container, a line each (man page: JSON
                   OUTPUT)
  -h, --help       this text; after a command (or `help COMMAND`), that command's
  -V, --version    the version and how it was built

Environment (options win over it, it over the settings file):
  CRTOOLS_SCRIPT_ACTION   set by CRIU; pre-dump, pre-resume and post-resume do something,
                          every other stage nothing
  CRTOOLS_INIT_PID        set by CRIU: the restored init's host pid
  CRTOOLS_IMAGE_DIR       set by CRIU: with it, a stage that one CRIU process runs twice
                          (the script named in two configuration files) acts once
  AUTOFS_RESTART_UNITS    automount units to restart, separated by spaces or commas
  AUTOFS_RESTART_TIMEOUT  seconds, as --timeout
  AUTOFS_RESTART_PROBE    1 to probe, as --probe
  AUTOFS_RESTART_VERBOSE  1 to say each step, as -v
  AUTOFS_RESTART_NESTED   restart, skip or fail, as --nested
  AUTOFS_RESTART_BLOCKED  name or kill, as --blocked
  AUTOFS_RESTART_KERNEL_API  new (default: open_tree/move_mount, clone3 into the cgroup,
                          listmount/statmount; each falls back by itself) or legacy
                          (bind and MS_MOVE, fork, mountinfo)
  AUTOFS_RESTART_SYSLOG   post-resume tells the host's log (one line a run that changed
                          or failed something): 1 (default: /dev/log), 0 off, or a
                          socket's absolute path
  AUTOFS_RESTART_CONFIG   the settings file (default /etc/autofs-restart.conf; empty: none):
                          KEY=value lines of the names above, under the environment; for
                          hosts where a runtime (runc, crun, podman) starts CRIU

Exit status: 0 done or nothing to do; 1 something could not be done, each said on its
line (a unit, --nested fail, the lock, a recovery); 2 bad input; 3 (status) something
needs a look: a mount nothing serves, processes blocked on autofs, trees an interrupted run
left aside, a container that could not be read; (check) the host is not ready.
";

pub enum Command {
    /// A CRIU stage with nothing to do: nothing to say.
    Ignore,
    /// The help text to print: the whole one, or a command's.
    Help(&'static str),
    Version,
    Status {
        init: InitPid,
        api: Api,
        json: bool,
    },
    /// `check`: whether the host is ready; the settings in force, or the error every run
    /// would stop on.
    Check {
        settings: Result<Vec<Seen>>,
        json: bool,
    },
    /// `status` without `--pid`: every container.
    Overview {
        api: Api,
        json: bool,
    },
    Recover {
        init: InitPid,
        timeout: Duration,
        api: Api,
    },
    Restart(InitPid, Settings),
    /// CRIU's pre-dump stage: its container and settings, or why they could not be read (a
    /// warning there: only the nested policy may abort a dump).
    PreDump(Result<(InitPid, Settings)>),
    /// CRIU's pre-resume stage: the same (a warning there: it never fails a restore).
    PreResume(Result<(InitPid, Settings)>),
    /// Internal: the holder that pre-resume starts, with the name of its pin.
    Hold(OsString),
    /// Internal: the child that `--probe` starts inside the container.
    Probe(OsString),
    /// Internal: the child that makes a private copy in a nested namespace catatonic.
    Catatonic(OsString, OsString),
}

/// `restart --help`, `status --help`, `recover --help`: that command's part only.
const RESTART_HELP: &str = "\
autofs-restart restart: restart the masters of a container's autofs mounts, keeping what is
mounted on top of them; what CRIU's post-resume stage does

Usage:
  autofs-restart restart --pid PID [--unit UNIT]... [--nested POLICY] [--blocked WHAT]
                         [--timeout SECS] [--dry-run] [--probe] [-v]

  --pid PID        the container's init, as a host pid
  --unit UNIT      only this automount unit (name, name without .automount, or path);
                   repeatable
  --nested POLICY  restart (default), skip or fail, for a mount with a private copy in a
                   nested mount namespace
  --blocked WHAT   name (default) or kill, for a process blocked on a stale mount that
                   nothing can release
  --timeout SECS   how long a program in the container may take (default 30)
  --dry-run        say what would be done, change nothing
  --probe          trigger each restarted automount afterwards
  -v, --verbose    say each step

The environment's AUTOFS_RESTART_* settings apply too (autofs-restart --help).
";

const STATUS_HELP: &str = "\
autofs-restart status: what the autofs mounts of containers look like; changes nothing

Usage:
  autofs-restart status [--pid PID] [--json]

  without --pid    every container of the host with autofs mounts, a line each, and what
                   needs a look
  --pid PID        one container: its autofs mounts, their masters, what is on top; copies
                   in nested mount namespaces; processes blocked on them, and whether they
                   can be released
  --json           one JSON object a container, a line each (keys: the man page, JSON
                   OUTPUT); with --pid, that container's

Exit status: 0 nothing needs a look; 3 something does (a mount nothing serves, processes
blocked on autofs, trees an interrupted run left aside, a container that could not be
read); 1 the container could not be read (--pid); 2 bad input.
";

const CHECK_HELP: &str = "\
autofs-restart check: is this host ready for CRIU to run autofs-restart? Changes nothing

Usage:
  autofs-restart check [--json]

One line an item: CRIU's configuration files (default.conf, runc.conf, crun.conf) and what
they name; the installed criu and runtimes, and whether that criu runs the scripts of its
configuration files for them (3.19 and later); the kernel (autofs, the mount API,
statmount, how blocked processes are released); our privileges; the settings in force and
where each came from. A FAIL line says what to do.
  --json           one JSON object (keys: the man page, JSON OUTPUT)

Exit status: 0 ready; 3 not ready (a FAIL line); 2 bad input.
";

const RECOVER_HELP: &str = "\
autofs-restart recover: put back what an interrupted run left set aside, and nothing else
(every restart and every action-script run does this first)

Usage:
  autofs-restart recover --pid PID [--timeout SECS]
";

/// The commands for people that take the run's options (`check` parses its own).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sub {
    Restart,
    Status,
    Recover,
}

impl Sub {
    fn of(word: &std::ffi::OsStr) -> Option<Sub> {
        match word.to_str()? {
            "restart" => Some(Sub::Restart),
            "status" => Some(Sub::Status),
            "recover" => Some(Sub::Recover),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sub::Restart => "restart",
            Sub::Status => "status",
            Sub::Recover => "recover",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Sub::Restart => RESTART_HELP,
            Sub::Status => STATUS_HELP,
            Sub::Recover => RECOVER_HELP,
        }
    }
}

/// The help for the command named by `word` (before or after `--help`): its own, else the
/// whole.
fn help_of(word: Option<&std::ffi::OsStr>) -> &'static str {
    match word {
        Some(w) if w == "check" => CHECK_HELP,
        Some(w) => Sub::of(w).map_or(HELP, Sub::help),
        None => HELP,
    }
}

/// The settings file, unless `CONFIG_VAR` names another (empty: none).
pub const CONFIG_FILE: &str = "/etc/autofs-restart.conf";
pub const CONFIG_VAR: &str = "AUTOFS_RESTART_CONFIG";

/// Where settings come from: the environment, and the settings file read by `read`.
pub struct Sources<'a> {
    pub env: &'a dyn Fn(&str) -> Option<OsString>,
    pub read: &'a dyn Fn(&std::ffi::OsStr) -> std::io::Result<Vec<u8>>,
}

/// Reads the command from `args` (without argv[0]) and settings from `from`: options first,
/// then the environment, then the settings file.
pub fn parse(args: Vec<OsString>, from: &Sources<'_>) -> Result<Command> {
    if args.is_empty() {
        return from_criu(from);
    }
    if let Some(internal) = internal(&args) {
        return Ok(internal);
    }
    if args[0] == "check" {
        return check(args, from);
    }
    let mut settings = settings_from(from)?;
    let mut parser = lexopt::Parser::from_args(args);
    let mut given = Given::default();
    while let Some(arg) = parser.next()? {
        match arg {
            // `--help restart` as `restart --help`.
            Short('h') | Long("help") => {
                let help = match given.command {
                    Some(command) => command.help(),
                    None => help_of(parser.raw_args()?.next().as_deref()),
                };
                return Ok(Command::Help(help));
            }
            // `help`, `help restart`: what git and systemctl take.
            Value(v) if given.command.is_none() && v == "help" => {
                return Ok(Command::Help(help_of(parser.raw_args()?.next().as_deref())));
            }
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("pid") => given.pid = Some(criu::parse_pid("--pid", Some(&parser.value()?))?),
            Long("unit") => given.units.push(units::unit_from_arg(&parser.value()?)?),
            Long("timeout") => {
                settings.timeout = timeout("--timeout", &parser.value()?)?;
                given.timeout = true;
            }
            Long("nested") => given.nested = Some(policy("--nested", &parser.value()?)?),
            Long("blocked") => given.blocked = Some(on_blocked("--blocked", &parser.value()?)?),
            Long("dry-run") => settings.dry_run = true,
            Long("json") => given.json = true,
            Long("probe") => settings.probe = true,
            Short('v') | Long("verbose") => {
                settings.verbose = true;
                given.verbose = true;
            }
            Value(v) if given.command.is_none() && Sub::of(&v).is_some() => given.command = Sub::of(&v),
            _ => return Err(arg.unexpected().into()),
        }
    }
    command_of(given, settings)
}

/// What the command line gave besides the settings' own fields.
#[derive(Default)]
struct Given {
    command: Option<Sub>,
    pid: Option<InitPid>,
    units: Vec<String>,
    nested: Option<Policy>,
    blocked: Option<OnBlocked>,
    json: bool,
    timeout: bool,
    verbose: bool,
}

/// The command `given` asks for, each taking only its own options.
fn command_of(given: Given, mut settings: Settings) -> Result<Command> {
    let Some(command) = given.command else {
        return Err(Error::Usage("no command (see --help)".into()));
    };
    let restart_only = !given.units.is_empty()
        || settings.dry_run
        || settings.probe
        || given.nested.is_some()
        || given.blocked.is_some()
        || given.verbose;
    if command == Sub::Status {
        if restart_only || given.timeout {
            return Err(Error::Usage("status takes only --pid or --json".into()));
        }
        return match given.pid {
            None => Ok(Command::Overview { api: settings.api, json: given.json }),
            Some(init) => Ok(Command::Status { init, api: settings.api, json: given.json }),
        };
    }
    if given.json {
        return Err(Error::Usage("--json is for status only".into()));
    }
    let init = given.pid.ok_or_else(|| Error::Usage(format!("{} needs --pid PID", command.name())))?;
    if command == Sub::Recover {
        if restart_only {
            return Err(Error::Usage("recover takes only --pid and --timeout".into()));
        }
        return Ok(Command::Recover { init, timeout: settings.timeout, api: settings.api });
    }
    if !given.units.is_empty() {
        settings.units = given.units;
    }
    settings.nested = given.nested.unwrap_or(settings.nested);
    settings.blocked = given.blocked.unwrap_or(settings.blocked);
    Ok(Command::Restart(init, settings))
}

/// `check [--json]`: a bad setting is one of its findings, not a usage error.
fn check(args: Vec<OsString>, from: &Sources<'_>) -> Result<Command> {
    let mut parser = lexopt::Parser::from_args(args.into_iter().skip(1));
    let mut json = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(CHECK_HELP)),
            Long("json") => json = true,
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(Command::Check { settings: settings_seen(from), json })
}

/// The settings in force and where each came from: those set, and the settings file.
fn settings_seen(from: &Sources<'_>) -> Result<Vec<Seen>> {
    let (_, file) = settings_and_file(from)?;
    let named = (from.env)(CONFIG_VAR).map(|v| v.to_string_lossy().into_owned());
    let path = named.clone().unwrap_or_else(|| CONFIG_FILE.to_string());
    let how = if named.is_some() { "from the environment" } else { "the default" };
    let value = match &file {
        Some(_) => path.clone(),
        None if path.is_empty() => "none".to_string(),
        None => format!("{path}, absent"),
    };
    let mut seen = vec![Seen { key: CONFIG_VAR, value, from: how.into() }];
    let entries = file.map(|(_, e)| e).unwrap_or_default();
    for key in config::KEYS {
        if let Some(v) = (from.env)(key) {
            seen.push(Seen { key, value: v.to_string_lossy().into_owned(), from: "the environment".into() });
        } else if let Some(e) = entries.iter().find(|e| e.key == key) {
            let value = String::from_utf8_lossy(&e.value).into_owned();
            seen.push(Seen { key, value, from: format!("{path}:{}", e.line) });
        }
    }
    Ok(seen)
}

/// Our own children's hidden commands: the probe, the holder, the catatonic helper.
fn internal(args: &[OsString]) -> Option<Command> {
    match args {
        [arg, path] if arg == PROBE_ARG => Some(Command::Probe(path.clone())),
        [arg, pin] if arg == HOLD_ARG => Some(Command::Hold(pin.clone())),
        [arg, path, dev] if arg == CATATONIC_ARG => Some(Command::Catatonic(path.clone(), dev.clone())),
        _ => None,
    }
}

/// The command of an action-script run: CRIU runs it with no arguments and says the stage in
/// the environment. The stage comes first: other stages must not fail over a setting they do
/// not use.
fn from_criu(from: &Sources<'_>) -> Result<Command> {
    let env = from.env;
    let Some(action) = env(criu::ACTION_VAR) else {
        return Err(Error::Usage("no command (see --help)".into()));
    };
    let settings = || -> Result<(InitPid, Settings)> {
        let mut settings = settings_from(from)?;
        let init = criu::parse_pid(criu::PID_VAR, env(criu::PID_VAR).as_deref())?;
        settings.criu = criu::criu_pid(env(criu::IMAGE_DIR_VAR).as_deref());
        Ok((init, settings))
    };
    match Stage::of(&action) {
        Stage::PostResume => settings().map(|(init, s)| Command::Restart(init, s)),
        Stage::PreDump => Ok(Command::PreDump(settings())),
        Stage::PreResume => Ok(Command::PreResume(settings())),
        Stage::Other => Ok(Command::Ignore),
    }
}

/// The settings of the environment over those of the settings file. Every line of the file
/// must hold a good value, also one the environment overrides: a bad one is never ignored.
fn settings_from(from: &Sources<'_>) -> Result<Settings> {
    settings_and_file(from).map(|(settings, _)| settings)
}

/// `settings_from`, and the settings file it read (for `check`, which shows where each came
/// from): the file is read once.
fn settings_and_file(from: &Sources<'_>) -> Result<(Settings, Option<SettingsFile>)> {
    let Some((path, entries)) = settings_file(from)? else { return Ok((settings_of(from.env)?, None)) };
    let value = |e: &config::Entry| OsString::from_vec(e.value.clone());
    for e in &entries {
        settings_of(&|name| (name == e.key).then(|| value(e)))
            .map_err(|err| Error::Usage(format!("{path}:{}: {err}", e.line)))?;
    }
    let settings = settings_of(&|name| (from.env)(name).or_else(|| entries.iter().find(|e| e.key == name).map(value)))?;
    Ok((settings, Some((path, entries))))
}

/// The settings file as read: its path as shown, and its entries.
type SettingsFile = (String, Vec<config::Entry>);

/// The settings file's path and entries; None where there is none.
fn settings_file(from: &Sources<'_>) -> Result<Option<SettingsFile>> {
    let path = (from.env)(CONFIG_VAR).unwrap_or_else(|| CONFIG_FILE.into());
    if path.is_empty() {
        return Ok(None);
    }
    let shown = path.to_string_lossy().into_owned();
    let text = match (from.read)(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Usage(format!("reading {shown}: {e}"))),
    };
    let entries = config::parse(&text).map_err(|(line, why)| Error::Usage(format!("{shown}:{line}: {why}")))?;
    Ok(Some((shown, entries)))
}

fn settings_of(env: &dyn Fn(&str) -> Option<OsString>) -> Result<Settings> {
    let flag = |name: &str| -> Result<bool> {
        match env(name).as_deref().map(|v| v.as_bytes()) {
            None | Some(b"" | b"0") => Ok(false),
            Some(b"1") => Ok(true),
            Some(v) => Err(Error::Usage(format!("{name}='{}': not 0 or 1", String::from_utf8_lossy(v)))),
        }
    };
    let mut units = Vec::new();
    if let Some(list) = env("AUTOFS_RESTART_UNITS") {
        for u in list.as_bytes().split(|&b| b == b' ' || b == b',' || b == b'\t' || b == b'\n') {
            if !u.is_empty() {
                units.push(units::unit_from_arg(std::ffi::OsStr::from_bytes(u))?);
            }
        }
    }
    let api = match env("AUTOFS_RESTART_KERNEL_API").as_deref().map(|v| v.as_bytes()) {
        None | Some(b"" | b"new") => Api::New,
        Some(b"legacy") => Api::Legacy,
        Some(v) => {
            let v = String::from_utf8_lossy(v);
            return Err(Error::Usage(format!("AUTOFS_RESTART_KERNEL_API='{v}': not new or legacy")));
        }
    };
    Ok(Settings {
        units,
        dry_run: false,
        probe: flag("AUTOFS_RESTART_PROBE")?,
        verbose: flag("AUTOFS_RESTART_VERBOSE")?,
        timeout: match env("AUTOFS_RESTART_TIMEOUT") {
            Some(v) => timeout("AUTOFS_RESTART_TIMEOUT", &v)?,
            None => Duration::from_secs(30),
        },
        api,
        nested: match env("AUTOFS_RESTART_NESTED") {
            Some(v) if !v.is_empty() => policy("AUTOFS_RESTART_NESTED", &v)?,
            _ => Policy::Restart,
        },
        blocked: match env("AUTOFS_RESTART_BLOCKED") {
            Some(v) if !v.is_empty() => on_blocked("AUTOFS_RESTART_BLOCKED", &v)?,
            _ => OnBlocked::Name,
        },
        criu: None,
        syslog: match env("AUTOFS_RESTART_SYSLOG").as_deref().map(|v| v.as_bytes()) {
            None | Some(b"" | b"1") => Some(SYSLOG_SOCKET.to_string()),
            Some(b"0") => None,
            Some(path) if path.starts_with(b"/") && std::str::from_utf8(path).is_ok() => {
                Some(String::from_utf8_lossy(path).into_owned())
            }
            Some(v) => {
                let v = String::from_utf8_lossy(v);
                return Err(Error::Usage(format!("AUTOFS_RESTART_SYSLOG='{v}': not 0, 1 or a socket's absolute path")));
            }
        },
    })
}

fn policy(name: &str, v: &std::ffi::OsStr) -> Result<Policy> {
    Policy::parse(v.as_bytes())
        .ok_or_else(|| Error::Usage(format!("{name}='{}': not restart, skip or fail", v.to_string_lossy())))
}

fn on_blocked(name: &str, v: &std::ffi::OsStr) -> Result<OnBlocked> {
    OnBlocked::parse(v.as_bytes())
        .ok_or_else(|| Error::Usage(format!("{name}='{}': not name or kill", v.to_string_lossy())))
}

/// Seconds: a positive number, at most a day.
fn timeout(name: &str, v: &std::ffi::OsStr) -> Result<Duration> {
    v.to_str().and_then(millis).filter(|&ms| ms > 0 && ms <= 86_400_000).map(Duration::from_millis).ok_or_else(|| {
        Error::Usage(format!("{name}='{}': not a number of seconds above 0, at most 86400", v.to_string_lossy()))
    })
}

/// "S" or "S.F" seconds as milliseconds (F: up to three digits). No floating point: its
/// parsing and printing code would weigh more than all of this (see build/bench-notes.md).
fn millis(s: &str) -> Option<u64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || !digits(secs) || !digits(frac) || frac.len() > 3 || s.ends_with('.') {
        return None;
    }
    let ms: u64 = format!("{frac:0<3}").parse().ok()?;
    secs.parse::<u64>().ok()?.checked_mul(1000)?.checked_add(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command> {
        parse_with_file(args, env, None)
    }

    /// With `file` as the settings file's text (None: no file).
    fn parse_with_file(args: &[&str], env: &[(&str, &str)], file: Option<&str>) -> Result<Command> {
        let env: Vec<(String, OsString)> = env.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let read = |path: &std::ffi::OsStr| match file {
            Some(text) if path == CONFIG_FILE || path == "/elsewhere.conf" => Ok(text.as_bytes().to_vec()),
            _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        parse(args.iter().map(OsString::from).collect(), &Sources { env: &lookup, read: &read })
    }

    fn settings(c: Result<Command>) -> Settings {
        restart(c).1
    }

    fn restart(c: Result<Command>) -> (InitPid, Settings) {
        match c {
            Ok(Command::Restart(init, s)) => (init, s),
            _ => panic!("not a restart"),
        }
    }

    #[test]
    fn criu_stages_other_than_post_resume_are_ignored_whatever_else_is_set() {
        for action in ["post-restore", "post-dump", "network-lock", "some-future-stage", ""] {
            let c = parse_with(&[], &[("CRTOOLS_SCRIPT_ACTION", action), ("AUTOFS_RESTART_TIMEOUT", "x")]);
            assert!(matches!(c, Ok(Command::Ignore)), "{action}");
        }
    }

    #[test]
    fn pre_dump_takes_its_settings_or_says_why_not_without_failing() {
        let c = parse_with(&[], &[("CRTOOLS_SCRIPT_ACTION", "pre-dump"), ("CRTOOLS_INIT_PID", "7")]);
        assert!(matches!(c, Ok(Command::PreDump(Ok((_, ref s)))) if s.criu.is_none() && s.nested == Policy::Restart));
        let c = parse_with(&[], &[("CRTOOLS_SCRIPT_ACTION", "pre-dump"), ("CRTOOLS_INIT_PID", "junk")]);
        assert!(matches!(c, Ok(Command::PreDump(Err(ref e))) if e.to_string().starts_with("CRTOOLS_INIT_PID='junk'")));
    }

    #[test]
    fn post_resume_takes_the_pid_and_settings_from_the_environment() {
        let (init, s) = restart(parse_with(
            &[],
            &[
                ("CRTOOLS_SCRIPT_ACTION", "post-resume"),
                ("CRTOOLS_INIT_PID", "42"),
                ("AUTOFS_RESTART_UNITS", "srv-data, /proc/sys/fs/binfmt_misc"),
                ("AUTOFS_RESTART_TIMEOUT", "2.5"),
            ],
        ));
        assert_eq!(init.pid.as_raw_nonzero().get(), 42);
        assert_eq!(init.from, "CRTOOLS_INIT_PID");
        assert_eq!(s.criu, None, "no CRTOOLS_IMAGE_DIR, no CRIU process to tell runs apart by");
        assert_eq!(s.units, ["srv-data.automount", "proc-sys-fs-binfmt_misc.automount"]);
        assert_eq!(s.timeout, Duration::from_millis(2500));
        assert!(!s.dry_run && !s.probe);
        let e = parse_with(&[], &[("CRTOOLS_SCRIPT_ACTION", "post-resume")]).err().unwrap();
        assert_eq!((e.exit_code(), e.to_string().as_str()), (2, "CRTOOLS_INIT_PID is not set"));
    }

    #[test]
    fn the_command_line() {
        let s = settings(parse_with(
            &["restart", "--pid", "7", "--unit", "a", "--unit=/srv/b", "--dry-run", "--probe", "-v", "--timeout", "3"],
            &[("AUTOFS_RESTART_UNITS", "ignored"), ("AUTOFS_RESTART_NESTED", "skip")],
        ));
        assert_eq!(s.units, ["a.automount", "srv-b.automount"]);
        assert!(s.dry_run && s.probe && s.verbose);
        assert_eq!(s.timeout, Duration::from_secs(3));
        assert_eq!(s.nested, Policy::Skip);
        let s = settings(parse_with(&["restart", "--pid", "7", "--nested=fail"], &[("AUTOFS_RESTART_NESTED", "skip")]));
        assert_eq!(s.nested, Policy::Fail, "the option wins");
        assert_eq!(settings(parse_with(&["restart", "--pid", "7"], &[])).nested, Policy::Restart);
        let s = settings(parse_with(&["restart", "--pid", "7"], &[("AUTOFS_RESTART_BLOCKED", "kill")]));
        assert_eq!(s.blocked, OnBlocked::Kill);
        let s = settings(parse_with(
            &["restart", "--pid", "7", "--blocked", "name"],
            &[("AUTOFS_RESTART_BLOCKED", "kill")],
        ));
        assert_eq!(s.blocked, OnBlocked::Name, "the option wins");
        assert_eq!(settings(parse_with(&["restart", "--pid", "7"], &[])).blocked, OnBlocked::Name);
        assert!(matches!(parse_with(&["status", "--pid", "7"], &[]), Ok(Command::Status { json: false, .. })));
        assert!(matches!(parse_with(&["status", "--pid", "7", "--json"], &[]), Ok(Command::Status { json: true, .. })));
        assert!(matches!(parse_with(&["status"], &[]), Ok(Command::Overview { json: false, .. })));
        assert!(matches!(parse_with(&["status", "--json"], &[]), Ok(Command::Overview { json: true, .. })));
        let c = parse_with(&["recover", "--pid", "7", "--timeout", "2"], &[]);
        assert!(matches!(c, Ok(Command::Recover { timeout, .. }) if timeout == Duration::from_secs(2)));
        assert!(matches!(parse_with(&["--help"], &[]), Ok(Command::Help(HELP))));
        assert!(matches!(parse_with(&["restart", "--help"], &[]), Ok(Command::Help(RESTART_HELP))));
        assert!(matches!(parse_with(&["status", "-h"], &[]), Ok(Command::Help(STATUS_HELP))));
        assert!(matches!(parse_with(&["recover", "--help"], &[]), Ok(Command::Help(RECOVER_HELP))));
        assert!(matches!(parse_with(&["--help", "restart"], &[]), Ok(Command::Help(RESTART_HELP))));
        assert!(matches!(parse_with(&["-h", "bogus"], &[]), Ok(Command::Help(HELP))));
        assert!(matches!(parse_with(&["help"], &[]), Ok(Command::Help(HELP))));
        assert!(matches!(parse_with(&["help", "status"], &[]), Ok(Command::Help(STATUS_HELP))));
        assert!(matches!(parse_with(&["help", "recover"], &[]), Ok(Command::Help(RECOVER_HELP))));
        assert!(matches!(parse_with(&["check", "--help"], &[]), Ok(Command::Help(CHECK_HELP))));
        assert!(matches!(parse_with(&["check", "--json"], &[]), Ok(Command::Check { json: true, settings: Ok(_) })));
        let c = parse_with(&["check"], &[("AUTOFS_RESTART_PROBE", "2")]);
        assert!(
            matches!(c, Ok(Command::Check { json: false, settings: Err(ref e) }) if e.to_string() == "AUTOFS_RESTART_PROBE='2': not 0 or 1"),
            "a bad setting is a finding of check, not its failure"
        );
        let e = parse_with(&["status"], &[("AUTOFS_RESTART_KERNEL_API", "old")]).err().unwrap();
        assert_eq!(e.to_string(), "AUTOFS_RESTART_KERNEL_API='old': not new or legacy");
        assert!(matches!(parse_with(&["-V"], &[]), Ok(Command::Version)));
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for (args, msg) in [
            (&["restart"][..], "restart needs --pid PID"),
            (&["frobnicate"], "unexpected argument \"frobnicate\""),
            (&["restart", "--pid"], "missing argument for option '--pid'"),
            (&["restart", "--pid", "x"], "--pid='x': is not a plain positive decimal"),
            (&["restart", "--pid", "1", "--bogus"], "invalid option '--bogus'"),
            (
                &["restart", "--pid", "1", "--timeout", "0"],
                "--timeout='0': not a number of seconds above 0, at most 86400",
            ),
            (
                &["restart", "--pid", "1", "--timeout", "-1"],
                "--timeout='-1': not a number of seconds above 0, at most 86400",
            ),
            (
                &["restart", "--pid", "1", "--timeout", "1."],
                "--timeout='1.': not a number of seconds above 0, at most 86400",
            ),
            (
                &["restart", "--pid", "1", "--timeout", ".5"],
                "--timeout='.5': not a number of seconds above 0, at most 86400",
            ),
            (
                &["restart", "--pid", "1", "--timeout", "0.0001"],
                "--timeout='0.0001': not a number of seconds above 0, at most 86400",
            ),
            (
                &["restart", "--pid", "1", "--timeout", "86400.001"],
                "--timeout='86400.001': not a number of seconds above 0, at most 86400",
            ),
            (
                &["restart", "--pid", "1", "--timeout", "1e3"],
                "--timeout='1e3': not a number of seconds above 0, at most 86400",
            ),
            (&["restart", "--pid", "1", "--unit", "x.mount"], "'x.mount' is not an automount unit"),
            (&["status", "--pid", "1", "--dry-run"], "status takes only --pid or --json"),
            (&["status", "--pid", "1", "--nested", "skip"], "status takes only --pid or --json"),
            (&["status", "--pid", "1", "--timeout", "3"], "status takes only --pid or --json"),
            (&["recover", "--pid", "1", "--dry-run"], "recover takes only --pid and --timeout"),
            (&["recover", "--pid", "1", "-v"], "recover takes only --pid and --timeout"),
            (&["status", "--pid", "1", "--verbose"], "status takes only --pid or --json"),
            (&["status", "-v"], "status takes only --pid or --json"),
            (&["recover"], "recover needs --pid PID"),
            (&["restart", "--pid", "1", "--nested", "ask"], "--nested='ask': not restart, skip or fail"),
            (&["restart", "--pid", "1", "--blocked", "stop"], "--blocked='stop': not name or kill"),
            (&["status", "--pid", "1", "--blocked", "kill"], "status takes only --pid or --json"),
            (&["restart", "--pid", "1", "--json"], "--json is for status only"),
            (&["recover", "--pid", "1", "--json"], "--json is for status only"),
            (&["restart", "status", "--pid", "1"], "unexpected argument \"status\""),
            (&["check", "--pid", "1"], "invalid option '--pid'"),
            (&["check", "now"], "unexpected argument \"now\""),
        ] {
            let e = parse_with(args, &[]).err().unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert_eq!(e.to_string(), msg, "{args:?}");
        }
        let e = parse_with(&["status", "--pid", "1"], &[("AUTOFS_RESTART_PROBE", "yes")]).err().unwrap();
        assert_eq!(e.to_string(), "AUTOFS_RESTART_PROBE='yes': not 0 or 1");
        let e = parse_with(&[], &[("CRTOOLS_SCRIPT_ACTION", "post-resume"), ("AUTOFS_RESTART_NESTED", "SKIP")]);
        assert_eq!(e.err().unwrap().to_string(), "AUTOFS_RESTART_NESTED='SKIP': not restart, skip or fail");
        let e = parse_with(&[], &[]).err().unwrap();
        assert_eq!(e.to_string(), "no command (see --help)");
    }

    #[test]
    fn the_settings_file_under_the_environment_and_the_options() {
        let file = "# set by the operator\nAUTOFS_RESTART_NESTED=fail\nAUTOFS_RESTART_TIMEOUT=\"5\"\n";
        let criu = [("CRTOOLS_SCRIPT_ACTION", "post-resume"), ("CRTOOLS_INIT_PID", "42")];
        let s = settings(parse_with_file(&[], &criu, Some(file)));
        assert_eq!((s.nested, s.timeout), (Policy::Fail, Duration::from_secs(5)), "as CRIU runs it, under a runtime");
        let env = [criu[0], criu[1], ("AUTOFS_RESTART_NESTED", "skip")];
        assert_eq!(settings(parse_with_file(&[], &env, Some(file))).nested, Policy::Skip, "the environment wins");
        let s = settings(parse_with_file(&["restart", "--pid", "7", "--nested", "restart"], &env, Some(file)));
        assert_eq!((s.nested, s.timeout), (Policy::Restart, Duration::from_secs(5)), "the option wins");
        let elsewhere = [criu[0], criu[1], (CONFIG_VAR, "/elsewhere.conf")];
        assert_eq!(settings(parse_with_file(&[], &elsewhere, Some(file))).nested, Policy::Fail);
        let none = [criu[0], criu[1], (CONFIG_VAR, "")];
        assert_eq!(settings(parse_with_file(&[], &none, Some(file))).nested, Policy::Restart, "no file at all");
        assert_eq!(settings(parse_with_file(&[], &criu, None)).nested, Policy::Restart, "no file there");
        // Other stages read no setting, and so no file.
        let other = [("CRTOOLS_SCRIPT_ACTION", "post-dump"), ("CRTOOLS_INIT_PID", "42")];
        assert!(matches!(parse_with_file(&[], &other, Some("junk")), Ok(Command::Ignore)));
    }

    #[test]
    fn a_bad_line_of_the_settings_file_is_named_even_where_overridden() {
        let criu =
            [("CRTOOLS_SCRIPT_ACTION", "post-resume"), ("CRTOOLS_INIT_PID", "42"), ("AUTOFS_RESTART_TIMEOUT", "3")];
        for (file, said) in [
            (
                "AUTOFS_RESTART_TIMEOUT=x",
                "/etc/autofs-restart.conf:1: AUTOFS_RESTART_TIMEOUT='x': not a number of seconds above 0, at most 86400",
            ),
            (
                "\nAUTOFS_RESTART_NESTED=ask",
                "/etc/autofs-restart.conf:2: AUTOFS_RESTART_NESTED='ask': not restart, skip or fail",
            ),
            (
                "TIMEOUT=3",
                "/etc/autofs-restart.conf:1: TIMEOUT is not a setting (one of AUTOFS_RESTART_UNITS, AUTOFS_RESTART_TIMEOUT, AUTOFS_RESTART_PROBE, AUTOFS_RESTART_VERBOSE, AUTOFS_RESTART_NESTED, AUTOFS_RESTART_BLOCKED, AUTOFS_RESTART_KERNEL_API, AUTOFS_RESTART_SYSLOG)",
            ),
        ] {
            let e = parse_with_file(&[], &criu, Some(file)).err().unwrap_or_else(|| panic!("{file} parsed"));
            assert_eq!((e.exit_code(), e.to_string().as_str()), (2, said));
            let e = parse_with_file(&["status"], &[], Some(file)).err().unwrap();
            assert_eq!(e.to_string(), said, "status");
        }
        let c = parse_with_file(&[], &[("CRTOOLS_SCRIPT_ACTION", "pre-dump"), ("CRTOOLS_INIT_PID", "7")], Some("x"));
        assert!(
            matches!(c, Ok(Command::PreDump(Err(ref e))) if e.to_string().starts_with("/etc/autofs-restart.conf:1: "))
        );
    }

    #[test]
    fn the_syslog_setting() {
        let criu = |v: &'static str| {
            let env =
                [("CRTOOLS_SCRIPT_ACTION", "post-resume"), ("CRTOOLS_INIT_PID", "42"), ("AUTOFS_RESTART_SYSLOG", v)];
            parse_with(&[], &env)
        };
        assert_eq!(settings(parse_with(&["restart", "--pid", "7"], &[])).syslog.as_deref(), Some("/dev/log"));
        assert_eq!(settings(criu("1")).syslog.as_deref(), Some("/dev/log"));
        assert_eq!(settings(criu("0")).syslog, None);
        assert_eq!(settings(criu("/run/other.sock")).syslog.as_deref(), Some("/run/other.sock"));
        let e = criu("yes").err().unwrap();
        assert_eq!(e.to_string(), "AUTOFS_RESTART_SYSLOG='yes': not 0, 1 or a socket's absolute path");
    }

    #[test]
    fn seconds_parse_without_floating_point() {
        assert_eq!(millis("30"), Some(30_000));
        assert_eq!(millis("2.5"), Some(2500));
        assert_eq!(millis("0.05"), Some(50));
        assert_eq!(millis("86400.000"), Some(86_400_000));
        assert_eq!(millis("99999999999999999999"), None);
    }
}
