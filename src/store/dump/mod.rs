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

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::batch::{Batch, Content};
use super::records::AppliedFile;
use super::sled_backend::layout as keys;
use super::{ExportRecord, ExportState, OrderRecord, Store, StoreError};

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

impl From<sled::Error> for DumpError {
    fn from(e: sled::Error) -> DumpError {
        DumpError::Store(e.into())
    }
}

fn bad(line: u64, message: impl Into<String>) -> DumpError {
    DumpError::Bad {
        line,
        message: message.into(),
    }
}

/// The key kinds a dump holds, in the order it lists them (orders before
/// whatever names an order). Indexes and counts are left out.
const KINDS: [u8; 11] = [
    keys::ORDER,
    keys::TIMELINE,
    keys::EXPORT,
    keys::NOTE,
    keys::STOCK,
    keys::RESERVED,
    keys::FILE,
    keys::PROGRESS,
    keys::SEQUENCE,
    keys::BATCH,
    keys::SYSTEM,
];

impl Store {
    /// Writes the whole state to `out` as a dump, consistent as of one
    /// instant (see the module's head). Returns the number of records.
    pub fn dump_to(&self, out: &mut dyn Write) -> Result<u64, DumpError> {
        if let Some(pg) = self.postgres() {
            return pg.dump_to(out);
        }
        let db = self.sled_db()?;
        let folder = db.folder();
        let mut copy = BufWriter::new(tempfile::tempfile_in(folder)?);
        let locked = std::time::Instant::now();
        {
            let _writer = db.lock();
            for kind in KINDS {
                for kv in db.scan_prefix([kind]) {
                    let (k, v) = kv?;
                    for part in [&k[..], &v[..]] {
                        copy.write_all(&(part.len() as u64).to_le_bytes())?;
                        copy.write_all(part)?;
                    }
                }
            }
            copy.flush()?;
        }
        tracing::info!(held = ?locked.elapsed(), "dump: the store copied (commits waited meanwhile)");
        let mut copy = copy.into_inner().map_err(|e| e.into_error())?;
        copy.rewind()?;
        let mut copy = BufReader::new(copy);
        let mut out = BufWriter::new(out);
        let header = Header::new("sled");
        line(&mut out, &header)?;
        let mut records = 0u64;
        let mut timeline = EventSeq::default();
        while let Some((k, v)) = read_frame(&mut copy)? {
            let Some(record) = record_of(&k, &v, &mut timeline)? else {
                continue;
            };
            line(&mut out, &record)?;
            records += 1;
        }
        line(
            &mut out,
            &Trailer {
                format: END.into(),
                records,
            },
        )?;
        out.flush()?;
        Ok(records)
    }
}

/// Writes `value` as one line of a dump.
pub(super) fn line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

fn read_frame(r: &mut impl Read) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut parts = [Vec::new(), Vec::new()];
    for (i, part) in parts.iter_mut().enumerate() {
        let mut len = [0u8; 8];
        match r.read_exact(&mut len) {
            Err(e) if i == 0 && e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        part.resize(u64::from_le_bytes(len) as usize, 0);
        r.read_exact(part)?;
    }
    let [k, v] = parts;
    Ok(Some((k, v)))
}

/// The record a stored key and value hold (`None` for what a dump leaves
/// out). `timeline` numbers the events.
fn record_of(k: &[u8], v: &[u8], timeline: &mut EventSeq) -> Result<Option<Record>, StoreError> {
    let corrupt = |message: &str| super::corrupt(&keys::Shown(k), message.to_string());
    let (kind, rest) = k.split_first().ok_or_else(|| corrupt("empty key"))?;
    // `name \0 sha256`, `system \0 tail`.
    let split = |rest: &[u8], tail: usize| -> Result<(String, Vec<u8>), StoreError> {
        if rest.len() < tail + 1 || rest[rest.len() - tail - 1] != 0 {
            return Err(corrupt("malformed key"));
        }
        let (name, tail) = rest.split_at(rest.len() - tail - 1);
        Ok((
            String::from_utf8_lossy(name).into_owned(),
            tail[1..].to_vec(),
        ))
    };
    let sha = |bytes: &[u8]| -> Result<Sha256, StoreError> {
        bytes
            .try_into()
            .map(Sha256)
            .map_err(|_| corrupt("malformed key"))
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Ok(Some(match *kind {
        keys::ORDER => {
            let mut rec = super::decode_order(&keys::Shown(k), v)?;
            if let Value::Object(m) = &mut rec.doc {
                m.remove("revision");
            }
            Record::Order {
                id: rec.id,
                external_id: rec.external_id,
                revision: rec.revision,
                sent_sha256: Sha256(rec.sent_hash),
                regulated: rec.regulated,
                doc: rec.doc,
            }
        }
        keys::TIMELINE => {
            let event: super::Event = super::decode(&keys::Shown(k), v)?;
            let order = keys::uuid_of(rest.get(..16).ok_or_else(|| corrupt("malformed key"))?);
            let seq = timeline.next(order);
            Record::Event {
                order,
                seq,
                at: event.at,
                event: event.event,
                detail: event.detail,
            }
        }
        keys::EXPORT => {
            let (system, id) = split(rest, 16)?;
            let e: ExportRecord = super::decode(&keys::Shown(k), v)?;
            Record::Export {
                system,
                order: keys::uuid_of(&id),
                state: e.state,
                sort: e.sort,
                file: e.file,
                written_at: e.written_at,
                acked_at: e.acked_at,
                revision: e.revision,
            }
        }
        keys::NOTE => {
            let id = rest.get(..16).ok_or_else(|| corrupt("malformed key"))?;
            let (system, hash) = split(&rest[16..], 32)?;
            Record::Note {
                order: keys::uuid_of(id),
                system,
                sha256: sha(&hash)?,
            }
        }
        keys::STOCK => Record::Stock {
            sku: text(rest),
            in_stock: keys::int_of(v),
        },
        keys::RESERVED => Record::Reserved {
            sku: text(rest),
            reserved: keys::int_of(v),
        },
        keys::FILE => {
            let (name, hash) = split(rest, 32)?;
            let f: AppliedFile = super::decode(&keys::Shown(k), v)?;
            Record::AppliedFile {
                name,
                sha256: sha(&hash)?,
                at: f.at,
                kind: f.kind,
            }
        }
        keys::PROGRESS => {
            let (name, hash) = split(rest, 32)?;
            let p: super::apply::Progress = super::decode(&keys::Shown(k), v)?;
            Record::Progress {
                name,
                sha256: sha(&hash)?,
                orders: p.orders,
            }
        }
        keys::SEQUENCE => Record::Sequence {
            system: text(rest),
            last: keys::int_of(v) as u64,
        },
        keys::BATCH => {
            // `system \0 seq`, or the one batch an older version kept
            // under `system`: the value says both.
            let b: Batch = super::decode(&keys::Shown(k), v)?;
            Record::Batch {
                system: b.system,
                seq: b.seq,
                file: b.file,
                orders: b.orders,
                content: b.content,
            }
        }
        keys::SYSTEM => Record::Fingerprint {
            system: text(rest),
            settings: text(v),
        },
        _ => return Ok(None),
    }))
}

/// Reads a dump: its header, then its records one at a time, checking the
/// closing line. Memory is one line (at most [`MAX_LINE`]).
pub struct Reader<R> {
    input: R,
    line: u64,
    records: u64,
    ended: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<(Header, Reader<R>), DumpError> {
        let mut reader = Reader {
            input,
            line: 0,
            records: 0,
            ended: false,
            buf: Vec::new(),
        };
        if !reader.next_line()? {
            return Err(bad(1, "the dump is empty"));
        }
        let header: Header = serde_json::from_slice(&reader.buf).map_err(|e| {
            bad(
                1,
                format!("not an ordersync dump (the first line must be its header): {e}"),
            )
        })?;
        if header.format != FORMAT {
            return Err(bad(
                1,
                format!(
                    "not an ordersync dump: format {:?}, expected {FORMAT:?}",
                    header.format
                ),
            ));
        }
        if header.version != VERSION {
            return Err(bad(
                1,
                format!(
                    "dump format version {} is not the one this ordersync reads ({VERSION}); use the ordersync that wrote it, or a newer one",
                    header.version
                ),
            ));
        }
        Ok((header, reader))
    }

    /// The line number of the record last returned.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Reads the next line into `buf`; false at the end of the input.
    fn next_line(&mut self) -> Result<bool, DumpError> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            return Err(bad(
                self.line,
                format!("a line longer than {MAX_LINE} bytes"),
            ));
        }
        Ok(true)
    }

    /// The next record; `None` after the closing line, which must be the
    /// last line and count the records before it.
    pub fn next_record(&mut self) -> Result<Option<Record>, DumpError> {
        if self.ended {
            return Ok(None);
        }
        if !self.next_line()? {
            return Err(bad(
                self.line,
                "the dump ends without its closing line: it was cut short",
            ));
        }
        if self.buf.starts_with(br#"{"format""#) {
            let end: Trailer = serde_json::from_slice(&self.buf)
                .map_err(|e| bad(self.line, format!("bad closing line: {e}")))?;
            if end.format != END {
                return Err(bad(
                    self.line,
                    format!(
                        "bad closing line: format {:?}, expected {END:?}",
                        end.format
                    ),
                ));
            }
            if end.records != self.records {
                return Err(bad(
                    self.line,
                    format!(
                        "the closing line counts {} records, the dump holds {}",
                        end.records, self.records
                    ),
                ));
            }
            self.ended = true;
            if self.next_line()? {
                return Err(bad(self.line, "a line after the closing line"));
            }
            return Ok(None);
        }
        let record: Record =
            serde_json::from_slice(&self.buf).map_err(|e| bad(self.line, e.to_string()))?;
        self.records += 1;
        Ok(Some(record))
    }
}

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
    }
}

/// A restore's batch and its size in bytes.
#[derive(Default)]
struct Pending {
    batch: sled::Batch,
    bytes: usize,
}

impl Pending {
    fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.bytes += key.len() + value.len();
        self.batch.insert(key, value);
    }
}

/// What `restore` did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Restored {
    pub records: u64,
    pub orders: u64,
}

/// A restore's batch is applied (and flushed) once it holds this many
/// bytes. sled's peak memory grows much faster than a batch's size (its
/// freed pages wait for the batch's end): 100,000 orders with their events
/// and exports (600,000 records) restored in batches of 5,000 records
/// peaked at 3.8 GiB, of 256 KiB at 1.0 GiB, of 64 KiB at 190 MiB, at the
/// same speed; a daemon's own dump of 100,000 orders at 64 KiB peaked at
/// 265 MiB (`benches/load.rs`, row `dump`), hence 32 KiB.
const RESTORE_BATCH_BYTES: usize = 32 * 1024;

impl Store {
    /// Whether the store holds nothing but its counts (what a new store
    /// has).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return pg.is_empty();
        }
        for kv in self.sled_db()?.iter().keys() {
            if kv?.first() != Some(&keys::COUNT) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Loads a dump into this store, which must be empty. Checks every
    /// record (a record naming an order must come after that order) and the
    /// closing line; the indexes and counts are made here. On any error the
    /// store is left with what was written so far, marked as an
    /// interrupted restore that [`Store::open`] refuses.
    pub fn restore_from(&self, input: impl BufRead) -> Result<Restored, DumpError> {
        if let Some(pg) = self.postgres() {
            return pg.restore_from(input);
        }
        let db = self.sled_db()?;
        if !self.is_empty()? {
            return Err(DumpError::NotEmpty(format!(
                "the state folder {} already holds a store: restore loads only into an empty one (a new state folder)",
                db.folder().display()
            )));
        }
        let (_header, mut reader) = Reader::new(input)?;
        db.insert(keys::RESTORING, &b"1"[..])?;
        let handle = db.handle()?;
        let mut admission = Admission::default();
        let mut done = Restored::default();
        let mut batch = Pending::default();

        while let Some(record) = reader.next_record()? {
            admission.admit(reader.line(), &record)?;
            match record {
                Record::Order {
                    id,
                    external_id,
                    revision,
                    sent_sha256,
                    regulated,
                    doc,
                } => {
                    let rec = OrderRecord {
                        id,
                        external_id,
                        revision,
                        sent_hash: sent_sha256.0,
                        doc,
                        regulated,
                    };
                    batch.put(keys::order(id), rec.encode());
                    batch.put(keys::external(&rec.external_id), id.as_bytes());
                    if let Ok(spelt) = Uuid::parse_str(&rec.external_id) {
                        batch.put(keys::external_uuid(spelt), id.as_bytes());
                    }
                    done.orders += 1;
                }
                Record::Event {
                    order,
                    at,
                    event,
                    detail,
                    ..
                } => {
                    let n = handle.generate_id()?;
                    batch.put(
                        keys::timeline(order, n),
                        super::encode(&super::Event { at, event, detail }),
                    );
                }
                Record::Export {
                    system,
                    order,
                    state,
                    sort,
                    file,
                    written_at,
                    acked_at,
                    revision,
                } => {
                    let rec = ExportRecord {
                        state,
                        sort,
                        file,
                        written_at,
                        acked_at,
                        revision,
                    };
                    batch.put(keys::index(state, &system, sort, order), &[][..]);
                    batch.put(keys::export(&system, order), super::encode(&rec));
                }
                Record::Note {
                    order,
                    system,
                    sha256,
                } => batch.put(keys::note_hashed(order, &system, &sha256.0), &[][..]),
                Record::Stock { sku, in_stock } => {
                    batch.put(keys::stock(&sku), in_stock.to_be_bytes())
                }
                Record::Reserved { sku, reserved } => {
                    batch.put(keys::reserved(&sku), reserved.to_be_bytes())
                }
                Record::AppliedFile {
                    name,
                    sha256,
                    at,
                    kind,
                } => batch.put(
                    keys::file(&name, &sha256.0),
                    super::encode(&AppliedFile { at, kind }),
                ),
                Record::Progress {
                    name,
                    sha256,
                    orders,
                } => batch.put(
                    keys::progress(&name, &sha256.0),
                    super::encode(&super::apply::Progress { orders }),
                ),
                Record::Sequence { system, last } => {
                    batch.put(keys::sequence(&system), (last as i64).to_be_bytes())
                }
                Record::Batch {
                    system,
                    seq,
                    file,
                    orders,
                    content,
                } => batch.put(
                    keys::batch_entry(&system, seq),
                    super::encode(&Batch {
                        system: system.clone(),
                        seq,
                        file,
                        orders,
                        content,
                    }),
                ),
                Record::Fingerprint { system, settings } => {
                    batch.put(keys::system(&system), settings.as_bytes())
                }
            }
            done.records += 1;
            if batch.bytes >= RESTORE_BATCH_BYTES {
                db.apply_batch(std::mem::take(&mut batch).batch)?;
                db.flush()?;
            }
        }
        db.apply_batch(batch.batch)?;
        // The counts, made from what is now stored.
        let mut stale = sled::Batch::default();
        for k in db.scan_prefix([keys::COUNT]).keys() {
            stale.remove(k?);
        }
        db.apply_batch(stale)?;
        db.ensure_counts()?;
        let mut finished = sled::Batch::default();
        finished.remove(keys::RESTORING);
        db.apply_batch(finished)?;
        self.flush()?;
        Ok(done)
    }
}
