//! A group's changes written to PostgreSQL with one statement per table
//! and kind of change, whatever the group's size: each statement takes its
//! rows as arrays (`INSERT … SELECT * FROM unnest($1::uuid[], …)`), so a
//! group of 1,000 orders is a dozen round trips, not ten thousand.
//!
//! Statements run in dependency order: orders before what names them
//! (events, export states, notes).

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Statement, Transaction};
use serde_json::Value as Json;
use uuid::Uuid;

use super::super::apply::Progress;
use super::super::backend::Changes;
use super::super::batch::Batch;
use super::super::keys::{self, Key};
use super::super::ledger::Transfer;
use super::super::records::AppliedFile;
use super::super::{Event, ExportRecord, StoreError, decode, decode_order};

/// The statements prepared on one connection.
pub type Prepared = HashMap<&'static str, Statement>;

/// The typed columns of an order's document (filters narrow by them).
pub const TEXT_COLUMNS: [&str; 6] = [
    "channel",
    "type",
    "currency",
    "status",
    "internal_status",
    "reference",
];

#[derive(Default)]
struct Orders {
    id: Vec<Uuid>,
    external_id: Vec<String>,
    external_uuid: Vec<Option<Uuid>>,
    revision: Vec<i32>,
    sent_sha256: Vec<Vec<u8>>,
    regulated: Vec<bool>,
    created: Vec<i64>,
    updated: Vec<i64>,
    text: [Vec<Option<String>>; 6],
    doc: Vec<Json>,
}

#[derive(Default)]
struct Exports {
    system: Vec<String>,
    order: Vec<Uuid>,
    state: Vec<&'static str>,
    sort: Vec<i64>,
    file: Vec<Option<String>>,
    written_at: Vec<Option<i64>>,
    acked_at: Vec<Option<i64>>,
    revision: Vec<Option<i32>>,
}

#[derive(Default)]
struct Events {
    order: Vec<Uuid>,
    n: Vec<i64>,
    at: Vec<i64>,
    event: Vec<String>,
    detail: Vec<String>,
}

/// Rows keyed by two columns (a removal, a note).
#[derive(Default)]
struct Pairs<A, B> {
    a: Vec<A>,
    b: Vec<B>,
}

impl<A, B> Pairs<A, B> {
    fn push(&mut self, a: A, b: B) {
        self.a.push(a);
        self.b.push(b);
    }
}

#[derive(Default)]
struct Triples<A, B, C> {
    a: Vec<A>,
    b: Vec<B>,
    c: Vec<C>,
}

impl<A, B, C> Triples<A, B, C> {
    fn push(&mut self, a: A, b: B, c: C) {
        self.a.push(a);
        self.b.push(b);
        self.c.push(c);
    }
}

/// A group's changes, by table.
#[derive(Default)]
struct Rows {
    orders: Orders,
    exports: Exports,
    exports_gone: Pairs<String, Uuid>,
    events: Events,
    notes: Triples<Uuid, String, Vec<u8>>,
    notes_gone: Triples<Uuid, String, Vec<u8>>,
    /// sku → in_stock (`None`: removed).
    in_stock: Pairs<String, Option<i64>>,
    reserved: Pairs<String, Option<i64>>,
    files: Vec<(String, Vec<u8>, AppliedFile)>,
    files_gone: Pairs<String, Vec<u8>>,
    progress: Triples<String, Vec<u8>, i64>,
    progress_gone: Pairs<String, Vec<u8>>,
    sequences: Pairs<String, i64>,
    batches: Vec<Batch>,
    batches_gone: Pairs<String, i64>,
    settings: Pairs<String, String>,
    settings_gone: Vec<String>,
    /// (remote, direction, name) → the record (`None`: removed).
    transfers: Vec<(String, &'static str, String, Option<Json>)>,
    order_count: Option<i64>,
    counts: Triples<String, &'static str, i64>,
}

impl Rows {
    fn of(changes: &Changes) -> Result<Rows, StoreError> {
        let mut r = Rows::default();
        for (key, value) in changes {
            r.add(key, value.as_deref())?;
        }
        Ok(r)
    }

    fn add(&mut self, key: &Key, value: Option<&[u8]>) -> Result<(), StoreError> {
        let int = keys::int_of;
        match (key, value) {
            // The indexes of `orders` and `export_states` are these.
            (Key::External(_) | Key::ExternalUuid(_) | Key::Index { .. }, _) => {}
            (Key::Order(_), Some(v)) => {
                let mut rec = decode_order(key, v)?;
                // Stored without its revision, a column of its own.
                if let Json::Object(m) = &mut rec.doc {
                    m.remove("revision");
                }
                let o = &mut self.orders;
                o.id.push(rec.id);
                o.external_uuid.push(Uuid::parse_str(&rec.external_id).ok());
                o.external_id.push(rec.external_id);
                o.revision.push(rec.revision as i32);
                o.sent_sha256.push(rec.sent_hash.to_vec());
                o.regulated.push(rec.regulated);
                o.created.push(rec.doc["created"].as_i64().unwrap_or(0));
                o.updated.push(rec.doc["updated"].as_i64().unwrap_or(0));
                for (column, name) in o.text.iter_mut().zip(TEXT_COLUMNS) {
                    column.push(rec.doc.get(name).and_then(Json::as_str).map(str::to_string));
                }
                o.doc.push(rec.doc);
            }
            (Key::Order(_), None) => {
                return Err(StoreError::Corrupt {
                    key: key.to_string(),
                    message: "orders are never removed".into(),
                });
            }
            (Key::Export { system, id }, Some(v)) => {
                let rec: ExportRecord = decode(key, v)?;
                let e = &mut self.exports;
                e.system.push(system.clone());
                e.order.push(*id);
                e.state.push(rec.state.name());
                e.sort.push(rec.sort);
                e.file.push(rec.file);
                e.written_at.push(rec.written_at);
                e.acked_at.push(rec.acked_at);
                e.revision.push(rec.revision.map(|r| r as i32));
            }
            (Key::Export { system, id }, None) => self.exports_gone.push(system.clone(), *id),
            (Key::Event { id, n }, Some(v)) => {
                let ev: Event = decode(key, v)?;
                let e = &mut self.events;
                e.order.push(*id);
                e.n.push(*n as i64);
                e.at.push(ev.at);
                e.event.push(ev.event);
                e.detail.push(ev.detail);
            }
            (Key::Event { .. }, None) => {
                return Err(StoreError::Corrupt {
                    key: key.to_string(),
                    message: "events are never removed".into(),
                });
            }
            (Key::Note { id, system, sha256 }, Some(_)) => {
                self.notes.push(*id, system.clone(), sha256.to_vec())
            }
            (Key::Note { id, system, sha256 }, None) => {
                self.notes_gone.push(*id, system.clone(), sha256.to_vec())
            }
            (Key::Stock(sku), v) => self.in_stock.push(sku.clone(), v.map(int)),
            (Key::Reserved(sku), v) => self.reserved.push(sku.clone(), v.map(int)),
            (Key::File { name, sha256 }, Some(v)) => {
                self.files
                    .push((name.clone(), sha256.to_vec(), decode(key, v)?))
            }
            (Key::File { name, sha256 }, None) => {
                self.files_gone.push(name.clone(), sha256.to_vec())
            }
            (Key::Progress { name, sha256 }, Some(v)) => {
                let p: Progress = decode(key, v)?;
                self.progress
                    .push(name.clone(), sha256.to_vec(), p.orders as i64)
            }
            (Key::Progress { name, sha256 }, None) => {
                self.progress_gone.push(name.clone(), sha256.to_vec())
            }
            (Key::Sequence(system), Some(v)) => self.sequences.push(system.clone(), int(v)),
            (Key::Sequence(_), None) => {
                return Err(StoreError::Corrupt {
                    key: key.to_string(),
                    message: "sequences are never removed".into(),
                });
            }
            (Key::Batch { .. }, Some(v)) => self.batches.push(decode(key, v)?),
            (Key::Batch { system, seq }, None) => {
                self.batches_gone.push(system.clone(), *seq as i64)
            }
            (Key::OldBatch(_), None) => {}
            (Key::OldBatch(_), Some(_)) => {
                return Err(StoreError::Corrupt {
                    key: key.to_string(),
                    message: "an older version's batch record is not kept on PostgreSQL".into(),
                });
            }
            (Key::Fingerprint(system), Some(v)) => self
                .settings
                .push(system.clone(), String::from_utf8_lossy(v).into_owned()),
            (Key::Fingerprint(system), None) => self.settings_gone.push(system.clone()),
            (
                Key::Transfer {
                    remote,
                    direction,
                    name,
                },
                v,
            ) => {
                let record = match v {
                    Some(v) => {
                        let t: Transfer = decode(key, v)?;
                        Some(serde_json::to_value(t).unwrap_or(Json::Null))
                    }
                    None => None,
                };
                self.transfers
                    .push((remote.clone(), direction.name(), name.clone(), record));
            }
            (Key::OrderCount, v) => self.order_count = Some(v.map_or(0, int)),
            (Key::StateCount { state, system }, v) => {
                self.counts
                    .push(system.clone(), state.name(), v.map_or(0, int))
            }
        }
        Ok(())
    }
}

/// Runs one statement (prepared once per connection) in `tx`.
struct Runner<'p> {
    prepared: &'p mut Prepared,
}

impl Runner<'_> {
    fn run(
        &mut self,
        tx: &mut Transaction<'_>,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let st = match self.prepared.get(sql) {
            Some(st) => st.clone(),
            None => {
                let st = tx.prepare(sql)?;
                self.prepared.insert(sql, st.clone());
                st
            }
        };
        tx.execute(&st, params)
    }
}

/// Writes `changes` in `tx` (not committed).
pub fn write(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared,
    changes: &Changes,
) -> Result<Result<(), postgres::Error>, StoreError> {
    let r = Rows::of(changes)?;
    Ok(write_rows(tx, &mut Runner { prepared }, &r))
}

fn write_rows(
    tx: &mut Transaction<'_>,
    run: &mut Runner<'_>,
    r: &Rows,
) -> Result<(), postgres::Error> {
    let o = &r.orders;
    if !o.id.is_empty() {
        run.run(
            tx,
            "INSERT INTO orders (id, external_id, external_uuid, revision, sent_sha256, regulated,
                 created, updated, channel, type, currency, status, internal_status, reference, doc)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::int4[], $5::bytea[],
                 $6::bool[], $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[],
                 $12::text[], $13::text[], $14::text[], $15::jsonb[])
             ON CONFLICT (id) DO UPDATE SET external_id = excluded.external_id,
                 external_uuid = excluded.external_uuid, revision = excluded.revision,
                 sent_sha256 = excluded.sent_sha256, regulated = excluded.regulated,
                 created = excluded.created, updated = excluded.updated,
                 channel = excluded.channel, type = excluded.type,
                 currency = excluded.currency, status = excluded.status,
                 internal_status = excluded.internal_status,
                 reference = excluded.reference, doc = excluded.doc",
            &[
                &o.id,
                &o.external_id,
                &o.external_uuid,
                &o.revision,
                &o.sent_sha256,
                &o.regulated,
                &o.created,
                &o.updated,
                &o.text[0],
                &o.text[1],
                &o.text[2],
                &o.text[3],
                &o.text[4],
                &o.text[5],
                &o.doc,
            ],
        )?;
    }
    let g = &r.exports_gone;
    if !g.a.is_empty() {
        run.run(
            tx,
            "DELETE FROM export_states e USING unnest($1::text[], $2::uuid[]) AS g (system, order_id)
               WHERE e.system = g.system AND e.order_id = g.order_id",
            &[&g.a, &g.b],
        )?;
    }
    let e = &r.exports;
    if !e.order.is_empty() {
        run.run(
            tx,
            "INSERT INTO export_states (system, order_id, state, sort, file, written_at, acked_at, revision)
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int8[], $5::text[],
                 $6::int8[], $7::int8[], $8::int4[])
             ON CONFLICT (system, order_id) DO UPDATE SET state = excluded.state,
                 sort = excluded.sort, file = excluded.file, written_at = excluded.written_at,
                 acked_at = excluded.acked_at, revision = excluded.revision",
            &[
                &e.system,
                &e.order,
                &e.state,
                &e.sort,
                &e.file,
                &e.written_at,
                &e.acked_at,
                &e.revision,
            ],
        )?;
    }
    let ev = &r.events;
    if !ev.order.is_empty() {
        run.run(
            tx,
            "INSERT INTO events (order_id, n, at, event, detail)
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::text[], $5::text[])",
            &[&ev.order, &ev.n, &ev.at, &ev.event, &ev.detail],
        )?;
    }
    let n = &r.notes_gone;
    if !n.a.is_empty() {
        run.run(
            tx,
            "DELETE FROM notes x USING unnest($1::uuid[], $2::text[], $3::bytea[]) AS g (order_id, system, sha256)
               WHERE x.order_id = g.order_id AND x.system = g.system AND x.sha256 = g.sha256",
            &[&n.a, &n.b, &n.c],
        )?;
    }
    let n = &r.notes;
    if !n.a.is_empty() {
        run.run(
            tx,
            "INSERT INTO notes (order_id, system, sha256)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[]) ON CONFLICT DO NOTHING",
            &[&n.a, &n.b, &n.c],
        )?;
    }
    let s = &r.in_stock;
    if !s.a.is_empty() {
        run.run(
            tx,
            "INSERT INTO stock (sku, in_stock) SELECT * FROM unnest($1::text[], $2::int8[])
             ON CONFLICT (sku) DO UPDATE SET in_stock = excluded.in_stock",
            &[&s.a, &s.b],
        )?;
    }
    let s = &r.reserved;
    if !s.a.is_empty() {
        run.run(
            tx,
            "INSERT INTO stock (sku, reserved) SELECT * FROM unnest($1::text[], $2::int8[])
             ON CONFLICT (sku) DO UPDATE SET reserved = excluded.reserved",
            &[&s.a, &s.b],
        )?;
    }
    let gone: Vec<&String> = r
        .in_stock
        .a
        .iter()
        .zip(&r.in_stock.b)
        .chain(r.reserved.a.iter().zip(&r.reserved.b))
        .filter(|(_, v)| v.is_none())
        .map(|(sku, _)| sku)
        .collect();
    if !gone.is_empty() {
        run.run(
            tx,
            "DELETE FROM stock WHERE sku = ANY($1) AND in_stock IS NULL AND reserved IS NULL",
            &[&gone],
        )?;
    }
    if !r.files.is_empty() {
        let (mut name, mut sha, mut at, mut kind) = (vec![], vec![], vec![], vec![]);
        for (n, s, f) in &r.files {
            name.push(n);
            sha.push(s);
            at.push(f.at);
            kind.push(&f.kind);
        }
        // A plain insert: a file applied by another process meanwhile
        // fails the whole group, which is then found applied.
        run.run(
            tx,
            "INSERT INTO applied_files (name, sha256, at, kind)
             SELECT * FROM unnest($1::text[], $2::bytea[], $3::int8[], $4::text[])",
            &[&name, &sha, &at, &kind],
        )?;
    }
    let f = &r.files_gone;
    if !f.a.is_empty() {
        run.run(
            tx,
            "DELETE FROM applied_files x USING unnest($1::text[], $2::bytea[]) AS g (name, sha256)
               WHERE x.name = g.name AND x.sha256 = g.sha256",
            &[&f.a, &f.b],
        )?;
    }
    let p = &r.progress_gone;
    if !p.a.is_empty() {
        run.run(
            tx,
            "DELETE FROM file_progress x USING unnest($1::text[], $2::bytea[]) AS g (name, sha256)
               WHERE x.name = g.name AND x.sha256 = g.sha256",
            &[&p.a, &p.b],
        )?;
    }
    let p = &r.progress;
    if !p.a.is_empty() {
        run.run(
            tx,
            "INSERT INTO file_progress (name, sha256, orders)
             SELECT * FROM unnest($1::text[], $2::bytea[], $3::int8[])
             ON CONFLICT (name, sha256) DO UPDATE SET orders = excluded.orders",
            &[&p.a, &p.b, &p.c],
        )?;
    }
    let q = &r.sequences;
    if !q.a.is_empty() {
        run.run(
            tx,
            "INSERT INTO export_sequences (system, last) SELECT * FROM unnest($1::text[], $2::int8[])
             ON CONFLICT (system) DO UPDATE SET last = excluded.last",
            &[&q.a, &q.b],
        )?;
    }
    let b = &r.batches_gone;
    if !b.a.is_empty() {
        run.run(
            tx,
            "DELETE FROM export_batches x USING unnest($1::text[], $2::int8[]) AS g (system, seq)
               WHERE x.system = g.system AND x.seq = g.seq",
            &[&b.a, &b.b],
        )?;
    }
    if !r.batches.is_empty() {
        // One statement for a group's batches, however many files it has.
        let (mut system, mut seq, mut file, mut orders, mut size, mut sha256) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for b in &r.batches {
            system.push(b.system.as_str());
            seq.push(b.seq as i64);
            file.push(b.file.as_str());
            orders.push(serde_json::to_value(&b.orders).unwrap_or(Json::Null));
            size.push(b.content.as_ref().map(|c| c.size as i64));
            sha256.push(b.content.as_ref().map(|c| c.sha256.clone()));
        }
        run.run(
            tx,
            "INSERT INTO export_batches (system, seq, file, orders, size, sha256)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::jsonb[], $5::int8[], $6::text[])
             ON CONFLICT (system, seq) DO UPDATE SET file = excluded.file,
                 orders = excluded.orders, size = excluded.size, sha256 = excluded.sha256",
            &[&system, &seq, &file, &orders, &size, &sha256],
        )?;
    }
    let s = &r.settings;
    if !s.a.is_empty() {
        run.run(
            tx,
            "INSERT INTO system_settings (system, settings) SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (system) DO UPDATE SET settings = excluded.settings",
            &[&s.a, &s.b],
        )?;
    }
    if !r.settings_gone.is_empty() {
        run.run(
            tx,
            "DELETE FROM system_settings WHERE system = ANY($1)",
            &[&r.settings_gone],
        )?;
    }
    // One at a time: the ledger changes a transfer per commit.
    for (remote, direction, name, record) in &r.transfers {
        match record {
            Some(record) => run.run(
                tx,
                "INSERT INTO transfers (remote, direction, name, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (remote, direction, name) DO UPDATE SET record = excluded.record",
                &[remote, direction, name, record],
            )?,
            None => run.run(
                tx,
                "DELETE FROM transfers WHERE remote = $1 AND direction = $2 AND name = $3",
                &[remote, direction, name],
            )?,
        };
    }
    if let Some(n) = r.order_count {
        run.run(tx, "UPDATE order_count SET n = $1", &[&n])?;
    }
    let c = &r.counts;
    if !c.a.is_empty() {
        run.run(
            tx,
            "INSERT INTO state_counts (system, state, n)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[])
             ON CONFLICT (system, state) DO UPDATE SET n = excluded.n",
            &[&c.a, &c.b, &c.c],
        )?;
    }
    Ok(())
}
