//! A sled store at rest: its kept counts in `counts.json` beside it, so
//! that `status` with no daemon need not open sled (whose open builds a
//! page table that grows with the store: 361 ms at 100,000 orders).
//!
//! What keeps the file true: every open of the store removes it before
//! anything can write, made durable by the folder's fsync that follows
//! the open ([`Db::open`](super::Db)); a clean close writes it after sled
//! has flushed and closed, with the `db` file's length and mtime then. A
//! reader takes it only while the `db` file still has both. A process
//! killed leaves no file, and `status` opens the store as before.

use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

/// The file's name in the state folder.
pub const FILE: &str = "counts.json";

/// The file's content: the count keys (the sled layout's, `c…`) and their
/// values, and the `db` file they go with.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct AtRest {
    version: u32,
    db: (u64, String),
    counts: Vec<(Vec<u8>, i64)>,
}

/// The `db` file's length and mtime (nanoseconds, as text).
fn db_file(folder: &Path) -> io::Result<(u64, String)> {
    let m = std::fs::metadata(folder.join("db"))?;
    let mtime = m
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map_err(io::Error::other)?
        .as_nanos();
    Ok((m.len(), mtime.to_string()))
}

/// Removes the file (an open store may change what it says). The caller
/// makes the removal durable (the folder's fsync).
pub fn forget(folder: &Path) -> io::Result<()> {
    match std::fs::remove_file(folder.join(FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes the file for the closed store in `folder` with `counts`.
pub fn write(folder: &Path, counts: Vec<(Vec<u8>, i64)>) -> io::Result<()> {
    let at_rest = AtRest {
        version: 1,
        db: db_file(folder)?,
        counts,
    };
    let bytes = serde_json::to_vec(&at_rest).map_err(io::Error::other)?;
    forget(folder)?;
    crate::fsutil::write_atomic(folder, FILE, &bytes)?;
    Ok(())
}

/// The counts of the store in `folder` as its last clean close left them,
/// if nothing opened it since.
pub fn read(folder: &Path) -> Option<Vec<(Vec<u8>, i64)>> {
    let bytes = std::fs::read(folder.join(FILE)).ok()?;
    let at_rest: AtRest = serde_json::from_slice(&bytes).ok()?;
    (at_rest.version == 1 && db_file(folder).ok()? == at_rest.db).then_some(at_rest.counts)
}

/// The kept counts of a sled store at rest (see the module's head).
#[derive(Debug)]
pub struct KeptCounts(Vec<(Vec<u8>, i64)>);

impl KeptCounts {
    /// Those of the store in `folder`, if it was closed cleanly and
    /// nothing opened it since.
    pub fn of(folder: &Path) -> Option<KeptCounts> {
        read(folder).map(KeptCounts)
    }

    fn get(&self, key: &[u8]) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, n)| (*n).max(0) as u64)
    }

    /// The number of orders stored.
    pub fn orders(&self) -> u64 {
        self.get(&super::layout::order_count())
    }

    /// The number of `system`'s orders in `state`.
    pub fn in_state(&self, system: &str, state: crate::store::ExportState) -> u64 {
        self.get(&super::layout::count(state, system))
    }
}
