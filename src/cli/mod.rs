//! The command line (SPEC §10): argument parsing and one module per
//! subcommand. Every command works whether or not the daemon is running.

mod check;
mod init;
mod inventory;
mod orders;
mod reexport;
mod run;
mod status;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::engine::Engine;

/// ordersync: moves sales orders between systems through files.
#[derive(Debug, Parser)]
#[command(name = "ordersync", version, about)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        env = "ORDERSYNC_CONFIG",
        default_value = "config.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented config.toml and the folders into DIR (default: .).
    Init { dir: Option<PathBuf> },
    /// Validate the config, print resolved paths and systems.
    Check,
    /// Run the daemon in the foreground.
    Run {
        /// Drain the inbox, export, exit.
        #[arg(long)]
        once: bool,
    },
    /// Per system: pending / written / acked; orders; errors.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List or show orders.
    Orders {
        #[command(subcommand)]
        command: OrdersCommand,
    },
    /// Stock per SKU: in_stock, reserved, available.
    Inventory {
        #[arg(long)]
        sku: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Make every order acked by SYSTEM at or after SINCE pending again.
    Reexport {
        #[arg(long)]
        system: String,
        /// RFC 3339 time, UNIX milliseconds, or a date (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// List orders, optionally only those of one system in one state.
    List {
        #[arg(long)]
        system: Option<String>,
        #[arg(long, value_parser = ["pending", "written", "acked"])]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show an order (by id or external id), its state per system and its
    /// timeline.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// A command's failure, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Bad config (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Anything that went wrong while running (exit 1).
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
}

impl CliError {
    /// 2 for usage and config errors, 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 2,
            CliError::Runtime(_) => 1,
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

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Init { dir } => init::run(dir.as_deref().unwrap_or(Path::new("."))),
        Command::Check => check::run(&Config::load(&cli.config)?),
        Command::Run { once } => run::run(Config::load(&cli.config)?, once),
        Command::Status { json } => status::run(&open(&cli.config)?, json),
        Command::Orders { command } => orders::run(&open(&cli.config)?, command),
        Command::Inventory { sku, json } => {
            inventory::run(&open(&cli.config)?, sku.as_deref(), json)
        }
        Command::Reexport { system, since } => reexport::run(&open(&cli.config)?, &system, &since),
    }
}

/// Loads the config and opens the store for a command.
fn open(config: &Path) -> Result<Engine, CliError> {
    Ok(Engine::open(Config::load(config)?)?)
}

/// UNIX ms as RFC 3339 UTC, e.g. `2026-11-22T14:43:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// Prints rows as left-aligned columns separated by two spaces.
fn print_table(rows: &[Vec<String>]) {
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
        println!("{}", line.trim_end());
    }
}

/// Prints a JSON value on one line.
fn print_json(v: &serde_json::Value) {
    println!("{v}");
}
