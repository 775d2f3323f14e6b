//! A commit waiting for synchronous standbys, made visible.
//!
//! With `synchronous_standby_names` set, PostgreSQL holds a COMMIT until a
//! standby confirms it; with every standby gone it waits for ever, and no
//! `statement_timeout` ends it (the wait comes after the commit is
//! local). Cancelling it would be dishonest: the server then reports the
//! commit done although no standby has it (its warning "the transaction
//! has already committed locally, but might not have been replicated"),
//! which is exactly the loss synchronous replication is there to prevent;
//! ordersync would archive the files and export the orders. So the wait is
//! not cut; it is watched:
//!
//! - a thread of the writing process looks every second at
//!   `pg_stat_activity` for a backend of its own pool (their pids, kept by
//!   the pool's connections) waiting on `SyncRep`, over a connection of its
//!   own (the pool's may all be taken);
//! - after [`LOG_AFTER`] it logs the wait once at error level, naming the
//!   server and `synchronous_standby_names`, then every [`LOG_EVERY`];
//!   `/healthz` answers 503 with the same reason while it lasts;
//! - when the commit goes through (a standby came back, or the operator
//!   changed `synchronous_standby_names`), it logs how long it waited.
//!
//! Meanwhile the daemon's loop waits in the commit: the group's files stay
//! in the inbox and nothing is exported until a standby has them.

// Without the `tls` feature the connector is `NoTls`, which is `Copy`.
#![cfg_attr(not(feature = "tls"), allow(clippy::clone_on_copy))]

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use postgres::Client;

/// How long a commit waits before the wait is logged and `/healthz` says so.
pub const LOG_AFTER: Duration = Duration::from_secs(5);
/// How often a wait that goes on is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// How often the server is asked.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The backend pids of the pool's connections.
pub(super) type Pids = Arc<Mutex<HashSet<i32>>>;

/// The watch: what it found, for `/healthz`; the thread ends with it.
pub(super) struct Watch {
    reason: Arc<Mutex<Option<String>>>,
}

impl Watch {
    /// Starts the thread that watches the commits of the connections
    /// whose pids are in `pids`, connecting with `config`.
    pub(super) fn start(
        config: postgres::Config,
        tls: super::tls::Tls,
        server: String,
        pids: Pids,
    ) -> Watch {
        let reason = Arc::new(Mutex::new(None));
        let weak = Arc::downgrade(&reason);
        let spawned = std::thread::Builder::new()
            .name("pg-sync-wait".into())
            .spawn(move || watch(&config, &tls, &server, &pids, &weak));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot watch for commits waiting on synchronous standbys");
        }
        Watch { reason }
    }

    /// Why the store is not healthy: a commit waiting on synchronous
    /// standbys for more than [`LOG_AFTER`].
    pub(super) fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A wait being watched: since when (by the server's clock, as seconds
/// waited when first seen) and when it was last logged.
struct Seen {
    logged: Instant,
    secs: f64,
}

fn watch(
    config: &postgres::Config,
    tls: &super::tls::Tls,
    server: &str,
    pids: &Pids,
    reason: &Weak<Mutex<Option<String>>>,
) {
    let mut client: Option<Client> = None;
    let mut seen: Option<Seen> = None;
    loop {
        std::thread::sleep(LOOK_EVERY);
        let Some(reason) = reason.upgrade() else {
            return;
        };
        let ours: Vec<i32> = pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if client.as_ref().is_none_or(Client::is_closed) {
            client = config.connect(tls.clone()).ok();
        }
        let Some(c) = client.as_mut() else { continue };
        let found = match waiting(c, &ours) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(server, error = %super::describe(&e), "cannot look for commits waiting on synchronous standbys");
                client = None;
                continue;
            }
        };
        let mut now = reason.lock().unwrap_or_else(|e| e.into_inner());
        match found {
            Some((secs, names)) if secs >= LOG_AFTER.as_secs_f64() => {
                let why = format!(
                    "PostgreSQL at {server}: a commit has waited {secs:.0} s for a synchronous standby to confirm it (synchronous_standby_names = '{names}'), and none answers: ordersync waits (the files stay in the inbox, nothing is exported) until a standby answers or synchronous_standby_names is changed; the commit is not cancelled, which would leave it on this server only"
                );
                match &mut seen {
                    None => {
                        tracing::error!("{why}");
                        seen = Some(Seen {
                            logged: Instant::now(),
                            secs,
                        });
                    }
                    Some(s) if s.logged.elapsed() >= LOG_EVERY => {
                        tracing::warn!("{why}");
                        s.logged = Instant::now();
                    }
                    Some(_) => {}
                }
                *now = Some(why);
            }
            Some(_) => {}
            None => {
                if let Some(s) = seen.take() {
                    tracing::info!(
                        server,
                        waited_at_least = format!("{:.0} s", s.secs),
                        "the commit waiting for a synchronous standby went through"
                    );
                }
                *now = None;
            }
        }
    }
}

/// The longest wait on `SyncRep` of the backends `pids`: seconds since its
/// COMMIT was sent, and `synchronous_standby_names`.
fn waiting(c: &mut Client, pids: &[i32]) -> Result<Option<(f64, String)>, postgres::Error> {
    if pids.is_empty() {
        return Ok(None);
    }
    let row = c.query_opt(
        "SELECT extract(epoch FROM clock_timestamp() - query_start)::float8,
                current_setting('synchronous_standby_names')
           FROM pg_stat_activity
          WHERE pid = ANY($1) AND wait_event = 'SyncRep'
          ORDER BY query_start LIMIT 1",
        &[&pids],
    )?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}
