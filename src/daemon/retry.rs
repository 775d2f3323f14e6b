//! Failures and backoff. A file that cannot be processed, or a system
//! whose export fails, is retried on its own with [`backoff`] (1 s
//! doubling to a minute) while the others go on. A store that fails (a
//! full disk, its database down or failing over) holds off all processing
//! and exporting: [`store_failed`] reopens it and probes again after
//! [`store_backoff`] (at most [`STORE_PROBE_MAX`]), [`store_ok`] ends the
//! outage; at start [`open_when_reachable`] waits the same way for a
//! database that cannot be reached. [`ends_leading`] names the store
//! errors the loop must not retry.
//!
//! An outage is logged once at error level, by whoever notices it first
//! (this loop, the wait for the lease, the store's connection pool:
//! `cluster::first_to_tell_outage`); retries only at debug, so that a
//! stuck file or a long outage does not flood the log. Files in hand during
//! an outage stay in the inbox and are applied again, once, later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::{Hint, Systemd};
use crate::config::Config;
use crate::control;
use crate::engine::{Engine, EngineError};
use crate::store::StoreError;

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// The longest pause between two probes of a store that fails (its
/// database down, restarting, failing over): a probe is one connection,
/// cheap, and a promoted replica is used as soon as it answers rather
/// than after what is left of a minute's backoff.
const STORE_PROBE_MAX: Duration = Duration::from_secs(2);

/// Opens the store and reconciles the systems' eligibility; while its
/// database server cannot be reached (a PostgreSQL that is down or
/// restarting), waits with backoff, logging the cause once, until it can or
/// a signal stops the daemon (`None`). Any other failure ends the daemon.
pub(super) fn open_when_reachable(
    config: &Config,
    shutdown: &AtomicBool,
    hints: &Receiver<Hint>,
    reconcile: bool,
) -> anyhow::Result<Option<Engine>> {
    let mut attempts = 0u32;
    loop {
        // Reconciling the systems is the first write: a database that goes
        // away during it is waited for as at the opening. (A node of a pair
        // writes nothing until it leads.)
        let opened = control::open_engine(config, control::OpenMode::Daemon).and_then(|engine| {
            if reconcile {
                engine.reconcile_systems()?;
            }
            Ok(engine)
        });
        match opened {
            Ok(engine) => {
                if attempts > 0 {
                    tracing::info!(
                        attempts = attempts + 1,
                        "the store's database answers: starting"
                    );
                }
                return Ok(Some(engine));
            }
            Err(crate::engine::EngineError::Store(e)) if e.is_unreachable() => {
                attempts += 1;
                let wait = store_backoff(attempts);
                if attempts == 1 {
                    tracing::error!(error = %e, retry_in = ?wait, "the store's database cannot be reached; waiting for it, with backoff");
                } else {
                    tracing::debug!(error = %e, attempts, retry_in = ?wait, "the store's database still cannot be reached");
                }
                Systemd::from_env().status("waiting for the store's database");
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    if shutdown.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    let _ = hints.recv_timeout(Duration::from_millis(250));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A store error the loop cannot go on after: the state folder gone, or
/// (a node of a pair) a write the lease's fence refused.
pub(super) fn ends_leading(e: &StoreError) -> bool {
    e.is_fatal() || e.is_fenced()
}

/// The store failed (`e`): reopens it, which clears the error sled keeps
/// after a failed write, and holds off processing with backoff. Files in
/// hand were not moved, and what they applied was not flushed, so they are
/// applied again, once, when the store works. Logged at error level the
/// first time only.
pub(super) fn store_failed(
    engine: &Engine,
    e: &EngineError,
    store_retry: &mut Option<(u32, Instant)>,
) {
    let attempts = store_retry.map_or(0, |(n, _)| n) + 1;
    let wait = store_backoff(attempts);
    // One line per outage, whoever notices it first: this loop, the wait
    // for the lease, or the store's connection pool (a connection that
    // failed, also when only `/healthz` asked).
    if attempts == 1 && crate::cluster::first_to_tell_outage() {
        tracing::error!(error = %e, retry_in = ?wait, "the store failed; reopening it and retrying with backoff, files stay in the inbox");
    } else {
        tracing::debug!(error = %e, attempts, retry_in = ?wait, "the store still fails");
    }
    if let Err(e) = engine.store.reopen() {
        tracing::debug!(error = %e, "reopening the store failed; retrying");
    }
    *store_retry = Some((attempts, Instant::now() + wait));
}

/// The store worked: ends an outage.
pub(super) fn store_ok(store_retry: &mut Option<(u32, Instant)>) {
    if let Some((n, _)) = store_retry.take() {
        crate::cluster::outage_over();
        tracing::info!(attempts = n, "the store works again");
    }
}

pub(super) fn backoff(attempts: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << attempts.saturating_sub(1).min(6))
        .min(RETRY_MAX)
}

/// The pause before probing a failing store again: 1 s, then
/// [`STORE_PROBE_MAX`].
fn store_backoff(attempts: u32) -> Duration {
    backoff(attempts).min(STORE_PROBE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }

    #[test]
    fn a_failing_store_is_probed_every_two_seconds_at_most() {
        assert_eq!(store_backoff(1), Duration::from_secs(1));
        assert_eq!(store_backoff(2), Duration::from_secs(2));
        assert_eq!(store_backoff(30), Duration::from_secs(2));
    }
}
