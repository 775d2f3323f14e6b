//! The text of a PostgreSQL URL or conninfo, read without connecting:
//! libpq's `sslmode`, `sslrootcert` and `target_session_attrs`, which
//! ordersync takes out itself ([`split`]; what each means is in
//! `store/postgres/tls.rs`, which builds the connection), the hosts, and
//! the URL as messages show it ([`shown`]: never a password). At the
//! bottom of the crate: the config checks and shows a URL with it, the
//! backend connects with it, and neither reaches into the other.

use std::path::PathBuf;

use postgres::config::TargetSessionAttrs;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(value: &str) -> Option<Mode> {
        Some(match value {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            _ => return None,
        })
    }
}

/// Where the trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RootCert {
    /// `sslrootcert=FILE`: a PEM bundle.
    File(PathBuf),
    /// `sslrootcert=system`, or none given: the system's store.
    System,
}

/// The TLS settings taken out of a URL or conninfo, and the session
/// wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub mode: Mode,
    /// `None`: no `sslrootcert` (the system's store, when one is needed).
    pub rootcert: Option<RootCert>,
    /// `target_session_attrs`, when given.
    pub session: Option<TargetSessionAttrs>,
}

/// `target_session_attrs` as libpq spells it: `primary` (libpq 14) is
/// read as `read-write`, what postgres checks (`SHOW
/// transaction_read_only`); a standby is no use to a process that writes.
fn session_attrs(value: &str) -> Result<TargetSessionAttrs, String> {
    Ok(match value {
        "any" => TargetSessionAttrs::Any,
        "read-write" | "primary" => TargetSessionAttrs::ReadWrite,
        "read-only" => TargetSessionAttrs::ReadOnly,
        "standby" | "prefer-standby" => {
            return Err(
                "target_session_attrs: ordersync writes, so a standby cannot be its server (use read-write or primary)"
                    .into(),
            );
        }
        _ => {
            return Err(
                "invalid value for option `target_session_attrs` (any, read-write, primary or read-only)"
                    .into(),
            );
        }
    })
}

/// `target_session_attrs` as shown in a URL.
pub(crate) fn session_name(attrs: TargetSessionAttrs) -> &'static str {
    match attrs {
        TargetSessionAttrs::ReadWrite => "read-write",
        TargetSessionAttrs::ReadOnly => "read-only",
        _ => "any",
    }
}

/// The message for a bad `sslmode`: postgres's own words, quoting nothing
/// of the text.
const BAD_SSLMODE: &str = "invalid value for option `sslmode` (disable, allow, prefer, require, verify-ca or verify-full)";

/// Takes `sslmode` and `sslrootcert` out of `url` (libpq's URL, or
/// `key=value` conninfo): the rest, for postgres, and the settings. The
/// last of a repeated key wins, as in libpq. Text that does not parse is
/// left as it is, for postgres to report. No message quotes the text.
pub(crate) fn split(url: &str) -> Result<(String, Settings), String> {
    let mut mode = None;
    let mut rootcert = None;
    let mut session = None;
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => mode = Some(Mode::parse(&value).ok_or(BAD_SSLMODE)?),
            "target_session_attrs" => session = Some(session_attrs(&value)?),
            "sslrootcert" => {
                rootcert = Some(match value.as_str() {
                    "system" => RootCert::System,
                    "" => return Err("sslrootcert is empty".into()),
                    _ => RootCert::File(PathBuf::from(value)),
                })
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = match ["postgresql://", "postgres://"]
        .iter()
        .find(|p| url.starts_with(*p))
    {
        Some(_) => split_url(url, &mut take)?,
        None => split_conninfo(url, &mut take)?,
    };
    let mode = match (mode, &rootcert) {
        (None, Some(RootCert::System)) => Mode::VerifyFull,
        (Some(m), Some(RootCert::System)) if m != Mode::VerifyFull => {
            return Err(
                "a weaker sslmode than verify-full may not be used with sslrootcert=system (use verify-full)"
                    .into(),
            );
        }
        (m, _) => m.unwrap_or(Mode::Prefer),
    };
    Ok((
        rest,
        Settings {
            mode,
            rootcert,
            session,
        },
    ))
}

/// The host part of a URL (after the user info, up to the path or the
/// parameters), or `None` for conninfo. A URL whose host part or path
/// holds an `@` is refused: its password holds an `@` not written `%40`, which postgres
/// would read as the end of the password and the start of the host (and
/// messages would show the rest of the password).
pub(crate) fn url_hosts(url: &str) -> Result<Option<&str>, String> {
    let Some(after) = ["postgresql://", "postgres://"]
        .iter()
        .find_map(|p| url.strip_prefix(*p))
    else {
        return Ok(None);
    };
    let rest = after.find('@').map_or(after, |at| &after[at + 1..]);
    // The host and the path: an `@` there (`os:p@ss@db`, `os:p@ss/x@db`)
    // is one of the password's.
    let host_path = &rest[..rest.find('?').unwrap_or(rest.len())];
    let hosts = &host_path[..host_path.find('/').unwrap_or(host_path.len())];
    if host_path.contains('@') {
        return Err(
            "the URL's user info holds an `@` that is not percent-encoded (write `@` in a user name or password as %40)"
                .into(),
        );
    }
    Ok(Some(hosts))
}

/// The URL form: the parameters after the first `?` that follows the
/// user info (everything up to the first `@`, as postgres reads it).
fn split_url(
    url: &str,
    take: &mut dyn FnMut(&str, String) -> Result<bool, String>,
) -> Result<String, String> {
    url_hosts(url)?;
    let after_creds = url.find('@').map_or(0, |at| at + 1);
    let Some(q) = url[after_creds..].find('?').map(|q| after_creds + q) else {
        return Ok(url.to_string());
    };
    let mut kept = Vec::new();
    let mut params = &url[q + 1..];
    while !params.is_empty() {
        // As postgres: the key runs to the first `=`, the value to `&`.
        let Some(eq) = params.find('=') else {
            kept.push(params);
            break;
        };
        let end = params[eq + 1..]
            .find('&')
            .map_or(params.len(), |a| eq + 1 + a);
        let (key, value) = (&params[..eq], &params[eq + 1..end]);
        let known = match (percent_decode(key), percent_decode(value)) {
            (Some(key), Some(value)) => take(&key, value)?,
            _ => false,
        };
        if !known {
            kept.push(&params[..end]);
        }
        params = params.get(end + 1..).unwrap_or("");
    }
    let mut rest = url[..q].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok(rest)
}

/// `%XX` decoded; `None` when that is not UTF-8 (postgres reports it).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `key=value` form, read as postgres reads it (values in single
/// quotes, `\` escapes); the kept parameters are copied as written.
fn split_conninfo(
    text: &str,
    take: &mut dyn FnMut(&str, String) -> Result<bool, String>,
) -> Result<String, String> {
    let mut kept: Vec<&str> = Vec::new();
    let mut it = text.char_indices().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::CharIndices>| {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut it);
        let Some(&(start, _)) = it.peek() else { break };
        let mut key_end = start;
        while let Some((i, c)) = it.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key_end = i + c.len_utf8();
        }
        if key_end == start {
            // No keyword: postgres stops (or fails) here.
            return Ok(text.to_string());
        }
        skip_ws(&mut it);
        if it.next_if(|(_, c)| *c == '=').is_none() {
            // Not `key = value`: postgres says what is wrong.
            return Ok(text.to_string());
        }
        skip_ws(&mut it);
        let mut value = String::new();
        let quoted = it.next_if(|(_, c)| *c == '\'').is_some();
        let mut end = None;
        while let Some((i, c)) = it.next() {
            match c {
                '\'' if quoted => {
                    end = Some(i + 1);
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = Some(i);
                    break;
                }
                '\\' => {
                    if let Some((_, e)) = it.next() {
                        value.push(e);
                    }
                }
                c => value.push(c),
            }
        }
        let end = match end {
            Some(end) => end,
            None if quoted => return Ok(text.to_string()),
            None => text.len(),
        };
        if !take(&text[start..key_end], value)? {
            kept.push(&text[start..end]);
        }
    }
    Ok(kept.join(" "))
}

/// Where a URL points, for messages: every host with its port, the
/// database and `target_session_attrs` when given, without the user's
/// password (`postgresql://os@db1:5432,db2:5433/orders?target_session_attrs=read-write`).
/// A Unix socket's folder goes in the query, with its port. A URL with an
/// `@` in its password not written `%40` is not shown (the config refuses
/// it).
pub fn shown(url: &str) -> String {
    let Ok((rest, settings)) = split(url) else {
        return "(an unreadable PostgreSQL URL)".into();
    };
    let Ok(c) = rest.parse::<postgres::Config>() else {
        return "(an unreadable PostgreSQL URL)".into();
    };
    let ports = c.get_ports();
    // One port for every host, or one per host (postgres's rule).
    let port_of = |i: usize| ports.get(i).or(ports.first().filter(|_| ports.len() == 1));
    // A unix socket's folder goes in the query, as libpq writes it
    // (`postgresql://u@/db?host=/run/postgresql&port=5433`): in the
    // authority it read `postgresql://u@/run/postgresql:5433/db`.
    let (mut tcp, mut query) = (Vec::new(), Vec::new());
    for (i, h) in c.get_hosts().iter().enumerate() {
        match h {
            postgres::config::Host::Tcp(h) => {
                let h = if h.contains(':') {
                    format!("[{h}]")
                } else {
                    h.clone()
                };
                tcp.push(match port_of(i) {
                    Some(p) => format!("{h}:{p}"),
                    None => h,
                });
            }
            postgres::config::Host::Unix(p) => {
                query.push(format!("host={}", p.display()));
                if let Some(p) = port_of(i) {
                    query.push(format!("port={p}"));
                }
            }
        }
    }
    if let Some(a) = settings.session {
        query.push(format!("target_session_attrs={}", session_name(a)));
    }
    let db = c.get_dbname().unwrap_or("");
    let user = c.get_user().map_or(String::new(), |u| format!("{u}@"));
    let query = match query.is_empty() {
        true => String::new(),
        false => format!("?{}", query.join("&")),
    };
    format!("postgresql://{user}{}/{db}{query}", tcp.join(","))
}
