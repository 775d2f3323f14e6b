//! The [`Backend`] the rules see: point reads per kind of record, the
//! read-ahead, the commit of a group, event ids, the keyset-paged scans.
//!
//! - **Every commit checks the fence in its transaction**: a group's
//!   changes are written (`write.rs`), then the lease is renewed under this
//!   process's epoch (`Fence::holds`) before the `COMMIT`; when it no longer
//!   holds, the transaction is rolled back and the commit is
//!   `StoreError::Fenced`. Every write of the rules goes through
//!   [`Backend::commit`]; the one write outside it is a restore (`mod.rs`:
//!   one transaction on a connection of its own, into an empty store).
//! - **Reads go through [`Live::read`]** (another connection when a pooled
//!   one turns out dead); writes never go again.
//! - **Derived keys are queries**: `Key::Index`, `Key::External` and
//!   `Key::ExternalUuid` are read from the tables' indexes; nothing stores
//!   them (see `write.rs`).
//! - **Ids come in blocks of [`BLOCK`]** from the `event_blocks` sequence;
//!   a new block after each take of the lease (`writer.rs`) and after a
//!   restore.
//! - **Scans read [`PAGE`] rows a time**, keyset-paged, each page on
//!   whichever pooled connection is free (no snapshot across pages).

use std::collections::VecDeque;
use std::sync::MutexGuard;

use postgres::types::ToSql;
use uuid::Uuid;

use super::rows::{batch_of, export_at, order_of, state_of};
use super::{Conn, Live};
use crate::store::apply::Progress;
use crate::store::backend::{Backend, Changes, Rows, Seek, Value};
use crate::store::candidates::{Candidate, Narrowing};
use crate::store::keys::{self, Direction, Key};
use crate::store::records::AppliedFile;
use crate::store::{Event, ExportState, StoreError, encode};

/// How many ids one `event_blocks` value stands for.
const BLOCK: u64 = 1024;

/// How many rows a scan reads at a time.
const PAGE: i64 = 1000;

impl Backend for Live {
    fn prefetches(&self) -> bool {
        true
    }

    fn prefetch(&self, keys: &[Key]) -> Result<Vec<(Key, Option<Value>)>, StoreError> {
        let start = std::time::Instant::now();
        let got = self.read(|c| super::super::prefetch::prefetch(c, keys))?;
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
            Key::Transfer {
                remote,
                direction,
                name,
            } => {
                let row = self.read(|c| {
                    c.query_opt(
                        "SELECT record FROM transfers WHERE remote = $1 AND direction = $2 AND name = $3",
                        &[remote, &direction.name(), name],
                    )
                })?;
                row.map(|r| transfer_value(key, r.get(0))).transpose()
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
        super::super::write::write(&mut tx, prepared, &changes)?.map_err(|e| self.err(e))?;
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

    fn transfers(&self, remote: &str) -> Result<Vec<(Key, Value)>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT direction, name, record FROM transfers
                   WHERE remote = $1 AND record->>'stage' NOT IN ('done', 'pushed')
                   ORDER BY 1, 2",
                &[&remote],
            )
        })?;
        rows.iter()
            .map(|r| {
                let direction: String = r.get(0);
                let key = Key::Transfer {
                    remote: remote.into(),
                    direction: Direction::parse(&direction).ok_or_else(|| StoreError::Corrupt {
                        key: format!("transfer {:?}", r.get::<_, String>(1)),
                        message: format!("direction {direction:?}"),
                    })?,
                    name: r.get(1),
                };
                let value = transfer_value(&key, r.get(2))?;
                Ok((key, value))
            })
            .collect()
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
        narrow: &Narrowing,
    ) -> Rows<'_, Candidate> {
        let query = super::super::candidates::Query::new(system, acked_since, narrow);
        self.paged(
            None,
            move |c, after| query.fetch(&mut c.client, after.as_ref(), PAGE),
            super::super::candidates::candidate,
        )
    }
}

impl Live {
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

/// A transfer's stored `record` as the ledger's value.
fn transfer_value(key: &Key, record: serde_json::Value) -> Result<Value, StoreError> {
    let t: crate::store::ledger::Transfer =
        serde_json::from_value(record).map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            message: e.to_string(),
        })?;
    Ok(Value::from(t.encode()))
}
