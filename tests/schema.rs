//! docs/order.schema.json against the validator, through the real binary
//! (`ordersync validate`): every fixture order the validator accepts is
//! valid under the schema, and every bad order is invalid under the schema
//! *at the same field paths* the validator names. The rules the schema
//! cannot express (listed in its description and docs/CONTRACT.md) are
//! checked to be exactly those gaps, so the list stays true.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use common::{TWO_SYSTEMS, Work};
use serde_json::{Value, json};

fn schema() -> jsonschema::Validator {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/order.schema.json"))
            .expect("docs/order.schema.json");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::draft202012::meta::validate(&schema).expect("a valid draft 2020-12 schema");
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

/// The JSON pointers the schema complains about (for a missing required
/// property: the property's own pointer, as the validator names it).
fn schema_paths(v: &jsonschema::Validator, order: &Value) -> BTreeSet<String> {
    v.iter_errors(order)
        .map(|e| {
            let at = e.instance_path().as_str().to_string();
            match e.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    format!("{at}/{}", property.as_str().unwrap_or_default())
                }
                _ => at,
            }
        })
        .collect()
}

/// `$.line_items[2].qty_ordered` → `/line_items/2/qty_ordered`.
fn pointer(at: &str) -> String {
    let rest = at.strip_prefix('$').expect("a $ path");
    rest.replace('[', "/").replace(']', "").replace('.', "/")
}

/// Runs `ordersync validate` on every file of `cases/` at once; returns,
/// per file name, whether it was valid and the pointers of its problems.
fn validate_all(w: &Work, names: &[String]) -> BTreeMap<String, (bool, BTreeSet<String>)> {
    let mut args = vec!["validate".to_string()];
    args.extend(names.iter().map(|n| format!("cases/{n}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = w.cmd(&args);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let mut found: BTreeMap<String, (bool, BTreeSet<String>)> = BTreeMap::new();
    let mut current = None;
    for line in stdout.lines() {
        if let Some(problem) = line.strip_prefix("  ") {
            let at = problem.split(": ").next().expect("at");
            let name: &String = current.as_ref().expect("a file header first");
            found.get_mut(name).expect("file").1.insert(pointer(at));
        } else if let Some(rest) = line.strip_prefix("cases/") {
            let (name, verdict) = rest.split_once(": ").expect("name: verdict");
            found.insert(
                name.to_string(),
                (verdict.starts_with("valid"), BTreeSet::new()),
            );
            current = Some(name.to_string());
        }
    }
    let any_invalid = found.values().any(|(ok, _)| !ok);
    assert_eq!(
        out.status.code(),
        Some(if any_invalid { 1 } else { 0 }),
        "{stdout}"
    );
    found
}

/// The orders of a fixture file, as the inbox splits it.
fn orders_of(name: &str, text: &str) -> Vec<Value> {
    if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
        return text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("fixture line"))
            .collect();
    }
    match serde_json::from_str::<Value>(text).expect("fixture JSON") {
        Value::Array(a) => a,
        Value::Object(o)
            if o.get("orders").is_some_and(Value::is_array) && !o.contains_key("external_id") =>
        {
            o["orders"].as_array().cloned().unwrap_or_default()
        }
        one => vec![one],
    }
}

#[test]
fn every_fixture_order_is_valid_for_the_validator_and_the_schema() {
    let v = schema();
    let w = Work::new(TWO_SYSTEMS);
    fs::create_dir_all(w.path("cases")).unwrap();
    let mut names = Vec::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut orders = 0;
    for entry in fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".json") || name.ends_with(".ndjson") || name.ends_with(".jsonl")) {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        for (i, order) in orders_of(&name, &text).iter().enumerate() {
            let errors = schema_paths(&v, order);
            assert!(
                errors.is_empty(),
                "{name} order {i}: schema says {errors:?}"
            );
            orders += 1;
        }
        fs::copy(&path, w.path(&format!("cases/{name}"))).unwrap();
        names.push(name);
    }
    assert!(orders >= 5, "only {orders} fixture orders found");
    for (name, (ok, problems)) in validate_all(&w, &names) {
        assert!(ok, "the validator rejects fixture {name}: {problems:?}");
    }
}

fn sample() -> Value {
    serde_json::from_str(include_str!("fixtures/order.json")).unwrap()
}

/// A bad order: the fixture order changed by `f`.
fn bad(f: impl FnOnce(&mut Value)) -> Value {
    let mut o = sample();
    f(&mut o);
    o
}

fn remove(o: &mut Value, key: &str) {
    o.as_object_mut().unwrap().remove(key);
}

/// Bad orders from order.rs's unit tests, tests/hostile_content.rs and the
/// contract's rules, each with the field paths that are wrong.
fn bad_orders() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    vec![
        ("not an object", json!("an order"), vec![""]),
        (
            "id not a uuid",
            bad(|o| o["id"] = json!("order-1")),
            vec!["/id"],
        ),
        ("id a number", bad(|o| o["id"] = json!(5)), vec!["/id"]),
        (
            "external_id missing",
            bad(|o| remove(o, "external_id")),
            vec!["/external_id"],
        ),
        (
            "external_id null",
            bad(|o| o["external_id"] = Value::Null),
            vec!["/external_id"],
        ),
        (
            "external_id blank",
            bad(|o| o["external_id"] = json!("  ")),
            vec!["/external_id"],
        ),
        (
            "external_id a number",
            bad(|o| o["external_id"] = json!(1001)),
            vec!["/external_id"],
        ),
        // Issue 15: one meaning per reference.
        (
            "external_id with a leading space",
            bad(|o| o["external_id"] = json!(" 48a95a12-2c4b-4bd5-9d8c-1f1fa0d8f3a7")),
            vec!["/external_id"],
        ),
        (
            "external_id ending in a space",
            bad(|o| o["external_id"] = json!("shop-1001 ")),
            vec!["/external_id"],
        ),
        (
            "external_id with a NUL",
            bad(|o| o["external_id"] = json!("shop\u{0}1001")),
            vec!["/external_id"],
        ),
        (
            "external_id starting with a BOM",
            bad(|o| o["external_id"] = json!("\u{FEFF}shop-1001")),
            vec!["/external_id"],
        ),
        (
            "sku with a NUL",
            bad(|o| o["line_items"][0]["sku"] = json!("MUG\u{0}")),
            vec!["/line_items/0/sku"],
        ),
        (
            "sku ending in a tab",
            bad(|o| o["line_items"][1]["sku"] = json!("MUG-RED\t")),
            vec!["/line_items/1/sku"],
        ),
        ("type empty", bad(|o| o["type"] = json!("")), vec!["/type"]),
        ("type missing", bad(|o| remove(o, "type")), vec!["/type"]),
        (
            "channel a number",
            bad(|o| o["channel"] = json!(5)),
            vec!["/channel"],
        ),
        (
            "status unknown",
            bad(|o| o["status"] = json!("Lost")),
            vec!["/status"],
        ),
        (
            "status lower case",
            bad(|o| o["status"] = json!("waiting")),
            vec!["/status"],
        ),
        (
            "internal_status unknown",
            bad(|o| o["internal_status"] = json!("done")),
            vec!["/internal_status"],
        ),
        (
            "cancelled a string",
            bad(|o| o["cancelled"] = json!("no")),
            vec!["/cancelled"],
        ),
        (
            "archived a number",
            bad(|o| o["archived"] = json!(0)),
            vec!["/archived"],
        ),
        (
            "currency lower case",
            bad(|o| o["currency"] = json!("dkk")),
            vec!["/currency"],
        ),
        (
            "currency four letters",
            bad(|o| o["currency"] = json!("DKKK")),
            vec!["/currency"],
        ),
        (
            "currency missing",
            bad(|o| remove(o, "currency")),
            vec!["/currency"],
        ),
        (
            "reference missing",
            bad(|o| remove(o, "reference")),
            vec!["/reference"],
        ),
        (
            "reference a number",
            bad(|o| o["reference"] = json!(42)),
            vec!["/reference"],
        ),
        (
            "account_id not a uuid",
            bad(|o| o["account_id"] = json!("acct-1")),
            vec!["/account_id"],
        ),
        (
            "account_id a number",
            bad(|o| o["account_id"] = json!(7)),
            vec!["/account_id"],
        ),
        (
            "created negative",
            bad(|o| o["created"] = json!(-1)),
            vec!["/created"],
        ),
        (
            "updated a string",
            bad(|o| o["updated"] = json!("yesterday")),
            vec!["/updated"],
        ),
        (
            "created beyond i64",
            bad(|o| o["created"] = json!(u64::MAX)),
            vec!["/created"],
        ),
        (
            "created a fraction",
            bad(|o| o["created"] = json!(1.5)),
            vec!["/created"],
        ),
        (
            "line_items missing",
            bad(|o| remove(o, "line_items")),
            vec!["/line_items"],
        ),
        (
            "line_items empty",
            bad(|o| o["line_items"] = json!([])),
            vec!["/line_items"],
        ),
        (
            "line_items an object",
            bad(|o| o["line_items"] = json!({})),
            vec!["/line_items"],
        ),
        (
            "a line not an object",
            bad(|o| o["line_items"][1] = json!(5)),
            vec!["/line_items/1"],
        ),
        (
            "sku empty",
            bad(|o| o["line_items"][0]["sku"] = json!("")),
            vec!["/line_items/0/sku"],
        ),
        (
            "sku missing",
            bad(|o| remove(&mut o["line_items"][2], "sku")),
            vec!["/line_items/2/sku"],
        ),
        (
            "qty_ordered ten",
            bad(|o| o["line_items"][1]["qty_ordered"] = json!("ten")),
            vec!["/line_items/1/qty_ordered"],
        ),
        (
            "qty_ordered zero",
            bad(|o| o["line_items"][0]["qty_ordered"] = json!(0)),
            vec!["/line_items/0/qty_ordered"],
        ),
        (
            "qty_ordered negative",
            bad(|o| o["line_items"][0]["qty_ordered"] = json!(-1)),
            vec!["/line_items/0/qty_ordered"],
        ),
        (
            "qty_ordered above a billion",
            bad(|o| o["line_items"][0]["qty_ordered"] = json!(1_000_000_001)),
            vec!["/line_items/0/qty_ordered"],
        ),
        (
            "qty_ordered u64::MAX",
            bad(|o| o["line_items"][0]["qty_ordered"] = json!(u64::MAX)),
            vec!["/line_items/0/qty_ordered"],
        ),
        (
            "qty_ordered a fraction",
            bad(|o| o["line_items"][0]["qty_ordered"] = json!(2.5)),
            vec!["/line_items/0/qty_ordered"],
        ),
        (
            "qty_ordered missing",
            bad(|o| remove(&mut o["line_items"][0], "qty_ordered")),
            vec!["/line_items/0/qty_ordered"],
        ),
        (
            "qty_shipped negative",
            bad(|o| o["line_items"][2]["qty_shipped"] = json!(-1)),
            vec!["/line_items/2/qty_shipped"],
        ),
        (
            "qty_shipped above a billion",
            bad(|o| o["line_items"][2]["qty_shipped"] = json!(1_000_000_001)),
            vec!["/line_items/2/qty_shipped"],
        ),
        (
            "requires_shipping a string",
            bad(|o| o["line_items"][0]["requires_shipping"] = json!("yes")),
            vec!["/line_items/0/requires_shipping"],
        ),
        (
            "unit_price negative",
            bad(|o| o["line_items"][0]["unit_price"] = json!(-0.01)),
            vec!["/line_items/0/unit_price"],
        ),
        (
            "unit_price a string",
            bad(|o| o["line_items"][0]["unit_price"] = json!("free")),
            vec!["/line_items/0/unit_price"],
        ),
        (
            "line_number zero",
            bad(|o| o["line_items"][0]["line_number"] = json!(0)),
            vec!["/line_items/0/line_number"],
        ),
        (
            "line_number a string",
            bad(|o| o["line_items"][0]["line_number"] = json!("1")),
            vec!["/line_items/0/line_number"],
        ),
        (
            "description a number",
            bad(|o| o["line_items"][0]["description"] = json!(1)),
            vec!["/line_items/0/description"],
        ),
        (
            "billing_address a string",
            bad(|o| o["billing_address"] = json!("Vej 1")),
            vec!["/billing_address"],
        ),
        (
            "billing city missing",
            bad(|o| remove(&mut o["billing_address"], "city")),
            vec!["/billing_address/city"],
        ),
        (
            "billing country empty",
            bad(|o| o["billing_address"]["country"] = json!("")),
            vec!["/billing_address/country"],
        ),
        (
            "billing_reference a number",
            bad(|o| o["billing_address"]["billing_reference"] = json!(1)),
            vec!["/billing_address/billing_reference"],
        ),
        (
            "shipping_address missing",
            bad(|o| remove(o, "shipping_address")),
            vec!["/shipping_address"],
        ),
        (
            "shipping address1 null",
            bad(|o| o["shipping_address"]["address1"] = Value::Null),
            vec!["/shipping_address/address1"],
        ),
        (
            "shipping_reference a bool",
            bad(|o| o["shipping_address"]["shipping_reference"] = json!(true)),
            vec!["/shipping_address/shipping_reference"],
        ),
        (
            "shipping_rule missing",
            bad(|o| remove(o, "shipping_rule")),
            vec!["/shipping_rule"],
        ),
        (
            "shipping_rule recovery a string",
            bad(|o| o["shipping_rule"]["recovery"] = json!("49")),
            vec!["/shipping_rule/recovery"],
        ),
        (
            "shipping_rule name missing",
            bad(|o| remove(&mut o["shipping_rule"], "name")),
            vec!["/shipping_rule/name"],
        ),
        (
            "tax_rule rate 1.5",
            bad(|o| o["tax_rule"]["rate"] = json!(1.5)),
            vec!["/tax_rule/rate"],
        ),
        (
            "tax_rule rate negative",
            bad(|o| o["tax_rule"]["rate"] = json!(-0.1)),
            vec!["/tax_rule/rate"],
        ),
        (
            "tax_rule inclusive missing",
            bad(|o| remove(&mut o["tax_rule"], "inclusive")),
            vec!["/tax_rule/inclusive"],
        ),
        (
            "tax_rule an array",
            bad(|o| o["tax_rule"] = json!([])),
            vec!["/tax_rule"],
        ),
        (
            // Issue 22: what a PostgreSQL index cannot hold, refused by
            // the same rule on both backends: 255 characters for a
            // reference, 2,000 for the texts indexed by their ASCII case.
            "indexed texts over their limits",
            bad(|o| {
                let long = json!("é".repeat(2_001));
                for key in ["type", "channel", "reference"] {
                    o[key] = long.clone();
                }
                o["external_id"] = json!("é".repeat(256));
                o["line_items"][0]["sku"] = json!("é".repeat(256));
            }),
            vec![
                "/external_id",
                "/type",
                "/channel",
                "/reference",
                "/line_items/0/sku",
            ],
        ),
        (
            "indexed texts at their limits are fine (one too many: the reference)",
            bad(|o| {
                let most = json!("é".repeat(2_000));
                for key in ["type", "channel"] {
                    o[key] = most.clone();
                }
                o["external_id"] = json!("é".repeat(255));
                o["line_items"][0]["sku"] = json!("é".repeat(255));
                o["reference"] = json!("x".repeat(2_001));
            }),
            vec!["/reference"],
        ),
        (
            "five problems at once (order.rs)",
            bad(|o| {
                o["line_items"][1]["qty_ordered"] = json!("ten");
                o["currency"] = json!("dkk");
                o["tax_rule"]["rate"] = json!(1.5);
                remove(&mut o["billing_address"], "city");
                o["status"] = json!("Lost");
            }),
            vec![
                "/line_items/1/qty_ordered",
                "/currency",
                "/tax_rule/rate",
                "/billing_address/city",
                "/status",
            ],
        ),
    ]
}

#[test]
fn every_rejected_order_is_invalid_under_the_schema_for_the_same_fields() {
    let v = schema();
    let w = Work::new(TWO_SYSTEMS);
    fs::create_dir_all(w.path("cases")).unwrap();
    let cases = bad_orders();
    let mut names = Vec::new();
    for (i, (_, order, _)) in cases.iter().enumerate() {
        let name = format!("{i:02}.json");
        fs::write(
            w.path(&format!("cases/{name}")),
            serde_json::to_vec(order).unwrap(),
        )
        .unwrap();
        names.push(name);
    }
    let found = validate_all(&w, &names);
    for (i, (what, order, want)) in cases.iter().enumerate() {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        let (ok, validator) = &found[&format!("{i:02}.json")];
        assert!(!ok, "{what}: the validator accepts it");
        assert_eq!(validator, &want, "{what}: the validator's paths");
        assert_eq!(schema_paths(&v, order), want, "{what}: the schema's paths");
    }
}

/// The reference pattern (external_id, sku) and the validator agree on
/// every white-space and control character, at either end and inside, and
/// on their neighbours that are neither (issue 15).
#[test]
fn the_reference_pattern_agrees_with_the_validator_on_every_character() {
    let v = schema();
    let w = Work::new(TWO_SYSTEMS);
    fs::create_dir_all(w.path("cases")).unwrap();
    let mut chars: Vec<char> = (0..=0x3100u32)
        .chain([0xFEFF])
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace() || c.is_control() || *c == '\u{FEFF}')
        .collect();
    chars.extend(['a', 'é', '\u{200B}', '\u{180E}', '\u{2060}', '\u{FFFD}']);
    let mut cases = Vec::new();
    for c in &chars {
        for (place, text) in [
            ("start", format!("{c}x")),
            ("end", format!("x{c}")),
            ("inside", format!("x{c}x")),
        ] {
            cases.push((
                format!("U+{:04X} {place}", *c as u32),
                bad(|o| {
                    o["external_id"] = json!(text);
                    o["line_items"][0]["sku"] = json!(text);
                }),
            ));
        }
    }
    let mut names = Vec::new();
    for (i, (_, order)) in cases.iter().enumerate() {
        let name = format!("c{i:04}.json");
        fs::write(
            w.path(&format!("cases/{name}")),
            serde_json::to_vec(order).unwrap(),
        )
        .unwrap();
        names.push(name);
    }
    let found = validate_all(&w, &names);
    for (i, (what, order)) in cases.iter().enumerate() {
        let (_, validator) = &found[&format!("c{i:04}.json")];
        assert_eq!(&schema_paths(&v, order), validator, "{what}");
    }
}

/// The rules the schema cannot express, as its description lists them:
/// the validator rejects these orders, the schema accepts them. If the
/// schema learns one (or the validator drops one), this fails and the
/// list must change.
#[test]
fn the_schemas_listed_gaps_are_exactly_these() {
    let v = schema();
    let w = Work::new(TWO_SYSTEMS);
    fs::create_dir_all(w.path("cases")).unwrap();
    let nested = (0..64).fold(json!(1), |v, _| Value::Array(vec![v]));
    let gaps = [
        (
            "duplicate line_number",
            bad(|o| {
                o["line_items"][0]["line_number"] = json!(2);
            }),
        ),
        ("nested 65 levels", bad(|o| o["x_shop"] = nested)),
        (
            "an integer written 5.0",
            bad(|o| o["line_items"][0]["qty_ordered"] = json!(5.0)),
        ),
    ];
    let mut names = Vec::new();
    for (i, (_, order)) in gaps.iter().enumerate() {
        let name = format!("gap{i}.json");
        fs::write(
            w.path(&format!("cases/{name}")),
            serde_json::to_vec(order).unwrap(),
        )
        .unwrap();
        names.push(name);
    }
    let found = validate_all(&w, &names);
    let description = schema_description();
    for (i, (what, order)) in gaps.iter().enumerate() {
        assert!(
            !found[&format!("gap{i}.json")].0,
            "{what}: the validator accepts it"
        );
        assert!(
            schema_paths(&v, order).is_empty(),
            "{what}: the schema rejects it: drop it from the listed gaps"
        );
    }
    for words in [
        "unique within an order",
        "at most 64 levels",
        "5.0 is rejected",
    ] {
        assert!(
            description.contains(words),
            "the schema's description no longer lists {words:?}"
        );
    }
}

fn schema_description() -> String {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/order.schema.json"))
            .unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    schema["description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
