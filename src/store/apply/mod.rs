//! Applying one inbox file's [`Input`] all or nothing (SPEC §3–7).
//!
//! Every row is checked against the store as its writes are staged in
//! memory ([`Tx`]), every problem is collected, and if there is any the
//! staged writes are dropped and nothing changes. The applied-file record
//! (name + content hash) is staged with the file's effects, and they reach
//! the store in one atomic batch, so a file applied before a crash, or
//! re-sent, is recognised and never applied twice. Files of a group
//! ([`Group`]) are staged one over the other and applied as one batch.
//!
//! Where each part lives (each file's head says what it guarantees, and
//! what to know before changing it):
//!
//! - `mod.rs` (here): what an apply is given and returns ([`Context`],
//!   [`Applied`], [`Summary`], [`ApplyError`]), the files of a group staged
//!   together ([`Group`]), [`Store::apply`], which hands each item of a
//!   file to its rule, and the bounds of a big file's chunks.
//! - `tx.rs`: staging. [`Tx`] (writes held in memory over the store, or a
//!   dry run), [`Writer`] (one file's writes and problems) with its typed
//!   helpers, and how a write stops (`TxError`).
//! - `files.rs`: files and dedupe. The applied-file record (each file
//!   once), a big file checked whole then applied in chunks with a
//!   progress record, and a streamed item's way to its rule.
//! - `orders.rs`: orders and revisions. New, update, duplicate, stale,
//!   archived; references that never name two orders; an order's export
//!   state per system with its index entry and count.
//! - `stock.rs`: stock and reservations. Per-SKU totals within
//!   ±[`MAX_TOTAL`], an order's reservation, stock rows.
//! - `acks.rs`: acknowledgements and regulation. An ack row checked, the
//!   order marked acked, a note kept once, inventory regulated once.
//!
//! [`MAX_TOTAL`]: stock::MAX_TOTAL

mod acks;
mod files;
mod orders;
pub(in crate::store) mod reads;
mod stock;
#[cfg(test)]
mod test_support;
mod tx;

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::MutexGuard;

use super::keys::{self, Key};
use super::{Store, StoreError};
use crate::config::SystemConfig;
use crate::input::Input;
use crate::problem::Problem;

pub(super) use acks::Strictness;
pub(super) use files::{Item, Progress};
use files::{applied_file, chunk_of};
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
        reads::inputs(&tx, &inputs, checks.clone(), ctx)?;
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
                reads::input(&tx, input, ctx)?;
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
/// time: a row writes far less than an order (a repeated ack nothing). The
/// rows of a chunk are held parsed while it is applied (50,000 of them
/// were about 9 MiB of a 1M-row ack file's peak), and the batches that
/// apply them are bounded by their writes ([`WRITES`]), not by this.
pub const ROW_CHUNK: usize = 10_000;

/// The most writes (keys inserted or removed) a big file applies between
/// two flushes of the store; on PostgreSQL also the most one transaction
/// of it holds.
const WRITES: usize = 16_384;

/// On sled, the most writes one atomic batch of a big CSV file applies. sled
/// holds every tree node a batch reads in, copies (one copy per key
/// written) or evicts until the batch ends (one epoch guard for the whole
/// batch), so this bounds the memory a big file takes, whatever is in it.
/// A 1M-row ack file over 100,000 orders (a row that changes something
/// writes four keys or more, each in another node) peaked at 299-309 MiB
/// with batches of 16,384 writes and chunks of 50,000 rows, 266-268 MiB
/// with 4,096 and 10,000, and 257-270 MiB with 1,024 and 10,000, on a
/// shared machine. Not for order files: 8,000 long orders applied in
/// batches this small left sled's pages in more pieces, and a listing of
/// them afterwards raised the daemon's peak by 20 MiB instead of under 6
/// (`tests/state.rs::a_long_listing_is_streamed_through_the_daemon`).
/// PostgreSQL keeps nothing of a transaction in this process: there a
/// batch is [`WRITES`], one transaction, as many as before.
const SLED_BATCH_WRITES: usize = 1_024;

/// Files up to this size are staged whole into their group, without a
/// separate check (their whole write set is small).
pub const SMALL_FILE: usize = 1 << 20;
