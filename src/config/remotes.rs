//! `[[remotes]]`: partners who host their own SFTP server (issue 23).
//! ordersync pulls files from their folders into one of its inboxes
//! (`[[remotes.pull]]`) and pushes a system's export files to them
//! (`[[remotes.push]]`).
//!
//! Guarantees, once parsed: a name safe in a log line, a metric label and a
//! file name, unique; a host and a user; exactly one way to log in (a key
//! file, or a password from the environment, never from the file); a
//! known_hosts file (host keys are always checked: there is no "accept
//! any"); timeouts of at least a second; remote folders that are absolute
//! paths without `..`, NUL or control characters; a pull's `into` that is
//! one of the daemon's inboxes; a push's `system` that is a configured
//! system writing files. What needs the file system or the network (the
//! key file's mode, the known_hosts file's lines, the host) is checked by
//! `check` and when connecting, not here: parsing touches nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

use super::paths::Paths;
use super::systems::{SystemConfig, Transport, valid_system_id};

/// One partner's server.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// As logs, metrics, `status` and the ledger name it.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: Auth,
    /// The server's host keys, OpenSSH's format: required.
    pub known_hosts: PathBuf,
    /// How often its folders are listed.
    pub poll: Duration,
    /// For the connection and its handshake, whole.
    pub connect_timeout: Duration,
    /// For each request on an open connection.
    pub io_timeout: Duration,
    /// How often an idle connection is checked alive.
    pub keepalive: Duration,
    pub pulls: Vec<PullConfig>,
    pub pushes: Vec<PushConfig>,
}

/// How ordersync logs in.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// A private key file (refused when group or world can read it).
    Identity(PathBuf),
    /// A password, from this environment variable.
    PasswordEnv(String),
}

/// Files to fetch from the partner's `from` into one of our inboxes.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// The remote folder (absolute).
    pub from: String,
    /// The local inbox it feeds (the shared one or a system's own).
    pub into: PathBuf,
    pub pattern: String,
    pub matcher: GlobMatcher,
    pub ready: Ready,
    /// With [`Ready::Stable`]: how long size and mtime must hold still.
    pub settle: Duration,
    pub after: After,
}

/// When a remote file is complete.
#[derive(Debug, Clone, PartialEq)]
pub enum Ready {
    /// Its size and mtime held still for `settle`.
    Stable,
    /// A file of its name plus this suffix is next to it.
    Marker(String),
}

/// What becomes of a remote file once it is safely ours.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    Delete,
    /// Moved into this remote folder (absolute).
    Move(String),
}

/// A system's export files, delivered into the partner's `to`.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub system: String,
    pub to: String,
}

pub const DEFAULT_PORT: u16 = 22;
pub const DEFAULT_POLL: Duration = Duration::from_secs(30);
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// A ready marker's suffix when `ready = "marker"` names none.
pub const DEFAULT_MARKER: &str = ".done";

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawRemote {
    name: String,
    host: String,
    port: Option<u16>,
    user: String,
    identity: Option<PathBuf>,
    password_env: Option<String>,
    known_hosts: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    poll: Option<Duration>,
    #[serde(with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    io_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    keepalive: Option<Duration>,
    pull: Vec<RawPull>,
    push: Vec<RawPush>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawPull {
    from: String,
    into: Option<PathBuf>,
    pattern: Option<String>,
    ready: Option<String>,
    marker: Option<String>,
    #[serde(with = "humantime_serde")]
    settle: Option<Duration>,
    after: Option<String>,
    archive: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawPush {
    system: String,
    to: String,
}

/// Whether `path` is a remote folder we accept: absolute, no `..`
/// component, no NUL or control character.
fn remote_folder(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} must be an absolute path on the server (\"/out\")"
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(format!("{path:?} has a control character"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!("{path:?} must not contain \"..\""));
    }
    Ok(())
}

fn duration(
    key: String,
    value: Option<Duration>,
    default: Duration,
    min: Duration,
    bad: &mut Vec<(String, String)>,
) -> Duration {
    let d = value.unwrap_or(default);
    if d < min || d > Duration::from_secs(86_400) {
        bad.push((
            key,
            format!(
                "{} must be from {} to 1 day",
                humantime::format_duration(d),
                humantime::format_duration(min)
            ),
        ));
    }
    d
}

/// Validates every `[[remotes]]`; relative local paths are resolved by
/// `resolve` (against the config file's folder).
pub(super) fn remotes_config(
    raw: Vec<RawRemote>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    paths: &Paths,
    systems: &[SystemConfig],
    bad: &mut Vec<(String, String)>,
) -> Vec<RemoteConfig> {
    let mut names = std::collections::HashSet::new();
    // A system's files are delivered by one push: a delivered file moves
    // into `sent/`, so a second push would never see it.
    let mut pushed = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("remotes[{i}].{k}");
        if !valid_system_id(&r.name) {
            bad.push((
                key("name"),
                format!("{:?} must be 1 to 64 of A-Z a-z 0-9 _ -", r.name),
            ));
        } else if !names.insert(r.name.clone()) {
            bad.push((key("name"), format!("duplicate remote name {:?}", r.name)));
        }
        if r.host.is_empty() || r.host.chars().any(|c| c.is_control() || c.is_whitespace()) {
            bad.push((
                key("host"),
                format!("{:?} must be a host name or address", r.host),
            ));
        }
        let port = r.port.unwrap_or(DEFAULT_PORT);
        if port == 0 {
            bad.push((key("port"), "must be from 1 to 65535".into()));
        }
        if r.user.is_empty() || r.user.chars().any(|c| c.is_control() || c.is_whitespace()) {
            bad.push((key("user"), format!("{:?} must be a user name", r.user)));
        }
        let auth = match (r.identity, r.password_env) {
            (Some(file), None) => Auth::Identity(resolve(&file)),
            (None, Some(var)) if !var.is_empty() && !var.contains('=') => Auth::PasswordEnv(var),
            (None, Some(var)) => {
                bad.push((
                    key("password_env"),
                    format!("{var:?} must be an environment variable's name"),
                ));
                Auth::PasswordEnv(var)
            }
            (Some(file), Some(_)) => {
                bad.push((
                    key("identity"),
                    "set identity (a key file) or password_env, not both".into(),
                ));
                Auth::Identity(resolve(&file))
            }
            (None, None) => {
                bad.push((
                    key("identity"),
                    "required: a private key file (or password_env, the name of an environment variable holding the password; never the password itself)".into(),
                ));
                Auth::Identity(PathBuf::new())
            }
        };
        let known_hosts = match r.known_hosts {
            Some(f) if !f.as_os_str().is_empty() => resolve(&f),
            _ => {
                bad.push((
                    key("known_hosts"),
                    "required: the server's host keys in OpenSSH's known_hosts format (host keys are always checked)".into(),
                ));
                PathBuf::new()
            }
        };
        let second = Duration::from_secs(1);
        let poll = duration(key("poll"), r.poll, DEFAULT_POLL, second, bad);
        let connect_timeout = duration(
            key("connect_timeout"),
            r.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
            second,
            bad,
        );
        let io_timeout = duration(
            key("io_timeout"),
            r.io_timeout,
            DEFAULT_IO_TIMEOUT,
            second,
            bad,
        );
        let keepalive = duration(
            key("keepalive"),
            r.keepalive,
            DEFAULT_KEEPALIVE,
            second,
            bad,
        );

        let mut pulls = Vec::with_capacity(r.pull.len());
        for (j, p) in r.pull.into_iter().enumerate() {
            let key = |k: &str| format!("remotes[{i}].pull[{j}].{k}");
            if let Err(m) = remote_folder(&p.from) {
                bad.push((key("from"), m));
            }
            let into = resolve(p.into.as_deref().unwrap_or(Path::new("inbox")));
            let inboxes = std::iter::once(&paths.inbox)
                .chain(systems.iter().filter_map(|s| s.inbox.as_ref()));
            if !inboxes.into_iter().any(|d| *d == into) {
                bad.push((
                    key("into"),
                    format!(
                        "{} is not an inbox the daemon reads ([paths] inbox or a system's inbox)",
                        into.display()
                    ),
                ));
            }
            let pattern = p.pattern.unwrap_or_else(|| "*".into());
            let matcher = match Glob::new(&pattern) {
                Ok(g) => g.compile_matcher(),
                Err(e) => {
                    bad.push((key("pattern"), e.kind().to_string()));
                    Glob::new("*").expect("a valid glob").compile_matcher()
                }
            };
            let ready = match p.ready.as_deref().unwrap_or("stable") {
                "stable" => {
                    if p.marker.is_some() {
                        bad.push((key("marker"), "only with ready = \"marker\"".into()));
                    }
                    Ready::Stable
                }
                "marker" => {
                    let m = p.marker.unwrap_or_else(|| DEFAULT_MARKER.into());
                    if m.is_empty() || m.contains('/') || m.chars().any(char::is_control) {
                        bad.push((
                            key("marker"),
                            format!("{m:?} must be a file name suffix such as \".done\""),
                        ));
                    }
                    Ready::Marker(m)
                }
                other => {
                    bad.push((
                        key("ready"),
                        format!("{other:?}: expected \"stable\" or \"marker\""),
                    ));
                    Ready::Stable
                }
            };
            let settle = duration(key("settle"), p.settle, DEFAULT_SETTLE, Duration::ZERO, bad);
            let after = match (p.after.as_deref().unwrap_or("delete"), p.archive) {
                ("delete", None) => After::Delete,
                ("delete", Some(_)) => {
                    bad.push((key("archive"), "only with after = \"move\"".into()));
                    After::Delete
                }
                ("move", Some(dir)) => {
                    if let Err(m) = remote_folder(&dir) {
                        bad.push((key("archive"), m));
                    } else if dir.trim_end_matches('/') == p.from.trim_end_matches('/') {
                        bad.push((key("archive"), format!("{dir:?} is the folder pulled from")));
                    }
                    After::Move(dir)
                }
                ("move", None) => {
                    bad.push((key("archive"), "required with after = \"move\": the remote folder to move pulled files into".into()));
                    After::Delete
                }
                (other, _) => {
                    bad.push((
                        key("after"),
                        format!("{other:?}: expected \"delete\" or \"move\""),
                    ));
                    After::Delete
                }
            };
            pulls.push(PullConfig {
                from: p.from,
                into,
                pattern,
                matcher,
                ready,
                settle,
                after,
            });
        }
        let mut pushes = Vec::with_capacity(r.push.len());
        for (j, p) in r.push.into_iter().enumerate() {
            let key = |k: &str| format!("remotes[{i}].push[{j}].{k}");
            match systems.iter().find(|s| s.id == p.system) {
                None => bad.push((key("system"), format!("unknown system {:?}", p.system))),
                Some(s) if s.transport == Transport::Http => bad.push((
                    key("system"),
                    format!(
                        "{:?} has transport = \"http\": it writes no export files",
                        p.system
                    ),
                )),
                Some(_) => {
                    if !pushed.insert(p.system.clone()) {
                        bad.push((
                            key("system"),
                            format!(
                                "{:?} is pushed by another [[remotes.push]] already: a system's files go to one place",
                                p.system
                            ),
                        ));
                    }
                }
            }
            if let Err(m) = remote_folder(&p.to) {
                bad.push((key("to"), m));
            }
            pushes.push(PushConfig {
                system: p.system,
                to: p.to,
            });
        }
        if pulls.is_empty() && pushes.is_empty() {
            bad.push((
                key("pull"),
                "a remote needs at least one [[remotes.pull]] or [[remotes.push]]".into(),
            ));
        }
        out.push(RemoteConfig {
            name: r.name,
            host: r.host,
            port,
            user: r.user,
            auth,
            known_hosts,
            poll,
            connect_timeout,
            io_timeout,
            keepalive,
            pulls,
            pushes,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError};

    const BASE: &str = r#"
[[systems]]
id = "erp"
[[systems]]
id = "api"
transport = "http"
"#;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("{BASE}{extra}"),
            Path::new("/etc/ordersync/config.toml"),
        )
    }

    fn problems(extra: &str) -> String {
        parse(extra).expect_err("a config error").to_string()
    }

    #[test]
    fn the_issues_example_parses_with_its_defaults() {
        let c = parse(
            r#"
[[remotes]]
name = "acme"
host = "sftp.acme.example"
port = 22
user = "ordersync"
identity = "/etc/ordersync/acme_ed25519"
known_hosts = "known_hosts"
poll = "30s"

[[remotes.pull]]
from = "/out"
into = "inbox"
pattern = "*.json"
ready = "stable"
settle = "10s"
after = "delete"

[[remotes.pull]]
from = "/acks"
ready = "marker"
after = "move"
archive = "/acks/done"

[[remotes.push]]
system = "erp"
to = "/in"
"#,
        )
        .unwrap();
        let r = &c.remotes[0];
        assert_eq!(
            (r.name.as_str(), r.host.as_str(), r.port),
            ("acme", "sftp.acme.example", 22)
        );
        assert_eq!(r.auth, Auth::Identity("/etc/ordersync/acme_ed25519".into()));
        assert_eq!(r.known_hosts, Path::new("/etc/ordersync/known_hosts"));
        assert_eq!(r.poll, DEFAULT_POLL);
        assert_eq!(r.io_timeout, DEFAULT_IO_TIMEOUT);
        let p = &r.pulls[0];
        assert_eq!(p.into, Path::new("/etc/ordersync/inbox"));
        assert!(p.matcher.is_match("o1.json") && !p.matcher.is_match("o1.csv"));
        assert_eq!(
            (p.ready.clone(), p.settle, p.after.clone()),
            (Ready::Stable, DEFAULT_SETTLE, After::Delete)
        );
        let q = &r.pulls[1];
        assert_eq!(q.ready, Ready::Marker(".done".into()));
        assert_eq!(q.after, After::Move("/acks/done".into()));
        assert!(q.matcher.is_match("anything"));
        assert_eq!(
            (r.pushes[0].system.as_str(), r.pushes[0].to.as_str()),
            ("erp", "/in")
        );
    }

    #[test]
    fn every_problem_names_its_key() {
        let e = problems(
            r#"
[[remotes]]
name = "a b"
host = ""
user = "x y"
poll = "0s"
[[remotes.pull]]
from = "out/../etc"
into = "/tmp/elsewhere"
pattern = "[a"
ready = "soon"
after = "move"
[[remotes.push]]
system = "api"
to = "in"
[[remotes.push]]
system = "nope"
to = "/in/../.."
[[remotes.push]]
system = "erp"
to = "/a"
[[remotes.push]]
system = "erp"
to = "/b"
"#,
        );
        for want in [
            "remotes[0].name: ",
            "remotes[0].host: ",
            "remotes[0].user: ",
            "remotes[0].identity: required",
            "remotes[0].known_hosts: required",
            "remotes[0].poll: ",
            "remotes[0].pull[0].from: ",
            "remotes[0].pull[0].into: /tmp/elsewhere is not an inbox",
            "remotes[0].pull[0].pattern: ",
            "remotes[0].pull[0].ready: ",
            "remotes[0].pull[0].archive: required",
            "remotes[0].push[0].system: \"api\" has transport = \"http\"",
            "remotes[0].push[0].to: ",
            "remotes[0].push[1].system: unknown system \"nope\"",
            "remotes[0].push[1].to: ",
            "remotes[0].push[3].system: \"erp\" is pushed by another",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn a_password_comes_only_from_the_environment() {
        let remote = |auth: &str| {
            format!(
                "[[remotes]]\nname = \"a\"\nhost = \"h\"\nuser = \"u\"\nknown_hosts = \"/k\"\n{auth}\n[[remotes.push]]\nsystem = \"erp\"\nto = \"/in\"\n"
            )
        };
        let c = parse(&remote("password_env = \"ACME_PASSWORD\"")).unwrap();
        assert_eq!(c.remotes[0].auth, Auth::PasswordEnv("ACME_PASSWORD".into()));
        // A `password` key is unknown: it is never read from the file.
        let e = problems(&remote("password = \"hunter2\""));
        assert!(e.contains("remotes[0].password: unknown key"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = problems(&remote("identity = \"/k\"\npassword_env = \"P\""));
        assert!(e.contains("not both"), "{e}");
        let e = problems(&remote("password_env = \"A=B\""));
        assert!(e.contains("remotes[0].password_env"), "{e}");
    }

    #[test]
    fn names_are_unique_and_a_remote_does_something() {
        let one = "[[remotes]]\nname = \"a\"\nhost = \"h\"\nuser = \"u\"\nidentity = \"/i\"\nknown_hosts = \"/k\"\n";
        let e = problems(&format!("{one}{one}"));
        assert!(
            e.contains("remotes[1].name: duplicate remote name \"a\""),
            "{e}"
        );
        assert!(
            e.contains("at least one [[remotes.pull]] or [[remotes.push]]"),
            "{e}"
        );
    }
}
