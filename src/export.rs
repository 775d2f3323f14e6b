//! Export files (SPEC §8): reads pending orders from the store, renders a
//! batch in the system's format and writes it into `outbox/<system>/`
//! atomically, then tells the store. The end of the flow; it never reads
//! the inbox.
//!
//! Order of steps per file: render → record the batch (orders, revisions,
//! file name, size and SHA-256) in the store and flush → write the file under
//! its name, never replacing anything there → mark the orders written. The
//! outbox is shared with partners we do not trust, so nothing found at a
//! name counts as our file unless it is a regular file with the recorded
//! size and hash: a folder, symlink, FIFO or foreign file at the next name
//! is left alone, logged, and the next sequence number is used instead. The
//! system's folder is opened without following symlinks (see
//! [`fsutil::Dir`]); a symlinked outbox is refused and retried later.
//!
//! Each system is exported on its own: one whose folder is broken is
//! reported and retried while the others carry on.

use std::io;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::config::{Config, Format, SystemConfig, Transport};
use crate::fsutil::{Dir, Entry};
use crate::order::ADDRESS_FIELDS;
use crate::store::{Batch, Content, Context, ExportDoc, ExportState, Store, StoreError};

/// How many taken names in a row the exporter steps over before it gives up
/// on a system for this round (names carry the time, so a later round tries
/// other names).
const MAX_TAKEN_NAMES: usize = 100;

/// Why exporting stopped. The pending orders stay pending.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing export file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// `outbox/` or `outbox/<system>` cannot be used (not a real folder:
    /// a symlink, a file…); the error names it.
    #[error("outbox folder unusable: {source}")]
    Folder { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every name tried was taken by something else.
    #[error("{tried} export file names in a row were taken in {dir} by files we did not write")]
    NoFreeName { dir: PathBuf, tried: usize },
    /// An order a group has just written is still pending, at the same
    /// revision, right after: the store's export state does not advance (a
    /// damaged store). Exporting stops rather than write the same order's
    /// file for ever.
    #[error(
        "the order {order} (revision {revision}) is still pending for {system} after its file was written: its export state does not advance (a damaged store?); exporting stopped rather than write it again and again"
    )]
    Stuck {
        system: String,
        order: uuid::Uuid,
        revision: u32,
    },
    /// Some systems failed (each with its error); the others were exported.
    #[error("{}", describe(.0))]
    Systems(Vec<(String, ExportError)>),
}

fn describe(failures: &[(String, ExportError)]) -> String {
    let parts: Vec<String> = failures
        .iter()
        .map(|(id, e)| format!("export failed for system {id}: {e}"))
        .collect();
    parts.join("; ")
}

/// What one round of exporting did, system by system.
#[derive(Debug, Default)]
pub struct Report {
    /// The export files written, all systems.
    pub written: Vec<PathBuf>,
    /// Systems exported without error.
    pub exported: Vec<String>,
    /// Systems that failed, each with its error; their orders stay pending.
    pub failed: Vec<(String, ExportError)>,
    /// Whether a system may have more to export (its step ran out).
    pub more: bool,
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
/// first any batch a crash interrupted. Every system is tried, even after
/// another failed; the failures are logged and returned together
/// ([`ExportError::Systems`]). Returns the files written.
pub fn export_all(store: &Store, config: &Config) -> Result<Vec<PathBuf>, ExportError> {
    let report = export_systems(store, config, |_| true, usize::MAX);
    if report.failed.is_empty() {
        return Ok(report.written);
    }
    for (id, e) in &report.failed {
        tracing::error!(system = %id, error = %e, "export failed; its orders stay pending");
    }
    Err(ExportError::Systems(report.failed))
}

/// Exports every system for which `due(id)` holds, each independently of
/// the others (the daemon keeps a retry time per system), at most `groups`
/// groups of files per system ([`GROUP_ORDERS`]): the daemon exports a
/// bounded step at a time and breathes in between (watchdog, signals, new
/// files); [`Report::more`] says whether anything is left.
pub fn export_systems(
    store: &Store,
    config: &Config,
    due: impl Fn(&str) -> bool,
    groups: usize,
) -> Report {
    let mut report = Report::default();
    // An HTTP system gets no files: its orders wait for GET + mark-as-exported.
    let file_systems = config
        .systems
        .iter()
        .filter(|s| s.transport == Transport::Files);
    for system in file_systems.filter(|s| due(&s.id)) {
        match export_system(store, config, system, &mut report.written, groups) {
            Ok(more) => {
                report.more |= more;
                report.exported.push(system.id.clone());
            }
            Err(e) => report.failed.push((system.id.clone(), e)),
        }
    }
    report
}

/// About how many orders one group of export files holds: each group is
/// recorded in one transaction, its files written and made durable with one
/// folder fsync, and marked written in one transaction (two flushes in
/// all), whatever `batch_size` is.
pub const GROUP_ORDERS: usize = 2_000;
/// The most files in one group (small `batch_size`s).
const GROUP_FILES: usize = 100;

/// Exports at most `groups` groups of files for one system; returns whether
/// there may be more.
fn export_system(
    store: &Store,
    config: &Config,
    system: &SystemConfig,
    written: &mut Vec<PathBuf>,
    groups: usize,
) -> Result<bool, ExportError> {
    // Opened when there is something to write: a broken outbox with nothing
    // pending is no failure.
    let mut dir: Option<Dir> = None;
    for batch in store.batches_in_flight(&system.id)? {
        tracing::info!(system = %system.id, file = %batch.file, "finishing an export batch interrupted earlier");
        let d = match dir {
            Some(ref d) => d,
            None => dir.insert(open_outbox(config, system)?),
        };
        recover(store, config, system, d, batch, written)?;
    }
    if let Some(after) = system.resend_after {
        let now = store.now().timestamp_millis();
        let n = store.resend_written_before(&system.id, now - after.as_millis() as i64, now)?;
        if n > 0 {
            tracing::info!(system = %system.id, orders = n, "written but not acked in time: exporting again");
        }
    }
    let files_per_group = (GROUP_ORDERS / system.batch_size).clamp(1, GROUP_FILES);
    // The orders (and revisions) the previous group marked written: none
    // may be pending again in the next one (see `ExportError::Stuck`).
    // Checked on the pending orders the next group would take, also after
    // the last group (so a daemon, which exports a group a call, never
    // writes one order again and again either).
    let mut previous: std::collections::HashMap<uuid::Uuid, u32> = Default::default();
    for round in 0..=groups {
        let ids = store.ids_in_state(
            &system.id,
            ExportState::Pending,
            files_per_group * system.batch_size,
        )?;
        if ids.is_empty() {
            return Ok(false);
        }
        let again: Vec<uuid::Uuid> = ids
            .iter()
            .filter(|id| previous.contains_key(*id))
            .copied()
            .collect();
        if !again.is_empty() {
            for o in load(store, again.into_iter())? {
                if previous.get(&o.id) == Some(&o.revision) {
                    return Err(ExportError::Stuck {
                        system: system.id.clone(),
                        order: o.id,
                        revision: o.revision,
                    });
                }
            }
        }
        if round == groups {
            return Ok(true);
        }
        // Rendered a file at a time: only the bytes are kept, not the
        // decoded orders.
        let mut files = Vec::with_capacity(files_per_group);
        for chunk in ids.chunks(system.batch_size) {
            let orders = load(store, chunk.iter().copied())?;
            if !orders.is_empty() {
                files.push((revisions(&orders), render(system, &orders)));
            }
        }
        if files.is_empty() {
            // Pending entries whose orders are gone (only a damaged database
            // has them): say so and stop, rather than loop on them.
            tracing::error!(system = %system.id, entries = ids.len(), "pending index entries without orders; skipped");
            return Ok(false);
        }
        let d = match dir {
            Some(ref d) => d,
            None => dir.insert(open_outbox(config, system)?),
        };
        let now = store.now();
        let records: Vec<_> = files
            .iter()
            .map(|(revisions, bytes)| (revisions.clone(), Some(Content::of(bytes))))
            .collect();
        let batches = store.record_batches(&system.id, &records, |seq| {
            file_name(now, seq, system.format)
        })?;
        store.flush()?;
        let mut placed = Vec::with_capacity(batches.len());
        for (batch, (_, bytes)) in batches.into_iter().zip(&files) {
            placed.push(place(store, system, d, batch, bytes)?);
        }
        finish(store, config, system, d, &placed, written)?;
        previous = files
            .iter()
            .flat_map(|(revisions, _)| revisions.iter().copied())
            .collect();
    }
    Ok(true)
}

/// `outbox/<system>`, created if missing, refused if it (or `outbox/`) is
/// not a real folder.
fn open_outbox(config: &Config, system: &SystemConfig) -> Result<Dir, ExportError> {
    let outbox = &config.paths.outbox;
    Dir::create(outbox)
        .and_then(|o| o.sub(&system.id, true))
        .map_err(|source| ExportError::Folder {
            path: outbox.join(&system.id),
            source,
        })
}

/// The stored orders of `ids` (those that still exist).
fn load(
    store: &Store,
    ids: impl Iterator<Item = uuid::Uuid>,
) -> Result<Vec<ExportDoc>, StoreError> {
    store.orders_for_export(&ids.collect::<Vec<_>>())
}

fn revisions(orders: &[ExportDoc]) -> Vec<(uuid::Uuid, u32)> {
    orders.iter().map(|o| (o.id, o.revision)).collect()
}

fn marker_name(file: &str) -> String {
    format!("{file}.done")
}

/// Finishes a batch a crash (or a failed write) interrupted. Its file counts
/// as written only if a regular file with the recorded size and SHA-256 is at
/// its name (and its ready marker, if any, is an empty file or can be
/// written). Otherwise the orders are rendered again and written: under the
/// same name when it is free, else under the next sequence number.
fn recover(
    store: &Store,
    config: &Config,
    system: &SystemConfig,
    dir: &Dir,
    mut batch: Batch,
    written: &mut Vec<PathBuf>,
) -> Result<(), ExportError> {
    let io_err = |name: &str| {
        let path = dir.join(name);
        move |source| ExportError::Io { path, source }
    };
    let orders = load(store, batch.orders.iter().map(|(id, _)| *id))?;
    if orders.is_empty() {
        let ctx = context(config, store);
        store.finish_batch(&batch, system, &ctx)?;
        store.flush()?;
        return Ok(());
    }
    let bytes = render(system, &orders);
    // A batch recorded by an older version has no size and hash: its file is
    // what rendering its orders gives, if they have not changed since.
    let expected = batch.content.clone().unwrap_or_else(|| Content::of(&bytes));
    let ours = match dir.entry(&batch.file).map_err(io_err(&batch.file))? {
        Some(Entry::File(len)) if len == expected.size => dir
            .read_regular(&batch.file, len)
            .map_err(io_err(&batch.file))?
            .is_some_and(|b| Content::of(&b) == expected),
        _ => false,
    };
    let marker_free = !system.ready_marker
        || matches!(
            dir.entry(&marker_name(&batch.file))
                .map_err(io_err(&batch.file))?,
            None | Some(Entry::File(0))
        );
    if ours && marker_free {
        tracing::info!(system = %system.id, file = %batch.file, "the interrupted batch's file is in the outbox (size and SHA-256 match)");
        return finish(store, config, system, dir, &[batch], written);
    }
    // Rendered again: the orders may have changed since it was recorded.
    batch.orders = revisions(&orders);
    batch.content = Some(Content::of(&bytes));
    store.rerecord_batch(&batch)?;
    store.flush()?;
    let batch = place(store, system, dir, batch, &bytes)?;
    finish(store, config, system, dir, &[batch], written)
}

/// What takes the batch file's name, or its ready marker's: anything at all.
fn taken(
    dir: &Dir,
    system: &SystemConfig,
    file: &str,
) -> io::Result<Option<(String, &'static str)>> {
    let mut names = vec![file.to_string()];
    if system.ready_marker {
        names.push(marker_name(file));
    }
    for name in names {
        match dir.entry(&name)? {
            None => {}
            Some(Entry::File(_)) => return Ok(Some((name, "file with other content"))),
            Some(Entry::Other(kind)) => return Ok(Some((name, kind))),
        }
    }
    Ok(None)
}

/// Writes `bytes` as the batch's file, never over anything: while its name
/// (or its marker's) is taken, the batch moves to the next sequence number
/// (recorded in the store before the file is written). Returns the batch as
/// finally recorded.
fn place(
    store: &Store,
    system: &SystemConfig,
    dir: &Dir,
    mut batch: Batch,
    bytes: &[u8],
) -> Result<Batch, ExportError> {
    for _ in 0..MAX_TAKEN_NAMES {
        let io_err = |source| ExportError::Io {
            path: dir.join(&batch.file),
            source,
        };
        // A former leader of a pair, woken after another node took over,
        // writes no file: the lease is renewed first, and the file takes
        // its name only while the renewal surely holds (a node frozen in
        // between finds the time gone and writes nothing).
        let deadline = store.lease_deadline()?;
        let squatter = match taken(dir, system, &batch.file).map_err(io_err)? {
            Some(s) => s,
            None => match dir.write_new_unsynced_before(&batch.file, bytes, deadline) {
                Ok(_) => return Ok(batch),
                Err(e) if e.kind() == io::ErrorKind::TimedOut && deadline.is_some() => {
                    return Err(ExportError::Store(store.fenced()));
                }
                // Something took the name since we looked.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    (batch.file.clone(), "something that appeared while writing")
                }
                Err(e) => return Err(io_err(e)),
            },
        };
        let next = store.move_batch(&batch, |seq| file_name(store.now(), seq, system.format))?;
        store.flush()?;
        tracing::warn!(
            system = %system.id, taken = %dir.join(&squatter.0).display(), kind = squatter.1,
            next = %next.file,
            "export file name taken by something ordersync did not write: left alone, using the next sequence number"
        );
        batch = next;
    }
    Err(ExportError::NoFreeName {
        dir: dir.path().to_path_buf(),
        tried: MAX_TAKEN_NAMES,
    })
}

/// The batches' files are in the outbox: writes their ready markers if the
/// system wants them, makes the names durable (one folder fsync), then marks
/// the orders written and clears the batches (one transaction, one flush).
fn finish(
    store: &Store,
    config: &Config,
    system: &SystemConfig,
    dir: &Dir,
    batches: &[Batch],
    written: &mut Vec<PathBuf>,
) -> Result<(), ExportError> {
    for batch in batches {
        if system.ready_marker {
            let marker = marker_name(&batch.file);
            match dir.write_new_unsynced(&marker, b"") {
                Ok(_) => {}
                // An empty file: ours from an earlier attempt, or as good.
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && matches!(dir.entry(&marker), Ok(Some(Entry::File(0)))) => {}
                Err(source) => {
                    return Err(ExportError::Io {
                        path: dir.join(&marker),
                        source,
                    });
                }
            }
        }
    }
    dir.sync().map_err(|source| ExportError::Io {
        path: dir.path().to_path_buf(),
        source,
    })?;
    for batch in batches {
        tracing::info!(system = %system.id, file = %batch.file, orders = batch.orders.len(), "export file written");
        written.push(dir.join(&batch.file));
    }
    store.finish_batches(batches, system, &context(config, store))?;
    store.flush()?;
    Ok(())
}

/// The time comes from the store's one clock (the database server's on
/// PostgreSQL).
fn context<'a>(config: &'a Config, store: &Store) -> Context<'a> {
    Context {
        now: store.now().timestamp_millis(),
        systems: &config.systems,
        allow_negative: config.inventory.allow_negative,
        only_system: None,
    }
}

/// Renders orders in the system's format.
///
/// json and ndjson with lines (the usual case) are written straight from the
/// stored bytes: ndjson as they are, json re-indented by transcoding, with
/// no JSON tree built. Otherwise each order is parsed.
pub fn render(system: &SystemConfig, orders: &[ExportDoc]) -> Vec<u8> {
    if system.include_lines {
        match system.format {
            Format::Json => {
                #[derive(serde::Serialize)]
                struct File<'a> {
                    orders: Vec<Transcoded<'a>>,
                }
                let file = File {
                    orders: orders.iter().map(|o| Transcoded(&o.json)).collect(),
                };
                let mut out = serde_json::to_vec_pretty(&file).unwrap_or_default();
                out.push(b'\n');
                return out;
            }
            Format::Ndjson => {
                let mut out = Vec::with_capacity(orders.iter().map(|o| o.json.len() + 1).sum());
                for o in orders {
                    out.extend_from_slice(&o.json);
                    out.push(b'\n');
                }
                return out;
            }
            Format::Csv => {}
        }
    }
    let docs: Vec<Value> = orders
        .iter()
        .map(|o| {
            let mut doc = o.value();
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

/// Stored JSON bytes that serialise as the value they hold, streamed from
/// parser to serialiser (re-indented when the serialiser is pretty).
struct Transcoded<'a>(&'a [u8]);

impl serde::Serialize for Transcoded<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut de = serde_json::Deserializer::from_slice(self.0);
        serde_transcode::transcode(&mut de, s)
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
