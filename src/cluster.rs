//! An active/standby pair (`[cluster]`): several nodes run `ordersync run`
//! on one PostgreSQL store and one shared spool, and one of them leads.
//!
//! - **The lease** is a row in the store (`store/postgres/lease.rs`): a
//!   node takes it when it has expired, renews it every fifth of its length
//!   ([`heartbeat`]), and lets it go when it stops. Only the leader reads,
//!   moves or writes spool files, exports and changes the store; a standby
//!   serves `/healthz`, `/readyz`, `/metrics` and `status`, and tries to
//!   take the lease every second ([`wait_to_lead`]).
//! - **The fence.** Every write transaction checks the epoch this node
//!   leads under before its COMMIT (the database refuses it otherwise), and
//!   an export file is written only after its lease was renewed. A node
//!   that finds its lease gone (its renewal refused, or not renewed within
//!   the lease: frozen, cut off) steps down to standby and says why.
//!
//! [`Role`] is what this process is, for the HTTP API, `status` and the
//! metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::daemon::Hint;
use crate::engine::Engine;

/// This process's part in its store: set once by `run`.
#[derive(Debug)]
pub struct Role {
    /// Its `[cluster] node` (the host name by default).
    pub node: String,
    /// One of a pair (`[cluster]`); false for a daemon alone on its store,
    /// which always leads.
    pub paired: bool,
    leading: AtomicBool,
    /// The node that holds the lease, as last seen.
    leader: Mutex<Option<String>>,
}

static ROLE: OnceLock<Role> = OnceLock::new();

/// The running daemon's role; `None` in a process that is no daemon (a CLI
/// command with the store opened itself).
pub fn role() -> Option<&'static Role> {
    ROLE.get()
}

/// Sets this process's role: a daemon alone leads at once; a node of a
/// pair starts as a standby.
pub fn init(engine: &Engine) -> &'static Role {
    ROLE.get_or_init(|| {
        let (node, paired) = match &engine.config.cluster {
            Some(c) => (c.node.clone(), true),
            None => (crate::config::host_name(), false),
        };
        crate::metrics::global().set_leader(!paired);
        Role {
            leader: Mutex::new((!paired).then(|| node.clone())),
            leading: AtomicBool::new(!paired),
            node,
            paired,
        }
    })
}

impl Role {
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// `"leader"` or `"standby"`.
    pub fn name(&self) -> &'static str {
        if self.is_leader() {
            "leader"
        } else {
            "standby"
        }
    }

    /// The node that leads, as last seen (this one when it leads).
    pub fn leader(&self) -> Option<String> {
        self.leader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, leading: bool, leader: Option<String>) {
        *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = leader;
        self.leading.store(leading, Ordering::SeqCst);
        crate::metrics::global().set_leader(leading);
    }
}

/// Waits, as a standby, until this node takes the lease: its epoch, or
/// `None` when `shutdown` was set first. Tries every second (or every fifth
/// of the lease, if shorter); a database that cannot be reached is logged
/// once per outage and tried again.
pub fn wait_to_lead(
    engine: &Engine,
    role: &Role,
    shutdown: &AtomicBool,
    hints: &Receiver<Hint>,
    status: &mut dyn FnMut(&str),
) -> Option<i64> {
    let pg = engine.store.postgres()?;
    let lease = pg.fence().map_or(Duration::from_secs(5), |f| f.lease);
    let every = (lease / 5).min(Duration::from_secs(1));
    let mut unreachable = false;
    let mut seen: Option<String> = None;
    loop {
        if shutdown.load(Ordering::SeqCst) {
            return None;
        }
        match pg.take_lease(&role.node) {
            Ok(Some(epoch)) => return Some(epoch),
            Ok(None) => {
                if unreachable {
                    tracing::info!("the store's database answers again");
                    unreachable = false;
                }
                let holder = pg.lease_holder().ok().flatten().filter(|h| h.live);
                let name = holder.map(|h| h.node);
                if name != seen {
                    match &name {
                        Some(n) => tracing::info!(leader = %n, "standby: another node leads"),
                        None => tracing::info!("standby: no node leads"),
                    }
                    seen = name.clone();
                }
                status(&match &name {
                    Some(n) => format!("standby: {n} leads"),
                    None => "standby".to_string(),
                });
                role.set(false, name);
            }
            Err(e) => {
                if !unreachable {
                    tracing::error!(error = %e, "standby: the lease could not be read or taken (see the error); trying again");
                    unreachable = true;
                }
                status("standby: waiting for the store's database");
            }
        }
        let until = Instant::now() + every;
        while Instant::now() < until && !shutdown.load(Ordering::SeqCst) {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            // Hints are for a leader's loop: a standby drops them.
            let _ = hints.recv_timeout(until.saturating_duration_since(Instant::now()));
        }
    }
}

/// This node leads under `epoch` from now on.
pub fn lead(role: &Role, epoch: i64) {
    tracing::info!(node = %role.node, epoch, "became the leader");
    role.set(true, Some(role.node.clone()));
}

/// This node leads no more (`why`): every write is refused from here on.
pub fn step_down(engine: &Engine, role: &Role, why: &str) {
    if let Some(pg) = engine.store.postgres() {
        let _ = pg.step_down(false);
    }
    if role.is_leader() {
        tracing::warn!(node = %role.node, reason = %why, "stepped down to standby");
    }
    role.set(false, None);
}

/// Renews the lease every fifth of it until `done` is set, on a thread of
/// its own. When the lease is lost (another node holds it, or it could not
/// be renewed within the lease, so another node may have taken it), this
/// node steps down: every write is refused, `stop` is set and the loop is
/// woken, which ends its leading. Returns the thread.
pub fn heartbeat(
    engine: Arc<Engine>,
    role: &'static Role,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    wake: std::sync::mpsc::SyncSender<Hint>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("lease".into())
        .spawn(move || {
            let Some(pg) = engine.store.postgres() else {
                return;
            };
            let Some(lease) = pg.fence().map(|f| f.lease) else {
                return;
            };
            let every = lease / 5;
            let mut renewed = Instant::now();
            let lost = loop {
                let until = Instant::now() + every;
                while Instant::now() < until {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20).min(every));
                }
                // A process frozen past its lease wakes here: the renewal
                // says whether another node took the lease meanwhile (if
                // not, it is still this node's, renewed).
                match pg.renew_lease() {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => {
                        break "another node holds the lease (this node's expired)".to_string();
                    }
                    Err(e) if renewed.elapsed() >= lease * 4 / 5 => {
                        break format!(
                            "the lease could not be renewed within {}: {e}",
                            humantime::format_duration(lease)
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the lease could not be renewed; trying again");
                    }
                }
            };
            step_down(&engine, role, &lost);
            stop.store(true, Ordering::SeqCst);
            let _ = wake.try_send(Hint::Wake);
        })
}
