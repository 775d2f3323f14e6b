//! `ordersync run [--once]`.

use super::CliError;
use crate::config::Config;
use crate::control::{OpenMode, open_engine};
use crate::engine::Engine;

pub fn run(config: Config, once: bool) -> Result<(), CliError> {
    // The first line says which config and which store: a config switched
    // to PostgreSQL and one still on sled look alike otherwise.
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.file.display(),
        store = %config.store_shown(),
        "ordersync starting"
    );
    if once {
        let engine = open_engine(&config, OpenMode::Create)?;
        return once_with(&engine);
    }
    crate::daemon::run(config).map_err(CliError::Runtime)
}

/// `run --once` on an open engine: drain the inbox, export, flush. On
/// PostgreSQL it holds the writer's lease for the run (refused, naming the
/// holder, while a daemon or another command writes the store).
pub fn once_with(engine: &Engine) -> Result<(), CliError> {
    crate::cluster::hold_for_command(engine, "`run --once`")?;
    if engine.store.postgres().is_some() {
        // No write of another process is in flight: what one left half
        // written goes (on sled, the opening did it).
        engine.remove_stale_temporaries()?;
    }
    drain(engine)
}

fn drain(engine: &Engine) -> Result<(), CliError> {
    {
        let s = engine.drain()?;
        engine.store.flush()?;
        tracing::info!(
            applied = s.applied,
            already_applied = s.already_applied,
            rejected = s.rejected,
            export_files = s.export_files,
            failed = s.failed.len(),
            "inbox drained"
        );
        // Every other file was handled; these stay in the inbox, and the
        // exit code says so.
        if !s.failed.is_empty() {
            let list: Vec<String> = s
                .failed
                .iter()
                .map(|(name, why)| format!("{name:?} ({why})"))
                .collect();
            return Err(CliError::Runtime(anyhow::anyhow!(
                "{} file(s) could not be processed and stay in the inbox: {}",
                s.failed.len(),
                list.join("; ")
            )));
        }
    }
    Ok(())
}
