//! One inbox file's content, parsed and validated: orders, acknowledgements or
//! stock. This is the middle of the flow (file → **input** → store) and never
//! touches the store or the file system.

use serde_json::Value;

use crate::config::Encoding;
use crate::csvin::{self, AckRow, CsvKind, StockRow, Table};
use crate::order::{self, Order};
use crate::problem::Problem;

/// The validated content of one inbox file.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Orders with the path each was found at, for messages (`$.orders[2]`).
    Orders(Vec<(String, Order)>),
    /// Acknowledgement rows (SPEC §6).
    Acks(Vec<AckRow>),
    /// Stock rows; `absolute` for `sku,in_stock`, else adjustments (SPEC §5).
    Stock { absolute: bool, rows: Vec<StockRow> },
}

impl Input {
    /// A word for logs: `orders`, `acks`, `stock`.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Orders(_) => "orders",
            Input::Acks(_) => "acks",
            Input::Stock { .. } => "stock",
        }
    }
}

/// A parsed file: the items that are valid on their own, and the problems
/// of the others. The file is applied only if there are no problems at all,
/// but the valid items are still checked against the store so that the
/// report lists every problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// `None` when the file could not be read as its kind at all.
    pub input: Option<Input>,
    pub problems: Vec<Problem>,
}

impl Parsed {
    fn whole(r: Result<Input, Vec<Problem>>) -> Parsed {
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

    fn partial(input: Input, problems: Vec<Problem>) -> Parsed {
        Parsed {
            input: Some(input),
            problems,
        }
    }
}

/// Parses a file named `name` with content `bytes`. `now_ms` is the time of
/// receipt (the default `created`/`updated` of orders).
pub fn parse(name: &str, bytes: &[u8], encoding: Encoding, now_ms: i64) -> Parsed {
    let lower = name.to_ascii_lowercase();
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
    format!("invalid JSON: {what}")
}

fn json_problem(e: &serde_json::Error) -> Problem {
    Problem::new(
        format!("line {}, column {}", e.line(), e.column()),
        json_what(e),
    )
}

fn parse_json(bytes: &[u8], now_ms: i64) -> Parsed {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return Parsed::whole(Err(vec![json_problem(&e)])),
    };
    let mut problems = Vec::new();
    let mut orders = Vec::new();
    let mut take = |v: &Value, path: String, problems: &mut Vec<Problem>| {
        if let Some(o) = order::validate(v, &path, now_ms, problems) {
            orders.push((path, o));
        }
    };
    match &value {
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                take(v, format!("$[{i}]"), &mut problems);
            }
        }
        // `{"orders": [...]}` is a wrapper; an order object has no `orders` field.
        Value::Object(obj) if obj.contains_key("orders") && !obj.contains_key("external_id") => {
            match &obj["orders"] {
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        take(v, format!("$.orders[{i}]"), &mut problems);
                    }
                }
                other => problems.push(Problem::new(
                    "$.orders",
                    format!(
                        "expected an array of orders, got {}",
                        crate::problem::describe(other)
                    ),
                )),
            }
        }
        v => take(v, "$".into(), &mut problems),
    }
    Parsed::partial(Input::Orders(orders), problems)
}

fn parse_ndjson(bytes: &[u8], now_ms: i64) -> Parsed {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            let p = Problem::new(format!("line {line}"), "not valid UTF-8");
            return Parsed::whole(Err(vec![p]));
        }
    };
    let mut problems = Vec::new();
    let mut orders = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", i + 1);
        match serde_json::from_str::<Value>(line) {
            Err(e) => problems.push(Problem::new(
                format!("{at}, column {}", e.column()),
                json_what(&e),
            )),
            Ok(v) => {
                let mut found = Vec::new();
                match order::validate(&v, "$", now_ms, &mut found) {
                    Some(o) => orders.push((at, o)),
                    None => problems.extend(found.into_iter().map(|p| p.within(&at))),
                }
            }
        }
    }
    Parsed::partial(Input::Orders(orders), problems)
}

fn parse_csv(bytes: &[u8], encoding: Encoding) -> Parsed {
    let table = csvin::decode(bytes, encoding)
        .map_err(|p| vec![p])
        .and_then(|text| Table::parse(&text));
    let table = match table {
        Ok(t) => t,
        Err(p) => return Parsed::whole(Err(p)),
    };
    let (input, mut problems) = match table.kind() {
        Err(p) => return Parsed::whole(Err(vec![p])),
        Ok(CsvKind::Acks) => {
            let (rows, problems) = csvin::ack_rows(&table);
            (Input::Acks(rows), problems)
        }
        Ok(kind) => {
            let (rows, problems) = csvin::stock_rows(&table, kind);
            let absolute = kind == CsvKind::StockAbsolute;
            (Input::Stock { absolute, rows }, problems)
        }
    };
    // Rows that did not match the header, back in file order.
    problems.extend(table.problems);
    problems.sort_by_key(Problem::line);
    Parsed::partial(input, problems)
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

    #[test]
    fn unsupported_extension() {
        let p = parse("a.xml", b"<x/>", Encoding::Utf8, 0).problems;
        assert!(p[0].what.starts_with("unsupported file type"));
    }

    #[test]
    fn ndjson_problems_name_the_line() {
        let p = parse("a.ndjson", b"\n{\"external_id\": 5}\n", Encoding::Utf8, 0).problems;
        assert!(p.iter().all(|p| p.at.starts_with("line 2: $")), "{p:?}");
        assert!(
            p.iter()
                .any(|p| p.to_string() == "line 2: $.external_id: expected a string, got 5")
        );
    }
}
