//! `ordersync status [--json]`.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::{CliError, json_line, table};
use crate::engine::Engine;
use crate::inbox;
use crate::store::ExportState;

/// The status as the JSON of SPEC §10.
pub fn status_json(e: &Engine) -> Result<Value, CliError> {
    let mut systems = Map::new();
    for s in &e.config.systems {
        let mut counts = Map::new();
        for st in ExportState::ALL {
            counts.insert(st.name().into(), e.store.count_in_state(&s.id, st)?.into());
        }
        systems.insert(s.id.clone(), Value::Object(counts));
    }
    Ok(json!({
        "orders": e.store.order_count()?,
        "errors": inbox::error_count(&e.config),
        "systems": systems,
    }))
}

pub fn run(e: &Engine, as_json: bool) -> Result<String, CliError> {
    let v = status_json(e)?;
    if as_json {
        return Ok(json_line(&v));
    }
    let mut out = String::new();
    let _ = writeln!(out, "orders  {}", v["orders"]);
    let _ = writeln!(out, "errors  {}", v["errors"]);
    let mut rows = vec![vec![
        "system".to_string(),
        "pending".into(),
        "written".into(),
        "acked".into(),
    ]];
    for s in &e.config.systems {
        let c = &v["systems"][&s.id];
        rows.push(vec![
            s.id.clone(),
            c["pending"].to_string(),
            c["written"].to_string(),
            c["acked"].to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    Ok(out)
}
