//! The PostgreSQL side of the store: its schema (versioned migrations in
//! `migrations/`, applied in a transaction under an advisory lock), and
//! so far the portable dump in and out of it. The daemon does not run on
//! it yet: the store's rules move behind a backend interface first (see
//! ARCHITECTURE.md, "Next: one set of rules over two backends"). Until
//! then nothing user-facing reaches this module; its tests run against a
//! real server (`.ci/pg-cluster`).
//!
//! One table per record kind of the dump (CONTRACT §12), not a key-value
//! table: an operator can query it.

use std::io::{BufRead, BufWriter, Write};

use postgres::types::ToSql;
use postgres::{Client, IsolationLevel, Transaction};
use serde_json::Value;
use uuid::Uuid;

use super::batch::Content;
use super::keys::Direction;
use super::{ExportState, StoreError};
mod candidates;
pub mod lease;
pub mod live;
pub mod nodes;
mod prefetch;
mod sync_wait;
mod write;
pub use live::Live;
pub(crate) mod tls;

use super::dump::{
    Admission, DumpError, END, EventSeq, Header, Reader, Record, Restored, Sha256, Trailer, line,
};

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
pub const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_live.sql"),
    include_str!("migrations/0003_http.sql"),
    include_str!("migrations/0004_leader.sql"),
    include_str!("migrations/0005_writers.sql"),
    include_str!("migrations/0006_transfers.sql"),
];

/// The schema version this binary writes and reads.
pub fn schema_version() -> i32 {
    MIGRATIONS.len() as i32
}

/// The advisory lock key under which migrations run ("ordersyn" in ASCII).
const MIGRATION_LOCK: i64 = 0x6f72_6465_7273_796e;

/// A PostgreSQL store that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The server refused or failed: the message names the server, never
    /// the password.
    #[error("PostgreSQL at {server}: {message}")]
    Server { server: String, message: String },
    /// The server answered, and refused: a permission, a schema, a login
    /// ([`is_refusal`]). Waiting does not help; someone must fix it.
    #[error("PostgreSQL at {server}: {message}")]
    Refused { server: String, message: String },
    /// The database's schema is newer than this binary knows.
    #[error(
        "the database at {server} has schema version {found}, newer than this ordersync's {known}: use a newer ordersync"
    )]
    Newer {
        server: String,
        found: i32,
        known: i32,
    },
    /// A read command found no schema: it never creates one.
    #[error(
        "no ordersync store in the database at {0}: has the daemon ever run? (`run`, `init`, `status --wait` and `restore` create it)"
    )]
    Missing(String),
}

pub use crate::pgurl::shown;

/// An open connection to the store's database.
pub struct Postgres {
    client: Client,
    server: String,
}

impl Postgres {
    /// Connects, with TLS as the URL's `sslmode` and `sslrootcert` ask
    /// (store/postgres/tls.rs).
    pub fn connect(url: &str) -> Result<Postgres, PgError> {
        let server = shown(url);
        let (config, tls) = tls::connector(url).map_err(|message| PgError::Server {
            server: server.clone(),
            message,
        })?;
        Postgres::with_config(&config, tls, &server)
    }

    /// Connects with a parsed configuration and its TLS connector
    /// (`tls::connector`); `server` names it in messages.
    pub(crate) fn with_config(
        config: &postgres::Config,
        tls: tls::Tls,
        server: &str,
    ) -> Result<Postgres, PgError> {
        let client = config.connect(tls).map_err(|e| pg_error(server, &e))?;
        Ok(Postgres {
            client,
            server: server.to_string(),
        })
    }

    fn err(&self, e: postgres::Error) -> PgError {
        pg_error(&self.server, &e)
    }

    /// [`replication_warning`] of this connection's server.
    pub fn replication_warning(&mut self) -> Result<Option<String>, PgError> {
        replication_warning(&mut self.client).map_err(|e| self.err(e))
    }

    /// Brings the schema to this binary's version, in one transaction
    /// under an advisory lock (two processes starting at once apply each
    /// migration once); refuses a newer schema. For the commands that may
    /// create a store.
    pub fn migrate(&mut self) -> Result<i32, PgError> {
        let server = self.server.clone();
        let err = |e: postgres::Error| pg_error(&server, &e);
        let mut tx = self.client.transaction().map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(err)?;
        // No notice that the version table exists already, at every start.
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .map_err(err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS ordersync_schema (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .map_err(err)?;
        let found: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM ordersync_schema",
                &[],
            )
            .map_err(err)?
            .get(0);
        if found > schema_version() {
            return Err(PgError::Newer {
                server,
                found,
                known: schema_version(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = i as i32 + 1;
            tx.batch_execute(sql).map_err(err)?;
            tx.execute(
                "INSERT INTO ordersync_schema (version) VALUES ($1)",
                &[&version],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(schema_version())
    }

    /// Checks that the schema exists and is this binary's (for the
    /// commands that never create or migrate).
    pub fn check_schema(&mut self) -> Result<(), PgError> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass('ordersync_schema') IS NOT NULL", &[])
            .map_err(|e| self.err(e))?
            .get(0);
        let found: Option<i32> = match exists {
            false => None,
            true => self
                .client
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM ordersync_schema",
                    &[],
                )
                .map_err(|e| self.err(e))?
                .get(0),
        };
        match found {
            None | Some(0) => Err(PgError::Missing(self.server.clone())),
            Some(v) if v > schema_version() => Err(PgError::Newer {
                server: self.server.clone(),
                found: v,
                known: schema_version(),
            }),
            Some(_) => Ok(()),
        }
    }

    /// Whether the store holds no record.
    pub fn is_empty(&mut self) -> Result<bool, PgError> {
        let any: bool = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM orders) OR EXISTS (SELECT 1 FROM stock)
                     OR EXISTS (SELECT 1 FROM applied_files) OR EXISTS (SELECT 1 FROM file_progress)
                     OR EXISTS (SELECT 1 FROM export_sequences) OR EXISTS (SELECT 1 FROM export_batches)
                     OR EXISTS (SELECT 1 FROM system_settings) OR EXISTS (SELECT 1 FROM transfers)",
                &[],
            )
            .map_err(|e| self.err(e))?
            .get(0);
        Ok(!any)
    }

    /// Loads a dump into this store, which must be empty, in one
    /// transaction: all of it or nothing. The same checks as the sled
    /// store's restore ([`Admission`]); the counts are made at the end.
    pub fn restore_from(&mut self, input: impl BufRead) -> Result<Restored, DumpError> {
        self.migrate().map_err(pg_dump_error)?;
        if !self.is_empty().map_err(pg_dump_error)? {
            return Err(DumpError::NotEmpty(format!(
                "the database at {} already holds a store: restore loads only into an empty one",
                self.server
            )));
        }
        let (_header, mut reader) = Reader::new(input)?;
        let server = self.server.clone();
        let err = move |e: postgres::Error| {
            pg_dump_error(PgError::Server {
                server: server.clone(),
                message: describe(&e),
            })
        };
        let mut tx = self.client.transaction().map_err(&err)?;
        let mut admission = Admission::default();
        let mut done = Restored::default();
        let statements = Statements::prepare(&mut tx).map_err(&err)?;
        while let Some(record) = reader.next_record()? {
            admission.admit(reader.line(), &record)?;
            if matches!(record, Record::Order { .. }) {
                done.orders += 1;
            }
            statements.insert(&mut tx, &record).map_err(&err)?;
            done.records += 1;
        }
        tx.batch_execute(
            "INSERT INTO state_counts (system, state, n)
                 SELECT system, state, count(*) FROM export_states GROUP BY system, state;
             UPDATE order_count SET n = (SELECT count(*) FROM orders);
             SELECT setval('event_blocks', coalesce((SELECT max(n) FROM events), 0) / 1024 + 1)",
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(done)
    }

    /// Writes the whole state as a dump, from one REPEATABLE READ snapshot
    /// (consistent while writers go on), streaming rows in pages.
    pub fn dump_to(&mut self, out: &mut dyn Write) -> Result<u64, DumpError> {
        self.check_schema().map_err(pg_dump_error)?;
        let server = self.server.clone();
        let err = move |e: postgres::Error| {
            pg_dump_error(PgError::Server {
                server: server.clone(),
                message: describe(&e),
            })
        };
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(&err)?;
        let mut out = BufWriter::new(out);
        line(&mut out, &Header::new("postgres"))?;
        let mut records = 0u64;
        let mut emit = |out: &mut BufWriter<&mut dyn Write>, r: Record| -> Result<(), DumpError> {
            line(out, &r)?;
            records += 1;
            Ok(())
        };
        let sha = |b: Vec<u8>| -> Sha256 {
            let mut a = [0u8; 32];
            if b.len() == 32 {
                a.copy_from_slice(&b);
            }
            Sha256(a)
        };
        // Orders first, then what names them (CONTRACT §12).
        each_row(
            &mut tx,
            "SELECT id, external_id, revision, sent_sha256, regulated, doc FROM orders ORDER BY id",
            &err,
            |row| {
                emit(
                    &mut out,
                    Record::Order {
                        id: row.get(0),
                        external_id: row.get(1),
                        revision: row.get::<_, i32>(2) as u32,
                        sent_sha256: sha(row.get(3)),
                        regulated: row.get(4),
                        doc: row.get::<_, Value>(5),
                    },
                )
            },
        )?;
        let mut timeline = EventSeq::default();
        each_row(
            &mut tx,
            "SELECT order_id, at, event, detail FROM events ORDER BY order_id, n",
            &err,
            |row| {
                let order: Uuid = row.get(0);
                let seq = timeline.next(order);
                emit(
                    &mut out,
                    Record::Event {
                        order,
                        seq,
                        at: row.get(1),
                        event: row.get(2),
                        detail: row.get(3),
                    },
                )
            },
        )?;
        each_row(
            &mut tx,
            "SELECT system, order_id, state, sort, file, written_at, acked_at, revision
                 FROM export_states ORDER BY system, order_id",
            &err,
            |row| {
                let state: String = row.get(2);
                emit(
                    &mut out,
                    Record::Export {
                        system: row.get(0),
                        order: row.get(1),
                        state: ExportState::parse(&state).unwrap_or(ExportState::Pending),
                        sort: row.get(3),
                        file: row.get(4),
                        written_at: row.get(5),
                        acked_at: row.get(6),
                        revision: row.get::<_, Option<i32>>(7).map(|r| r as u32),
                    },
                )
            },
        )?;
        each_row(
            &mut tx,
            "SELECT order_id, system, sha256 FROM notes ORDER BY order_id, system, sha256",
            &err,
            |row| {
                emit(
                    &mut out,
                    Record::Note {
                        order: row.get(0),
                        system: row.get(1),
                        sha256: sha(row.get(2)),
                    },
                )
            },
        )?;
        each_row(
            &mut tx,
            "SELECT sku, in_stock, reserved FROM stock ORDER BY sku",
            &err,
            |row| {
                let sku: String = row.get(0);
                if let Some(in_stock) = row.get::<_, Option<i64>>(1) {
                    emit(
                        &mut out,
                        Record::Stock {
                            sku: sku.clone(),
                            in_stock,
                        },
                    )?;
                }
                if let Some(reserved) = row.get::<_, Option<i64>>(2) {
                    emit(&mut out, Record::Reserved { sku, reserved })?;
                }
                Ok(())
            },
        )?;
        each_row(
            &mut tx,
            "SELECT name, sha256, at, kind FROM applied_files ORDER BY name, sha256",
            &err,
            |row| {
                emit(
                    &mut out,
                    Record::AppliedFile {
                        name: row.get(0),
                        sha256: sha(row.get(1)),
                        at: row.get(2),
                        kind: row.get(3),
                    },
                )
            },
        )?;
        each_row(
            &mut tx,
            "SELECT name, sha256, orders FROM file_progress ORDER BY name, sha256",
            &err,
            |row| {
                emit(
                    &mut out,
                    Record::Progress {
                        name: row.get(0),
                        sha256: sha(row.get(1)),
                        orders: row.get::<_, i64>(2) as u64,
                    },
                )
            },
        )?;
        each_row(
            &mut tx,
            "SELECT system, last FROM export_sequences ORDER BY system",
            &err,
            |row| {
                emit(
                    &mut out,
                    Record::Sequence {
                        system: row.get(0),
                        last: row.get::<_, i64>(1) as u64,
                    },
                )
            },
        )?;
        each_row(
            &mut tx,
            "SELECT system, seq, file, orders, size, sha256 FROM export_batches ORDER BY system, seq",
            &err,
            |row| {
                let orders: Value = row.get(3);
                let content = match (
                    row.get::<_, Option<i64>>(4),
                    row.get::<_, Option<String>>(5),
                ) {
                    (Some(size), Some(sha256)) => Some(Content {
                        size: size as u64,
                        sha256,
                    }),
                    _ => None,
                };
                emit(
                    &mut out,
                    Record::Batch {
                        system: row.get(0),
                        seq: row.get::<_, i64>(1) as u64,
                        file: row.get(2),
                        orders: serde_json::from_value(orders).unwrap_or_default(),
                        content,
                    },
                )
            },
        )?;
        each_row(
            &mut tx,
            "SELECT system, settings FROM system_settings ORDER BY system",
            &err,
            |row| {
                emit(
                    &mut out,
                    Record::Fingerprint {
                        system: row.get(0),
                        settings: row.get(1),
                    },
                )
            },
        )?;
        each_row(
            &mut tx,
            "SELECT remote, direction, name, record FROM transfers ORDER BY 1, 2, 3",
            &err,
            |row| {
                let direction: String = row.get(1);
                let name: String = row.get(2);
                let corrupt = |message: String| {
                    DumpError::Store(StoreError::Corrupt {
                        key: format!("transfer {name:?}"),
                        message,
                    })
                };
                let direction = Direction::parse(&direction)
                    .ok_or_else(|| corrupt(format!("direction {direction:?}")))?;
                let transfer = serde_json::from_value(row.get(3))
                    .map_err(|e| corrupt(format!("record: {e}")))?;
                emit(
                    &mut out,
                    Record::Transfer {
                        remote: row.get(0),
                        direction,
                        name,
                        transfer,
                    },
                )
            },
        )?;
        line(
            &mut out,
            &Trailer {
                format: END.into(),
                records,
            },
        )?;
        out.flush()?;
        tx.commit().map_err(&err)?;
        Ok(records)
    }
}

/// What the server says of its replication (`check`, `status`): a warning
/// when it streams to standbys (`pg_stat_replication`) but a commit is
/// reported before any standby has it (`synchronous_standby_names` empty,
/// or `synchronous_commit` `off` or `local`): a promotion of such a
/// standby loses what it lacked, orders whose files were already archived
/// and exported. `None`: no standby, or synchronous replication.
pub fn replication_warning(client: &mut Client) -> Result<Option<String>, postgres::Error> {
    let row = client.query_one(
        "SELECT (SELECT count(*) FROM pg_stat_replication),
                current_setting('synchronous_standby_names'),
                current_setting('synchronous_commit')",
        &[],
    )?;
    let (standbys, names, commit): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    if standbys == 0 {
        return Ok(None);
    }
    let why = if names.trim().is_empty() {
        "synchronous_standby_names is empty".to_string()
    } else if commit == "off" || commit == "local" {
        format!("synchronous_commit is {commit}")
    } else {
        return Ok(None);
    };
    Ok(Some(format!(
        "the server streams to {standbys} standby(s) but commits asynchronously ({why}): a commit is reported before a standby has it, and promoting a standby can lose orders whose files were already archived or exported; for exactly-once across a promotion set synchronous_standby_names (and synchronous_commit = on or remote_apply)"
    )))
}

/// `e` as a [`PgError`] naming `server`: [`PgError::Refused`] when the
/// server refused ([`is_refusal`]), else [`PgError::Server`].
pub(crate) fn pg_error(server: &str, e: &postgres::Error) -> PgError {
    let (server, message) = (server.to_string(), describe(e));
    if is_refusal(e) {
        PgError::Refused { server, message }
    } else {
        PgError::Server { server, message }
    }
}

/// Whether the server refused what was asked for a reason that waiting
/// does not change: a permission or a schema object (SQLSTATE class 42:
/// `42501` insufficient privilege, `42P07` a table that already exists,
/// `42P01` one missing…), a login refused (class 28), a database or
/// schema that does not exist (`3D000`, `3F000`). A server going away,
/// restarting or short of resources (classes 08, 57, 53, 58) is an
/// outage, waited for.
pub fn is_refusal(e: &postgres::Error) -> bool {
    let Some(code) = e.code() else { return false };
    let code = code.code();
    code.starts_with("42") || code.starts_with("28") || code == "3D000" || code == "3F000"
}

/// A client error as an operator reads it: the server's own message (its
/// severity, text, detail and hint) rather than the client's "db error".
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut out = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            out.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            out.push_str(&format!("; hint: {hint}"));
        }
        return out;
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    out
}

fn pg_dump_error(e: PgError) -> DumpError {
    DumpError::Io(std::io::Error::other(e.to_string()))
}

/// Runs `sql` in pages of 1,000 rows (a portal), calling `f` on each.
fn each_row(
    tx: &mut Transaction<'_>,
    sql: &str,
    err: &dyn Fn(postgres::Error) -> DumpError,
    mut f: impl FnMut(&postgres::Row) -> Result<(), DumpError>,
) -> Result<(), DumpError> {
    let portal = tx.bind(sql, &[]).map_err(err)?;
    loop {
        let rows = tx.query_portal(&portal, 1_000).map_err(err)?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in &rows {
            f(row)?;
        }
    }
}

/// The typed columns of an order's document.
fn text_field(doc: &Value, key: &str) -> Option<String> {
    doc.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The statements a restore runs, prepared once.
struct Statements {
    order: postgres::Statement,
    event: postgres::Statement,
    export: postgres::Statement,
    note: postgres::Statement,
    stock: postgres::Statement,
    reserved: postgres::Statement,
    file: postgres::Statement,
    progress: postgres::Statement,
    sequence: postgres::Statement,
    batch: postgres::Statement,
    settings: postgres::Statement,
    transfer: postgres::Statement,
}

impl Statements {
    fn prepare(tx: &mut Transaction<'_>) -> Result<Statements, postgres::Error> {
        Ok(Statements {
            order: tx.prepare(
                "INSERT INTO orders (id, external_id, external_uuid, revision, sent_sha256, regulated,
                     created, updated, channel, type, currency, status, internal_status, reference, doc)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )?,
            event: tx.prepare(
                "INSERT INTO events (order_id, n, at, event, detail) VALUES ($1, $2, $3, $4, $5)",
            )?,
            export: tx.prepare(
                "INSERT INTO export_states (system, order_id, state, sort, file, written_at, acked_at, revision)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )?,
            note: tx.prepare("INSERT INTO notes (order_id, system, sha256) VALUES ($1, $2, $3)")?,
            stock: tx.prepare(
                "INSERT INTO stock (sku, in_stock) VALUES ($1, $2)
                 ON CONFLICT (sku) DO UPDATE SET in_stock = excluded.in_stock",
            )?,
            reserved: tx.prepare(
                "INSERT INTO stock (sku, reserved) VALUES ($1, $2)
                 ON CONFLICT (sku) DO UPDATE SET reserved = excluded.reserved",
            )?,
            file: tx.prepare(
                "INSERT INTO applied_files (name, sha256, at, kind) VALUES ($1, $2, $3, $4)",
            )?,
            progress: tx.prepare(
                "INSERT INTO file_progress (name, sha256, orders) VALUES ($1, $2, $3)",
            )?,
            sequence: tx
                .prepare("INSERT INTO export_sequences (system, last) VALUES ($1, $2)")?,
            batch: tx.prepare(
                "INSERT INTO export_batches (system, seq, file, orders, size, sha256)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )?,
            settings: tx
                .prepare("INSERT INTO system_settings (system, settings) VALUES ($1, $2)")?,
            transfer: tx.prepare(
                "INSERT INTO transfers (remote, direction, name, record) VALUES ($1, $2, $3, $4)",
            )?,
        })
    }

    fn insert(&self, tx: &mut Transaction<'_>, record: &Record) -> Result<u64, postgres::Error> {
        let run = |tx: &mut Transaction<'_>,
                   st: &postgres::Statement,
                   params: &[&(dyn ToSql + Sync)]| tx.execute(st, params);
        match record {
            Record::Order {
                id,
                external_id,
                revision,
                sent_sha256,
                regulated,
                doc,
            } => {
                let spelt = Uuid::parse_str(external_id).ok();
                let created = doc["created"].as_i64().unwrap_or(0);
                let updated = doc["updated"].as_i64().unwrap_or(0);
                let fields: Vec<Option<String>> = [
                    "channel",
                    "type",
                    "currency",
                    "status",
                    "internal_status",
                    "reference",
                ]
                .iter()
                .map(|k| text_field(doc, k))
                .collect();
                run(
                    tx,
                    &self.order,
                    &[
                        id,
                        external_id,
                        &spelt,
                        &(*revision as i32),
                        &&sent_sha256.0[..],
                        regulated,
                        &created,
                        &updated,
                        &fields[0],
                        &fields[1],
                        &fields[2],
                        &fields[3],
                        &fields[4],
                        &fields[5],
                        doc,
                    ],
                )
            }
            Record::Event {
                order,
                seq,
                at,
                event,
                detail,
            } => run(tx, &self.event, &[order, &(*seq as i64), at, event, detail]),
            Record::Export {
                system,
                order,
                state,
                sort,
                file,
                written_at,
                acked_at,
                revision,
            } => run(
                tx,
                &self.export,
                &[
                    system,
                    order,
                    &state.name(),
                    sort,
                    file,
                    written_at,
                    acked_at,
                    &revision.map(|r| r as i32),
                ],
            ),
            Record::Note {
                order,
                system,
                sha256,
            } => run(tx, &self.note, &[order, system, &&sha256.0[..]]),
            Record::Stock { sku, in_stock } => run(tx, &self.stock, &[sku, in_stock]),
            Record::Reserved { sku, reserved } => run(tx, &self.reserved, &[sku, reserved]),
            Record::AppliedFile {
                name,
                sha256,
                at,
                kind,
            } => run(tx, &self.file, &[name, &&sha256.0[..], at, kind]),
            Record::Progress {
                name,
                sha256,
                orders,
            } => run(
                tx,
                &self.progress,
                &[name, &&sha256.0[..], &(*orders as i64)],
            ),
            Record::Sequence { system, last } => {
                run(tx, &self.sequence, &[system, &(*last as i64)])
            }
            Record::Batch {
                system,
                seq,
                file,
                orders,
                content,
            } => {
                let orders = serde_json::to_value(orders).unwrap_or(Value::Null);
                run(
                    tx,
                    &self.batch,
                    &[
                        system,
                        &(*seq as i64),
                        file,
                        &orders,
                        &content.as_ref().map(|c| c.size as i64),
                        &content.as_ref().map(|c| c.sha256.clone()),
                    ],
                )
            }
            Record::Fingerprint { system, settings } => {
                run(tx, &self.settings, &[system, settings])
            }
            Record::Transfer {
                remote,
                direction,
                name,
                transfer,
            } => {
                let record = serde_json::to_value(transfer).unwrap_or(Value::Null);
                run(
                    tx,
                    &self.transfer,
                    &[remote, &direction.name(), name, &record],
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    /// Regression (issue 22 §4): the first host's port was dropped and
    /// `target_session_attrs` hidden.
    #[test]
    fn every_host_is_shown_with_its_port_and_the_session_wanted() {
        assert_eq!(
            shown(
                "postgresql://os:s3cret@127.0.0.1,127.0.0.1:55451/orders?target_session_attrs=read-write"
            ),
            "postgresql://os@127.0.0.1:5432,127.0.0.1:55451/orders?target_session_attrs=read-write"
        );
        assert_eq!(
            shown(
                "host=a,b port=5433,5434 dbname=o user=os password=s3cret target_session_attrs=primary"
            ),
            "postgresql://os@a:5433,b:5434/o?target_session_attrs=read-write"
        );
        assert_eq!(
            shown("host=a,b port=5433 dbname=o"),
            "postgresql://a:5433,b:5433/o"
        );
        assert_eq!(
            shown("postgresql://os@[::1]:5433/o"),
            "postgresql://os@[::1]:5433/o"
        );
        assert_eq!(
            shown("postgresql://os@/o?host=/run/postgresql"),
            "postgresql://os@/o?host=/run/postgresql"
        );
        let s = shown("postgresql://os:p@ss@db/orders");
        assert!(!s.contains("ss"), "{s}");
    }
}
