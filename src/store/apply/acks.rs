//! Acknowledgements and regulation: an ack row (an ack CSV file's, or the
//! HTTP API's) marks an order acknowledged by a system and, when it asks,
//! regulates inventory.
//!
//! A row is checked by its own rules first (one place for both paths),
//! then its system and its order must exist. Acknowledging is idempotent:
//! an order acked again keeps its first ack's time and nothing is written,
//! unless the row brings a note not seen before (kept once per order,
//! system and text) or a regulation still to do. An order regulates once:
//! `in_stock` goes down by the shipped quantities, the reservation is
//! released, the order is archived and stops being pending for systems
//! that do not take archived orders. A refused regulation (a cancelled
//! order, a total out of range, stock below zero without
//! `allow_negative`) fails the file for an ack row and is only noted in
//! the timeline for an auto-ack ([`Strictness`]).

use uuid::Uuid;

use super::super::backend::Value;
use super::super::keys;
use super::super::{ExportRecord, ExportState};
use super::stock::{MAX_TOTAL, add_total};
use super::tx::{TxResult, Writer};
use crate::csvin::AckRow;

/// Whether a refused regulation fails the file (an ack row) or is only
/// noted in the timeline (auto-ack, where no one could fix the file).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum Strictness {
    FailFile,
    NoteOnly,
}

impl Writer<'_> {
    pub(in crate::store) fn ack_row(&mut self, row: &AckRow) -> TxResult<()> {
        // The row's own rules (a CSV row was checked when read; an HTTP
        // entry is checked here): one place for both paths.
        if let Err(p) = row.check() {
            self.problems.push(p);
            return Ok(());
        }
        let at = format!("line {}", row.line);
        if let Some(only) = self.ctx.only_system {
            let foreign = crate::validate::foreign_acks(std::slice::from_ref(row), only);
            if !foreign.is_empty() {
                self.problems.extend(foreign);
                return Ok(());
            }
        }
        let system = self.ctx.systems.iter().find(|s| s.id == row.system_id);
        if system.is_none() {
            let known: Vec<&str> = self.ctx.systems.iter().map(|s| s.id.as_str()).collect();
            self.problem(
                &at,
                format!(
                    "unknown system {:?} (configured: {})",
                    row.system_id,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        let order = self.find_order_id(&row.order_id)?;
        if order.is_none() {
            self.problem(&at, format!("unknown order {:?}", row.order_id));
        }
        let (Some(system), Some(order)) = (system, order) else {
            return Ok(());
        };
        self.ack(
            &at,
            order,
            &system.id,
            row.regulate,
            row.note.as_deref(),
            Strictness::FailFile,
        )?;
        self.summary.acks += 1;
        Ok(())
    }

    /// Marks the order acked by `system` and, when asked and not done
    /// before, regulates inventory. The order's head is read only to
    /// regulate, its document only when it does: an acknowledgement that
    /// changes nothing reads two small keys.
    pub(in crate::store) fn ack(
        &mut self,
        at: &str,
        id: Uuid,
        system: &str,
        regulate: bool,
        note: Option<&str>,
        strictness: Strictness,
    ) -> TxResult<()> {
        let old = self.export_state(system, id)?;
        // Acked already (a re-sent acknowledgement): the first ack's time
        // stays and nothing is written, unless the row brings a note or
        // something left to do (regulating).
        let again = old.as_ref().is_some_and(|o| o.state == ExportState::Acked);
        if !again {
            let new = ExportRecord {
                state: ExportState::Acked,
                sort: self.ctx.now,
                file: old.as_ref().and_then(|o| o.file.clone()),
                written_at: old.as_ref().and_then(|o| o.written_at),
                acked_at: Some(self.ctx.now),
                revision: old.as_ref().and_then(|o| o.revision),
            };
            self.set_state(system, id, old.as_ref(), &new)?;
        }
        // A note this system already acked the order with adds nothing:
        // repeated calls do not grow the store (a note is kept once per
        // order, system and text). Auto-ack's fixed note comes once per
        // export, with a state change: nothing to remember.
        let new_note = match note {
            None => None,
            Some(n) if strictness == Strictness::NoteOnly => Some(n),
            Some(n) => {
                let key = keys::note(id, system, n);
                if self.tx.get(&key)?.is_some() {
                    None
                } else {
                    self.tx.insert(key, Value::default());
                    Some(n)
                }
            }
        };
        if !again || new_note.is_some() {
            let again = if again { "again " } else { "" };
            let mut detail = format!("{again}by {system} ({})", self.source);
            if let Some(note) = note {
                detail.push_str(&format!(": {note}"));
            }
            self.event(id, "acked", detail)?;
        }
        if !regulate {
            return Ok(());
        }
        let Some(rec) = self.order_head(id)? else {
            return Ok(());
        };
        if rec.regulated {
            if again {
                return Ok(());
            }
            return self.event(rec.id, "regulate skipped", "already regulated".into());
        }
        let facts = &rec.facts;
        let mut refusal = None;
        if facts.cancelled {
            refusal = Some(format!(
                "order {} is cancelled: it cannot regulate inventory",
                rec.id
            ));
        }
        // Lines of the same SKU are added up first, checked.
        let per_sku = facts.per_sku().unwrap_or_else(|sku| {
            refusal.get_or_insert(format!(
                "regulating order {}: the quantities of {sku:?} add up beyond i64",
                rec.id
            ));
            Vec::new()
        });
        let mut changes = Vec::with_capacity(per_sku.len());
        for (sku, qty) in &per_sku {
            let key = keys::stock(sku);
            let before = self.get_int(&key)?;
            let Some(after) = qty.checked_neg().and_then(|d| add_total(before, d)) else {
                refusal.get_or_insert(format!(
                    "regulating order {} would take {sku:?} from {before} in stock below -{MAX_TOTAL}",
                    rec.id
                ));
                continue;
            };
            if after < 0 && !self.ctx.allow_negative && refusal.is_none() {
                refusal = Some(format!(
                    "regulating order {} would take {sku:?} from {before} to {after} in stock (allow_negative = false)",
                    rec.id
                ));
            }
            changes.push((key, after));
        }
        if let Some(why) = refusal {
            return match strictness {
                Strictness::FailFile => {
                    self.problem(at, why);
                    Ok(())
                }
                Strictness::NoteOnly => self.event(rec.id, "not regulated", why),
            };
        }
        for (key, after) in changes {
            self.put_int(key, after)?;
        }
        self.release(facts)?;
        let Some(mut rec) = self.order_rec(rec.id)? else {
            return Ok(());
        };
        rec.regulated = true;
        if let Some(doc) = rec.doc.as_object_mut() {
            doc.insert("archived".into(), true.into());
        }
        self.put_order(&rec)?;
        let moved: Vec<String> = facts
            .shipped_lines
            .iter()
            .map(|(sku, qty)| format!("{sku} -{qty}"))
            .collect();
        self.event(
            rec.id,
            "regulated",
            format!("in_stock {}", moved.join(", ")),
        )?;
        self.event(rec.id, "archived", format!("by {system}'s acknowledgement"))?;
        // Archived now: systems that do not take archived orders and have not
        // been sent it yet no longer get it.
        for other in self.ctx.systems {
            if let Some(st) = self.export_state(&other.id, rec.id)?
                && st.state == ExportState::Pending
                && !other.eligible(&rec.doc)
            {
                self.drop_pending(&other.id, rec.id)?;
            }
        }
        self.summary.regulated += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order;
    use crate::problem::Problem;
    use crate::store::apply::test_support::{Fixture, order_input};
    use crate::store::apply::{ApplyError, Context};

    /// Issue 15: the same note by the same system, acked again and again,
    /// grew the timeline by a copy each time; a row's own rules (note
    /// length, order_id a reference) hold for rows the store is given
    /// directly, as over HTTP.
    #[test]
    fn a_repeated_note_adds_nothing_and_rows_are_checked_in_the_store() {
        let f = Fixture::new();
        assert!(f.apply("o.json", &order_input(&[("A", 1)])).is_ok());
        let ctx = Context {
            now: 6,
            systems: &f.config.systems,
            allow_negative: true,
            only_system: None,
        };
        let row = |note: &str| AckRow {
            line: 1,
            order_id: "o-1".into(),
            system_id: "erp".into(),
            regulate: false,
            note: Some(note.into()),
        };
        for note in ["picked", "picked", "packed", "picked", "packed"] {
            f.store
                .mark_exported(&[row(note)], &[], "HTTP", &ctx)
                .unwrap();
        }
        let id = order::id_for_external_id("o-1");
        let notes: Vec<String> = f
            .store
            .timeline(id)
            .unwrap()
            .into_iter()
            .filter(|e| e.event == "acked")
            .map(|e| e.detail)
            .collect();
        assert_eq!(
            notes,
            ["by erp (HTTP): picked", "again by erp (HTTP): packed"]
        );
        let before = f.store.dump().unwrap();
        f.store
            .mark_exported(&[row("picked")], &[], "HTTP", &ctx)
            .unwrap();
        assert_eq!(f.store.dump().unwrap(), before, "a repeat wrote something");

        let mut bad = row(&"x".repeat(crate::csvin::MAX_NOTE_CHARS + 1));
        let mut spaced = row("fine");
        spaced.line = 2;
        spaced.order_id = " o-1".into();
        bad.line = 3;
        match f
            .store
            .mark_exported(&[row("ok"), spaced, bad], &[], "HTTP", &ctx)
        {
            Err(ApplyError::Rejected(p)) => {
                let text: Vec<String> = p.iter().map(Problem::to_string).collect();
                assert_eq!(
                    text,
                    [
                        "line 2: order_id: begins or ends with white space (\" o-1\"); not allowed in a reference",
                        "line 3: note: 1001 characters; at most 1000 are kept per note",
                    ]
                );
            }
            other => panic!("not rejected: {other:?}"),
        }
        assert_eq!(f.store.dump().unwrap(), before);
    }
}
