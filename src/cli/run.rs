//! `ordersync run [--once]`.

use super::CliError;
use crate::config::Config;

pub fn run(config: Config, once: bool) -> Result<(), CliError> {
    if once {
        let engine = crate::control::open_engine(&config)?;
        let s = engine.drain()?;
        engine.store.flush()?;
        tracing::info!(
            applied = s.applied,
            already_applied = s.already_applied,
            rejected = s.rejected,
            export_files = s.export_files,
            "inbox drained"
        );
        return Ok(());
    }
    crate::daemon::run(config).map_err(CliError::Runtime)
}
