//! One inbox file's content, parsed and validated: orders, acknowledgements or
//! stock. This is the middle of the flow (file → **input** → store) and never
//! touches the store or the file system.

use serde_json::Value;

use crate::csvin::Encoding;
use crate::csvin::{self, AckRow, CsvKind, StockRow, Table};

/// The rows of a CSV file, read one at a time (see [`RowStream::each`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RowStream<'a> {
    table: Table<'a>,
    kind: CsvKind,
}

/// One row of a [`RowStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvRow {
    Ack(AckRow),
    /// `absolute` for `sku,in_stock`, else an adjustment.
    Stock {
        absolute: bool,
        row: StockRow,
    },
}

impl RowStream<'_> {
    /// The size of the file's text, in bytes.
    pub fn size(&self) -> usize {
        self.table.size()
    }

    /// Calls `f` with each row in file order, parsed one at a time (a row
    /// that does not parse is its problem); stops at the first error `f`
    /// returns.
    pub fn each<E>(
        &self,
        mut f: impl FnMut(Result<CsvRow, Problem>) -> Result<(), E>,
    ) -> Result<(), E> {
        let t = &self.table;
        t.rows(|row| {
            f(match self.kind {
                CsvKind::Acks => t.ack_row(&row).map(CsvRow::Ack),
                kind => t.stock_row(&row, kind).map(|row| CsvRow::Stock {
                    absolute: kind == CsvKind::StockAbsolute,
                    row,
                }),
            })
        })
    }
}
use crate::order::{self, Order};
use crate::problem::Problem;

/// The validated content of one inbox file.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    /// Orders with the path each was found at, for messages (`$.orders[2]`).
    Orders(Vec<(String, Order)>),
    /// Orders read one at a time from the file's bytes as they are applied,
    /// so memory holds one order, not the whole file's tree.
    OrderStream(OrderStream<'a>),
    /// Acknowledgement or stock rows of a CSV file, read one at a time
    /// from its text as they are applied.
    Rows(RowStream<'a>),
    /// Acknowledgement rows (SPEC §6).
    Acks(Vec<AckRow>),
    /// Stock rows; `absolute` for `sku,in_stock`, else adjustments (SPEC §5).
    Stock { absolute: bool, rows: Vec<StockRow> },
}

impl Input<'_> {
    /// A word for logs: `orders`, `acks`, `stock`.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Orders(_) | Input::OrderStream(_) => "orders",
            Input::Acks(_) => "acks",
            Input::Rows(r) if r.kind == CsvKind::Acks => "acks",
            Input::Stock { .. } | Input::Rows(_) => "stock",
        }
    }
}

/// A parsed file: the items that are valid on their own, and the problems
/// of the others. The file is applied only if there are no problems at all,
/// but the valid items are still checked against the store so that the
/// report lists every problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<'a> {
    /// `None` when the file could not be read as its kind at all.
    pub input: Option<Input<'a>>,
    pub problems: Vec<Problem>,
}

impl<'a> Parsed<'a> {
    fn whole(r: Result<Input<'a>, Vec<Problem>>) -> Parsed<'a> {
        match r {
            Ok(input) => Parsed {
                input: Some(input),
                problems: Vec::new(),
            },
            Err(problems) => Parsed {
                input: None,
                problems,
            },
        }
    }

    fn partial(input: Input<'a>, problems: Vec<Problem>) -> Parsed<'a> {
        Parsed {
            input: Some(input),
            problems,
        }
    }
}

/// Parses a file named `name` with content `bytes`. `now_ms` is the time of
/// receipt (the default `created`/`updated` of orders).
pub fn parse<'a>(name: &str, bytes: &'a [u8], encoding: Encoding, now_ms: i64) -> Parsed<'a> {
    let lower = name.to_ascii_lowercase();
    let known = [".json", ".ndjson", ".jsonl", ".csv"];
    if known.iter().any(|ext| lower.ends_with(ext))
        && strip_bom(bytes).iter().all(u8::is_ascii_whitespace)
    {
        // The same words for every kind (not the JSON parser's "EOF while
        // parsing a value").
        return Parsed::whole(Err(vec![Problem::new("file", "the file is empty")]));
    }
    if lower.ends_with(".json") {
        parse_json(strip_bom(bytes), now_ms)
    } else if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
        parse_ndjson(strip_bom(bytes), now_ms)
    } else if lower.ends_with(".csv") {
        parse_csv(bytes, encoding)
    } else {
        Parsed::whole(Err(vec![Problem::new(
            "file",
            "unsupported file type: expected .json, .ndjson, .jsonl or .csv",
        )]))
    }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// serde_json's own nesting limit: it refuses to read deeper documents.
const PARSER_DEPTH: usize = 128;

/// What a JSON syntax error says, without serde_json's trailing
/// " at line L column C" (the problem's `at` names them first).
fn json_what(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with("recursion limit exceeded") {
        return format!(
            "nested more than {PARSER_DEPTH} levels deep (arrays and objects), which the JSON parser refuses; an order may nest at most {} levels",
            order::MAX_DEPTH
        );
    }
    let what = msg
        .rsplit_once(" at line ")
        .map_or(msg.as_str(), |(head, _)| head);
    if what == "number out of range" {
        return "invalid JSON: number out of range (a number must be within about ±1.8e308, a 64-bit float)".into();
    }
    format!("invalid JSON: {what}")
}

fn json_problem(e: &serde_json::Error) -> Problem {
    Problem::new(
        format!("line {}, column {}", e.line(), e.column()),
        json_what(e),
    )
}

/// How a `.json` file holds its orders, found by a first pass that reads
/// the document's structure without building it (and reports a syntax
/// error, or nesting beyond the parser's limit, as the file's one problem).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonShape {
    /// `[order, …]`
    Array,
    /// `{"orders": [order, …]}`
    Wrapper,
    /// One order object (or something that is not an order at all).
    One,
}

/// The kind of a JSON value, read without keeping it.
struct Kind(&'static str);

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
                Ok(Kind("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
                Ok(Kind("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
                Ok(Kind("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
                Ok(Kind("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
                Ok(Kind("a string"))
            }
            fn visit_unit<E>(self) -> Result<Kind, E> {
                Ok(Kind("null"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Kind, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Kind("an array"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Kind, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Kind("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// The top level of a JSON document: its kind and, for an object, the kinds
/// of `orders` and whether it has `external_id`.
struct Top {
    kind: &'static str,
    orders: Option<&'static str>,
    external_id: bool,
}

impl<'de> serde::Deserialize<'de> for Top {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Top, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<Top, A::Error> {
                let k = <Kind as serde::Deserialize>::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(a),
                )?;
                Ok(Top {
                    kind: k.0,
                    orders: None,
                    external_id: false,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Top, A::Error> {
                let mut top = Top {
                    kind: "an object",
                    orders: None,
                    external_id: false,
                };
                while let Some(key) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                    let kind = a.next_value::<Kind>()?;
                    match key.as_ref() {
                        "orders" => top.orders = Some(kind.0),
                        "external_id" => top.external_id = true,
                        _ => {}
                    }
                }
                Ok(top)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Top, E> {
                Ok(Top {
                    kind: "a boolean",
                    orders: None,
                    external_id: false,
                })
            }
            fn visit_i64<E>(self, _: i64) -> Result<Top, E> {
                Ok(Top {
                    kind: "a number",
                    orders: None,
                    external_id: false,
                })
            }
            fn visit_u64<E>(self, _: u64) -> Result<Top, E> {
                Ok(Top {
                    kind: "a number",
                    orders: None,
                    external_id: false,
                })
            }
            fn visit_f64<E>(self, _: f64) -> Result<Top, E> {
                Ok(Top {
                    kind: "a number",
                    orders: None,
                    external_id: false,
                })
            }
            fn visit_str<E>(self, _: &str) -> Result<Top, E> {
                Ok(Top {
                    kind: "a string",
                    orders: None,
                    external_id: false,
                })
            }
            fn visit_unit<E>(self) -> Result<Top, E> {
                Ok(Top {
                    kind: "null",
                    orders: None,
                    external_id: false,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Orders in a file's bytes, read one at a time (see [`OrderStream::each`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderStream<'a> {
    bytes: &'a [u8],
    shape: StreamShape,
    now_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamShape {
    Json(JsonShape),
    Ndjson,
}

/// One order of a stream: where it is (`$[3]`, `line 7`) and the order, or
/// the problems that make it invalid.
pub type StreamItem = (String, Result<Order, Vec<Problem>>);

impl OrderStream<'_> {
    /// The size of the file, in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Calls `f` with each order in file order, parsing and validating one
    /// at a time; stops at the first error `f` returns.
    pub fn each<E>(&self, mut f: impl FnMut(StreamItem) -> Result<(), E>) -> Result<(), E> {
        let now_ms = self.now_ms;
        let validate = |v: Value, path: String| -> StreamItem {
            let mut problems = Vec::new();
            match order::validate(&v, &path, now_ms, &mut problems) {
                Some(o) => (path, Ok(o)),
                None => (path, Err(problems)),
            }
        };
        match self.shape {
            StreamShape::Ndjson => {
                // Valid UTF-8: checked when the stream was made.
                let text = std::str::from_utf8(self.bytes).unwrap_or_default();
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let at = format!("line {}", i + 1);
                    let item = match serde_json::from_str::<Value>(line) {
                        Err(e) => (
                            at.clone(),
                            Err(vec![Problem::new(
                                format!("{at}, column {}", e.column()),
                                json_what(&e),
                            )]),
                        ),
                        Ok(v) => {
                            let (_, r) = validate(v, "$".into());
                            (
                                at.clone(),
                                r.map_err(|ps| ps.into_iter().map(|p| p.within(&at)).collect()),
                            )
                        }
                    };
                    f(item)?;
                }
                Ok(())
            }
            StreamShape::Json(JsonShape::One) => {
                // One object (the first pass proved the syntax).
                match serde_json::from_slice::<Value>(self.bytes) {
                    Ok(v) => f(validate(v, "$".into())),
                    Err(e) => f(("$".into(), Err(vec![json_problem(&e)]))),
                }
            }
            StreamShape::Json(shape) => {
                let prefix = if shape == JsonShape::Array {
                    "$"
                } else {
                    "$.orders"
                };
                let mut failed: Option<E> = None;
                let mut on_item = |i: usize, v: Value| -> bool {
                    match f(validate(v, format!("{prefix}[{i}]"))) {
                        Ok(()) => true,
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    }
                };
                let mut de = serde_json::Deserializer::from_slice(self.bytes);
                let each = Each { f: &mut on_item };
                let r = if shape == JsonShape::Array {
                    serde::de::DeserializeSeed::deserialize(each, &mut de)
                } else {
                    serde::de::DeserializeSeed::deserialize(Wrapper(each), &mut de)
                };
                if let Some(e) = failed {
                    return Err(e);
                }
                if let Err(e) = r {
                    // The first pass proved the syntax; only a stop lands here.
                    tracing::debug!(error = %e, "order stream ended early");
                }
                Ok(())
            }
        }
    }
}

/// Streams the elements of a JSON array to a callback, one `Value` at a
/// time; the callback returns false to stop.
struct Each<'f> {
    f: &'f mut dyn FnMut(usize, Value) -> bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Each<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Each<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of orders")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while let Some(v) = seq.next_element::<Value>()? {
            if !(self.f)(i, v) {
                return Err(serde::de::Error::custom("stopped"));
            }
            i += 1;
        }
        Ok(())
    }
}

/// `{"orders": [...]}`: streams the `orders` array, skips the other fields.
struct Wrapper<'f>(Each<'f>);

impl<'de> serde::de::DeserializeSeed<'de> for Wrapper<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Wrapper<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with orders")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut each = Some(self.0);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match (key.as_ref(), each.take()) {
                ("orders", Some(e)) => map.next_value_seed(e)?,
                (_, e) => {
                    each = e;
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

fn parse_json(bytes: &[u8], now_ms: i64) -> Parsed<'_> {
    // First pass: the syntax and the top level, building nothing.
    let top: Top = match serde_json::from_slice(bytes) {
        Ok(t) => t,
        Err(e) => return Parsed::whole(Err(vec![json_problem(&e)])),
    };
    let shape = match (top.kind, top.orders, top.external_id) {
        ("an array", _, _) => JsonShape::Array,
        // `{"orders": [...]}` is a wrapper; an order object has no `orders` field.
        ("an object", Some("an array"), false) => JsonShape::Wrapper,
        ("an object", Some(other), false) => {
            return Parsed::whole(Err(vec![Problem::new(
                "$.orders",
                format!("expected an array of orders, got {other}"),
            )]));
        }
        _ => JsonShape::One,
    };
    Parsed::partial(
        Input::OrderStream(OrderStream {
            bytes,
            shape: StreamShape::Json(shape),
            now_ms,
        }),
        Vec::new(),
    )
}

fn parse_ndjson(bytes: &[u8], now_ms: i64) -> Parsed<'_> {
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        let p = Problem::new(format!("line {line}"), "not valid UTF-8");
        return Parsed::whole(Err(vec![p]));
    }
    Parsed::partial(
        Input::OrderStream(OrderStream {
            bytes,
            shape: StreamShape::Ndjson,
            now_ms,
        }),
        Vec::new(),
    )
}

fn parse_csv(bytes: &[u8], encoding: Encoding) -> Parsed<'_> {
    let table = csvin::decode(bytes, encoding)
        .map_err(|p| vec![p])
        .and_then(Table::parse);
    let mut table = match table {
        Ok(t) => t,
        Err(p) => return Parsed::whole(Err(p)),
    };
    let kind = match table.kind() {
        Err(p) => return Parsed::whole(Err(vec![p])),
        Ok(kind) => kind,
    };
    // Rows that did not match the header; the rows' own problems are found
    // as they are read.
    let problems = std::mem::take(&mut table.problems);
    Parsed::partial(Input::Rows(RowStream { table, kind }), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_syntax_error_names_line_and_column() {
        let p = parse("a.json", b"{\n  \"x\": ,\n}", Encoding::Utf8, 0).problems;
        assert_eq!(p.len(), 1);
        assert!(p[0].at.starts_with("line 2, column"), "{}", p[0]);
    }

    /// Arrays and the wrapper are read one order at a time, each with its
    /// path; a wrapper whose `orders` is not an array says so.
    #[test]
    fn json_orders_stream_with_their_paths() {
        let paths = |text: &str| {
            let mut out = Vec::new();
            if let Some(Input::OrderStream(s)) =
                parse("a.json", text.as_bytes(), Encoding::Utf8, 0).input
            {
                s.each(|(path, _)| {
                    out.push(path);
                    Ok::<_, ()>(())
                })
                .unwrap();
            }
            out
        };
        assert_eq!(paths("[{}, {}]"), ["$[0]", "$[1]"]);
        assert_eq!(
            paths(r#"{"x": 1, "orders": [{}], "y": [1]}"#),
            ["$.orders[0]"]
        );
        assert_eq!(paths(r#"{"external_id": "e", "orders": []}"#), ["$"]);
        let p = parse("a.json", br#"{"orders": 5}"#, Encoding::Utf8, 0).problems;
        assert_eq!(
            p[0].to_string(),
            "$.orders: expected an array of orders, got a number"
        );
    }

    /// Issue 15: an empty JSON file was "invalid JSON: EOF while parsing a
    /// value"; every kind now says the same.
    #[test]
    fn an_empty_file_says_so_for_every_kind() {
        for name in ["a.json", "a.ndjson", "a.jsonl", "a.csv", "A.CSV"] {
            for bytes in [&b""[..], b"  \r\n\n\t", b"\xEF\xBB\xBF\n"] {
                let p = parse(name, bytes, Encoding::Utf8, 0);
                assert!(p.input.is_none(), "{name} {bytes:?}");
                let text: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
                assert_eq!(text, ["file: the file is empty"], "{name} {bytes:?}");
            }
        }
    }

    /// Issue 15: a binary .csv was told to set an encoding.
    #[test]
    fn a_binary_csv_is_told_it_is_not_text() {
        for encoding in [Encoding::Utf8, Encoding::Windows1252] {
            for bytes in [
                &b"sku,in_stock\nA\x00B,1\n"[..],
                b"\xFF\xFEs\x00k\x00u\x00",
                b"PK\x03\x04\x14\x00\x06\x00",
            ] {
                let p = parse("a.csv", bytes, encoding, 0).problems;
                assert_eq!(p.len(), 1);
                assert!(p[0].what.starts_with("not a text CSV file"), "{}", p[0]);
                assert!(!p[0].what.contains("encoding ="), "{}", p[0]);
            }
        }
        let p = parse(
            "a.csv",
            b"sku,in_stock\n\x01\x02\xFF\xFE,1\n",
            Encoding::Utf8,
            0,
        )
        .problems;
        assert!(
            p[0].what
                .starts_with("not a text CSV file: not valid UTF-8"),
            "{}",
            p[0]
        );
        // Text in another encoding still gets the hint.
        let p = parse("a.csv", b"sku,in_stock\nK\xd8D,1\n", Encoding::Utf8, 0).problems;
        assert!(
            p[0].what.contains("encoding = \"windows-1252\""),
            "{}",
            p[0]
        );
    }

    #[test]
    fn unsupported_extension() {
        let p = parse("a.xml", b"<x/>", Encoding::Utf8, 0).problems;
        assert!(p[0].what.starts_with("unsupported file type"));
    }

    /// Every problem of a parsed file, the stream's included.
    fn all_problems(parsed: Parsed) -> Vec<Problem> {
        let mut p = parsed.problems;
        if let Some(Input::OrderStream(s)) = parsed.input {
            s.each(|(_, r)| {
                p.extend(r.err().unwrap_or_default());
                Ok::<_, ()>(())
            })
            .unwrap();
        }
        p
    }

    #[test]
    fn ndjson_problems_name_the_line() {
        let p = all_problems(parse(
            "a.ndjson",
            b"\n{\"external_id\": 5}\n",
            Encoding::Utf8,
            0,
        ));
        assert!(p.iter().all(|p| p.at.starts_with("line 2: $")), "{p:?}");
        assert!(
            p.iter()
                .any(|p| p.to_string() == "line 2: $.external_id: expected a string, got 5")
        );
    }
}
