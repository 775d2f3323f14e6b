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

/// `run --once` on an open engine: drain the inbox, export, flush. A node
/// of a pair (`[cluster]`) does it only while no node leads: it takes the
/// lease for the run and lets it go after.
pub fn once_with(engine: &Engine) -> Result<(), CliError> {
    let Some(pg) = engine.store.postgres().filter(|pg| pg.fence().is_some()) else {
        return drain(engine);
    };
    let node = engine
        .config
        .cluster
        .as_ref()
        .map_or("", |c| c.node.as_str());
    if pg.take_lease(node)?.is_none() {
        let leader = pg
            .lease_holder()?
            .map_or_else(|| "another node".into(), |h| h.node);
        return Err(CliError::Runtime(anyhow::anyhow!(
            "{leader} leads the pair on this store: `run --once` runs only while no node leads (the leader does this work)"
        )));
    }
    let done = engine
        .remove_stale_temporaries()
        .map_err(CliError::from)
        .and_then(|()| drain(engine));
    if let Err(e) = pg.step_down(true) {
        tracing::warn!(error = %e, "the lease could not be let go: another node takes over when it expires");
    }
    done
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
