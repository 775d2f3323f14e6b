//! Orders and revisions: what an order in a file does to the store.
//!
//! An order is new (revision 1: stored, its external id indexed, its
//! quantities reserved, queued for each system it is eligible for), a
//! duplicate (the same order as sent: nothing), or an update (a newer
//! `updated`: the next revision, its reservation moved, queued again for
//! every system it was written to or acked by and every system it is
//! eligible for now; a pending one no longer eligible drops it). An
//! update of an archived order, or one not newer than the stored
//! revision, is a problem. First, its references are checked: an id and
//! an external id never name two different orders
//! (`references_are_unique`), which is what lets an acknowledgement name
//! an order by either (`find_order_id`).
//!
//! Also here: an order's export state for each system (pending, written,
//! acked). It changes only through [`Writer::set_state`], which moves the
//! state's index entry and kept count in the same transaction, so
//! listings and `status` never scan. Orders are never removed, nor their
//! export records left behind: a new order has none to read.

use uuid::Uuid;

use super::super::backend::Value;
use super::super::keys;
use super::super::{ExportRecord, ExportState, OrderHead, OrderRecord};
use super::tx::{TxResult, Writer};
use crate::order::{Facts, Order};

impl Writer<'_> {
    pub(super) fn order(&mut self, path: &str, o: &Order) -> TxResult<()> {
        if !self.references_are_unique(path, o)? {
            return Ok(());
        }
        let Some(old) = self.order_head(o.id)? else {
            return self.new_order(path, o);
        };
        if old.sent_hash == o.sent_hash {
            self.summary.duplicate_orders += 1;
            return Ok(());
        }
        if old.facts.archived {
            self.problem(
                path,
                format!("order {} is archived: it cannot be updated", o.id),
            );
            return Ok(());
        }
        let updated = o.doc["updated"].as_i64().unwrap_or(0);
        if updated <= old.updated {
            self.problem(
                format!("{path}.updated"),
                format!(
                    "stale update of order {}: updated {updated} is not newer than the stored revision {}'s {}",
                    o.id,
                    old.revision,
                    old.updated
                ),
            );
            return Ok(());
        }
        self.update_order(path, old, o)
    }

    /// An order reference (an ack's `order_id`, `orders show ID`) names an
    /// id first, else an external id, so the two must never name different
    /// orders: an external id is unique, and when it is a UUID's text (in
    /// any form) it must be neither another order's id nor another order's
    /// external id spelt differently; and an id must not be what another
    /// order's external id spells. Problems name the field; returns whether
    /// there were none.
    fn references_are_unique(&mut self, path: &str, o: &Order) -> TxResult<bool> {
        if let Some(owner) = self.tx.get(&keys::external(&o.external_id))? {
            let owner = keys::uuid_of(&owner);
            if owner != o.id {
                self.problem(
                    format!("{path}.external_id"),
                    format!(
                        "{:?} already belongs to order {owner}, but this order has id {}",
                        o.external_id, o.id
                    ),
                );
                return Ok(false);
            }
        }
        let mut unique = true;
        if let Ok(spelt) = Uuid::parse_str(&o.external_id)
            && spelt != o.id
        {
            if self.tx.get(&keys::order(spelt))?.is_some() {
                unique = false;
                self.problem(
                    format!("{path}.external_id"),
                    format!(
                        "{:?} is the id of another order ({spelt}); an external_id must not name another order's id",
                        o.external_id
                    ),
                );
            } else if let Some(owner) = self.tx.get(&keys::external_uuid(spelt))?
                && keys::uuid_of(&owner) != o.id
            {
                unique = false;
                let owner = keys::uuid_of(&owner);
                self.problem(
                    format!("{path}.external_id"),
                    format!(
                        "{:?} names the same UUID as the external_id of order {owner}; external ids must be unique",
                        o.external_id
                    ),
                );
            }
        }
        if let Some(owner) = self.tx.get(&keys::external_uuid(o.id))?
            && keys::uuid_of(&owner) != o.id
        {
            unique = false;
            let owner = keys::uuid_of(&owner);
            self.problem(
                format!("{path}.id"),
                format!(
                    "{} is the external_id of another order ({owner}); an id must not name another order's external_id",
                    o.id
                ),
            );
        }
        Ok(unique)
    }

    /// Indexes an order's external id (and the UUID it spells, if any).
    fn index_external(&self, external_id: &str, id: Uuid) -> TxResult<()> {
        self.tx
            .insert(keys::external(external_id), &id.as_bytes()[..]);
        if let Ok(spelt) = Uuid::parse_str(external_id) {
            self.tx
                .insert(keys::external_uuid(spelt), &id.as_bytes()[..]);
        }
        Ok(())
    }

    fn unindex_external(&self, external_id: &str) -> TxResult<()> {
        self.tx.remove(keys::external(external_id));
        if let Ok(spelt) = Uuid::parse_str(external_id) {
            self.tx.remove(keys::external_uuid(spelt));
        }
        Ok(())
    }

    fn new_order(&mut self, path: &str, o: &Order) -> TxResult<()> {
        if !self.reserve(&format!("{path}.line_items"), &Facts::of(&o.doc))? {
            return Ok(());
        }
        let rec = OrderRecord {
            id: o.id,
            external_id: o.external_id.clone(),
            revision: 1,
            sent_hash: o.sent_hash,
            doc: o.doc.clone(),
            regulated: false,
        };
        self.put_order(&rec)?;
        self.index_external(&rec.external_id, rec.id)?;
        self.bump(keys::order_count(), 1)?;
        for system in self.ctx.systems {
            if system.eligible(&rec.doc) {
                // A new order has no export record to read (orders are
                // never removed, nor their export records left behind).
                self.queue(&system.id, rec.id, rec.created(), rec.revision, None)?;
            }
        }
        self.event(
            rec.id,
            "received",
            format!("revision 1 from {}", self.source),
        )?;
        self.summary.new_orders += 1;
        Ok(())
    }

    fn update_order(&mut self, path: &str, old: OrderHead, o: &Order) -> TxResult<()> {
        self.release(&old.facts)?;
        if !self.reserve(&format!("{path}.line_items"), &Facts::of(&o.doc))? {
            // The file is rejected: its staged writes are dropped, release and all.
            return Ok(());
        }
        if old.external_id != o.external_id {
            self.unindex_external(&old.external_id)?;
            self.index_external(&o.external_id, o.id)?;
        }
        let rec = OrderRecord {
            id: o.id,
            external_id: o.external_id.clone(),
            revision: old.revision + 1,
            sent_hash: o.sent_hash,
            doc: o.doc.clone(),
            regulated: old.regulated,
        };
        self.put_order(&rec)?;
        for system in self.ctx.systems {
            let state = self.export_state(&system.id, rec.id)?.map(|s| s.state);
            // Every system that had it written or acked gets it again; one
            // that has it pending gets the new revision when eligible still.
            match (state, system.eligible(&rec.doc)) {
                (Some(ExportState::Written | ExportState::Acked), _) | (_, true) => {
                    self.make_pending(&system.id, rec.id, rec.created(), rec.revision)?
                }
                (Some(ExportState::Pending), false) => self.drop_pending(&system.id, rec.id)?,
                (None, false) => {}
            }
        }
        self.event(
            rec.id,
            "updated",
            format!("revision {} from {}", rec.revision, self.source),
        )?;
        self.summary.updated_orders += 1;
        Ok(())
    }

    /// The id of the order named by its id or external id, from the keys
    /// alone: the order's record is read only when its content is needed
    /// (an order is never removed, and its external id key is written and
    /// removed with it). Unlike [`crate::store::find_order_with`], it does not read
    /// the order an external id points to.
    pub(super) fn find_order_id(&self, id_or_external: &str) -> TxResult<Option<Uuid>> {
        if let Ok(id) = Uuid::parse_str(id_or_external)
            && self.tx.get(&keys::order(id))?.is_some()
        {
            return Ok(Some(id));
        }
        Ok(self
            .tx
            .get(&keys::external(id_or_external))?
            .map(|v| keys::uuid_of(&v)))
    }

    // ---- export state ------------------------------------------------------

    pub(in crate::store) fn export_state(
        &self,
        system: &str,
        id: Uuid,
    ) -> TxResult<Option<ExportRecord>> {
        self.get(&keys::export(system, id))
    }

    /// Sets an order's export state for a system from `old` (as just read
    /// by the caller), moving its index entry and its count.
    pub(in crate::store) fn set_state(
        &self,
        system: &str,
        id: Uuid,
        old: Option<&ExportRecord>,
        new: &ExportRecord,
    ) -> TxResult<()> {
        self.clear_index(system, id, old)?;
        self.tx.insert(
            keys::index(new.state, system, new.sort, id),
            Value::default(),
        );
        self.bump(keys::count(new.state, system), 1)?;
        self.put(keys::export(system, id), new)
    }

    /// Removes the index entry and count of the export state `old`.
    fn clear_index(&self, system: &str, id: Uuid, old: Option<&ExportRecord>) -> TxResult<()> {
        if let Some(old) = old {
            self.tx.remove(keys::index(old.state, system, old.sort, id));
            self.bump(keys::count(old.state, system), -1)?;
        }
        Ok(())
    }

    /// Forgets a pending export that never happened (no longer eligible).
    pub(in crate::store) fn drop_pending(&self, system: &str, id: Uuid) -> TxResult<()> {
        let old = self.export_state(system, id)?;
        self.clear_index(system, id, old.as_ref())?;
        self.tx.remove(keys::export(system, id));
        Ok(())
    }

    /// Queues revision `revision` of the order `id`, created at `created`,
    /// for `system` (keeping what it was written to before).
    pub(in crate::store) fn make_pending(
        &self,
        system: &str,
        id: Uuid,
        created: i64,
        revision: u32,
    ) -> TxResult<()> {
        let old = self.export_state(system, id)?;
        self.queue(system, id, created, revision, old.as_ref())
    }

    /// [`Writer::make_pending`] over `old`, the order's export record for
    /// `system` as the caller knows it.
    fn queue(
        &self,
        system: &str,
        id: Uuid,
        created: i64,
        revision: u32,
        old: Option<&ExportRecord>,
    ) -> TxResult<()> {
        let new = ExportRecord {
            state: ExportState::Pending,
            sort: created,
            file: old.and_then(|o| o.file.clone()),
            written_at: old.and_then(|o| o.written_at),
            acked_at: old.and_then(|o| o.acked_at),
            revision: Some(revision),
        };
        self.set_state(system, id, old, &new)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::ExportState;
    use crate::store::apply::Context;
    use crate::store::apply::test_support::{Fixture, order_input_updated};
    use crate::store::{encode, keys};

    /// Marking an export file's orders written compares the revision the
    /// file holds with the one pending: from the export record, or from the
    /// order when an earlier version wrote the record without it.
    #[test]
    fn an_export_file_marks_written_only_the_revision_it_holds() {
        for earlier_version in [false, true] {
            let f = Fixture::new();
            let system = &f.config.systems[0];
            let ctx = Context {
                now: 7,
                systems: &f.config.systems,
                allow_negative: true,
                only_system: None,
            };
            let pending = |updated: Option<i64>, name: &str| {
                f.apply(name, &order_input_updated(&[("A", 1)], updated))
                    .unwrap();
                let id = f.store.orders().next().unwrap().unwrap().id;
                if earlier_version {
                    let mut rec = f.store.export_state("erp", id).unwrap().unwrap();
                    rec.revision = None;
                    f.put(keys::export("erp", id), encode(&rec));
                }
                id
            };
            let state = |id| f.store.export_state("erp", id).unwrap().unwrap().state;
            let batch = |id, revision| crate::store::Batch {
                system: "erp".into(),
                seq: u64::from(revision),
                file: format!("f{revision}"),
                orders: vec![(id, revision)],
                content: None,
            };
            let id = pending(None, "a.json");
            // The order is updated while its first file is being written.
            assert_eq!(pending(Some(2), "b.json"), id);
            f.store
                .finish_batches(&[batch(id, 1)], system, &ctx)
                .unwrap();
            assert_eq!(state(id), ExportState::Pending, "{earlier_version}");
            f.store
                .finish_batches(&[batch(id, 2)], system, &ctx)
                .unwrap();
            assert_eq!(state(id), ExportState::Written, "{earlier_version}");
        }
    }
}
