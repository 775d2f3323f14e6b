//! The pool of connections every read and every commit goes through, and
//! how an outage of the server is seen and told.
//!
//! - **A connection keeps its prepared statements** ([`Conn`]): a statement
//!   is prepared once per connection, by its SQL text, so the SQL a caller
//!   passes must be a `&'static str` (one text, one statement).
//! - **A dead connection is not handed out again.** A pooled connection
//!   learns that the server restarted or failed over only when it is used:
//!   [`Live::read`] then marks it dead (the pool drops it) and reads again
//!   on another, at most the pool's size and one more times. Only reads go
//!   again; a commit that fails is the caller's to retry.
//! - **An outage is told once.** The first to see the server unreachable
//!   (the pool's error handler, or the daemon when it set the hooks with
//!   [`tell_outages_with`]) logs it at error level; the next connection
//!   made or read answered logs its end. r2d2's own per-slot lines are
//!   never logged.
//! - **Every connection is listed by its backend's pid** while it is open,
//!   for the watch of commits waiting on synchronous standbys
//!   (`sync_wait.rs`); dropping a `Conn` takes it off the list.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Statement};

use super::super::describe;
use super::Live;
use crate::store::StoreError;

/// A connection and the statements prepared on it.
pub struct Conn {
    pub(super) client: Client,
    pub(super) prepared: HashMap<&'static str, Statement>,
    /// Found dead (the server restarted since its last use): the pool
    /// drops it rather than hand it out again.
    dead: bool,
    /// Its backend's pid, listed in `pids` while it is open (the watch of
    /// commits waiting on synchronous standbys looks for these).
    pid: i32,
    pids: super::super::sync_wait::Pids,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pid);
    }
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        self.prepared.insert(sql, st.clone());
        Ok(st)
    }

    pub(in crate::store::postgres) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.query(&st, params)
    }

    pub(in crate::store::postgres) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<postgres::Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.query_opt(&st, params)
    }
}

/// Makes the pool's connections.
pub(super) struct Manager {
    pub(super) config: postgres::Config,
    pub(super) tls: super::super::tls::Tls,
    pub(super) pids: super::super::sync_wait::Pids,
    pub(super) outage: Outage,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        let mut client = self.config.connect(self.tls.clone())?;
        let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[])?.get(0);
        self.outage.end();
        self.pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid);
        Ok(Conn {
            client,
            prepared: HashMap::new(),
            dead: false,
            pid,
            pids: self.pids.clone(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.dead || conn.client.is_closed()
    }
}

/// Who tells an outage of the server, once: the first to call `first`
/// (true) logs it at error level; `over` (true when one was going on)
/// ends it. A daemon sets the flag its loop and its lease's wait share
/// (`tell_outages_with`); any other process has this module's own.
static OUTAGE_HOOKS: std::sync::OnceLock<OutageHooks> = std::sync::OnceLock::new();

/// `first` and `over`: see [`OUTAGE_HOOKS`].
type OutageHooks = (fn() -> bool, fn() -> bool);

/// This process's outage flag when no hooks are set.
static OUTAGE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes `first` and `over` the process's outage flag (the daemon's; once).
pub fn tell_outages_with(first: fn() -> bool, over: fn() -> bool) {
    let _ = OUTAGE_HOOKS.set((first, over));
}

/// An outage of the server, as the pool and the reads see it.
#[derive(Clone, Debug)]
pub(super) struct Outage {
    pub(super) server: String,
}

impl Outage {
    /// Marks an outage begun: true when none was going on (the caller
    /// logs it).
    fn begin(&self) -> bool {
        use std::sync::atomic::Ordering;
        match OUTAGE_HOOKS.get() {
            Some((first, _)) => first(),
            None => !OUTAGE.swap(true, Ordering::SeqCst),
        }
    }

    /// The server answered: an outage going on has ended.
    fn end(&self) {
        use std::sync::atomic::Ordering;
        let was = match OUTAGE_HOOKS.get() {
            Some((_, over)) => over(),
            None => OUTAGE.swap(false, Ordering::SeqCst),
        };
        if was {
            tracing::info!(server = %self.server, "the store's database answers again");
        }
    }
}

/// What the pool does with a connection that failed: the outage's one
/// error line if it is the first to see it, else a debug line; never
/// r2d2's own error line per slot and per try, naming no server.
#[derive(Debug)]
pub(super) struct PoolErrors {
    pub(super) outage: Outage,
}

impl r2d2::HandleError<postgres::Error> for PoolErrors {
    fn handle_error(&self, error: postgres::Error) {
        let server = &self.outage.server;
        if self.outage.begin() {
            tracing::error!(
                "the store failed: PostgreSQL at {server} cannot be reached: {}; tried again as needed",
                describe(&error)
            );
        } else {
            tracing::debug!(server = %server, error = %describe(&error), "a pooled connection failed");
        }
    }
}

impl Live {
    pub(super) fn conn(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        self.pool.get().map_err(|e| {
            StoreError::Server(format!("PostgreSQL at {}: no connection: {e}", self.server))
        })
    }

    /// A read on a pooled connection; when that connection turns out dead
    /// (the server restarted or failed over since it was last used, which
    /// a pooled connection learns only when used), again on another, so
    /// that a restart costs no request an error. Each dead connection is
    /// dropped from the pool: after a restart they all are, one by one,
    /// so at most the pool's size of them is tried before a new one.
    pub(super) fn read<T>(
        &self,
        f: impl Fn(&mut Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut tries = self.pool.max_size() + 1;
        loop {
            let mut conn = self.conn()?;
            match f(&mut conn) {
                Err(e) if is_dead(&e) && tries > 1 => {
                    tries -= 1;
                    conn.dead = true;
                    tracing::debug!(server = %self.server, error = %describe(&e), "a pooled connection was dead; reading again on another");
                }
                Ok(t) => {
                    self.outage.end();
                    return Ok(t);
                }
                Err(e) => return Err(self.err(e)),
            }
        }
    }
}

/// Whether `e` says the connection is gone (closed, the server shut down
/// or restarted: SQLSTATE classes 08 and 57P), not what was asked.
fn is_dead(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.code()
            .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
        || (e.as_db_error().is_none()
            && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()))
}
