//! What the store keeps, as serde types. Every value is wrapped in
//! [`Versioned`], so a later format can be read beside this one.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrderRecord {
    pub id: Uuid,
    pub external_id: String,
    /// 1 for the first version received, +1 per accepted update.
    pub revision: u32,
    /// The object as last sent (duplicates and updates compare against it).
    pub sent: Value,
    /// The filled-in document; `archived` is set here when regulated.
    pub doc: Value,
    /// Whether an acknowledgement regulated inventory for it.
    pub regulated: bool,
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
}

/// Where an order stands for one system (SPEC §8).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
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
