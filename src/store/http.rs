//! What the HTTP API (`crate::http`) needs of the store, beside what the
//! file side uses: marking orders exported from a request (the ack rows'
//! own code path, without an applied-file record), reading the export
//! indexes with their sort keys, and the candidates of
//! `GET /v10/orders/export`, which a backend may narrow with its indexes
//! ([`Narrowing`]) but never decides.

use uuid::Uuid;

use super::apply::{ApplyError, Context, Summary, Writer, rejected};
use super::backend::{Rows, Seek};
pub use super::candidates::{Candidate, Narrowing};
use super::{ExportState, Store, StoreError};
use crate::csvin::AckRow;
use crate::filter::FilterGroup;
use crate::problem::Problem;

impl Store {
    /// Applies acknowledgement rows that came over HTTP, all or nothing, in
    /// one transaction, exactly as the rows of an ack CSV are applied
    /// (SPEC §6). `source` names where they came from in the timeline.
    ///
    /// Unlike a file, nothing records the call itself: acks are idempotent
    /// by nature (an order is regulated at most once), so a repeated call
    /// only marks the orders exported again, and the store does not grow
    /// with every call. A problem's `at` is the row's `line N` as given.
    ///
    /// `known` are problems the caller already found (in entries that did
    /// not become rows): with any, nothing is applied, but the rows are
    /// still checked, so the rejection lists every problem.
    pub fn mark_exported(
        &self,
        rows: &[AckRow],
        known: &[Problem],
        source: &str,
        ctx: &Context,
    ) -> Result<Summary, ApplyError> {
        self.write(|tx| {
            super::apply::reads::ack_rows(tx, rows, ctx)?;
            let mut w = Writer::on(tx, ctx, source);
            w.problems.extend_from_slice(known);
            for row in rows {
                w.ack_row(row)?;
            }
            if !w.problems.is_empty() {
                return rejected(w.problems);
            }
            Ok(w.summary)
        })
    }

    /// `(sort key, order id)` of the orders in `state` for `system`, in
    /// index order, from sort key `from` on (pending: by `created`;
    /// written: by the time written; acked: by the time acked).
    pub fn index_entries(
        &self,
        system: &str,
        state: ExportState,
        from: Option<i64>,
    ) -> impl Iterator<Item = Result<(i64, Uuid), StoreError>> + '_ {
        let from = match from {
            Some(sort) => Seek::Sort(sort),
            None => Seek::Start,
        };
        self.db.index(system, state, from)
    }

    /// The candidates of `GET /v10/orders/export` for `system`, oldest
    /// `created` first (then by id): its `pending` and `written` orders
    /// and, with `acked_since`, those it acked at or after that time. The
    /// backend may leave out orders the request's `include_not_approved`
    /// and filter `groups` are sure to refuse ([`Narrowing`]), never one
    /// they accept: the caller still decides every candidate.
    pub fn export_candidates(
        &self,
        system: &str,
        acked_since: Option<i64>,
        include_not_approved: bool,
        groups: &[FilterGroup],
    ) -> Rows<'_, Candidate> {
        let narrow = Narrowing::of(include_not_approved, groups);
        self.db.export_candidates(system, acked_since, &narrow)
    }
}
