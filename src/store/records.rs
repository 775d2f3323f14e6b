//! What the store keeps, as serde types. Every value is wrapped in
//! [`Versioned`], so a later format can be read beside this one.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::order::Facts;

/// The on-disk envelope: `{"version": "1", ...fields}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
pub(crate) enum Versioned<T> {
    #[serde(rename = "1")]
    V1(T),
}

impl<T> Versioned<T> {
    pub(crate) fn into_inner(self) -> T {
        match self {
            Versioned::V1(t) => t,
        }
    }
}

/// A stored order.
///
/// On disk (key `o`) it is [`ORDER_V3`], then the [`OrderHead`] in postcard,
/// then the filled-in document as compact JSON compressed with LZ4 (block
/// format, size first): the head decodes in a microsecond without touching
/// the document, which is decompressed and parsed only when the document
/// itself is needed (export, `orders show`, regulation). The order as sent
/// is not kept, only its SHA-256 (duplicates and updates compare that).
/// Records of the earlier formats are still read: [`ORDER_V2`] (the same,
/// uncompressed) and the first (JSON in the versioned envelope, with
/// `sent`).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub id: Uuid,
    pub external_id: String,
    /// 1 for the first version received, +1 per accepted update.
    pub revision: u32,
    /// SHA-256 of the object as last sent ([`sent_hash`]).
    pub sent_hash: [u8; 32],
    /// The filled-in document; `archived` is set here when regulated.
    pub doc: Value,
    /// Whether an acknowledgement regulated inventory for it.
    pub regulated: bool,
}

/// An order as an export file holds it: the stored document with its
/// `revision`, as compact JSON with its keys in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportDoc {
    pub id: Uuid,
    pub revision: u32,
    pub json: Vec<u8>,
}

impl ExportDoc {
    /// The export document of a decoded order.
    pub fn of(rec: &OrderRecord) -> ExportDoc {
        ExportDoc {
            id: rec.id,
            revision: rec.revision,
            // Serialising a Value to a Vec cannot fail.
            json: serde_json::to_vec(&rec.export_doc()).unwrap_or_default(),
        }
    }

    /// The document as a JSON tree (for csv, and for leaving lines out).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// What most decisions need of a stored order, without its document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderHead {
    pub id: Uuid,
    pub external_id: String,
    pub revision: u32,
    pub sent_hash: [u8; 32],
    pub regulated: bool,
    pub created: i64,
    pub updated: i64,
    pub facts: Facts,
}

/// The first byte of an order record in the second format (the first
/// format is JSON and starts with `{`).
pub(crate) const ORDER_V2: u8 = 2;

/// The first byte of an order record in the third format (the second with
/// its document compressed).
pub(crate) const ORDER_V3: u8 = 3;

/// A record's head and its document's compact JSON (decompressed).
type Split<'b> = (OrderHead, std::borrow::Cow<'b, [u8]>);

/// The head of a record of the second or third format, and its document's
/// compact JSON; `None` for the first format.
fn split(bytes: &[u8]) -> Option<Result<Split<'_>, String>> {
    let compressed = match bytes.first() {
        Some(&ORDER_V2) => false,
        Some(&ORDER_V3) => true,
        _ => return None,
    };
    Some((|| {
        let (head, doc) =
            postcard::take_from_bytes::<OrderHead>(&bytes[1..]).map_err(|e| e.to_string())?;
        let doc = if compressed {
            std::borrow::Cow::Owned(
                lz4_flex::decompress_size_prepended(doc).map_err(|e| e.to_string())?,
            )
        } else {
            std::borrow::Cow::Borrowed(doc)
        };
        Ok((head, doc))
    })())
}

/// The first format, still read.
#[derive(Deserialize)]
struct OrderRecordV1 {
    id: Uuid,
    external_id: String,
    revision: u32,
    sent: Value,
    doc: Value,
    regulated: bool,
}

impl OrderRecord {
    /// The document as exported: the stored order plus its `revision`.
    pub fn export_doc(&self) -> Value {
        let mut doc = self.doc.clone();
        if let Value::Object(m) = &mut doc {
            m.insert("revision".into(), self.revision.into());
        }
        doc
    }

    /// `created` in UNIX ms.
    pub fn created(&self) -> i64 {
        self.doc["created"].as_i64().unwrap_or(0)
    }

    /// `updated` in UNIX ms.
    pub fn updated(&self) -> i64 {
        self.doc["updated"].as_i64().unwrap_or(0)
    }

    /// Its head (facts read from the document).
    pub fn head(&self) -> OrderHead {
        OrderHead {
            id: self.id,
            external_id: self.external_id.clone(),
            revision: self.revision,
            sent_hash: self.sent_hash,
            regulated: self.regulated,
            created: self.created(),
            updated: self.updated(),
            facts: Facts::of(&self.doc),
        }
    }

    /// The bytes stored. The document is stored as exported (with its
    /// `revision`), so that an export file's json and ndjson are written from
    /// these bytes without parsing them into a tree.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![ORDER_V3];
        // Our own plain types serialise without fail.
        out.extend(postcard::to_stdvec(&self.head()).unwrap_or_default());
        let json = serde_json::to_vec(&self.export_doc()).unwrap_or_default();
        out.extend(lz4_flex::compress_prepend_size(&json));
        out
    }

    /// Decodes what an export file needs: the id, the revision and the
    /// document as exported, as compact JSON (keys in order), unparsed.
    pub(crate) fn decode_export(bytes: &[u8]) -> Result<ExportDoc, String> {
        if let Some(split) = split(bytes) {
            let (head, json) = split?;
            return Ok(ExportDoc {
                id: head.id,
                revision: head.revision,
                json: json.into_owned(),
            });
        }
        OrderRecord::decode(bytes).map(|r| ExportDoc::of(&r))
    }

    /// Decodes either format.
    pub(crate) fn decode(bytes: &[u8]) -> Result<OrderRecord, String> {
        if let Some(split) = split(bytes) {
            let (head, doc) = split?;
            let doc = serde_json::from_slice(&doc).map_err(|e| e.to_string())?;
            return Ok(OrderRecord {
                id: head.id,
                external_id: head.external_id,
                revision: head.revision,
                sent_hash: head.sent_hash,
                doc,
                regulated: head.regulated,
            });
        }
        let v1 = serde_json::from_slice::<Versioned<OrderRecordV1>>(bytes)
            .map_err(|e| e.to_string())?
            .into_inner();
        Ok(OrderRecord {
            id: v1.id,
            external_id: v1.external_id,
            revision: v1.revision,
            sent_hash: crate::order::sent_hash(&v1.sent),
            doc: v1.doc,
            regulated: v1.regulated,
        })
    }

    /// A stored record cut to its head (second format), for checks that
    /// only read heads; other bytes are returned as they are.
    pub(crate) fn head_only(bytes: &[u8]) -> Vec<u8> {
        if matches!(bytes.first(), Some(&(ORDER_V2 | ORDER_V3)))
            && let Ok((_, doc)) = postcard::take_from_bytes::<OrderHead>(&bytes[1..])
        {
            return bytes[..bytes.len() - doc.len()].to_vec();
        }
        bytes.to_vec()
    }

    /// The record stored and read back three ways (whole, head, export
    /// document), for the fuzz targets: whatever the inbox accepts must read
    /// back (issue 7: a deeply nested order was stored but not readable).
    #[doc(hidden)]
    pub fn read_back(&self) -> Result<(OrderRecord, OrderHead, ExportDoc), String> {
        let bytes = self.encode();
        Ok((
            OrderRecord::decode(&bytes)?,
            OrderRecord::decode_head(&bytes)?,
            OrderRecord::decode_export(&bytes)?,
        ))
    }

    /// Decodes only the head (the document is not parsed in the second
    /// format).
    pub(crate) fn decode_head(bytes: &[u8]) -> Result<OrderHead, String> {
        if matches!(bytes.first(), Some(&(ORDER_V2 | ORDER_V3))) {
            return postcard::take_from_bytes::<OrderHead>(&bytes[1..])
                .map(|(h, _)| h)
                .map_err(|e| e.to_string());
        }
        OrderRecord::decode(bytes).map(|r| r.head())
    }
}

/// Where an order stands for one system (SPEC §8).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ExportState {
    Pending,
    Written,
    Acked,
}

impl ExportState {
    /// All states, in their order.
    pub const ALL: [ExportState; 3] = [
        ExportState::Pending,
        ExportState::Written,
        ExportState::Acked,
    ];

    /// Lower-case name, as in the CLI and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ExportState::Pending => "pending",
            ExportState::Written => "written",
            ExportState::Acked => "acked",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<ExportState> {
        ExportState::ALL.into_iter().find(|st| st.name() == s)
    }
}

/// An order's export state for one system.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportRecord {
    pub state: ExportState,
    /// The sort key of the index entry that is current for `state`
    /// (created, written_at or acked_at), so it can be removed on change.
    pub sort: i64,
    /// The last export file the order was written to.
    pub file: Option<String>,
    pub written_at: Option<i64>,
    pub acked_at: Option<i64>,
    /// The order's revision this state is for (pending: the one to write),
    /// so marking an export file's orders written needs no read of the
    /// orders themselves. Absent in records of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
}

/// One entry of an order's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// UNIX ms.
    pub at: i64,
    /// `received`, `updated`, `written`, `acked`, `regulated`, `archived`, …
    pub event: String,
    pub detail: String,
}

/// A file whose effects were applied (keyed by name and content hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedFile {
    pub at: i64,
    pub kind: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> OrderRecord {
        let doc = serde_json::json!({
            "id": "6f1c5a52-0d36-4a4f-9a57-7f3c6b0e2a11",
            "external_id": "A-1",
            "created": 1_700_000_000_000_i64,
            "updated": 1_700_000_000_000_i64,
            "line_items": [{"sku": "S-1", "qty_ordered": 2, "description": "Æble ".repeat(40)}],
        });
        OrderRecord {
            id: doc["id"].as_str().unwrap().parse().unwrap(),
            external_id: "A-1".into(),
            revision: 3,
            sent_hash: [7; 32],
            doc,
            regulated: true,
        }
    }

    /// The second format: the same bytes, the document uncompressed.
    fn second_format(rec: &OrderRecord) -> Vec<u8> {
        let mut out = vec![ORDER_V2];
        out.extend(postcard::to_stdvec(&rec.head()).unwrap());
        out.extend(serde_json::to_vec(&rec.export_doc()).unwrap());
        out
    }

    #[test]
    fn every_format_reads_back_the_same_order() {
        let rec = record();
        let third = rec.encode();
        assert_eq!(third[0], ORDER_V3);
        let second = second_format(&rec);
        assert!(
            third.len() < second.len(),
            "compressed {} < {}",
            third.len(),
            second.len()
        );
        for bytes in [&third, &second] {
            let mut back = OrderRecord::decode(bytes).unwrap();
            // The stored document carries its revision, as exported.
            back.doc.as_object_mut().unwrap().remove("revision");
            assert_eq!(back, rec);
            assert_eq!(OrderRecord::decode_head(bytes).unwrap(), rec.head());
            let export = OrderRecord::decode_export(bytes).unwrap();
            assert_eq!(export, ExportDoc::of(&rec));
            let head_only = OrderRecord::head_only(bytes);
            assert_eq!(OrderRecord::decode_head(&head_only).unwrap(), rec.head());
        }
        // A damaged document is an error, not a panic.
        let mut damaged = third.clone();
        let n = damaged.len();
        damaged.truncate(n - 5);
        assert!(OrderRecord::decode(&damaged).is_err());
    }
}
