//! `ordersync orders list|show`.

use anyhow::anyhow;
use std::fmt::Write as _;
use std::io;

use serde_json::{Map, Value, json};

use super::{CliError, OrdersCommand, json_line, rfc3339, table};
use crate::engine::Engine;
use crate::store::{ExportState, StoreError};
use uuid::Uuid;

/// Runs `orders list|show`, writing to `out` as it goes: a listing is
/// streamed, one order at a time, whatever the store's size.
pub fn run(e: &Engine, command: OrdersCommand, out: &mut dyn io::Write) -> Result<(), CliError> {
    match command {
        OrdersCommand::List {
            system,
            state,
            limit,
            after,
            json,
        } => {
            let page = Page {
                system: system.as_deref(),
                state: state.as_deref().and_then(ExportState::parse),
                limit: limit.unwrap_or(usize::MAX),
                after,
            };
            list(e, &page, json, out)
        }
        OrdersCommand::Show { id, json } => out
            .write_all(show(e, &id, json)?.as_bytes())
            .map_err(super::printing),
    }
}

/// Which orders `orders list` shows.
pub struct Page<'a> {
    pub system: Option<&'a str>,
    pub state: Option<ExportState>,
    pub limit: usize,
    /// Start after this order (in the listing's order).
    pub after: Option<Uuid>,
}

/// Each order's state per configured system (`null` when it has none).
fn states(e: &Engine, id: Uuid) -> Result<Map<String, Value>, CliError> {
    let mut m = Map::new();
    for s in &e.config.systems {
        let st = e.store.export_state(&s.id, id)?;
        m.insert(
            s.id.clone(),
            st.map_or(Value::Null, |r| r.state.name().into()),
        );
    }
    Ok(m)
}

/// Whether an order passes the listing's system/state filter.
fn keep(e: &Engine, page: &Page, id: Uuid) -> Result<bool, CliError> {
    Ok(match (page.system, page.state) {
        (Some(s), Some(st)) => e.store.export_state(s, id)?.is_some_and(|r| r.state == st),
        (Some(s), None) => e.store.export_state(s, id)?.is_some(),
        (None, Some(st)) => {
            let mut any = false;
            for s in &e.config.systems {
                any |= e
                    .store
                    .export_state(&s.id, id)?
                    .is_some_and(|r| r.state == st);
            }
            any
        }
        (None, None) => true,
    })
}

/// Streams the listing to `out`, one order at a time: memory does not grow
/// with the number of orders. With `--system` and `--state` it walks that
/// state's index (oldest first); otherwise every order in id order.
pub fn list(
    e: &Engine,
    page: &Page,
    as_json: bool,
    out: &mut dyn io::Write,
) -> Result<(), CliError> {
    if let Some(s) = page.system
        && e.config.system(s).is_none()
    {
        return Err(CliError::Usage(format!(
            "--system {s:?} is not a configured system"
        )));
    }
    let ids: Box<dyn Iterator<Item = Result<Uuid, StoreError>>> = match (page.system, page.state) {
        (Some(s), Some(st)) => Box::new(e.store.ids_in_state_after(s, st, page.after)?),
        _ => Box::new(e.store.orders_after(page.after).map(|o| o.map(|o| o.id))),
    };
    let w = |r: io::Result<()>| r.map_err(super::printing);
    if as_json {
        w(out.write_all(b"["))?;
    } else {
        w(writeln!(
            out,
            "{:<36}  {:<20}  {:<24}  {:<3}  {:<18}  systems",
            "id", "external_id", "created", "rev", "flags"
        ))?;
    }
    let mut n = 0;
    for id in ids {
        if n >= page.limit {
            break;
        }
        let id = id?;
        if !keep(e, page, id)? {
            continue;
        }
        let Some(o) = e.store.order(id)? else {
            continue;
        };
        let systems = states(e, id)?;
        if as_json {
            let item = json!({
                "id": o.id,
                "external_id": o.external_id,
                "reference": o.doc["reference"],
                "created": rfc3339(o.created()),
                "updated": rfc3339(o.updated()),
                "revision": o.revision,
                "cancelled": o.doc["cancelled"],
                "archived": o.doc["archived"],
                "systems": systems,
            });
            w(write!(out, "{}{item}", if n > 0 { "," } else { "" }))?;
        } else {
            let mut flags = Vec::new();
            if o.doc["cancelled"] == true {
                flags.push("cancelled");
            }
            if o.doc["archived"] == true {
                flags.push("archived");
            }
            let systems: Vec<String> = systems
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("-")))
                .collect();
            let line = format!(
                "{:<36}  {:<20}  {:<24}  {:<3}  {:<18}  {}",
                o.id,
                o.external_id,
                rfc3339(o.created()),
                o.revision,
                flags.join(","),
                systems.join(" ")
            );
            w(writeln!(out, "{}", line.trim_end()))?;
        }
        n += 1;
    }
    if as_json {
        w(out.write_all(b"]\n"))?;
    }
    Ok(())
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
