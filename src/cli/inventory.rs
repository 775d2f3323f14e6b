//! `ordersync inventory [--sku SKU] [--json]`.

use serde_json::{Value, json};

use super::{CliError, json_line, table};
use crate::engine::Engine;

/// `[{"sku", "in_stock", "reserved", "available"}]`, sorted by SKU.
pub fn inventory_json(e: &Engine, sku: Option<&str>) -> Result<Value, CliError> {
    let rows = e.store.inventory()?;
    Ok(Value::Array(
        rows.into_iter()
            .filter(|(s, ..)| sku.is_none_or(|want| want == s))
            .map(|(sku, in_stock, reserved)| {
                json!({"sku": sku, "in_stock": in_stock, "reserved": reserved, "available": in_stock - reserved})
            })
            .collect(),
    ))
}

pub fn run(e: &Engine, sku: Option<&str>, as_json: bool) -> Result<String, CliError> {
    let v = inventory_json(e, sku)?;
    if as_json {
        return Ok(json_line(&v));
    }
    let mut out = String::new();
    let mut rows = vec![vec![
        "sku".to_string(),
        "in_stock".into(),
        "reserved".into(),
        "available".into(),
    ]];
    for r in v.as_array().into_iter().flatten() {
        rows.push(vec![
            r["sku"].as_str().unwrap_or_default().to_string(),
            r["in_stock"].to_string(),
            r["reserved"].to_string(),
            r["available"].to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    Ok(out)
}
