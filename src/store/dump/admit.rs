//! The admission rules a dump must pass before a backend loads it, written
//! once for both backends: [`check`], a record on its own (no NUL in any
//! text, the same length limits as an inbox file, file names of at most
//! [`MAX_NAME_BYTES`], sequences of at most [`MAX_SEQUENCE`]), and
//! [`Admission`], across records (an order once, a record naming an order
//! only after it, an order's events together and numbered from 0, each
//! unique key once, a batch within its system's sequence).
//!
//! Each backend's restore calls [`Admission::admit`] for every record
//! before it writes it. A rule belongs here, not in a backend: a unique key
//! that only one backend enforces is a dump one backend restores and the
//! other refuses (a second export record once made the exporter write one
//! order's file for ever). Memory: one entry per record, events aside.

use std::collections::HashSet;

use serde_json::Value;
use uuid::Uuid;

use super::{DumpError, EventSeq, Record, bad};

/// The largest export sequence number a dump may hold: 2^53 − 1, the
/// largest integer every JSON reader holds exactly, and far beyond what
/// any system's exports reach (a file a millisecond for 285,000 years).
/// Bounded so that the exporter can always take the next one (a sequence
/// at 2^64 − 1 made the next file `…-000000`).
pub const MAX_SEQUENCE: u64 = (1 << 53) - 1;

/// The longest file name a dump may hold (an applied file's `name`, a
/// batch's `file`), in bytes: an inbox label is a system id, `/` and a
/// file name of at most 255 bytes; a B-tree row holds 2,704.
pub const MAX_NAME_BYTES: usize = 1_024;

/// Whether a string (or an object's key) anywhere in `v` holds U+0000.
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Checks a record on its own: what a backend must never store. The same
/// value rules as an inbox file's (no NUL in any text, the indexed texts at
/// most [`crate::order::MAX_REFERENCE_CHARS`] or
/// [`crate::order::MAX_FIELD_CHARS`]), on every backend.
pub fn check(record: &Record) -> Result<(), String> {
    let no_nul = |what: &str, s: &str| {
        if s.contains('\0') {
            Err(format!("{what} {s:?} holds a NUL (U+0000)"))
        } else {
            Ok(())
        }
    };
    let text = |what: &str, s: &str| {
        if s.is_empty() {
            return Err(format!("{what} is empty"));
        }
        no_nul(what, s)?;
        match crate::order::length_problem(s, crate::order::MAX_REFERENCE_CHARS) {
            Some(p) => Err(format!("{what}: {p}")),
            None => Ok(()),
        }
    };
    let name = |what: &str, s: &str| {
        if s.is_empty() {
            return Err(format!("{what} is empty"));
        }
        no_nul(what, s)?;
        if s.len() > MAX_NAME_BYTES {
            return Err(format!(
                "{what}: {} bytes; at most {MAX_NAME_BYTES} are allowed",
                s.len()
            ));
        }
        Ok(())
    };
    let sequence = |what: &str, n: u64| {
        if n > MAX_SEQUENCE {
            Err(format!(
                "{what} {n} is beyond the largest export sequence number ({MAX_SEQUENCE})"
            ))
        } else {
            Ok(())
        }
    };
    match record {
        Record::Order {
            id,
            external_id,
            revision,
            doc,
            ..
        } => {
            if doc.get("id").and_then(Value::as_str) != Some(&id.to_string()) {
                return Err(format!("the order's doc does not have the id {id}"));
            }
            if doc.get("external_id").and_then(Value::as_str) != Some(external_id.as_str()) {
                return Err(format!(
                    "the order's doc does not have the external_id {external_id:?}"
                ));
            }
            if *revision == 0 {
                return Err("revision 0 (revisions count from 1)".into());
            }
            text("external_id", external_id)?;
            if has_nul(doc) {
                return Err("the order's doc holds a NUL (U+0000) in a text".into());
            }
            for field in ["reference", "channel", "type"] {
                if let Some(s) = doc.get(field).and_then(Value::as_str)
                    && let Some(p) = crate::order::length_problem(s, crate::order::MAX_FIELD_CHARS)
                {
                    return Err(format!("the order's {field}: {p}"));
                }
            }
            Ok(())
        }
        Record::Event { event, detail, .. } => {
            no_nul("event", event)?;
            no_nul("detail", detail)
        }
        Record::Export { system, file, .. } => {
            text("system", system)?;
            file.as_deref().map_or(Ok(()), |f| name("file", f))
        }
        Record::Note { system, .. } | Record::Fingerprint { system, .. } => text("system", system),
        Record::Sequence { system, last } => {
            text("system", system)?;
            sequence("last", *last)
        }
        Record::Batch {
            system, file, seq, ..
        } => {
            text("system", system)?;
            name("file", file)?;
            sequence("seq", *seq)
        }
        Record::AppliedFile { name: n, kind, .. } => {
            name("name", n)?;
            no_nul("kind", kind)
        }
        Record::Progress { name: n, .. } => name("name", n),
        Record::Transfer {
            remote,
            name: n,
            transfer,
            ..
        } => {
            text("remote", remote)?;
            name("name", n)?;
            name("temp", &transfer.temp)?;
            name("target", &transfer.target)?;
            no_nul("sha256", &transfer.sha256)
        }
        Record::Stock { sku, .. } | Record::Reserved { sku, .. } => text("sku", sku),
    }
}

/// What `restore` checks across records, whatever the backend: each
/// record on its own ([`check`]), an order only once, a record naming an
/// order only after it, an order's events together and numbered from 0,
/// and every key PostgreSQL's tables hold unique held once (an external
/// id, the UUID it spells, an export record per system and order, a note,
/// a SKU's stock and reservation, an applied file and its progress per
/// name and SHA-256, a system's sequence, batch and fingerprint), so sled
/// never restores what PostgreSQL refuses (a second export record made the
/// exporter write one order's file for ever). A batch's sequence number is
/// at most its system's last one. Memory: one entry per record (events
/// aside).
#[derive(Default)]
pub struct Admission {
    orders: HashSet<Uuid>,
    timeline: EventSeq,
    keys: HashSet<(&'static str, Vec<u8>)>,
    sequences: std::collections::HashMap<String, u64>,
}

impl Admission {
    /// Checks the record read at `line`.
    pub fn admit(&mut self, line: u64, record: &Record) -> Result<(), DumpError> {
        check(record).map_err(|m| bad(line, m))?;
        if let Some((what, key)) = unique_key(record)
            && !self.keys.insert((what, key))
        {
            return Err(bad(line, format!("{} a second time", describe_key(record))));
        }
        if let Record::Order {
            id, external_id, ..
        } = record
        {
            if !self.orders.insert(*id) {
                return Err(bad(line, format!("the order {id} a second time")));
            }
            if let Ok(spelt) = Uuid::parse_str(external_id)
                && !self
                    .keys
                    .insert(("external_uuid", spelt.as_bytes().to_vec()))
            {
                return Err(bad(
                    line,
                    format!(
                        "the external_id {external_id:?} spells the UUID {spelt}, which an earlier order's external_id spells too"
                    ),
                ));
            }
            return Ok(());
        }
        if let Record::Sequence { system, last } = record {
            self.sequences.insert(system.clone(), *last);
        }
        if let Record::Batch { system, seq, .. } = record {
            let last = self.sequences.get(system).copied().unwrap_or(0);
            if *seq > last {
                return Err(bad(
                    line,
                    format!(
                        "the batch {seq} of the system {system:?} is beyond its last sequence number ({last}, an earlier line)"
                    ),
                ));
            }
        }
        if let Some(order) = record.order()
            && !self.orders.contains(&order)
        {
            return Err(bad(
                line,
                format!("names the order {order}, which no earlier line holds"),
            ));
        }
        if let Record::Event { order, seq, .. } = record {
            let expected = self.timeline.next(*order);
            if *seq != expected {
                return Err(bad(
                    line,
                    format!(
                        "event seq {seq} of the order {order}: expected {expected} (an order's events come together, numbered from 0)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The key a record must hold alone (its table's primary or unique key on
/// PostgreSQL), as bytes (NUL is refused in texts, so it separates parts);
/// `None` for an order's id (kept apart) and an event.
fn unique_key(record: &Record) -> Option<(&'static str, Vec<u8>)> {
    let join = |parts: &[&[u8]]| parts.join(&0u8);
    Some(match record {
        Record::Order { external_id, .. } => ("external_id", external_id.as_bytes().to_vec()),
        Record::Event { .. } => return None,
        Record::Export { system, order, .. } => {
            ("export", join(&[system.as_bytes(), order.as_bytes()]))
        }
        Record::Note {
            order,
            system,
            sha256,
        } => (
            "note",
            join(&[order.as_bytes(), system.as_bytes(), &sha256.0]),
        ),
        Record::Stock { sku, .. } => ("stock", sku.as_bytes().to_vec()),
        Record::Reserved { sku, .. } => ("reserved", sku.as_bytes().to_vec()),
        Record::AppliedFile { name, sha256, .. } => {
            ("applied_file", join(&[name.as_bytes(), &sha256.0]))
        }
        Record::Progress { name, sha256, .. } => ("progress", join(&[name.as_bytes(), &sha256.0])),
        Record::Sequence { system, .. } => ("sequence", system.as_bytes().to_vec()),
        Record::Batch { system, seq, .. } => {
            ("batch", join(&[system.as_bytes(), &seq.to_be_bytes()]))
        }
        Record::Fingerprint { system, .. } => ("fingerprint", system.as_bytes().to_vec()),
        Record::Transfer {
            remote,
            direction,
            name,
            ..
        } => (
            "transfer",
            join(&[
                remote.as_bytes(),
                direction.name().as_bytes(),
                name.as_bytes(),
            ]),
        ),
    })
}

/// What a record held twice is, for the error.
fn describe_key(record: &Record) -> String {
    match record {
        Record::Order { external_id, .. } => format!("the external_id {external_id:?}"),
        Record::Event { order, seq, .. } => format!("the event {seq} of the order {order}"),
        Record::Export { system, order, .. } => {
            format!("an export record of the order {order} for the system {system:?}")
        }
        Record::Note { order, system, .. } => {
            format!("the same note of the order {order} for the system {system:?}")
        }
        Record::Stock { sku, .. } => format!("the stock of the SKU {sku:?}"),
        Record::Reserved { sku, .. } => format!("the reservation of the SKU {sku:?}"),
        Record::AppliedFile { name, .. } => {
            format!("the applied file {name:?} with the same SHA-256")
        }
        Record::Progress { name, .. } => {
            format!("the progress of the file {name:?} with the same SHA-256")
        }
        Record::Sequence { system, .. } => format!("the sequence of the system {system:?}"),
        Record::Batch { system, seq, .. } => {
            format!("the batch {seq} of the system {system:?}")
        }
        Record::Fingerprint { system, .. } => {
            format!("the fingerprint of the system {system:?}")
        }
        Record::Transfer {
            remote,
            direction,
            name,
            ..
        } => format!(
            "the {} of {name:?} with the remote {remote:?}",
            direction.name()
        ),
    }
}
