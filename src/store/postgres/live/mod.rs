//! The store's [`Backend`] on PostgreSQL: the daemon's records in the
//! tables of `migrations/`, one table per kind of record, read and written
//! through a small pool of connections.
//!
//! - **A group is one transaction.** [`Backend::commit`] writes a group's
//!   changes, the applied-file rows among them, in one transaction: they
//!   are all there or none is. `applied_files` is unique on (name, SHA-256),
//!   so a second process applying the same file fails its whole group.
//! - **One writing process.** Every write transaction is fenced by the
//!   writer's lease ([`super::lease`]): it commits only while this process
//!   holds the lease, whatever happened to its sessions. A process alone on
//!   the store (no `[cluster]`) also takes a session-level advisory lock on
//!   a connection of its own when it opens the store, as a fast refusal of
//!   a second `run` (as a second one on the same sled folder is refused);
//!   safety does not rest on it: it is lost with its session (a terminated
//!   backend, a restarted server), the lease is not.
//! - **Derived records are the tables' own.** The listing entries of the
//!   export states ([`Key::Index`]) and the external-id lookups
//!   ([`Key::External`], [`Key::ExternalUuid`]) are the indexes of
//!   `export_states` and `orders`: writes of them are ignored, reads of
//!   them are queries on those tables.
//! - **A commit is durable**, so [`Backend::flush`] has nothing to do.
//!
//! Where each part lives:
//!
//! - `mod.rs` (here): [`Live`] and its fields, [`Live::open`] (the pool,
//!   the schema, the session), small accessors, the dump and restore entry
//!   points (each on a connection of its own, [`super::Postgres`]).
//! - `pool.rs`: [`Conn`] (a connection and its prepared statements), the
//!   pool's manager, outages told once, `Live::read` (a read again on
//!   another connection when one turns out dead).
//! - `session.rs`: the session outside the pool and the writer's advisory
//!   lock (`take_session`, `on_session`).
//! - `writer.rs`: the writer's lease (take, renew, deadline, step down, a
//!   command's keeper thread, let go on drop) and node names.
//! - `backend.rs`: `impl Backend for Live`: point reads, `commit` (the
//!   fence in its transaction), ids, paged scans.
//! - `rows.rs`: a row decoded into a record (shared with `prefetch.rs`).
//!
//! [`Key::Index`]: super::super::keys::Key::Index
//! [`Key::External`]: super::super::keys::Key::External
//! [`Key::ExternalUuid`]: super::super::keys::Key::ExternalUuid

// Without the `tls` feature the connector is `NoTls`, which is `Copy`.
#![cfg_attr(not(feature = "tls"), allow(clippy::clone_on_copy))]

mod backend;
mod pool;
mod rows;
mod session;
mod writer;

pub use pool::{Conn, tell_outages_with};
pub(super) use rows::{export_at, order_of};

use std::sync::Mutex;
use std::time::Duration;

use postgres::Client;

use super::super::StoreError;
use super::super::backend::Backend;
use super::super::dump::{DumpError, Restored};
use super::lease::Fence;
use super::{PgError, shown};
use pool::{Manager, Outage, PoolErrors};
use writer::Keeper;

/// How long a connection to the server is waited for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a connection of the pool: when the server is
/// down, every call fails after this (`/healthz` answers 503 in it).
const POOL_WAIT: Duration = Duration::from_secs(2);

/// The store on PostgreSQL.
pub struct Live {
    pool: r2d2::Pool<Manager>,
    /// Boxed: `Engine::Postgres` would be far larger than `Engine::Sled`
    /// (clippy's large_enum_variant).
    config: Box<postgres::Config>,
    /// The connector `config`'s `sslmode` and `sslrootcert` ask for.
    tls: super::tls::Tls,
    /// The server for messages (never the password).
    server: String,
    /// The connection that holds `WRITER_LOCK` (`session.rs`).
    session: Mutex<Option<Client>>,
    /// Held by the one writer staging a group.
    writer: Mutex<()>,
    /// Ids handed out: the next one and the end of its block.
    ids: Mutex<(u64, u64)>,
    /// The writer's lease that fences every write.
    fence: std::sync::Arc<Fence>,
    /// A node of a pair (`[cluster]`): no writer's advisory lock.
    paired: bool,
    /// The session held the advisory lock once: losing it later (the
    /// session ended) is no refusal, the lease decides.
    opened: std::sync::atomic::AtomicBool,
    /// A command's lease keeper ([`Live::hold_lease`]), stopped and the
    /// lease let go when the store is closed.
    keeper: Mutex<Option<Keeper>>,
    /// A writing process: the watch of its commits waiting on synchronous
    /// standbys (`sync_wait.rs`).
    sync_wait: Option<super::sync_wait::Watch>,
    /// The server's outage going on, if any: logged once.
    outage: Outage,
}

/// How to reach the server.
pub struct Options<'a> {
    pub url: &'a str,
    pub pool_size: u32,
    pub statement_timeout: Option<Duration>,
    /// How long the writer's lease lasts: `[cluster] lease`, or the
    /// default for a process alone.
    pub lease: Duration,
    /// This process is a node of a pair (`[cluster]`).
    pub paired: bool,
}

impl Live {
    /// Connects to the database at `options.url`, takes the writer's lock
    /// and, with `create`, brings the schema to this binary's version;
    /// without it, the schema must be there and this binary's.
    pub fn open(options: &Options, create: bool) -> Result<Live, StoreError> {
        let server = shown(options.url);
        let (mut config, tls) = super::tls::connector(options.url)
            .map_err(|e| StoreError::Server(format!("PostgreSQL at {server}: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if let Some(t) = options.statement_timeout {
            set_millis(&mut config, "statement_timeout", t);
        }
        config.application_name("ordersync");
        let mut first =
            super::Postgres::with_config(&config, tls.clone(), &server).map_err(from_pg)?;
        if create {
            first.migrate().map_err(from_pg)?;
        } else {
            first.check_schema().map_err(from_pg)?;
        }
        // A process frozen inside a transaction holds the lease's row
        // from its fence to its COMMIT: the server ends such a session
        // after the lease, so that another process can take over.
        let mut pooled = config.clone();
        set_millis(
            &mut pooled,
            "idle_in_transaction_session_timeout",
            options.lease,
        );
        let pids = super::sync_wait::Pids::default();
        let outage = Outage {
            server: server.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(POOL_WAIT)
            .test_on_check_out(false)
            // r2d2 logs each failed connection of each slot (every second
            // while the server is down, naming no server): one line per
            // outage instead, naming the server (`Outage`), by the pool or
            // by the daemon (`daemon::retry::store_failed`), whichever sees it first.
            .error_handler(Box::new(PoolErrors {
                outage: outage.clone(),
            }))
            .build_unchecked(Manager {
                config: pooled,
                tls: tls.clone(),
                pids: pids.clone(),
                outage: outage.clone(),
            });
        let sync_wait = create.then(|| {
            super::sync_wait::Watch::start(config.clone(), tls.clone(), server.clone(), pids)
        });
        let live = Live {
            pool,
            config: Box::new(config),
            tls,
            server,
            session: Mutex::new(None),
            writer: Mutex::new(()),
            ids: Mutex::new((0, 0)),
            fence: std::sync::Arc::new(Fence::new(options.lease)),
            paired: options.paired,
            opened: Default::default(),
            keeper: Mutex::new(None),
            sync_wait,
            outage,
        };
        live.take_session()?;
        live.on_session(|c| live.fence.read_clock(c))?;
        Ok(live)
    }

    /// Where the store is, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A connection of its own for the dump and restore.
    fn own(&self) -> Result<super::Postgres, StoreError> {
        super::Postgres::with_config(&self.config, self.tls.clone(), &self.server).map_err(from_pg)
    }

    /// The whole state as a dump, from one snapshot (see
    /// [`super::Postgres::dump_to`]).
    pub fn dump_to(&self, out: &mut dyn std::io::Write) -> Result<u64, DumpError> {
        self.own()?.dump_to(out)
    }

    /// Whether the store holds nothing yet.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.own()?.is_empty().map_err(from_pg)
    }

    /// Loads a dump into this (empty) store, in one transaction.
    pub fn restore_from(&self, input: impl std::io::BufRead) -> Result<Restored, DumpError> {
        let _writer = self.lock();
        let done = self.own()?.restore_from(input)?;
        // Ids handed out from here on come after the restored ones.
        *self.ids.lock().unwrap_or_else(|e| e.into_inner()) = (0, 0);
        Ok(done)
    }

    /// Now, by the database server's clock (see [`Fence::now`]).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.fence.now()
    }

    fn err(&self, e: postgres::Error) -> StoreError {
        from_pg(super::pg_error(&self.server, &e))
    }

    /// Why the store is not healthy although it answers: a commit of this
    /// process waiting on synchronous standbys that do not answer
    /// (`sync_wait.rs`).
    pub fn sync_wait(&self) -> Option<String> {
        self.sync_wait
            .as_ref()
            .and_then(super::sync_wait::Watch::reason)
    }

    /// The server's replication, as `status` warns of it
    /// ([`super::replication_warning`]).
    pub fn replication_warning(&self) -> Result<Option<String>, StoreError> {
        self.read(|c| super::replication_warning(&mut c.client))
    }

    /// The writer's lease.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Whether this process is a node of a pair (`[cluster]`).
    pub fn paired(&self) -> bool {
        self.paired
    }
}

/// Sets the server setting `name` to `value` in milliseconds for every
/// session `config` opens (after the URL's own `options`).
fn set_millis(config: &mut postgres::Config, name: &str, value: Duration) {
    let mut given = config.get_options().unwrap_or("").to_string();
    given.push_str(&format!(" -c {name}={}", value.as_millis()));
    config.options(given.trim());
}

fn from_pg(e: PgError) -> StoreError {
    match e {
        PgError::Missing(server) => StoreError::Missing(format!("the database at {server}")),
        e @ PgError::Newer { .. } => StoreError::Schema(e.to_string()),
        e @ PgError::Refused { .. } => StoreError::Refused(e.to_string()),
        e => StoreError::Server(e.to_string()),
    }
}
