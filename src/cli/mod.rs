//! The command line (SPEC §10): argument parsing and one module per
//! subcommand. Every command works whether or not the daemon is running.

/// `print!` for a command's output: writes to [`stdout`] and returns the
/// failure from the enclosing function (`Result<_, CliError>`), so a closed
/// pipe ends the command quietly instead of panicking as `print!` does.
macro_rules! out {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut $crate::cli::stdout(), format_args!($($arg)*))
            .map_err($crate::cli::printing)?
    };
}

/// `println!` for a command's output, as [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out!("{}\n", format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

mod check;
mod dump;
mod init;
mod inventory;
mod orders;
mod reexport;
mod run;
mod status;
mod validate;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::engine::Engine;

pub use init::TEMPLATE;

/// ordersync: moves sales orders between systems through files.
#[derive(Debug, Parser)]
#[command(name = "ordersync", version, about)]
pub struct Cli {
    /// The config file (relative paths in it resolve against its folder).
    /// Without it: ./config.toml, else /etc/ordersync/config.toml.
    #[arg(long, global = true, env = "ORDERSYNC_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented config.toml and the folders into DIR (default: .).
    Init {
        /// Where to write them (never overwrites an existing config).
        dir: Option<PathBuf>,
    },
    /// Validate the config and its folders, print every resolved setting.
    Check,
    /// Run the daemon in the foreground.
    Run {
        /// Drain the inbox, export, exit.
        #[arg(long)]
        once: bool,
    },
    /// Per system: pending / written / acked; orders; errors.
    Status {
        /// Print JSON: {"orders", "errors", "systems": {ID: {"pending", "written", "acked"}}}.
        #[arg(long)]
        json: bool,
        /// First wait until the inbox is drained and no order is pending
        /// to be written (by the running daemon; with none running, do it
        /// now, as `run --once`).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up (exit 1) after this long, e.g. "30s", "5m".
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s", requires = "wait")]
        timeout: std::time::Duration,
    },
    /// List or show orders.
    Orders {
        #[command(subcommand)]
        command: OrdersCommand,
    },
    /// Stock per SKU: in_stock, reserved, available.
    Inventory {
        /// Only this SKU.
        #[arg(long)]
        sku: Option<String>,
        /// Print JSON: [{"sku", "in_stock", "reserved", "available"}].
        #[arg(long)]
        json: bool,
    },
    /// Make every order acked by SYSTEM at or after SINCE pending again.
    Reexport {
        /// The system's id.
        #[arg(long)]
        system: String,
        /// RFC 3339 time, UNIX milliseconds, or a date (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: String,
    },
    /// Write the whole state as a portable dump (NDJSON: a header line, one
    /// record per line, a closing line), consistent as of one instant, while
    /// the daemon runs or not: the online backup, and the way to move a
    /// store to another machine or backend.
    Dump {
        /// Write it to FILE (made under a temporary name beside it, mode
        /// 0600, renamed when complete) instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Load a dump into a new, empty store: the configured one ([store]:
    /// sled in the state folder, or the PostgreSQL database), creating it;
    /// the daemon must not be running.
    Restore {
        /// The dump file (`-`: stdin).
        file: PathBuf,
    },
    /// Check inbox files exactly as the inbox would, applying nothing (exit
    /// 0: all valid; 1: any invalid). Needs no store; uses the config if
    /// there is one (its encoding, size limit and system ids).
    Validate {
        /// Check as if dropped into this system's own drop folder: ack rows
        /// may only name this system.
        #[arg(long)]
        system: Option<String>,
        /// The files to check (.json, .ndjson, .jsonl, .csv).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

impl Command {
    /// What is logged on stderr when `RUST_LOG` does not say: `info` for
    /// the commands that do the daemon's work (`run`, and `status --wait`,
    /// which does it when no daemon runs), `warn` for the others, whose
    /// result is what they print (`dump` printed an INFO line besides it).
    pub fn log_level(&self) -> tracing::Level {
        match self {
            Command::Run { .. } | Command::Status { wait: true, .. } => tracing::Level::INFO,
            _ => tracing::Level::WARN,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// List orders, optionally only those of one system, or in one state.
    List {
        /// Only orders of this system (with --state: in that state).
        #[arg(long)]
        system: Option<String>,
        /// Only orders in this state: for --system, or without it for any
        /// configured system.
        #[arg(long, value_parser = ["pending", "written", "acked"])]
        state: Option<String>,
        /// At most this many orders.
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this order id (the last id of the previous page).
        #[arg(long)]
        after: Option<uuid::Uuid>,
        /// Print JSON: [{"id", "external_id", "reference", "created", "updated", "revision", "cancelled", "archived", "systems"}].
        #[arg(long)]
        json: bool,
    },
    /// Show an order (by id or external id), its state per system and its
    /// timeline.
    Show {
        /// The order's UUID or its external_id.
        id: String,
        /// Print JSON: {"order", "systems", "timeline"}.
        #[arg(long)]
        json: bool,
    },
}

/// A command's failure, with its exit code (documented in the man pages'
/// EXIT STATUS, see [`man_sections`]).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Bad config (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Anything that went wrong while running (exit 1): the error and its
    /// causes, each once (see [`chain`]).
    #[error("{}", chain(.0))]
    Runtime(#[from] anyhow::Error),
    /// The daemon ran the command and it failed with this code and message.
    #[error("{message}")]
    Remote { code: u8, message: String },
}

/// An error and its causes on one line, `: `-separated like anyhow's
/// `{:#}`, but each text once: a cause its parent's message already shows
/// is left out. (An error that both prints its source and returns it from
/// `source()`, such as `HttpError::Bind` with the OS error or
/// `StoreError::Db` with sled's, printed it twice: `… Address already in
/// use (os error 98): Address already in use (os error 98)`.)
pub fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

impl CliError {
    /// 2 for usage and config errors, 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 2,
            CliError::Runtime(_) => 1,
            CliError::Remote { code, .. } => *code,
        }
    }
}

impl From<crate::engine::EngineError> for CliError {
    fn from(e: crate::engine::EngineError) -> Self {
        CliError::Runtime(e.into())
    }
}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> Self {
        CliError::Runtime(e.into())
    }
}

/// A man page section clap cannot derive from the argument definitions:
/// its title and its entries (term, text).
pub type ManSection = (&'static str, &'static [(&'static str, &'static str)]);

/// The sections every man page gets after its options (the Debian package's
/// pages, written by `examples/deb-assets.rs`): exit codes as
/// [`CliError::exit_code`] gives them, the environment read, the files used.
pub const MAN_SECTIONS: &[ManSection] = &[
    (
        "EXIT STATUS",
        &[
            ("0", "Success."),
            (
                "1",
                "A runtime failure: the store is missing, locked or failed, a file could not be processed (run --once), validate found an invalid file, status --wait timed out.",
            ),
            (
                "2",
                "A usage or config error: bad arguments, no config file found, a config that does not parse or has a bad value (every key named), a configured folder that is not a folder, an [http] listen address that cannot be bound (check).",
            ),
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            (
                "ORDERSYNC_CONFIG",
                "The config file, as --config (which takes precedence).",
            ),
            (
                "RUST_LOG",
                "What is logged on stderr: error, warn, info, debug or trace, optionally per module (ordersync=debug). The default: info for run and status --wait, warn for the other commands (they print their result, nothing else).",
            ),
            (
                "the variable [store] url_env names",
                "With [store] backend = \"postgres\": the PostgreSQL URL (postgresql://user:password@host/db, or key=value conninfo), read when the config is loaded; the way to keep a password out of the config file (in a systemd drop-in's EnvironmentFile=, for the service). [store] url gives it in the file instead.",
            ),
            (
                "NOTIFY_SOCKET, WATCHDOG_USEC",
                "Set by systemd for a Type=notify service: run reports READY, STATUS, WATCHDOG and STOPPING.",
            ),
            (
                "JOURNAL_STREAM",
                "Set by systemd: when it names stderr, each log line carries its journald priority.",
            ),
        ],
    ),
    (
        "FILES",
        &[
            (
                "./config.toml",
                "The config when neither --config nor ORDERSYNC_CONFIG names one and it exists in the current folder.",
            ),
            (
                "/etc/ordersync/config.toml",
                "Otherwise the config, as the Debian package installs it. When neither exists the command exits 2 naming both.",
            ),
            (
                "STATE (the config's [paths] state)",
                "The state: sled's database (the default backend). With [store] backend = \"postgres\" the state is in a PostgreSQL database instead ([store] url or url_env) and this folder keeps only the control socket. With [cluster] (node, lease), two machines share that database as an active/standby pair: one node leads, the other takes over within the lease; each keeps its own STATE folder.",
            ),
            (
                "STATE/ordersync.sock",
                "The running daemon's control socket in the state folder ([paths] state; /var/lib/ordersync with the package's config): the other commands go through it while the daemon runs.",
            ),
            (
                "/usr/share/doc/ordersync/",
                "README.md; GUIDE.md, the manual; CONTRACT.md, the contract to hand partners (every config key, the file formats, the guarantees), with order.schema.json, the order format as a JSON Schema; DEPLOY.md.",
            ),
        ],
    ),
];

/// Runs a parsed command line. `args` are the arguments as given (without
/// the program name), forwarded to a running daemon for the commands that
/// need the store.
pub fn run(cli: Cli, args: &[String]) -> Result<(), CliError> {
    let given = cli.config.as_deref();
    let load = || -> Result<Config, CliError> {
        Ok(Config::load(&crate::config::locate(
            given,
            &crate::config::SEARCH_PATH,
        )?)?)
    };
    match cli.command {
        Command::Init { dir } => init::run(dir.as_deref().unwrap_or(Path::new("."))),
        Command::Check => check::run(&load()?),
        Command::Run { once } => run::run(load()?, once),
        Command::Status {
            json,
            wait: true,
            timeout,
        } => status::wait(&load()?, json, timeout),
        Command::Dump { output } => dump::run(&load()?, args, output.as_deref()),
        Command::Restore { file } => {
            out!("{}", dump::restore(&load()?, &file)?);
            Ok(())
        }
        Command::Validate { system, files } => {
            // A config is optional here: none found means the defaults.
            let path = match crate::config::locate(given, &crate::config::SEARCH_PATH) {
                Ok(path) => path,
                Err(_) => PathBuf::from("config.toml"),
            };
            validate::run(&path, system.as_deref(), &files)
        }
        command => {
            let config = load()?;
            // sled allows one process: when the daemon runs, it answers.
            let mut out = io::BufWriter::with_capacity(64 * 1024, stdout());
            let asked = crate::control::ask_to(&config.paths.state, args, &mut out)
                .map_err(|e| anyhow::anyhow!("asking the running daemon: {e}"))?;
            if let Some((code, stderr)) = asked {
                flush(&mut out)?;
                return match code {
                    0 => Ok(()),
                    code => Err(CliError::Remote {
                        code,
                        message: stderr,
                    }),
                };
            }
            // Usage errors (exit 2) come before a missing store (exit 1).
            check_usage(&config, &command)?;
            // A sled store at rest: its counts without opening it.
            if let Command::Status { json, .. } = &command
                && let Some(text) = status::at_rest(&config, *json)
            {
                out!("{text}");
                return Ok(());
            }
            let engine = crate::control::open_engine(&config, crate::control::OpenMode::Existing)?;
            // A command that writes holds the writer's lease on PostgreSQL
            // (inside the daemon, the daemon's).
            if let Command::Reexport { .. } = &command {
                crate::cluster::hold_for_command(&engine, "`reexport`")?;
            }
            let done = execute(&engine, command, &mut out);
            flush(&mut out)?;
            done
        }
    }
}

/// Runs a command that reads or changes the store, writing what it prints
/// to `out` as it goes. Used by the CLI (store opened here, `out` its
/// stdout) and by the daemon's control socket (`out` the socket).
pub fn execute(e: &Engine, command: Command, out: &mut dyn io::Write) -> Result<(), CliError> {
    let text = match command {
        // --wait is handled before a command reaches the daemon.
        Command::Status { json, .. } => status::run(e, json)?,
        Command::Orders { command } => return orders::run(e, command, out),
        Command::Inventory { sku, json } => inventory::run(e, sku.as_deref(), json)?,
        Command::Reexport { system, since } => reexport::run(e, &system, &since)?,
        Command::Init { .. }
        | Command::Check
        | Command::Run { .. }
        | Command::Validate { .. }
        | Command::Dump { .. }
        | Command::Restore { .. } => {
            return Err(CliError::Usage(
                "this command does not go through the daemon".into(),
            ));
        }
    };
    out.write_all(text.as_bytes()).map_err(printing)
}

/// A failure to write what a command prints (a closed pipe, a full disk).
pub fn printing(e: io::Error) -> CliError {
    CliError::Runtime(anyhow::anyhow!("writing the output: {e}"))
}

/// Set once a write to standard output found its reader gone (EPIPE).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Standard output as the commands write it: a write that fails because
/// the reader went away (`ordersync check | head -1`) is noted, so that the
/// failure it returns, however it is wrapped on the way up, ends the
/// process quietly ([`stdout_closed`]). Rust ignores SIGPIPE, so without
/// this `print!` panics there; restoring SIGPIPE instead would also kill a
/// command silently on a write to a closed socket (the daemon's, a
/// PostgreSQL server's), which must be an error it reports or retries.
pub struct Stdout(io::StdoutLock<'static>);

/// The process's standard output, for a command's output.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

/// Whether a write to standard output found its reader gone: the command
/// then stops, and `main` exits 0 without a message (the reader wanted no
/// more, as `head` does), as ripgrep does.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

impl Stdout {
    fn note<T>(r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Self::note(self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Self::note(self.0.flush())
    }
}

/// Flushes what a command printed.
fn flush(out: &mut dyn io::Write) -> Result<(), CliError> {
    out.flush().map_err(printing)
}

/// The checks of a command's arguments that need no store, made before
/// opening it. The commands make them again: the daemon runs them too.
fn check_usage(config: &Config, command: &Command) -> Result<(), CliError> {
    let (system, since) = match command {
        Command::Reexport { system, since } => (Some(system), Some(since)),
        Command::Orders {
            command: OrdersCommand::List { system, .. },
        } => (system.as_ref(), None),
        _ => (None, None),
    };
    if let Some(s) = system
        && config.system(s).is_none()
    {
        return Err(CliError::Usage(format!(
            "--system {s:?} is not a configured system"
        )));
    }
    if let Some(since) = since {
        reexport::parse_since(since)?;
    }
    Ok(())
}

/// UNIX ms as RFC 3339 UTC, e.g. `2026-11-22T14:43:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// Rows as left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A JSON value on one line.
fn json_line(v: &serde_json::Value) -> String {
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors that print their source and also return it from `source()`
    /// are shown with that text once; other causes are all kept.
    #[test]
    fn a_runtime_error_names_each_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let bind = crate::http::HttpError::Bind {
            addr: "127.0.0.1:80".parse().unwrap(),
            source: io(),
        };
        let shown = CliError::Runtime(bind.into()).to_string();
        assert_eq!(shown.matches(&io().to_string()).count(), 1, "{shown}");
        let db = crate::store::StoreError::Db(sled::Error::Io(io()));
        let shown = CliError::from(db).to_string();
        assert_eq!(shown.matches(&io().to_string()).count(), 1, "{shown}");
        let context = anyhow::Error::from(io()).context("opening the outbox");
        assert_eq!(
            CliError::Runtime(context).to_string(),
            format!("opening the outbox: {}", io())
        );
    }
}
