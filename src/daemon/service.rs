//! The daemon as a service of its host: [`Systemd`] sends systemd's
//! notifications (`READY`, `STATUS`, `WATCHDOG`, `STOPPING`; nothing
//! without `NOTIFY_SOCKET`), [`spawn_signal_listener`] turns SIGTERM and
//! SIGINT into the stop flags and a [`Hint::Wake`], and
//! [`raise_nofile_limit`] makes room for descriptors.
//!
//! The watchdog is pinged from the loop itself (`ping_if_due`), never from
//! another thread, so a stuck loop is noticed; `STOPPING` is sent by the
//! loop too, so that it is delivered before the process exits. The signal
//! handlers are registered before `spawn_signal_listener` returns, so a
//! signal right after start-up is not lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Hint;

/// systemd notifications (nothing happens without `NOTIFY_SOCKET`).
pub struct Systemd {
    /// Half of `WATCHDOG_USEC`, when the watchdog is on.
    watchdog: Option<Duration>,
    last_ping: Instant,
    last_status: String,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET` / `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Systemd {
        Systemd {
            watchdog: sd_notify::watchdog_enabled().map(|d| d / 2),
            last_ping: Instant::now(),
            last_status: String::new(),
        }
    }

    pub(super) fn send(&self, states: &[sd_notify::NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    pub(super) fn ready(&mut self, status: &str) {
        self.send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ]);
        self.last_status = status.to_string();
    }

    pub(super) fn status(&mut self, status: &str) {
        if status != self.last_status {
            self.send(&[sd_notify::NotifyState::Status(status)]);
            self.last_status = status.to_string();
        }
    }

    /// Pings the watchdog if half its interval has passed. Called from the
    /// loop itself, so a stuck loop is noticed.
    pub(super) fn ping_if_due(&mut self) {
        if let Some(every) = self.watchdog
            && self.last_ping.elapsed() >= every
        {
            self.send(&[sd_notify::NotifyState::Watchdog]);
            self.last_ping = Instant::now();
        }
    }

    pub(super) fn next_ping(&self) -> Option<Instant> {
        self.watchdog.map(|every| self.last_ping + every)
    }
}

pub(super) fn spawn_signal_listener(
    flags: [Arc<AtomicBool>; 2],
    tx: SyncSender<Hint>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal listener")?;
    // Register before returning, so a signal right after start-up is caught.
    let (mut term, mut int) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                loop {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    flags[1].store(true, Ordering::SeqCst);
                    if flags[0].swap(true, Ordering::SeqCst) {
                        tracing::info!("already stopping: finishing the file in hand");
                    } else {
                        tracing::info!("stopping: finishing the file in hand");
                    }
                    let _ = tx.try_send(Hint::Wake);
                }
            });
        })?;
    Ok(())
}

/// Raises the soft limit on open descriptors to the hard limit (systemd's
/// default soft limit is 1024; the unit sets `LimitNOFILE=`), so that
/// inbox scans, the store and the HTTP server's connections have room. The
/// HTTP server keeps a reserve below whatever limit results
/// (`crate::http::serve::connection_cap`). A failure only keeps the limit.
pub(super) fn raise_nofile_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let before = limit.current;
    limit.current = limit.maximum;
    match setrlimit(Resource::Nofile, limit) {
        Ok(()) => {
            tracing::debug!(from = ?before, to = ?limit.current, "raised the open-files soft limit")
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files soft limit to the hard limit")
        }
    }
}
