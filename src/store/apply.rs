//! Applying one inbox file's [`Input`] in one transaction (SPEC §3–7).
//!
//! All or nothing: every row is checked against the store inside the
//! transaction, every problem is collected, and if there is any the
//! transaction aborts and nothing changes. The applied-file record (name +
//! content hash) is written in the same transaction, so a file applied
//! before a crash, or re-sent, is recognised and never applied twice.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use uuid::Uuid;

use super::records::AppliedFile;
use super::{
    Event, ExportRecord, ExportState, OrderHead, OrderRecord, Store, StoreError, decode, encode,
    keys, sent_hash,
};
use crate::config::SystemConfig;
use crate::csvin::{AckRow, StockRow};
use crate::filter::eligible;
use crate::input::Input;
use crate::order::{Facts, Order};
use crate::problem::Problem;

/// What an apply needs to know besides the input.
pub struct Context<'a> {
    /// The time of processing, UNIX ms.
    pub now: i64,
    pub systems: &'a [SystemConfig],
    pub allow_negative: bool,
}

/// The outcome of applying a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A file with this name and content was applied before: nothing done.
    AlreadyApplied,
    /// Applied; counts for the log line.
    Done(Summary),
}

/// Counts of what a file did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub new_orders: usize,
    pub updated_orders: usize,
    pub duplicate_orders: usize,
    pub acks: usize,
    pub regulated: usize,
    pub stock_rows: usize,
}

/// Why a file was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The file has problems (recoverable: it goes to `errors/`).
    #[error("{} problem(s)", .0.len())]
    Rejected(Vec<Problem>),
    /// The store failed (the file stays where it is).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a transaction aborted.
pub(super) enum Abort {
    Rejected(Vec<Problem>),
    Store(StoreError),
}

pub(super) type TxResult<T> = Result<T, ConflictableTransactionError<Abort>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(Abort::Store(e)))
}

/// Maps a finished transaction's error to the caller's.
pub(super) fn finish<T>(r: Result<T, TransactionError<Abort>>) -> Result<T, ApplyError> {
    match r {
        Ok(t) => Ok(t),
        Err(TransactionError::Abort(Abort::Rejected(p))) => Err(ApplyError::Rejected(p)),
        Err(TransactionError::Abort(Abort::Store(e))) => Err(ApplyError::Store(e)),
        Err(TransactionError::Storage(e)) => Err(ApplyError::Store(e.into())),
    }
}

impl Store {
    /// Applies `input`, read from the file `name` whose content hashes to
    /// `sha256`, all or nothing. `known` are problems already found while
    /// parsing: with any, nothing is applied, but the input is still checked
    /// so that the rejection lists every problem.
    pub fn apply(
        &self,
        name: &str,
        sha256: &[u8; 32],
        input: &Input,
        known: &[Problem],
        ctx: &Context,
    ) -> Result<Applied, ApplyError> {
        let file_key = keys::file(name, sha256);
        finish(self.db.transaction(|tx| {
            if tx.get(&file_key)?.is_some() {
                return Ok(Applied::AlreadyApplied);
            }
            let mut w = Writer::new(tx, ctx, name);
            w.problems.extend_from_slice(known);
            match input {
                Input::Orders(orders) => {
                    for (path, order) in orders {
                        w.order(path, order)?;
                    }
                }
                Input::Acks(rows) => {
                    for row in rows {
                        w.ack_row(row)?;
                    }
                }
                Input::Stock { absolute, rows } => {
                    for row in rows {
                        w.stock_row(row, *absolute)?;
                    }
                }
            }
            if !w.problems.is_empty() {
                let mut problems = w.problems;
                // Parse and store problems, back in file order.
                problems.sort_by_key(Problem::line);
                return Err(ConflictableTransactionError::Abort(Abort::Rejected(
                    problems,
                )));
            }
            w.put(
                &file_key,
                &AppliedFile {
                    at: ctx.now,
                    kind: input.kind().into(),
                },
            )?;
            Ok(Applied::Done(w.summary))
        }))
    }
}

/// The writes of one transaction, with the problems found so far.
pub(super) struct Writer<'t> {
    tx: &'t TransactionalTree,
    ctx: &'t Context<'t>,
    /// The file (or export file) the changes come from, for the timeline.
    source: &'t str,
    pub(super) problems: Vec<Problem>,
    pub(super) summary: Summary,
}

/// Whether a refused regulation fails the file (an ack row) or is only
/// noted in the timeline (auto-ack, where no one could fix the file).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Strictness {
    FailFile,
    NoteOnly,
}

impl<'t> Writer<'t> {
    pub(super) fn new(tx: &'t TransactionalTree, ctx: &'t Context<'t>, source: &'t str) -> Self {
        Writer {
            tx,
            ctx,
            source,
            problems: Vec::new(),
            summary: Summary::default(),
        }
    }

    pub(super) fn get<T: DeserializeOwned>(&self, key: &[u8]) -> TxResult<Option<T>> {
        match self.tx.get(key)? {
            None => Ok(None),
            Some(bytes) => match decode(key, &bytes) {
                Ok(v) => Ok(Some(v)),
                Err(e) => abort(e),
            },
        }
    }

    /// The stored order with this id.
    pub(super) fn order_rec(&self, id: Uuid) -> TxResult<Option<OrderRecord>> {
        let key = keys::order(id);
        match self.tx.get(&key)? {
            None => Ok(None),
            Some(bytes) => match super::decode_order(&key, &bytes) {
                Ok(v) => Ok(Some(v)),
                Err(e) => abort(e),
            },
        }
    }

    /// The head of the stored order with this id (its document unparsed).
    pub(super) fn order_head(&self, id: Uuid) -> TxResult<Option<OrderHead>> {
        let key = keys::order(id);
        match self.tx.get(&key)? {
            None => Ok(None),
            Some(bytes) => match OrderRecord::decode_head(&bytes) {
                Ok(v) => Ok(Some(v)),
                Err(m) => abort(super::corrupt(&key, m)),
            },
        }
    }

    pub(super) fn put_order(&self, rec: &OrderRecord) -> TxResult<()> {
        self.tx.insert(keys::order(rec.id), rec.encode())?;
        Ok(())
    }

    pub(super) fn put<T: Serialize>(&self, key: &[u8], value: &T) -> TxResult<()> {
        self.tx.insert(key, encode(value))?;
        Ok(())
    }

    fn get_int(&self, key: &[u8]) -> TxResult<i64> {
        Ok(self.tx.get(key)?.map_or(0, |v| keys::int_of(&v)))
    }

    fn put_int(&self, key: &[u8], value: i64) -> TxResult<()> {
        self.tx.insert(key, &value.to_be_bytes())?;
        Ok(())
    }

    fn problem(&mut self, at: impl Into<String>, what: impl Into<String>) {
        self.problems.push(Problem::new(at, what));
    }

    pub(super) fn event(&self, id: Uuid, event: &str, detail: String) -> TxResult<()> {
        let n = match self.tx.generate_id() {
            Ok(n) => n,
            Err(e) => return abort(e.into()),
        };
        self.put(
            &keys::timeline(id, n),
            &Event {
                at: self.ctx.now,
                event: event.into(),
                detail,
            },
        )
    }

    pub(super) fn export_state(&self, system: &str, id: Uuid) -> TxResult<Option<ExportRecord>> {
        self.get(&keys::export(system, id))
    }

    /// Sets an order's export state for a system, moving its index entry
    /// and its count.
    pub(super) fn set_state(&self, system: &str, id: Uuid, new: &ExportRecord) -> TxResult<()> {
        self.clear_index(system, id)?;
        self.tx
            .insert(keys::index(new.state, system, new.sort, id), &[])?;
        self.bump(&keys::count(new.state, system), 1)?;
        self.put(&keys::export(system, id), new)
    }

    fn clear_index(&self, system: &str, id: Uuid) -> TxResult<Option<ExportRecord>> {
        let old = self.export_state(system, id)?;
        if let Some(old) = &old {
            self.tx
                .remove(keys::index(old.state, system, old.sort, id))?;
            self.bump(&keys::count(old.state, system), -1)?;
        }
        Ok(old)
    }

    /// Adds `delta` to a kept count (`status` reads counts, never scans).
    pub(super) fn bump(&self, key: &[u8], delta: i64) -> TxResult<()> {
        let n = self.get_int(key)?.saturating_add(delta);
        self.put_int(key, n)
    }

    /// Forgets a pending export that never happened (no longer eligible).
    pub(super) fn drop_pending(&self, system: &str, id: Uuid) -> TxResult<()> {
        self.clear_index(system, id)?;
        self.tx.remove(keys::export(system, id))?;
        Ok(())
    }

    /// Queues the order `id`, created at `created`, for `system` (keeping
    /// what it was written to before).
    pub(super) fn make_pending(&self, system: &str, id: Uuid, created: i64) -> TxResult<()> {
        let old = self.export_state(system, id)?;
        let new = ExportRecord {
            state: ExportState::Pending,
            sort: created,
            file: old.as_ref().and_then(|o| o.file.clone()),
            written_at: old.as_ref().and_then(|o| o.written_at),
            acked_at: old.and_then(|o| o.acked_at),
        };
        self.set_state(system, id, &new)
    }

    /// Adds (`sign` = 1) or removes (-1) an order's reservation.
    fn reserve(&self, facts: &Facts, sign: i64) -> TxResult<()> {
        if !facts.reserves() {
            return Ok(());
        }
        for (sku, qty) in &facts.shipped_lines {
            let key = keys::reserved(sku);
            let now = self.get_int(&key)? + sign * qty;
            if now == 0 {
                self.tx.remove(key)?;
            } else {
                self.put_int(&key, now)?;
            }
        }
        Ok(())
    }

    // ---- orders ------------------------------------------------------------

    fn order(&mut self, path: &str, o: &Order) -> TxResult<()> {
        if let Some(owner) = self.tx.get(keys::external(&o.external_id))? {
            let owner = keys::uuid_of(&owner);
            if owner != o.id {
                self.problem(
                    format!("{path}.external_id"),
                    format!(
                        "{:?} already belongs to order {owner}, but this order has id {}",
                        o.external_id, o.id
                    ),
                );
                return Ok(());
            }
        }
        let Some(old) = self.order_head(o.id)? else {
            return self.new_order(o);
        };
        if old.sent_hash == sent_hash(&o.sent) {
            self.summary.duplicate_orders += 1;
            return Ok(());
        }
        if old.facts.archived {
            self.problem(
                path,
                format!("order {} is archived: it cannot be updated", o.id),
            );
            return Ok(());
        }
        let updated = o.doc["updated"].as_i64().unwrap_or(0);
        if updated <= old.updated {
            self.problem(
                format!("{path}.updated"),
                format!(
                    "stale update of order {}: updated {updated} is not newer than the stored revision {}'s {}",
                    o.id,
                    old.revision,
                    old.updated
                ),
            );
            return Ok(());
        }
        self.update_order(old, o)
    }

    fn new_order(&mut self, o: &Order) -> TxResult<()> {
        let rec = OrderRecord {
            id: o.id,
            external_id: o.external_id.clone(),
            revision: 1,
            sent_hash: sent_hash(&o.sent),
            doc: o.doc.clone(),
            regulated: false,
        };
        self.put_order(&rec)?;
        self.tx
            .insert(keys::external(&rec.external_id), rec.id.as_bytes())?;
        self.bump(&keys::order_count(), 1)?;
        self.reserve(&Facts::of(&rec.doc), 1)?;
        for system in self.ctx.systems {
            if eligible(system, &rec.doc) {
                self.make_pending(&system.id, rec.id, rec.created())?;
            }
        }
        self.event(
            rec.id,
            "received",
            format!("revision 1 from {}", self.source),
        )?;
        self.summary.new_orders += 1;
        Ok(())
    }

    fn update_order(&mut self, old: OrderHead, o: &Order) -> TxResult<()> {
        if old.external_id != o.external_id {
            self.tx.remove(keys::external(&old.external_id))?;
            self.tx
                .insert(keys::external(&o.external_id), o.id.as_bytes())?;
        }
        let rec = OrderRecord {
            id: o.id,
            external_id: o.external_id.clone(),
            revision: old.revision + 1,
            sent_hash: sent_hash(&o.sent),
            doc: o.doc.clone(),
            regulated: old.regulated,
        };
        self.reserve(&old.facts, -1)?;
        self.reserve(&Facts::of(&rec.doc), 1)?;
        self.put_order(&rec)?;
        for system in self.ctx.systems {
            let state = self.export_state(&system.id, rec.id)?.map(|s| s.state);
            // Every system that had it written or acked gets it again; one
            // that has it pending gets the new revision when eligible still.
            match (state, eligible(system, &rec.doc)) {
                (Some(ExportState::Written | ExportState::Acked), _) | (_, true) => {
                    self.make_pending(&system.id, rec.id, rec.created())?
                }
                (Some(ExportState::Pending), false) => self.drop_pending(&system.id, rec.id)?,
                (None, false) => {}
            }
        }
        self.event(
            rec.id,
            "updated",
            format!("revision {} from {}", rec.revision, self.source),
        )?;
        self.summary.updated_orders += 1;
        Ok(())
    }

    // ---- acknowledgements ----------------------------------------------------

    fn ack_row(&mut self, row: &AckRow) -> TxResult<()> {
        let at = format!("line {}", row.line);
        let system = self.ctx.systems.iter().find(|s| s.id == row.system_id);
        if system.is_none() {
            let known: Vec<&str> = self.ctx.systems.iter().map(|s| s.id.as_str()).collect();
            self.problem(
                &at,
                format!(
                    "unknown system {:?} (configured: {})",
                    row.system_id,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        let order = self.find_order(&row.order_id)?;
        if order.is_none() {
            self.problem(&at, format!("unknown order {:?}", row.order_id));
        }
        let (Some(system), Some(order)) = (system, order) else {
            return Ok(());
        };
        self.ack(
            &at,
            order,
            &system.id,
            row.regulate,
            row.note.as_deref(),
            Strictness::FailFile,
        )?;
        self.summary.acks += 1;
        Ok(())
    }

    fn find_order(&self, id_or_external: &str) -> TxResult<Option<OrderHead>> {
        super::find_order_with(
            id_or_external,
            |id| self.order_head(id),
            |ext| Ok(self.tx.get(keys::external(ext))?.map(|v| keys::uuid_of(&v))),
        )
    }

    /// Marks `rec` acked by `system` and, when asked and not done before,
    /// regulates inventory. The order's document is read only to regulate.
    pub(super) fn ack(
        &mut self,
        at: &str,
        rec: OrderHead,
        system: &str,
        regulate: bool,
        note: Option<&str>,
        strictness: Strictness,
    ) -> TxResult<()> {
        let old = self.export_state(system, rec.id)?;
        let new = ExportRecord {
            state: ExportState::Acked,
            sort: self.ctx.now,
            file: old.as_ref().and_then(|o| o.file.clone()),
            written_at: old.and_then(|o| o.written_at),
            acked_at: Some(self.ctx.now),
        };
        self.set_state(system, rec.id, &new)?;
        let mut detail = format!("by {system} ({})", self.source);
        if let Some(note) = note {
            detail.push_str(&format!(": {note}"));
        }
        self.event(rec.id, "acked", detail)?;
        if !regulate {
            return Ok(());
        }
        if rec.regulated {
            return self.event(rec.id, "regulate skipped", "already regulated".into());
        }
        let facts = &rec.facts;
        let mut refusal = None;
        if facts.cancelled {
            refusal = Some(format!(
                "order {} is cancelled: it cannot regulate inventory",
                rec.id
            ));
        }
        let mut changes = Vec::with_capacity(facts.shipped_lines.len());
        for (sku, qty) in &facts.shipped_lines {
            let key = keys::stock(sku);
            // Earlier lines of this order may have moved the same SKU.
            let before = changes
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map_or(self.get_int(&key)?, |(_, v)| *v);
            let after = before - qty;
            if after < 0 && !self.ctx.allow_negative && refusal.is_none() {
                refusal = Some(format!(
                    "regulating order {} would take {sku:?} from {before} to {after} in stock (allow_negative = false)",
                    rec.id
                ));
            }
            changes.push((key, after));
        }
        if let Some(why) = refusal {
            return match strictness {
                Strictness::FailFile => {
                    self.problem(at, why);
                    Ok(())
                }
                Strictness::NoteOnly => self.event(rec.id, "not regulated", why),
            };
        }
        for (key, after) in &changes {
            self.put_int(key, *after)?;
        }
        self.reserve(facts, -1)?;
        let Some(mut rec) = self.order_rec(rec.id)? else {
            return Ok(());
        };
        rec.regulated = true;
        if let Some(doc) = rec.doc.as_object_mut() {
            doc.insert("archived".into(), true.into());
        }
        self.put_order(&rec)?;
        let moved: Vec<String> = facts
            .shipped_lines
            .iter()
            .map(|(sku, qty)| format!("{sku} -{qty}"))
            .collect();
        self.event(
            rec.id,
            "regulated",
            format!("in_stock {}", moved.join(", ")),
        )?;
        self.event(rec.id, "archived", format!("by {system}'s acknowledgement"))?;
        // Archived now: systems that do not take archived orders and have not
        // been sent it yet no longer get it.
        for other in self.ctx.systems {
            if let Some(st) = self.export_state(&other.id, rec.id)?
                && st.state == ExportState::Pending
                && !eligible(other, &rec.doc)
            {
                self.drop_pending(&other.id, rec.id)?;
            }
        }
        self.summary.regulated += 1;
        Ok(())
    }

    // ---- stock -----------------------------------------------------------------

    fn stock_row(&mut self, row: &StockRow, absolute: bool) -> TxResult<()> {
        let at = format!("line {}", row.line);
        let key = keys::stock(&row.sku);
        let before = self.get_int(&key)?;
        let after = if absolute {
            Some(row.value)
        } else {
            before.checked_add(row.value)
        };
        match after {
            None => self.problem(&at, format!("{:?}: stock would overflow", row.sku)),
            Some(after) if after < 0 && !self.ctx.allow_negative => self.problem(
                &at,
                format!(
                    "{:?}: in_stock would be {after}, below 0 (allow_negative = false)",
                    row.sku
                ),
            ),
            Some(after) => {
                self.put_int(&key, after)?;
                self.summary.stock_rows += 1;
            }
        }
        Ok(())
    }
}
