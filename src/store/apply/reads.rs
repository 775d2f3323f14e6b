//! What the rules will read, named before they stage a file (or a chunk of
//! one), so that a backend behind a network ([`Backend::prefetches`])
//! answers in a few round trips what the rules then read one record at a
//! time (see [`Tx::prefetch`]). A key missed here is still read when the
//! rules ask for it: this is speed only, never what is decided.
//!
//! Reads depend on what was read: an acknowledgement names an order by
//! its id or external id, and only the order's record says which stock a
//! regulation moves. So keys come in rounds, each from what the earlier
//! ones fetched.
//!
//! [`Backend::prefetches`]: super::super::backend::Backend::prefetches

use uuid::Uuid;

use super::super::keys::{self, Key};
use super::super::{ExportState, OrderRecord, StoreError};
use super::{Context, Item, Tx};
use crate::csvin::{AckRow, StockRow};
use crate::input::{CsvRow, Input};
use crate::order::{Facts, Order};

/// Reads ahead what applying `input` (a small file, whole) will read.
pub(super) fn input(tx: &Tx, input: &Input, ctx: &Context) -> Result<(), StoreError> {
    inputs(tx, &[input], Vec::new(), ctx)
}

/// Reads ahead what applying each of `inputs` (small files, whole, one
/// group's) will read, with `extra` keys in the first round (their
/// applied-file checks): a group's reads cost the same few round trips
/// however many files it holds.
pub(super) fn inputs(
    tx: &Tx,
    inputs: &[&Input],
    extra: Vec<Key>,
    ctx: &Context,
) -> Result<(), StoreError> {
    if !tx.prefetching() {
        return Ok(());
    }
    // Streams are read a second time for this: small files only (big ones
    // name their reads chunk by chunk, [`items`]).
    let mut streamed_orders: Vec<Order> = Vec::new();
    let mut streamed_rows: Vec<CsvRow> = Vec::new();
    for input in inputs {
        match input {
            Input::OrderStream(s) => {
                let _ = s.each(|(_, o)| {
                    if let Ok(o) = o {
                        streamed_orders.push(o);
                    }
                    Ok::<_, ()>(())
                });
            }
            Input::Rows(r) => {
                let _ = r.each(|row| {
                    if let Ok(row) = row {
                        streamed_rows.push(row);
                    }
                    Ok::<_, ()>(())
                });
            }
            Input::Orders(_) | Input::Acks(_) | Input::Stock { .. } => {}
        }
    }
    let mut orders: Vec<&Order> = Vec::new();
    let mut acks: Vec<&AckRow> = Vec::new();
    let mut stock: Vec<&StockRow> = Vec::new();
    for input in inputs {
        match input {
            Input::Orders(o) => orders.extend(o.iter().map(|(_, o)| o)),
            Input::Acks(rows) => acks.extend(rows),
            Input::Stock { rows, .. } => stock.extend(rows),
            Input::OrderStream(_) | Input::Rows(_) => {}
        }
    }
    orders.extend(streamed_orders.iter());
    for row in &streamed_rows {
        match row {
            CsvRow::Ack(a) => acks.push(a),
            CsvRow::Stock { row, .. } => stock.push(row),
        }
    }
    read(tx, extra, &orders, &acks, &stock, ctx)
}

/// Reads ahead what applying `items` (a chunk of a big file) will read.
pub(super) fn items<'i>(
    tx: &Tx,
    items: impl Iterator<Item = &'i Item>,
    ctx: &Context,
) -> Result<(), StoreError> {
    if !tx.prefetching() {
        return Ok(());
    }
    let (mut orders, mut acks, mut stock) = (Vec::new(), Vec::new(), Vec::new());
    for item in items {
        match item {
            Item::Order((_, Ok(o))) => orders.push(o),
            Item::Row(Ok(CsvRow::Ack(a))) => acks.push(a),
            Item::Row(Ok(CsvRow::Stock { row, .. })) => stock.push(row),
            _ => {}
        }
    }
    read(tx, Vec::new(), &orders, &acks, &stock, ctx)
}

/// Reads ahead what acknowledging `acks` will read (HTTP's mark-exported).
pub(in crate::store) fn ack_rows(
    tx: &Tx,
    acks: &[AckRow],
    ctx: &Context,
) -> Result<(), StoreError> {
    if !tx.prefetching() {
        return Ok(());
    }
    let acks: Vec<&AckRow> = acks.iter().collect();
    read(tx, Vec::new(), &[], &acks, &[], ctx)
}

/// The export states of `ids` for `system` (marking a batch written).
pub(in crate::store) fn exports(
    tx: &Tx,
    system: &str,
    ids: impl Iterator<Item = Uuid>,
) -> Result<(), StoreError> {
    if !tx.prefetching() {
        return Ok(());
    }
    let mut keys: Vec<Key> = ids.map(|id| keys::export(system, id)).collect();
    keys.extend(counts(&[system]));
    tx.prefetch(keys)
}

fn counts<'s>(systems: &'s [&'s str]) -> impl Iterator<Item = Key> + 's {
    systems
        .iter()
        .flat_map(|s| ExportState::ALL.map(|state| keys::count(state, s)))
        .chain([keys::order_count()])
}

fn read(
    tx: &Tx,
    extra: Vec<Key>,
    orders: &[&Order],
    acks: &[&AckRow],
    stock: &[&StockRow],
    ctx: &Context,
) -> Result<(), StoreError> {
    let systems: Vec<&str> = ctx.systems.iter().map(|s| s.id.as_str()).collect();
    // Round 1: what the input names by itself.
    let mut first: Vec<Key> = extra;
    first.extend(counts(&systems));
    for o in orders {
        first.push(keys::order(o.id));
        first.push(keys::external(&o.external_id));
        first.push(keys::external_uuid(o.id));
        if let Ok(spelt) = Uuid::parse_str(&o.external_id) {
            first.push(keys::order(spelt));
            first.push(keys::external_uuid(spelt));
        }
        if let Ok(per_sku) = Facts::of(&o.doc).per_sku() {
            first.extend(per_sku.into_iter().map(|(sku, _)| keys::reserved(&sku)));
        }
    }
    for a in acks {
        if let Ok(id) = Uuid::parse_str(&a.order_id) {
            first.push(keys::order(id));
        }
        first.push(keys::external(&a.order_id));
        first.extend(counts(&[a.system_id.as_str()]));
    }
    for s in stock {
        first.push(keys::stock(&s.sku));
    }
    tx.prefetch(first)?;

    // Round 2: what the stored orders found say.
    let mut second: Vec<Key> = Vec::new();
    let mut regulated: Vec<Uuid> = Vec::new();
    for o in orders {
        if let Some(head) = head(tx, o.id)? {
            second.extend(systems.iter().map(|s| keys::export(s, o.id)));
            if let Ok(per_sku) = head.facts.per_sku() {
                second.extend(per_sku.into_iter().map(|(sku, _)| keys::reserved(&sku)));
            }
        }
    }
    for a in acks {
        let Some(id) = order_id(tx, &a.order_id)? else {
            continue;
        };
        second.push(keys::export(&a.system_id, id));
        if let Some(note) = &a.note {
            second.push(keys::note(id, &a.system_id, note));
        }
        if a.regulate {
            // Its head says what the regulation moves (round 3).
            second.push(keys::order(id));
            regulated.push(id);
        }
    }
    tx.prefetch(second)?;

    // Round 3: the stock a regulation moves, and other systems' states.
    let mut third: Vec<Key> = Vec::new();
    for id in regulated {
        if let Some(head) = head(tx, id)?
            && let Ok(per_sku) = head.facts.per_sku()
        {
            for (sku, _) in per_sku {
                third.push(keys::stock(&sku));
                third.push(keys::reserved(&sku));
            }
            third.extend(systems.iter().map(|s| keys::export(s, id)));
        }
    }
    tx.prefetch(third)
}

/// The head of the order `id`, from what was fetched (or staged).
fn head(tx: &Tx, id: Uuid) -> Result<Option<super::super::OrderHead>, StoreError> {
    match tx.get(&keys::order(id))? {
        None => Ok(None),
        Some(bytes) => Ok(OrderRecord::decode_head(&bytes).ok()),
    }
}

/// The order an acknowledgement names (as the rules resolve it).
fn order_id(tx: &Tx, id_or_external: &str) -> Result<Option<Uuid>, StoreError> {
    if let Ok(id) = Uuid::parse_str(id_or_external)
        && tx.get(&keys::order(id))?.is_some()
    {
        return Ok(Some(id));
    }
    Ok(tx
        .get(&keys::external(id_or_external))?
        .map(|v| keys::uuid_of(&v)))
}
