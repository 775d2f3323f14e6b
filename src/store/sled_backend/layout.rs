//! How the sled backend lays out the store's records ([`Key`]) in its
//! single tree. The first byte says what a key holds:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `o` | order id (16 bytes) | [`OrderRecord`](super::OrderRecord) |
//! | `x` | external id | order id |
//! | `u` | UUID (16) an external id spells, in any text form | order id |
//! | `e` | system `\0` order id | [`ExportRecord`](super::ExportRecord) |
//! | `p` / `w` / `a` | system `\0` sort key (8) order id | empty: pending / written / acked index |
//! | `t` | order id, event id (8) | [`Event`](super::Event) |
//! | `n` | order id, system `\0` SHA-256 of a note (32) | empty: this system's ack already brought this note (its timeline has it) |
//! | `s` / `r` | sku | in_stock / reserved (i64, big-endian) |
//! | `f` | file name `\0` SHA-256 (32) | applied-file record |
//! | `q` | system | last export sequence number (u64) |
//! | `b` | system `\0` seq (8) | an export batch in flight (an older version kept one, under `b` system) |
//! | `k` | system | fingerprint of its eligibility settings last reconciled |
//! | `g` | file name `\0` SHA-256 (32) | a checked big file part-applied in chunks: how many of its orders are in |
//! | `l` | remote `\0` `<` (pull) or `>` (push) name | a partner transfer ([`Transfer`](crate::store::ledger::Transfer)) |
//! | `c` | `o` | the number of stored orders (i64) |
//! | `c` | `p` / `w` / `a`, system | the number of orders in that state for the system (i64) |
//! | `c` | `v` | the version of the counts (absent: not yet counted) |
//! | `!restoring` | | present while `restore` loads a dump (a store left with it is refused) |
//!
//! System ids never contain `\0` (config validation), so `system\0` is an
//! unambiguous prefix. Sort keys are big-endian with the sign bit flipped, so
//! byte order is numeric order.

use uuid::Uuid;

use crate::store::ExportState;
use crate::store::keys::{Direction, Key};

pub const ORDER: u8 = b'o';
pub const EXTERNAL: u8 = b'x';
pub const EXTERNAL_UUID: u8 = b'u';
pub const EXPORT: u8 = b'e';
pub const PENDING: u8 = b'p';
pub const WRITTEN: u8 = b'w';
pub const ACKED: u8 = b'a';
pub const TIMELINE: u8 = b't';
pub const NOTE: u8 = b'n';
pub const STOCK: u8 = b's';
pub const RESERVED: u8 = b'r';
pub const FILE: u8 = b'f';
pub const SEQUENCE: u8 = b'q';
pub const BATCH: u8 = b'b';
pub const SYSTEM: u8 = b'k';
pub const COUNT: u8 = b'c';
pub const TRANSFER: u8 = b'l';
/// Present while `restore` loads a dump: a store left with it was
/// restored in part and is refused.
pub const RESTORING: &[u8] = b"!restoring";
/// Present once the counts were made from the indexes (a store made before
/// counts were kept gets them at its first open).
pub const COUNTS_VERSION: &[u8] = b"cv";

/// The bytes of `key` in the tree.
pub fn encode(key: &Key) -> Vec<u8> {
    match key {
        Key::Order(id) => order(*id),
        Key::External(x) => external(x),
        Key::ExternalUuid(u) => external_uuid(*u),
        Key::Export { system, id } => export(system, *id),
        Key::Index {
            state,
            system,
            sort,
            id,
        } => index(*state, system, *sort, *id),
        Key::Event { id, n } => timeline(*id, *n),
        Key::Note { id, system, sha256 } => note_hashed(*id, system, sha256),
        Key::Stock(sku) => stock(sku),
        Key::Reserved(sku) => reserved(sku),
        Key::File { name, sha256 } => file(name, sha256),
        Key::Progress { name, sha256 } => progress(name, sha256),
        Key::Sequence(system) => sequence(system),
        Key::Batch { system, seq } => batch_entry(system, *seq),
        Key::OldBatch(system) => batch(system),
        Key::Fingerprint(system) => self::system(system),
        Key::OrderCount => order_count(),
        Key::StateCount { state, system } => count(*state, system),
        Key::Transfer {
            remote,
            direction,
            name,
        } => transfer(remote, *direction, name),
    }
}

fn with(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// `i64` as 8 bytes whose byte order is numeric order.
pub fn sortable(n: i64) -> [u8; 8] {
    ((n as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn order(id: Uuid) -> Vec<u8> {
    with(ORDER, &[id.as_bytes()])
}

pub fn external(external_id: &str) -> Vec<u8> {
    with(EXTERNAL, &[external_id.as_bytes()])
}

/// The order whose external id is a UUID's text (any case, hyphens, braces
/// or `urn:uuid:`): such an external id must not name another order's id.
pub fn external_uuid(uuid: Uuid) -> Vec<u8> {
    with(EXTERNAL_UUID, &[uuid.as_bytes()])
}

pub fn export(system: &str, id: Uuid) -> Vec<u8> {
    with(EXPORT, &[system.as_bytes(), b"\0", id.as_bytes()])
}

fn index_byte(state: ExportState) -> u8 {
    match state {
        ExportState::Pending => PENDING,
        ExportState::Written => WRITTEN,
        ExportState::Acked => ACKED,
    }
}

/// All index keys of one state and system.
pub fn index_prefix(state: ExportState, system: &str) -> Vec<u8> {
    with(index_byte(state), &[system.as_bytes(), b"\0"])
}

/// An index key: pending orders sort by `created`, written by the time they
/// were written, acked by the time they were acked.
pub fn index(state: ExportState, system: &str, sort: i64, id: Uuid) -> Vec<u8> {
    with(
        index_byte(state),
        &[system.as_bytes(), b"\0", &sortable(sort), id.as_bytes()],
    )
}

/// The sort key of an index key (the 8 bytes before the order id).
pub fn index_sort(key: &[u8]) -> i64 {
    let end = key.len().saturating_sub(16);
    let bytes = &key[end.saturating_sub(8)..end];
    bytes
        .try_into()
        .map(|b| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
        .unwrap_or(0)
}

/// The order id at the end of an index key.
pub fn uuid_suffix(key: &[u8]) -> Uuid {
    uuid_of(&key[key.len().saturating_sub(16)..])
}

/// 16 bytes as a UUID (nil when the slice is malformed).
pub fn uuid_of(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).unwrap_or_default()
}

/// The counter of orders in `state` for `system`.
pub fn count(state: ExportState, system: &str) -> Vec<u8> {
    with(COUNT, &[&[index_byte(state)], system.as_bytes()])
}

/// The counter of stored orders.
pub fn order_count() -> Vec<u8> {
    vec![COUNT, ORDER]
}

pub fn timeline_prefix(id: Uuid) -> Vec<u8> {
    with(TIMELINE, &[id.as_bytes()])
}

pub fn timeline(id: Uuid, event: u64) -> Vec<u8> {
    with(TIMELINE, &[id.as_bytes(), &event.to_be_bytes()])
}

/// A note `system` acked the order with, by the note's SHA-256.
pub fn note_hashed(id: Uuid, system: &str, sha256: &[u8; 32]) -> Vec<u8> {
    with(NOTE, &[id.as_bytes(), system.as_bytes(), b"\0", sha256])
}

pub fn stock(sku: &str) -> Vec<u8> {
    with(STOCK, &[sku.as_bytes()])
}

pub fn reserved(sku: &str) -> Vec<u8> {
    with(RESERVED, &[sku.as_bytes()])
}

/// The SKU of a stock or reserved key.
pub fn sku_of(key: &[u8]) -> String {
    String::from_utf8_lossy(&key[1..]).into_owned()
}

/// An i64 value (0 when malformed).
pub fn int_of(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

pub fn file(name: &str, sha256: &[u8; 32]) -> Vec<u8> {
    with(FILE, &[name.as_bytes(), b"\0", sha256])
}

pub const PROGRESS: u8 = b'g';

/// The progress of a file applied in chunks.
pub fn progress(name: &str, sha256: &[u8; 32]) -> Vec<u8> {
    with(PROGRESS, &[name.as_bytes(), b"\0", sha256])
}

pub fn sequence(system: &str) -> Vec<u8> {
    with(SEQUENCE, &[system.as_bytes()])
}

/// An export batch in flight: several can be, one per file of a group.
pub fn batch_entry(system: &str, seq: u64) -> Vec<u8> {
    with(BATCH, &[system.as_bytes(), b"\0", &seq.to_be_bytes()])
}

/// All batches in flight of a system.
pub fn batch_prefix(system: &str) -> Vec<u8> {
    with(BATCH, &[system.as_bytes(), b"\0"])
}

/// The one batch in flight an older version kept per system.
pub fn batch(system: &str) -> Vec<u8> {
    with(BATCH, &[system.as_bytes()])
}

pub fn system(system: &str) -> Vec<u8> {
    with(SYSTEM, &[system.as_bytes()])
}

fn direction_byte(direction: Direction) -> u8 {
    match direction {
        Direction::Pull => b'<',
        Direction::Push => b'>',
    }
}

/// A partner transfer: remote names never hold `\0` (config validation).
pub fn transfer(remote: &str, direction: Direction, name: &str) -> Vec<u8> {
    with(
        TRANSFER,
        &[
            remote.as_bytes(),
            b"\0",
            &[direction_byte(direction)],
            name.as_bytes(),
        ],
    )
}

/// All transfers of a remote.
pub fn transfer_prefix(remote: &str) -> Vec<u8> {
    with(TRANSFER, &[remote.as_bytes(), b"\0"])
}

/// The key of a transfer's tree key (the remote's name is `remote`).
pub fn transfer_key(remote: &str, key: &[u8]) -> Option<Key> {
    let rest = key.get(transfer_prefix(remote).len()..)?;
    let (d, name) = rest.split_first()?;
    let direction = match d {
        b'<' => Direction::Pull,
        b'>' => Direction::Push,
        _ => return None,
    };
    Some(Key::Transfer {
        remote: remote.into(),
        direction,
        name: String::from_utf8_lossy(name).into_owned(),
    })
}

/// A key of the tree for messages (see [`describe`]).
pub struct Shown<'a>(pub &'a [u8]);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(self.0))
    }
}

/// A key for messages: its kind letter and printable content.
pub fn describe(key: &[u8]) -> String {
    let (kind, rest) = key
        .split_first()
        .map_or((b'?', &key[..0]), |(k, r)| (*k, r));
    if matches!(kind, ORDER) && rest.len() == 16 {
        return format!("order {}", uuid_of(rest));
    }
    format!(
        "{}:{}",
        kind as char,
        String::from_utf8_lossy(rest).escape_debug()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_keeps_numeric_order() {
        let ns = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for w in ns.windows(2) {
            assert!(sortable(w[0]) < sortable(w[1]), "{} < {}", w[0], w[1]);
        }
    }
}
