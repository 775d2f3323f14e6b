//! The sled handle behind [`Store`](super::Store), and the two things a
//! long-running process must know about it:
//!
//! - **It can be reopened.** After an IO error (a full disk) sled 0.34 keeps
//!   the error in a global slot that only a fresh start of its page cache
//!   clears: every later write and flush fails with it even once space is
//!   freed. So the handle lives in a slot that can be emptied and refilled
//!   ([`Db::reopen`]); what was committed in memory but never flushed is
//!   dropped with it, and the files it came from are still in the inbox.
//! - **Its folder can vanish.** A process that has the database open goes on
//!   writing into deleted files if the state folder is removed or replaced
//!   under it. The folder's and the `db` file's device and inode are recorded
//!   at open and compared by [`Db::check`].
//!
//! - **Its flush is not durable by itself.** sled 0.34's `flush` writes the
//!   log with `sync_file_range`, which neither flushes the drive's write
//!   cache nor the file's metadata, and writes values too big for a log
//!   segment to files under `blobs/` with no sync at all. After a power cut
//!   an inbox file already renamed into `archive/` could then have lost its
//!   record. [`Db::flush`] therefore follows sled's flush with
//!   `fdatasync` of the `db` file (one handle kept open for it) and `fsync`
//!   of every blob file written since the last flush and of `blobs/`. sled's
//!   snapshot files (`snap.*`) it syncs itself, and they are only an index
//!   over the log, rebuilt from it when missing.
//!
//! It delegates the handful of sled calls the store makes, so the store's
//! code reads as if it held a `sled::Db`.
//!
//! **One writer at a time.** Writes are staged in memory and applied as one
//! `sled::Batch` (atomic on disk and to readers: sled's `get` and
//! `apply_batch` share a lock), instead of sled transactions, whose
//! conflict tracking and per-key commit cost more than the work itself. A
//! batch is computed from what the writer read, so writers take
//! [`Db::lock`] from their first read to the batch applied; readers never
//! wait for it.

use std::io;
use std::ops::RangeBounds;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

pub mod at_rest;
pub mod layout;

use sled::IVec;
use uuid::Uuid;

use super::backend::{Backend, Changes, Rows, Seek, Value};
use super::keys::Key;
use super::{ExportState, StoreError};
use crate::config::StoreConfig;

/// How long reopening waits for sled to release the lock of the handle it
/// dropped (it does so a moment after the last clone is gone).
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// Device and inode of the state folder and of sled's `db` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    folder: (u64, u64),
    db: (u64, u64),
}

/// The identity of `folder` and its `db` file; `Ok(None)` when either is
/// missing.
fn identity(folder: &Path) -> io::Result<Option<Identity>> {
    let id = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    Ok(match (id(folder)?, id(&folder.join(DB_FILE))?) {
        (Some(folder), Some(db)) => Some(Identity { folder, db }),
        _ => None,
    })
}

/// The files sled 0.34 writes first into its folder: a store exists when
/// both do.
const DB_FILE: &str = "db";
const CONF_FILE: &str = "conf";

/// The folder as errors show it: absolute, as a service's log has no
/// working directory to read it against.
fn shown(folder: &Path) -> String {
    std::path::absolute(folder)
        .unwrap_or_else(|_| folder.to_path_buf())
        .display()
        .to_string()
}

/// Whether `folder` holds a sled database.
pub(super) fn exists(folder: &Path) -> bool {
    folder.join(DB_FILE).is_file() && folder.join(CONF_FILE).is_file()
}

/// The folder sled writes values too large for a log segment into.
const BLOBS: &str = "blobs";

/// What [`Db::flush`] syncs after sled's own flush: the `db` file through a
/// handle kept open (so a flush costs one `fdatasync`, not an `open` too),
/// and the blob files sled wrote since the last flush.
struct Durable {
    db: std::fs::File,
    /// The highest blob (sled names them by log sequence number) synced.
    last_blob: u64,
    /// The `blobs/` folder's modification time when it was last listed, if
    /// it was old enough to tell: unchanged, no blob was added since, and
    /// it is not listed again.
    blobs_mtime: Option<std::time::SystemTime>,
}

impl Durable {
    fn open(folder: &Path) -> io::Result<Durable> {
        Ok(Durable {
            db: std::fs::File::open(folder.join(DB_FILE))?,
            last_blob: 0,
            blobs_mtime: None,
        })
    }

    /// Makes what sled wrote durable: `fsync` of each new blob and of
    /// `blobs/`, then `fdatasync` of the `db` file.
    fn sync(&mut self, folder: &Path) -> io::Result<()> {
        // Blobs first: the log points at them.
        self.sync_blobs(folder)?;
        self.db.sync_data()
    }

    fn sync_blobs(&mut self, folder: &Path) -> io::Result<()> {
        let blobs = folder.join(BLOBS);
        let mtime = match std::fs::metadata(&blobs) {
            Ok(m) => m.modified().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if mtime.is_some() && mtime == self.blobs_mtime {
            return Ok(());
        }
        let mut newest = self.last_blob;
        for entry in std::fs::read_dir(&blobs)? {
            let entry = entry?;
            let Some(lsn) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if lsn <= self.last_blob {
                continue;
            }
            match std::fs::File::open(entry.path()) {
                Ok(f) => f.sync_all()?,
                // Removed by sled's clean-up meanwhile: nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            newest = newest.max(lsn);
        }
        std::fs::File::open(&blobs)?.sync_all()?;
        self.last_blob = newest;
        // A folder's mtime ticks coarsely (a few milliseconds): a blob
        // added in the same tick as the listing would leave it unchanged.
        // Only an mtime well in the past proves that nothing came since.
        let settled = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
        self.blobs_mtime = mtime.filter(|m| *m < settled);
        Ok(())
    }
}

/// An open (or, after an error, closed and waiting to be reopened) database.
pub(super) struct Db {
    folder: PathBuf,
    options: StoreConfig,
    identity: Identity,
    slot: RwLock<Option<sled::Db>>,
    /// Held by the one writer staging a batch (see the module's head).
    writer: Mutex<()>,
    /// Held by a flush from sled's flush to its files synced.
    durable: Mutex<Durable>,
    /// The last IO error, described: what a call says while the database
    /// is closed after it (a reopen that failed).
    last_error: Mutex<Option<(io::ErrorKind, String)>>,
}

/// An IO error of the store as its users read it, once: the folder, the
/// cause and what to do. sled hands out clones of the first error it kept
/// (same kind, its message in `Debug` form), so the cause is told by kind.
fn described(folder: &Path, e: &io::Error) -> io::Error {
    let f = shown(folder);
    let message = match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => format!(
            "the disk holding the state folder {f} is full (no space left on the device): free space in {f}; ordersync reopens the store by itself, and the files waiting in the inbox are applied once it can write"
        ),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => format!(
            "the state folder {f} cannot be written ({}): make it writable for the user ordersync runs as",
            e.kind()
        ),
        _ => format!("the database in the state folder {f} failed: {e}"),
    };
    io::Error::new(e.kind(), message)
}

/// Whether `e` was made by [`described`] already (an error handed on
/// twice is not wrapped twice).
fn is_described(e: &io::Error) -> bool {
    let m = e.to_string();
    m.starts_with("the disk holding the state folder ")
        || m.starts_with("the state folder ")
        || m.starts_with("the database in the state folder ")
}

/// The size of sled's log segments in a new store: 2 MiB instead of sled's
/// 512 KiB, which left a store a quarter larger (old page versions wait in
/// partly-live segments until those are cleaned). Measured on a 10,000-order
/// file: 66 MB of state at 512 KiB, 50 MB at 2 MiB, 50 MB at 4 MiB, 64 MB at
/// 8 MiB, same speed and memory.
const SEGMENT_SIZE: usize = 2 << 20;

/// A setting sled keeps in the store's `conf` (`NAME: value` lines, then
/// a checksum in binary) and refuses to open the store with another value
/// of. `None` when the folder has no store yet (or an unreadable `conf`,
/// which sled then reports itself).
fn made_with<T: std::str::FromStr>(folder: &Path, name: &str) -> Option<T> {
    let conf = std::fs::read(folder.join(CONF_FILE)).ok()?;
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

/// The segment size a store was made with.
fn segment_size_of(folder: &Path) -> Option<usize> {
    made_with(folder, "segment_size")
}

/// Whether a store was made with sled's compression.
fn compression_of(folder: &Path) -> Option<bool> {
    made_with(folder, "use_compression")
}

/// sled's zstd level: above 1 it was no smaller on order data and slower
/// still (`docs/BENCHMARKS.md`).
const COMPRESSION_LEVEL: i32 = 1;

fn open_sled(folder: &Path, options: &StoreConfig) -> Result<sled::Db, StoreError> {
    let compression = match compression_of(folder) {
        Some(made) if made != options.compression => {
            tracing::warn!(
                made_with = made,
                configured = options.compression,
                "store.compression applies to new stores only: this store keeps the setting it was made with"
            );
            made
        }
        Some(made) => made,
        None => options.compression,
    };
    match sled::Config::new()
        .path(folder)
        .cache_capacity(options.cache_capacity)
        .segment_size(segment_size_of(folder).unwrap_or(SEGMENT_SIZE))
        .use_compression(compression)
        .compression_factor(COMPRESSION_LEVEL)
        .open()
    {
        Ok(db) => Ok(db),
        Err(sled::Error::Io(e)) if is_lock_error(&e) => Err(StoreError::Locked(format!(
            "the state folder {}",
            folder.display()
        ))),
        Err(sled::Error::Io(e)) => Err(sled::Error::Io(described(folder, &e)).into()),
        Err(e) => Err(e.into()),
    }
}

/// sled reports a held lock as an `Io` error ("could not acquire lock").
fn is_lock_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || e.to_string().contains("lock")
        || e.raw_os_error() == Some(11)
}

impl Drop for Db {
    fn drop(&mut self) {
        self.rest();
    }
}

impl Db {
    /// A clean close: flushed, sled closed, then the counts at rest
    /// written (see `at_rest.rs`). Anything amiss (the folder replaced, a
    /// failed flush) leaves none: `status` then opens the store. Every use
    /// after it finds the store closed.
    pub(super) fn rest(&self) {
        if self.handle().is_err() || self.check().is_err() || self.flush().is_err() {
            return;
        }
        // A store a restore left part-loaded is refused by every open:
        // `status` must open it to say so.
        if !matches!(self.get(layout::RESTORING), Ok(None)) {
            return;
        }
        let counts: Result<Vec<(Vec<u8>, i64)>, _> = self
            .scan_prefix([layout::COUNT])
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), layout::int_of(&v))))
            .collect();
        let Ok(counts) = counts else { return };
        // sled flushes and closes with its last handle: here, unless some
        // other thread still holds one (then it writes later, the `db`
        // file changes, and readers do not take the counts).
        let sled = self.slot.write().ok().and_then(|mut s| s.take());
        let Some(sled) = sled else { return };
        drop(sled);
        if let Err(e) = at_rest::write(&self.folder, counts) {
            tracing::debug!(error = %e, "the store's counts at rest were not written");
        }
    }

    /// Opens the database in `folder`; with `create`, makes the folder and
    /// the database when missing, without it reports [`StoreError::Missing`].
    pub(super) fn open(
        folder: &Path,
        create: bool,
        options: &StoreConfig,
    ) -> Result<Db, StoreError> {
        if create {
            std::fs::create_dir_all(folder).map_err(sled::Error::Io)?;
        } else if !exists(folder) {
            return Err(StoreError::Missing(shown(folder)));
        }
        let db = open_sled(folder, options)?;
        let identity = identity(folder)
            .map_err(sled::Error::Io)?
            .ok_or_else(|| StoreError::Replaced(shown(folder)))?;
        let io = |e: io::Error| sled::Error::Io(described(folder, &e));
        let durable = Durable::open(folder).map_err(io)?;
        // Open, the store may change: its counts at rest go (see
        // `at_rest.rs`), before anything is written.
        at_rest::forget(folder).map_err(io)?;
        // The names sled made in a new store (`db`, `conf`, `blobs/`), and
        // the counts at rest gone.
        crate::fsutil::sync_dir(folder).map_err(io)?;
        Ok(Db {
            folder: folder.to_path_buf(),
            options: options.clone(),
            identity,
            slot: RwLock::new(Some(db)),
            writer: Mutex::new(()),
            durable: Mutex::new(durable),
            last_error: Mutex::new(None),
        })
    }

    /// The state folder.
    pub(super) fn folder(&self) -> &Path {
        &self.folder
    }

    /// Fails with [`StoreError::Replaced`] when the state folder or its
    /// database file is no longer the one opened.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        match identity(&self.folder).map_err(sled::Error::Io)? {
            Some(id) if id == self.identity => Ok(()),
            _ => Err(StoreError::Replaced(shown(&self.folder))),
        }
    }

    /// Whether a handle is open (false after a failed [`Db::reopen`]).
    pub(super) fn is_open(&self) -> bool {
        self.slot.read().is_ok_and(|s| s.is_some())
    }

    /// Drops the handle and opens the database again from what is on disk,
    /// clearing an error sled keeps after a failed write. Never creates a
    /// database: the folder must still be the one opened. On failure the
    /// store stays closed (every call fails) until a later reopen works.
    pub(super) fn reopen(&self) -> Result<(), StoreError> {
        let old = self.slot.write().map(|mut s| s.take()).unwrap_or(None);
        drop(old);
        self.check()?;
        let start = Instant::now();
        let db = loop {
            match open_sled(&self.folder, &self.options) {
                Err(StoreError::Locked(_)) if start.elapsed() < REOPEN_WAIT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        self.check()?;
        let durable = Durable::open(&self.folder).map_err(|e| self.located(e.into()))?;
        *self.durable.lock().unwrap_or_else(|e| e.into_inner()) = durable;
        if let Ok(mut s) = self.slot.write() {
            *s = Some(db);
        }
        Ok(())
    }

    /// A clone of the open handle (cheap: sled's handles are shared).
    pub(super) fn handle(&self) -> sled::Result<sled::Db> {
        self.slot
            .read()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| self.closed())
    }

    /// The error of a closed database: the one that closed it.
    fn closed(&self) -> sled::Error {
        let last = self.last_error.lock().ok().and_then(|l| l.clone());
        sled::Error::Io(match last {
            Some((kind, message)) => io::Error::new(kind, message),
            None => io::Error::other(format!(
                "the database in the state folder {} is closed after an error and not yet reopened",
                shown(&self.folder)
            )),
        })
    }

    /// `e` as the store's users read it (see [`described`]), remembered
    /// for [`Db::closed`].
    pub(super) fn located(&self, e: sled::Error) -> sled::Error {
        match e {
            sled::Error::Io(e) if is_described(&e) => sled::Error::Io(e),
            sled::Error::Io(e) => {
                let e = described(&self.folder, &e);
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some((e.kind(), e.to_string()));
                }
                sled::Error::Io(e)
            }
            e => e,
        }
    }

    /// The right to write: held from a writer's first read to its batch
    /// applied. Not reentrant: a holder must not call [`Db::insert`] or
    /// [`Db::apply_batch`], which take it.
    pub(super) fn lock(&self) -> MutexGuard<'_, ()> {
        // A writer that panicked left no half-applied batch behind (it is
        // applied whole or not at all): the lock is still good.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<IVec>> {
        self.handle()?.get(key).map_err(|e| self.located(e))
    }

    pub(super) fn insert<K: AsRef<[u8]>, V: Into<IVec>>(
        &self,
        key: K,
        value: V,
    ) -> sled::Result<Option<IVec>> {
        let _writer = self.lock();
        self.handle()?
            .insert(key, value)
            .map_err(|e| self.located(e))
    }

    pub(super) fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<bool> {
        self.handle()?
            .contains_key(key)
            .map_err(|e| self.located(e))
    }

    pub(super) fn apply_batch(&self, batch: sled::Batch) -> sled::Result<()> {
        let _writer = self.lock();
        self.handle()?
            .apply_batch(batch)
            .map_err(|e| self.located(e))
    }

    /// [`Db::apply_batch`] for a caller that holds [`Db::lock`] already.
    pub(super) fn apply_batch_locked(&self, batch: sled::Batch) -> sled::Result<()> {
        self.handle()?
            .apply_batch(batch)
            .map_err(|e| self.located(e))
    }

    #[cfg(test)]
    pub(super) fn remove<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<IVec>> {
        let _writer = self.lock();
        self.handle()?.remove(key)
    }

    /// sled's flush, then the files it wrote synced (see the module's
    /// head): when this returns, what was committed survives a power cut.
    pub(super) fn flush(&self) -> sled::Result<usize> {
        let mut durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        let flushed = self.handle()?.flush().map_err(|e| self.located(e))?;
        durable
            .sync(&self.folder)
            .map_err(|e| self.located(e.into()))?;
        Ok(flushed)
    }

    pub(super) fn iter(&self) -> Iter<'_> {
        Iter::new(self, self.handle().map(|db| db.iter()))
    }

    pub(super) fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Iter<'_> {
        Iter::new(self, self.handle().map(|db| db.scan_prefix(prefix)))
    }

    pub(super) fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter<'_> {
        Iter::new(self, self.handle().map(|db| db.range(range)))
    }
}

impl Db {
    /// What a sled store needs before use: a store left by a `restore` that
    /// stopped part-way is refused, and one written before counts were kept
    /// gets them.
    pub(super) fn ready(&self) -> Result<(), StoreError> {
        if self.contains_key(layout::RESTORING)? {
            return Err(StoreError::PartRestored(
                self.folder().display().to_string(),
            ));
        }
        self.ensure_counts()
    }

    /// Makes the kept counts (and the `u` index) of a store written before
    /// they were kept, by counting once; later every transaction that
    /// changes a state or adds an order updates them.
    pub(in crate::store) fn ensure_counts(&self) -> Result<(), StoreError> {
        if self.contains_key(layout::COUNTS_VERSION)? {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let orders = self.scan_prefix([layout::ORDER]).keys().count() as i64;
        batch.insert(layout::order_count(), &orders.to_be_bytes());
        for state in ExportState::ALL {
            let mut counts = std::collections::BTreeMap::<Vec<u8>, i64>::new();
            let prefix = layout::index_prefix(state, "");
            for key in self.scan_prefix(&prefix[..1]).keys() {
                let key = key?;
                let system = key[1..].split(|b| *b == 0).next().unwrap_or_default();
                let system = String::from_utf8_lossy(system);
                *counts.entry(layout::count(state, &system)).or_default() += 1;
            }
            for (k, n) in counts {
                batch.insert(k, &n.to_be_bytes());
            }
        }
        // The `u` index (the UUID an external id spells) came with the
        // counts: fill it for the orders stored before.
        for kv in self.scan_prefix([layout::EXTERNAL]) {
            let (k, v) = kv?;
            if let Ok(spelt) = std::str::from_utf8(&k[1..]).map(Uuid::parse_str)
                && let Ok(spelt) = spelt
            {
                batch.insert(layout::external_uuid(spelt), v);
            }
        }
        batch.insert(layout::COUNTS_VERSION, b"1");
        self.apply_batch(batch)?;
        self.check()?;
        Db::flush(self)?;
        Ok(())
    }
}

impl Backend for Db {
    fn get(&self, key: &Key) -> Result<Option<Value>, StoreError> {
        Ok(Db::get(self, layout::encode(key))?.map(Value::from_sled))
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        Db::lock(self)
    }

    fn commit(&self, changes: Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (k, v) in changes {
            let k = layout::encode(&k);
            match v {
                Some(v) => batch.insert(k, v.into_sled()),
                None => batch.remove(k),
            }
        }
        Ok(self.apply_batch_locked(batch)?)
    }

    fn flush(&self) -> Result<(), StoreError> {
        Db::check(self)?;
        Db::flush(self)?;
        Ok(())
    }

    fn generate_id(&self) -> Result<u64, StoreError> {
        Ok(self.handle()?.generate_id().map_err(|e| self.located(e))?)
    }

    fn check(&self) -> Result<(), StoreError> {
        Db::check(self)
    }

    fn reopen(&self) -> Result<(), StoreError> {
        Db::reopen(self)
    }

    fn is_open(&self) -> bool {
        Db::is_open(self)
    }

    fn orders_after(&self, after: Option<Uuid>) -> Rows<'_, (Uuid, Value)> {
        let start = match after {
            // The key right after `o<id>`.
            Some(id) => {
                let mut k = layout::order(id);
                k.push(0);
                k
            }
            None => vec![layout::ORDER],
        };
        Box::new(
            self.range(start..)
                .take_while(|kv| {
                    kv.as_ref()
                        .map_or(true, |(k, _)| k.first() == Some(&layout::ORDER))
                })
                .map(|kv| {
                    let (k, v) = kv?;
                    Ok((layout::uuid_of(&k[1..]), Value::from_sled(v)))
                }),
        )
    }

    fn index(&self, system: &str, state: ExportState, from: Seek) -> Rows<'_, (i64, Uuid)> {
        let prefix = layout::index_prefix(state, system);
        let start = match from {
            Seek::Start => prefix.clone(),
            Seek::Sort(sort) => layout::index(state, system, sort, Uuid::nil()),
            Seek::After(sort, id) => {
                let mut k = layout::index(state, system, sort, id);
                k.push(0);
                k
            }
        };
        Box::new(
            self.range(start..)
                .keys()
                .take_while(move |k| k.as_ref().map_or(true, |k| k.starts_with(&prefix)))
                .map(|k| {
                    let k = k?;
                    Ok((layout::index_sort(&k), layout::uuid_suffix(&k)))
                }),
        )
    }

    fn events(&self, id: Uuid) -> Result<Vec<Value>, StoreError> {
        self.scan_prefix(layout::timeline_prefix(id))
            .map(|kv| Ok(Value::from_sled(kv?.1)))
            .collect()
    }

    fn totals(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let mut map = std::collections::BTreeMap::<String, (i64, i64)>::new();
        for kv in self.scan_prefix([layout::STOCK]) {
            let (k, v) = kv?;
            map.entry(layout::sku_of(&k)).or_default().0 = layout::int_of(&v);
        }
        for kv in self.scan_prefix([layout::RESERVED]) {
            let (k, v) = kv?;
            map.entry(layout::sku_of(&k)).or_default().1 = layout::int_of(&v);
        }
        Ok(map.into_iter().map(|(s, (i, r))| (s, i, r)).collect())
    }

    fn batches(&self, system: &str) -> Result<Vec<Value>, StoreError> {
        self.scan_prefix(layout::batch_prefix(system))
            .map(|kv| Ok(Value::from_sled(kv?.1)))
            .collect()
    }

    fn transfers(&self, remote: &str) -> Result<Vec<(Key, Value)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.scan_prefix(layout::transfer_prefix(remote)) {
            let (k, v) = kv?;
            if let Some(key) = layout::transfer_key(remote, &k) {
                out.push((key, Value::from_sled(v)));
            }
        }
        Ok(out)
    }

    fn records(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((layout::describe(&k), v.to_vec()))
            })
            .collect()
    }
}

/// sled's iterator, or the single error of a closed database; its errors
/// say where (see [`described`]).
pub(super) struct Iter<'a> {
    db: &'a Db,
    inner: Inner,
}

// Short-lived and almost always `Open`: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Open(sled::Iter),
    Closed(Option<sled::Error>),
}

impl<'a> Iter<'a> {
    fn new(db: &'a Db, r: sled::Result<sled::Iter>) -> Iter<'a> {
        let inner = match r {
            Ok(i) => Inner::Open(i),
            Err(e) => Inner::Closed(Some(e)),
        };
        Iter { db, inner }
    }
}

impl Iterator for Iter<'_> {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = match &mut self.inner {
            Inner::Open(i) => i.next(),
            Inner::Closed(e) => e.take().map(Err),
        };
        next.map(|r| r.map_err(|e| self.db.located(e)))
    }
}

impl Iter<'_> {
    /// Only the keys.
    pub(super) fn keys(self) -> impl Iterator<Item = sled::Result<IVec>> {
        self.map(|r| r.map(|(k, _)| k))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::store) const SMALL: StoreConfig = StoreConfig {
        cache_capacity: 1 << 20,
        compression: false,
        backend: crate::config::Backend::Sled,
    };

    /// Runs `open` until sled's lock is free: a handle just dropped lets
    /// it go a moment later (its threads end), and a unit test that opens
    /// a store again at once was refused `Locked` on a loaded machine.
    pub(in crate::store) fn when_unlocked<T>(
        mut open: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        loop {
            match open() {
                Err(StoreError::Locked(_)) if start.elapsed() < REOPEN_WAIT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// sled refuses a store opened with another segment size than it was
    /// made with: stores made before [`SEGMENT_SIZE`] keep theirs.
    #[test]
    fn a_store_keeps_the_segment_size_it_was_made_with() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        // As ordersync made stores before: sled's default segment size.
        let db = sled::Config::new().path(&old).open().unwrap();
        db.insert(b"k", b"v").unwrap();
        db.flush().unwrap();
        drop(db);
        let default = segment_size_of(&old).unwrap();
        assert_ne!(default, SEGMENT_SIZE);
        let reopened = when_unlocked(|| Db::open(&old, false, &SMALL)).unwrap();
        assert_eq!(reopened.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        drop(reopened);
        assert_eq!(segment_size_of(&old), Some(default));

        let new = dir.path().join("new");
        drop(Db::open(&new, true, &SMALL).unwrap());
        assert_eq!(segment_size_of(&new), Some(SEGMENT_SIZE));
    }

    /// A value too big for a log segment goes to a file under `blobs/`,
    /// which sled never syncs: the flush syncs it (and only new ones).
    #[test]
    fn a_flush_syncs_the_blobs_sled_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("state");
        let db = Db::open(&folder, true, &SMALL).unwrap();
        db.insert(b"big", vec![7u8; 1 << 20]).unwrap();
        db.flush().unwrap();
        let blobs: Vec<u64> = std::fs::read_dir(folder.join(BLOBS))
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
            .collect();
        let newest = blobs.iter().max().copied().expect("a blob");
        assert_eq!(db.durable.lock().unwrap().last_blob, newest);
    }

    /// sled refuses a store opened with another compression setting than
    /// it was made with: a store keeps its own, whatever the config says.
    #[test]
    fn a_store_keeps_the_compression_it_was_made_with() {
        let dir = tempfile::tempdir().unwrap();
        let zstd = StoreConfig {
            compression: true,
            ..SMALL
        };
        let value = vec![b'x'; 64 << 10];
        for (made, then) in [(&zstd, &SMALL), (&SMALL, &zstd)] {
            let folder = dir.path().join(format!("made-{}", made.compression));
            let db = Db::open(&folder, true, made).unwrap();
            db.insert(b"k", &value[..]).unwrap();
            db.flush().unwrap();
            drop(db);
            assert_eq!(compression_of(&folder), Some(made.compression));
            let reopened = when_unlocked(|| Db::open(&folder, false, then)).unwrap();
            assert_eq!(reopened.get(b"k").unwrap().as_deref(), Some(&value[..]));
            drop(reopened);
            assert_eq!(compression_of(&folder), Some(made.compression));
        }
    }
}
