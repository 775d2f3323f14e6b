//! The embedded database (sled) and everything kept in it: orders and their
//! revisions, export state per system, stock and reservations, timelines,
//! the applied-file log and the export sequence counters.
//!
//! The store never touches the file system outside its own folder. Every
//! change is one sled transaction over a single tree whose keys carry a
//! one-byte prefix per record kind (see [`keys`]); transactions only use
//! point reads and writes (sled cannot scan inside one), so every index the
//! exporter or the CLI scans is kept up to date by the writes themselves.

mod apply;
mod batch;
mod db;
pub mod keys;
mod records;

use std::path::Path;

use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use apply::{Applied, ApplyError, Context};
pub use batch::Batch;
pub use records::{Event, ExportRecord, ExportState, OrderRecord};

use records::Versioned;

/// A store that cannot be used. Fatal at start-up, a runtime failure later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (the daemon, usually) holds the database.
    #[error("the state folder {0} is in use by another ordersync process (is the daemon running?)")]
    Locked(String),
    /// A read command found no database: it never creates one.
    #[error("no store in {0}: has the daemon ever run? (only `run` and `init` create it)")]
    Missing(String),
    /// The state folder (or its database) was deleted or replaced while the
    /// database was open: writing on would go into files that are gone.
    #[error(
        "the state folder {0} was deleted or replaced while ordersync had its database open; stopping rather than writing into a database that no longer exists"
    )]
    Replaced(String),
    /// sled failed: disk, permissions, corruption.
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    /// A record that does not decode.
    #[error("corrupt record {key}: {message}")]
    Corrupt { key: String, message: String },
}

/// A raw key and value, as [`Store::dump`] lists them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

impl StoreError {
    /// The state folder is gone: nothing this process does can fix it.
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Replaced(_))
    }
}

/// The open database.
pub struct Store {
    db: db::Db,
}

impl Store {
    /// Opens (creating if needed) the database in `folder`: for `run` and
    /// `init` only.
    pub fn open(folder: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            db: db::Db::open(folder, true)?,
        })
    }

    /// Opens the database in `folder`, which must exist
    /// ([`StoreError::Missing`] otherwise): what every command but `run` and
    /// `init` uses, so a missing or moved state folder is reported, never
    /// silently replaced by an empty store.
    pub fn open_existing(folder: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            db: db::Db::open(folder, false)?,
        })
    }

    /// Whether `folder` holds a database.
    pub fn exists(folder: &Path) -> bool {
        db::exists(folder)
    }

    /// Makes every committed change durable, after checking that the state
    /// folder is still the one opened ([`StoreError::Replaced`]).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.check()?;
        self.db.flush()?;
        Ok(())
    }

    /// Fails with [`StoreError::Replaced`] when the state folder or its
    /// database was deleted or replaced since it was opened.
    pub fn check_folder(&self) -> Result<(), StoreError> {
        self.db.check()
    }

    /// Closes the database and opens it again from disk. After an IO error
    /// (a full disk) sled fails every later write until it is restarted;
    /// this is that restart. Changes committed but not flushed are dropped:
    /// the files they came from were not moved, so they are applied again.
    /// On failure the store stays closed (every call fails with an IO
    /// error) until a later `reopen` works.
    pub fn reopen(&self) -> Result<(), StoreError> {
        self.db.reopen()
    }

    /// False after a failed [`Store::reopen`].
    pub fn is_open(&self) -> bool {
        self.db.is_open()
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db.get(key)? {
            None => Ok(None),
            Some(bytes) => decode(key, &bytes).map(Some),
        }
    }

    /// Every key and value in the database, in key order: what "the store
    /// did not change" is checked against.
    pub fn dump(&self) -> Result<Vec<KeyValue>, StoreError> {
        self.db
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// The stored order with this id.
    pub fn order(&self, id: Uuid) -> Result<Option<OrderRecord>, StoreError> {
        self.get(&keys::order(id))
    }

    /// Finds an order by its id or its external id.
    pub fn find_order(&self, id_or_external: &str) -> Result<Option<OrderRecord>, StoreError> {
        find_order_with(
            id_or_external,
            |id| self.order(id),
            |ext| Ok(self.db.get(keys::external(ext))?.map(|v| keys::uuid_of(&v))),
        )
    }

    /// Every stored order, in id order.
    pub fn orders(&self) -> impl Iterator<Item = Result<OrderRecord, StoreError>> + '_ {
        self.db.scan_prefix([keys::ORDER]).map(|kv| {
            let (k, v) = kv?;
            decode(&k, &v)
        })
    }

    /// The number of stored orders.
    pub fn order_count(&self) -> usize {
        self.db.scan_prefix([keys::ORDER]).keys().count()
    }

    /// The export state of an order for a system, if it has one.
    pub fn export_state(&self, system: &str, id: Uuid) -> Result<Option<ExportRecord>, StoreError> {
        self.get(&keys::export(system, id))
    }

    /// How many orders are in `state` for `system` (an index count).
    pub fn count_in_state(&self, system: &str, state: ExportState) -> usize {
        self.db
            .scan_prefix(keys::index_prefix(state, system))
            .keys()
            .count()
    }

    /// Ids of orders in `state` for `system`, in index order (pending: oldest
    /// `created` first; written/acked: oldest first), at most `limit`.
    pub fn ids_in_state(
        &self,
        system: &str,
        state: ExportState,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut out = Vec::new();
        for key in self
            .db
            .scan_prefix(keys::index_prefix(state, system))
            .keys()
            .take(limit)
        {
            out.push(keys::uuid_suffix(&key?));
        }
        Ok(out)
    }

    /// The order's timeline, oldest first.
    pub fn timeline(&self, id: Uuid) -> Result<Vec<Event>, StoreError> {
        self.db
            .scan_prefix(keys::timeline_prefix(id))
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// `(sku, in_stock, reserved)` for every SKU with stock or reservations,
    /// sorted by SKU.
    pub fn inventory(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let mut map = std::collections::BTreeMap::<String, (i64, i64)>::new();
        for kv in self.db.scan_prefix([keys::STOCK]) {
            let (k, v) = kv?;
            map.entry(keys::sku_of(&k)).or_default().0 = keys::int_of(&v);
        }
        for kv in self.db.scan_prefix([keys::RESERVED]) {
            let (k, v) = kv?;
            map.entry(keys::sku_of(&k)).or_default().1 = keys::int_of(&v);
        }
        Ok(map.into_iter().map(|(s, (i, r))| (s, i, r)).collect())
    }
}

/// The one rule for what an order reference names, used by the CLI and by
/// acknowledgements alike: the order with that id if there is one, else the
/// order with that external id. `order` loads by id; `external` maps an
/// external id to an id.
pub(crate) fn find_order_with<E>(
    id_or_external: &str,
    order: impl Fn(Uuid) -> Result<Option<OrderRecord>, E>,
    external: impl Fn(&str) -> Result<Option<Uuid>, E>,
) -> Result<Option<OrderRecord>, E> {
    if let Ok(id) = Uuid::parse_str(id_or_external)
        && let Some(o) = order(id)?
    {
        return Ok(Some(o));
    }
    match external(id_or_external)? {
        Some(id) => order(id),
        None => Ok(None),
    }
}

/// Decodes a versioned record.
fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice::<Versioned<T>>(bytes)
        .map(Versioned::into_inner)
        .map_err(|e| StoreError::Corrupt {
            key: keys::describe(key),
            message: e.to_string(),
        })
}

/// Encodes a record as its current version.
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs to JSON cannot fail.
    serde_json::to_vec(&Versioned::V1(value)).unwrap_or_default()
}
