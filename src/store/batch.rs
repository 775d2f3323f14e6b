//! Export batches: the store's side of writing an export file (SPEC §8).
//!
//! A batch is recorded (sequence number, file name, orders and revisions)
//! *before* its file is written and cleared in the transaction that marks its
//! orders written. A batch still recorded at start-up was interrupted by a
//! crash: the exporter checks the file at its name against the recorded size
//! and SHA-256 (it counts as written only if they match), and otherwise
//! writes it again — under the same name if nothing is there, under the next
//! sequence number if something else took the name.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::apply::{Context, Strictness, Writer};
use super::backend::{Seek, Value};
use super::keys::{self, Key};
use super::{ApplyError, ExportRecord, ExportState, Store, StoreError};
use crate::config::SystemConfig;

/// One export file's worth of orders.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Batch {
    pub system: String,
    pub seq: u64,
    /// The export file's name (no folder).
    pub file: String,
    /// The orders and the revision of each that the file holds.
    pub orders: Vec<(Uuid, u32)>,
    /// The file's size and SHA-256 (hex), recorded before it is written so
    /// that a file found at its name after a crash can be told apart from
    /// anything else put there. `None` for batches recorded by versions that
    /// did not record them.
    #[serde(default)]
    pub content: Option<Content>,
}

/// One file of a group to record: its orders with their revisions, and its
/// size and hash.
pub type BatchFile = (Vec<(Uuid, u32)>, Option<Content>);

/// The size and SHA-256 of an export file's bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Content {
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

impl Content {
    /// The size and hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Content {
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(bytes);
        let mut sha256 = String::with_capacity(64);
        for b in hash {
            sha256.push_str(&format!("{b:02x}"));
        }
        Content {
            size: bytes.len() as u64,
            sha256,
        }
    }
}

fn store_error(e: ApplyError) -> StoreError {
    match e {
        ApplyError::Store(e) => e,
        // Batch transactions never collect problems.
        ApplyError::Rejected(p) => StoreError::Corrupt {
            key: "batch".into(),
            message: format!("{p:?}"),
        },
        // Batch transactions are never interrupted.
        ApplyError::Interrupted => StoreError::Corrupt {
            key: "batch".into(),
            message: "interrupted".into(),
        },
    }
}

impl Store {
    /// The batches of `system` a crash (or a failed write) interrupted, in
    /// sequence order.
    pub fn batches_in_flight(&self, system: &str) -> Result<Vec<Batch>, StoreError> {
        let mut out = Vec::new();
        if let Some(old) = self.get::<Batch>(&keys::batch(system))? {
            out.push(old);
        }
        for v in self.db.batches(system)? {
            out.push(super::decode(&Key::OldBatch(system.into()), &v)?);
        }
        Ok(out)
    }

    /// Records the next batch of `system`: the orders `ids` at their current
    /// revision, under the file name `name(seq)` for the next sequence number,
    /// without a record of its content (see [`Store::record_batches`]).
    pub fn start_batch(
        &self,
        system: &str,
        ids: &[Uuid],
        name: impl Fn(u64) -> String,
    ) -> Result<Batch, StoreError> {
        let mut orders = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(head) = self.order_head(*id)? {
                orders.push((*id, head.revision));
            }
        }
        let mut batches = self.record_batches(system, &[(orders, None)], name)?;
        Ok(batches.remove(0))
    }

    /// Records the next batches of `system` in one transaction: for each
    /// export file, the orders and revisions it holds, its size and hash,
    /// and its name `name(seq)` for the next sequence numbers (which are used
    /// up). Call it after rendering and before writing the files.
    pub fn record_batches(
        &self,
        system: &str,
        files: &[BatchFile],
        name: impl Fn(u64) -> String,
    ) -> Result<Vec<Batch>, StoreError> {
        let seq_key = keys::sequence(system);
        self.write(|tx| {
            let mut seq = tx.get(&seq_key)?.map_or(0, |v| keys::int_of(&v) as u64);
            let mut batches = Vec::with_capacity(files.len());
            for (orders, content) in files {
                seq += 1;
                let batch = Batch {
                    system: system.to_string(),
                    seq,
                    file: name(seq),
                    orders: orders.clone(),
                    content: content.clone(),
                };
                tx.insert(keys::batch_entry(system, seq), super::encode(&batch));
                batches.push(batch);
            }
            tx.insert(seq_key.clone(), &keys::int(seq as i64));
            Ok(batches)
        })
        .map_err(store_error)
    }

    /// Moves a recorded batch to the next sequence number and the name
    /// `name(seq)` (its own name was taken by something else), in one
    /// transaction.
    pub fn move_batch(
        &self,
        batch: &Batch,
        name: impl Fn(u64) -> String,
    ) -> Result<Batch, StoreError> {
        let system = &batch.system;
        let seq_key = keys::sequence(system);
        self.write(|tx| {
            let seq = tx.get(&seq_key)?.map_or(0, |v| keys::int_of(&v) as u64) + 1;
            let moved = Batch {
                seq,
                file: name(seq),
                ..batch.clone()
            };
            tx.remove(keys::batch(system));
            tx.remove(keys::batch_entry(system, batch.seq));
            tx.insert(keys::batch_entry(system, seq), super::encode(&moved));
            tx.insert(seq_key.clone(), &keys::int(seq as i64));
            Ok(moved)
        })
        .map_err(store_error)
    }

    /// Replaces a recorded batch with `batch` (same sequence number and
    /// name: re-rendered after a crash because its file never made it to the
    /// outbox).
    pub fn rerecord_batch(&self, batch: &Batch) -> Result<(), StoreError> {
        let system = &batch.system;
        self.write(|tx| {
            tx.remove(keys::batch(system));
            tx.insert(keys::batch_entry(system, batch.seq), super::encode(batch));
            Ok(())
        })
        .map_err(store_error)
    }

    /// Marks the batch's orders written (and, with `auto_ack`, acked) once its
    /// file is safely in the outbox, and clears the batch.
    pub fn finish_batch(
        &self,
        batch: &Batch,
        system: &SystemConfig,
        ctx: &Context,
    ) -> Result<(), StoreError> {
        self.finish_batches(std::slice::from_ref(batch), system, ctx)
    }

    /// Marks the orders of every batch written (and, with `auto_ack`, acked)
    /// once their files are safely in the outbox, and clears the batches, in
    /// one transaction. An order updated since its batch was recorded stays
    /// pending, for its new revision.
    pub fn finish_batches(
        &self,
        batches: &[Batch],
        system: &SystemConfig,
        ctx: &Context,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            super::apply::reads::exports(
                tx,
                &system.id,
                batches
                    .iter()
                    .flat_map(|b| b.orders.iter().map(|(id, _)| *id)),
            )?;
            for batch in batches {
                let mut w = Writer::on(tx, ctx, &batch.file);
                for (id, revision) in &batch.orders {
                    let state = w.export_state(&system.id, *id)?;
                    let Some(state) = state.filter(|s| s.state == ExportState::Pending) else {
                        continue;
                    };
                    // The pending record names its revision; one written by
                    // an earlier version does not, and the order says.
                    let current = match state.revision {
                        Some(r) => Some(r),
                        None => w.order_head(*id)?.map(|h| h.revision),
                    };
                    if current != Some(*revision) {
                        continue;
                    }
                    w.set_state(
                        &system.id,
                        *id,
                        Some(&state),
                        &ExportRecord {
                            state: ExportState::Written,
                            sort: ctx.now,
                            file: Some(batch.file.clone()),
                            written_at: Some(ctx.now),
                            acked_at: state.acked_at,
                            revision: Some(*revision),
                        },
                    )?;
                    w.event(
                        *id,
                        "written",
                        format!("revision {} for {} to {}", revision, system.id, batch.file),
                    )?;
                    if system.auto_ack {
                        w.ack(
                            "auto_ack",
                            *id,
                            &system.id,
                            system.auto_ack_regulate,
                            Some("auto_ack"),
                            Strictness::NoteOnly,
                        )?;
                    }
                }
                tx.remove(keys::batch(&batch.system));
                tx.remove(keys::batch_entry(&batch.system, batch.seq));
            }
            Ok(())
        })
        .map_err(store_error)
    }

    /// Makes every order acked by `system` at or after `since` (UNIX ms)
    /// pending again for it (SPEC §8, "not_exported_since"). Returns how many.
    pub fn reexport(&self, system: &str, since: i64, now: i64) -> Result<usize, StoreError> {
        let ids = self.ids_since(system, ExportState::Acked, since)?;
        self.requeue(
            now,
            system,
            &ids,
            "reexport",
            &format!("acked at or after {since}"),
        )
    }

    /// Makes orders written to `system` before `cutoff` and still not acked
    /// pending again (`resend_after`). Returns how many.
    pub fn resend_written_before(
        &self,
        system: &str,
        cutoff: i64,
        now: i64,
    ) -> Result<usize, StoreError> {
        let mut ids = Vec::new();
        for entry in self.db.index(system, ExportState::Written, Seek::Start) {
            let (sort, id) = entry?;
            if sort >= cutoff {
                break;
            }
            ids.push(id);
        }
        self.requeue(now, system, &ids, "resend", "not acked in time")
    }

    /// Makes the stored orders eligible for `system` under its current
    /// settings pending for it, once per change of those settings (a new
    /// system, wider filters), so every eligible order reaches it (SPEC §9).
    /// Orders pending for it that are no longer eligible are dropped. Only
    /// orders without an export record are queued: none is sent twice.
    /// `fingerprint` identifies the settings. Returns (queued, dropped).
    pub fn reconcile_system(
        &self,
        system: &SystemConfig,
        fingerprint: &str,
        now: i64,
    ) -> Result<(usize, usize), StoreError> {
        let key = keys::system(&system.id);
        if self
            .db
            .get(&key)?
            .is_some_and(|v| *v == *fingerprint.as_bytes())
        {
            return Ok((0, 0));
        }
        let (mut queue, mut drop) = (Vec::new(), Vec::new());
        for rec in self.orders() {
            let rec = rec?;
            let state = self.export_state(&system.id, rec.id)?;
            let fits = system.eligible(&rec.doc);
            match state {
                None if fits => queue.push(rec.id),
                Some(s) if s.state == ExportState::Pending && !fits => drop.push(rec.id),
                _ => {}
            }
        }
        let ctx = Context {
            now,
            systems: &[],
            allow_negative: true,
            only_system: None,
        };
        // In chunks: a crash part-way leaves the fingerprint unset, and the
        // next start finishes the job (queuing is idempotent).
        for chunk in queue.chunks(1000) {
            self.write(|tx| {
                let w = Writer::on(tx, &ctx, "");
                for id in chunk {
                    if let Some(head) = w.order_head(*id)?
                        && w.export_state(&system.id, *id)?.is_none()
                    {
                        w.make_pending(&system.id, *id, head.created, head.revision)?;
                        w.event(
                            *id,
                            "queued",
                            format!("for {}: eligible under its current settings", system.id),
                        )?;
                    }
                }
                Ok(())
            })
            .map_err(store_error)?;
        }
        for chunk in drop.chunks(1000) {
            self.write(|tx| {
                let w = Writer::on(tx, &ctx, "");
                for id in chunk {
                    w.drop_pending(&system.id, *id)?;
                }
                Ok(())
            })
            .map_err(store_error)?;
        }
        {
            let _writer = self.db.lock();
            self.db
                .commit([(key, Some(Value::from(fingerprint.as_bytes())))].into())?;
        }
        self.flush()?;
        Ok((queue.len(), drop.len()))
    }

    fn ids_since(
        &self,
        system: &str,
        state: ExportState,
        since: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.db
            .index(system, state, Seek::Sort(since))
            .map(|e| Ok(e?.1))
            .collect()
    }

    fn requeue(
        &self,
        now: i64,
        system: &str,
        ids: &[Uuid],
        event: &str,
        detail: &str,
    ) -> Result<usize, StoreError> {
        let ctx = Context {
            now,
            systems: &[],
            allow_negative: true,
            only_system: None,
        };
        self.write(|tx| {
            let w = Writer::on(tx, &ctx, "");
            let mut n = 0;
            for id in ids {
                if let Some(head) = w.order_head(*id)? {
                    w.make_pending(system, *id, head.created, head.revision)?;
                    w.event(*id, event, format!("for {system}: {detail}"))?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_recorded_before_sizes_and_hashes_still_decodes() {
        let old = br#"{"version":"1","system":"erp","seq":3,"file":"f.json","orders":[]}"#;
        let b: Batch = super::super::decode(&keys::batch("erp"), old).unwrap();
        assert_eq!(b.seq, 3);
        assert_eq!(b.content, None);
    }

    #[test]
    fn content_is_size_and_hex_sha256() {
        let c = Content::of(b"abc");
        assert_eq!(c.size, 3);
        assert_eq!(
            c.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
