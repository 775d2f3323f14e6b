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
pub(crate) mod backend;
mod batch;
mod candidates;
pub mod dump;
mod http;
pub mod keys;
pub mod ledger;
pub mod postgres;
mod records;
mod sled_backend;
mod value;

use std::path::Path;

use crate::config::StoreConfig;
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use crate::order::sent_hash;
pub use apply::{Applied, ApplyError, CHUNK, Context, Group, ROW_CHUNK, SMALL_FILE, Summary};
pub use batch::{Batch, Content};
pub use records::{Event, ExportDoc, ExportRecord, ExportState, OrderHead, OrderRecord};
pub use sled_backend::at_rest::KeptCounts;

use backend::{Backend, Seek};
use keys::Key;
use records::Versioned;

/// A store that cannot be used. Fatal at start-up, a runtime failure later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (the daemon, usually) holds the database.
    #[error("{0} is in use by another ordersync process (is the daemon running?)")]
    Locked(String),
    /// A read command found no database: it never creates one.
    #[error(
        "no store in {0}: has the daemon ever run? (`run`, `init`, `status --wait` and `restore` create it)"
    )]
    Missing(String),
    /// The state folder (or its database) was deleted or replaced while the
    /// database was open: writing on would go into files that are gone.
    #[error(
        "the state folder {0} was deleted or replaced while ordersync had its database open; stopping rather than writing into a database that no longer exists"
    )]
    Replaced(String),
    /// The state folder could not be read or written (a full disk,
    /// permissions): the message names the folder, the cause and the
    /// remedy (see `db.rs`).
    #[error("{0}")]
    Io(String),
    /// A `restore` into this state folder stopped before its end.
    #[error(
        "the store in {0} was restored only in part (a restore stopped before its end): remove the state folder and run restore again"
    )]
    PartRestored(String),
    /// The database's schema cannot be used by this binary (newer).
    #[error("{0}")]
    Schema(String),
    /// The database server failed or cannot be reached: the message names
    /// the server (never a password) and the cause.
    #[error("{0}")]
    Server(String),
    /// The database server refused what ordersync asked for a reason that
    /// waiting does not change (a permission, a schema object, a login:
    /// `postgres::is_refusal`): not an outage; someone must fix it.
    #[error("{0}")]
    Refused(String),
    /// A write of a process that does not hold the writer's lease (on
    /// PostgreSQL): refused by the database, nothing of it was written.
    #[error("{0}")]
    Fenced(String),
    /// Another process holds the writer's lease and renews it: this one may
    /// not write (the message names it).
    #[error("{0}")]
    Held(String),
    /// sled failed otherwise: corruption, a bug. Its cause is in the
    /// message and deliberately not a `source`: an error chain printed
    /// with `{:#}` would say it twice.
    #[error("database error: {0}")]
    Db(sled::Error),
    /// A record that does not decode.
    #[error("corrupt record {key}: {message}")]
    Corrupt { key: String, message: String },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        match e {
            // Made by `db.rs`, which says where and what to do.
            sled::Error::Io(e) => StoreError::Io(e.to_string()),
            e => StoreError::Db(e),
        }
    }
}

/// A record and its value, as [`Store::dump`] lists them.
pub type KeyValue = (String, Vec<u8>);

impl StoreError {
    /// Nothing this process does can fix it: the state folder is gone,
    /// or the database server refuses (a permission, the schema).
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Replaced(_) | StoreError::Refused(_))
    }

    /// The store's database server cannot be reached (or failed): waiting
    /// for it may help.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Server(_))
    }

    /// The database refused the data of a write itself, not for want of a
    /// server: PostgreSQL's SQLSTATE classes 22 (data exception), 23
    /// (integrity constraint) and 54 (program limit exceeded, such as an
    /// index row too large). Another write without that data may succeed,
    /// so the engine isolates the file that caused it instead of waiting.
    /// The server's message names its SQLSTATE (`postgres::describe`).
    pub fn is_data_error(&self) -> bool {
        let StoreError::Server(message) = self else {
            return false;
        };
        message
            .split_once("(SQLSTATE ")
            .and_then(|(_, rest)| rest.get(..2))
            .is_some_and(|class| matches!(class, "22" | "23" | "54"))
    }

    /// A write of a node of a pair refused by the leader's lease: this
    /// node no longer leads.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced(_))
    }
}

/// The backend a store is open on. One per process: its size is no matter.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Sled(sled_backend::Db),
    Postgres(postgres::Live),
}

impl std::ops::Deref for Engine {
    type Target = dyn Backend;

    fn deref(&self) -> &(dyn Backend + 'static) {
        match self {
            Engine::Sled(db) => db,
            Engine::Postgres(pg) => pg,
        }
    }
}

/// The open database.
pub struct Store {
    db: Engine,
    /// Set to stop long work (a big file between its chunks) at the next
    /// safe point: SIGTERM in the daemon.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Called between the chunks of a big file: the daemon pings the
    /// systemd watchdog there, so a long file is no silent step.
    between_chunks: std::sync::Mutex<Option<Box<dyn Fn() + Send>>>,
}

impl Store {
    /// Opens (creating if needed) the database in `folder`, with `options`
    /// (a store keeps the compression it was made with): for `run` and
    /// `init` only.
    pub fn open(folder: &Path, options: &StoreConfig) -> Result<Store, StoreError> {
        Store::open_as(folder, options, true)
    }

    /// Opens the database in `folder`, which must exist
    /// ([`StoreError::Missing`] otherwise): what every command but `run` and
    /// `init` uses, so a missing or moved state folder is reported, never
    /// silently replaced by an empty store.
    pub fn open_existing(folder: &Path, options: &StoreConfig) -> Result<Store, StoreError> {
        Store::open_as(folder, options, false)
    }

    fn open_as(folder: &Path, options: &StoreConfig, create: bool) -> Result<Store, StoreError> {
        let db = match &options.backend {
            crate::config::Backend::Sled => {
                let db = sled_backend::Db::open(folder, create, options)?;
                db.ready()?;
                Engine::Sled(db)
            }
            crate::config::Backend::Postgres(pg) => Engine::Postgres(postgres::Live::open(
                &postgres::live::Options {
                    url: &pg.url,
                    pool_size: pg.pool_size,
                    statement_timeout: pg.statement_timeout,
                    lease: pg.lease.unwrap_or(crate::config::DEFAULT_LEASE),
                    paired: pg.lease.is_some(),
                },
                create,
            )?),
        };
        Ok(Store {
            db,
            stop: Default::default(),
            between_chunks: Default::default(),
        })
    }

    /// Until when this process may write a file for the store: no limit
    /// (`None`) on sled, where the store's lock is held for the process's
    /// life; on PostgreSQL only while its writer's lease holds
    /// ([`StoreError::Fenced`] when it does not). The database fences the
    /// store's own writes; this is for the export files and the inbox
    /// files' moves, which it cannot fence.
    pub fn lease_deadline(&self) -> Result<Option<std::time::Instant>, StoreError> {
        match &self.db {
            Engine::Postgres(pg) => pg.lease_deadline(),
            Engine::Sled(_) => Ok(None),
        }
    }

    /// Closes the store at the end of a clean stop (sled: flushed, closed,
    /// its counts at rest left for `status`; nothing to do on
    /// PostgreSQL). Every later use finds it closed.
    pub fn rest(&self) {
        if let Engine::Sled(db) = &self.db {
            db.rest();
        }
    }

    /// Now, by the one clock that decides: the database server's on
    /// PostgreSQL (every process writing or reading it agrees, whatever its
    /// own clock says), this machine's on sled (one process).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        match &self.db {
            Engine::Postgres(pg) => pg.now(),
            Engine::Sled(_) => chrono::Utc::now(),
        }
    }

    /// Holds the writer's lease for this process's writes until the store
    /// is closed, as `node` (PostgreSQL: see `Live::hold_lease`; nothing
    /// to do on sled, whose lock the open store holds). `what` names the
    /// command in a refusal.
    pub fn hold_lease(&self, node: &str, what: &str) -> Result<(), StoreError> {
        match &self.db {
            Engine::Postgres(pg) => pg.hold_lease(node, what),
            Engine::Sled(_) => Ok(()),
        }
    }

    /// The error of a write this node's lease no longer allows.
    pub fn fenced(&self) -> StoreError {
        match &self.db {
            Engine::Postgres(pg) => pg.fenced(),
            Engine::Sled(_) => StoreError::Fenced("this node does not lead".into()),
        }
    }

    /// The sled database, when the store is on sled.
    fn sled(&self) -> Option<&sled_backend::Db> {
        match &self.db {
            Engine::Sled(db) => Some(db),
            Engine::Postgres(_) => None,
        }
    }

    /// The PostgreSQL store, when the store is on PostgreSQL.
    pub fn postgres(&self) -> Option<&postgres::Live> {
        match &self.db {
            Engine::Postgres(pg) => Some(pg),
            Engine::Sled(_) => None,
        }
    }

    /// The sled database, or an error naming what only sled can do.
    fn sled_db(&self) -> Result<&sled_backend::Db, StoreError> {
        self.sled()
            .ok_or_else(|| StoreError::Io("this needs a store on sled".into()))
    }

    /// Whether `folder` holds a database.
    pub fn exists(folder: &Path) -> bool {
        sled_backend::exists(folder)
    }

    /// The flag that stops long work at its next safe point (between the
    /// chunks of a big file, which is then resumed at the next start).
    pub fn stop_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.stop.clone()
    }

    /// Uses `flag` as the flag that stops long work (see
    /// [`Store::stop_flag`]).
    pub fn set_stop_flag(&mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.stop = flag;
    }

    /// Sets what is called between the chunks of a big file.
    pub fn on_chunk(&self, f: Box<dyn Fn() + Send>) {
        if let Ok(mut slot) = self.between_chunks.lock() {
            *slot = Some(f);
        }
    }

    fn chunk_done(&self) {
        if let Ok(slot) = self.between_chunks.lock()
            && let Some(f) = slot.as_ref()
        {
            f();
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes every committed change durable, after checking that the state
    /// folder is still the one opened ([`StoreError::Replaced`]).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()
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

    fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>, StoreError> {
        match self.db.get(key)? {
            None => Ok(None),
            Some(bytes) => decode(key, &bytes).map(Some),
        }
    }

    /// Every record and its value, in a stable order: what "the store did
    /// not change" is checked against.
    pub fn dump(&self) -> Result<Vec<KeyValue>, StoreError> {
        self.db.records()
    }

    /// The stored order with this id.
    pub fn order(&self, id: Uuid) -> Result<Option<OrderRecord>, StoreError> {
        let key = keys::order(id);
        match self.db.get(&key)? {
            None => Ok(None),
            Some(bytes) => decode_order(&key, &bytes).map(Some),
        }
    }

    /// The stored order with this id as an export file holds it, without
    /// parsing its document.
    pub fn order_for_export(&self, id: Uuid) -> Result<Option<ExportDoc>, StoreError> {
        let key = keys::order(id);
        match self.db.get(&key)? {
            None => Ok(None),
            Some(bytes) => OrderRecord::decode_export(&bytes)
                .map(Some)
                .map_err(|message| corrupt(&key, message)),
        }
    }

    /// The stored orders of `ids` that exist, in that order, as export
    /// files hold them: one round trip on a backend that reads ahead.
    pub fn orders_for_export(&self, ids: &[Uuid]) -> Result<Vec<ExportDoc>, StoreError> {
        if !self.db.prefetches() {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(doc) = self.order_for_export(*id)? {
                    out.push(doc);
                }
            }
            return Ok(out);
        }
        let keys: Vec<Key> = ids.iter().map(|id| keys::order(*id)).collect();
        let mut found: std::collections::HashMap<Key, backend::Value> = self
            .db
            .prefetch(&keys)?
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for key in keys {
            let bytes = match found.remove(&key) {
                Some(bytes) => bytes,
                // Not read ahead: read it alone.
                None => match self.db.get(&key)? {
                    Some(bytes) => bytes,
                    None => continue,
                },
            };
            out.push(OrderRecord::decode_export(&bytes).map_err(|m| corrupt(&key, m))?);
        }
        Ok(out)
    }

    /// What most decisions need of the stored order with this id, without
    /// parsing its document.
    pub fn order_head(&self, id: Uuid) -> Result<Option<OrderHead>, StoreError> {
        let key = keys::order(id);
        match self.db.get(&key)? {
            None => Ok(None),
            Some(bytes) => OrderRecord::decode_head(&bytes)
                .map(Some)
                .map_err(|message| corrupt(&key, message)),
        }
    }

    /// Finds an order by its id or its external id.
    pub fn find_order(&self, id_or_external: &str) -> Result<Option<OrderRecord>, StoreError> {
        find_order_with(
            id_or_external,
            |id| self.order(id),
            |ext| {
                Ok(self
                    .db
                    .get(&keys::external(ext))?
                    .map(|v| keys::uuid_of(&v)))
            },
        )
    }

    /// Every stored order, in id order.
    pub fn orders(&self) -> impl Iterator<Item = Result<OrderRecord, StoreError>> + '_ {
        self.orders_after(None)
    }

    /// Stored orders in id order, starting after the order `after` (if
    /// given): a stream for listings that page.
    pub fn orders_after(
        &self,
        after: Option<Uuid>,
    ) -> impl Iterator<Item = Result<OrderRecord, StoreError>> + '_ {
        self.db.orders_after(after).map(|kv| {
            let (id, v) = kv?;
            decode_order(&keys::order(id), &v)
        })
    }

    /// Ids of the orders in `state` for `system`, in index order, starting
    /// after the order `after` (which must be in that state to be found;
    /// otherwise from the start): a stream for listings that page.
    pub fn ids_in_state_after(
        &self,
        system: &str,
        state: ExportState,
        after: Option<Uuid>,
    ) -> Result<impl Iterator<Item = Result<Uuid, StoreError>> + '_, StoreError> {
        let mut from = Seek::Start;
        if let Some(id) = after
            && let Some(rec) = self.export_state(system, id)?
            && rec.state == state
        {
            from = Seek::After(rec.sort, id);
        }
        Ok(self.db.index(system, state, from).map(|e| Ok(e?.1)))
    }

    /// The number of stored orders (a kept count).
    pub fn order_count(&self) -> Result<u64, StoreError> {
        self.kept(&keys::order_count())
    }

    fn kept(&self, key: &Key) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get(key)?
            .map_or(0, |v| keys::int_of(&v).max(0) as u64))
    }

    /// The export state of an order for a system, if it has one.
    pub fn export_state(&self, system: &str, id: Uuid) -> Result<Option<ExportRecord>, StoreError> {
        self.get(&keys::export(system, id))
    }

    /// How many orders are in `state` for `system` (a kept count).
    pub fn count_in_state(&self, system: &str, state: ExportState) -> Result<u64, StoreError> {
        self.kept(&keys::count(state, system))
    }

    /// Ids of orders in `state` for `system`, in index order (pending: oldest
    /// `created` first; written/acked: oldest first), at most `limit`.
    pub fn ids_in_state(
        &self,
        system: &str,
        state: ExportState,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.db
            .index(system, state, Seek::Start)
            .take(limit)
            .map(|e| Ok(e?.1))
            .collect()
    }

    /// The order's timeline, oldest first.
    pub fn timeline(&self, id: Uuid) -> Result<Vec<Event>, StoreError> {
        self.db
            .events(id)?
            .iter()
            .enumerate()
            .map(|(n, v)| decode(&keys::timeline(id, n as u64), v))
            .collect()
    }

    /// `(sku, in_stock, reserved)` for every SKU with stock or reservations,
    /// sorted by SKU.
    pub fn inventory(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        self.db.totals()
    }
}

/// The one rule for what an order reference names, used by the CLI and by
/// acknowledgements alike: the order with that id if there is one, else the
/// order with that external id. `order` loads by id; `external` maps an
/// external id to an id.
pub(crate) fn find_order_with<T, E>(
    id_or_external: &str,
    order: impl Fn(Uuid) -> Result<Option<T>, E>,
    external: impl Fn(&str) -> Result<Option<Uuid>, E>,
) -> Result<Option<T>, E> {
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
fn decode<T: DeserializeOwned>(
    key: &(impl std::fmt::Display + ?Sized),
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice::<Versioned<T>>(bytes)
        .map(Versioned::into_inner)
        .map_err(|e| corrupt(key, e.to_string()))
}

/// Decodes an order record (either format).
fn decode_order(
    key: &(impl std::fmt::Display + ?Sized),
    bytes: &[u8],
) -> Result<OrderRecord, StoreError> {
    OrderRecord::decode(bytes).map_err(|message| corrupt(key, message))
}

fn corrupt(key: &(impl std::fmt::Display + ?Sized), message: String) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        message,
    }
}

/// Encodes a record as its current version.
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs to JSON cannot fail.
    serde_json::to_vec(&Versioned::V1(value)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::input;

    /// A store written before counts were kept gets them at its next open.
    #[test]
    fn counts_are_made_once_for_an_older_store() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(
            "[[systems]]\nid = \"erp\"\n[[systems]]\nid = \"wms\"\n",
            &dir.path().join("config.toml"),
        )
        .unwrap();
        let state = dir.path().join("state");
        let order = |ext: &str| {
            format!(
                r#"{{"external_id":"{ext}","type":"t","currency":"EUR","reference":"r","line_items":[{{"sku":"A","qty_ordered":1}}],"billing_address":{{"address1":"a","city":"c","country":"DE"}},"shipping_address":{{"address1":"a","city":"c","country":"DE"}},"shipping_rule":{{"name":"x","recovery":1}},"tax_rule":{{"name":"v","inclusive":true,"rate":0.1}}}}"#
            )
        };
        {
            let store = Store::open(&state, &sled_backend::tests::SMALL).unwrap();
            let ctx = Context {
                now: 1,
                systems: &config.systems,
                allow_negative: true,
                only_system: None,
            };
            for (i, ext) in ["a", "b", "c"].iter().enumerate() {
                let bytes = order(ext);
                let parsed = input::parse("o.json", bytes.as_bytes(), config.inbox.encoding, 1);
                let input = parsed.input.unwrap();
                let group = store.group();
                store
                    .apply(
                        &group,
                        &format!("{i}.json"),
                        &[i as u8; 32],
                        &input,
                        &[],
                        &ctx,
                    )
                    .unwrap();
                group.commit().unwrap();
            }
            // As an older version left it: no counts at all.
            let db = store.sled().unwrap();
            for kv in db.scan_prefix([sled_backend::layout::COUNT]).keys() {
                db.remove(kv.unwrap()).unwrap();
            }
            store.flush().unwrap();
        }
        let store =
            sled_backend::tests::when_unlocked(|| Store::open(&state, &sled_backend::tests::SMALL))
                .unwrap();
        assert_eq!(store.order_count().unwrap(), 3);
        assert_eq!(
            store.count_in_state("erp", ExportState::Pending).unwrap(),
            3
        );
        assert_eq!(
            store.count_in_state("wms", ExportState::Pending).unwrap(),
            3
        );
        assert_eq!(store.count_in_state("wms", ExportState::Acked).unwrap(), 0);
    }
}
