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
use crate::engine::{DrainStats, Engine, EngineError, Outcome};
use crate::export::ExportError;
use crate::inbox::{self, Settle};
use crate::store::StoreError;

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
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// The longest pause between two probes of a store that fails (its
/// database down, restarting, failing over): a probe is one connection,
/// cheap, and a promoted replica is used as soon as it answers rather
/// than after what is left of a minute's backoff.
const STORE_PROBE_MAX: Duration = Duration::from_secs(2);

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
    // bind failure is fatal here, before the loop starts. Dropped (stopped)
    // when the loop ends.
    let http = crate::http::start(engine.clone())?;
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
        )
    } else {
        run_loop(&engine, &rx, &shutdown, &mut watch_inbox, &mut systemd)
    };
    if leased {
        crate::cluster::leave(&engine, role);
    }
    drop(http);
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// A daemon on PostgreSQL: waits as a standby until it takes the lease,
/// leads (the loop) until the lease is lost, then waits again; until a
/// signal. A clean stop lets the lease go, so that another node takes over
/// at once. A daemon `alone` (no `[cluster]`) is refused at start while
/// another process holds the lease and renews it.
#[allow(clippy::too_many_arguments)]
fn lead_when_due(
    engine: &Arc<Engine>,
    role: &'static crate::cluster::Role,
    hints: &Receiver<Hint>,
    [shutdown, stop]: [&Arc<AtomicBool>; 2],
    wake: &SyncSender<Hint>,
    watch: &mut dyn FnMut() -> bool,
    systemd: &mut Systemd,
    alone: bool,
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

/// Raises the soft limit on open descriptors to the hard limit (systemd's
/// default soft limit is 1024; the unit sets `LimitNOFILE=`), so that
/// inbox scans, the store and the HTTP server's connections have room. The
/// HTTP server keeps a reserve below whatever limit results
/// (`crate::http::serve::connection_cap`). A failure only keeps the limit.
fn raise_nofile_limit() {
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

/// Turns file system events into hints. The callback only converts and
/// `try_send`s: it never blocks the watcher's thread. A full channel drops
/// the hint; the loop notices (see [`HINTS`]).
/// Every inbox (the shared one and the systems' own) is watched; if one
/// cannot be, the caller polls them all.
fn watch(dirs: &[PathBuf], tx: SyncSender<Hint>) -> notify::Result<RecommendedWatcher> {
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
    for dir in dirs {
        w.watch(dir, RecursiveMode::NonRecursive)?;
    }
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

/// Opens the store and reconciles the systems' eligibility; while its
/// database server cannot be reached (a PostgreSQL that is down or
/// restarting), waits with backoff, logging the cause once, until it can or
/// a signal stops the daemon (`None`). Any other failure ends the daemon.
fn open_when_reachable(
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

fn spawn_signal_listener(flags: [Arc<AtomicBool>; 2], tx: SyncSender<Hint>) -> anyhow::Result<()> {
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

/// A store error the loop cannot go on after: the state folder gone, or
/// (a node of a pair) a write the lease's fence refused.
fn ends_leading(e: &StoreError) -> bool {
    e.is_fatal() || e.is_fenced()
}

/// The store failed (`e`): reopens it, which clears the error sled keeps
/// after a failed write, and holds off processing with backoff. Files in
/// hand were not moved, and what they applied was not flushed, so they are
/// applied again, once, when the store works. Logged at error level the
/// first time only.
fn store_failed(engine: &Engine, e: &EngineError, store_retry: &mut Option<(u32, Instant)>) {
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
fn store_ok(store_retry: &mut Option<(u32, Instant)>) {
    if let Some((n, _)) = store_retry.take() {
        crate::cluster::outage_over();
        tracing::info!(attempts = n, "the store works again");
    }
}

fn backoff(attempts: u32) -> Duration {
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
