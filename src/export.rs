//! Export files (SPEC §8): reads pending orders from the store, renders a
//! batch in the system's format and writes it into `outbox/<system>/`
//! atomically, then tells the store. The end of the flow; it never reads
//! the inbox.

use std::fs;
use std::io;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::config::{Config, Format, SystemConfig};
use crate::fsutil;
use crate::order::ADDRESS_FIELDS;
use crate::store::{Batch, Context, ExportState, OrderRecord, Store, StoreError};

/// Why exporting stopped. The pending orders stay pending.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing export file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The export file name for a sequence number: `orders-<UTC time>-<seq>.<ext>`.
pub fn file_name(now: DateTime<Utc>, seq: u64, format: Format) -> String {
    format!(
        "orders-{}-{seq:06}.{}",
        now.format("%Y%m%dT%H%M%SZ"),
        format.extension()
    )
}

/// Writes every pending order of every system into export files, finishing
/// first any batch a crash interrupted. Returns the files written.
pub fn export_all(store: &Store, config: &Config) -> Result<Vec<PathBuf>, ExportError> {
    let mut written = Vec::new();
    for system in &config.systems {
        export_system(store, config, system, &mut written)?;
    }
    Ok(written)
}

fn export_system(
    store: &Store,
    config: &Config,
    system: &SystemConfig,
    written: &mut Vec<PathBuf>,
) -> Result<(), ExportError> {
    if let Some(batch) = store.batch_in_flight(&system.id)? {
        tracing::info!(system = %system.id, file = %batch.file, "finishing an export batch interrupted earlier");
        write_batch(store, config, system, &batch, written, true)?;
    }
    if let Some(after) = system.resend_after {
        let now = Utc::now().timestamp_millis();
        let n = store.resend_written_before(&system.id, now - after.as_millis() as i64, now)?;
        if n > 0 {
            tracing::info!(system = %system.id, orders = n, "written but not acked in time: exporting again");
        }
    }
    loop {
        let ids = store.ids_in_state(&system.id, ExportState::Pending, system.batch_size)?;
        if ids.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let batch =
            store.start_batch(&system.id, &ids, |seq| file_name(now, seq, system.format))?;
        write_batch(store, config, system, &batch, written, false)?;
        if batch.orders.is_empty() {
            // Pending entries whose orders are gone (only a damaged database
            // has them): say so and stop, rather than loop on them.
            tracing::error!(system = %system.id, entries = ids.len(), "pending index entries without orders; skipped");
            return Ok(());
        }
    }
}

fn write_batch(
    store: &Store,
    config: &Config,
    system: &SystemConfig,
    batch: &Batch,
    written: &mut Vec<PathBuf>,
    recovering: bool,
) -> Result<(), ExportError> {
    let dir = config.paths.outbox.join(&system.id);
    let io_err = |source| ExportError::Io {
        path: dir.join(&batch.file),
        source,
    };
    let mut orders = Vec::with_capacity(batch.orders.len());
    for (id, _) in &batch.orders {
        if let Some(rec) = store.order(*id)? {
            orders.push(rec);
        }
    }
    if !orders.is_empty() {
        fs::create_dir_all(&dir).map_err(io_err)?;
        let path = dir.join(&batch.file);
        // A recovered batch whose file made it to the outbox is not written
        // twice; one that did not (or was already taken) is written again.
        if !(recovering && path.exists()) {
            let bytes = render(system, &orders);
            fsutil::write_atomic(&dir, &batch.file, &bytes).map_err(io_err)?;
        }
        if system.ready_marker {
            fsutil::write_atomic(&dir, &format!("{}.done", batch.file), b"").map_err(io_err)?;
        }
        tracing::info!(system = %system.id, file = %batch.file, orders = orders.len(), "export file written");
        written.push(path);
    }
    let ctx = Context {
        now: Utc::now().timestamp_millis(),
        systems: &config.systems,
        allow_negative: config.inventory.allow_negative,
    };
    store.finish_batch(batch, system, &ctx)?;
    store.flush()?;
    Ok(())
}

/// Renders orders in the system's format.
pub fn render(system: &SystemConfig, orders: &[OrderRecord]) -> Vec<u8> {
    let docs: Vec<Value> = orders
        .iter()
        .map(|o| {
            let mut doc = o.export_doc();
            if !system.include_lines
                && let Value::Object(m) = &mut doc
            {
                m.remove("line_items");
            }
            doc
        })
        .collect();
    match system.format {
        Format::Json => {
            let mut out = serde_json::to_vec_pretty(&serde_json::json!({ "orders": docs }))
                .unwrap_or_default();
            out.push(b'\n');
            out
        }
        Format::Ndjson => {
            let mut out = Vec::new();
            for d in &docs {
                out.extend(serde_json::to_vec(d).unwrap_or_default());
                out.push(b'\n');
            }
            out
        }
        Format::Csv => render_csv(system, &docs),
    }
}

/// The csv columns, in order (SPEC §8).
pub const CSV_COLUMNS: &[&str] = &[
    "order_id",
    "external_id",
    "reference",
    "type",
    "channel",
    "status",
    "internal_status",
    "cancelled",
    "archived",
    "currency",
    "created",
    "updated",
    "revision",
    "billing_company_name",
    "billing_contact_email",
    "billing_contact_name",
    "billing_contact_number",
    "billing_reference",
    "billing_address1",
    "billing_address2",
    "billing_city",
    "billing_postcode",
    "billing_state",
    "billing_country",
    "shipping_company_name",
    "shipping_contact_email",
    "shipping_contact_name",
    "shipping_contact_number",
    "shipping_reference",
    "shipping_address1",
    "shipping_address2",
    "shipping_city",
    "shipping_postcode",
    "shipping_state",
    "shipping_country",
    "shipping_rule_name",
    "shipping_rule_recovery",
    "tax_rule_name",
    "tax_rule_inclusive",
    "tax_rule_rate",
    "line_number",
    "sku",
    "description",
    "qty_ordered",
    "qty_shipped",
    "requires_shipping",
    "unit_price",
];

/// Columns whose numbers are left as they are (a negative number is not a
/// formula).
const NUMERIC: &[&str] = &[
    "revision",
    "shipping_rule_recovery",
    "tax_rule_rate",
    "line_number",
    "qty_ordered",
    "qty_shipped",
    "unit_price",
];

fn render_csv(system: &SystemConfig, docs: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    if system.csv_bom {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    let mut w = csv::WriterBuilder::new()
        .delimiter(system.csv_delimiter)
        .terminator(if system.csv_crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        })
        .from_writer(out);
    // Writing to a Vec cannot fail.
    let _ = w.write_record(CSV_COLUMNS);
    for doc in docs {
        let head = order_cells(doc);
        let lines = doc["line_items"].as_array().filter(|l| !l.is_empty());
        match lines {
            Some(lines) if system.include_lines => {
                for line in lines {
                    let mut row = head.clone();
                    row.extend(line_cells(line));
                    let _ = w.write_record(guard_row(&row));
                }
            }
            _ => {
                let mut row = head;
                row.extend(std::iter::repeat_n(String::new(), 7));
                let _ = w.write_record(guard_row(&row));
            }
        }
    }
    w.into_inner().unwrap_or_default()
}

fn order_cells(doc: &Value) -> Vec<String> {
    // The first ten columns are top-level fields of the same names (the
    // order's `id` is the `order_id` column).
    let mut row: Vec<String> = CSV_COLUMNS[..10]
        .iter()
        .map(|c| cell(&doc[if *c == "order_id" { "id" } else { c }]))
        .collect();
    row.push(time_cell(&doc["created"]));
    row.push(time_cell(&doc["updated"]));
    row.push(cell(&doc["revision"]));
    for (addr, reference) in [
        ("billing_address", "billing_reference"),
        ("shipping_address", "shipping_reference"),
    ] {
        // The columns are the address fields in order, with the reference
        // after the contact number.
        let (contact, place) = ADDRESS_FIELDS.split_at(4);
        for key in contact.iter().chain([&reference]).chain(place) {
            row.push(cell(&doc[addr][key]));
        }
    }
    row.push(cell(&doc["shipping_rule"]["name"]));
    row.push(cell(&doc["shipping_rule"]["recovery"]));
    row.push(cell(&doc["tax_rule"]["name"]));
    row.push(cell(&doc["tax_rule"]["inclusive"]));
    row.push(cell(&doc["tax_rule"]["rate"]));
    row
}

fn line_cells(line: &Value) -> Vec<String> {
    [
        "line_number",
        "sku",
        "description",
        "qty_ordered",
        "qty_shipped",
        "requires_shipping",
        "unit_price",
    ]
    .iter()
    .map(|k| cell(&line[*k]))
    .collect()
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn time_cell(v: &Value) -> String {
    v.as_i64()
        .and_then(DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// Prefixes `'` to cells a spreadsheet would run as a formula.
fn guard_row(row: &[String]) -> Vec<String> {
    row.iter()
        .zip(CSV_COLUMNS)
        .map(|(v, col)| {
            let numeric = NUMERIC.contains(col) && v.parse::<f64>().is_ok();
            if !numeric && v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{v}")
            } else {
                v.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_guard_spares_numbers_in_numeric_columns() {
        let mut row = vec![String::new(); CSV_COLUMNS.len()];
        row[1] = "=HYPERLINK(\"x\")".into(); // external_id
        row[42] = "-cmd".into(); // description
        row[43] = "-3".into(); // qty_ordered
        row[41] = "@sku".into(); // sku
        let g = guard_row(&row);
        assert_eq!(g[1], "'=HYPERLINK(\"x\")");
        assert_eq!(g[42], "'-cmd");
        assert_eq!(g[43], "-3");
        assert_eq!(g[41], "'@sku");
    }

    #[test]
    fn file_names() {
        let t = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        assert_eq!(
            file_name(t, 7, Format::Csv),
            "orders-20261118T110640Z-000007.csv"
        );
    }
}
