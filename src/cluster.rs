//! One writer per PostgreSQL store, and an active/standby pair
//! (`[cluster]`): several nodes run `ordersync run` on one PostgreSQL store
//! and one shared spool, and one of them leads.
//!
//! - **Every writer holds the lease.** On PostgreSQL a daemon alone is a
//!   pair of one: it takes the same lease, renews it and is fenced by it,
//!   and is refused at start, naming the holder, while another process
//!   holds it. Commands that write without a daemon (`run --once`,
//!   `reexport`, `status --wait` doing the work, `restore`) hold it for
//!   their run ([`hold_for_command`]).
//! - **Nodes.** Each daemon claims its node name in the store at start
//!   ([`join`]): a name a live process holds is refused, and so is a node
//!   whose settings differ from a live node's, naming each difference.
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

use anyhow::anyhow;
use uuid::Uuid;

use crate::config::Config;
use crate::daemon::Hint;
use crate::engine::Engine;
use crate::store::postgres::nodes::Claim;

/// This process's part in its store: set once by `run`.
#[derive(Debug)]
pub struct Role {
    /// Its `[cluster] node` (the host name by default).
    pub node: String,
    /// One of a pair (`[cluster]`); false for a daemon alone on its store,
    /// which leads whenever it holds the lease (always, on sled).
    pub paired: bool,
    /// This process's claim of its node name in the store (`nodes`).
    pub token: Uuid,
    leading: AtomicBool,
    /// The node that holds the lease, as last seen.
    leader: Mutex<Option<String>>,
}

static ROLE: OnceLock<Role> = OnceLock::new();

/// An outage of the store was logged (at error level, once), by the
/// daemon's loop or by its wait for the lease; cleared when the store
/// answers again. One line per outage, whoever notices it first.
static OUTAGE: AtomicBool = AtomicBool::new(false);

/// Whether the caller is the first to notice the outage in hand (and
/// logs it at error level).
pub fn first_to_tell_outage() -> bool {
    !OUTAGE.swap(true, Ordering::SeqCst)
}

/// The store answers: whether an outage was in hand (now over).
pub fn outage_over() -> bool {
    OUTAGE.swap(false, Ordering::SeqCst)
}

/// The running daemon's role; `None` in a process that is no daemon (a CLI
/// command with the store opened itself).
pub fn role() -> Option<&'static Role> {
    ROLE.get()
}

/// Sets this process's role: a daemon alone on sled leads at once; on
/// PostgreSQL every daemon starts as a standby and leads once it holds the
/// lease.
pub fn init(engine: &Engine) -> &'static Role {
    ROLE.get_or_init(|| {
        let paired = engine.config.cluster.is_some();
        let node = node_name(&engine.config);
        let leads = engine.store.postgres().is_none();
        crate::metrics::global().set_leader(leads);
        Role {
            leader: Mutex::new(leads.then(|| node.clone())),
            leading: AtomicBool::new(leads),
            node,
            paired,
            token: Uuid::new_v4(),
        }
    })
}

/// This process's node name: `[cluster] node`, else the host name.
pub fn node_name(config: &Config) -> String {
    config
        .cluster
        .as_ref()
        .map_or_else(crate::config::host_name, |c| c.node.clone())
}

/// What a node's settings are, as the other nodes compare them: every
/// setting that changes what is done with the shared store and spool.
pub fn settings(config: &Config) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    let mut put = |k: String, v: String| {
        map.insert(k, serde_json::Value::String(v));
    };
    let p = &config.paths;
    put("inbox".into(), p.inbox.display().to_string());
    put("outbox".into(), p.outbox.display().to_string());
    put("archive".into(), p.archive.display().to_string());
    put("errors".into(), p.errors.display().to_string());
    put(
        "inbox.ready_marker".into(),
        format!("{:?}", config.inbox.ready_marker),
    );
    put(
        "inbox.ignore".into(),
        format!("{:?}", config.inbox.ignore_patterns),
    );
    put(
        "inventory.allow_negative".into(),
        config.inventory.allow_negative.to_string(),
    );
    put(
        "lease".into(),
        humantime::format_duration(
            config
                .cluster
                .as_ref()
                .map_or(crate::config::DEFAULT_LEASE, |c| c.lease),
        )
        .to_string(),
    );
    let systems: Vec<&str> = config.systems.iter().map(|s| s.id.as_str()).collect();
    put("systems".into(), systems.join(", "));
    for s in &config.systems {
        let mut sys = |k: &str, v: String| put(format!("systems.{}.{k}", s.id), v);
        sys("transport", format!("{:?}", s.transport).to_lowercase());
        sys("format", format!("{:?}", s.format).to_lowercase());
        sys("batch_size", s.batch_size.to_string());
        sys("eligibility", s.eligibility_fingerprint());
        sys("include_lines", s.include_lines.to_string());
        sys("ready_marker", s.ready_marker.to_string());
        sys(
            "resend_after",
            s.resend_after
                .map_or("0s".into(), |d| humantime::format_duration(d).to_string()),
        );
        sys("auto_ack", s.auto_ack.to_string());
        sys("auto_ack_regulate", s.auto_ack_regulate.to_string());
        sys(
            "csv",
            format!("{:?} {} {}", s.csv_delimiter as char, s.csv_crlf, s.csv_bom),
        );
        sys(
            "inbox",
            s.inbox
                .as_ref()
                .map_or(String::new(), |d| d.display().to_string()),
        );
    }
    serde_json::Value::Object(map)
}

/// The settings in which `mine` and `theirs` differ, one line each.
pub fn differences(mine: &serde_json::Value, theirs: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        mine.as_object().unwrap_or(&empty),
        theirs.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let shown = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => format!("{s:?}"),
        Some(v) => v.to_string(),
        None => "(not set)".into(),
    };
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} here, {} there", shown(a.get(k)), shown(b.get(k))))
        .collect()
}

/// Claims this daemon's node name in the store and checks its settings
/// against the live nodes'. A name held by a live process is waited for
/// up to a lease (it may be this daemon's predecessor, killed), then
/// refused; settings that differ from a live node's are refused, naming
/// each difference. Nothing to do on sled.
pub fn join(engine: &Engine, role: &Role, shutdown: &AtomicBool) -> anyhow::Result<()> {
    let Some(pg) = engine.store.postgres() else {
        return Ok(());
    };
    let mine = settings(&engine.config);
    let lease = pg.fence().lease;
    let start = Instant::now();
    // The server may go away (restart, fail over) right after the store
    // opened: that is waited for here as everywhere else, not fatal.
    let outage = |e: &crate::store::StoreError| -> bool {
        if !e.is_unreachable() || shutdown.load(Ordering::SeqCst) {
            return false;
        }
        if first_to_tell_outage() {
            tracing::error!(error = %e, "the store failed while this node joined it; trying again every second");
        }
        std::thread::sleep(Duration::from_secs(1));
        true
    };
    loop {
        let claim = match pg.claim_node(&role.node, role.token, &mine) {
            Ok(claim) => claim,
            Err(e) if outage(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        match claim {
            Claim::Held => break,
            Claim::Taken { seen_ms } => {
                if start.elapsed() > lease + Duration::from_secs(1)
                    || shutdown.load(Ordering::SeqCst)
                {
                    return Err(anyhow!(
                        "the node name {:?} is in use by another running ordersync on this store (seen {:.1} s ago by the database's clock): give each node its own name ([cluster] node; a daemon alone is named after its host)",
                        role.node,
                        seen_ms / 1000.0
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let others = loop {
        match pg.other_nodes(&role.node) {
            Ok(others) => break others,
            Err(e) if outage(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if outage_over() {
        tracing::info!("the store works again: its database answers");
    }
    for other in others {
        let diff = differences(&mine, &other.settings);
        if !diff.is_empty() {
            let _ = pg.leave_node(&role.node, role.token);
            return Err(anyhow!(
                "this node's settings differ from those of node {:?}, which runs on the same store{}: {}. Every node on one store must run the same configuration (stop the others to change it)",
                other.node,
                if other.paired { " (of a pair)" } else { "" },
                diff.join("; ")
            ));
        }
    }
    Ok(())
}

/// Gives this daemon's node name up (a clean stop).
pub fn leave(engine: &Engine, role: &Role) {
    if let Some(pg) = engine.store.postgres()
        && let Err(e) = pg.leave_node(&role.node, role.token)
    {
        tracing::debug!(error = %e, "the node name could not be given up: it goes stale after a lease");
    }
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
/// once per outage and tried again. With `refuse`, another process that
/// still holds the lease after a lease and a second of waiting (so it
/// renews it: it runs) is an error naming it: a daemon alone starting
/// beside another writer. An error too: this node's name taken by another
/// process meanwhile.
pub fn wait_to_lead(
    engine: &Engine,
    role: &Role,
    shutdown: &AtomicBool,
    hints: &Receiver<Hint>,
    status: &mut dyn FnMut(&str),
    refuse: bool,
) -> anyhow::Result<Option<i64>> {
    let Some(pg) = engine.store.postgres() else {
        return Ok(None);
    };
    let lease = pg.fence().lease;
    let every = (lease / 5).min(Duration::from_secs(1));
    let mut seen: Option<String> = None;
    let start = Instant::now();
    loop {
        if shutdown.load(Ordering::SeqCst) {
            return Ok(None);
        }
        match pg
            .node_seen(&role.node, role.token)
            .and_then(|ours| Ok((ours, pg.take_lease(&role.node)?)))
        {
            Ok((false, _)) => {
                let _ = pg.step_down(true);
                return Err(name_taken(role));
            }
            Ok((true, Some(epoch))) => {
                if outage_over() {
                    tracing::info!("the store works again: its database answers");
                }
                return Ok(Some(epoch));
            }
            Ok((true, None)) => {
                if outage_over() {
                    tracing::info!("the store works again: its database answers");
                }
                let holder = pg.lease_holder().ok().flatten().filter(|h| h.live);
                // This very process may hold it: a take that committed
                // while the server went away before it answered. That
                // lease runs out unrenewed and is taken then; it is no
                // other writer to refuse.
                let ours = holder.as_ref().is_some_and(|h| {
                    let me = crate::store::postgres::lease::process();
                    !me.is_empty() && h.process == me
                });
                let name = holder.map(|h| h.node);
                if refuse && !ours && start.elapsed() > lease + Duration::from_secs(1) {
                    return Err(anyhow!(
                        "another ordersync process writes this store: {} holds the writer's lease on {} and renews it. One daemon per store (or an active/standby pair, [cluster])",
                        name.as_deref()
                            .map_or("a process".into(), |n| format!("node {n:?}")),
                        pg.server()
                    ));
                }
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
                if first_to_tell_outage() {
                    tracing::error!(error = %e, "the store failed: the writer's lease could not be read or taken; trying again every second");
                } else {
                    tracing::debug!(error = %e, "the lease could not be read or taken");
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

fn name_taken(role: &Role) -> anyhow::Error {
    anyhow!(
        "the node name {:?} was claimed by another ordersync process on this store while this one was frozen or cut off: stopping (give each node its own name, [cluster] node)",
        role.node
    )
}

/// A command that writes the store without a daemon (`run --once`,
/// `reexport`, `status --wait` doing the work, `restore`): on PostgreSQL it
/// holds the writer's lease, as this node, until the store is closed, or
/// is refused naming the process that holds it (see
/// `store::Store::hold_lease`). A daemon alone's engine holds it from its
/// opening already (`Engine::open`); a node of a pair's takes it here.
pub fn hold_for_command(engine: &Engine, what: &str) -> Result<(), crate::store::StoreError> {
    engine.store.hold_lease(&node_name(&engine.config), what)
}

/// This node leads under `epoch` from now on.
pub fn lead(role: &Role, epoch: i64) {
    tracing::info!(node = %role.node, epoch, "became the leader");
    role.set(true, Some(role.node.clone()));
}

/// This node leads no more (`why`): every write is refused from here on.
/// Said at warning level, but for an `outage` of the store (already
/// logged once as such): then at info.
pub fn step_down(engine: &Engine, role: &Role, why: &str, outage: bool) {
    if let Some(pg) = engine.store.postgres() {
        let _ = pg.step_down(false);
    }
    if role.is_leader() {
        if outage {
            tracing::info!(node = %role.node, reason = %why, "not leading while the store cannot be reached: the writer's lease is taken again when it answers");
        } else if role.paired {
            tracing::warn!(node = %role.node, reason = %why, "stepped down to standby");
        } else {
            tracing::warn!(node = %role.node, reason = %why, "this daemon (alone on its store, no [cluster]) lost the writer's lease: it writes nothing until it holds it again");
        }
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
            let lease = pg.fence().lease;
            let every = lease / 5;
            let mut renewed = Instant::now();
            let mut outage = false;
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
                        outage = e.is_unreachable();
                        break format!(
                            "the lease could not be renewed within {}: {e}",
                            humantime::format_duration(lease)
                        );
                    }
                    Err(e) => {
                        // The outage is the loop's to log, once.
                        tracing::debug!(error = %e, "the lease could not be renewed; trying again");
                    }
                }
                if let Ok(false) = pg.node_seen(&role.node, role.token) {
                    break name_taken(role).to_string();
                }
            };
            step_down(&engine, role, &lost, outage);
            stop.store(true, Ordering::SeqCst);
            let _ = wake.try_send(Hint::Wake);
        })
}
