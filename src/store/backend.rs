//! The narrow interface between the store's rules (`apply/`, `batch.rs`,
//! `http.rs`, the reads in `mod.rs`) and where the records live: sled
//! (`sled_backend/`) or PostgreSQL (`postgres/`). The rules read records by
//! [`Key`], stage their writes in memory, and hand a group's writes to
//! [`Backend::commit`], which applies them all or none; every scan the
//! exporter, the HTTP API and the CLI make is a method here, so a backend
//! may answer it from its own indexes.

use std::collections::BTreeMap;
use std::sync::MutexGuard;

use uuid::Uuid;

use super::OrderRecord;
use super::candidates::{Candidate, Narrowing};
use super::keys;
use super::keys::Key;
use super::{ExportState, StoreError};

pub use super::value::Value;

/// A group's writes: key → new value, `None` for a removal.
pub type Changes = BTreeMap<Key, Option<Value>>;

/// A stream of records, read lazily.
pub type Rows<'a, T> = Box<dyn Iterator<Item = Result<T, StoreError>> + 'a>;

/// Where a state's listing starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Seek {
    /// At its first entry.
    Start,
    /// At the first entry whose sort key is at least this.
    Sort(i64),
    /// Right after the entry of this sort key and order.
    After(i64, Uuid),
}

/// What a backend does for the rules.
pub trait Backend: Send + Sync {
    /// One record.
    fn get(&self, key: &Key) -> Result<Option<Value>, StoreError>;

    /// Whether [`Backend::prefetch`] is worth calling: a read is a round
    /// trip to a server, not a lookup in memory.
    fn prefetches(&self) -> bool {
        false
    }

    /// Several records at once, as [`Backend::get`] would read them one
    /// by one (a key not returned is read with `get` when needed). The
    /// rules name what a file will read before they stage it, so a backend
    /// behind a network answers them in a few round trips.
    fn prefetch(&self, keys: &[Key]) -> Result<Vec<(Key, Option<Value>)>, StoreError> {
        let _ = keys;
        Ok(Vec::new())
    }

    /// The right to write: held from a writer's first read to its changes
    /// committed, so nothing else writes what they were computed from.
    fn lock(&self) -> MutexGuard<'_, ()>;

    /// Applies `changes` all or none (the caller holds [`Backend::lock`]).
    /// Not durable before [`Backend::flush`].
    fn commit(&self, changes: Changes) -> Result<(), StoreError>;

    /// Makes every committed change durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// A number never handed out before, in increasing order: timelines
    /// are ordered by it.
    fn generate_id(&self) -> Result<u64, StoreError>;

    /// Fails when the store was deleted or replaced under the process.
    fn check(&self) -> Result<(), StoreError>;

    /// Drops the handle (connections) and opens it again, after an error.
    fn reopen(&self) -> Result<(), StoreError>;

    /// False after a failed [`Backend::reopen`].
    fn is_open(&self) -> bool;

    /// Stored orders in id order, after the order `after` when given.
    fn orders_after(&self, after: Option<Uuid>) -> Rows<'_, (Uuid, Value)>;

    /// `(sort key, order id)` of a state's listing for a system, in order.
    fn index(&self, system: &str, state: ExportState, from: Seek) -> Rows<'_, (i64, Uuid)>;

    /// An order's timeline, oldest first.
    fn events(&self, id: Uuid) -> Result<Vec<Value>, StoreError>;

    /// `(sku, in_stock, reserved)` for every SKU with either, by SKU.
    fn totals(&self) -> Result<Vec<(String, i64, i64)>, StoreError>;

    /// A system's export batches in flight, by sequence number.
    fn batches(&self, system: &str) -> Result<Vec<Value>, StoreError>;

    /// The transfers of a remote's ledger ([`Key::Transfer`]) not yet
    /// finished, by direction and name; a backend may give finished ones
    /// too (the caller leaves them out). PostgreSQL answers from a partial
    /// index, so the cost follows the work in hand, not the history; sled
    /// scans the remote's records.
    fn transfers(&self, remote: &str) -> Result<Vec<(Key, Value)>, StoreError>;

    /// Every record as `(key, value)` in a stable order: what "the store
    /// did not change" is checked against.
    fn records(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// The candidates of `GET /v10/orders/export` for a system, oldest
    /// `created` first, then by id: its `pending` and `written` orders and,
    /// with `acked_since`, those acked at or after that time. A backend may
    /// leave out orders that fail `narrow` (never others) and may give the
    /// fields the decision reads with each ([`Candidate::fields`]). By
    /// default (sled): the listings merged, nothing narrowed.
    fn export_candidates(
        &self,
        system: &str,
        acked_since: Option<i64>,
        narrow: &Narrowing,
    ) -> Rows<'_, Candidate> {
        let _ = narrow;
        merged(self, system, acked_since)
    }
}

/// The candidates of `GET /v10/orders/export` as sled gives them (and any
/// backend without a query of its own): the `pending` index (already by
/// `created`, streamed) merged with the `written` orders and, with
/// `acked_since`, those acked at or after it. Those are sorted in memory
/// (their index is by write or ack time): they are the orders a system has
/// been sent but not acked, and a re-export window, not the whole store.
/// Nothing is narrowed: `fields` is `None`.
fn merged<'a, B: Backend + ?Sized>(
    db: &'a B,
    system: &str,
    acked_since: Option<i64>,
) -> Rows<'a, Candidate> {
    let extra = (|| -> Result<Vec<(i64, Uuid)>, StoreError> {
        let mut extra = Vec::new();
        let mut add = |entry: Result<(i64, Uuid), StoreError>| -> Result<(), StoreError> {
            let (_, id) = entry?;
            let key = keys::order(id);
            if let Some(bytes) = db.get(&key)? {
                let head =
                    OrderRecord::decode_head(&bytes).map_err(|message| StoreError::Corrupt {
                        key: key.to_string(),
                        message,
                    })?;
                extra.push((head.created, id));
            }
            Ok(())
        };
        for e in db.index(system, ExportState::Written, Seek::Start) {
            add(e)?;
        }
        if let Some(since) = acked_since {
            for e in db.index(system, ExportState::Acked, Seek::Sort(since)) {
                add(e)?;
            }
        }
        extra.sort_unstable();
        Ok(extra)
    })();
    let extra = match extra {
        Ok(e) => e,
        Err(e) => return Box::new(std::iter::once(Err(e))),
    };
    let pending = db
        .index(system, ExportState::Pending, Seek::Start)
        .peekable();
    Box::new(Merge {
        pending,
        extra: extra.into_iter().peekable(),
    })
}

/// Merges two streams sorted by (created, id).
struct Merge<P: Iterator<Item = Result<(i64, Uuid), StoreError>>> {
    pending: std::iter::Peekable<P>,
    extra: std::iter::Peekable<std::vec::IntoIter<(i64, Uuid)>>,
}

impl<P: Iterator<Item = Result<(i64, Uuid), StoreError>>> Iterator for Merge<P> {
    type Item = Result<Candidate, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let take_extra = match (self.pending.peek(), self.extra.peek()) {
            (None, None) => return None,
            (Some(Err(_)), _) | (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(Ok(p)), Some(e)) => e < p,
        };
        let candidate = |(created, id)| Candidate {
            created,
            id,
            fields: None,
        };
        if take_extra {
            self.extra.next().map(|e| Ok(candidate(e)))
        } else {
            self.pending.next().map(|r| r.map(candidate))
        }
    }
}
