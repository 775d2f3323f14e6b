//! The writer's lease as this store holds it: taken, renewed, kept by a
//! thread for a command, let go; the deadline for what the database cannot
//! fence; the node names of a pair. The lease's statements and the
//! server's clock are [`super::super::lease`]; the node rows
//! [`super::super::nodes`].
//!
//! - **Every commit checks the fence in its transaction** (`Backend::commit`
//!   in `backend.rs`): a take or a renewal here only sets the epoch that
//!   fence checks; no write may rest on a renewal made earlier (hence
//!   [`Live::lease_deadline`] asks the server each time). An epoch of 0
//!   refuses every write ([`Live::fenced`], [`Live::step_down`]).
//! - **A new lease, a new block of ids**: a take resets the ids handed out,
//!   so an order's timeline stays in order across writers.
//! - **The keeper** ([`Live::hold_lease`]) renews on its own thread and
//!   connection; it is stopped and the lease let go when the store is
//!   dropped (`impl Drop for Live`, here). A daemon renews through its own
//!   loop instead (`crate::cluster`), on the session.

use std::time::Duration;

use postgres::Client;
use uuid::Uuid;

use super::super::lease::{Fence, Holder};
use super::Live;
use crate::store::StoreError;

/// The thread that renews a command's lease, and its stop flag.
pub(super) struct Keeper {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        let keeper = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(k) = keeper {
            k.done.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = k.thread.join();
            if let Err(e) = self.step_down(true) {
                tracing::warn!(error = %e, "the writer's lease could not be let go: another process takes it when it expires");
            }
        }
    }
}

impl Live {
    /// A write refused: this node does not hold the leader's lease.
    pub fn fenced(&self) -> StoreError {
        StoreError::Fenced(format!(
            "PostgreSQL at {}: this process does not hold the writer's lease (another ordersync process writes this store, or this one's lease expired): nothing was written",
            self.server
        ))
    }

    /// Until when this process may write or move a file: half its lease
    /// after it asked to renew it, if the renewal succeeded (the lease then
    /// holds at least that long), else [`StoreError::Fenced`]. For what the
    /// database cannot fence: a file about to be written, an inbox file
    /// about to be archived. Always asked of the server, never taken from
    /// a renewal made earlier: the server's clock decides, and it may have
    /// moved on (or the lease been cut short) since.
    pub fn lease_deadline(&self) -> Result<Option<std::time::Instant>, StoreError> {
        let fence = &self.fence;
        if fence.epoch() == 0 {
            return Err(self.fenced());
        }
        let asked = std::time::Instant::now();
        if self.renew_lease()? {
            Ok(Some(asked + fence.lease / 2))
        } else {
            Err(self.fenced())
        }
    }

    /// Holds the writer's lease for this process's commands (`run
    /// --once`, `reexport`, `restore`, a test's engine) until the store is
    /// closed: taken as `node`, renewed every fifth of the lease on a
    /// thread and a connection of its own. A holder that does not renew it
    /// (killed) is waited for up to a lease and a second; one of this
    /// machine known to have ended, not at all; one that renews it is
    /// [`StoreError::Held`], naming it. Nothing to do when this process
    /// holds it already.
    pub fn hold_lease(&self, node: &str, what: &str) -> Result<(), StoreError> {
        let mut keeper = self.keeper.lock().unwrap_or_else(|e| e.into_inner());
        if keeper.is_some() && self.fence.epoch() != 0 {
            return Ok(());
        }
        let lease = self.fence.lease;
        let start = std::time::Instant::now();
        while self.take_lease(node)?.is_none() {
            if start.elapsed() > lease + Duration::from_secs(1) {
                let holder = self.lease_holder()?.filter(|h| h.live).map_or_else(
                    || "another process".into(),
                    |h| format!("node {:?}", h.node),
                );
                return Err(StoreError::Held(format!(
                    "{holder} holds the writer's lease on the database at {} and renews it: {what} writes only while no other ordersync process does (the daemon that holds it does this work)",
                    self.server
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let fence = self.fence.clone();
        let (config, tls) = ((*self.config).clone(), self.tls.clone());
        let connect = move || config.connect(tls.clone());
        let client = connect().map_err(|e| self.err(e))?;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let thread = std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || keep(&fence, client, connect, &stop))
            .map_err(|e| StoreError::Server(format!("starting the lease's thread: {e}")))?;
        *keeper = Some(Keeper { done, thread });
        Ok(())
    }

    /// Takes the writer's lease for `node` if it is free, or held by a
    /// process of this machine that has ended (see [`super::super::lease::ended`]):
    /// the epoch this process now holds it under, or `None` (another
    /// process holds it).
    pub fn take_lease(&self, node: &str) -> Result<Option<i64>, StoreError> {
        let fence = &self.fence;
        let taken = self.on_session(|c| {
            let dead = super::super::lease::holder(c)?
                .filter(|h| h.live && super::super::lease::ended(&h.process))
                .map(|h| h.process);
            fence.take(c, node, dead.as_deref())
        })?;
        if taken.is_some() {
            // Timeline ids from a block taken from now on: every block
            // comes after those any other process had (`event_blocks`), so
            // an order's timeline stays in order across writers.
            *self.ids.lock().unwrap_or_else(|e| e.into_inner()) = (0, 0);
        }
        Ok(taken)
    }

    /// Renews this process's lease: false when it no longer holds it
    /// (another took it after it expired).
    pub fn renew_lease(&self) -> Result<bool, StoreError> {
        self.on_session(|c| self.fence.holds(c))
    }

    /// Holds the lease no more: every write is refused from now on; with
    /// `release`, the lease is also let go at once (a clean stop) for
    /// another process.
    pub fn step_down(&self, release: bool) -> Result<(), StoreError> {
        if release {
            self.on_session(|c| self.fence.release(c))
        } else {
            self.fence.set_epoch(0);
            Ok(())
        }
    }

    /// Who holds the leader's lease, if any node ever took it.
    pub fn lease_holder(&self) -> Result<Option<Holder>, StoreError> {
        self.on_session(super::super::lease::holder)
    }

    /// Claims the node name `node` for this process (`token`), with its
    /// settings (see [`super::super::nodes`]): taken when a live process holds it.
    pub fn claim_node(
        &self,
        node: &str,
        token: Uuid,
        settings: &serde_json::Value,
    ) -> Result<super::super::nodes::Claim, StoreError> {
        let window = self.fence.lease.as_millis() as f64;
        self.on_session(|c| {
            super::super::nodes::claim(c, node, token, self.paired, settings, window)
        })
    }

    /// The other nodes seen within a lease.
    pub fn other_nodes(&self, node: &str) -> Result<Vec<super::super::nodes::Other>, StoreError> {
        let window = self.fence.lease.as_millis() as f64;
        self.on_session(|c| super::super::nodes::others(c, node, window))
    }

    /// Renews this process's claim of `node`: false when another process
    /// took the name.
    pub fn node_seen(&self, node: &str, token: Uuid) -> Result<bool, StoreError> {
        self.on_session(|c| super::super::nodes::seen(c, node, token))
    }

    /// Gives the node name up (a clean stop).
    pub fn leave_node(&self, node: &str, token: Uuid) -> Result<(), StoreError> {
        self.on_session(|c| super::super::nodes::leave(c, node, token))
    }
}

/// Renews `fence` every fifth of its lease on `client` (connected again by
/// `connect` when its session ends) until `stop`; a lease taken by another
/// process, or not renewed within four fifths of it, ends the holding:
/// every write is refused from then on.
fn keep(
    fence: &Fence,
    mut client: Client,
    connect: impl Fn() -> Result<Client, postgres::Error>,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    use std::time::Instant;
    let every = fence.lease / 5;
    let mut renewed = Instant::now();
    loop {
        let until = Instant::now() + every;
        while Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20).min(every));
        }
        let asked = Instant::now();
        if client.is_closed()
            && let Ok(c) = connect()
        {
            client = c;
        }
        match fence.holds(&mut client) {
            Ok(true) => renewed = asked,
            Ok(false) => {
                tracing::error!(
                    "the writer's lease was taken by another process: nothing more is written"
                );
                fence.set_epoch(0);
                return;
            }
            Err(e) if renewed.elapsed() >= fence.lease * 4 / 5 => {
                tracing::error!(error = %e, "the writer's lease could not be renewed: nothing more is written");
                fence.set_epoch(0);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the writer's lease could not be renewed; trying again")
            }
        }
    }
}
