//! `GET /v10/orders/export`: the orders not yet marked exported to a
//! system, oldest `created` first, as `{"orders": [ORDER…]}` with ORDER the
//! json export's order (the stored document with its `revision`).
//!
//! Which orders: every stored order is queued (`pending`) for an HTTP system
//! (see [`crate::config::SystemConfig::eligible`]); for a file system, those its config
//! makes eligible. The candidates are that system's `pending` and `written`
//! orders, plus, with `not_exported_since`, those it acked at or after that
//! time ([`Store::export_candidates`]; a backend may leave out, with an
//! index, orders the request is sure to refuse). The request's include
//! flags and filter groups then decide every candidate, exactly as a
//! system's config would (the same [`crate::filter`] code).
//!
//! The answer is streamed: a blocking task reads the store in pages of
//! [`CHUNK`] orders and sends the rendered bytes through a small bounded
//! channel, so memory follows a chunk, not the result, and a slow client
//! only holds that task back, never the file side. GET never writes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::query::{self, ExportQuery};
use super::{authenticate, forbidden, json_body, problems, server_error, unauthorized};
use crate::engine::Engine;
use crate::filter::FilterGroup;
use crate::order::Facts;
use crate::problem::Problem;
use crate::store::{Store, StoreError};

/// Orders rendered per message to the client.
const CHUNK: usize = 100;

pub(super) async fn handle(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let caller = match authenticate(&engine, &headers) {
        Ok(c) => c,
        Err(what) => return unauthorized(what),
    };
    let (query, system_id, mut list) = query::parse(raw.as_deref().unwrap_or(""));
    if let Some(system) = &system_id {
        if !caller.may_use(system) {
            return forbidden(&caller, "system_id", system);
        }
        if engine.config.system(system).is_none() {
            list.insert(
                0,
                Problem::new("system_id", format!("unknown system {system:?}")),
            );
        }
    }
    let Some(query) = query.filter(|_| list.is_empty()) else {
        let status = if system_id.is_none() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        return problems(status, "invalid request", list);
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<Bytes, StoreError>>();
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Out {
            first: Some(first_tx),
            rest: tx,
        };
        if let Err(e) = stream(&engine.store, &query, &mut out) {
            match out.first.take() {
                // Nothing sent yet: the answer is this error.
                Some(first) => {
                    let _ = first.send(Err(e));
                }
                None => {
                    tracing::error!(error = %e, system = %query.system_id, "HTTP export: store failure; the answer is cut short");
                    let _ = out
                        .rest
                        .blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            }
        }
    });
    // The status is decided only once the first chunk (or the whole
    // answer, or the store's error) is in hand: a store failure or a
    // statement timeout before it is a JSON problem, not a 200 with an
    // empty body.
    let first = match first_rx.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if e.is_unreachable() => {
            tracing::error!(error = %e, "HTTP export: store failure");
            return super::unavailable(&e.to_string());
        }
        Ok(Err(e)) => return server_error(&e.to_string()),
        Err(_) => return server_error("the export's reader stopped before its first page"),
    };
    use tokio_stream::StreamExt;
    let rest = tokio_stream::wrappers::ReceiverStream::new(rx);
    let body = axum::body::Body::from_stream(
        tokio_stream::once(Ok::<_, std::io::Error>(first)).chain(rest),
    );
    json_body(StatusCode::OK, body)
}

/// Where [`stream`] sends the answer's bytes: the first chunk to the
/// handler, which decides the status on it, the rest to the body.
struct Out {
    first: Option<tokio::sync::oneshot::Sender<Result<Bytes, StoreError>>>,
    rest: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Out {
    /// Sends `bytes`; `false` when the client is gone.
    fn send(&mut self, bytes: Vec<u8>) -> bool {
        match self.first.take() {
            Some(first) => first.send(Ok(Bytes::from(bytes))).is_ok(),
            None => self.rest.blocking_send(Ok(Bytes::from(bytes))).is_ok(),
        }
    }
}

/// Sends the answer in chunks; stops early when the client is gone.
///
/// Per candidate, only what the decision needs is read: when the backend
/// gave its fields with it (PostgreSQL), nothing more; otherwise (sled) the
/// head (its include facts) first, the filter keys ([`FilterFields`]) only
/// when there are filters. The document itself is read only for the orders
/// sent. Orders of earlier pages are skipped at that cost: every one is
/// decided here, however the backend narrowed the candidates.
fn stream(store: &Store, q: &ExportQuery, tx: &mut Out) -> Result<(), StoreError> {
    let mut out: Vec<u8> = b"{\"orders\":[".to_vec();
    let mut skip = q.page.saturating_mul(q.limit);
    let mut sent = 0usize;
    let mut in_chunk = 0usize;
    let candidates = store.export_candidates(
        &q.system_id,
        q.not_exported_since,
        q.include_not_approved,
        &q.filter_groups,
    );
    for c in candidates {
        if sent >= q.limit {
            break;
        }
        let c = c?;
        let id = c.id;
        let mut doc = None;
        match &c.fields {
            // The backend read what the decision needs with the candidate.
            Some(fields) => {
                if !includes(q, &Facts::of(fields)) || !matches(q, fields) {
                    continue;
                }
            }
            None => {
                let Some(head) = store.order_head(id)? else {
                    continue;
                };
                if !includes(q, &head.facts) {
                    continue;
                }
                if !q.filter_groups.is_empty() {
                    let Some(d) = store.order_for_export(id)? else {
                        continue;
                    };
                    if !matches(q, &filter_keys(&d.json)) {
                        continue;
                    }
                    doc = Some(d);
                }
            }
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        let doc = match doc {
            Some(d) => d,
            None => match store.order_for_export(id)? {
                Some(d) => d,
                None => continue,
            },
        };
        if sent > 0 {
            out.push(b',');
        }
        if q.lines {
            out.extend_from_slice(&doc.json);
        } else {
            match doc.value() {
                Value::Object(mut m) => {
                    m.remove("line_items");
                    out.extend(serde_json::to_vec(&m).unwrap_or_default());
                }
                _ => out.extend_from_slice(&doc.json),
            }
        }
        sent += 1;
        in_chunk += 1;
        if in_chunk >= CHUNK {
            in_chunk = 0;
            if !tx.send(std::mem::take(&mut out)) {
                return Ok(()); // the client went away
            }
        }
    }
    out.extend_from_slice(b"]}\n");
    tx.send(out);
    Ok(())
}

/// The fields filters read (SPEC §7 keys), parsed from a stored document
/// without building the rest of it (lines, addresses are skipped).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct FilterFields {
    created: Value,
    updated: Value,
    channel: Value,
    #[serde(rename = "type")]
    kind: Value,
    currency: Value,
    status: Value,
    internal_status: Value,
    reference: Value,
    external_id: Value,
}

/// [`FilterFields`] of a stored document, as the JSON object
/// [`FilterGroup::matches`] reads.
fn filter_keys(json: &[u8]) -> Value {
    let f: FilterFields = serde_json::from_slice(json).unwrap_or_default();
    serde_json::json!({
        "created": f.created, "updated": f.updated, "channel": f.channel,
        "type": f.kind, "currency": f.currency, "status": f.status,
        "internal_status": f.internal_status, "reference": f.reference,
        "external_id": f.external_id,
    })
}

/// Whether the order's filter keys pass every filter group of the request.
fn matches(q: &ExportQuery, keys: &Value) -> bool {
    q.filter_groups
        .iter()
        .all(|g: &FilterGroup| g.matches(keys))
}

/// The request's include flags (default: approved, not cancelled, not
/// archived).
fn includes(q: &ExportQuery, f: &Facts) -> bool {
    (q.include_not_approved || f.approved)
        && (q.include_cancelled || !f.cancelled)
        && (q.include_archived || !f.archived)
}
