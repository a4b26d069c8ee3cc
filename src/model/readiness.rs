//! `autofs-restart check`, the pure part: what CRIU's configuration files name, which CRIU
//! version does what, and the verdict lines. Bytes and values in, lines out.

/// CRIU's configuration files, and who reads each (CRIU reads `default.conf` in every mode,
/// the runtimes pass their own besides).
pub const CRIU_CONFS: [(&str, &str); 3] = [
    ("/etc/criu/default.conf", "criu, and every runtime through it"),
    ("/etc/criu/runc.conf", "runc, and podman with runc"),
    ("/etc/criu/crun.conf", "crun, and podman with crun"),
];

/// The first CRIU that runs the scripts of its configuration files when a runtime drives it
/// over RPC (its commit "action-scripts: allow shell scripts in rpc mode").
pub const RPC_SCRIPTS: (u32, u32) = (3, 19);
/// The first CRIU whose libcriu lets crun pass `crun.conf`.
pub const CRUN_CONF: (u32, u32) = (4, 2);

/// The paths a CRIU configuration file names as `action-script` (one option a line, without
/// its dashes, its argument after a space or `=`, maybe quoted; `#` comments).
pub fn action_scripts(conf: &[u8]) -> Vec<Vec<u8>> {
    conf.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.trim_ascii();
            let rest = line.strip_prefix(b"action-script")?;
            let value = match rest.first()? {
                b' ' | b'\t' | b'=' => rest[1..].trim_ascii(),
                _ => return None,
            };
            let value = match value {
                [b'"', inner @ .., b'"'] | [b'\'', inner @ .., b'\''] => inner,
                v => v,
            };
            (!value.is_empty()).then(|| value.to_vec())
        })
        .collect()
}

/// CRIU's version from `criu --version` ("Version: 3.17.1").
pub fn criu_version(said: &[u8]) -> Option<(u32, u32, u32)> {
    let text = std::str::from_utf8(said).ok()?;
    let v = text.lines().find_map(|l| l.trim().strip_prefix("Version:"))?.trim();
    let mut parts = v.split(['.', '-', '+']).map(|p| p.parse::<u32>());
    let (major, minor) = (parts.next()?.ok()?, parts.next()?.ok()?);
    Some((major, minor, parts.next().and_then(Result::ok).unwrap_or(0)))
}

pub fn at_least(version: (u32, u32, u32), want: (u32, u32)) -> bool {
    (version.0, version.1) >= want
}

/// One line of the check: what was looked at, what was found, and what to do if it fails.
#[derive(Debug, PartialEq, Eq)]
pub struct Item {
    pub verdict: Verdict,
    pub what: String,
    pub found: String,
    /// What to do, for a failure (and a note, where there is something to do).
    pub todo: Option<String>,
}

impl Item {
    pub fn ok(what: impl Into<String>, found: impl Into<String>) -> Item {
        Item { verdict: Verdict::Ok, what: what.into(), found: found.into(), todo: None }
    }

    pub fn note(what: impl Into<String>, found: impl Into<String>) -> Item {
        Item { verdict: Verdict::Note, what: what.into(), found: found.into(), todo: None }
    }

    pub fn fail(what: impl Into<String>, found: impl Into<String>, todo: impl Into<String>) -> Item {
        Item { verdict: Verdict::Fail, what: what.into(), found: found.into(), todo: Some(todo.into()) }
    }

    /// This item, with what to do about it.
    pub fn todo(self, todo: impl Into<String>) -> Item {
        Item { todo: Some(todo.into()), ..self }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Worth knowing, not in the way.
    Note,
    Fail,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Note => "note",
            Verdict::Fail => "FAIL",
        }
    }
}

/// Whether nothing failed.
pub fn ready(items: &[Item]) -> bool {
    items.iter().all(|i| i.verdict != Verdict::Fail)
}

/// The lines people read: a word, what, what was found; what to do after a colon.
pub fn text(items: &[Item]) -> String {
    let mut out = String::new();
    for i in items {
        out.push_str(&format!("{:<5} {}: {}", i.verdict.word(), i.what, i.found));
        if let Some(todo) = &i.todo {
            out.push_str(&format!("; {todo}"));
        }
        out.push('\n');
    }
    out.push_str(if ready(items) {
        "ready: CRIU runs autofs-restart at its restores\n"
    } else {
        "not ready: see the FAIL lines\n"
    });
    out
}

/// One JSON object: `schema`, `ready`, `items` (`verdict`, `what`, `found`, `todo`), with
/// `string` making a JSON string of bytes.
pub fn json(items: &[Item], string: impl Fn(&[u8]) -> String) -> String {
    let objects: Vec<String> = items
        .iter()
        .map(|i| {
            let todo = i.todo.as_deref().map_or_else(|| "null".to_string(), |t| string(t.as_bytes()));
            format!(
                "{{\"verdict\":{},\"what\":{},\"found\":{},\"todo\":{todo}}}",
                string(i.verdict.word().to_ascii_lowercase().as_bytes()),
                string(i.what.as_bytes()),
                string(i.found.as_bytes())
            )
        })
        .collect();
    format!("{{\"schema\":1,\"ready\":{},\"items\":[{}]}}\n", ready(items), objects.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_criu_configuration_names() {
        let conf = b"# ours\naction-script /usr/local/libexec/criu/scripts/autofs-restart\n\
                     tcp-established\naction-script=\"/opt/a b\"\n  action-script\t/x\naction-scripts /no\n#action-script /off\n";
        assert_eq!(action_scripts(conf), [&b"/usr/local/libexec/criu/scripts/autofs-restart"[..], b"/opt/a b", b"/x"],);
        assert!(action_scripts(b"").is_empty());
    }

    #[test]
    fn criu_versions() {
        assert_eq!(criu_version(b"Version: 3.17.1\n"), Some((3, 17, 1)));
        assert_eq!(criu_version(b"Version: 4.2\nGitID: v4.2\n"), Some((4, 2, 0)));
        assert_eq!(criu_version(b"criu: unknown option\n"), None);
        assert!(!at_least((3, 17, 1), RPC_SCRIPTS) && at_least((3, 19, 0), RPC_SCRIPTS));
        assert!(at_least((4, 2, 0), CRUN_CONF) && !at_least((4, 1, 1), CRUN_CONF));
    }

    #[test]
    fn lines_and_the_verdict() {
        let item = |verdict, todo: Option<&str>| Item {
            verdict,
            what: "criu".into(),
            found: "3.17.1".into(),
            todo: todo.map(String::from),
        };
        let items = [item(Verdict::Ok, None), item(Verdict::Fail, Some("install 3.19"))];
        assert_eq!(
            text(&items),
            "ok    criu: 3.17.1\nFAIL  criu: 3.17.1; install 3.19\nnot ready: see the FAIL lines\n"
        );
        assert!(!ready(&items) && ready(&items[..1]));
        let quote = |b: &[u8]| format!("\"{}\"", String::from_utf8_lossy(b));
        assert_eq!(
            json(&items[..1], quote),
            "{\"schema\":1,\"ready\":true,\"items\":[{\"verdict\":\"ok\",\"what\":\"criu\",\"found\":\"3.17.1\",\"todo\":null}]}\n"
        );
    }
}
