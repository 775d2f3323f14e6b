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

// Without the `tls` feature the connector is `NoTls`, which is `Copy`.
#![cfg_attr(not(feature = "tls"), allow(clippy::clone_on_copy))]

mod rows;
use rows::{batch_of, state_of};
pub(super) use rows::{export_at, order_of};
mod pool;
pub use pool::{Conn, tell_outages_with};
use pool::{Manager, Outage, PoolErrors};
mod session;
mod writer;
use writer::Keeper;

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::Client;
use postgres::types::ToSql;
use uuid::Uuid;

use super::super::apply::Progress;
use super::super::backend::{Backend, Changes, Rows, Seek, Value};
use super::super::dump::{DumpError, Restored};
use super::super::keys::{self, Key};
use super::super::records::AppliedFile;
use super::super::{Event, ExportState, StoreError, encode};
use super::lease::Fence;
use super::{PgError, shown};

/// How long a connection to the server is waited for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a connection of the pool: when the server is
/// down, every call fails after this (`/healthz` answers 503 in it).
const POOL_WAIT: Duration = Duration::from_secs(2);

/// How many ids one `event_blocks` value stands for.
const BLOCK: u64 = 1024;

/// How many rows a scan reads at a time.
const PAGE: i64 = 1000;

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
            // by the daemon (`daemon::store_failed`), whichever sees it first.
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

    fn int(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Value>, StoreError> {
        let row = self.read(|c| c.query_opt(sql, params))?;
        Ok(row
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(|n| Value::from(&keys::int(n))))
    }

    fn id(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Value>, StoreError> {
        let row = self.read(|c| c.query_opt(sql, params))?;
        Ok(row.map(|r| Value::from(&r.get::<_, Uuid>(0).as_bytes()[..])))
    }

    fn exists(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Value>, StoreError> {
        let row = self.read(|c| c.query_opt(sql, params))?;
        Ok(row.map(|_| Value::default()))
    }

    /// The rows of `sql` (which takes a cursor as its last parameters and
    /// `PAGE` as its limit), a page at a time.
    fn paged<C, T>(
        &self,
        cursor: C,
        fetch: impl Fn(&mut Conn, &C) -> Result<Vec<postgres::Row>, postgres::Error> + 'static,
        row: impl Fn(&postgres::Row) -> Result<(C, T), StoreError> + 'static,
    ) -> Rows<'_, T>
    where
        C: 'static,
        T: 'static,
    {
        let mut cursor = Some(cursor);
        let mut buffer: VecDeque<T> = VecDeque::new();
        let mut done = false;
        Box::new(std::iter::from_fn(move || {
            loop {
                if let Some(t) = buffer.pop_front() {
                    return Some(Ok(t));
                }
                if done {
                    return None;
                }
                let at = cursor.as_ref()?;
                let rows = match self.read(|c| fetch(c, at)) {
                    Ok(rows) => rows,
                    Err(e) => {
                        done = true;
                        return Some(Err(e));
                    }
                };
                done = (rows.len() as i64) < PAGE;
                for r in &rows {
                    match row(r) {
                        Ok((c, t)) => {
                            cursor = Some(c);
                            buffer.push_back(t);
                        }
                        Err(e) => {
                            done = true;
                            buffer.clear();
                            return Some(Err(e));
                        }
                    }
                }
            }
        }))
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

impl Backend for Live {
    fn prefetches(&self) -> bool {
        true
    }

    fn prefetch(&self, keys: &[Key]) -> Result<Vec<(Key, Option<Value>)>, StoreError> {
        let start = std::time::Instant::now();
        let got = self.read(|c| super::prefetch::prefetch(c, keys))?;
        tracing::trace!(
            keys = keys.len(),
            secs = start.elapsed().as_secs_f64(),
            "read ahead"
        );
        Ok(got)
    }

    fn get(&self, key: &Key) -> Result<Option<Value>, StoreError> {
        match key {
            Key::Order(id) => {
                let row = self.read(|c| c.query_opt(
                        "SELECT id, external_id, revision, sent_sha256, regulated, doc FROM orders WHERE id = $1",
                        &[id]))?;
                Ok(row.map(|r| Value::from(order_of(&r).encode())))
            }
            Key::External(x) => self.id("SELECT id FROM orders WHERE external_id = $1", &[x]),
            Key::ExternalUuid(u) => self.id("SELECT id FROM orders WHERE external_uuid = $1", &[u]),
            Key::Export { system, id } => {
                let row = self.read(|c| {
                    c.query_opt(
                        "SELECT state, sort, file, written_at, acked_at, revision
                           FROM export_states WHERE system = $1 AND order_id = $2",
                        &[system, id],
                    )
                })?;
                let Some(r) = row else { return Ok(None) };
                let rec = export_at(&r, 0, state_of(r.get(0), key)?);
                Ok(Some(Value::from(encode(&rec))))
            }
            Key::Index {
                state,
                system,
                sort,
                id,
            } => self.exists(
                "SELECT 1 FROM export_states
                   WHERE system = $1 AND order_id = $2 AND state = $3 AND sort = $4",
                &[system, id, &state.name(), sort],
            ),
            Key::Event { id, n } => {
                let row = self.read(|c| {
                    c.query_opt(
                        "SELECT at, event, detail FROM events WHERE order_id = $1 AND n = $2",
                        &[id, &(*n as i64)],
                    )
                })?;
                Ok(row.map(|r| {
                    Value::from(encode(&Event {
                        at: r.get(0),
                        event: r.get(1),
                        detail: r.get(2),
                    }))
                }))
            }
            Key::Note { id, system, sha256 } => self.exists(
                "SELECT 1 FROM notes WHERE order_id = $1 AND system = $2 AND sha256 = $3",
                &[id, system, &&sha256[..]],
            ),
            Key::Stock(sku) => self.int("SELECT in_stock FROM stock WHERE sku = $1", &[sku]),
            Key::Reserved(sku) => self.int("SELECT reserved FROM stock WHERE sku = $1", &[sku]),
            Key::File { name, sha256 } => {
                let row = self.read(|c| {
                    c.query_opt(
                        "SELECT at, kind FROM applied_files WHERE name = $1 AND sha256 = $2",
                        &[name, &&sha256[..]],
                    )
                })?;
                Ok(row.map(|r| {
                    Value::from(encode(&AppliedFile {
                        at: r.get(0),
                        kind: r.get(1),
                    }))
                }))
            }
            Key::Progress { name, sha256 } => {
                let row = self.read(|c| {
                    c.query_opt(
                        "SELECT orders FROM file_progress WHERE name = $1 AND sha256 = $2",
                        &[name, &&sha256[..]],
                    )
                })?;
                Ok(row.map(|r| {
                    Value::from(encode(&Progress {
                        orders: r.get::<_, i64>(0) as u64,
                    }))
                }))
            }
            Key::Sequence(system) => self.int(
                "SELECT last FROM export_sequences WHERE system = $1",
                &[system],
            ),
            Key::Batch { system, seq } => {
                let row = self.read(|c| {
                    c.query_opt(
                        "SELECT system, seq, file, orders, size, sha256 FROM export_batches
                           WHERE system = $1 AND seq = $2",
                        &[system, &(*seq as i64)],
                    )
                })?;
                Ok(row.map(|r| Value::from(encode(&batch_of(&r)))))
            }
            // Never kept here: no older version wrote this database.
            Key::OldBatch(_) => Ok(None),
            Key::Fingerprint(system) => {
                let row = self.read(|c| {
                    c.query_opt(
                        "SELECT settings FROM system_settings WHERE system = $1",
                        &[system],
                    )
                })?;
                Ok(row.map(|r| Value::from(r.get::<_, String>(0).as_bytes())))
            }
            Key::OrderCount => self.int("SELECT n FROM order_count", &[]),
            Key::StateCount { state, system } => self.int(
                "SELECT n FROM state_counts WHERE system = $1 AND state = $2",
                &[system, &state.name()],
            ),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(&self, changes: Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let start = std::time::Instant::now();
        let mut conn = self.conn()?;
        let Conn {
            client, prepared, ..
        } = &mut *conn;
        let mut tx = client.transaction().map_err(|e| self.err(e))?;
        super::write::write(&mut tx, prepared, &changes)?.map_err(|e| self.err(e))?;
        if !self.fence.holds(&mut tx).map_err(|e| self.err(e))? {
            // Rolled back when `tx` is dropped: nothing of it is written.
            return Err(self.fenced());
        }
        tx.commit().map_err(|e| self.err(e))?;
        tracing::trace!(
            changes = changes.len(),
            secs = start.elapsed().as_secs_f64(),
            "committed"
        );
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn generate_id(&self) -> Result<u64, StoreError> {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.0 >= ids.1 {
            let block: i64 = self
                .conn()?
                .query_opt("SELECT nextval('event_blocks')", &[])
                .map_err(|e| self.err(e))?
                .map_or(0, |r| r.get(0));
            let start = block as u64 * BLOCK;
            *ids = (start, start + BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn reopen(&self) -> Result<(), StoreError> {
        self.take_session()?;
        // A connection that answers: the server is back.
        self.conn()?
            .client
            .simple_query("")
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn is_open(&self) -> bool {
        true
    }

    fn orders_after(&self, after: Option<Uuid>) -> Rows<'_, (Uuid, Value)> {
        let start = after.unwrap_or_default();
        let inclusive = after.is_none();
        self.paged(
            (start, inclusive),
            |c, (at, inclusive)| {
                if *inclusive {
                    c.query(
                        "SELECT id, external_id, revision, sent_sha256, regulated, doc FROM orders
                           WHERE id >= $1 ORDER BY id LIMIT $2",
                        &[at, &PAGE],
                    )
                } else {
                    c.query(
                        "SELECT id, external_id, revision, sent_sha256, regulated, doc FROM orders
                           WHERE id > $1 ORDER BY id LIMIT $2",
                        &[at, &PAGE],
                    )
                }
            },
            |r| {
                let rec = order_of(r);
                Ok(((rec.id, false), (rec.id, Value::from(rec.encode()))))
            },
        )
    }

    fn index(&self, system: &str, state: ExportState, from: Seek) -> Rows<'_, (i64, Uuid)> {
        let (sort, id, inclusive) = match from {
            Seek::Start => (i64::MIN, Uuid::nil(), true),
            Seek::Sort(sort) => (sort, Uuid::nil(), true),
            Seek::After(sort, id) => (sort, id, false),
        };
        let system = system.to_string();
        let state = state.name();
        self.paged(
            (sort, id, inclusive),
            move |c, (sort, id, inclusive)| {
                if *inclusive {
                    c.query(
                        "SELECT sort, order_id FROM export_states
                           WHERE system = $1 AND state = $2 AND (sort, order_id) >= ($3, $4)
                           ORDER BY sort, order_id LIMIT $5",
                        &[&system, &state, sort, id, &PAGE],
                    )
                } else {
                    c.query(
                        "SELECT sort, order_id FROM export_states
                           WHERE system = $1 AND state = $2 AND (sort, order_id) > ($3, $4)
                           ORDER BY sort, order_id LIMIT $5",
                        &[&system, &state, sort, id, &PAGE],
                    )
                }
            },
            |r| {
                let (sort, id): (i64, Uuid) = (r.get(0), r.get(1));
                Ok(((sort, id, false), (sort, id)))
            },
        )
    }

    fn events(&self, id: Uuid) -> Result<Vec<Value>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT at, event, detail FROM events WHERE order_id = $1 ORDER BY n",
                &[&id],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                Value::from(encode(&Event {
                    at: r.get(0),
                    event: r.get(1),
                    detail: r.get(2),
                }))
            })
            .collect())
    }

    fn totals(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT sku, coalesce(in_stock, 0), coalesce(reserved, 0) FROM stock
                   ORDER BY sku COLLATE \"C\"",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn batches(&self, system: &str) -> Result<Vec<Value>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT system, seq, file, orders, size, sha256 FROM export_batches
                   WHERE system = $1 ORDER BY seq",
                &[&system],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| Value::from(encode(&batch_of(r))))
            .collect())
    }

    fn records(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut pg = self.own()?;
        let mut out = Vec::new();
        pg.dump_to(&mut out)
            .map_err(|e| StoreError::Server(e.to_string()))?;
        let text = String::from_utf8_lossy(&out);
        let mut lines: Vec<(String, Vec<u8>)> = text
            .lines()
            .skip(1)
            .filter(|l| !l.contains("\"ordersync-dump-end\""))
            .map(|l| (l.to_string(), Vec::new()))
            .collect();
        // The counts are part of what a change changes.
        for r in pg
            .client
            .query(
                "SELECT system, state, n FROM state_counts WHERE n <> 0 ORDER BY 1, 2",
                &[],
            )
            .map_err(|e| self.err(e))?
        {
            let (system, state, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            lines.push((
                format!("count {state} {system:?}"),
                n.to_be_bytes().to_vec(),
            ));
        }
        lines.sort();
        Ok(lines)
    }

    fn export_candidates(
        &self,
        system: &str,
        acked_since: Option<i64>,
        narrow: &super::super::http::Narrowing,
    ) -> Rows<'_, super::super::http::Candidate> {
        let query = super::candidates::Query::new(system, acked_since, narrow);
        self.paged(
            None,
            move |c, after| query.fetch(&mut c.client, after.as_ref(), PAGE),
            super::candidates::candidate,
        )
    }
}
