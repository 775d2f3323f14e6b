//! The order model (SPEC §4): validation of an order object as sent, and the
//! filled-in document ordersync stores and exports.
//!
//! Validation walks the JSON once and collects *every* problem with its path
//! (`$.line_items[2].qty_ordered: expected a number, got "ten"`), so a
//! rejected file's report lists them all. Unknown fields are kept untouched.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::problem::{Problem, describe};

/// SHA-256 of an order as sent, in serde_json's canonical form (object keys
/// sorted): equal content, equal hash.
pub fn sent_hash(sent: &Value) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    // Serialising a Value to a Vec cannot fail.
    Sha256::digest(serde_json::to_vec(sent).unwrap_or_default()).into()
}

/// A validated order, ready to be applied to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: Uuid,
    pub external_id: String,
    /// SHA-256 of the object exactly as sent ([`sent_hash`]): updates
    /// and duplicates are decided on it.
    pub sent_hash: [u8; 32],
    /// The object with every default filled in (id, status, line numbers…).
    pub doc: Value,
}

/// Why `s` cannot be a reference (an order's `external_id`, a line's
/// `sku`, an ack's `order_id`), or `None` when it can: a reference is
/// matched exactly, so it may hold no control character (NUL included) and
/// may not begin or end with white space, which a spreadsheet or a CSV
/// reader trims away (a CSV cell is trimmed before it is matched, so an
/// order's reference must already be its trimmed self: one meaning each).
/// White space is Unicode's (`char::is_whitespace`) and U+FEFF, exactly
/// the characters docs/order.schema.json's reference pattern lists.
/// Emptiness is the caller's check.
pub fn reference_problem(s: &str) -> Option<String> {
    if let Some(what) = length_problem(s, MAX_REFERENCE_CHARS) {
        return Some(what);
    }
    if let Some((i, c)) = s.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Some(format!(
            "contains a control character (U+{:04X} at character {}); not allowed in a reference",
            c as u32,
            i + 1
        ));
    }
    let edge = |c: char| c.is_whitespace() || c == '\u{FEFF}';
    if s.starts_with(edge) || s.ends_with(edge) {
        return Some(format!(
            "begins or ends with white space ({}); not allowed in a reference",
            describe(&Value::String(s.to_string()))
        ));
    }
    None
}

/// The longest a reference may be, in characters (Unicode scalar values,
/// as Rust's `chars` counts them): an order's `external_id`, a line's
/// `sku`, an ack's `order_id`, a stock row's `sku`. The store keeps these
/// as they are in B-tree indexes (PostgreSQL's unique `external_id`,
/// `stock_pkey`, `orders_fold_external_id`), whose rows may not exceed
/// 2,704 bytes: 255 characters are at most 1,020 bytes of UTF-8, far below
/// that, and far above any real identifier. The same rule on both
/// backends, checked before anything is staged (docs/CONTRACT.md §4,
/// docs/order.schema.json's `maxLength`).
pub const MAX_REFERENCE_CHARS: usize = 255;

/// The longest an order's `reference`, `channel` and `type` may be, in
/// characters. The store indexes them only through their ASCII lower case
/// (`ordersync_fold`: NULL for any other text), so an indexed value is one
/// byte a character: 2,000 stays well within a B-tree row's 2,704 bytes,
/// and is far more than a real purchase-order reference needs.
pub const MAX_FIELD_CHARS: usize = 2_000;

/// Why `s` is too long for a text of at most `max` characters, or `None`.
pub fn length_problem(s: &str, max: usize) -> Option<String> {
    // Only a string of more bytes than the limit can hold more characters.
    if s.len() <= max {
        return None;
    }
    let n = s.chars().count();
    (n > max).then(|| format!("{n} characters; at most {max} are allowed"))
}

/// The id an order without `id` gets: UUIDv5 of its `external_id` in the OID
/// namespace, so a re-sent order keeps its id.
pub fn id_for_external_id(external_id: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, external_id.as_bytes())
}

/// The deepest an order may nest arrays and objects, counting the order
/// object itself as level 1. serde_json refuses to read anything nested more
/// than 128 levels, and the store wraps an order two levels deeper (record →
/// `doc`), exports and `orders show --json` two more (`{"orders": [ORDER]}`);
/// 64 leaves a wide margin, so whatever is accepted can always be read back.
pub const MAX_DEPTH: usize = 64;

/// The largest `qty_ordered` / `qty_shipped` a line may have. Sums of
/// quantities (reservations, stock) are checked as well, but a bound here
/// keeps every sum far from the limits of `i64`.
pub const MAX_QTY: i64 = 1_000_000_000;

const STATUSES: &[&str] = &["Waiting", "Processing", "Hold", "Complete"];
const INTERNAL_STATUSES: &[&str] = &["draft", "selection", "approved"];
/// The fields of an address besides its reference (`billing_reference` /
/// `shipping_reference`), in the order of the csv export's columns.
pub const ADDRESS_FIELDS: &[&str] = &[
    "company_name",
    "contact_email",
    "contact_name",
    "contact_number",
    "address1",
    "address2",
    "city",
    "postcode",
    "state",
    "country",
];
const ADDRESS_REQUIRED: &[&str] = &["address1", "city", "country"];

/// Whether a string (or an object's key) anywhere in `v` holds U+0000.
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Where [`nul_paths`] is in an order: the references checked on their own
/// (`id`, `external_id`, a line's `sku`) already refuse U+0000.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    Order,
    Lines,
    Line,
    Other,
}

/// A problem for each string (or key) in `v` that holds U+0000, at its
/// path.
fn nul_paths(v: &Value, path: &str, level: Level, problems: &mut Vec<Problem>) {
    const WHAT: &str = "contains U+0000 (NUL), which no order text may hold";
    match v {
        Value::String(s) if s.contains('\0') => problems.push(Problem::new(path, WHAT)),
        Value::Array(a) => {
            let inner = if level == Level::Lines {
                Level::Line
            } else {
                Level::Other
            };
            for (i, item) in a.iter().enumerate() {
                nul_paths(item, &format!("{path}[{i}]"), inner, problems);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                let at = format!("{path}.{}", k.escape_debug());
                let checked = match level {
                    Level::Order => k == "id" || k == "external_id",
                    Level::Line => k == "sku",
                    _ => false,
                };
                if checked {
                    continue;
                }
                if k.contains('\0') {
                    problems.push(Problem::new(&at, "a key that contains U+0000 (NUL)"));
                    continue;
                }
                let inner = if level == Level::Order && k == "line_items" {
                    Level::Lines
                } else {
                    Level::Other
                };
                nul_paths(item, &at, inner, problems);
            }
        }
        _ => {}
    }
}

/// Validates one order object found at `path` (`$`, `$[3]`, `$.orders[3]`).
/// `now_ms` fills `created`/`updated` when absent. Problems are appended to
/// `problems`; `None` when there was any.
pub fn validate(
    value: &Value,
    path: &str,
    now_ms: i64,
    problems: &mut Vec<Problem>,
) -> Option<Order> {
    let before = problems.len();
    let Some(obj) = value.as_object() else {
        problems.push(Problem::new(
            path,
            format!("expected an order object, got {}", describe(value)),
        ));
        return None;
    };
    // The walk that names paths only when something is too deep: most
    // orders are a few levels deep, and naming every path costs.
    if nesting(value) > MAX_DEPTH {
        check_depth(value, path, 1, problems);
    }
    // U+0000 in a text: no use in an order, and what PostgreSQL's text and
    // jsonb cannot hold (the same rule on both backends).
    if has_nul(value) {
        nul_paths(value, path, Level::Order, problems);
    }
    let mut v = Check {
        obj,
        path: path.to_string(),
        problems,
    };

    let external_id = v.reference("external_id");
    let id = match obj.get("id") {
        None | Some(Value::Null) => external_id.as_deref().map(id_for_external_id),
        Some(Value::String(s)) => match Uuid::parse_str(s) {
            Ok(u) => Some(u),
            Err(_) => {
                v.problem(
                    "id",
                    format!("expected a UUID, got {}", describe(&obj["id"])),
                );
                None
            }
        },
        Some(other) => {
            v.problem(
                "id",
                format!("expected a UUID string, got {}", describe(other)),
            );
            None
        }
    };
    v.indexed("type", Need::NonEmpty);
    v.indexed("channel", Need::Optional);
    v.one_of("status", STATUSES);
    v.one_of("internal_status", INTERNAL_STATUSES);
    v.boolean("cancelled", false);
    v.boolean("archived", false);
    if let Some(c) = v.string("currency", Need::Present)
        && !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
    {
        v.problem(
            "currency",
            format!("expected an ISO 4217 code of three capital letters, got {c:?}"),
        );
    }
    v.indexed("reference", Need::Present);
    if let Some(Value::String(s)) = obj.get("account_id") {
        if Uuid::parse_str(s).is_err() {
            v.problem("account_id", format!("expected a UUID, got {s:?}"));
        }
    } else {
        v.string("account_id", Need::Optional);
    }
    v.timestamp("created");
    v.timestamp("updated");
    v.address("billing_address", "billing_reference");
    v.address("shipping_address", "shipping_reference");
    if let Some(rule) = v.object("shipping_rule") {
        let mut r = v.nested(rule, "shipping_rule");
        r.string("name", Need::Present);
        r.number("recovery", Need::Present, None);
    }
    if let Some(rule) = v.object("tax_rule") {
        let mut r = v.nested(rule, "tax_rule");
        r.string("name", Need::Present);
        r.boolean("inclusive", true);
        r.number("rate", Need::Present, Some((0.0, 1.0)));
    }
    let line_numbers = v.line_items();

    if problems.len() > before {
        return None;
    }
    let (id, external_id) = (id?, external_id?);
    let doc = fill_defaults(obj, id, now_ms, &line_numbers);
    Some(Order {
        id,
        external_id,
        sent_hash: sent_hash(value),
        doc,
    })
}

/// How many levels of arrays and objects `value` holds (0 for a scalar).
fn nesting(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Reports every array or object nested deeper than [`MAX_DEPTH`] below
/// `value`, which is at `level` (the order object is level 1), by its path.
/// Does not descend below the first one too deep on each branch.
fn check_depth(value: &Value, path: &str, level: usize, problems: &mut Vec<Problem>) {
    let children: Box<dyn Iterator<Item = (String, &Value)>> = match value {
        Value::Array(items) => Box::new(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}[{i}]"), v)),
        ),
        Value::Object(fields) => Box::new(
            fields
                .iter()
                .map(|(k, v)| (format!("{path}{}", member(k)), v)),
        ),
        _ => return,
    };
    if level > MAX_DEPTH {
        problems.push(Problem::new(
            path,
            format!(
                "nested deeper than {MAX_DEPTH} levels of arrays and objects (the order object is level 1)"
            ),
        ));
        return;
    }
    for (at, child) in children {
        check_depth(child, &at, level + 1, problems);
    }
}

/// `.key` for a plain key, else `["key"]` quoted and escaped, so that an
/// unknown field's name can never break a report's one problem per line.
fn member(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        format!(".{key}")
    } else {
        let cut: String = key.chars().take(64).collect();
        let more = if cut.len() < key.len() { "…" } else { "" };
        format!("[{cut:?}{more}]")
    }
}

/// The optional fields of an order, of its addresses and of its lines that
/// have no default: sent as `null`, they are left out of the stored
/// document, so answers and export files never echo a `null` that means
/// "absent" (SPEC §4). Unknown fields are kept as sent, `null` included.
const OPTIONAL_ORDER_FIELDS: &[&str] = &["channel", "account_id"];
const OPTIONAL_LINE_FIELDS: &[&str] = &["description", "unit_price"];

/// Removes the keys of `fields` whose value is `null`.
fn drop_nulls(obj: &mut Map<String, Value>, fields: &[&str]) {
    for key in fields {
        if obj.get(*key).is_some_and(Value::is_null) {
            obj.remove(*key);
        }
    }
}

/// The order with its defaults filled in (SPEC §4). The hash of the order
/// as sent is taken before, from the object untouched.
fn fill_defaults(obj: &Map<String, Value>, id: Uuid, now_ms: i64, line_numbers: &[i64]) -> Value {
    let mut doc = obj.clone();
    drop_nulls(&mut doc, OPTIONAL_ORDER_FIELDS);
    for (key, reference) in [
        ("billing_address", "billing_reference"),
        ("shipping_address", "shipping_reference"),
    ] {
        if let Some(Value::Object(addr)) = doc.get_mut(key) {
            drop_nulls(addr, ADDRESS_FIELDS);
            drop_nulls(addr, &[reference]);
        }
    }
    doc.insert("id".into(), Value::String(id.to_string()));
    let defaults: [(&str, Value); 6] = [
        ("status", "Waiting".into()),
        ("internal_status", "approved".into()),
        ("cancelled", false.into()),
        ("archived", false.into()),
        ("created", now_ms.into()),
        ("updated", now_ms.into()),
    ];
    for (key, default) in defaults {
        if doc.get(key).is_none_or(Value::is_null) {
            doc.insert(key.into(), default);
        }
    }
    if let Some(Value::Array(lines)) = doc.get_mut("line_items") {
        for (line, number) in lines.iter_mut().zip(line_numbers) {
            if let Value::Object(line) = line {
                drop_nulls(line, OPTIONAL_LINE_FIELDS);
                line.insert("line_number".into(), (*number).into());
                for (key, default) in [
                    ("qty_shipped", Value::from(0)),
                    ("requires_shipping", true.into()),
                ] {
                    if line.get(key).is_none_or(Value::is_null) {
                        line.insert(key.into(), default);
                    }
                }
            }
        }
    }
    Value::Object(doc)
}

#[derive(Clone, Copy, PartialEq)]
enum Need {
    /// May be absent or null.
    Optional,
    /// Must be there (may be empty, for strings).
    Present,
    /// Must be there and not empty.
    NonEmpty,
}

/// Field checks on one JSON object, appending problems with full paths.
struct Check<'a, 'p> {
    obj: &'a Map<String, Value>,
    path: String,
    problems: &'p mut Vec<Problem>,
}

impl<'a> Check<'a, '_> {
    fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn problem(&mut self, key: &str, what: String) {
        let at = self.at(key);
        self.problems.push(Problem::new(at, what));
    }

    fn nested<'b>(&mut self, obj: &'b Map<String, Value>, key: &str) -> Check<'b, '_> {
        Check {
            path: self.at(key),
            obj,
            problems: self.problems,
        }
    }

    /// Absent (or null) fields: a problem unless optional. Returns the field.
    fn field(&mut self, key: &str, need: Need) -> Option<&'a Value> {
        match self.obj.get(key) {
            None | Some(Value::Null) => {
                if need != Need::Optional {
                    self.problem(key, "required field is missing".into());
                }
                None
            }
            Some(v) => Some(v),
        }
    }

    fn string(&mut self, key: &str, need: Need) -> Option<String> {
        match self.field(key, need)? {
            Value::String(s) if need == Need::NonEmpty && s.trim().is_empty() => {
                self.problem(key, "must not be empty".into());
                None
            }
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(key, format!("expected a string, got {}", describe(other)));
                None
            }
        }
    }

    /// A string kept in an index: at most [`MAX_FIELD_CHARS`].
    fn indexed(&mut self, key: &str, need: Need) {
        if let Some(s) = self.string(key, need)
            && let Some(what) = length_problem(&s, MAX_FIELD_CHARS)
        {
            self.problem(key, what);
        }
    }

    /// A required reference: not empty, and no edge white space or control
    /// character ([`reference_problem`]).
    fn reference(&mut self, key: &str) -> Option<String> {
        let s = self.string(key, Need::NonEmpty)?;
        if let Some(what) = reference_problem(&s) {
            self.problem(key, what);
            return None;
        }
        Some(s)
    }

    fn one_of(&mut self, key: &str, allowed: &[&str]) {
        if let Some(s) = self.string(key, Need::Optional)
            && !allowed.contains(&s.as_str())
        {
            self.problem(
                key,
                format!("expected one of {}, got {s:?}", allowed.join(", ")),
            );
        }
    }

    /// A boolean; `required` makes absence a problem.
    fn boolean(&mut self, key: &str, required: bool) {
        let need = if required {
            Need::Present
        } else {
            Need::Optional
        };
        if let Some(v) = self.field(key, need)
            && !v.is_boolean()
        {
            self.problem(key, format!("expected true or false, got {}", describe(v)));
        }
    }

    fn number(&mut self, key: &str, need: Need, range: Option<(f64, f64)>) {
        let Some(v) = self.field(key, need) else {
            return;
        };
        match v.as_f64() {
            None => self.problem(key, format!("expected a number, got {}", describe(v))),
            Some(n) => {
                // `got` as sent (serde_json's shortest form: -1e300, not
                // 301 digits), and no upper bound named when there is none.
                if let Some((lo, hi)) = range
                    && !(lo..=hi).contains(&n)
                {
                    let what = if hi == f64::MAX {
                        format!("expected a number of at least {lo}, got {}", describe(v))
                    } else {
                        format!("expected a number from {lo} to {hi}, got {}", describe(v))
                    };
                    self.problem(key, what);
                }
            }
        }
    }

    /// An integer from `min` to `max`, absent allowed unless `need` says
    /// otherwise.
    fn integer(&mut self, key: &str, need: Need, min: i64, max: i64) -> Option<i64> {
        let v = self.field(key, need)?;
        match v.as_i64() {
            Some(n) if n < min => {
                self.problem(
                    key,
                    format!("expected an integer of at least {min}, got {n}"),
                );
                None
            }
            Some(n) if n > max => {
                self.problem(key, format!("must be at most {max}, got {n}"));
                None
            }
            Some(n) => Some(n),
            // Beyond i64 but still a whole number.
            None if v.is_u64() => {
                self.problem(key, format!("must be at most {max}, got {v}"));
                None
            }
            None => {
                self.problem(key, format!("expected an integer, got {}", describe(v)));
                None
            }
        }
    }

    fn timestamp(&mut self, key: &str) {
        if let Some(v) = self.field(key, Need::Optional)
            && v.as_i64().is_none_or(|n| n < 0)
        {
            self.problem(
                key,
                format!(
                    "expected UNIX milliseconds (an integer), got {}",
                    describe(v)
                ),
            );
        }
    }

    fn object(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.field(key, Need::Present)? {
            Value::Object(o) => Some(o),
            other => {
                self.problem(key, format!("expected an object, got {}", describe(other)));
                None
            }
        }
    }

    fn address(&mut self, key: &str, reference: &str) {
        let Some(addr) = self.object(key) else { return };
        let mut a = self.nested(addr, key);
        for field in ADDRESS_FIELDS.iter().chain([&reference]) {
            let need = if ADDRESS_REQUIRED.contains(field) {
                Need::NonEmpty
            } else {
                Need::Optional
            };
            a.string(field, need);
        }
    }

    /// Checks `line_items`; returns each line's line number (given or
    /// defaulted to its position), for filling in.
    fn line_items(&mut self) -> Vec<i64> {
        let Some(items) = self.field("line_items", Need::Present) else {
            return Vec::new();
        };
        let Some(items) = items.as_array() else {
            self.problem(
                "line_items",
                format!("expected an array, got {}", describe(items)),
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.problem("line_items", "needs at least one line item".into());
        }
        let mut numbers = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let key = format!("line_items[{i}]");
            let Some(line) = item.as_object() else {
                self.problem(
                    &key,
                    format!("expected a line item object, got {}", describe(item)),
                );
                continue;
            };
            let mut l = self.nested(line, &key);
            let number = l
                .integer("line_number", Need::Optional, 1, i64::MAX)
                .unwrap_or(i as i64 + 1);
            if !seen.insert(number) {
                l.problem(
                    "line_number",
                    format!("duplicate line_number {number} in this order"),
                );
            }
            numbers.push(number);
            l.reference("sku");
            l.string("description", Need::Optional);
            l.integer("qty_ordered", Need::Present, 1, MAX_QTY);
            l.integer("qty_shipped", Need::Optional, 0, MAX_QTY);
            l.boolean("requires_shipping", false);
            l.number("unit_price", Need::Optional, Some((0.0, f64::MAX)));
        }
        numbers
    }
}

/// What inventory needs to know of a stored order document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    pub approved: bool,
    pub cancelled: bool,
    pub archived: bool,
    /// (sku, qty_ordered) of every line with `requires_shipping`.
    pub shipped_lines: Vec<(String, i64)>,
}

impl Facts {
    /// Reads the facts of a filled-in document (as made by [`validate`]).
    pub fn of(doc: &Value) -> Facts {
        let lines = doc["line_items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        Facts {
            approved: doc["internal_status"].as_str() == Some("approved"),
            cancelled: doc["cancelled"].as_bool().unwrap_or(false),
            archived: doc["archived"].as_bool().unwrap_or(false),
            shipped_lines: lines
                .iter()
                .filter(|l| l["requires_shipping"].as_bool().unwrap_or(true))
                .filter_map(|l| Some((l["sku"].as_str()?.to_string(), l["qty_ordered"].as_i64()?)))
                .collect(),
        }
    }

    /// The shipped quantity per SKU, lines of the same SKU added up, in the
    /// order SKUs first appear; `Err` names a SKU whose sum does not fit in
    /// an `i64` (validation bounds each line, so only a forged document can).
    pub fn per_sku(&self) -> Result<Vec<(String, i64)>, String> {
        let mut out: Vec<(String, i64)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (sku, qty) in &self.shipped_lines {
            match index.get(sku.as_str()) {
                Some(&i) => {
                    let sum = &mut out[i].1;
                    *sum = sum.checked_add(*qty).ok_or_else(|| sku.clone())?;
                }
                None => {
                    index.insert(sku, out.len());
                    out.push((sku.clone(), *qty));
                }
            }
        }
        Ok(out)
    }

    /// Whether this order holds a reservation (SPEC §7).
    pub fn reserves(&self) -> bool {
        self.approved && !self.cancelled && !self.archived
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn sample() -> Value {
        json!({
            "external_id": "shop-1001",
            "type": "Sales Order",
            "currency": "DKK",
            "reference": "PO-1",
            "line_items": [{"sku": "A", "qty_ordered": 2}, {"sku": "B", "qty_ordered": 1, "requires_shipping": false}],
            "billing_address": {"address1": "Vej 1", "city": "Aarhus", "country": "DK"},
            "shipping_address": {"address1": "Vej 1", "city": "Aarhus", "country": "DK"},
            "shipping_rule": {"name": "Post", "recovery": 49.0},
            "tax_rule": {"name": "VAT", "inclusive": true, "rate": 0.25},
            "x_custom": {"kept": [1, 2]}
        })
    }

    #[test]
    fn fills_defaults_and_keeps_unknown_fields() {
        let mut p = Vec::new();
        let o = validate(&sample(), "$", 42, &mut p).expect("valid");
        assert!(p.is_empty());
        assert_eq!(o.id, id_for_external_id("shop-1001"));
        assert_eq!(o.doc["status"], "Waiting");
        assert_eq!(o.doc["internal_status"], "approved");
        assert_eq!(o.doc["created"], 42);
        assert_eq!(o.doc["line_items"][1]["line_number"], 2);
        assert_eq!(o.doc["line_items"][0]["requires_shipping"], true);
        assert_eq!(o.doc["x_custom"], json!({"kept": [1, 2]}));
        assert_eq!(o.sent_hash, sent_hash(&sample()));
        let f = Facts::of(&o.doc);
        assert!(f.reserves());
        assert_eq!(f.shipped_lines, vec![("A".to_string(), 2)]);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let mut bad = sample();
        bad["line_items"][1]["qty_ordered"] = json!("ten");
        bad["currency"] = json!("dkk");
        bad["tax_rule"]["rate"] = json!(1.5);
        bad["billing_address"]
            .as_object_mut()
            .unwrap()
            .remove("city");
        bad["status"] = json!("Lost");
        let mut p = Vec::new();
        assert!(validate(&bad, "$", 0, &mut p).is_none());
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        for want in [
            "$.line_items[1].qty_ordered: expected an integer, got \"ten\"",
            "$.currency: expected an ISO 4217 code",
            "$.tax_rule.rate: expected a number from 0 to 1, got 1.5",
            "$.billing_address.city: required field is missing",
            "$.status: expected one of Waiting, Processing, Hold, Complete, got \"Lost\"",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(want)),
                "missing {want:?} in {text:#?}"
            );
        }
        assert_eq!(p.len(), 5, "{text:#?}");
    }

    fn nested(arrays: usize) -> Value {
        (0..arrays).fold(json!(1), |v, _| Value::Array(vec![v]))
    }

    #[test]
    fn nesting_is_limited_and_the_path_names_the_value() {
        let mut ok = sample();
        ok["x_custom"] = nested(MAX_DEPTH - 1);
        let mut p = Vec::new();
        assert!(validate(&ok, "$[2]", 0, &mut p).is_some(), "{p:?}");

        let mut bad = sample();
        bad["x_custom"] = nested(MAX_DEPTH);
        bad["line_items"][0]["a b\n"] = json!({"c": nested(MAX_DEPTH - 3)});
        assert!(validate(&bad, "$[2]", 0, &mut p).is_none());
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        let what = format!(
            "nested deeper than {MAX_DEPTH} levels of arrays and objects (the order object is level 1)"
        );
        assert_eq!(
            text,
            [
                format!(
                    "$[2].line_items[0][\"a b\\n\"].c{}: {what}",
                    "[0]".repeat(MAX_DEPTH - 4)
                ),
                format!("$[2].x_custom{}: {what}", "[0]".repeat(MAX_DEPTH - 1)),
            ]
        );
    }

    #[test]
    fn quantities_are_bounded() {
        let mut o = sample();
        o["line_items"][0]["qty_ordered"] = json!(MAX_QTY);
        o["line_items"][0]["qty_shipped"] = json!(MAX_QTY);
        let mut p = Vec::new();
        assert!(validate(&o, "$", 0, &mut p).is_some(), "{p:?}");
        o["line_items"][0]["qty_ordered"] = json!(MAX_QTY + 1);
        o["line_items"][1]["qty_shipped"] = json!(u64::MAX);
        o["line_items"][1]["qty_ordered"] = json!(-1);
        assert!(validate(&o, "$", 0, &mut p).is_none());
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "$.line_items[0].qty_ordered: must be at most 1000000000, got 1000000001",
                "$.line_items[1].qty_ordered: expected an integer of at least 1, got -1",
                "$.line_items[1].qty_shipped: must be at most 1000000000, got 18446744073709551615",
            ]
        );
    }

    /// Issue 15: a reference with edge white space or a control character
    /// meant one thing to the JSON side and another to a trimmed CSV cell.
    #[test]
    fn references_have_no_edge_white_space_or_control_characters() {
        let cases = [
            ("external_id", json!(" shop-1")),
            ("external_id", json!("shop-1\u{3000}")),
            ("external_id", json!("\u{FEFF}shop-1")),
            ("external_id", json!("shop\t1")),
        ];
        for (key, value) in cases {
            let mut o = sample();
            o[key] = value.clone();
            let mut p = Vec::new();
            assert!(validate(&o, "$", 0, &mut p).is_none(), "{value}");
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!(p[0].at, "$.external_id");
        }
        let mut o = sample();
        o["line_items"][1]["sku"] = json!("B\u{0}");
        o["id"] = json!(" 6f1c5a52-0d36-4a4f-9a57-7f3c6b0e2a11");
        let mut p = Vec::new();
        assert!(validate(&o, "$", 0, &mut p).is_none());
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "$.id: expected a UUID, got \" 6f1c5a52-0d36-4a4f-9a57-7f3c6b0e2a11\"",
                "$.line_items[1].sku: contains a control character (U+0000 at character 2); not allowed in a reference",
            ]
        );
        // Inside, white space is fine.
        let mut o = sample();
        o["external_id"] = json!("shop 1");
        o["line_items"][0]["sku"] = json!("MUG RED");
        assert!(validate(&o, "$", 0, &mut p).is_some());
        assert_eq!(
            reference_problem(" a"),
            Some("begins or ends with white space (\" a\"); not allowed in a reference".into())
        );
    }

    /// Issue 15: known optional fields sent as null were echoed back as
    /// null in answers and export files; unknown ones stay as sent.
    #[test]
    fn known_optional_nulls_are_left_out_of_the_document() {
        let mut o = sample();
        o["channel"] = Value::Null;
        o["account_id"] = Value::Null;
        o["billing_address"]["state"] = Value::Null;
        o["shipping_address"]["shipping_reference"] = Value::Null;
        o["line_items"][0]["description"] = Value::Null;
        o["line_items"][0]["unit_price"] = Value::Null;
        o["x_custom"] = Value::Null;
        let mut p = Vec::new();
        let v = validate(&o, "$", 0, &mut p).expect("valid");
        let doc = v.doc.as_object().unwrap();
        assert!(!doc.contains_key("channel") && !doc.contains_key("account_id"));
        assert!(
            !v.doc["billing_address"]
                .as_object()
                .unwrap()
                .contains_key("state")
        );
        assert!(
            !v.doc["shipping_address"]
                .as_object()
                .unwrap()
                .contains_key("shipping_reference")
        );
        let line = v.doc["line_items"][0].as_object().unwrap();
        assert!(!line.contains_key("description") && !line.contains_key("unit_price"));
        assert_eq!(doc["x_custom"], Value::Null);
        // The order as sent is what duplicates are decided on: unchanged.
        assert_eq!(v.sent_hash, sent_hash(&o));
    }

    /// Issue 15: a negative unit_price printed f64::MAX in 309 digits.
    #[test]
    fn an_unbounded_range_names_only_its_lower_bound() {
        let mut o = sample();
        o["line_items"][0]["unit_price"] = json!(-1e300);
        let mut p = Vec::new();
        assert!(validate(&o, "$", 0, &mut p).is_none());
        assert_eq!(
            p[0].to_string(),
            "$.line_items[0].unit_price: expected a number of at least 0, got -1e+300"
        );
    }

    #[test]
    fn per_sku_sums_lines_of_the_same_sku_checked() {
        let mut f = Facts {
            approved: true,
            cancelled: false,
            archived: false,
            shipped_lines: vec![("A".into(), 2), ("B".into(), 1), ("A".into(), 3)],
        };
        assert_eq!(f.per_sku(), Ok(vec![("A".into(), 5), ("B".into(), 1)]));
        f.shipped_lines.push(("B".into(), i64::MAX));
        assert_eq!(f.per_sku(), Err("B".into()));
    }
}
