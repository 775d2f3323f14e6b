//! The `ordersync` binary: parses the command line, sets up logging and hands
//! over to the library. Exit codes: 0 success, 1 runtime failure, 2 usage or
//! config error.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = ordersync::cli::Cli::parse();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match ordersync::cli::run(cli, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ordersync: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}
