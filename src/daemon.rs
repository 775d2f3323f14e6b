//! `ordersync run`: the long-running daemon. Scans the inbox, waits out
//! `settle`, processes ready files one at a time and exports continuously,
//! until SIGTERM/SIGINT, which finish the file in hand.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::Config;
use crate::engine::Engine;
use crate::inbox::{self, Settle};

/// How often the inbox is looked at when nothing else says when.
const TICK: Duration = Duration::from_millis(200);

/// Runs until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    let engine = Engine::open(config)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    spawn_signal_listener(shutdown.clone())?;
    engine.export()?;
    let mut settle = Settle::default();
    let mut noted = HashSet::new();
    let inbox_dir = engine.config.paths.inbox.clone();
    tracing::info!(inbox = %inbox_dir.display(), "ordersync running");
    while !shutdown.load(Ordering::SeqCst) {
        let candidates = inbox::scan(&inbox_dir, &engine.config.inbox, &mut noted)
            .with_context(|| format!("scanning {}", inbox_dir.display()))?;
        let (ready, next) = settle.ready(candidates, &engine.config.inbox, Instant::now());
        for c in &ready {
            engine.process(c)?;
            settle.forget(&c.path);
            if shutdown.load(Ordering::SeqCst) {
                break;
            }
        }
        if !ready.is_empty() {
            engine.export()?;
        }
        std::thread::sleep(inbox::until(next, TICK));
    }
    engine.store.flush()?;
    tracing::info!("stopped");
    Ok(())
}

fn spawn_signal_listener(flag: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal listener")?;
    std::thread::spawn(move || {
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutting down: finishing the file in hand");
            flag.store(true, Ordering::SeqCst);
        });
    });
    Ok(())
}
