//! The sled side of dump and restore, both directions of one mapping: a
//! record of the state (a key under one of `layout`'s one-byte prefixes:
//! order, timeline, export, note, stock, reserved, file, progress,
//! sequence, batch, system) is a [`Record`], and back.
//!
//! - Dumping (`Store::dump_to`): the records of [`KINDS`] are copied,
//!   unconverted, into an unnamed temporary file while the writer's lock is
//!   held (the one instant the dump is consistent as of), then each is
//!   turned into a line (`record_of`) with the lock let go. Indexes and
//!   counts are left out.
//! - Restoring (`Store::restore_from`): into an empty store only, marked
//!   as restoring (`RESTORING`, which `Store::open` refuses) until done;
//!   each record passes [`Admission`] first, then becomes its key and the
//!   derived ones (an external id, the UUID it spells, an index entry), in
//!   batches of [`RESTORE_BATCH_BYTES`], each flushed; the counts are made
//!   at the end from what is stored.
//!
//! Both entry points (and `Store::is_empty`) hand a PostgreSQL store to
//! `store/postgres/mod.rs` first. A key kind added to `layout` is dumped
//! only when it is in [`KINDS`] and has a case in `record_of` and in
//! `restore_from`.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};

use serde_json::Value;
use uuid::Uuid;

use super::super::batch::Batch;
use super::super::records::AppliedFile;
use super::super::sled_backend::layout as keys;
use super::super::{ExportRecord, OrderRecord, Store, StoreError};
use super::{
    Admission, DumpError, END, EventSeq, Header, Reader, Record, Restored, Sha256, Trailer, line,
};

impl From<sled::Error> for DumpError {
    fn from(e: sled::Error) -> DumpError {
        DumpError::Store(e.into())
    }
}

/// The key kinds a dump holds, in the order it lists them (orders before
/// whatever names an order). Indexes and counts are left out.
const KINDS: [u8; 12] = [
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
    keys::TRANSFER,
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
    let corrupt = |message: &str| super::super::corrupt(&keys::Shown(k), message.to_string());
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
            let mut rec = super::super::decode_order(&keys::Shown(k), v)?;
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
            let event: super::super::Event = super::super::decode(&keys::Shown(k), v)?;
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
            let e: ExportRecord = super::super::decode(&keys::Shown(k), v)?;
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
            let f: AppliedFile = super::super::decode(&keys::Shown(k), v)?;
            Record::AppliedFile {
                name,
                sha256: sha(&hash)?,
                at: f.at,
                kind: f.kind,
            }
        }
        keys::PROGRESS => {
            let (name, hash) = split(rest, 32)?;
            let p: super::super::apply::Progress = super::super::decode(&keys::Shown(k), v)?;
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
            let b: Batch = super::super::decode(&keys::Shown(k), v)?;
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
        keys::TRANSFER => {
            let nul = rest
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| corrupt("malformed key"))?;
            let remote = text(&rest[..nul]);
            match keys::transfer_key(&remote, k) {
                Some(crate::store::keys::Key::Transfer {
                    remote,
                    direction,
                    name,
                }) => Record::Transfer {
                    remote,
                    direction,
                    name,
                    transfer: super::super::decode(&keys::Shown(k), v)?,
                },
                _ => return Err(corrupt("malformed key")),
            }
        }
        _ => return Ok(None),
    }))
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
                        super::super::encode(&super::super::Event { at, event, detail }),
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
                    batch.put(keys::export(&system, order), super::super::encode(&rec));
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
                    super::super::encode(&AppliedFile { at, kind }),
                ),
                Record::Progress {
                    name,
                    sha256,
                    orders,
                } => batch.put(
                    keys::progress(&name, &sha256.0),
                    super::super::encode(&super::super::apply::Progress { orders }),
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
                    super::super::encode(&Batch {
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
                Record::Transfer {
                    remote,
                    direction,
                    name,
                    transfer,
                } => batch.put(keys::transfer(&remote, direction, &name), transfer.encode()),
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
