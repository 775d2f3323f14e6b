//! A daemon on PostgreSQL: every daemon there, a node of a pair or one
//! alone, writes only while it holds the writer's lease. [`lead_when_due`]
//! waits as a standby (`cluster::wait_to_lead`), leads (the loop, with the
//! lease's heartbeat on its own thread) until the lease is lost, steps
//! down and waits again, until a signal; a clean stop lets the lease go.
//!
//! What ends leading decides what follows: a write the fence refused or a
//! database that cannot be reached makes the node a standby again (the
//! lease decides who leads next); any other error ends the daemon as it
//! would end one alone. The lease itself and the fence are the store's
//! (`store/postgres/lease.rs`); the node's role and its claim are
//! `cluster.rs`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use anyhow::Context as _;

use super::{Hint, Systemd, lead_loop};
use crate::engine::{Engine, EngineError};
use crate::store::StoreError;

/// A daemon on PostgreSQL: waits as a standby until it takes the lease,
/// leads (the loop) until the lease is lost, then waits again; until a
/// signal. A clean stop lets the lease go, so that another node takes over
/// at once. A daemon `alone` (no `[cluster]`) is refused at start while
/// another process holds the lease and renews it. `leading` is called each
/// time the node has taken the lease, before it works (the HTTP API of a
/// daemon alone starts there); its error ends the daemon.
#[allow(clippy::too_many_arguments)]
pub(super) fn lead_when_due(
    engine: &Arc<Engine>,
    role: &'static crate::cluster::Role,
    hints: &Receiver<Hint>,
    [shutdown, stop]: [&Arc<AtomicBool>; 2],
    wake: &SyncSender<Hint>,
    watch: &mut dyn FnMut() -> bool,
    systemd: &mut Systemd,
    alone: bool,
    leading: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use crate::cluster;
    let mut ready = false;
    let mut first = true;
    loop {
        let refuse = alone && first;
        let epoch = cluster::wait_to_lead(
            engine,
            role,
            shutdown,
            hints,
            &mut |status| {
                if refuse {
                    // A daemon alone is ready once it leads.
                    systemd.status(status);
                } else if ready {
                    systemd.status(status);
                } else {
                    // A standby is up and serving: ready as far as systemd
                    // is concerned.
                    systemd.ready(status);
                    ready = true;
                }
            },
            refuse,
        )?;
        first = false;
        let Some(epoch) = epoch else { break };
        cluster::lead(role, epoch);
        if let Err(e) = leading() {
            if let Some(pg) = engine.store.postgres() {
                let _ = pg.step_down(true);
            }
            return Err(e);
        }
        stop.store(shutdown.load(Ordering::SeqCst), Ordering::SeqCst);
        let done = Arc::new(AtomicBool::new(false));
        let beat = cluster::heartbeat(
            engine.clone(),
            role,
            stop.clone(),
            done.clone(),
            wake.clone(),
        )
        .context("starting the lease's heartbeat")?;
        // No write of ours is in flight: what another leader left half
        // written goes. Then the first write of a leader, fenced like
        // every other.
        let led = match engine
            .remove_stale_temporaries()
            .and_then(|()| engine.reconcile_systems())
        {
            Ok(()) => lead_loop(engine, hints, stop, watch, systemd),
            Err(e) => Err(e.into()),
        };
        done.store(true, Ordering::SeqCst);
        let _ = beat.join();
        if shutdown.load(Ordering::SeqCst) {
            if let Err(e) = led {
                tracing::warn!(error = %format!("{e:#}"), "stopping after an error");
            }
            break;
        }
        let why = match &led {
            Ok(()) => "the lease was lost".to_string(),
            Err(e) => format!("{e:#}"),
        };
        let outage = matches!(&led, Err(e) if is_unreachable(e));
        cluster::step_down(engine, role, &why, outage);
        // A write refused by the fence or a database gone: standby again,
        // and the lease decides. Anything else (the state folder replaced)
        // ends the daemon as it would end one alone.
        if let Err(e) = led
            && !is_fenced(&e)
            && !is_unreachable(&e)
        {
            return Err(e);
        }
        systemd.status("standby");
    }
    systemd.send(&[sd_notify::NotifyState::Stopping]);
    if role.is_leader()
        && let Some(pg) = engine.store.postgres()
    {
        match pg.step_down(true) {
            Ok(()) => tracing::info!("the lease let go for another node"),
            Err(e) => {
                tracing::warn!(error = %e, "the lease could not be let go: another node takes over when it expires")
            }
        }
    }
    Ok(())
}

/// Whether the loop ended on a write the lease's fence refused.
fn is_fenced(e: &anyhow::Error) -> bool {
    store_errors(e).any(StoreError::is_fenced)
}

/// Whether the loop ended because the store's database could not be reached.
fn is_unreachable(e: &anyhow::Error) -> bool {
    store_errors(e).any(StoreError::is_unreachable)
}

fn store_errors(e: &anyhow::Error) -> impl Iterator<Item = &StoreError> {
    e.chain().filter_map(|c| {
        c.downcast_ref::<StoreError>().or_else(|| {
            c.downcast_ref::<EngineError>()
                .and_then(EngineError::store_error)
        })
    })
}
