//! The store's session: one connection of its own, outside the pool, on
//! which the writer's lease is taken and renewed (and node names claimed),
//! and which, for a process alone on the store (no `[cluster]`), holds the
//! writer's advisory lock.
//!
//! - **The advisory lock is a fast refusal, not the safety.** At the
//!   store's opening a second process alone is refused with
//!   [`StoreError::Locked`] (after [`DEAD_HOLDER_WAIT`] if the holder looks
//!   ended); once this process held it, losing it with its session (a
//!   terminated backend, a restarted server) is only a warning: the lease
//!   ([`super::super::lease`]) fences every write either way.
//! - **A lost session is connected again** by the next call that needs it
//!   ([`Live::on_session`], `Backend::reopen`); a pair's node takes no
//!   advisory lock.

use std::time::Duration;

use postgres::Client;

use super::Live;
use crate::store::StoreError;

/// The advisory lock the one process that writes a store holds.
const WRITER_LOCK: i64 = 0x6f72_6465_7273_7977;

/// How long the writer's advisory lock is waited for at start when the
/// process that held it has ended (its session outlives it until the
/// server notices).
const DEAD_HOLDER_WAIT: Duration = Duration::from_secs(5);

impl Live {
    /// Connects the session that holds the writer's lock (again).
    pub(super) fn take_session(&self) -> Result<(), StoreError> {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if session.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        *session = None;
        let mut client = self
            .config
            .connect(self.tls.clone())
            .map_err(|e| self.err(e))?;
        if self.paired {
            // A pair's nodes share the store: the lease, taken and renewed
            // on this session, decides who writes.
            *session = Some(client);
            return Ok(());
        }
        let try_lock = |client: &mut Client| -> Result<bool, StoreError> {
            Ok(client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
                .map_err(|e| self.err(e))?
                .get(0))
        };
        let mut got = try_lock(&mut client)?;
        if !got && !self.opened.load(std::sync::atomic::Ordering::SeqCst) {
            // Held by a process that has ended (killed, on this machine) or
            // by one that never took the lease: its session goes as soon as
            // the server notices, so the lock is waited for a moment
            // rather than refused. A live holder is refused at once.
            let holder = super::super::lease::holder(&mut client).map_err(|e| self.err(e))?;
            if holder.is_none_or(|h| !h.live || super::super::lease::ended(&h.process)) {
                let until = std::time::Instant::now() + DEAD_HOLDER_WAIT;
                while !got && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                    got = try_lock(&mut client)?;
                }
            }
        }
        let reconnected = self.opened.swap(true, std::sync::atomic::Ordering::SeqCst);
        if !got && !reconnected {
            return Err(StoreError::Locked(format!(
                "the database at {}",
                self.server
            )));
        }
        if !got {
            // The session that held it ended (a terminated backend, a
            // restarted server) and another process has it now: the lease
            // still decides who writes, and refuses that one.
            tracing::warn!(server = %self.server, "the writer's advisory lock was lost with its session and another process holds it now: the writer's lease still fences every write");
        }
        *session = Some(client);
        Ok(())
    }

    /// The session's connection, connected again if it was lost, for `f`.
    pub(super) fn on_session<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        self.take_session()?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let Some(client) = session.as_mut() else {
            return Err(StoreError::Server(format!(
                "PostgreSQL at {}: no session",
                self.server
            )));
        };
        f(client).map_err(|e| self.err(e))
    }
}
