//! `POST /v10/orders/mark-as-exported`: `{"orders": [{"order_id",
//! "system_id", "regulate_inventory", "note"}]}`, each entry exactly an ack
//! CSV row (SPEC §6), applied by the same store code
//! ([`crate::store::Store::mark_exported`]), the whole call in one
//! transaction: all or nothing. Repeating a call is harmless (an order is
//! regulated at most once).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{authenticate, forbidden, json_body, problems, server_error, unauthorized};
use crate::csvin::AckRow;
use crate::engine::Engine;
use crate::problem::{Problem, describe};
use crate::store::{ApplyError, Context};

/// The most entries one call may hold (422 beyond it).
pub const MAX_ENTRIES: usize = 10_000;

pub(super) async fn handle(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = match authenticate(&engine, &headers) {
        Ok(c) => c,
        Err(what) => return unauthorized(what),
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let what = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("larger than {} bytes", super::MAX_BODY)
            } else {
                rejection.body_text()
            };
            return problems(status, "invalid body", vec![Problem::new("body", what)]);
        }
    };
    let (rows, list) = match rows_of(&body) {
        Ok(r) => r,
        Err(list) => return problems(StatusCode::BAD_REQUEST, "invalid body", list),
    };
    // Scope first: a token may not even learn whether another system's
    // orders exist.
    if let Some(row) = rows.iter().find(|r| !caller.may_use(&r.system_id)) {
        let at = format!("orders[{}].system_id", row.line - 1);
        return forbidden(&caller, &at, &row.system_id);
    }
    if !list.is_empty() {
        return problems(StatusCode::UNPROCESSABLE_ENTITY, "invalid request", list);
    }
    let source = format!("HTTP mark-as-exported, token {:?}", caller.token.name);
    let token = caller.token.name.clone();
    let engine = engine.clone();
    let result = tokio::task::spawn_blocking(move || {
        let ctx = Context {
            now: chrono::Utc::now().timestamp_millis(),
            systems: &engine.config.systems,
            allow_negative: engine.config.inventory.allow_negative,
            only_system: None,
        };
        let r = engine.store.mark_exported(&rows, &source, &ctx);
        if r.is_ok() {
            engine.store.flush()?;
        }
        Ok::<_, crate::store::StoreError>(r)
    })
    .await;
    match result {
        Ok(Ok(Ok(summary))) => {
            tracing::info!(token = %token, acks = summary.acks, regulated = summary.regulated, "HTTP mark-as-exported applied");
            let body = json!({"marked": summary.acks, "regulated": summary.regulated});
            json_body(StatusCode::OK, body.to_string())
        }
        Ok(Ok(Err(ApplyError::Rejected(list)))) => problems(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid request",
            list.into_iter().map(located).collect(),
        ),
        Ok(Ok(Err(e))) => server_error(&e.to_string()),
        Ok(Err(e)) => server_error(&e.to_string()),
        Err(e) => server_error(&e.to_string()),
    }
}

/// A store problem names the row as `line N` (N = index + 1, as given
/// below); over HTTP it is the entry and field: `orders[3].order_id`.
fn located(p: Problem) -> Problem {
    let n = p.line();
    if n == 0 {
        return p;
    }
    let field = if p.what.starts_with("unknown order") || p.what.starts_with("order_id") {
        ".order_id"
    } else if p.what.starts_with("unknown system") || p.what.starts_with("system_id") {
        ".system_id"
    } else if p.what.starts_with("note") {
        ".note"
    } else {
        ".regulate_inventory"
    };
    Problem::new(format!("orders[{}]{field}", n - 1), p.what)
}

/// The body's entries as ack rows (`line` = index + 1), with the problems
/// of the shape found so far. `Err` when the body is not the expected JSON
/// object at all.
fn rows_of(body: &[u8]) -> Result<(Vec<AckRow>, Vec<Problem>), Vec<Problem>> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| vec![Problem::new("body", format!("not JSON: {e}"))])?;
    let Some(entries) = doc.get("orders").and_then(Value::as_array) else {
        return Err(vec![Problem::new(
            "orders",
            "expected {\"orders\": [{\"order_id\", \"system_id\", \"regulate_inventory\", \"note\"}]}",
        )]);
    };
    let mut problems = Vec::new();
    if entries.is_empty() {
        problems.push(Problem::new("orders", "empty: nothing to mark"));
    }
    if entries.len() > MAX_ENTRIES {
        problems.push(Problem::new(
            "orders",
            format!("{} entries: at most {MAX_ENTRIES} per call", entries.len()),
        ));
        return Ok((Vec::new(), problems));
    }
    let mut rows = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let at = |f: &str| format!("orders[{i}].{f}");
        let Some(e) = e.as_object() else {
            problems.push(Problem::new(format!("orders[{i}]"), "expected an object"));
            continue;
        };
        for k in e.keys() {
            if !["order_id", "system_id", "regulate_inventory", "note"].contains(&k.as_str()) {
                problems.push(Problem::new(at(k), "unknown field"));
            }
        }
        let mut string = |f: &str| match e.get(f) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(v) => {
                problems.push(Problem::new(
                    at(f),
                    format!("expected a non-empty string, got {}", describe(v)),
                ));
                None
            }
            None => {
                problems.push(Problem::new(at(f), "required"));
                None
            }
        };
        let order_id = string("order_id");
        let system_id = string("system_id");
        let regulate = match e.get("regulate_inventory") {
            None | Some(Value::Null) => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Some(false),
            Some(Value::Number(n)) if n.as_u64() == Some(1) => Some(true),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            },
            Some(_) => None,
        };
        if regulate.is_none() {
            problems.push(Problem::new(
                at("regulate_inventory"),
                format!(
                    "expected true or false, got {}",
                    describe(&e["regulate_inventory"])
                ),
            ));
        }
        let note = match e.get("note") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                problems.push(Problem::new(
                    at("note"),
                    format!("expected a string, got {}", describe(v)),
                ));
                None
            }
        };
        if let (Some(order_id), Some(system_id), Some(regulate)) = (order_id, system_id, regulate) {
            rows.push(AckRow {
                line: i as u64 + 1,
                order_id,
                system_id,
                regulate,
                note,
            });
        }
    }
    Ok((rows, problems))
}
