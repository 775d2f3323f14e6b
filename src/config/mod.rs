//! The configuration file (SPEC §2): parsed, defaulted and validated once, at
//! start-up, into a [`Config`] the rest of the program only reads.
//!
//! Every problem is reported naming the key (`systems[1].batch_size: …`), and a
//! config error stops the program before it touches any file.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::filter::{FilterGroup, RawFilterGroup};

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

/// How inbox CSV files are decoded: the CSV reader's (`[inbox] encoding`).
pub use crate::csvin::Encoding;

/// Export file format of one system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Ndjson,
    Csv,
}

impl Format {
    /// File name extension of export files in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }
}

/// How a system receives its orders (`transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Export files in `outbox/<system>/`, acknowledgement CSVs back.
    Files,
    /// No files: the system fetches its orders with `GET
    /// /v10/orders/export` and marks them with `POST
    /// /v10/orders/mark-as-exported` (SPEC §11).
    Http,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Files => "files",
            Transport::Http => "http",
        })
    }
}

/// `[http]`: the HTTP API, off unless `listen` is set.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: Option<std::net::SocketAddr>,
    pub tokens: Vec<TokenConfig>,
    /// A request's head must arrive within this from its first byte.
    pub header_timeout: Duration,
    /// A request's body must arrive within this from the end of its head.
    pub body_timeout: Duration,
    /// A connection with no request in flight and no byte of a next one is
    /// closed after this.
    pub idle_timeout: Duration,
    /// At most this many connections at once (fewer when the descriptor
    /// limit is low: see `crate::http`); more wait in the kernel's backlog.
    /// `None` (not set): derived from the descriptor limit at start
    /// (`crate::http::serve::connection_cap`).
    pub max_connections: Option<usize>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let raw = RawHttp::default();
        HttpConfig {
            listen: None,
            tokens: Vec::new(),
            header_timeout: raw.header_timeout,
            body_timeout: raw.body_timeout,
            idle_timeout: raw.idle_timeout,
            max_connections: raw.max_connections.map(|n| n as usize),
        }
    }
}

/// One `[[http.tokens]]` entry. Only the token's SHA-256 is kept.
#[derive(Clone)]
pub struct TokenConfig {
    pub name: String,
    pub sha256: [u8; 32],
    /// `None` for `["*"]`: every system.
    pub systems: Option<Vec<String>>,
}

impl fmt::Debug for TokenConfig {
    // The hash is no secret, but it has no place in logs either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("systems", &self.systems)
            .finish_non_exhaustive()
    }
}

/// The resolved folders; all absolute or relative to the working directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub inbox: PathBuf,
    pub outbox: PathBuf,
    pub archive: PathBuf,
    pub errors: PathBuf,
    pub state: PathBuf,
}

/// `[inbox]`: how candidate files are found and when they are ready.
#[derive(Debug, Clone)]
pub struct InboxConfig {
    pub settle: Duration,
    /// `None` when configured as "0s" (never).
    pub rescan: Option<Duration>,
    pub poll: bool,
    pub max_file_size: u64,
    pub encoding: Encoding,
    pub ignore: GlobSet,
    /// The patterns as written, for `check`.
    pub ignore_patterns: Vec<String>,
    /// `None` when empty.
    pub ready_marker: Option<String>,
}

/// `[inventory]`.
#[derive(Debug, Clone)]
pub struct InventoryConfig {
    pub allow_negative: bool,
}

/// `[store]`: where the state lives and how it is opened.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// sled's page cache, in bytes: the main part of the daemon's memory.
    /// With PostgreSQL it is unused (the key is refused there) and keeps
    /// its default.
    pub cache_capacity: u64,
    /// sled's zstd compression of what it writes, for a new store. With
    /// PostgreSQL it is unused (the key is refused there): `false`.
    pub compression: bool,
    pub backend: Backend,
}

/// Where the state lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// The embedded database in `paths.state` (the default).
    Sled,
    /// A PostgreSQL server (`backend = "postgres"`).
    Postgres(PostgresConfig),
}

/// `backend = "postgres"`: the server and how it is used. Resolved at
/// config load: `url` is the URL itself, also when it came from `url_env`.
#[derive(Clone, PartialEq)]
pub struct PostgresConfig {
    /// The URL or conninfo, password included: never print it, print `shown()`.
    pub url: String,
    /// The environment variable it came from, when `url_env` was used.
    pub url_env: Option<String>,
    /// Connections to the server, 1..=64.
    pub pool_size: u32,
    /// None = no statement timeout. At least 1ms and at most
    /// [`MAX_STATEMENT_TIMEOUT`] when set (PostgreSQL's own range).
    pub statement_timeout: Option<Duration>,
    /// `[cluster] lease` when this node is one of a pair: the store is
    /// then shared (no single writer's lock), and every write is fenced by
    /// the leader's lease (`crate::cluster`).
    pub lease: Option<Duration>,
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
}

impl PostgresConfig {
    /// The server as messages show it: `postgresql://user@host:port/db`,
    /// never the password.
    pub fn shown(&self) -> String {
        crate::pgurl::shown(&self.url)
    }
}

impl fmt::Debug for PostgresConfig {
    // The URL may hold a password: only where it points is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.shown())
            .field("url_env", &self.url_env)
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// `[store] pool_size` when not set.
pub const DEFAULT_POOL_SIZE: u32 = 4;
/// `[store] pool_size` at most.
pub const MAX_POOL_SIZE: u32 = 64;
/// `[store] statement_timeout` when not set.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// `[store] statement_timeout` at most: PostgreSQL's own limit for the
/// setting (`INT_MAX` milliseconds, about 24.8 days).
pub const MAX_STATEMENT_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);
/// `[store] cache_capacity` when not set.
const DEFAULT_CACHE_CAPACITY: u64 = 64 << 20;

/// One downstream system (`[[systems]]`).
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub id: String,
    pub format: Format,
    pub batch_size: usize,
    pub include_not_approved: bool,
    pub include_cancelled: bool,
    pub include_archived: bool,
    pub include_lines: bool,
    pub ready_marker: bool,
    /// `None` when "0s" (never).
    pub resend_after: Option<Duration>,
    pub auto_ack: bool,
    pub auto_ack_regulate: bool,
    pub csv_delimiter: u8,
    pub csv_crlf: bool,
    pub csv_bom: bool,
    pub filter_groups: Vec<FilterGroup>,
    /// The system's own drop folder, if it has one: files there are taken
    /// like the shared inbox's, but its acks may only name this system.
    pub inbox: Option<PathBuf>,
    pub transport: Transport,
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
}

/// `[cluster]`: the node's name and the leader's lease (`crate::cluster`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// This node's name, as the others show it (default: the host name).
    pub node: String,
    /// How long a leader's lease lasts unless renewed (every fifth of it).
    pub lease: Duration,
}

/// `[cluster] lease` when not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// This machine's host name: `[cluster] node` when not set, and the node a
/// daemon alone on its store names itself.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

impl SystemConfig {
    /// Whether an order (its filled-in document) is eligible for this
    /// system: its include flags, then every filter group (SPEC §7).
    pub fn eligible(&self, doc: &serde_json::Value) -> bool {
        // Every order is queued for an HTTP system; the GET request's
        // include flags and filter groups decide what a client gets (SPEC
        // §11).
        if self.transport == Transport::Http {
            return true;
        }
        let f = crate::order::Facts::of(doc);
        (self.include_not_approved || f.approved)
            && (self.include_cancelled || !f.cancelled)
            && (self.include_archived || !f.archived)
            && self.filter_groups.iter().all(|g| g.matches(doc))
    }

    /// Identifies the settings that decide which orders are eligible (include
    /// flags and filters): when it changes, stored orders are re-evaluated.
    pub fn eligibility_fingerprint(&self) -> String {
        if self.transport == Transport::Http {
            // Every order is queued for an HTTP system: the request decides.
            return "v1 http".into();
        }
        format!(
            "v1 {} {} {} {:?}",
            self.include_not_approved,
            self.include_cancelled,
            self.include_archived,
            self.filter_groups
        )
    }
}

impl Config {
    /// The system with this id, if configured.
    pub fn system(&self, id: &str) -> Option<&SystemConfig> {
        self.systems.iter().find(|s| s.id == id)
    }
}

// ---- the file as written -------------------------------------------------
//
// No `deny_unknown_fields`: unknown keys are collected by `serde_ignored`
// while reading (see `Config::parse`), so that all of them are reported in
// one run, together with every bad value, instead of the first alone.

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
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCluster {
    node: Option<String>,
    #[serde(with = "humantime_serde")]
    lease: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(default)]
struct RawHttp {
    listen: String,
    tokens: Vec<RawToken>,
    #[serde(with = "humantime_serde")]
    header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    body_timeout: Duration,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    max_connections: Option<u32>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: String::new(),
            tokens: Vec::new(),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_connections: None,
        }
    }
}

#[derive(Deserialize)]
struct RawToken {
    name: String,
    sha256: String,
    systems: Vec<String>,
}

#[derive(Deserialize)]
#[serde(default)]
struct RawPaths {
    inbox: PathBuf,
    outbox: PathBuf,
    archive: PathBuf,
    errors: PathBuf,
    state: PathBuf,
}

impl Default for RawPaths {
    fn default() -> Self {
        RawPaths {
            inbox: "inbox".into(),
            outbox: "outbox".into(),
            archive: "archive".into(),
            errors: "errors".into(),
            state: "state".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct RawInbox {
    #[serde(with = "humantime_serde")]
    settle: Duration,
    #[serde(with = "humantime_serde")]
    rescan: Duration,
    poll: bool,
    max_file_size: Size,
    encoding: Encoding,
    ignore: Vec<String>,
    ready_marker: String,
}

impl Default for RawInbox {
    fn default() -> Self {
        RawInbox {
            settle: Duration::from_secs(1),
            rescan: Duration::from_secs(30),
            poll: false,
            max_file_size: Size(64 << 20),
            encoding: Encoding::Utf8,
            ignore: DEFAULT_IGNORE.iter().map(|s| s.to_string()).collect(),
            ready_marker: String::new(),
        }
    }
}

/// The default `[inbox] ignore` patterns: hidden files and the temporary names
/// that SFTP clients, rsync and WinSCP upload to before renaming.
pub const DEFAULT_IGNORE: &[&str] = &[".*", "*.tmp", "*.part", "*.partial", "*.filepart", "~*"];

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

/// `[store]`. Every key is optional here, so that a key set for the other
/// backend is told apart from one left out (`store_config` applies the
/// defaults).
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStore {
    backend: Option<String>,
    cache_capacity: Option<Size>,
    compression: Option<bool>,
    url: Option<String>,
    url_env: Option<String>,
    pool_size: Option<i64>,
    #[serde(with = "humantime_serde")]
    statement_timeout: Option<Duration>,
}

#[derive(Deserialize)]
struct RawSystem {
    id: String,
    #[serde(default = "default_format")]
    format: Format,
    #[serde(default = "default_batch_size")]
    batch_size: i64,
    #[serde(default)]
    include_not_approved: bool,
    #[serde(default)]
    include_cancelled: bool,
    #[serde(default)]
    include_archived: bool,
    #[serde(default = "yes")]
    include_lines: bool,
    #[serde(default)]
    ready_marker: bool,
    #[serde(default, with = "humantime_serde")]
    resend_after: Duration,
    #[serde(default)]
    auto_ack: bool,
    #[serde(default)]
    auto_ack_regulate: bool,
    #[serde(default = "default_delimiter")]
    csv_delimiter: String,
    #[serde(default)]
    csv_crlf: bool,
    #[serde(default)]
    csv_bom: bool,
    #[serde(default)]
    filter_groups: Vec<RawFilterGroup>,
    #[serde(default)]
    inbox: PathBuf,
    #[serde(default = "default_transport")]
    transport: Transport,
}

fn default_transport() -> Transport {
    Transport::Files
}

fn default_format() -> Format {
    Format::Json
}
fn default_batch_size() -> i64 {
    100
}
fn yes() -> bool {
    true
}
fn default_delimiter() -> String {
    ",".into()
}

/// A byte size written as `"64MiB"`, `"512 KiB"`, `"1GiB"`, `"1000"` or an integer.
#[derive(Debug, Clone, Copy)]
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Int(n) => Ok(Size(n)),
            Either::Text(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `"64MiB"`-style sizes (B, KiB, MiB, GiB; KB/MB/GB as powers of ten).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected e.g. \"64MiB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("invalid size unit {other:?} in {text:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// A key's path as the other messages name keys: `systems[1].batch`.
fn key_path(p: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => match key_path(parent) {
            head if head.is_empty() => key.clone(),
            head => format!("{head}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

/// The key of the table `unknown` is in (`systems[1].batchsize`) closest
/// to it, when one is close enough to be the key meant (a typo, not another
/// word): about a third of its letters differ at most.
fn did_you_mean(unknown: &str) -> Option<&'static str> {
    // The table's path with the indexes left out: `systems[].filter_groups[]`.
    let (table, key) = unknown.rsplit_once('.').unwrap_or(("", unknown));
    let mut shape = String::new();
    let mut in_index = false;
    for c in table.chars() {
        match c {
            '[' => {
                in_index = true;
                shape.push_str("[]");
            }
            ']' => in_index = false,
            c if !in_index => shape.push(c),
            _ => {}
        }
    }
    let keys = match shape.as_str() {
        "" => fields::<RawConfig>(),
        "paths" => fields::<RawPaths>(),
        "inbox" => fields::<RawInbox>(),
        "inventory" => fields::<RawInventory>(),
        "store" => fields::<RawStore>(),
        "systems[]" => fields::<RawSystem>(),
        "systems[].filter_groups[]" => fields::<RawFilterGroup>(),
        "systems[].filter_groups[].filters[]" => fields::<crate::filter::RawFilter>(),
        "http" => fields::<RawHttp>(),
        "http.tokens[]" => fields::<RawToken>(),
        "cluster" => fields::<RawCluster>(),
        _ => &[],
    };
    keys.iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d > 0 && *d <= (key.chars().count() + 1).max(3) / 3)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein's distance between `a` and `b`: the fewest letters to
/// insert, delete or replace to turn one into the other.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The field names `T` reads (its serde derive's own list): the keys its
/// table may hold, so a suggestion never names a key that does not exist.
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    /// A deserializer that answers nothing: a struct's `Deserialize` hands
    /// it the struct's field names, which it keeps.
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only a struct's fields are read"))
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            self.deserialize_any(visitor)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut found: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut found));
    found
}

/// Whether `id` is a safe system id: `[A-Za-z0-9_-]{1,64}`.
pub fn valid_system_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
        })
    }
}

/// Validates `[cluster]`: PostgreSQL only (the lease is a row there), a
/// node name that fits in a log line, a lease of 1 s to 10 min.
fn cluster_config(
    raw: RawCluster,
    store: &StoreConfig,
    bad: &mut Vec<(String, String)>,
) -> ClusterConfig {
    if !matches!(store.backend, Backend::Postgres(_)) {
        bad.push((
            "cluster".into(),
            "a pair of nodes shares its state on PostgreSQL: needs [store] backend = \"postgres\""
                .into(),
        ));
    }
    let node = raw.node.unwrap_or_else(host_name);
    if node.is_empty()
        || node.len() > 64
        || node.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        bad.push((
            "cluster.node".into(),
            format!("{node:?} must be 1 to 64 characters without spaces or control characters"),
        ));
    }
    let lease = raw.lease.unwrap_or(DEFAULT_LEASE);
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&lease) {
        bad.push((
            "cluster.lease".into(),
            format!(
                "{} must be from 1s to 10m",
                humantime::format_duration(lease)
            ),
        ));
    }
    ClusterConfig { node, lease }
}

/// Validates `[store]`, pushing every problem onto `bad`: the backend,
/// and the keys of that backend only (a key of the other one is refused
/// rather than ignored, so that nobody tunes a setting that does nothing).
/// For PostgreSQL the URL is resolved here (`url`, or the variable
/// `url_env` names, read from `env`) and must parse as a
/// `postgres::Config`; nothing connects. No message quotes the URL.
fn store_config(
    raw: RawStore,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    bad: &mut Vec<(String, String)>,
) -> StoreConfig {
    let mut config = StoreConfig {
        cache_capacity: DEFAULT_CACHE_CAPACITY,
        compression: false,
        backend: Backend::Sled,
    };
    let postgres = match raw.backend.as_deref().unwrap_or("sled") {
        "sled" => false,
        "postgres" => true,
        other => {
            bad.push((
                "store.backend".into(),
                format!("{other:?} is not a backend: \"sled\" (the default) or \"postgres\""),
            ));
            // The other keys are not checked against a backend nobody chose.
            return config;
        }
    };
    // Said with what to change: a config copied from the shipped one
    // (which sets the sled keys) and switched to PostgreSQL stops here.
    let not_for = |key: &str, backend: &str| {
        let fix = match backend {
            "sled" => "delete the line (or comment it out) to keep the state on PostgreSQL",
            _ => "delete the line, or set backend = \"postgres\"",
        };
        (
            format!("store.{key}"),
            format!("only applies to backend = \"{backend}\": {fix}"),
        )
    };
    if !postgres {
        for (key, set) in [
            ("url", raw.url.is_some()),
            ("url_env", raw.url_env.is_some()),
            ("pool_size", raw.pool_size.is_some()),
            ("statement_timeout", raw.statement_timeout.is_some()),
        ] {
            if set {
                bad.push(not_for(key, "postgres"));
            }
        }
        if let Some(Size(bytes)) = raw.cache_capacity {
            if bytes < 1 << 20 {
                bad.push((
                    "store.cache_capacity".into(),
                    format!("must be at least 1MiB, got {bytes} bytes"),
                ));
            }
            config.cache_capacity = bytes;
        }
        config.compression = raw.compression.unwrap_or(false);
        return config;
    }

    for (key, set) in [
        ("cache_capacity", raw.cache_capacity.is_some()),
        ("compression", raw.compression.is_some()),
    ] {
        if set {
            bad.push(not_for(key, "sled"));
        }
    }
    let pool_size = match raw.pool_size {
        None => DEFAULT_POOL_SIZE,
        Some(n) if (1..=MAX_POOL_SIZE as i64).contains(&n) => n as u32,
        Some(n) => {
            bad.push((
                "store.pool_size".into(),
                format!("must be 1 to {MAX_POOL_SIZE}, got {n}"),
            ));
            DEFAULT_POOL_SIZE
        }
    };
    let statement_timeout = match raw.statement_timeout {
        None => Some(DEFAULT_STATEMENT_TIMEOUT),
        Some(d) if d.is_zero() => None,
        // PostgreSQL counts it in whole milliseconds: less would be 0, none.
        Some(d) if d < Duration::from_millis(1) => {
            bad.push((
                "store.statement_timeout".into(),
                "must be at least 1ms, or \"0s\" for none".into(),
            ));
            None
        }
        Some(d) if d > MAX_STATEMENT_TIMEOUT => {
            bad.push((
                "store.statement_timeout".into(),
                format!(
                    "must be at most {} (PostgreSQL's limit), or \"0s\" for none",
                    humantime::format_duration(MAX_STATEMENT_TIMEOUT)
                ),
            ));
            None
        }
        Some(d) => Some(d),
    };
    let url = match (raw.url, raw.url_env) {
        (Some(_), Some(_)) => {
            bad.push((
                "store.url".into(),
                "set together with store.url_env: set one of them (url_env keeps a password out of this file)".into(),
            ));
            None
        }
        (None, None) => {
            bad.push((
                "store.backend".into(),
                "\"postgres\" needs store.url, or store.url_env naming an environment variable that holds the URL".into(),
            ));
            None
        }
        (Some(url), None) if url.trim().is_empty() => {
            bad.push((
                "store.url".into(),
                "is empty: a URL such as \"postgresql://ordersync@localhost/ordersync\"".into(),
            ));
            None
        }
        (Some(url), None) => match check_postgres_url(&url) {
            Ok(()) => Some((url, None)),
            Err(why) => {
                bad.push((
                    "store.url".into(),
                    format!("not a PostgreSQL URL or conninfo: {why}"),
                ));
                None
            }
        },
        (None, Some(name)) => match url_from_env(&name, env) {
            Ok(url) => Some((url, Some(name))),
            Err(message) => {
                bad.push(("store.url_env".into(), message));
                None
            }
        },
    };
    if let Some((url, url_env)) = url {
        config.backend = Backend::Postgres(PostgresConfig {
            url,
            url_env,
            pool_size,
            statement_timeout,
            lease: None,
        });
    }
    config
}

/// The URL in the environment variable `name` (`[store] url_env`), or
/// what is wrong, naming the variable and never quoting its value.
fn url_from_env(
    name: &str,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<String, String> {
    let portable = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !portable {
        return Err(format!(
            "{name:?} is not an environment variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    let url = match env(name).map(std::ffi::OsString::into_string) {
        None => return Err(format!("the environment variable {name} is not set")),
        Some(Err(_)) => {
            return Err(format!(
                "the environment variable {name} is not valid UTF-8"
            ));
        }
        Some(Ok(url)) => url,
    };
    if url.trim().is_empty() {
        return Err(format!("the environment variable {name} is empty"));
    }
    check_postgres_url(&url).map_err(|why| {
        format!("the environment variable {name} does not hold a PostgreSQL URL or conninfo: {why}")
    })?;
    Ok(url)
}

/// Whether `url` parses as a `postgres::Config` (libpq's URL or
/// `key=value` conninfo); if not, postgres's reason, without anything
/// quoted from `url`.
fn check_postgres_url(url: &str) -> Result<(), String> {
    // Another scheme (`http://…`): postgres takes it for conninfo and says
    // only "unexpected EOF". A scheme is letters, digits, `+-.`: quoting
    // it shows nothing of a password.
    if let Some((scheme, _)) = url.trim_start().split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !["postgresql", "postgres"].contains(&scheme.to_ascii_lowercase().as_str())
    {
        return Err(format!(
            "it starts with {scheme}:// but a PostgreSQL URL starts with postgresql:// (or postgres://), e.g. \"postgresql://ordersync@db.example.com/ordersync\"; key=value conninfo works too"
        ));
    }
    // sslmode and sslrootcert are ordersync's (store/postgres/tls.rs).
    let (url, _) = crate::pgurl::split(url)?;
    let e = match url.parse::<postgres::Config>() {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    // postgres's Display says only "invalid connection string"; the
    // reason is its source.
    let reason = std::error::Error::source(&e).map_or_else(|| e.to_string(), |c| c.to_string());
    Err(scrub_postgres_reason(&reason))
}

/// libpq's connection keywords (PostgreSQL 17) and tokio-postgres's own:
/// an option name postgres's message may quote. Anything else it quotes
/// came from the text and may be part of a password.
const LIBPQ_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "keepalives_retries",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "requiressl",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslkeylogfile",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "min_protocol_version",
    "max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

/// postgres's reason for refusing a URL, without what it quotes from it:
/// an unknown option's name is kept only when it is a libpq keyword (in
/// `password=a b=c`, `b` is not), and the character found where another
/// was expected is left out. The other reasons quote nothing of the text
/// (`invalid value for option `sslmode``, `unexpected EOF`).
fn scrub_postgres_reason(reason: &str) -> String {
    const UNKNOWN: &str = "unknown option `";
    if let Some(at) = reason.find(UNKNOWN) {
        let name = reason[at + UNKNOWN.len()..]
            .strip_suffix('`')
            .unwrap_or_default();
        return if LIBPQ_KEYWORDS.contains(&name) {
            format!("{reason} (this ordersync does not support it)")
        } else {
            format!(
                "{}an unknown option (its name is not shown: it may be part of a password; quote a value with spaces as 'a value')",
                &reason[..at]
            )
        };
    }
    let reason = match reason.find(" but got `") {
        Some(at) => &reason[..at],
        None => reason,
    };
    // Should a newer postgres quote anything else, its reason is not shown.
    let quotes_only_keywords = reason
        .split('`')
        .skip(1)
        .step_by(2)
        .all(|q| q == "=" || q == "'" || LIBPQ_KEYWORDS.contains(&q));
    if quotes_only_keywords {
        reason.to_string()
    } else {
        "postgres's reason is not shown (it quotes the text, which may hold a password)".into()
    }
}

/// A system's own inbox must be a folder of its own: not one of the five,
/// not another system's inbox.
fn check_system_inboxes(p: &Paths, systems: &[SystemConfig]) -> Vec<(String, String)> {
    let shared = [
        ("paths.inbox", &p.inbox),
        ("paths.outbox", &p.outbox),
        ("paths.archive", &p.archive),
        ("paths.errors", &p.errors),
        ("paths.state", &p.state),
    ];
    let mut bad = Vec::new();
    for (i, s) in systems.iter().enumerate() {
        let Some(inbox) = &s.inbox else { continue };
        let key = format!("systems[{i}].inbox");
        if let Some((k, _)) = shared.iter().find(|(_, d)| *d == inbox) {
            bad.push((
                key,
                format!("is the same folder as {k} ({})", inbox.display()),
            ));
        } else if let Some(other) = systems[..i]
            .iter()
            .find(|o| o.inbox.as_ref() == Some(inbox))
        {
            bad.push((
                key,
                format!(
                    "is the same folder as the inbox of system {:?} ({})",
                    other.id,
                    inbox.display()
                ),
            ));
        } else if inbox.starts_with(&p.outbox) {
            bad.push((
                key,
                format!(
                    "{} is inside paths.outbox: export files would be read as input",
                    inbox.display()
                ),
            ));
        }
    }
    bad
}

impl Config {
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

/// Validates `[http]`: the listen address, and each token's name, hash and
/// systems.
fn http_config(raw: RawHttp, systems: &[SystemConfig]) -> Result<HttpConfig, (String, String)> {
    let listen = match raw.listen.trim() {
        "" => None,
        text => Some(text.parse().map_err(|_| {
            (
                "http.listen".to_string(),
                format!("{text:?} is not an address such as \"127.0.0.1:8080\""),
            )
        })?),
    };
    for (k, d) in [
        ("http.header_timeout", raw.header_timeout),
        ("http.body_timeout", raw.body_timeout),
        ("http.idle_timeout", raw.idle_timeout),
    ] {
        if d.is_zero() {
            return Err((k.to_string(), "must be more than 0s".into()));
        }
    }
    if raw.max_connections == Some(0) {
        return Err((
            "http.max_connections".to_string(),
            "must be at least 1".into(),
        ));
    }
    let mut names = HashSet::new();
    let mut tokens = Vec::with_capacity(raw.tokens.len());
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let key = |k: &str| format!("http.tokens[{i}].{k}");
        if t.name.trim().is_empty() {
            return Err((key("name"), "must not be empty".into()));
        }
        if !names.insert(t.name.clone()) {
            return Err((key("name"), format!("duplicate token name {:?}", t.name)));
        }
        let sha256 = parse_sha256(&t.sha256).ok_or_else(|| {
            (
                key("sha256"),
                "must be 64 hex digits: the SHA-256 of the token, e.g. printf %s \"$TOKEN\" | sha256sum".to_string(),
            )
        })?;
        let scope = if t.systems.iter().any(|s| s == "*") {
            if t.systems.len() > 1 {
                return Err((key("systems"), "\"*\" stands alone: every system".into()));
            }
            None
        } else {
            for (j, id) in t.systems.iter().enumerate() {
                if !systems.iter().any(|s| &s.id == id) {
                    return Err((
                        format!("{}[{j}]", key("systems")),
                        format!("unknown system {id:?}"),
                    ));
                }
            }
            Some(t.systems)
        };
        tokens.push(TokenConfig {
            name: t.name,
            sha256,
            systems: scope,
        });
    }
    Ok(HttpConfig {
        listen,
        tokens,
        header_timeout: raw.header_timeout,
        body_timeout: raw.body_timeout,
        idle_timeout: raw.idle_timeout,
        max_connections: raw.max_connections.map(|n| n as usize),
    })
}

/// 64 hex digits (either case) as 32 bytes.
fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// The five folders must be different, and none may lie inside the inbox:
/// otherwise archived files would be read again, or exports taken as input.
fn check_distinct_paths(p: &Paths) -> Vec<(String, String)> {
    let all = [
        ("paths.inbox", &p.inbox),
        ("paths.outbox", &p.outbox),
        ("paths.archive", &p.archive),
        ("paths.errors", &p.errors),
        ("paths.state", &p.state),
    ];
    for (i, (ka, a)) in all.iter().enumerate() {
        for (kb, b) in &all[i + 1..] {
            if a == b {
                return vec![(
                    kb.to_string(),
                    format!("is the same folder as {ka} ({})", a.display()),
                )];
            }
        }
    }
    Vec::new()
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
            Encoding::Iso88591 => "iso-8859-1",
        })
    }
}

#[cfg(test)]
mod tests {
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
        let sections: [(&str, &[&str]); 8] = [
            ("paths", fields::of::<RawPaths>()),
            ("inbox", fields::of::<RawInbox>()),
            ("inventory", fields::of::<RawInventory>()),
            ("store", fields::of::<RawStore>()),
            ("systems", fields::of::<RawSystem>()),
            ("http", fields::of::<RawHttp>()),
            ("http.tokens", fields::of::<RawToken>()),
            ("cluster", fields::of::<RawCluster>()),
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

    /// `[store]` parsed with `vars` for the environment.
    fn store(text: &str, vars: &[(&str, &str)]) -> Result<StoreConfig, String> {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| std::ffi::OsString::from(v))
        };
        Config::parse_with_env(text, Path::new("/srv/os/config.toml"), &env)
            .map(|c| c.store)
            .map_err(|e| e.to_string())
    }

    fn postgres(text: &str, vars: &[(&str, &str)]) -> PostgresConfig {
        match store(text, vars).unwrap().backend {
            Backend::Postgres(pg) => pg,
            Backend::Sled => panic!("sled for {text}"),
        }
    }

    #[test]
    fn the_store_is_sled_by_default_with_its_own_keys() {
        for text in ["", "[store]\n", "[store]\nbackend = \"sled\"\n"] {
            let s = store(text, &[]).unwrap();
            assert_eq!(s.backend, Backend::Sled, "{text}");
            assert_eq!((s.cache_capacity, s.compression), (64 << 20, false));
        }
        let s = store(
            "[store]\nbackend = \"sled\"\ncache_capacity = \"16MiB\"\ncompression = true\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            (s.backend, s.cache_capacity, s.compression),
            (Backend::Sled, 16 << 20, true)
        );
        let e = store("[store]\ncache_capacity = \"1KiB\"\n", &[]).unwrap_err();
        assert!(
            e.contains("store.cache_capacity: must be at least 1MiB"),
            "{e}"
        );
    }

    #[test]
    fn postgres_takes_a_url_or_a_conninfo_with_defaults() {
        let pg = postgres(
            "[store]\nbackend = \"postgres\"\nurl = \"postgresql://os:s3cret@db.example:5433/orders\"\n",
            &[],
        );
        assert_eq!(
            pg,
            PostgresConfig {
                url: "postgresql://os:s3cret@db.example:5433/orders".into(),
                url_env: None,
                pool_size: 4,
                statement_timeout: Some(Duration::from_secs(30)),
                lease: None,
            }
        );
        assert_eq!(pg.shown(), "postgresql://os@db.example:5433/orders");
        // The sled keys keep their defaults, unused.
        let s = store(
            "[store]\nbackend = \"postgres\"\nurl = \"postgresql://os@db/orders\"\n",
            &[],
        )
        .unwrap();
        assert_eq!((s.cache_capacity, s.compression), (64 << 20, false));

        for url in [
            "host=/run/postgresql dbname=orders user=os",
            "postgresql://os@/orders?host=/run/postgresql",
        ] {
            let pg = postgres(
                &format!(
                    "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 64\nstatement_timeout = \"0s\"\n"
                ),
                &[],
            );
            assert_eq!(pg.url, url);
            assert_eq!((pg.pool_size, pg.statement_timeout), (64, None));
            // The socket in the query, as libpq writes it (issue 22).
            assert_eq!(pg.shown(), "postgresql://os@/orders?host=/run/postgresql");
        }
        let pg = postgres(
            "[store]\nbackend = \"postgres\"\nurl = \"postgresql://os@db/orders\"\npool_size = 1\nstatement_timeout = \"1m 30s\"\n",
            &[],
        );
        assert_eq!(
            (pg.pool_size, pg.statement_timeout),
            (1, Some(Duration::from_secs(90)))
        );
    }

    #[test]
    fn url_env_reads_the_url_from_that_variable_at_load() {
        let name = "ORDERSYNC_CONFIG_TEST_URL_ENV_OK";
        let pg = postgres(
            &format!("[store]\nbackend = \"postgres\"\nurl_env = \"{name}\"\n"),
            &[(name, "postgresql://os:s3cret@db/orders")],
        );
        assert_eq!(pg.url, "postgresql://os:s3cret@db/orders");
        assert_eq!(pg.url_env.as_deref(), Some(name));
        assert_eq!(pg.shown(), "postgresql://os@db:5432/orders");
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

    #[test]
    fn postgres_needs_exactly_one_of_url_and_url_env() {
        let both = "[store]\nbackend = \"postgres\"\nurl = \"postgresql://os@db/orders\"\nurl_env = \"DB\"\n";
        let e = store(both, &[("DB", "postgresql://os@db/orders")]).unwrap_err();
        assert!(
            e.contains("store.url: set together with store.url_env"),
            "{e}"
        );
        let e = store("[store]\nbackend = \"postgres\"\n", &[]).unwrap_err();
        assert!(
            e.contains("store.backend: \"postgres\" needs store.url, or store.url_env"),
            "{e}"
        );
        let e = store("[store]\nbackend = \"postgres\"\nurl = \" \"\n", &[]).unwrap_err();
        assert!(e.contains("store.url: is empty"), "{e}");
    }

    #[test]
    fn a_missing_or_empty_url_env_variable_is_named_never_shown() {
        let text = "[store]\nbackend = \"postgres\"\nurl_env = \"ORDERSYNC_CONFIG_TEST_DB\"\n";
        let e = store(text, &[]).unwrap_err();
        assert!(
            e.contains(
                "store.url_env: the environment variable ORDERSYNC_CONFIG_TEST_DB is not set"
            ),
            "{e}"
        );
        let e = store(text, &[("ORDERSYNC_CONFIG_TEST_DB", "")]).unwrap_err();
        assert!(
            e.contains("store.url_env: the environment variable ORDERSYNC_CONFIG_TEST_DB is empty"),
            "{e}"
        );
        let e = store(
            text,
            &[(
                "ORDERSYNC_CONFIG_TEST_DB",
                "postgresql://os:s3cret@db/orders?sslmode=bogus",
            )],
        )
        .unwrap_err();
        assert!(
            e.contains("store.url_env: the environment variable ORDERSYNC_CONFIG_TEST_DB does not hold a PostgreSQL URL or conninfo: invalid value for option `sslmode`"),
            "{e}"
        );
        assert!(!e.contains("s3cret") && !e.contains("bogus"), "{e}");
        let e = store("[store]\nbackend = \"postgres\"\nurl_env = \"A=B\"\n", &[]).unwrap_err();
        assert!(
            e.contains("store.url_env: \"A=B\" is not an environment variable name"),
            "{e}"
        );
    }

    /// A URL postgres refuses is reported with postgres's reason, naming
    /// the key, and nothing of the URL: not its password, not a part of
    /// it that postgres's message would quote.
    #[test]
    fn a_bad_url_names_the_key_and_never_echoes_the_url() {
        let bad = |url: &str| {
            store(
                &format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"),
                &[],
            )
            .unwrap_err()
        };
        let e = bad("postgresql://os:s3cret@db/orders?sslmode=bogus");
        assert!(
            e.contains(
                "store.url: not a PostgreSQL URL or conninfo: invalid value for option `sslmode`"
            ),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        let e = bad("postgresql://os:s3cret@db:nope/orders");
        assert!(e.contains("invalid value for option `port`"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        // An unquoted password with a space: postgres takes its second
        // half for an option, and its message would quote it.
        let e = bad("host=db user=os password=s3 cret=x");
        assert!(e.contains("store.url: not a PostgreSQL URL or conninfo: an unknown option (its name is not shown"), "{e}");
        assert!(!e.contains("cret"), "{e}");
        // … and the character found where `=` was expected.
        let e = bad("host=db password=s3 cret Z");
        assert!(
            e.contains("store.url: not a PostgreSQL URL or conninfo: unexpected character at byte 25: expected `=`"),
            "{e}"
        );
        assert!(
            !e.contains("cret") && !e.contains('Z') && !e.contains("got"),
            "{e}"
        );
        // An option libpq knows and this postgres does not is named.
        let e = bad("host=db sslcert=/etc/ssl/client.pem");
        assert!(
            e.contains("unknown option `sslcert` (this ordersync does not support it)"),
            "{e}"
        );
    }

    #[test]
    fn the_postgres_config_never_shows_its_password() {
        let c = Config::parse_with_env(
            "[store]\nbackend = \"postgres\"\nurl = \"postgresql://os:s3cret@db/orders\"\n",
            Path::new("/srv/os/config.toml"),
            &|_: &str| None,
        )
        .unwrap();
        for shown in [
            format!("{c:?}"),
            format!("{:?}", c.store),
            format!("{c:#?}"),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("postgresql://os@db:5432/orders"), "{shown}");
        }
    }

    #[test]
    fn the_keys_of_one_backend_are_refused_with_the_other() {
        // With sled (unset or named), every PostgreSQL key, all at once.
        for backend in ["", "backend = \"sled\"\n"] {
            let e = store(
                &format!(
                    "[store]\n{backend}url = \"postgresql://os@db/orders\"\nurl_env = \"DB\"\npool_size = 4\nstatement_timeout = \"30s\"\n"
                ),
                &[],
            )
            .unwrap_err();
            for key in ["url", "url_env", "pool_size", "statement_timeout"] {
                let want = format!("\n  store.{key}: only applies to backend = \"postgres\"");
                assert!(e.contains(&want), "{want:?} missing in {e}");
            }
            assert!(e.contains("4 problems"), "{e}");
        }
        // With PostgreSQL, sled's keys, even at their default values.
        let e = store(
            "[store]\nbackend = \"postgres\"\nurl = \"postgresql://os@db/orders\"\ncache_capacity = \"64MiB\"\ncompression = false\n",
            &[],
        )
        .unwrap_err();
        for key in ["cache_capacity", "compression"] {
            let want = format!("\n  store.{key}: only applies to backend = \"sled\"");
            assert!(e.contains(&want), "{want:?} missing in {e}");
        }
    }

    #[test]
    fn the_backend_pool_size_and_statement_timeout_have_ranges() {
        let e = store("[store]\nbackend = \"mysql\"\n", &[]).unwrap_err();
        assert!(
            e.contains(
                "store.backend: \"mysql\" is not a backend: \"sled\" (the default) or \"postgres\""
            ),
            "{e}"
        );
        let pg = "[store]\nbackend = \"postgres\"\nurl = \"postgresql://os@db/orders\"\n";
        for (extra, want) in [
            ("pool_size = 0", "store.pool_size: must be 1 to 64, got 0"),
            ("pool_size = 65", "store.pool_size: must be 1 to 64, got 65"),
            ("pool_size = -1", "store.pool_size: must be 1 to 64, got -1"),
            (
                "statement_timeout = \"500us\"",
                "store.statement_timeout: must be at least 1ms, or \"0s\" for none",
            ),
            (
                "statement_timeout = \"30days\"",
                "store.statement_timeout: must be at most 24days 20h 31m 23s 647ms (PostgreSQL's limit)",
            ),
        ] {
            let e = store(&format!("{pg}{extra}\n"), &[]).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
        let at_most = postgres(&format!("{pg}statement_timeout = \"2147483647ms\"\n"), &[]);
        assert_eq!(at_most.statement_timeout, Some(MAX_STATEMENT_TIMEOUT));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1 KiB"), Ok(1024));
        assert_eq!(parse_size("10"), Ok(10));
        assert!(parse_size("MiB").is_err());
    }
}
