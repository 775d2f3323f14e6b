//! The records the store's rules read and write, by a typed key: what a
//! record is, not how a backend spells it. The sled backend lays each kind
//! out under a one-byte prefix (`sled_backend/layout.rs`); PostgreSQL keeps
//! each kind in a table of its own (`postgres/`).
//!
//! Values are the records' own encodings (`records.rs`): a versioned JSON
//! record, an order record, an `i64` big-endian for counters and totals, an
//! order id's 16 bytes for the external-id indexes, nothing for a note or
//! an index entry.

use std::fmt;

use uuid::Uuid;

use super::ExportState;

/// A record of the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// An order ([`OrderRecord`](super::OrderRecord)).
    Order(Uuid),
    /// The order an external id belongs to (its id).
    External(String),
    /// The order whose external id spells this UUID, in any text form.
    ExternalUuid(Uuid),
    /// An order's export state for a system ([`ExportRecord`](super::ExportRecord)).
    Export { system: String, id: Uuid },
    /// An entry of a state's listing (empty value): pending orders sort by
    /// `created`, written by the time written, acked by the time acked. A
    /// backend whose export states are indexed by themselves (PostgreSQL)
    /// ignores these writes; its [`Backend::index`](super::backend::Backend::index)
    /// reads the same order.
    Index {
        state: ExportState,
        system: String,
        sort: i64,
        id: Uuid,
    },
    /// One event of an order's timeline ([`Event`](super::Event)); `n`
    /// orders an order's events.
    Event { id: Uuid, n: u64 },
    /// A note `system` acked the order with (empty value): a repeat adds
    /// nothing.
    Note {
        id: Uuid,
        system: String,
        sha256: [u8; 32],
    },
    /// A SKU's in-stock total (`i64`).
    Stock(String),
    /// A SKU's reserved total (`i64`).
    Reserved(String),
    /// A file applied: its name and content hash (applied-file record).
    File { name: String, sha256: [u8; 32] },
    /// A checked big file part-applied in chunks: how many items are in.
    Progress { name: String, sha256: [u8; 32] },
    /// A system's last export sequence number (`i64`).
    Sequence(String),
    /// An export batch in flight.
    Batch { system: String, seq: u64 },
    /// The one batch in flight an older version kept per system.
    OldBatch(String),
    /// The fingerprint of a system's eligibility settings last reconciled.
    Fingerprint(String),
    /// The number of stored orders (`i64`).
    OrderCount,
    /// The number of orders in a state for a system (`i64`).
    StateCount { state: ExportState, system: String },
    /// A partner remote's transfer ([`Transfer`](super::ledger::Transfer)):
    /// a pulled file by its remote path, a pushed one by `system/file`.
    Transfer {
        remote: String,
        direction: Direction,
        name: String,
    },
}

/// Which way a transfer goes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a partner's server into one of our inboxes.
    Pull,
    /// From one of our outboxes to a partner's server.
    Push,
}

impl Direction {
    /// As the ledger, metrics and logs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Pull => "pull",
            Direction::Push => "push",
        }
    }

    /// The direction spelt `name`.
    pub fn parse(name: &str) -> Option<Direction> {
        match name {
            "pull" => Some(Direction::Pull),
            "push" => Some(Direction::Push),
            _ => None,
        }
    }
}

impl fmt::Display for Key {
    /// The record for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Order(id) => write!(f, "order {id}"),
            Key::External(x) => write!(f, "external id {x:?}"),
            Key::ExternalUuid(u) => write!(f, "the external id spelling {u}"),
            Key::Export { system, id } => write!(f, "export state of order {id} for {system:?}"),
            Key::Index {
                state, system, id, ..
            } => write!(f, "{} entry of order {id} for {system:?}", state.name()),
            Key::Event { id, n } => write!(f, "event {n} of order {id}"),
            Key::Note { id, system, .. } => write!(f, "a note of {system:?} on order {id}"),
            Key::Stock(sku) => write!(f, "in_stock of {sku:?}"),
            Key::Reserved(sku) => write!(f, "reserved of {sku:?}"),
            Key::File { name, .. } => write!(f, "applied file {name:?}"),
            Key::Progress { name, .. } => write!(f, "progress of file {name:?}"),
            Key::Sequence(system) => write!(f, "export sequence of {system:?}"),
            Key::Batch { system, seq } => write!(f, "export batch {seq} of {system:?}"),
            Key::OldBatch(system) => write!(f, "export batch of {system:?}"),
            Key::Fingerprint(system) => write!(f, "settings fingerprint of {system:?}"),
            Key::OrderCount => write!(f, "order count"),
            Key::StateCount { state, system } => {
                write!(f, "count of {} orders for {system:?}", state.name())
            }
            Key::Transfer {
                remote,
                direction,
                name,
            } => write!(f, "{} of {name:?} with remote {remote:?}", direction.name()),
        }
    }
}

pub fn order(id: Uuid) -> Key {
    Key::Order(id)
}

pub fn external(external_id: &str) -> Key {
    Key::External(external_id.into())
}

/// The order whose external id is a UUID's text (any case, hyphens, braces
/// or `urn:uuid:`): such an external id must not name another order's id.
pub fn external_uuid(uuid: Uuid) -> Key {
    Key::ExternalUuid(uuid)
}

pub fn export(system: &str, id: Uuid) -> Key {
    Key::Export {
        system: system.into(),
        id,
    }
}

/// A state's listing entry (see [`Key::Index`]).
pub fn index(state: ExportState, system: &str, sort: i64, id: Uuid) -> Key {
    Key::Index {
        state,
        system: system.into(),
        sort,
        id,
    }
}

/// The counter of orders in `state` for `system`.
pub fn count(state: ExportState, system: &str) -> Key {
    Key::StateCount {
        state,
        system: system.into(),
    }
}

/// The counter of stored orders.
pub fn order_count() -> Key {
    Key::OrderCount
}

pub fn timeline(id: Uuid, n: u64) -> Key {
    Key::Event { id, n }
}

/// A note `system` acked the order with: a repeat of it adds nothing.
pub fn note(id: Uuid, system: &str, note: &str) -> Key {
    use sha2::{Digest, Sha256};
    Key::Note {
        id,
        system: system.into(),
        sha256: Sha256::digest(note.as_bytes()).into(),
    }
}

pub fn stock(sku: &str) -> Key {
    Key::Stock(sku.into())
}

pub fn reserved(sku: &str) -> Key {
    Key::Reserved(sku.into())
}

pub fn file(name: &str, sha256: &[u8; 32]) -> Key {
    Key::File {
        name: name.into(),
        sha256: *sha256,
    }
}

/// The progress of a file applied in chunks.
pub fn progress(name: &str, sha256: &[u8; 32]) -> Key {
    Key::Progress {
        name: name.into(),
        sha256: *sha256,
    }
}

pub fn sequence(system: &str) -> Key {
    Key::Sequence(system.into())
}

/// An export batch in flight: several can be, one per file of a group.
pub fn batch_entry(system: &str, seq: u64) -> Key {
    Key::Batch {
        system: system.into(),
        seq,
    }
}

/// The one batch in flight an older version kept per system.
pub fn batch(system: &str) -> Key {
    Key::OldBatch(system.into())
}

pub fn system(system: &str) -> Key {
    Key::Fingerprint(system.into())
}

/// A transfer of the ledger (see [`Key::Transfer`]).
pub fn transfer(remote: &str, direction: Direction, name: &str) -> Key {
    Key::Transfer {
        remote: remote.into(),
        direction,
        name: name.into(),
    }
}

/// 16 bytes as a UUID (nil when the slice is malformed): the value of the
/// external-id records.
pub fn uuid_of(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).unwrap_or_default()
}

/// An i64 value (0 when malformed): counters and totals.
pub fn int_of(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

/// An i64 as its value.
pub fn int(n: i64) -> [u8; 8] {
    n.to_be_bytes()
}
