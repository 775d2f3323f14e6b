//! `ordersync orders list|show`.

use anyhow::anyhow;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::{CliError, OrdersCommand, json_line, rfc3339, table};
use crate::engine::Engine;
use crate::store::{ExportState, OrderRecord};

pub fn run(e: &Engine, command: OrdersCommand) -> Result<String, CliError> {
    match command {
        OrdersCommand::List {
            system,
            state,
            json,
        } => list(e, system.as_deref(), state.as_deref(), json),
        OrdersCommand::Show { id, json } => show(e, &id, json),
    }
}

/// Each order's state per configured system (`null` when it has none).
fn states(e: &Engine, o: &OrderRecord) -> Result<Map<String, Value>, CliError> {
    let mut m = Map::new();
    for s in &e.config.systems {
        let st = e.store.export_state(&s.id, o.id)?;
        m.insert(
            s.id.clone(),
            st.map_or(Value::Null, |r| r.state.name().into()),
        );
    }
    Ok(m)
}

fn list(
    e: &Engine,
    system: Option<&str>,
    state: Option<&str>,
    as_json: bool,
) -> Result<String, CliError> {
    if let Some(s) = system
        && e.config.system(s).is_none()
    {
        return Err(CliError::Usage(format!(
            "--system {s:?} is not a configured system"
        )));
    }
    let state = state.and_then(ExportState::parse);
    let mut orders = Vec::new();
    match (system, state) {
        // An index scan: only the orders in that state.
        (Some(s), Some(st)) => {
            for id in e.store.ids_in_state(s, st, usize::MAX)? {
                orders.extend(e.store.order(id)?);
            }
        }
        _ => {
            for o in e.store.orders() {
                let o = o?;
                let keep = match (system, state) {
                    (Some(s), None) => e.store.export_state(s, o.id)?.is_some(),
                    (None, Some(st)) => {
                        let mut any = false;
                        for s in &e.config.systems {
                            any |= e
                                .store
                                .export_state(&s.id, o.id)?
                                .is_some_and(|r| r.state == st);
                        }
                        any
                    }
                    _ => true,
                };
                if keep {
                    orders.push(o);
                }
            }
        }
    }
    let mut items = Vec::with_capacity(orders.len());
    for o in &orders {
        items.push(json!({
            "id": o.id,
            "external_id": o.external_id,
            "reference": o.doc["reference"],
            "created": rfc3339(o.created()),
            "updated": rfc3339(o.updated()),
            "revision": o.revision,
            "cancelled": o.doc["cancelled"],
            "archived": o.doc["archived"],
            "systems": states(e, o)?,
        }));
    }
    if as_json {
        return Ok(json_line(&Value::Array(items)));
    }
    let mut out = String::new();
    let mut rows = vec![vec![
        "id".to_string(),
        "external_id".into(),
        "created".into(),
        "rev".into(),
        "flags".into(),
        "systems".into(),
    ]];
    for i in &items {
        let mut flags = Vec::new();
        if i["cancelled"] == true {
            flags.push("cancelled");
        }
        if i["archived"] == true {
            flags.push("archived");
        }
        let systems: Vec<String> = i["systems"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("-")))
            .collect();
        rows.push(vec![
            i["id"].as_str().unwrap_or_default().into(),
            i["external_id"].as_str().unwrap_or_default().into(),
            i["created"].as_str().unwrap_or_default().into(),
            i["revision"].to_string(),
            flags.join(","),
            systems.join(" "),
        ]);
    }
    out.push_str(&table(&rows));
    Ok(out)
}

/// `{"order": ORDER, "systems": {...}, "timeline": [...]}` (SPEC §10).
pub fn show_json(e: &Engine, id: &str) -> Result<Value, CliError> {
    let o = e
        .store
        .find_order(id)?
        .ok_or_else(|| anyhow!("no order with id or external_id {id:?}"))?;
    let mut systems = Map::new();
    for s in &e.config.systems {
        if let Some(r) = e.store.export_state(&s.id, o.id)? {
            systems.insert(
                s.id.clone(),
                json!({
                    "state": r.state.name(),
                    "file": r.file,
                    "written_at": r.written_at.map(rfc3339),
                    "acked_at": r.acked_at.map(rfc3339),
                }),
            );
        }
    }
    let timeline: Vec<Value> = e
        .store
        .timeline(o.id)?
        .into_iter()
        .map(|ev| json!({"at": rfc3339(ev.at), "event": ev.event, "detail": ev.detail}))
        .collect();
    Ok(json!({"order": o.export_doc(), "systems": systems, "timeline": timeline}))
}

fn show(e: &Engine, id: &str, as_json: bool) -> Result<String, CliError> {
    let v = show_json(e, id)?;
    if as_json {
        return Ok(json_line(&v));
    }
    let o = &v["order"];
    let mut out = String::new();
    let _ = writeln!(out, "order     {}", o["id"].as_str().unwrap_or_default());
    let _ = writeln!(
        out,
        "external  {}",
        o["external_id"].as_str().unwrap_or_default()
    );
    let _ = writeln!(out, "revision  {}", o["revision"]);
    let _ = writeln!(
        out,
        "reference {}",
        o["reference"].as_str().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "status    {} / {}{}{}",
        o["status"].as_str().unwrap_or_default(),
        o["internal_status"].as_str().unwrap_or_default(),
        if o["cancelled"] == true {
            ", cancelled"
        } else {
            ""
        },
        if o["archived"] == true {
            ", archived"
        } else {
            ""
        }
    );
    out.push('\n');
    let mut rows = vec![vec![
        "system".to_string(),
        "state".into(),
        "file".into(),
        "acked_at".into(),
    ]];
    for (k, s) in v["systems"].as_object().into_iter().flatten() {
        rows.push(vec![
            k.clone(),
            s["state"].as_str().unwrap_or_default().into(),
            s["file"].as_str().unwrap_or("-").into(),
            s["acked_at"].as_str().unwrap_or("-").into(),
        ]);
    }
    out.push_str(&table(&rows));
    out.push('\n');
    let mut rows = Vec::new();
    for ev in v["timeline"].as_array().into_iter().flatten() {
        rows.push(vec![
            ev["at"].as_str().unwrap_or_default().into(),
            ev["event"].as_str().unwrap_or_default().into(),
            ev["detail"].as_str().unwrap_or_default().into(),
        ]);
    }
    out.push_str(&table(&rows));
    Ok(out)
}
