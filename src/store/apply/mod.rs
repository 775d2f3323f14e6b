//! Applying one inbox file's [`Input`] all or nothing (SPEC §3–7).
//!
//! Every row is checked against the store as its writes are staged in
//! memory ([`Tx`]), every problem is collected, and if there is any the
//! staged writes are dropped and nothing changes. The applied-file record
//! (name + content hash) is staged with the file's effects, and they reach
//! the store in one atomic batch, so a file applied before a crash, or
//! re-sent, is recognised and never applied twice. Files of a group
//! ([`Group`]) are staged one over the other and applied as one batch.

mod files;
mod orders;
mod stock;
#[cfg(test)]
mod test_support;
mod tx;

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::MutexGuard;

use uuid::Uuid;

use super::backend::Value;
use super::keys::{self, Key};
use super::{ExportRecord, ExportState, Store, StoreError};
use crate::config::SystemConfig;
use crate::csvin::AckRow;
use crate::input::Input;
use crate::problem::Problem;

pub(super) use files::{Item, Progress};
use files::{applied_file, chunk_of};
use stock::{MAX_TOTAL, add_total};
use tx::{Fetched, Staging, TxResult, finish};
pub(super) use tx::{Tx, Writer, rejected};

/// What an apply needs to know besides the input.
pub struct Context<'a> {
    /// The time of processing, UNIX ms.
    pub now: i64,
    pub systems: &'a [SystemConfig],
    pub allow_negative: bool,
    /// The system whose own drop folder the file came from: its acks may
    /// name that system only.
    pub only_system: Option<&'a str>,
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

impl Summary {
    /// Adds another part's counts (a chunk of a big file) to these.
    fn add(&mut self, o: &Summary) {
        self.new_orders += o.new_orders;
        self.updated_orders += o.updated_orders;
        self.duplicate_orders += o.duplicate_orders;
        self.acks += o.acks;
        self.regulated += o.regulated;
        self.stock_rows += o.stock_rows;
    }
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
    /// Stopped at a safe point (SIGTERM): the file stays in the inbox and
    /// is resumed, or checked again, at the next start.
    #[error("stopped before the file was applied whole; it is resumed at the next start")]
    Interrupted,
}

/// The files of one group, staged one over the other and applied to the
/// store as one batch ([`Group::commit`]): the writer's lock is held from
/// the first file staged to the commit, so nothing else writes what the
/// staged writes were computed from. A rejected file's writes are dropped
/// alone; the others stay staged.
pub struct Group<'s> {
    store: &'s Store,
    lock: RefCell<Option<MutexGuard<'s, ()>>>,
    staged: Staging,
    fetched: Fetched,
    /// The applied-file keys of the files whose reads the group made
    /// ahead ([`Store::read_ahead`]): not named again one by one.
    read_ahead: RefCell<HashSet<Key>>,
}

impl<'s> Group<'s> {
    /// Takes the writer's lock (if not yet held).
    fn begin(&self) {
        let mut lock = self.lock.borrow_mut();
        if lock.is_none() {
            *lock = Some(self.store.db.lock());
        }
    }

    /// Applies what the group staged as one atomic batch and lets other
    /// writers in. Not durable until the store is flushed.
    pub fn commit(&self) -> Result<(), StoreError> {
        let staged = self.staged.take();
        // A closed store (after an error) matters only with writes to apply.
        let r = if staged.is_empty() {
            Ok(())
        } else {
            self.store.db.commit(staged)
        };
        self.fetched.take();
        self.read_ahead.take();
        self.lock.borrow_mut().take();
        r
    }
}

impl Store {
    /// A group of files to apply as one batch (see [`Group`]).
    pub fn group(&self) -> Group<'_> {
        Group {
            store: self,
            lock: RefCell::new(None),
            staged: Default::default(),
            fetched: Default::default(),
            read_ahead: Default::default(),
        }
    }

    /// Reads ahead, for the small files `files` (name, SHA-256, parsed
    /// input) about to be applied into `group` one after the other, what
    /// applying them will read: on a backend behind a network, a few round
    /// trips for the whole group instead of a few per file. Speed only:
    /// what is decided is the same without it. Takes the writer's lock.
    pub fn read_ahead(
        &self,
        group: &Group,
        files: &[(&str, &[u8; 32], &Input)],
        ctx: &Context,
    ) -> Result<(), StoreError> {
        group.begin();
        let tx = Tx::staged(&*self.db, Some(&group.staged)).reading(&group.fetched);
        if !tx.prefetching() || files.is_empty() {
            return Ok(());
        }
        let checks: Vec<Key> = files
            .iter()
            .map(|(name, sha256, _)| keys::file(name, sha256))
            .collect();
        let inputs: Vec<&Input> = files.iter().map(|(_, _, input)| *input).collect();
        super::reads::inputs(&tx, &inputs, checks.clone(), ctx)?;
        group.read_ahead.borrow_mut().extend(checks);
        Ok(())
    }

    /// Runs `f` on a fresh staging over the store, under the writer's
    /// lock, and applies what it staged as one atomic batch when it
    /// succeeds (nothing when it fails). Not durable until a flush.
    pub(super) fn write<A>(&self, f: impl FnOnce(&Tx) -> TxResult<A>) -> Result<A, ApplyError> {
        let _writer = self.db.lock();
        let fetched = Fetched::default();
        let tx = Tx::staged(&*self.db, None).reading(&fetched);
        let a = finish(f(&tx))?;
        self.db.commit(tx.take_staged())?;
        Ok(a)
    }
}

impl Store {
    /// Applies `input`, read from the file `name` whose content hashes to
    /// `sha256`, all or nothing. `known` are problems already found while
    /// parsing: with any, nothing is applied, but the input is still checked
    /// so that the rejection lists every problem.
    ///
    /// A small file is staged into `group`, applied with the group's other
    /// files at [`Group::commit`]. A big one is checked, then applied in
    /// chunks of its own (the group's staged writes are committed first).
    pub fn apply(
        &self,
        group: &Group,
        name: &str,
        sha256: &[u8; 32],
        input: &Input,
        known: &[Problem],
        ctx: &Context,
    ) -> Result<Applied, ApplyError> {
        if let Some(chunk) = chunk_of(input) {
            group.commit()?;
            return self.apply_stream(name, sha256, input, chunk, known, ctx);
        }
        let file_key = keys::file(name, sha256);
        group.begin();
        let tx = Tx::staged(&*self.db, Some(&group.staged)).reading(&group.fetched);
        let applied = finish((|| {
            if tx.get(&file_key)?.is_some() {
                return Ok(Applied::AlreadyApplied);
            }
            if !group.read_ahead.borrow().contains(&file_key) {
                super::reads::input(&tx, input, ctx)?;
            }
            let mut w = Writer::on(&tx, ctx, name);
            w.problems.extend_from_slice(known);
            match input {
                Input::Orders(orders) => {
                    for (path, order) in orders {
                        w.order(path, order)?;
                    }
                }
                Input::OrderStream(stream) => stream.each(|(path, order)| match order {
                    Ok(order) => w.order(&path, &order),
                    Err(p) => {
                        w.problems.extend(p);
                        Ok(())
                    }
                })?,
                Input::Rows(rows) => rows.each(|row| w.csv_row(&row))?,
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
                return rejected(w.problems);
            }
            w.put(file_key, &applied_file(input, ctx))?;
            Ok(Applied::Done(w.summary))
        })())?;
        // Applied: its writes join the group's (rejected, they are dropped).
        // (`extend`, not `append`: append rebuilds the whole map each time.)
        group.staged.borrow_mut().extend(tx.take_staged());
        Ok(applied)
    }
}

/// How many orders a big file applies per batch (and flush).
pub const CHUNK: usize = 1_000;

/// How many CSV rows (acknowledgements, stock) of a big file are taken at a
/// time: a row writes far less than an order (a repeated ack nothing).
pub const ROW_CHUNK: usize = 50_000;

/// The most writes (keys inserted or removed) a batch of a big file stages
/// before it is applied and the store is flushed: the staged writes, and
/// the pages sled dirties applying them, stay in memory until then, so this
/// bounds the memory a big file takes, whatever is in it.
const WRITES: usize = 16_384;

/// Files up to this size are staged whole into their group, without a
/// separate check (their whole write set is small).
pub const SMALL_FILE: usize = 1 << 20;

/// Whether a refused regulation fails the file (an ack row) or is only
/// noted in the timeline (auto-ack, where no one could fix the file).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Strictness {
    FailFile,
    NoteOnly,
}

impl Writer<'_> {
    // ---- acknowledgements ----------------------------------------------------

    pub(super) fn ack_row(&mut self, row: &AckRow) -> TxResult<()> {
        // The row's own rules (a CSV row was checked when read; an HTTP
        // entry is checked here): one place for both paths.
        if let Err(p) = row.check() {
            self.problems.push(p);
            return Ok(());
        }
        let at = format!("line {}", row.line);
        if let Some(only) = self.ctx.only_system {
            let foreign = crate::validate::foreign_acks(std::slice::from_ref(row), only);
            if !foreign.is_empty() {
                self.problems.extend(foreign);
                return Ok(());
            }
        }
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
        let order = self.find_order_id(&row.order_id)?;
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

    /// Marks the order acked by `system` and, when asked and not done
    /// before, regulates inventory. The order's head is read only to
    /// regulate, its document only when it does: an acknowledgement that
    /// changes nothing reads two small keys.
    pub(super) fn ack(
        &mut self,
        at: &str,
        id: Uuid,
        system: &str,
        regulate: bool,
        note: Option<&str>,
        strictness: Strictness,
    ) -> TxResult<()> {
        let old = self.export_state(system, id)?;
        // Acked already (a re-sent acknowledgement): the first ack's time
        // stays and nothing is written, unless the row brings a note or
        // something left to do (regulating).
        let again = old.as_ref().is_some_and(|o| o.state == ExportState::Acked);
        if !again {
            let new = ExportRecord {
                state: ExportState::Acked,
                sort: self.ctx.now,
                file: old.as_ref().and_then(|o| o.file.clone()),
                written_at: old.as_ref().and_then(|o| o.written_at),
                acked_at: Some(self.ctx.now),
                revision: old.as_ref().and_then(|o| o.revision),
            };
            self.set_state(system, id, old.as_ref(), &new)?;
        }
        // A note this system already acked the order with adds nothing:
        // repeated calls do not grow the store (a note is kept once per
        // order, system and text). Auto-ack's fixed note comes once per
        // export, with a state change: nothing to remember.
        let new_note = match note {
            None => None,
            Some(n) if strictness == Strictness::NoteOnly => Some(n),
            Some(n) => {
                let key = keys::note(id, system, n);
                if self.tx.get(&key)?.is_some() {
                    None
                } else {
                    self.tx.insert(key, Value::default());
                    Some(n)
                }
            }
        };
        if !again || new_note.is_some() {
            let again = if again { "again " } else { "" };
            let mut detail = format!("{again}by {system} ({})", self.source);
            if let Some(note) = note {
                detail.push_str(&format!(": {note}"));
            }
            self.event(id, "acked", detail)?;
        }
        if !regulate {
            return Ok(());
        }
        let Some(rec) = self.order_head(id)? else {
            return Ok(());
        };
        if rec.regulated {
            if again {
                return Ok(());
            }
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
        // Lines of the same SKU are added up first, checked.
        let per_sku = facts.per_sku().unwrap_or_else(|sku| {
            refusal.get_or_insert(format!(
                "regulating order {}: the quantities of {sku:?} add up beyond i64",
                rec.id
            ));
            Vec::new()
        });
        let mut changes = Vec::with_capacity(per_sku.len());
        for (sku, qty) in &per_sku {
            let key = keys::stock(sku);
            let before = self.get_int(&key)?;
            let Some(after) = qty.checked_neg().and_then(|d| add_total(before, d)) else {
                refusal.get_or_insert(format!(
                    "regulating order {} would take {sku:?} from {before} in stock below -{MAX_TOTAL}",
                    rec.id
                ));
                continue;
            };
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
        for (key, after) in changes {
            self.put_int(key, after)?;
        }
        self.release(facts)?;
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
                && !other.eligible(&rec.doc)
            {
                self.drop_pending(&other.id, rec.id)?;
            }
        }
        self.summary.regulated += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{Fixture, order_input};
    use super::*;
    use crate::order;

    /// Issue 15: the same note by the same system, acked again and again,
    /// grew the timeline by a copy each time; a row's own rules (note
    /// length, order_id a reference) hold for rows the store is given
    /// directly, as over HTTP.
    #[test]
    fn a_repeated_note_adds_nothing_and_rows_are_checked_in_the_store() {
        let f = Fixture::new();
        assert!(f.apply("o.json", &order_input(&[("A", 1)])).is_ok());
        let ctx = Context {
            now: 6,
            systems: &f.config.systems,
            allow_negative: true,
            only_system: None,
        };
        let row = |note: &str| AckRow {
            line: 1,
            order_id: "o-1".into(),
            system_id: "erp".into(),
            regulate: false,
            note: Some(note.into()),
        };
        for note in ["picked", "picked", "packed", "picked", "packed"] {
            f.store
                .mark_exported(&[row(note)], &[], "HTTP", &ctx)
                .unwrap();
        }
        let id = order::id_for_external_id("o-1");
        let notes: Vec<String> = f
            .store
            .timeline(id)
            .unwrap()
            .into_iter()
            .filter(|e| e.event == "acked")
            .map(|e| e.detail)
            .collect();
        assert_eq!(
            notes,
            ["by erp (HTTP): picked", "again by erp (HTTP): packed"]
        );
        let before = f.store.dump().unwrap();
        f.store
            .mark_exported(&[row("picked")], &[], "HTTP", &ctx)
            .unwrap();
        assert_eq!(f.store.dump().unwrap(), before, "a repeat wrote something");

        let mut bad = row(&"x".repeat(crate::csvin::MAX_NOTE_CHARS + 1));
        let mut spaced = row("fine");
        spaced.line = 2;
        spaced.order_id = " o-1".into();
        bad.line = 3;
        match f
            .store
            .mark_exported(&[row("ok"), spaced, bad], &[], "HTTP", &ctx)
        {
            Err(ApplyError::Rejected(p)) => {
                let text: Vec<String> = p.iter().map(Problem::to_string).collect();
                assert_eq!(
                    text,
                    [
                        "line 2: order_id: begins or ends with white space (\" o-1\"); not allowed in a reference",
                        "line 3: note: 1001 characters; at most 1000 are kept per note",
                    ]
                );
            }
            other => panic!("not rejected: {other:?}"),
        }
        assert_eq!(f.store.dump().unwrap(), before);
    }
}
