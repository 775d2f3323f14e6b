//! `ordersync run`: the long-running daemon.
//!
//! One loop does all the work, one file at a time: every time it wakes it
//! scans the inbox (the truth), waits out `settle` for each file, processes
//! the ready ones, then exports. It wakes on a *hint* — a file system event,
//! an overflow, a signal, a control command — or on a timer: the next settle
//! deadline, the periodic rescan (or the poll interval with `poll = true`),
//! a retry, resend checks and the systemd watchdog. The only data a hint
//! carries is which file a writer wrote to or closed ([`Hint::Written`],
//! [`Hint::Closed`]), so that a file with an open writer is held back
//! however long the writer stalls ([`Settle`]); a lost or coalesced event
//! can only delay a scan, never lose a file, and lost events (an overflow,
//! a full channel) make every file fall back to stability, so none is held
//! back forever.
//!
//! Failures (an unreadable inbox on a network share, a full disk, an outbox
//! that cannot be written) are logged and retried with backoff; the daemon
//! keeps running. SIGTERM/SIGINT finish the file in hand and exit 0.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::config::Config;
use crate::control;
use crate::engine::{DrainStats, Engine, Outcome};
use crate::inbox::{self, Settle};

/// Why the loop should look at the inbox now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Something changed in the inbox (a file appeared, was renamed or
    /// removed…).
    Changed,
    /// A file was written to (or created): it is held back until its
    /// close-write event, however long the writer stalls.
    Written(PathBuf),
    /// A file opened for writing was closed: from now on stability decides.
    Closed(PathBuf),
    /// Events were lost (queue overflow): a full rescan, and files fall
    /// back to stability until new events for them are seen.
    Rescan,
    /// Wake up: a signal, or the store changed through the control socket.
    Wake,
}

/// How often the inbox is scanned with `poll = true` (or when no watcher
/// could be set up).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Capacity of the hint channel. When it is full, hints are dropped: the
/// queued ones already wake the loop for a full scan, and [`run_loop`]
/// treats this many hints received back to back as a possible loss (a
/// dropped close event), so files fall back to stability instead of being
/// held back forever.
pub const HINTS: usize = 1024;
/// Events closer together than this share one scan.
const COALESCE: Duration = Duration::from_millis(20);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    let engine = Arc::new(control::open_engine(&config)?);
    engine.reconcile_systems()?;
    let (tx, rx) = sync_channel(HINTS);
    let shutdown = Arc::new(AtomicBool::new(false));
    spawn_signal_listener(shutdown.clone(), tx.clone())?;

    let inbox_dir = engine.config.paths.inbox.clone();
    let poll = engine.config.inbox.poll;
    let mut watcher: Option<RecommendedWatcher> = None;
    let events = tx.clone();
    let mut watch_inbox = || {
        if poll {
            return false;
        }
        watcher = None; // the old watch, if any, is dead or about to be
        match watch(&inbox_dir, events.clone()) {
            Ok(w) => {
                watcher = Some(w);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the inbox for events; polling instead");
                false
            }
        }
    };
    let wake = tx.clone();
    let _server = control::serve(engine.clone(), move || {
        let _ = wake.try_send(Hint::Wake);
    })
    .context("starting the control socket")?;
    let mut systemd = Systemd::from_env();
    run_loop(&engine, &rx, &shutdown, &mut watch_inbox, &mut systemd)?;
    tracing::info!("stopped");
    Ok(())
}

/// Turns file system events into hints. The callback only converts and
/// `try_send`s: it never blocks the watcher's thread. A full channel drops
/// the hint; the loop notices (see [`HINTS`]).
fn watch(dir: &std::path::Path, tx: SyncSender<Hint>) -> notify::Result<RecommendedWatcher> {
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let ev = match res {
            Ok(ev) if !ev.need_rescan() => ev,
            _ => {
                let _ = tx.try_send(Hint::Rescan);
                return;
            }
        };
        match hint_of(&ev.kind) {
            Some(HintKind::Changed) => {
                let _ = tx.try_send(Hint::Changed);
            }
            Some(HintKind::Written) => {
                for p in ev.paths {
                    let _ = tx.try_send(Hint::Written(p));
                }
            }
            Some(HintKind::Closed) => {
                for p in ev.paths {
                    let _ = tx.try_send(Hint::Closed(p));
                }
            }
            None => {}
        }
    })?;
    w.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(w)
}

enum HintKind {
    Changed,
    Written,
    Closed,
}

/// What an event says. Data written (inotify `IN_MODIFY`, also sent for a
/// truncation) or a file created (`IN_CREATE`) means a writer has it open;
/// `IN_CLOSE_WRITE` that it closed it. Opens and read-only closes say
/// nothing (the daemon's own reads make them) and are not hints. Renames,
/// removals and metadata changes are plain changes: they never hold a file
/// back, since no close event follows them.
fn hint_of(kind: &EventKind) -> Option<HintKind> {
    match kind {
        EventKind::Create(_)
        | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Other) => {
            Some(HintKind::Written)
        }
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(HintKind::Closed),
        EventKind::Access(_) => None,
        _ => Some(HintKind::Changed),
    }
}

fn spawn_signal_listener(flag: Arc<AtomicBool>, tx: SyncSender<Hint>) -> anyhow::Result<()> {
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
                    if flag.swap(true, Ordering::SeqCst) {
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

    fn send(&self, states: &[sd_notify::NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    fn ready(&mut self, status: &str) {
        self.send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ]);
        self.last_status = status.to_string();
    }

    fn status(&mut self, status: &str) {
        if status != self.last_status {
            self.send(&[sd_notify::NotifyState::Status(status)]);
            self.last_status = status.to_string();
        }
    }

    /// Pings the watchdog if half its interval has passed. Called from the
    /// loop itself, so a stuck loop is noticed.
    fn ping_if_due(&mut self) {
        if let Some(every) = self.watchdog
            && self.last_ping.elapsed() >= every
        {
            self.send(&[sd_notify::NotifyState::Watchdog]);
            self.last_ping = Instant::now();
        }
    }

    fn next_ping(&self) -> Option<Instant> {
        self.watchdog.map(|every| self.last_ping + every)
    }
}

/// The identity of a folder: a share unmounted and mounted again, or a
/// folder removed and made again, is another folder, whose events the old
/// watch does not see.
fn identity(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// The loop. `watch` (re)establishes the watch on the inbox and says whether
/// file system events now flow into `hints`; it is called at start and
/// whenever the inbox folder is replaced or comes back. Without events, and
/// while the inbox cannot be read, the inbox is polled every
/// [`POLL_INTERVAL`]; with them it is rescanned every `rescan`. Returns once
/// `shutdown` is set (send a hint to wake it), after the file in hand.
///
/// Whoever `try_send`s into `hints` should give it a capacity of at most
/// [`HINTS`]: that many hints received back to back are taken as a sign
/// that some were dropped.
pub fn run_loop(
    engine: &Engine,
    hints: &Receiver<Hint>,
    shutdown: &AtomicBool,
    watch: &mut dyn FnMut() -> bool,
    systemd: &mut Systemd,
) -> anyhow::Result<()> {
    let cfg = &engine.config;
    let inbox_dir = &cfg.paths.inbox;
    let mut inbox_id = identity(inbox_dir);
    let mut watching = watch();
    tracing::info!(
        inbox = %inbox_dir.display(),
        mode = if watching { "events" } else { "polling" },
        "ordersync running"
    );
    let scan_every = |watching: bool, failing: bool| {
        if watching && !failing {
            cfg.inbox.rescan
        } else {
            Some(POLL_INTERVAL)
        }
    };
    let resend_every = cfg
        .systems
        .iter()
        .filter_map(|s| s.resend_after)
        .min()
        .map(|d| (d / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)));
    let mut settle = Settle::default();
    let mut noted = HashSet::new();
    let mut retry: HashMap<PathBuf, (u32, Instant)> = HashMap::new();
    let mut export_retry: Option<(u32, Instant)> = None;
    let mut scan_failing = false;
    // Totals for the status line.
    let mut totals = DrainStats::default();
    let mut failed: u64 = 0;
    let mut started = false;
    let mut next_timer = Instant::now() + scan_every(watching, false).unwrap_or(Duration::MAX / 4);
    let mut next_resend = resend_every.map(|d| Instant::now() + d);
    let mut last_scan = Instant::now() - COALESCE;

    while !shutdown.load(Ordering::SeqCst) {
        // 1. The truth: a scan of the folder.
        let now = Instant::now();
        if now < last_scan + COALESCE {
            std::thread::sleep(last_scan + COALESCE - now);
        }
        last_scan = Instant::now();
        let id = identity(inbox_dir);
        if id != inbox_id {
            if id.is_some() {
                tracing::warn!(inbox = %inbox_dir.display(), "the inbox folder was replaced (remounted?): watching it again");
                watching = watch();
                settle.events_lost();
            }
            inbox_id = id;
        }
        let candidates = match inbox::scan(inbox_dir, &cfg.inbox, &mut noted) {
            Ok(c) => {
                if scan_failing {
                    tracing::info!(inbox = %inbox_dir.display(), "inbox readable again");
                    scan_failing = false;
                }
                c
            }
            Err(e) => {
                if !scan_failing {
                    tracing::error!(inbox = %inbox_dir.display(), error = %e, "cannot scan the inbox; retrying");
                    scan_failing = true;
                }
                Vec::new()
            }
        };
        let (ready, next_settle) = settle.ready(candidates, &cfg.inbox, Instant::now());
        if !started {
            started = true;
            systemd.ready(&format!("watching {}", inbox_dir.display()));
            tracing::info!(
                ready = ready.len(),
                settling = next_settle.is_some(),
                "start-up scan done"
            );
        }

        // 2. Ready files, oldest first, one at a time.
        for c in &ready {
            if shutdown.load(Ordering::SeqCst) {
                break;
            }
            if retry
                .get(&c.path)
                .is_some_and(|(_, at)| *at > Instant::now())
            {
                continue;
            }
            systemd.status(&format!("processing {}", c.name));
            match engine.process(c) {
                Ok(outcome) => {
                    retry.remove(&c.path);
                    if matches!(outcome, Outcome::NotReady) {
                        continue;
                    }
                    totals.count(&outcome);
                    settle.forget(&c.path);
                }
                Err(e) => {
                    failed += 1;
                    let attempts = retry.get(&c.path).map_or(0, |(n, _)| *n) + 1;
                    let wait = backoff(attempts);
                    tracing::error!(file = %c.name, error = %e, retry_in = ?wait, "could not process; the file stays in the inbox");
                    retry.insert(c.path.clone(), (attempts, Instant::now() + wait));
                }
            }
            systemd.ping_if_due();
        }
        retry.retain(|p, _| p.exists());

        // 3. Export (also finishes batches and resends what is due).
        if export_retry.is_none_or(|(_, at)| at <= Instant::now()) {
            match engine.export() {
                Ok(files) => {
                    totals.export_files += files.len();
                    export_retry = None;
                }
                Err(e) => {
                    let attempts = export_retry.map_or(0, |(n, _)| n) + 1;
                    let wait = backoff(attempts);
                    tracing::error!(error = %e, retry_in = ?wait, "export failed; orders stay pending");
                    export_retry = Some((attempts, Instant::now() + wait));
                }
            }
        }
        systemd.status(&format!(
            "watching {}: {} applied, {} rejected, {} already applied, {} failed, {} export files",
            inbox_dir.display(),
            totals.applied,
            totals.rejected,
            totals.already_applied,
            failed,
            totals.export_files
        ));
        systemd.ping_if_due();

        // 4. Sleep until a hint or the earliest timer.
        let now = Instant::now();
        let every = scan_every(watching, scan_failing).unwrap_or(Duration::MAX / 4);
        if now >= next_timer || now + every < next_timer {
            next_timer = now + every;
        }
        if let Some(at) = next_resend.filter(|at| *at <= now) {
            next_resend = resend_every.map(|d| at.max(now) + d);
        }
        let deadline = [
            Some(next_timer),
            next_settle,
            next_resend,
            systemd.next_ping(),
            retry.values().map(|(_, at)| *at).min(),
            export_retry.map(|(_, at)| at),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(next_timer);
        if shutdown.load(Ordering::SeqCst) {
            break;
        }
        let mut hint = match hints.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(h) => Some(h),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .min(POLL_INTERVAL),
                );
                None
            }
        };
        // Every hint queued, in order. The count runs from the last time the
        // channel was seen empty: a hint dropped because the channel was full
        // means HINTS were queued behind it, all received before the channel
        // is seen empty again.
        let mut received = 0;
        while let Some(h) = hint {
            received += 1;
            match h {
                Hint::Written(p) => settle.written(&p),
                Hint::Closed(p) => settle.closed(&p),
                Hint::Rescan => settle.events_lost(),
                Hint::Changed | Hint::Wake => {}
            }
            hint = hints.try_recv().ok();
        }
        if received >= HINTS {
            tracing::debug!(
                "the hint channel was full: events may be lost; files fall back to stability"
            );
            settle.events_lost();
        }
    }
    // Sent by the loop itself, not the signal thread, so that it is
    // delivered before the process exits.
    systemd.send(&[sd_notify::NotifyState::Stopping]);
    engine.store.flush()?;
    Ok(())
}

fn backoff(attempts: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << attempts.saturating_sub(1).min(6))
        .min(RETRY_MAX)
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
}
