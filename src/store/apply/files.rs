//! Files: each applied exactly once, and a big one in bounded chunks.
//!
//! A file applied is recorded by its name and SHA-256 (key `f`,
//! [`applied_file`]) in the same batch as its effects, so a file re-sent,
//! or applied before a crash, is recognised and does nothing
//! ([`Applied::AlreadyApplied`]). A small file is staged whole into its
//! group ([`Store::apply`]). A big one ([`chunk_of`]: over [`SMALL_FILE`])
//! is checked whole in a dry run first, then applied in chunks, each
//! batch at most [`WRITES`] writes (a CSV file on sled
//! [`SLED_BATCH_WRITES`]), a
//! flush after every [`WRITES`] and at each chunk's end, with a
//! progress record (key `g`, [`Progress`]) that says where to resume after
//! a crash or a stop; its last batch records the file and removes the
//! progress. Memory follows a chunk, never the file. Also here: how an
//! item of a streamed file reaches its rule (`Writer::item`,
//! [`Writer::csv_row`]).
//!
//! To change it safely: the check must find every problem applying can,
//! because the chunks before a failing one are already in the store (a
//! chunk that fails is taken for a store changed by another writer: the
//! file stays in the inbox with its progress and is retried).

use serde::Serialize;

use super::super::keys;
use super::super::records::AppliedFile;
use super::super::{Store, StoreError};
use super::tx::{Abort, Fetched, Tx, TxError, TxResult, Writer, abort, finish};
use super::{
    Applied, ApplyError, CHUNK, Context, ROW_CHUNK, SLED_BATCH_WRITES, SMALL_FILE, Summary, WRITES,
};
use crate::input::{CsvRow, Input};
use crate::problem::Problem;

/// The record of a file applied now (key `f`: its name and hash).
pub(super) fn applied_file(input: &Input, ctx: &Context) -> AppliedFile {
    AppliedFile {
        at: ctx.now,
        kind: input.kind().into(),
    }
}

/// How many items a batch of `input` takes, when it is big enough
/// to be checked first and then applied in chunks.
pub(super) fn chunk_of(input: &Input) -> Option<usize> {
    match input {
        Input::OrderStream(s) if s.size() > SMALL_FILE => Some(CHUNK),
        Input::Rows(r) if r.size() > SMALL_FILE => Some(ROW_CHUNK),
        _ => None,
    }
}

/// One item of a streamed file: an order or a CSV row.
pub(in crate::store) enum Item {
    Order(crate::input::StreamItem),
    Row(Result<CsvRow, Problem>),
}

/// Calls `f` with each item of a streamed `input` (others have none).
fn each_item<E>(input: &Input, mut f: impl FnMut(Item) -> Result<(), E>) -> Result<(), E> {
    match input {
        Input::OrderStream(s) => s.each(|i| f(Item::Order(i))),
        Input::Rows(r) => r.each(|i| f(Item::Row(i))),
        _ => Ok(()),
    }
}

/// A progress line in the log every few seconds while a big file is
/// checked and applied, so `journalctl -f` shows it moving.
struct Pace<'n> {
    name: &'n str,
    start: std::time::Instant,
    last: std::time::Instant,
}

impl<'n> Pace<'n> {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    fn new(name: &'n str) -> Pace<'n> {
        let now = std::time::Instant::now();
        Pace {
            name,
            start: now,
            last: now,
        }
    }

    fn rate(&self, done: u64) -> u64 {
        (done as f64 / self.start.elapsed().as_secs_f64().max(1e-3)) as u64
    }

    /// Logs `done` (of `total`, when known) if the last line is old enough.
    fn tick(&mut self, what: &str, done: u64, total: Option<u64>) {
        if self.last.elapsed() < Self::EVERY {
            return;
        }
        self.last = std::time::Instant::now();
        let rate = self.rate(done);
        match total {
            Some(total) => {
                tracing::info!(file = ?self.name, done, total, per_second = rate, "{what}")
            }
            None => tracing::info!(file = ?self.name, done, per_second = rate, "{what}"),
        }
    }
}

/// A file part-applied in chunks (key `g`): how many of its items (orders
/// or rows) are in.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(in crate::store) struct Progress {
    pub(in crate::store) orders: u64,
}

impl Store {
    /// Applies a file of orders read as a stream, all or nothing, with
    /// memory that follows a chunk, not the file:
    ///
    /// 1. **Check** the whole file against the store in a dry run (the
    ///    orders are parsed one at a time; only what later checks read is
    ///    kept, see [`Tx`]). Any problem rejects the file; nothing changed.
    /// 2. **Apply** it in chunks of [`CHUNK`] orders, each an atomic batch
    ///    that records the file's progress, each followed by a flush; the
    ///    last one records the file as applied. A checked file cannot fail
    ///    part-way, so readers (and the exporter) may see its orders
    ///    appear chunk by chunk. After a crash, the progress record says
    ///    where to resume (the file was checked before its first chunk).
    pub(super) fn apply_stream(
        &self,
        name: &str,
        sha256: &[u8; 32],
        input: &Input,
        chunk_size: usize,
        known: &[Problem],
        ctx: &Context,
    ) -> Result<Applied, ApplyError> {
        let file_key = keys::file(name, sha256);
        let progress_key = keys::progress(name, sha256);
        if self.db.get(&file_key)?.is_some() {
            return Ok(Applied::AlreadyApplied);
        }
        let resume: Option<Progress> = self.get(&progress_key)?;
        let total = std::cell::Cell::new(0);
        if resume.is_none() {
            let checked = self.check_stream(name, input, chunk_size, known, ctx, &total)?;
            let mut problems = checked.problems;
            if !problems.is_empty() {
                problems.sort_by_key(Problem::line);
                return Err(ApplyError::Rejected(problems));
            }
            if let Some(summary) = checked.nothing_to_do {
                // Only the file's own record to write.
                self.write(|tx| {
                    Writer::on(tx, ctx, name).put(file_key.clone(), &applied_file(input, ctx))
                })?;
                return Ok(Applied::Done(summary));
            }
        }
        let skip = resume.map_or(0, |p| p.orders);
        let mut done = skip;
        let mut summary = Summary::default();
        let mut chunk: Vec<Item> = Vec::with_capacity(chunk_size);
        let mut seen: u64 = 0;
        let mut pace = Pace::new(name);
        // Applies `chunk` in atomic batches of at most `batch` writes each,
        // flushing after every WRITES writes and at the chunk's end; `last`:
        // the file's last chunk, whose last batch records the file as
        // applied (the caller's flush makes it durable). Each batch records
        // the progress with its writes and the store keeps batches in
        // order, so a crash before a flush only has rows redone from the
        // last progress kept, as a crash before any batch's flush did.
        let batch = match input {
            Input::Rows(_) if self.postgres().is_none() => SLED_BATCH_WRITES,
            _ => WRITES,
        };
        // What a batch reads ahead: the rows the last batch took, and a
        // quarter more (the whole chunk at first). A chunk whose rows each
        // write much is applied in many batches, and reading ahead for all
        // of what is left of it at each would read it again and again
        // (PostgreSQL: 10,000 regulating acks took 18 batches, each reading
        // the orders of every row left). A row beyond it is read when met.
        let mut ahead = usize::MAX;
        let mut run = |chunk: &mut Vec<Item>,
                       last: bool,
                       summary: &mut Summary|
         -> Result<(), ApplyError> {
            let mut unflushed = 0;
            loop {
                let (s, k, end, wrote) = self.write(|tx| {
                    let named = chunk.iter().take(ahead);
                    super::reads::items(tx, named, ctx)?;
                    let mut w = Writer::on(tx, ctx, name);
                    let mut k = 0;
                    for item in chunk.iter() {
                        w.item(item)?;
                        k += 1;
                        if w.tx.writes() >= batch {
                            break;
                        }
                    }
                    if !w.problems.is_empty() {
                        // Checked before: only a store changed meanwhile (by
                        // another writer) lands here. The file stays in the
                        // inbox with its progress; it is retried.
                        return abort(StoreError::Corrupt {
                            key: progress_key.to_string(),
                            message: format!("a chunk of a checked file failed: {}", w.problems[0]),
                        });
                    }
                    let end = last && k == chunk.len();
                    // Rows that changed nothing (a re-sent ack file) need
                    // no progress record: after a crash they are redone,
                    // again changing nothing.
                    let wrote = w.tx.writes();
                    if end {
                        w.put(file_key.clone(), &applied_file(input, ctx))?;
                        tx.remove(progress_key.clone());
                    } else if wrote > 0 {
                        w.put(
                            progress_key.clone(),
                            &Progress {
                                orders: done + k as u64,
                            },
                        )?;
                    }
                    Ok((w.summary, k, end, wrote))
                })?;
                summary.add(&s);
                done += k as u64;
                ahead = k + k / 4 + 64;
                chunk.drain(..k);
                if end {
                    // The caller's flush (the group's) makes it durable.
                    return Ok(());
                }
                unflushed += wrote;
                if unflushed > 0 && (unflushed >= WRITES || chunk.is_empty()) {
                    self.flush()?;
                    unflushed = 0;
                }
                self.chunk_done();
                if chunk.is_empty() {
                    return Ok(());
                }
            }
        };
        each_item(input, |item| {
            seen += 1;
            if seen <= skip {
                return Ok(());
            }
            chunk.push(item);
            if chunk.len() >= chunk_size {
                run(&mut chunk, false, &mut summary)?;
                let total = Some(total.get()).filter(|&t| t > 0);
                pace.tick("applying a big file", seen, total);
                if self.stopping() {
                    // Its progress is recorded: resumed at the next start.
                    return Err(ApplyError::Interrupted);
                }
            }
            Ok::<_, ApplyError>(())
        })?;
        run(&mut chunk, true, &mut summary)?;
        Ok(Applied::Done(summary))
    }

    /// Every problem of a streamed file, checked against the store as
    /// applying it would, without changing anything (a dry run).
    fn check_stream(
        &self,
        name: &str,
        input: &Input,
        chunk_size: usize,
        known: &[Problem],
        ctx: &Context,
        total: &std::cell::Cell<u64>,
    ) -> Result<Checked, ApplyError> {
        let fetched = Fetched::default();
        let tx = Tx::dry(&*self.db).reading(&fetched);
        let mut w = Writer::on(&tx, ctx, name);
        w.problems.extend_from_slice(known);
        let mut checked = 0usize;
        let mut pace = Pace::new(name);
        // Where reads are round trips, a chunk's items are held and their
        // reads made ahead at once (then forgotten: memory follows a chunk).
        let ahead = tx.prefetching();
        let mut held: Vec<Item> = Vec::new();
        let check_held = |w: &mut Writer, held: &mut Vec<Item>| -> TxResult<()> {
            super::reads::items(w.tx, held.iter(), ctx)?;
            for item in held.drain(..) {
                w.item(&item)?;
            }
            fetched.borrow_mut().clear();
            Ok(())
        };
        let r = each_item(input, |item| {
            if self.stopping() {
                return Err(TxError::Abort(Abort::Interrupted));
            }
            checked += 1;
            if checked.is_multiple_of(chunk_size) {
                self.chunk_done();
                pace.tick("checking a big file", checked as u64, None);
            }
            if !ahead {
                return w.item(&item);
            }
            held.push(item);
            if held.len() >= chunk_size {
                check_held(&mut w, &mut held)?;
            }
            Ok(())
        })
        .and_then(|()| check_held(&mut w, &mut held));
        total.set(checked as u64);
        tracing::debug!(file = ?name, items = checked, secs = pace.start.elapsed().as_secs_f64(), "checked");
        let checked = Checked {
            nothing_to_do: (w.tx.writes() == 0).then(|| w.summary.clone()),
            problems: w.problems,
        };
        finish(r).map(|()| checked)
    }
}

/// What checking a big file found.
struct Checked {
    problems: Vec<Problem>,
    /// When the file would change nothing (every row a repeated ack, say):
    /// what it holds.
    nothing_to_do: Option<Summary>,
}

impl Writer<'_> {
    /// One row of a CSV file, or its problem.
    pub(super) fn csv_row(&mut self, row: &Result<CsvRow, Problem>) -> TxResult<()> {
        match row {
            Ok(CsvRow::Ack(row)) => self.ack_row(row),
            Ok(CsvRow::Stock { absolute, row }) => self.stock_row(row, *absolute),
            Err(p) => {
                self.problems.push(p.clone());
                Ok(())
            }
        }
    }

    /// One item of a streamed file, or its problems.
    fn item(&mut self, item: &Item) -> TxResult<()> {
        match item {
            Item::Order((path, Ok(order))) => self.order(path, order),
            Item::Order((_, Err(p))) => {
                self.problems.extend(p.iter().cloned());
                Ok(())
            }
            Item::Row(row) => self.csv_row(row),
        }
    }
}
