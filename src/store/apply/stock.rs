//! Stock and reservations: the per-SKU totals, `in_stock` and `reserved`.
//!
//! A stock row sets a SKU's `in_stock` (an absolute stock file) or moves
//! it (an adjustment). An order reserves its quantities when stored and
//! releases them when replaced or regulated: reservations are incremental,
//! an order's contribution removed and re-added on every change, never
//! recomputed. Every total stays within ±[`MAX_TOTAL`] ([`add_total`]): a
//! change that would leave it is a problem of the file (for a release, a
//! corrupt store), never wrapped or clamped; an order's reservation is
//! written for all its SKUs or for none, and a reserved total of zero is
//! removed. A stock row that takes `in_stock` below zero is a problem
//! unless `allow_negative`.

use super::super::StoreError;
use super::super::keys::{self, Key};
use super::tx::{TxResult, Writer, abort};
use crate::csvin::StockRow;
use crate::order::Facts;

/// The bound on every per-SKU total the store keeps (`in_stock`,
/// `reserved`): ±10^18, so `available = in_stock - reserved` always fits in
/// an `i64`. A change that would leave it is refused, never wrapped.
pub const MAX_TOTAL: i64 = 1_000_000_000_000_000_000;

/// `total + delta`, or `None` when that leaves ±[`MAX_TOTAL`] (or `i64`).
pub(super) fn add_total(total: i64, delta: i64) -> Option<i64> {
    total
        .checked_add(delta)
        .filter(|t| (-MAX_TOTAL..=MAX_TOTAL).contains(t))
}

impl Writer<'_> {
    /// Adds an order's reservation. When a SKU's total would leave
    /// ±[`MAX_TOTAL`], nothing is written and a problem at `at` says so;
    /// returns whether it was added.
    pub(super) fn reserve(&mut self, at: &str, facts: &Facts) -> TxResult<bool> {
        if !facts.reserves() {
            return Ok(true);
        }
        let per_sku = match facts.per_sku() {
            Ok(p) => p,
            Err(sku) => {
                self.problem(
                    at,
                    format!("the quantities of {sku:?} in this order add up beyond {MAX_TOTAL}"),
                );
                return Ok(false);
            }
        };
        let mut writes = Vec::with_capacity(per_sku.len());
        let mut fits = true;
        for (sku, qty) in per_sku {
            let key = keys::reserved(&sku);
            let before = self.get_int(&key)?;
            match add_total(before, qty) {
                Some(now) => writes.push((key, now)),
                None => {
                    fits = false;
                    self.problem(
                        at,
                        format!(
                            "reserving {qty} more of {sku:?} would take its reserved total from {before} beyond {MAX_TOTAL}"
                        ),
                    );
                }
            }
        }
        if fits {
            self.put_totals(writes)?;
        }
        Ok(fits)
    }

    /// Removes an order's reservation (added before, so it cannot leave the
    /// range unless the store is corrupt).
    pub(super) fn release(&self, facts: &Facts) -> TxResult<()> {
        if !facts.reserves() {
            return Ok(());
        }
        let corrupt = |key: &Key, message: String| {
            abort(StoreError::Corrupt {
                key: key.to_string(),
                message,
            })
        };
        let per_sku = match facts.per_sku() {
            Ok(p) => p,
            Err(sku) => {
                return corrupt(
                    &keys::reserved(&sku),
                    "a stored order's quantities add up beyond i64".into(),
                );
            }
        };
        let mut writes = Vec::with_capacity(per_sku.len());
        for (sku, qty) in per_sku {
            let key = keys::reserved(&sku);
            let before = self.get_int(&key)?;
            match qty.checked_neg().and_then(|d| add_total(before, d)) {
                Some(now) => writes.push((key, now)),
                None => {
                    return corrupt(
                        &key,
                        format!(
                            "releasing {qty} from a reserved total of {before} leaves the range"
                        ),
                    );
                }
            }
        }
        self.put_totals(writes)
    }

    /// Writes per-SKU totals; a zero total is removed.
    fn put_totals(&self, writes: Vec<(Key, i64)>) -> TxResult<()> {
        for (key, total) in writes {
            if total == 0 {
                self.tx.remove(key);
            } else {
                self.put_int(key, total)?;
            }
        }
        Ok(())
    }

    pub(super) fn stock_row(&mut self, row: &StockRow, absolute: bool) -> TxResult<()> {
        let at = format!("line {}", row.line);
        let key = keys::stock(&row.sku);
        let before = self.get_int(&key)?;
        let after = if absolute {
            add_total(0, row.value)
        } else {
            add_total(before, row.value)
        };
        match after {
            None => self.problem(
                &at,
                format!(
                    "{:?}: in_stock {before} {:+} would leave the range ±{MAX_TOTAL}",
                    row.sku, row.value
                ),
            ),
            Some(after) if after < 0 && !self.ctx.allow_negative => self.problem(
                &at,
                format!(
                    "{:?}: in_stock would be {after}, below 0 (allow_negative = false)",
                    row.sku
                ),
            ),
            Some(after) => {
                self.put_int(key, after)?;
                self.summary.stock_rows += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Totals near their bound cannot be reached through files (quantities
    //! and stock values are bounded at input), so these set them directly.

    use super::*;
    use crate::csvin::AckRow;
    use crate::input::Input;
    use crate::order;
    use crate::store::apply::Applied;
    use crate::store::apply::test_support::{Fixture, order_input};

    #[test]
    fn a_reservation_beyond_the_total_bound_is_rejected() {
        let f = Fixture::new();
        f.set(keys::reserved("A"), MAX_TOTAL - 5);
        let p = f.rejected("o.json", &order_input(&[("B", 1), ("A", 3), ("A", 3)]));
        assert_eq!(
            p,
            [format!(
                "$.line_items: reserving 6 more of \"A\" would take its reserved total from {} beyond {MAX_TOTAL}",
                MAX_TOTAL - 5
            )]
        );
        assert!(matches!(
            f.apply("o.json", &order_input(&[("A", 5)])),
            Ok(Applied::Done(_))
        ));
        assert_eq!(f.store.inventory().unwrap(), [("A".into(), 0, MAX_TOTAL)]);
    }

    #[test]
    fn regulation_and_adjustments_never_leave_the_total_bound() {
        let f = Fixture::new();
        assert!(
            f.apply("o.json", &order_input(&[("A", 4), ("A", 4)]))
                .is_ok()
        );
        f.set(keys::stock("A"), -MAX_TOTAL + 7);
        let ack = Input::Acks(vec![AckRow {
            line: 2,
            order_id: "o-1".into(),
            system_id: "erp".into(),
            regulate: true,
            note: None,
        }]);
        let p = f.rejected("ack.csv", &ack);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(&format!(
                "line 2: regulating order {} would take \"A\" from {} in stock below -{MAX_TOTAL}",
                order::id_for_external_id("o-1"),
                -MAX_TOTAL + 7
            )),
            "{p:?}"
        );

        f.set(keys::stock("A"), i64::MAX - 1);
        let adj = |value| Input::Stock {
            absolute: false,
            rows: vec![StockRow {
                line: 3,
                sku: "A".into(),
                value,
            }],
        };
        let p = f.rejected("adj.csv", &adj(5));
        assert_eq!(
            p,
            [format!(
                "line 3: \"A\": in_stock {} +5 would leave the range ±{MAX_TOTAL}",
                i64::MAX - 1
            )]
        );
        f.set(keys::stock("A"), MAX_TOTAL);
        assert_eq!(f.rejected("adj.csv", &adj(1)).len(), 1);
        assert!(f.apply("adj.csv", &adj(-1)).is_ok());
        assert_eq!(
            f.store.inventory().unwrap(),
            [("A".into(), MAX_TOTAL - 1, 8)]
        );
    }
}
