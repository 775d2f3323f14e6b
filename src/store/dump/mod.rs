//! The portable dump: the whole state as versioned NDJSON, for an online
//! backup, a move to another machine, and (with the PostgreSQL backend) a
//! move between backends.
//!
//! ```text
//! {"format":"ordersync-dump","version":1,"ordersync":"0.1.0","backend":"sled","created":"…"}
//! {"type":"order","id":"…","external_id":"A-1","revision":1,"sent_sha256":"…","regulated":false,"doc":{…}}
//! {"type":"event","order":"…","seq":0,"at":…,"event":"received","detail":"…"}
//! …
//! {"format":"ordersync-dump-end","records":1234}
//! ```
//!
//! A dump holds the facts, never an index or a count: those are the
//! backend's, made again by `restore`. Records that name an order come
//! after the order (so `restore` can check they name one it holds), and an
//! order's events come together, in timeline order, numbered from 0. The
//! closing line says how many records there are, so a dump that was cut
//! short (a full disk, a killed process) is refused instead of restored in
//! part.
//!
//! **Consistent as of one instant.** On sled, the writer's lock is held
//! while the store's records are copied, unconverted, into an unnamed
//! temporary file in the state folder; commits wait for that copy (about a
//! second per 100,000 orders), never for the conversion or the reader.
//!
//! ## Where each part is
//!
//! - here: the format, what both backends write and read — [`Header`],
//!   [`Record`] (one line), [`Trailer`], [`Sha256`], [`EventSeq`] (an
//!   order's events numbered from 0), `line` (one value written as one
//!   line), [`Restored`] and [`DumpError`].
//! - `read.rs`: [`Reader`], a dump read one line at a time (its header's
//!   format and version, lines of at most [`MAX_LINE`], the closing line's
//!   count).
//! - `admit.rs`: what a dump must pass before any backend loads a record,
//!   written once for both: [`check`] (a record on its own: NUL, lengths,
//!   sequences up to [`MAX_SEQUENCE`]) and [`Admission`] (across records:
//!   an order once and before what names it, every unique key once).
//! - `sled.rs`: the sled side — `Store::dump_to` (the copy under the
//!   writer's lock, then each key turned into a record), `Store::is_empty`
//!   and `Store::restore_from` (each record turned back into its keys, in
//!   bounded `sled::Batch`es, then the counts). Both entry points hand a
//!   PostgreSQL store to `store/postgres/mod.rs`, which writes and loads
//!   its tables from the same types and runs the same [`Admission`].
//!
//! A new record kind touches all four: its variant here, its checks and
//! unique key in `admit.rs`, its key both ways in `sled.rs`, and its table
//! in `store/postgres/mod.rs`.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::batch::Content;
use super::keys::Direction;
use super::ledger::Transfer;
use super::{ExportState, StoreError};

mod admit;
mod read;
mod sled;

pub use admit::{Admission, MAX_NAME_BYTES, MAX_SEQUENCE, check};
pub use read::Reader;

/// The first line's `format`.
pub const FORMAT: &str = "ordersync-dump";
/// The last line's `format`.
pub const END: &str = "ordersync-dump-end";
/// The dump format this version writes and reads.
pub const VERSION: u32 = 1;
/// The longest line `restore` reads: an order is at most an inbox file.
pub const MAX_LINE: usize = 128 * 1024 * 1024;

/// The first line of a dump.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The version of ordersync that wrote it.
    #[serde(default)]
    pub ordersync: String,
    /// The backend it was dumped from.
    #[serde(default)]
    pub backend: String,
    /// When (RFC 3339, UTC).
    #[serde(default)]
    pub created: String,
}

/// The last line of a dump.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    pub format: String,
    /// How many records are between the first line and this one.
    pub records: u64,
}

/// A SHA-256 as 64 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut hex = String::with_capacity(64);
        for b in self.0 {
            hex.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("expected 64 lower-case hex digits (a SHA-256)");
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            out[i] = match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => h << 4 | l,
                _ => return Err(bad()),
            };
        }
        Ok(Sha256(out))
    }
}

/// One line of a dump between the header and the closing line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    /// A stored order: its filled-in document (without `revision`, which
    /// is its own field) and what dedupe and regulation need.
    Order {
        id: Uuid,
        external_id: String,
        revision: u32,
        /// SHA-256 of the order as last sent (an identical resend is a
        /// duplicate).
        sent_sha256: Sha256,
        regulated: bool,
        doc: Value,
    },
    /// One entry of an order's timeline; `seq` counts from 0 per order.
    Event {
        order: Uuid,
        seq: u64,
        at: i64,
        event: String,
        detail: String,
    },
    /// An order's export state for a system.
    Export {
        system: String,
        order: Uuid,
        state: ExportState,
        /// What the state's listing sorts by: `created` when pending, the
        /// time written or acked after.
        sort: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        written_at: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acked_at: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<u32>,
    },
    /// A note a system's acknowledgement brought (its text is in the
    /// timeline): a repeat of it adds nothing.
    Note {
        order: Uuid,
        system: String,
        sha256: Sha256,
    },
    /// Pieces in stock of a SKU.
    Stock { sku: String, in_stock: i64 },
    /// Pieces of a SKU reserved by orders not yet regulated.
    Reserved { sku: String, reserved: i64 },
    /// An inbox file applied: the same name with the same content is never
    /// applied again.
    AppliedFile {
        name: String,
        sha256: Sha256,
        at: i64,
        kind: String,
    },
    /// A big file part-applied in chunks: how many of its items are in.
    Progress {
        name: String,
        sha256: Sha256,
        orders: u64,
    },
    /// The last export sequence number used for a system.
    Sequence { system: String, last: u64 },
    /// An export file recorded but not yet known to be written.
    Batch {
        system: String,
        seq: u64,
        file: String,
        orders: Vec<(Uuid, u32)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Content>,
    },
    /// The eligibility settings of a system last reconciled.
    Fingerprint { system: String, settings: String },
    /// A partner transfer of the ledger: a pulled file by its remote path,
    /// a pushed one by `system/file`.
    Transfer {
        remote: String,
        direction: Direction,
        name: String,
        transfer: Transfer,
    },
}

impl Record {
    /// The order a record belongs to, for those that name one.
    pub fn order(&self) -> Option<Uuid> {
        match self {
            Record::Event { order, .. }
            | Record::Export { order, .. }
            | Record::Note { order, .. } => Some(*order),
            _ => None,
        }
    }
}

/// Numbers an order's events 0, 1, … in the order they come (a dump lists
/// an order's events together).
#[derive(Debug, Default)]
pub struct EventSeq(Option<(Uuid, u64)>);

impl EventSeq {
    /// The `seq` of the next event of `order`.
    pub fn next(&mut self, order: Uuid) -> u64 {
        let seq = match self.0 {
            Some((o, next)) if o == order => next,
            _ => 0,
        };
        self.0 = Some((order, seq + 1));
        seq
    }
}

impl Header {
    /// The header of a dump written now from `backend`.
    pub fn new(backend: &str) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            ordersync: env!("CARGO_PKG_VERSION").into(),
            backend: backend.into(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// A dump that cannot be read or restored: where (a line) and what.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("line {line}: {message}")]
    Bad { line: u64, message: String },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store to restore into is not empty.
    #[error("{0}")]
    NotEmpty(String),
}

fn bad(line: u64, message: impl Into<String>) -> DumpError {
    DumpError::Bad {
        line,
        message: message.into(),
    }
}

/// Writes `value` as one line of a dump.
pub(super) fn line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// What `restore` did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Restored {
    pub records: u64,
    pub orders: u64,
}
