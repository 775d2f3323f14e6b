//! The body of `POST /v10/orders/mark-as-exported`, `{"orders": [ENTRY,
//! …]}`, parsed as it streams in: entry by entry, each into at most its
//! four known fields (an array or object where a scalar belongs is skipped,
//! not built), and stopped at entry [`MAX_ENTRIES`]` + 1`. Memory follows
//! the entry limit, never the body: 16 MiB of `[0,0,…]` is read as far as
//! the 10,001st zero and no further.
//!
//! Every problem of every entry is collected, at `orders[i].field`; the
//! well-formed entries become ack rows (`line` = index + 1), which the
//! store then checks too, so an answer lists every problem.

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::csvin::AckRow;
use crate::problem::{Problem, describe};

/// The most entries one call may hold (422 beyond it).
pub const MAX_ENTRIES: usize = 10_000;
/// The fields an entry may have.
const FIELDS: [&str; 4] = ["order_id", "system_id", "regulate_inventory", "note"];
/// Unknown fields reported per entry (the rest are skipped unnamed).
const MAX_UNKNOWN: usize = 8;
/// The expected shape, for a body that is JSON but not it.
const SHAPE: &str =
    "expected {\"orders\": [{\"order_id\", \"system_id\", \"regulate_inventory\", \"note\"}]}";

/// The entries read: the rows of the well-formed ones and the problems of
/// the others, in entry order.
#[derive(Debug, Default)]
pub(super) struct Entries {
    pub rows: Vec<AckRow>,
    pub problems: Vec<Problem>,
}

/// Why the body was not read as entries.
#[derive(Debug)]
pub(super) enum BodyError {
    /// Not JSON (or the body could not be read: `io`).
    NotJson(serde_json::Error),
    /// JSON, but not `{"orders": [...]}`.
    Shape,
    /// More than [`MAX_ENTRIES`] entries (reading stopped there).
    TooMany,
}

impl BodyError {
    /// The answer's problem.
    pub fn problem(&self) -> Problem {
        match self {
            BodyError::NotJson(e) => Problem::new("body", format!("not JSON: {e}")),
            BodyError::Shape => Problem::new("orders", SHAPE),
            BodyError::TooMany => Problem::new(
                "orders",
                format!("more than {MAX_ENTRIES} entries: at most {MAX_ENTRIES} per call"),
            ),
        }
    }
}

/// Reads the body from `reader` (the bytes as they arrive).
pub(super) fn parse(reader: impl Read) -> Result<Entries, BodyError> {
    let mut out = Entries::default();
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let r = de
        .deserialize_any(Top {
            out: &mut out,
            failed: &mut failed,
        })
        .and_then(|()| de.end());
    match (failed, r) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(BodyError::NotJson(e)),
        (None, Ok(())) => Ok(out),
    }
}

/// Stops the deserializer, the reason kept in `failed` (serde's own error
/// would only carry a string).
fn fail<E: de::Error>(failed: &mut Option<BodyError>, why: BodyError) -> E {
    *failed = Some(why);
    E::custom("stopped")
}

/// The top level: an object whose `orders` is read as entries; other keys
/// are skipped.
struct Top<'a> {
    out: &'a mut Entries,
    failed: &'a mut Option<BodyError>,
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(SHAPE)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key != "orders" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if seen {
                return Err(fail(self.failed, BodyError::Shape));
            }
            seen = true;
            map.next_value_seed(Orders {
                out: &mut *self.out,
                failed: &mut *self.failed,
            })?;
        }
        if !seen {
            return Err(fail(self.failed, BodyError::Shape));
        }
        Ok(())
    }

    // Anything but an object.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(fail(self.failed, BodyError::Shape))
    }
}

/// The `orders` array, entry by entry.
struct Orders<'a> {
    out: &'a mut Entries,
    failed: &'a mut Option<BodyError>,
}

impl<'de> DeserializeSeed<'de> for Orders<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Orders<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while let Some(entry) = seq.next_element_seed(EntrySeed)? {
            if i == MAX_ENTRIES {
                return Err(fail(self.failed, BodyError::TooMany));
            }
            entry.check(i, self.out);
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(fail(self.failed, BodyError::Shape))
    }
}

/// One entry as read: its known fields, or what it was instead of an
/// object.
enum Entry {
    Object {
        fields: Map<String, Value>,
        unknown: Vec<String>,
    },
    /// Not an object (it is skipped, not built).
    Not,
}

struct EntrySeed;

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = Entry;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Entry, D::Error> {
        d.deserialize_any(EntrySeed)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an entry")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let mut fields = Map::new();
        let mut unknown = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if FIELDS.contains(&key.as_str()) {
                let v = map.next_value_seed(Scalar)?;
                fields.insert(key, v);
            } else {
                map.next_value::<IgnoredAny>()?;
                if unknown.len() < MAX_UNKNOWN {
                    unknown.push(key);
                }
            }
        }
        Ok(Entry::Object { fields, unknown })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Entry, A::Error> {
        Scalar.visit_seq(seq).map(|_| Entry::Not)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Entry, E> {
        Ok(Entry::Not)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Entry, E> {
        Ok(Entry::Not)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Entry, E> {
        Ok(Entry::Not)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Entry, E> {
        Ok(Entry::Not)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Entry, E> {
        Ok(Entry::Not)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Entry, E> {
        Ok(Entry::Not)
    }
}

/// A field's value: scalars as they are, an array or object as an empty
/// one of its kind (skipped, not built: only its kind is told).
struct Scalar;

impl<'de> DeserializeSeed<'de> for Scalar {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(Scalar)
    }
}

impl<'de> Visitor<'de> for Scalar {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Array(Vec::new()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Object(Map::new()))
    }
}

impl Entry {
    /// Entry `i`'s row into `out.rows` when it is well formed, its problems
    /// into `out.problems` otherwise.
    fn check(self, i: usize, out: &mut Entries) {
        let at = |f: &str| format!("orders[{i}].{f}");
        let (e, unknown) = match self {
            Entry::Object { fields, unknown } => (fields, unknown),
            Entry::Not => {
                out.problems
                    .push(Problem::new(format!("orders[{i}]"), "expected an object"));
                return;
            }
        };
        let problems = &mut out.problems;
        for k in unknown {
            problems.push(Problem::new(at(&k), "unknown field"));
        }
        let mut string = |f: &str, integer: bool| match e.get(f) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            // An ERP's numeric order id means the external id of those
            // digits (the seed types `order_id` as an integer).
            Some(Value::Number(n)) if integer && (n.is_u64() || n.is_i64()) => Some(n.to_string()),
            Some(v) => {
                let expected = if integer {
                    "a non-empty string or an integer"
                } else {
                    "a non-empty string"
                };
                problems.push(Problem::new(
                    at(f),
                    format!("expected {expected}, got {}", describe(v)),
                ));
                None
            }
            None => {
                problems.push(Problem::new(at(f), "required"));
                None
            }
        };
        let order_id = string("order_id", true);
        let system_id = string("system_id", false);
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
            out.rows.push(AckRow {
                line: i as u64 + 1,
                order_id,
                system_id,
                regulate,
                note,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Entries, BodyError> {
        parse(s.as_bytes())
    }

    #[test]
    fn entries_rows_and_problems() {
        let e = parse_str(
            r#"{"orders": [
                {"order_id": "a", "system_id": "erp", "regulate_inventory": true, "note": "n"},
                {"order_id": 1001, "system_id": "erp"},
                {"order_id": 1.5, "system_id": [1, 2], "regulate_inventory": "maybe", "x": {"y": 1}},
                7
            ], "other": [1, 2]}"#,
        )
        .unwrap();
        let ids: Vec<_> = e
            .rows
            .iter()
            .map(|r| (r.line, r.order_id.as_str()))
            .collect();
        assert_eq!(ids, [(1, "a"), (2, "1001")]);
        let p: Vec<_> = e.problems.iter().map(Problem::to_string).collect();
        assert_eq!(
            p,
            [
                "orders[2].x: unknown field",
                "orders[2].order_id: expected a non-empty string or an integer, got 1.5",
                "orders[2].system_id: expected a non-empty string, got an array",
                "orders[2].regulate_inventory: expected true or false, got \"maybe\"",
                "orders[3]: expected an object",
            ]
        );
    }

    #[test]
    fn empty_orders_are_no_entries() {
        let e = parse_str(r#"{"orders": []}"#).unwrap();
        assert!(e.rows.is_empty() && e.problems.is_empty());
    }

    #[test]
    fn the_shape_and_json_are_checked() {
        for body in ["[]", "{}", r#"{"orders": 1}"#, r#"{"orders": {}}"#, "\"x\""] {
            assert!(matches!(parse_str(body), Err(BodyError::Shape)), "{body}");
        }
        for body in ["", "{\"orders\": [", "{\"orders\": []} x"] {
            assert!(
                matches!(parse_str(body), Err(BodyError::NotJson(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn reading_stops_after_the_limit() {
        // The body goes on well past the limit, then is not even JSON: the
        // parse stops at entry 10,001 without reading it.
        let mut body = String::from("{\"orders\": [");
        body.push_str(&"0,".repeat(MAX_ENTRIES + 1));
        body.push_str("garbage");
        assert!(matches!(parse_str(&body), Err(BodyError::TooMany)));
        let mut ok = String::from("{\"orders\": [");
        ok.push_str(&vec!["0"; MAX_ENTRIES].join(","));
        ok.push_str("]}");
        assert_eq!(parse_str(&ok).unwrap().problems.len(), MAX_ENTRIES);
    }
}
