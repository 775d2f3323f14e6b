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
//!
//! ## Where each part is
//!
//! - here: [`Hint`], [`run`] (start-up: the signal listener, the store
//!   opened, the watchdog between a big file's chunks, the control socket,
//!   the HTTP API, then the loop) and the loop itself, [`run_loop`] /
//!   `lead_loop`: scan → settle → process ready files in groups → export →
//!   sleep until a hint or the earliest timer.
//! - `lead.rs`: a daemon on PostgreSQL, `lead_when_due`: standby until it
//!   takes the writer's lease, the loop while it leads, standby again when
//!   the lease is lost or the database is gone.
//! - `retry.rs`: failures and backoff: a file's and a system's retry
//!   (`backoff`), the store's outages (`open_when_reachable` at start,
//!   `store_failed` / `store_ok` in the loop, `ends_leading` for what the
//!   loop cannot go on after).
//! - `watcher.rs`: where file system hints come from: the notify watcher
//!   (the callback only converts and `try_send`s) and an inbox folder's
//!   identity, to watch it again when it is replaced.
//! - `service.rs`: the daemon as a service: [`Systemd`] (`READY`,
//!   `STATUS`, `WATCHDOG`, `STOPPING`), the signal listener (SIGTERM and
//!   SIGINT set the stop flags and wake the loop), the open-files limit.
//!
//! Everything here runs on the loop's thread but the watcher's callback,
//! the signal listener's thread and the lease's heartbeat; they reach the
//! loop only through the hint channel and the stop flags.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use notify::RecommendedWatcher;

use crate::config::Config;
use crate::control;
use crate::engine::{DrainStats, Engine, EngineError, Outcome};
use crate::export::ExportError;
use crate::inbox::{self, Settle};
use crate::store::StoreError;

mod lead;
mod retry;
mod service;
mod watcher;

use lead::lead_when_due;
use retry::{backoff, ends_leading, open_when_reachable, store_failed, store_ok};
pub use service::Systemd;
use service::{raise_nofile_limit, spawn_signal_listener};
use watcher::{identity, watch};

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
/// How often long work (a backlog being exported) logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    raise_nofile_limit();
    let (tx, rx) = sync_channel(HINTS);
    // Also the store's stop flag: SIGTERM also stops a big file between
    // its chunks (it is resumed at the next start).
    let shutdown = Arc::new(AtomicBool::new(false));
    // What ends the loop's leading: a signal, or (a node of a pair) the
    // lease lost. Also the store's stop flag.
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_listener([shutdown.clone(), stop.clone()], tx.clone())?;
    // On PostgreSQL every daemon holds the writer's lease to write: a node
    // of a pair, and one alone (a pair of one, refused while another
    // writer holds it).
    let leased = matches!(config.store.backend, crate::config::Backend::Postgres(_));
    let paired = config.cluster.is_some();
    let Some(mut engine) = open_when_reachable(&config, &shutdown, &rx, !leased)? else {
        tracing::info!("stopped before the store could be opened");
        return Ok(());
    };
    engine.store.set_stop_flag(stop.clone());
    let engine = Arc::new(engine);
    // The store's pool tells an outage through the daemon's one flag.
    crate::store::postgres::live::tell_outages_with(
        crate::cluster::first_to_tell_outage,
        crate::cluster::outage_over,
    );
    let role = crate::cluster::init(&engine);
    // Partners' own SFTP servers: a thread each, transferring while this
    // node leads; stopped (a transfer dropped where it is, the ledger
    // resumes it) before the store is closed.
    #[cfg(feature = "sftp")]
    let remotes = crate::remote::task::spawn(
        &engine,
        &shutdown,
        std::sync::Arc::new(move || role.is_leader()),
    );
    #[cfg(not(feature = "sftp"))]
    if !engine.config.remotes.is_empty() {
        anyhow::bail!("[[remotes]] needs ordersync built with the feature sftp");
    }
    if leased {
        crate::cluster::join(&engine, role, &shutdown)?;
    }
    // A big file is applied in chunks within one step of the loop: the
    // watchdog is pinged between them too (pinging early is harmless).
    if let Some(every) = sd_notify::watchdog_enabled() {
        let last = std::sync::Mutex::new(Instant::now());
        engine.store.on_chunk(Box::new(move || {
            if let Ok(mut last) = last.lock()
                && last.elapsed() >= every / 4
            {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                *last = Instant::now();
            }
        }));
    }

    let inbox_dirs: Vec<PathBuf> = engine
        .config
        .inboxes()
        .into_iter()
        .map(|(_, d)| d.to_path_buf())
        .collect();
    let poll = engine.config.inbox.poll;
    let mut watcher: Option<RecommendedWatcher> = None;
    let events = tx.clone();
    let mut watch_inbox = || {
        if poll {
            return false;
        }
        watcher = None; // the old watch, if any, is dead or about to be
        match watch(&inbox_dirs, events.clone()) {
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
    // The HTTP API, if configured, in its own thread on the same store; a
    // bind failure is fatal, before the loop starts. Dropped (stopped)
    // when the loop ends. A node of a pair serves it as a standby too
    // (503 naming the leader, `/healthz`); a daemon alone on PostgreSQL
    // starts it once it has taken the lease, so that its clients never
    // meet a standby that is only starting.
    let mut http = None;
    let mut serve = || -> anyhow::Result<()> {
        if http.is_none() {
            http = Some(crate::http::start(engine.clone())?);
        }
        Ok(())
    };
    if !leased || paired {
        serve()?;
    }
    let mut systemd = Systemd::from_env();
    let result = if leased {
        lead_when_due(
            &engine,
            role,
            &rx,
            [&shutdown, &stop],
            &tx,
            &mut watch_inbox,
            &mut systemd,
            !paired,
            &mut serve,
        )
    } else {
        run_loop(&engine, &rx, &shutdown, &mut watch_inbox, &mut systemd)
    };
    if leased {
        crate::cluster::leave(&engine, role);
    }
    drop(http);
    #[cfg(feature = "sftp")]
    {
        shutdown.store(true, Ordering::SeqCst);
        for t in remotes {
            let _ = t.join();
        }
    }
    result?;
    // Other threads (the control socket's) hold the engine: the store is
    // closed here, so that its counts are left for `status`.
    engine.store.rest();
    tracing::info!("stopped");
    Ok(())
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
    lead_loop(engine, hints, shutdown, watch, systemd)?;
    // Sent by the loop itself, not the signal thread, so that it is
    // delivered before the process exits.
    systemd.send(&[sd_notify::NotifyState::Stopping]);
    if engine.store.is_open() {
        engine.store.flush()?;
    }
    Ok(())
}

/// The loop's work until `stop` is set: [`run_loop`] without its ending (a
/// node of a pair that steps down goes on as a standby).
fn lead_loop(
    engine: &Engine,
    hints: &Receiver<Hint>,
    shutdown: &AtomicBool,
    watch: &mut dyn FnMut() -> bool,
    systemd: &mut Systemd,
) -> anyhow::Result<()> {
    let cfg = &engine.config;
    let inbox_dir = &cfg.paths.inbox;
    // Every inbox's identity: one replaced is watched again.
    let identities =
        || -> Vec<Option<(u64, u64)>> { cfg.inboxes().iter().map(|(_, d)| identity(d)).collect() };
    let mut inbox_id = identities();
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
    // Per system: one whose outbox fails is retried with backoff while the
    // others go on.
    let mut export_retry: HashMap<String, (u32, Instant)> = HashMap::new();
    // Set while the store fails (a full disk): nothing is processed or
    // exported until it is due, then the store has been reopened.
    let mut store_retry: Option<(u32, Instant)> = None;
    // Set when an export step ended with more to write: the loop comes back
    // at once instead of sleeping.
    let mut export_more = false;
    // Long work logs a progress line every few seconds.
    let mut last_progress = Instant::now();
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
        // A deleted or replaced state folder is fatal: stop (exit 1) rather
        // than write into a database that is gone.
        if let Err(e) = engine.store.check_folder()
            && e.is_fatal()
        {
            return Err(e.into());
        }
        let store_down = store_retry.is_some_and(|(_, at)| at > Instant::now());
        let id = identities();
        if id != inbox_id {
            if id.iter().all(Option::is_some) {
                tracing::warn!(inbox = %inbox_dir.display(), "the inbox folder was replaced (remounted?): watching it again");
                watching = watch();
                settle.events_lost();
            }
            inbox_id = id;
        }
        let candidates = match inbox::scan_all(cfg, &mut noted) {
            Ok(c) => {
                crate::metrics::global().scanned(c.len());
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

        // 2. Ready files, oldest first, in groups (one flush per group); the
        // loop breathes between groups (watchdog, SIGTERM).
        let due: Vec<_> = ready
            .into_iter()
            .filter(|c| {
                retry
                    .get(&c.path)
                    .is_none_or(|(_, at)| *at <= Instant::now())
            })
            .collect();
        let mut rest = &due[..];
        'groups: while !rest.is_empty() {
            if shutdown.load(Ordering::SeqCst) || store_down {
                break;
            }
            systemd.status(&format!(
                "processing {:?} and {} more ready files",
                rest[0].name,
                rest.len() - 1
            ));
            let results = match engine.process_group(rest) {
                Ok(r) => r,
                Err(e) => {
                    // The group's flush failed: its applied files stay in the
                    // inbox (applied again, or archived without effect, later).
                    failed += 1;
                    if e.store_error().is_some_and(ends_leading) {
                        return Err(e.into());
                    }
                    store_failed(engine, &e, &mut store_retry);
                    break;
                }
            };
            let taken = results.len().clamp(1, rest.len());
            for (c, result) in rest.iter().zip(results) {
                match result {
                    Ok(outcome) => {
                        store_ok(&mut store_retry);
                        if let Some((n, _)) = retry.remove(&c.path) {
                            tracing::info!(file = ?c.label(), attempts = n + 1, "processed after earlier failures");
                        }
                        if matches!(outcome, Outcome::NotReady) {
                            continue;
                        }
                        totals.count(&outcome);
                        settle.forget(&c.path);
                    }
                    Err(e) => {
                        failed += 1;
                        if let Some(se) = e.store_error() {
                            // Not this file's fault: every file would fail.
                            if ends_leading(se) {
                                return Err(e.into());
                            }
                            store_failed(engine, &e, &mut store_retry);
                            break 'groups;
                        }
                        let attempts = retry.get(&c.path).map_or(0, |(n, _)| *n) + 1;
                        let wait = backoff(attempts);
                        // Once at error level; the retries (up to a minute
                        // apart, forever) only at debug, so one stuck file
                        // does not flood the log. The others go on meanwhile.
                        if attempts == 1 {
                            tracing::error!(file = ?c.label(), error = %e, "could not process; the file stays in the inbox and is retried with backoff");
                        } else {
                            tracing::debug!(file = ?c.label(), error = %e, attempts, retry_in = ?wait, "still cannot process");
                        }
                        retry.insert(c.path.clone(), (attempts, Instant::now() + wait));
                    }
                }
            }
            rest = &rest[taken..];
            systemd.ping_if_due();
        }
        retry.retain(|p, _| p.exists());

        // 3. Export (also finishes batches and resends what is due).
        let store_down = store_retry.is_some_and(|(_, at)| at > Instant::now());
        if !store_down {
            let now = Instant::now();
            let mut count_failed: Option<StoreError> = None;
            let pending: Vec<String> = cfg
                .systems
                .iter()
                // HTTP systems' orders wait for their clients, not for us.
                .filter(|s| s.transport == crate::config::Transport::Files)
                .filter_map(|s| {
                    match engine
                        .store
                        .count_in_state(&s.id, crate::store::ExportState::Pending)
                    {
                        Ok(n) => (n > 0).then(|| format!("{} {n} orders pending", s.id)),
                        Err(e) => {
                            // Not dropped: the export that follows would
                            // fail the same way; it is the store's outage.
                            count_failed.get_or_insert(e);
                            None
                        }
                    }
                })
                .collect();
            if let Some(e) = count_failed.take() {
                if ends_leading(&e) {
                    return Err(e.into());
                }
                store_failed(engine, &EngineError::Store(e), &mut store_retry);
            }
            if !pending.is_empty() {
                let line = format!("exporting: {}", pending.join(", "));
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    tracing::info!("{line}");
                    last_progress = Instant::now();
                }
                systemd.status(&line);
            }
            // One group of files per system, then the loop breathes (new
            // files, watchdog, signals) and comes back for the rest.
            let report =
                engine.export_systems(|s| export_retry.get(s).is_none_or(|(_, at)| *at <= now), 1);
            export_more = report.more;
            totals.export_files += report.written.len();
            for s in &report.exported {
                export_retry.remove(s);
            }
            if report.failed.is_empty() {
                store_ok(&mut store_retry);
            }
            for (s, e) in report.failed {
                if let ExportError::Store(se) = &e {
                    if ends_leading(se) {
                        return Err(EngineError::Export(e).into());
                    }
                    store_failed(engine, &EngineError::Export(e), &mut store_retry);
                    continue;
                }
                let attempts = export_retry.get(&s).map_or(0, |(n, _)| *n) + 1;
                let wait = backoff(attempts);
                tracing::error!(system = %s, error = %e, retry_in = ?wait, "export failed; orders stay pending");
                export_retry.insert(s, (attempts, Instant::now() + wait));
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
            export_retry.values().map(|(_, at)| *at).min(),
            store_retry.map(|(_, at)| at),
            export_more.then(Instant::now),
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
    if engine.store.is_open() {
        engine.store.flush()?;
    }
    Ok(())
}
