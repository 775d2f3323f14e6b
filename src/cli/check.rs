//! `ordersync check`: validate the config and the folders it names, print
//! every setting it resolves to (every option of every system).

use std::path::Path;

use super::{CliError, table};
// What it prints goes through the CLI's stdout: a failed write (a closed
// pipe) returns from `run` instead of panicking (cli::out!).
use super::{out as print, outln as println};
use crate::config::{Backend, Config, ConfigError, StoreConfig, SystemConfig, Transport};

pub fn run(c: &Config) -> Result<(), CliError> {
    // The folders: each must be a real folder where it exists (what does
    // not exist yet is created at start-up). Every problem is reported.
    let p = &c.paths;
    let folders: Vec<(String, std::path::PathBuf)> = vec![
        ("paths.inbox".into(), p.inbox.clone()),
        ("paths.outbox".into(), p.outbox.clone()),
        ("paths.archive".into(), p.archive.clone()),
        ("paths.errors".into(), p.errors.clone()),
        ("paths.state".into(), p.state.clone()),
    ];
    let mut problems: Vec<(String, String)> = folders
        .iter()
        .filter_map(|(key, path)| {
            folder_problem(path, key == "paths.inbox").map(|m| (key.clone(), m))
        })
        .collect();
    // Systems' own inboxes: real folders (a symlink is refused).
    for s in &c.systems {
        if let Some(dir) = &s.inbox
            && let Some(m) = folder_problem(dir, false)
        {
            problems.push((format!("systems {:?} inbox", s.id), m));
        }
    }
    // The systems' sub-folders, when the outbox itself is fine (an HTTP
    // system has none).
    if !problems.iter().any(|(k, _)| k == "paths.outbox") {
        for s in c.systems.iter().filter(|s| s.transport == Transport::Files) {
            if let Some(m) = folder_problem(&p.outbox.join(&s.id), false) {
                problems.push((format!("systems {:?} outbox", s.id), m));
            }
        }
    }
    // The HTTP address: bound and released at once, as `run` would bind it.
    let http = c.http.listen.map(|addr| (addr, try_bind(addr, &p.state)));
    if let Some((addr, Err(e))) = &http {
        problems.push((
            "http.listen".into(),
            format!("cannot listen on {addr}: {e}"),
        ));
    }
    // Partner remotes: their key files and known_hosts.
    #[cfg(feature = "sftp")]
    for (i, r) in c.remotes.iter().enumerate() {
        for (key, m) in crate::remote::local_problems(r) {
            problems.push((format!("remotes[{i}].{key}"), m));
        }
    }
    if let Some(e) = ConfigError::of(&c.file, problems) {
        return Err(CliError::Config(e));
    }

    println!("config {} is valid", c.file.display());
    print!(
        "{}",
        table(&[
            vec!["inbox".into(), p.inbox.display().to_string()],
            vec!["outbox".into(), p.outbox.display().to_string()],
            vec!["archive".into(), p.archive.display().to_string()],
            vec!["errors".into(), p.errors.display().to_string()],
            vec!["state".into(), p.state.display().to_string()],
        ])
    );
    let i = &c.inbox;
    println!(
        "inbox: settle {}, rescan {}, {}, max_file_size {} bytes, encoding {}, ready_marker {}",
        humantime::format_duration(i.settle),
        i.rescan
            .map_or("never".into(), |d| humantime::format_duration(d)
                .to_string()),
        if i.poll { "polling" } else { "OS events" },
        i.max_file_size,
        i.encoding,
        i.ready_marker.as_deref().unwrap_or("none"),
    );
    println!("ignore: {}", i.ignore_patterns.join(" "));
    println!("inventory: allow_negative {}", c.inventory.allow_negative);
    let mut rows = store_rows(&c.store);
    if let Some(cluster) = &c.cluster {
        rows.extend(cluster_rows(cluster));
    }
    print!("{}", table(&rows));
    if let Backend::Postgres(pg) = &c.store.backend {
        println!("{}", replication(pg));
    }
    if c.store.backend == Backend::Sled {
        println!(
            "store: cache_capacity {} bytes, compression {} (for a new store)",
            c.store.cache_capacity,
            if c.store.compression { "on" } else { "off" }
        );
    }
    if c.systems.is_empty() {
        println!("no systems configured: orders are stored but never exported");
    }
    for s in &c.systems {
        println!("system {}", s.id);
        for line in table(&system_rows(s, &p.outbox)).lines() {
            println!("  {line}");
        }
    }
    match http {
        None => println!("http: off (set [http] listen to serve the HTTP API)"),
        Some((addr, Ok(Bind::Free))) => {
            println!("http: listening on {addr} (free: bound and released)")
        }
        Some((addr, Ok(Bind::HeldByDaemon))) => println!(
            "http: listening on {addr} (in use, by the running daemon: its control socket answers; not bound)"
        ),
        Some((_, Err(_))) => {}
    }
    for t in &c.http.tokens {
        let scope = t.systems.as_ref().map_or("*".into(), |s| s.join(", "));
        println!("http token {:?}: systems {scope}", t.name);
    }
    if c.http.listen.is_some() {
        let h = &c.http;
        let max = h.max_connections.map_or_else(
            || {
                format!(
                    "the open-files limit minus {}, at most {}",
                    crate::http::serve::FD_RESERVE,
                    crate::http::serve::DEFAULT_CAP_MAX
                )
            },
            |n| {
                format!(
                    "{n} (at most the open-files limit minus {})",
                    crate::http::serve::FD_RESERVE
                )
            },
        );
        println!(
            "http limits: max_connections {max}, header_timeout {}, body_timeout {}, idle_timeout {}",
            humantime::format_duration(h.header_timeout),
            humantime::format_duration(h.body_timeout),
            humantime::format_duration(h.idle_timeout),
        );
    }
    Ok(())
}

/// What is wrong with a configured folder, if anything: something that is
/// not a folder at its name, or a folder this user cannot write into. A
/// folder that does not exist yet is fine (it is created at start-up). The
/// inbox may be a symlink to a folder; the others must be real folders.
fn folder_problem(path: &Path, may_be_symlink: bool) -> Option<String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("{} cannot be checked: {e}", path.display())),
    };
    let t = meta.file_type();
    let is_dir = t.is_dir() || (may_be_symlink && t.is_symlink() && path.is_dir());
    if !is_dir {
        let what = if t.is_symlink() {
            "a symlink"
        } else if t.is_file() {
            "a file"
        } else {
            "a special file"
        };
        return Some(format!(
            "{} is not a folder (it is {what}); ordersync needs a real folder there",
            path.display()
        ));
    }
    match rustix::fs::access(
        path,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    ) {
        Ok(()) => None,
        Err(e) => Some(format!(
            "{} is not writable by this user: {}",
            path.display(),
            std::io::Error::from(e)
        )),
    }
}

/// The store's backend and, for PostgreSQL, where and how: the server as
/// `shown()` prints it, never the password. Nothing connects: an
/// unreachable server is the daemon's to report.
fn store_rows(store: &StoreConfig) -> Vec<Vec<String>> {
    match &store.backend {
        Backend::Sled => vec![vec!["store backend".into(), "sled".into()]],
        Backend::Postgres(pg) => {
            let from = pg
                .url_env
                .as_ref()
                .map_or(String::new(), |name| format!(" (from ${name})"));
            vec![
                vec!["store backend".into(), "postgres".into()],
                vec!["store url".into(), format!("{}{from}", pg.shown())],
                vec!["pool size".into(), pg.pool_size.to_string()],
                vec![
                    "statement timeout".into(),
                    pg.statement_timeout
                        .map_or("none".into(), |d| humantime::format_duration(d).to_string()),
                ],
            ]
        }
    }
}

/// How long `check` waits for the PostgreSQL server.
const CHECK_CONNECT: std::time::Duration = std::time::Duration::from_secs(3);

/// The server's replication, read over one connection (at most
/// [`CHECK_CONNECT`] to connect): a warning when it streams to standbys
/// and commits asynchronously (`store::postgres::replication_warning`).
/// A server not reached is said, not an error: `check` checks the config.
fn replication(pg: &crate::config::PostgresConfig) -> String {
    use crate::store::postgres;
    let server = pg.shown();
    let read = postgres::tls::connector(&pg.url)
        .map_err(|e| format!("PostgreSQL at {server}: {e}"))
        .and_then(|(mut config, tls)| {
            config.connect_timeout(CHECK_CONNECT);
            let mut c = postgres::Postgres::with_config(&config, tls, &server)
                .map_err(|e| e.to_string())?;
            c.replication_warning().map_err(|e| e.to_string())
        });
    match read {
        Ok(None) => "store replication: no standby, or synchronous".into(),
        Ok(Some(w)) => format!("warning: {w}"),
        Err(e) => format!("store server not reached (the daemon waits for it): {e}"),
    }
}

/// `[cluster]`: this node of a pair and its lease.
fn cluster_rows(cluster: &crate::config::ClusterConfig) -> Vec<Vec<String>> {
    vec![
        vec![
            "cluster node".into(),
            format!("{} (one of an active/standby pair)", cluster.node),
        ],
        vec![
            "cluster lease".into(),
            humantime::format_duration(cluster.lease).to_string(),
        ],
    ]
}

/// What binding `[http] listen` showed.
enum Bind {
    /// Bound and released: `run` can bind it.
    Free,
    /// In use, and the daemon's control socket answers: the daemon holds
    /// it (checking a running daemon's config is no error).
    HeldByDaemon,
}

/// Binds `addr` the way `run` does and releases it at once.
fn try_bind(addr: std::net::SocketAddr, state: &Path) -> Result<Bind, std::io::Error> {
    match std::net::TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            Ok(Bind::Free)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let args = ["status".to_string(), "--json".to_string()];
            match crate::control::ask(state, &args) {
                Ok(Some(_)) => Ok(Bind::HeldByDaemon),
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// A system's settings as `check` shows them: for an HTTP system only
/// those that apply to it (the file settings would mislead).
fn system_rows(s: &SystemConfig, outbox: &Path) -> Vec<Vec<String>> {
    let yes = |b: bool| b.to_string();
    let inbox = vec![
        "inbox".into(),
        s.inbox
            .as_ref()
            .map_or("none (the shared inbox only)".into(), |d| {
                format!("{} (its acks may only name {})", d.display(), s.id)
            }),
    ];
    if s.transport == Transport::Http {
        return vec![
            vec![
                "outbox".into(),
                "none: its orders are fetched over HTTP (the request decides which)".into(),
            ],
            vec!["transport".into(), s.transport.to_string()],
            inbox,
        ];
    }
    let mut rows = vec![
        vec!["outbox".into(), outbox.join(&s.id).display().to_string()],
        vec!["transport".into(), s.transport.to_string()],
        vec!["format".into(), s.format.to_string()],
        vec!["batch_size".into(), s.batch_size.to_string()],
        vec!["include_not_approved".into(), yes(s.include_not_approved)],
        vec!["include_cancelled".into(), yes(s.include_cancelled)],
        vec!["include_archived".into(), yes(s.include_archived)],
        vec!["include_lines".into(), yes(s.include_lines)],
        vec!["ready_marker".into(), yes(s.ready_marker)],
        vec![
            "resend_after".into(),
            s.resend_after.map_or("never".into(), |d| {
                humantime::format_duration(d).to_string()
            }),
        ],
        vec!["auto_ack".into(), yes(s.auto_ack)],
        vec!["auto_ack_regulate".into(), yes(s.auto_ack_regulate)],
        vec![
            "csv_delimiter".into(),
            format!("{:?}", (s.csv_delimiter as char).to_string()),
        ],
        vec!["csv_crlf".into(), yes(s.csv_crlf)],
        vec!["csv_bom".into(), yes(s.csv_bom)],
        inbox,
    ];
    if s.filter_groups.is_empty() {
        rows.push(vec!["filter_groups".into(), "none: every order".into()]);
    }
    for (g, group) in s.filter_groups.iter().enumerate() {
        rows.push(vec![format!("filter_groups[{g}]"), group.to_string()]);
    }
    rows
}
