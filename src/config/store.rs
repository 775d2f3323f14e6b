//! `[store]`: which backend holds the state (sled, or PostgreSQL) and its
//! settings. Guarantees that only the chosen backend's keys are set, that
//! a PostgreSQL URL (`url`, or the variable `url_env` names) parses, and
//! that no message and no `Debug` output shows anything of the URL but
//! where it points (never its password). Nothing connects here.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::inbox::Size;

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

/// `[store]`. Every key is optional here, so that a key set for the other
/// backend is told apart from one left out (`store_config` applies the
/// defaults).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawStore {
    backend: Option<String>,
    cache_capacity: Option<Size>,
    compression: Option<bool>,
    url: Option<String>,
    url_env: Option<String>,
    pool_size: Option<i64>,
    #[serde(with = "humantime_serde")]
    statement_timeout: Option<Duration>,
}

/// Validates `[store]`, pushing every problem onto `bad`: the backend,
/// and the keys of that backend only (a key of the other one is refused
/// rather than ignored, so that nobody tunes a setting that does nothing).
/// For PostgreSQL the URL is resolved here (`url`, or the variable
/// `url_env` names, read from `env`) and must parse as a
/// `postgres::Config`; nothing connects. No message quotes the URL.
pub(super) fn store_config(
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

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
}
