//! The `ordersync` binary: parses the command line, sets up logging and hands
//! over to the library. Exit codes: 0 success, 1 runtime failure, 2 usage or
//! config error.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ordersync::cli::Cli::parse();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    ordersync::logging::init();
    match ordersync::cli::run(cli, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ordersync::logging::fatal(&format!("ordersync: {e:#}"));
            ExitCode::from(e.exit_code())
        }
    }
}
