//! The configuration file (SPEC §2): parsed, defaulted and validated once, at
//! start-up, into a [`Config`] the rest of the program only reads.
//!
//! Every problem is reported naming the key (`systems[1].batch_size: …`), and a
//! config error stops the program before it touches any file.
//!
//! Each section of the file has a file of its own here, which reads it and
//! says what it guarantees: `paths`, `inbox` (with the byte sizes), `store`,
//! `systems`, `http`, `cluster`; `keys` names unknown keys and suggests the
//! key meant. This file holds the whole [`Config`], its errors, where the
//! file is looked for, and the reading (`Config::parse`), which checks
//! every section and gathers all the problems into one error.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::filter::FilterGroup;

mod cluster;
mod http;
mod inbox;
mod keys;
mod paths;
mod remotes;
mod store;
mod systems;

pub use cluster::{ClusterConfig, DEFAULT_LEASE, host_name};
pub use http::{HttpConfig, TokenConfig};
pub use inbox::{DEFAULT_IGNORE, Encoding, InboxConfig, parse_size};
pub use paths::Paths;
pub use remotes::{After, Auth, PullConfig, PushConfig, Ready, RemoteConfig};
pub use store::{
    Backend, DEFAULT_POOL_SIZE, DEFAULT_STATEMENT_TIMEOUT, MAX_POOL_SIZE, MAX_STATEMENT_TIMEOUT,
    PostgresConfig, StoreConfig,
};
pub use systems::{Format, SystemConfig, Transport, valid_system_id};

use cluster::{RawCluster, cluster_config};
use http::{RawHttp, http_config};
use inbox::RawInbox;
use keys::{did_you_mean, key_path};
use paths::{RawPaths, check_distinct_paths, check_system_inboxes};
use remotes::{RawRemote, remotes_config};
use store::{RawStore, store_config};
use systems::RawSystem;

/// A configuration that cannot be used. Always fatal (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that parses but is not allowed.
    #[error("config {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// No config named (`--config`, `ORDERSYNC_CONFIG`) and none found in
    /// any of the places looked at.
    #[error(
        "no config file: looked for {}; name one with --config PATH or ORDERSYNC_CONFIG=PATH (`ordersync init DIR` writes a commented one)",
        looked.join(" and ")
    )]
    NotFound {
        /// The places looked at, in order, as shown (a relative one with
        /// the folder it was looked for in).
        looked: Vec<String>,
    },
    /// Several values that parse but are not allowed: all of them, so one
    /// run shows every mistake.
    #[error("config {path}: {} problems:{}", problems.len(), list(problems))]
    Problems {
        path: PathBuf,
        /// (key, message), in the file's order.
        problems: Vec<(String, String)>,
    },
}

impl ConfigError {
    /// The error for these problems (key, message): [`ConfigError::Invalid`]
    /// for one, [`ConfigError::Problems`] for several; `None` for none.
    pub fn of(path: &Path, mut problems: Vec<(String, String)>) -> Option<ConfigError> {
        let path = path.to_path_buf();
        match problems.len() {
            0 => None,
            1 => {
                let (key, message) = problems.remove(0);
                Some(ConfigError::Invalid { path, key, message })
            }
            _ => Some(ConfigError::Problems { path, problems }),
        }
    }
}

fn list(problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(k, m)| format!("\n  {k}: {m}"))
        .collect()
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    pub paths: Paths,
    pub inbox: InboxConfig,
    pub inventory: InventoryConfig,
    pub store: StoreConfig,
    pub systems: Vec<SystemConfig>,
    pub http: HttpConfig,
    /// `[cluster]`: this node of an active/standby pair, `None` when the
    /// section is absent (one daemon alone on its store).
    pub cluster: Option<ClusterConfig>,
    /// `[[remotes]]`: partners' own SFTP servers.
    pub remotes: Vec<RemoteConfig>,
}

impl Config {
    /// The store as messages name it: `sled in ./state`, or `PostgreSQL
    /// at postgresql://user@host:port/db` (never the password).
    pub fn store_shown(&self) -> String {
        match &self.store.backend {
            Backend::Sled => format!("sled in {}", self.paths.state.display()),
            Backend::Postgres(pg) => format!("PostgreSQL at {}", pg.shown()),
        }
    }

    /// The system with this id, if configured.
    pub fn system(&self, id: &str) -> Option<&SystemConfig> {
        self.systems.iter().find(|s| s.id == id)
    }

    /// Every inbox: the shared one (`None`), then each system's own, with
    /// the system's id.
    pub fn inboxes(&self) -> Vec<(Option<&str>, &Path)> {
        std::iter::once((None, self.paths.inbox.as_path()))
            .chain(
                self.systems
                    .iter()
                    .filter_map(|s| Some((Some(s.id.as_str()), s.inbox.as_deref()?))),
            )
            .collect()
    }
}

/// `[inventory]`.
#[derive(Debug, Clone)]
pub struct InventoryConfig {
    pub allow_negative: bool,
}

// ---- the file as written -------------------------------------------------
//
// The top table and `[inventory]`; each other section's raw struct is in
// that section's file. No `deny_unknown_fields`: unknown keys are collected
// by `serde_ignored` while reading (see `Config::parse`), so that all of
// them are reported in one run, together with every bad value, instead of
// the first alone.

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    paths: RawPaths,
    inbox: RawInbox,
    inventory: RawInventory,
    store: RawStore,
    systems: Vec<RawSystem>,
    http: RawHttp,
    cluster: Option<RawCluster>,
    remotes: Vec<RawRemote>,
}

#[derive(Deserialize)]
#[serde(default)]
struct RawInventory {
    allow_negative: bool,
}

impl Default for RawInventory {
    fn default() -> Self {
        RawInventory {
            allow_negative: true,
        }
    }
}

// ---- loading ---------------------------------------------------------------

/// Where the config is looked for when neither `--config` nor
/// `ORDERSYNC_CONFIG` names one, in this order: the current folder (a
/// checkout, a folder made by `ordersync init`), then the Debian package's.
pub const SEARCH_PATH: [&str; 2] = ["config.toml", "/etc/ordersync/config.toml"];

/// The config file to use: `given` when set (it need not exist: reading it
/// says so), else the first of `candidates` that exists (anything there,
/// even a broken symlink: it is reported rather than skipped), else
/// [`ConfigError::NotFound`] naming every place looked at.
pub fn locate(given: Option<&Path>, candidates: &[&str]) -> Result<PathBuf, ConfigError> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    if let Some(found) = candidates
        .iter()
        .map(Path::new)
        .find(|p| p.symlink_metadata().is_ok())
    {
        return Ok(found.to_path_buf());
    }
    let cwd = std::env::current_dir().ok();
    let looked = candidates
        .iter()
        .map(|c| match &cwd {
            Some(cwd) if Path::new(c).is_relative() => {
                format!("./{c} (in {})", cwd.display())
            }
            _ => (*c).to_string(),
        })
        .collect();
    Err(ConfigError::NotFound { looked })
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses config `text` as if read from `path` (relative paths resolve
    /// against `path`'s folder). `[store] url_env` is read from this
    /// process's environment.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, path, &|name| std::env::var_os(name))
    }

    /// [`Config::parse`] with `env` for the environment (the tests' own
    /// variables, without changing the process's).
    fn parse_with_env(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Config, ConfigError> {
        let syntax = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        };
        // Unknown keys are noted, not fatal, so that every mistake is
        // reported in one run; a syntax error or a wrong type still stops
        // the reading there.
        let mut unknown: Vec<String> = Vec::new();
        let de = toml::Deserializer::parse(text).map_err(syntax)?;
        let raw: RawConfig =
            serde_ignored::deserialize(de, |p| unknown.push(key_path(&p))).map_err(syntax)?;
        // Every problem is collected, so one run shows them all.
        let mut bad: Vec<(String, String)> = unknown
            .into_iter()
            .map(|k| {
                let message = match did_you_mean(&k) {
                    Some(key) => format!("unknown key; did you mean {key:?}?"),
                    None => "unknown key".to_string(),
                };
                (k, message)
            })
            .collect();
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let resolve = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let paths = Paths {
            inbox: resolve(&raw.paths.inbox),
            outbox: resolve(&raw.paths.outbox),
            archive: resolve(&raw.paths.archive),
            errors: resolve(&raw.paths.errors),
            state: resolve(&raw.paths.state),
        };
        bad.extend(check_distinct_paths(&paths));

        let mut globs = GlobSetBuilder::new();
        for (i, pat) in raw.inbox.ignore.iter().enumerate() {
            match Glob::new(pat) {
                Ok(glob) => {
                    globs.add(glob);
                }
                Err(e) => bad.push((format!("inbox.ignore[{i}]"), e.kind().to_string())),
            }
        }
        let ignore = globs.build().unwrap_or_else(|e| {
            bad.push(("inbox.ignore".into(), e.to_string()));
            GlobSet::empty()
        });
        let marker = raw.inbox.ready_marker.clone();
        if marker.contains('/') || marker.contains('\\') || marker == "." || marker == ".." {
            bad.push((
                "inbox.ready_marker".into(),
                format!("{marker:?} must be a file name suffix such as \".done\""),
            ));
        }
        if raw.inbox.max_file_size.0 == 0 {
            bad.push((
                "inbox.max_file_size".into(),
                "must be greater than 0".into(),
            ));
        }
        let store = store_config(raw.store, env, &mut bad);
        let inbox = InboxConfig {
            settle: raw.inbox.settle,
            rescan: nonzero(raw.inbox.rescan),
            poll: raw.inbox.poll,
            max_file_size: raw.inbox.max_file_size.0,
            encoding: raw.inbox.encoding,
            ignore,
            ignore_patterns: raw.inbox.ignore.clone(),
            ready_marker: (!marker.is_empty()).then_some(marker),
        };

        let mut seen = HashSet::new();
        let mut systems = Vec::with_capacity(raw.systems.len());
        for (i, s) in raw.systems.into_iter().enumerate() {
            let key = |k: &str| format!("systems[{i}].{k}");
            if !valid_system_id(&s.id) {
                bad.push((
                    key("id"),
                    format!("{:?} must be 1 to 64 of A-Z a-z 0-9 _ -", s.id),
                ));
            } else if !seen.insert(s.id.clone()) {
                bad.push((key("id"), format!("duplicate system id {:?}", s.id)));
            }
            if s.batch_size < 1 {
                bad.push((
                    key("batch_size"),
                    format!("must be at least 1, got {}", s.batch_size),
                ));
            }
            if s.auto_ack_regulate && !s.auto_ack {
                bad.push((key("auto_ack_regulate"), "needs auto_ack = true".into()));
            }
            let delim = match s.csv_delimiter.as_bytes() {
                [b] if b.is_ascii() && !matches!(b, b'"' | b'\r' | b'\n') => *b,
                _ => {
                    bad.push((
                        key("csv_delimiter"),
                        format!(
                            "{:?} must be one ASCII character (not a quote or newline)",
                            s.csv_delimiter
                        ),
                    ));
                    b','
                }
            };
            if s.transport == Transport::Http {
                let unused = [
                    ("include_not_approved", s.include_not_approved),
                    ("include_cancelled", s.include_cancelled),
                    ("include_archived", s.include_archived),
                    ("auto_ack", s.auto_ack),
                    ("filter_groups", !s.filter_groups.is_empty()),
                ];
                for (k, _) in unused.iter().filter(|(_, set)| *set) {
                    bad.push((
                        key(k),
                        "not used with transport = \"http\": the GET request's parameters decide which orders a client gets".into(),
                    ));
                }
            }
            let mut filter_groups = Vec::with_capacity(s.filter_groups.len());
            for (g, raw_group) in s.filter_groups.into_iter().enumerate() {
                match FilterGroup::compile(raw_group) {
                    Ok(group) => filter_groups.push(group),
                    Err((k, m)) => {
                        bad.push((format!("{}{k}", key(&format!("filter_groups[{g}]"))), m))
                    }
                }
            }
            systems.push(SystemConfig {
                id: s.id,
                format: s.format,
                batch_size: s.batch_size as usize,
                include_not_approved: s.include_not_approved,
                include_cancelled: s.include_cancelled,
                include_archived: s.include_archived,
                include_lines: s.include_lines,
                ready_marker: s.ready_marker,
                resend_after: nonzero(s.resend_after),
                auto_ack: s.auto_ack,
                auto_ack_regulate: s.auto_ack_regulate,
                csv_delimiter: delim,
                csv_crlf: s.csv_crlf,
                csv_bom: s.csv_bom,
                filter_groups,
                inbox: (!s.inbox.as_os_str().is_empty()).then(|| resolve(&s.inbox)),
                transport: s.transport,
            });
        }
        bad.extend(check_system_inboxes(&paths, &systems));
        let http = match http_config(raw.http, &systems) {
            Ok(http) => http,
            Err(problem) => {
                bad.push(problem);
                HttpConfig::default()
            }
        };

        let mut store = store;
        let cluster = raw.cluster.map(|c| cluster_config(c, &store, &mut bad));
        if let (Some(c), Backend::Postgres(pg)) = (&cluster, &mut store.backend) {
            pg.lease = Some(c.lease);
        }

        let remotes = remotes_config(raw.remotes, &resolve, &paths, &systems, &mut bad);

        if let Some(e) = ConfigError::of(path, bad) {
            return Err(e);
        }
        Ok(Config {
            file: path.to_path_buf(),
            paths,
            inbox,
            inventory: InventoryConfig {
                allow_negative: raw.inventory.allow_negative,
            },
            store,
            systems,
            http,
            cluster,
            remotes,
        })
    }
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::http::RawToken;
    use super::*;

    /// serde's derive hands a struct's field names to `deserialize_struct`:
    /// this deserializer only catches them, so the keys listed are the
    /// ones the raw structs accept, never a copy kept by hand.
    mod fields {
        use serde::de::{Deserialize, Deserializer, Visitor};

        #[derive(Debug)]
        pub struct Caught(Option<&'static [&'static str]>);

        impl std::fmt::Display for Caught {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
        impl std::error::Error for Caught {}
        impl serde::de::Error for Caught {
            fn custom<T: std::fmt::Display>(_: T) -> Self {
                Caught(None)
            }
        }

        struct Probe;

        impl<'de> Deserializer<'de> for Probe {
            type Error = Caught;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Caught> {
                Err(Caught(None))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Caught> {
                Err(Caught(Some(fields)))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map enum identifier ignored_any
            }
        }

        /// The keys struct `T` accepts.
        pub fn of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
            match T::deserialize(Probe) {
                Err(Caught(Some(fields))) => fields,
                _ => panic!("not a struct with named fields"),
            }
        }
    }

    /// Every key the config accepts, as `section.key` (`systems.id`,
    /// `http.tokens.name`), from the raw structs themselves. A new key in a
    /// raw struct appears here by itself; a new section (a new field of
    /// `RawConfig`) fails until it is added to `sections`.
    fn accepted_keys() -> std::collections::BTreeSet<String> {
        let sections: [(&str, &[&str]); 11] = [
            ("paths", fields::of::<RawPaths>()),
            ("inbox", fields::of::<RawInbox>()),
            ("inventory", fields::of::<RawInventory>()),
            ("store", fields::of::<RawStore>()),
            ("systems", fields::of::<RawSystem>()),
            ("http", fields::of::<RawHttp>()),
            ("http.tokens", fields::of::<RawToken>()),
            ("cluster", fields::of::<RawCluster>()),
            ("remotes", fields::of::<remotes::RawRemote>()),
            ("remotes.pull", fields::of::<remotes::RawPull>()),
            ("remotes.push", fields::of::<remotes::RawPush>()),
        ];
        for top in fields::of::<RawConfig>() {
            assert!(
                sections.iter().any(|(s, _)| s == top),
                "config section {top:?}: add its raw struct to accepted_keys"
            );
        }
        let mut keys = std::collections::BTreeSet::new();
        for (section, names) in sections {
            for name in names {
                let key = format!("{section}.{name}");
                // A table of its own (`[[http.tokens]]`) is listed as a section.
                if !sections.iter().any(|(s, _)| *s == key) {
                    keys.insert(key);
                }
            }
        }
        keys
    }

    /// The keys CONTRACT.md section 2 documents: the first cell of each
    /// table row, under its `### [section]` heading.
    fn documented_keys() -> std::collections::BTreeSet<String> {
        let contract = include_str!("../../docs/CONTRACT.md");
        let section2 = contract
            .split("\n## 2. ")
            .nth(1)
            .and_then(|s| s.split("\n## 3. ").next())
            .expect("CONTRACT.md has a section 2");
        let mut keys = std::collections::BTreeSet::new();
        let mut table = None;
        for line in section2.lines() {
            if let Some(heading) = line.strip_prefix("### ") {
                table = heading
                    .split('`')
                    .nth(1)
                    .map(|t| t.trim_matches(|c| c == '[' || c == ']').to_string());
            } else if let (Some(t), Some(row)) = (&table, line.strip_prefix("| `")) {
                let key = row.split('`').next().unwrap_or_default();
                keys.insert(format!("{t}.{key}"));
            }
        }
        keys
    }

    /// Regression (issue 15): CONTRACT.md section 2 lacked `transport` and
    /// `[http]`. Every key the config accepts is documented there, and
    /// every key documented there is accepted.
    #[test]
    fn contract_section_2_documents_exactly_the_keys_the_config_accepts() {
        let accepted = accepted_keys();
        let documented = documented_keys();
        assert!(accepted.contains("systems.transport") && accepted.contains("http.listen"));
        let undocumented: Vec<_> = accepted.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&accepted).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "accepted but not in docs/CONTRACT.md section 2: {undocumented:?}; \
             documented there but not accepted: {unknown:?}"
        );
    }

    /// Regression (issue 15): with no `--config`, the packaged CLI run from
    /// `/` read `./config.toml` only and said `cannot read config
    /// config.toml`. It falls back to the next place, and when nothing is
    /// found it names every place looked at and how to choose.
    #[test]
    fn the_config_is_searched_for_in_order_and_a_miss_names_every_place() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a.toml");
        let second = dir.path().join("b.toml");
        let (a, b) = (first.to_str().unwrap(), second.to_str().unwrap());
        let missing = locate(None, &[a, b]).unwrap_err().to_string();
        for needle in [a, b, "--config", "ORDERSYNC_CONFIG"] {
            assert!(missing.contains(needle), "{needle}: {missing}");
        }
        std::fs::write(&second, "").unwrap();
        assert_eq!(locate(None, &[a, b]).unwrap(), second);
        std::fs::write(&first, "").unwrap();
        assert_eq!(locate(None, &[a, b]).unwrap(), first);
        // Named, it is used as it is, whether it exists or not.
        let named = dir.path().join("named.toml");
        assert_eq!(locate(Some(&named), &[a, b]).unwrap(), named);
        // A relative place is shown with the folder it was looked for in.
        let relative = locate(None, &["surely-not-here/config.toml"])
            .unwrap_err()
            .to_string();
        assert!(
            relative.contains("./surely-not-here/config.toml (in /"),
            "{relative}"
        );
        assert_eq!(SEARCH_PATH, ["config.toml", "/etc/ordersync/config.toml"]);
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/srv/os/config.toml"))
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse("[[systems]]\nid = \"erp\"\n").unwrap();
        assert_eq!(c.paths.inbox, Path::new("/srv/os/inbox"));
        assert_eq!(c.inbox.settle, Duration::from_secs(1));
        assert_eq!(c.inbox.rescan, Some(Duration::from_secs(30)));
        assert_eq!(c.inbox.max_file_size, 64 << 20);
        assert!(c.inbox.ignore.is_match("x.filepart"));
        assert!(c.inbox.ignore.is_match(".hidden.json"));
        assert!(!c.inbox.ignore.is_match("order.json"));
        let s = &c.systems[0];
        assert_eq!(
            (s.format, s.batch_size, s.include_lines),
            (Format::Json, 100, true)
        );
        assert!(s.resend_after.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[inbox]\nsetle = \"1s\"\n").unwrap_err().to_string();
        assert!(e.contains("setle"), "{e}");
        let e = parse("[[systems]]\nid = \"a/b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("systems[0].id"), "{e}");
        let e = parse("[[systems]]\nid = \"a\"\n[[systems]]\nid = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("systems[1].id") && e.contains("duplicate"),
            "{e}"
        );
        let e = parse("[[systems]]\nid = \"a\"\nbatch_size = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("systems[0].batch_size"), "{e}");
        let e = parse("[[systems]]\nid = \"a\"\ncsv_delimiter = \";;\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("csv_delimiter"), "{e}");
        let e = parse("[inbox]\nmax_file_size = \"12 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_file_size"), "{e}");
        let e = parse("[paths]\narchive = \"inbox\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("paths.archive"), "{e}");
    }

    /// Several mistakes are reported in one run, each naming its key (it
    /// used to stop at the first).
    #[test]
    fn every_mistake_is_reported_at_once() {
        let e = parse(concat!(
            "[inbox]\nready_marker = \"a/b\"\n",
            "[[systems]]\nid = \"a b\"\nbatch_size = 0\n",
            "[[systems]]\nid = \"erp\"\ncsv_delimiter = \";;\"\nauto_ack_regulate = true\n",
            "[[systems.filter_groups]]\nfilters = [{ key = \"nope\", operator = \"eq\", value = \"x\" }]\n",
        ))
        .unwrap_err()
        .to_string();
        for key in [
            "6 problems",
            "\n  inbox.ready_marker: ",
            "\n  systems[0].id: ",
            "\n  systems[0].batch_size: ",
            "\n  systems[1].auto_ack_regulate: ",
            "\n  systems[1].csv_delimiter: ",
            "\n  systems[1].filter_groups[0]",
        ] {
            assert!(e.contains(key), "{key:?} missing in {e}");
        }
    }

    /// `Config::parse` reads the process's own environment (no test here
    /// changes it: `PATH` is set and holds no URL, the other is unset).
    #[test]
    fn url_env_is_read_from_the_process_environment() {
        let e = parse("[store]\nbackend = \"postgres\"\nurl_env = \"PATH\"\n")
            .unwrap_err()
            .to_string();
        let path = std::env::var("PATH").unwrap();
        assert!(
            e.contains(
                "store.url_env: the environment variable PATH does not hold a PostgreSQL URL"
            ),
            "{e}"
        );
        assert!(!e.contains(&path), "{e}");
        let e = parse(
            "[store]\nbackend = \"postgres\"\nurl_env = \"ORDERSYNC_CONFIG_TEST_SURELY_UNSET\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("store.url_env: the environment variable ORDERSYNC_CONFIG_TEST_SURELY_UNSET is not set"),
            "{e}"
        );
    }
}
