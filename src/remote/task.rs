//! A remote's own thread: connect, resume what the ledger left half done,
//! then a pass every `poll`; on a failure, the connection is dropped and
//! made again after a backoff (1 s doubling to 5 minutes). Only while this
//! node leads (a standby transfers nothing; the ledger is in the shared
//! store, so the next leader resumes). One remote that stalls or refuses
//! holds up neither another nor the inbox: each has its thread, its
//! connection and its timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::session::{RemoteError, Session};
use super::status;
use super::transfer::{PassError, Passed, Remote};
use crate::engine::Engine;

/// The longest wait between two attempts of a failing remote.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Starts a thread per configured remote; each ends once `shutdown` is set.
pub fn spawn(
    engine: &Arc<Engine>,
    shutdown: &Arc<AtomicBool>,
    leading: Arc<dyn Fn() -> bool + Send + Sync>,
) -> Vec<std::thread::JoinHandle<()>> {
    let names: Vec<&str> = engine
        .config
        .remotes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    crate::metrics::global().remotes(&names);
    let mut threads = Vec::new();
    for cfg in engine.config.remotes.clone() {
        status::update(&cfg.name, |s| s.state = "connecting");
        for (key, m) in super::local_problems(&cfg) {
            tracing::error!(remote = %cfg.name, key, "{m}");
        }
        let (engine, shutdown, leading) = (engine.clone(), shutdown.clone(), leading.clone());
        let name = cfg.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("remote {name}"))
            .spawn(move || {
                // Multi-threaded (one worker) so that the store's blocking
                // calls can step off it (`block_in_place`).
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(remote = %cfg.name, error = %e, "cannot start the remote's runtime");
                        return;
                    }
                };
                // A panic (a bug) is logged and the remote starts over
                // after a pause: the ledger resumes where it was.
                while !shutdown.load(Ordering::SeqCst) {
                    let remote = Remote::new(cfg.clone(), &engine.config);
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        rt.block_on(run(remote, &engine, &shutdown, &*leading))
                    }));
                    if ran.is_ok() {
                        break;
                    }
                    tracing::error!(remote = %cfg.name, "the remote's task failed (a bug); starting it again in 10 s");
                    status::failed(&cfg.name, "the remote's task failed; see the log", true);
                    std::thread::sleep(Duration::from_secs(10));
                }
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                tracing::error!(remote = %name, error = %e, "cannot start the remote's thread")
            }
        }
    }
    threads
}

/// Sleeps `d`, or less once `shutdown` is set.
async fn nap(d: Duration, shutdown: &AtomicBool) {
    let end = tokio::time::Instant::now() + d;
    while !shutdown.load(Ordering::SeqCst) {
        let now = tokio::time::Instant::now();
        if now >= end {
            return;
        }
        tokio::time::sleep((end - now).min(Duration::from_millis(200))).await;
    }
}

/// Returns once `shutdown` is set.
async fn until(shutdown: &AtomicBool) {
    while !shutdown.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 1 s after the first failure in a row, doubling to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(9)).min(MAX_BACKOFF)
}

async fn run(
    mut remote: Remote,
    engine: &Engine,
    shutdown: &AtomicBool,
    leading: &dyn Fn() -> bool,
) {
    let name = remote.name().to_string();
    let mut session: Option<Session> = None;
    let mut failures: u32 = 0;
    while !shutdown.load(Ordering::SeqCst) {
        if !leading() {
            if session.take().is_some() {
                tracing::info!(remote = %name, "not leading: the remote's connection is closed");
            }
            status::update(&name, |s| s.state = "standby");
            nap(Duration::from_secs(1), shutdown).await;
            continue;
        }
        let work = async {
            if session.is_none() {
                let s = Session::connect(&remote.cfg).await?;
                tracing::info!(remote = %name, host = %remote.cfg.host, "connected");
                remote.resume(&s, &engine.store).await?;
                session = Some(s);
            }
            let s = session.as_ref().expect("connected above");
            remote.pass(s, &engine.store).await
        };
        // A stop drops a transfer wherever it is: the ledger resumes it.
        let result: Result<Passed, PassError> = tokio::select! {
            r = work => r,
            () = until(shutdown) => break,
        };
        match result {
            // Files that failed (each logged): tried again at the next
            // poll, on the same connection (one that broke fails its next
            // listing, and that is a failure of the pass).
            Ok(passed) if passed.errors > 0 => {
                failures = 0;
                // Counted in the metrics per file already.
                let error = format!(
                    "{} file(s) failed; the first: {}",
                    passed.errors,
                    passed.first_error.unwrap_or_default()
                );
                status::update(&name, |s| {
                    s.state = "failing";
                    s.error = Some(error);
                });
                nap(remote.cfg.poll, shutdown).await;
            }
            Ok(passed) => {
                if failures > 0 {
                    tracing::info!(remote = %name, "the remote works again");
                }
                failures = 0;
                status::succeeded(&name);
                if !passed.more {
                    nap(remote.cfg.poll, shutdown).await;
                }
            }
            Err(e) => {
                session = None;
                failures = failures.saturating_add(1);
                let wait = backoff(failures);
                match &e {
                    PassError::Remote(RemoteError::HostKey { .. }) => tracing::error!(
                        remote = %name, error = %e, retry_in = ?wait,
                        "REFUSED: the server's host key is not the one in known_hosts; nothing is transferred until known_hosts is corrected"
                    ),
                    _ => {
                        tracing::warn!(remote = %name, error = %e, retry_in = ?wait, "remote failed")
                    }
                }
                status::failed(&name, &e.to_string(), true);
                nap(wait, shutdown).await;
            }
        }
    }
}
