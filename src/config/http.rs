//! `[http]` and `[[http.tokens]]`: the HTTP API's address, time limits,
//! connection cap and tokens. Guarantees an address that parses, time
//! limits above 0, and tokens with distinct names, a SHA-256 (the only
//! form a token is kept in, and never shown in a log) and systems that
//! exist.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::SystemConfig;

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

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawHttp {
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
pub(super) struct RawToken {
    name: String,
    sha256: String,
    systems: Vec<String>,
}

/// Validates `[http]`: the listen address, and each token's name, hash and
/// systems.
pub(super) fn http_config(
    raw: RawHttp,
    systems: &[SystemConfig],
) -> Result<HttpConfig, (String, String)> {
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
