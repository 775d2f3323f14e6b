//! A row as the store's record: the decoders the point reads and scans
//! (`backend.rs`) and the read-ahead (`prefetch.rs`) share.
//!
//! Each takes its columns by position: a change to a `SELECT`'s column
//! list there is a change here, and the other way round.

use crate::store::batch::{Batch, Content};
use crate::store::keys::Key;
use crate::store::{ExportRecord, ExportState, OrderRecord, StoreError};

/// An order row (`id, external_id, revision, sent_sha256, regulated, doc`)
/// as the store's order record.
pub(in crate::store::postgres) fn order_of(row: &postgres::Row) -> OrderRecord {
    let sha: Vec<u8> = row.get(3);
    let mut sent_hash = [0u8; 32];
    if sha.len() == 32 {
        sent_hash.copy_from_slice(&sha);
    }
    OrderRecord {
        id: row.get(0),
        external_id: row.get(1),
        revision: row.get::<_, i32>(2) as u32,
        sent_hash,
        regulated: row.get(4),
        doc: row.get(5),
    }
}

/// The export record in `row`'s columns from `at` on (`state, sort, file,
/// written_at, acked_at, revision`), its state already read.
pub(in crate::store::postgres) fn export_at(
    row: &postgres::Row,
    at: usize,
    state: ExportState,
) -> ExportRecord {
    ExportRecord {
        state,
        sort: row.get(at + 1),
        file: row.get(at + 2),
        written_at: row.get(at + 3),
        acked_at: row.get(at + 4),
        revision: row.get::<_, Option<i32>>(at + 5).map(|r| r as u32),
    }
}

pub(super) fn state_of(name: &str, key: &Key) -> Result<ExportState, StoreError> {
    ExportState::parse(name).ok_or_else(|| StoreError::Corrupt {
        key: key.to_string(),
        message: format!("unknown state {name:?}"),
    })
}

pub(super) fn batch_of(r: &postgres::Row) -> Batch {
    let content = match (r.get::<_, Option<i64>>(4), r.get::<_, Option<String>>(5)) {
        (Some(size), Some(sha256)) => Some(Content {
            size: size as u64,
            sha256,
        }),
        _ => None,
    };
    Batch {
        system: r.get(0),
        seq: r.get::<_, i64>(1) as u64,
        file: r.get(2),
        orders: serde_json::from_value(r.get(3)).unwrap_or_default(),
        content,
    }
}
