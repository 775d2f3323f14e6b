//! Staging: how a rule's writes are held until they reach the store.
//!
//! [`Tx`] is the store as a rule sees it: a point read finds what this
//! file staged, then what the group's earlier files staged, then what was
//! read ahead ([`Tx::prefetch`]), then the backend. Writes stay in memory
//! until the caller applies them as one batch ([`Store::write`],
//! [`Group::commit`]); in a dry run (a big file checked whole) only what
//! later checks read is kept. [`Writer`] is one file's (or export step's)
//! writes with the problems found so far, and the typed helpers every rule
//! uses: records, integers, the timeline, kept counts.
//!
//! To change it safely: rules read only through `Tx`, so each decision
//! sees the writes staged before it; a problem is pushed, not returned, so
//! a rejection lists them all; nothing reaches the store before the
//! caller's commit, so a rejected file changes nothing. A record that a
//! later check reads must be kept by a dry run (`kept_when_dry`), or a big
//! file is checked against a store without its own earlier orders.
//!
//! [`Store::write`]: crate::store::Store::write
//! [`Group::commit`]: super::Group::commit

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use uuid::Uuid;

use super::super::backend::{Backend, Changes, Value};
use super::super::keys::{self, Key};
use super::super::{Event, OrderHead, OrderRecord, StoreError, decode, encode};
use super::{ApplyError, Context, Summary};
use crate::problem::Problem;

/// Why staged writes were dropped.
pub(in crate::store) enum Abort {
    Interrupted,
    Rejected(Vec<Problem>),
    Store(StoreError),
}

/// Why a write stopped: aborted for a reason, or the store failed.
pub(in crate::store) enum TxError {
    Abort(Abort),
    Storage(StoreError),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> TxError {
        TxError::Storage(e)
    }
}

pub(in crate::store) type TxResult<T> = Result<T, TxError>;

pub(super) fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(TxError::Abort(Abort::Store(e)))
}

/// A rejection of the file with `problems`, in file order.
pub(in crate::store) fn rejected<T>(mut problems: Vec<Problem>) -> TxResult<T> {
    // Parse and store problems, back in file order.
    problems.sort_by_key(Problem::line);
    Err(TxError::Abort(Abort::Rejected(problems)))
}

/// Maps a write's error to the caller's.
pub(in crate::store) fn finish<T>(r: TxResult<T>) -> Result<T, ApplyError> {
    match r {
        Ok(t) => Ok(t),
        Err(TxError::Abort(Abort::Rejected(p))) => Err(ApplyError::Rejected(p)),
        Err(TxError::Abort(Abort::Store(e))) => Err(ApplyError::Store(e)),
        Err(TxError::Abort(Abort::Interrupted)) => Err(ApplyError::Interrupted),
        Err(TxError::Storage(e)) => Err(ApplyError::Store(e)),
    }
}

/// Writes staged in memory: key → new value, `None` for a removal.
pub(super) type Staging = RefCell<Changes>;

/// Records read ahead from the backend ([`Tx::prefetch`]): valid while the
/// writer's lock is held and nothing was committed since.
pub(in crate::store) type Fetched = RefCell<HashMap<Key, Option<Value>>>;

/// The writes of one file (or export step), with the problems found so far.
pub(in crate::store) struct Writer<'t> {
    pub(in crate::store) tx: &'t Tx<'t>,
    pub(super) ctx: &'t Context<'t>,
    /// The file (or export file) the changes come from, for the timeline.
    pub(super) source: &'t str,
    pub(in crate::store) problems: Vec<Problem>,
    pub(in crate::store) summary: Summary,
}

/// The store as a writer sees it: the tree, with the writes staged so far
/// over it. Staged ([`Store::write`], [`Group`]), the writes are kept to be
/// applied as one batch. Dry, to check a big file before applying it,
/// only what later checks read is kept (orders' heads, external ids,
/// reservations and stock); the rest (documents, export state, timeline)
/// is dropped, so memory stays small.
///
/// [`Store::write`]: crate::store::Store::write
/// [`Group`]: super::Group
pub(in crate::store) struct Tx<'t> {
    db: &'t dyn Backend,
    src: Source<'t>,
    /// Records read ahead, under the staged ones.
    fetched: Option<&'t Fetched>,
    /// How many keys were written (inserted or removed), or would have
    /// been in a dry run.
    writes: Cell<usize>,
}

enum Source<'t> {
    Staged {
        /// Staged before, by the group's earlier files: read, not written.
        under: Option<&'t Staging>,
        own: Staging,
    },
    Dry {
        kept: RefCell<HashMap<Key, Option<Value>>>,
    },
}

/// The records a dry run keeps: what checking later orders reads.
fn kept_when_dry(key: &Key) -> bool {
    matches!(
        key,
        Key::Order(_) | Key::External(_) | Key::ExternalUuid(_) | Key::Reserved(_) | Key::Stock(_)
    )
}

impl<'t> Tx<'t> {
    /// Writes staged over `under` (if any) over the store.
    pub(in crate::store) fn staged(db: &'t dyn Backend, under: Option<&'t Staging>) -> Tx<'t> {
        Tx::new(
            db,
            Source::Staged {
                under,
                own: Default::default(),
            },
        )
    }

    /// A dry run (see [`Tx`]).
    pub(super) fn dry(db: &'t dyn Backend) -> Tx<'t> {
        Tx::new(
            db,
            Source::Dry {
                kept: Default::default(),
            },
        )
    }

    fn new(db: &'t dyn Backend, src: Source<'t>) -> Tx<'t> {
        Tx {
            db,
            src,
            fetched: None,
            writes: Default::default(),
        }
    }

    /// Reads through `fetched`, where [`Tx::prefetch`] puts what it reads.
    pub(in crate::store) fn reading(mut self, fetched: &'t Fetched) -> Tx<'t> {
        self.fetched = Some(fetched);
        self
    }

    /// Reads `keys` ahead, in a few round trips, when the backend is worth
    /// it and this writer keeps what it reads: the rules' point reads that
    /// follow find them here. Keys staged or fetched already are skipped.
    pub(in crate::store) fn prefetch(&self, keys: Vec<Key>) -> Result<(), StoreError> {
        let Some(fetched) = self.fetched else {
            return Ok(());
        };
        if !self.db.prefetches() || keys.is_empty() {
            return Ok(());
        }
        let mut wanted: Vec<Key> = {
            let have = fetched.borrow();
            keys.into_iter()
                .filter(|k| !have.contains_key(k) && self.staged_value(k).is_none())
                .collect()
        };
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let got = self.db.prefetch(&wanted)?;
        fetched.borrow_mut().extend(got);
        Ok(())
    }

    /// What this writer staged (or kept, in a dry run) for `key`.
    fn staged_value(&self, key: &Key) -> Option<Option<Value>> {
        match &self.src {
            Source::Staged { under, own } => {
                let v = own.borrow().get(key).cloned();
                v.or_else(|| under.and_then(|u| u.borrow().get(key).cloned()))
            }
            Source::Dry { kept } => kept.borrow().get(key).cloned(),
        }
    }

    pub(in crate::store) fn get(&self, key: &Key) -> Result<Option<Value>, StoreError> {
        if let Some(v) = self.staged_value(key) {
            return Ok(v);
        }
        if let Some(fetched) = self.fetched
            && let Some(v) = fetched.borrow().get(key)
        {
            return Ok(v.clone());
        }
        self.db.get(key)
    }

    pub(in crate::store) fn insert(&self, key: Key, value: impl Into<Value>) {
        self.writes.set(self.writes.get() + 1);
        match &self.src {
            Source::Staged { own, .. } => {
                own.borrow_mut().insert(key, Some(value.into()));
            }
            Source::Dry { kept } => {
                if kept_when_dry(&key) {
                    let mut value: Value = value.into();
                    if matches!(key, Key::Order(_)) {
                        // Only the head is read later: keep it, not the
                        // document.
                        value = OrderRecord::head_only(&value).into();
                    }
                    kept.borrow_mut().insert(key, Some(value));
                }
            }
        }
    }

    pub(in crate::store) fn remove(&self, key: Key) {
        self.writes.set(self.writes.get() + 1);
        match &self.src {
            Source::Staged { own, .. } => {
                own.borrow_mut().insert(key, None);
            }
            Source::Dry { kept } => {
                if kept_when_dry(&key) {
                    kept.borrow_mut().insert(key, None);
                }
            }
        }
    }

    /// Whether reads are made ahead ([`Tx::prefetch`]) here.
    pub(in crate::store) fn prefetching(&self) -> bool {
        self.fetched.is_some() && self.db.prefetches()
    }

    /// How many keys were written so far.
    pub(super) fn writes(&self) -> usize {
        self.writes.get()
    }

    /// The writes staged (none in a dry run), taken out.
    pub(super) fn take_staged(&self) -> Changes {
        match &self.src {
            Source::Staged { own, .. } => own.take(),
            Source::Dry { .. } => Changes::new(),
        }
    }

    fn generate_id(&self) -> Result<u64, StoreError> {
        match &self.src {
            Source::Staged { .. } => self.db.generate_id(),
            Source::Dry { .. } => Ok(0),
        }
    }
}

impl<'t> Writer<'t> {
    pub(in crate::store) fn on(tx: &'t Tx<'t>, ctx: &'t Context<'t>, source: &'t str) -> Self {
        Writer {
            tx,
            ctx,
            source,
            problems: Vec::new(),
            summary: Summary::default(),
        }
    }

    pub(in crate::store) fn get<T: DeserializeOwned>(&self, key: &Key) -> TxResult<Option<T>> {
        match self.tx.get(key)? {
            None => Ok(None),
            Some(bytes) => match decode(key, &bytes) {
                Ok(v) => Ok(Some(v)),
                Err(e) => abort(e),
            },
        }
    }

    /// The stored order with this id.
    pub(in crate::store) fn order_rec(&self, id: Uuid) -> TxResult<Option<OrderRecord>> {
        let key = keys::order(id);
        match self.tx.get(&key)? {
            None => Ok(None),
            Some(bytes) => match super::super::decode_order(&key, &bytes) {
                Ok(v) => Ok(Some(v)),
                Err(e) => abort(e),
            },
        }
    }

    /// The head of the stored order with this id (its document unparsed).
    pub(in crate::store) fn order_head(&self, id: Uuid) -> TxResult<Option<OrderHead>> {
        let key = keys::order(id);
        match self.tx.get(&key)? {
            None => Ok(None),
            Some(bytes) => match OrderRecord::decode_head(&bytes) {
                Ok(v) => Ok(Some(v)),
                Err(m) => abort(super::super::corrupt(&key, m)),
            },
        }
    }

    pub(in crate::store) fn put_order(&self, rec: &OrderRecord) -> TxResult<()> {
        self.tx.insert(keys::order(rec.id), rec.encode());
        Ok(())
    }

    pub(in crate::store) fn put<T: Serialize>(&self, key: Key, value: &T) -> TxResult<()> {
        self.tx.insert(key, encode(value));
        Ok(())
    }

    pub(super) fn get_int(&self, key: &Key) -> TxResult<i64> {
        Ok(self.tx.get(key)?.map_or(0, |v| keys::int_of(&v)))
    }

    pub(super) fn put_int(&self, key: Key, value: i64) -> TxResult<()> {
        self.tx.insert(key, &keys::int(value));
        Ok(())
    }

    pub(super) fn problem(&mut self, at: impl Into<String>, what: impl Into<String>) {
        self.problems.push(Problem::new(at, what));
    }

    pub(in crate::store) fn event(&self, id: Uuid, event: &str, detail: String) -> TxResult<()> {
        let n = self.tx.generate_id()?;
        self.put(
            keys::timeline(id, n),
            &Event {
                at: self.ctx.now,
                event: event.into(),
                detail,
            },
        )
    }

    /// Adds `delta` to a kept count (`status` reads counts, never scans).
    pub(in crate::store) fn bump(&self, key: Key, delta: i64) -> TxResult<()> {
        let n = self.get_int(&key)?.saturating_add(delta);
        self.put_int(key, n)
    }
}
