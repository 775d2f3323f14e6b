//! The query string of `GET /v10/orders/export`, parsed with `serde_qs`
//! (nested brackets, raw or percent-encoded) into a tree, then checked
//! field by field so that every problem is reported with where and what
//! (`filter_groups[0][filters][1][operator]: unknown operator "like"; …`).
//!
//! Filters are compiled by [`crate::filter`] with the config's own rules, so
//! a filter means the same in a request and in `[[systems.filter_groups]]`.

use serde_json::{Map, Value};

use crate::filter::{FilterGroup, FilterSpec};
use crate::problem::Problem;

/// Orders per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 1_000;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;

/// A checked export request.
#[derive(Debug)]
pub struct ExportQuery {
    pub system_id: String,
    /// UNIX ms: orders marked exported at or after it are returned again.
    pub not_exported_since: Option<i64>,
    pub include_not_approved: bool,
    pub include_cancelled: bool,
    pub include_archived: bool,
    pub filter_groups: Vec<FilterGroup>,
    /// `includes[]=lines`.
    pub lines: bool,
    pub limit: usize,
    pub page: usize,
}

const KNOWN: &[&str] = &[
    "system_id",
    "not_exported_since",
    "include_not_approved",
    "include_cancelled",
    "include_archived",
    "filter_groups",
    "includes",
    "limit",
    "page",
];

/// Parses a raw query string. `system_id` is `None` when missing; every
/// other problem is in the list (empty: the query is good).
pub fn parse(raw: &str) -> (Option<ExportQuery>, Option<String>, Vec<Problem>) {
    // serde_qs decodes %5B/%5D (upper case) in keys in form mode; lower
    // case is as valid, so it is made upper case first.
    let raw = raw.replace("%5b", "%5B").replace("%5d", "%5D");
    let config = serde_qs::Config::new().max_depth(6).use_form_encoding(true);
    let tree: Map<String, Value> = match config.deserialize_str(&raw) {
        Ok(t) => t,
        Err(e) => {
            return (
                None,
                None,
                vec![Problem::new("query", format!("cannot parse: {e}"))],
            );
        }
    };
    let mut problems = Vec::new();
    // U+0000 is no use in a query and what PostgreSQL refuses in a
    // text: refused here, on both backends, before the store is asked.
    // A parameter without a name is refused below as such, NUL or not.
    for (key, v) in tree.iter().filter(|(key, _)| !key.trim().is_empty()) {
        nul_paths(v, &key.escape_debug().to_string(), &mut problems);
    }
    for key in tree.keys() {
        if !KNOWN.contains(&key.as_str()) {
            let expected = format!("expected one of {}", KNOWN.join(", "));
            problems.push(if key.trim().is_empty() {
                // `=x`, `+=x`: no name to say where the problem is.
                Problem::new(
                    "query",
                    format!("a parameter without a name ({key:?}); {expected}"),
                )
            } else {
                Problem::new(key.as_str(), format!("unknown parameter; {expected}"))
            });
        }
    }
    let system_id = match tree.get("system_id") {
        None => {
            problems.push(Problem::new("system_id", "required"));
            None
        }
        Some(v) => match text(v) {
            Some(s) if !s.is_empty() => Some(s),
            _ => {
                problems.push(Problem::new("system_id", "expected a system id"));
                None
            }
        },
    };
    let since = tree.get("not_exported_since").and_then(|v| {
        let parsed = text(v).and_then(|t| parse_time(&t));
        if parsed.is_none() {
            problems.push(Problem::new(
                "not_exported_since",
                format!(
                    "expected a UTC date-time such as 2026-11-01T00:00:00Z or 2026-11-01 00:00:00, got {}",
                    crate::problem::describe(v)
                ),
            ));
        }
        parsed
    });
    let mut flag = |name: &str| -> bool {
        match tree.get(name) {
            None => false,
            Some(v) => match text(v).as_deref() {
                Some("1" | "true") => true,
                Some("0" | "false" | "") => false,
                _ => {
                    problems.push(Problem::new(
                        name,
                        format!("expected 0 or 1, got {}", crate::problem::describe(v)),
                    ));
                    false
                }
            },
        }
    };
    let include_not_approved = flag("include_not_approved");
    let include_cancelled = flag("include_cancelled");
    let include_archived = flag("include_archived");
    let mut number = |name: &str, default: usize, max: usize| -> usize {
        match tree.get(name) {
            None => default,
            Some(v) => match text(v).and_then(|t| t.parse::<usize>().ok()) {
                Some(n) if n <= max && (name == "page" || n >= 1) => n,
                _ => {
                    problems.push(Problem::new(
                        name,
                        format!(
                            "expected a whole number from {} to {max}, got {}",
                            if name == "page" { 0 } else { 1 },
                            crate::problem::describe(v)
                        ),
                    ));
                    default
                }
            },
        }
    };
    let limit = number("limit", DEFAULT_LIMIT, MAX_LIMIT);
    let page = number("page", 0, usize::MAX / MAX_LIMIT);
    let mut lines = false;
    if let Some(v) = tree.get("includes") {
        for (i, item) in items(v).iter().enumerate() {
            match text(item).as_deref() {
                Some("lines") => lines = true,
                _ => problems.push(Problem::new(
                    format!("includes[{i}]"),
                    format!(
                        "unknown include {}; expected \"lines\"",
                        crate::problem::describe(item)
                    ),
                )),
            }
        }
    }
    let filter_groups = match tree.get("filter_groups") {
        None => Vec::new(),
        Some(v) => groups(v, &mut problems),
    };
    let query = system_id.clone().map(|system_id| ExportQuery {
        system_id,
        not_exported_since: since,
        include_not_approved,
        include_cancelled,
        include_archived,
        filter_groups,
        lines,
        limit,
        page,
    });
    (query, system_id, problems)
}

/// A problem for each string (or key) in `v`, at `path`, that holds U+0000.
fn nul_paths(v: &Value, path: &str, problems: &mut Vec<Problem>) {
    const WHAT: &str = "contains U+0000 (NUL), which no query value may hold";
    match v {
        Value::String(s) if s.contains('\0') => problems.push(Problem::new(path, WHAT)),
        Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                nul_paths(item, &format!("{path}[{i}]"), problems);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                let at = format!("{path}[{}]", k.escape_debug());
                if k.contains('\0') {
                    problems.push(Problem::new(at, WHAT));
                } else {
                    nul_paths(item, &at, problems);
                }
            }
        }
        _ => {}
    }
}

/// `filter_groups[g][or]`, `filter_groups[g][filters][f][key|operator|value|not]`.
fn groups(v: &Value, problems: &mut Vec<Problem>) -> Vec<FilterGroup> {
    let Value::Array(list) = v else {
        problems.push(Problem::new(
            "filter_groups",
            "expected filter_groups[0][filters][0][key]=… (indexed groups)",
        ));
        return Vec::new();
    };
    let mut out = Vec::with_capacity(list.len());
    for (g, group) in list.iter().enumerate() {
        let at = format!("filter_groups[{g}]");
        let Value::Object(group) = group else {
            problems.push(Problem::new(&at, "expected [or] and [filters][N][…]"));
            continue;
        };
        for key in group.keys() {
            if key != "or" && key != "filters" {
                problems.push(Problem::new(
                    format!("{at}[{key}]"),
                    "unknown field; expected or or filters",
                ));
            }
        }
        let or = match group.get("or") {
            None => false,
            Some(v) => bool_of(v).unwrap_or_else(|| {
                problems.push(Problem::new(
                    format!("{at}[or]"),
                    format!(
                        "expected true or false, got {}",
                        crate::problem::describe(v)
                    ),
                ));
                false
            }),
        };
        let filters = group.get("filters").map(items).unwrap_or_default();
        let mut specs = Vec::with_capacity(filters.len());
        for (f, filter) in filters.iter().enumerate() {
            let at = format!("{at}[filters][{f}]");
            let Value::Object(filter) = filter else {
                problems.push(Problem::new(
                    &at,
                    "expected [key], [operator], [value] and [not]",
                ));
                continue;
            };
            for key in filter.keys() {
                if !["key", "operator", "value", "not"].contains(&key.as_str()) {
                    problems.push(Problem::new(
                        format!("{at}[{key}]"),
                        "unknown field; expected key, operator, value or not",
                    ));
                }
            }
            // An empty key or operator is a problem like a missing one
            // (it used to drop the filter silently, returning every order).
            let mut part = |name: &str| match filter.get(name).and_then(text) {
                Some(t) if !t.trim().is_empty() => t,
                Some(_) => {
                    problems.push(Problem::new(
                        format!("{at}[{name}]"),
                        "empty; a filter needs a key, an operator and a value",
                    ));
                    String::new()
                }
                None => {
                    problems.push(Problem::new(format!("{at}[{name}]"), "required"));
                    String::new()
                }
            };
            let key = part("key");
            let operator = part("operator");
            let value = match filter.get("value") {
                Some(v) => toml_value(&key, &operator, v),
                None => {
                    problems.push(Problem::new(format!("{at}[value]"), "required"));
                    continue;
                }
            };
            let not = match filter.get("not") {
                None => false,
                Some(v) => bool_of(v).unwrap_or_else(|| {
                    problems.push(Problem::new(
                        format!("{at}[not]"),
                        format!(
                            "expected true or false, got {}",
                            crate::problem::describe(v)
                        ),
                    ));
                    false
                }),
            };
            if key.is_empty() || operator.is_empty() {
                continue;
            }
            specs.push((
                f,
                FilterSpec {
                    key,
                    operator,
                    value,
                    not,
                },
            ));
        }
        let index: Vec<usize> = specs.iter().map(|(f, _)| *f).collect();
        match FilterGroup::from_specs(or, specs.into_iter().map(|(_, s)| s).collect()) {
            Ok(group) => out.push(group),
            Err(errors) => {
                for (i, part, what) in errors {
                    let f = index.get(i).copied().unwrap_or(i);
                    problems.push(Problem::new(format!("{at}[filters][{f}][{part}]"), what));
                }
            }
        }
    }
    out
}

/// A query value as the config would hold it: a list for `in`/`bt` (given
/// as `value[0]=…&value[1]=…`, `value[]=…` or `a,b`), UNIX ms as an
/// integer for the time keys, otherwise a string.
fn toml_value(key: &str, operator: &str, v: &Value) -> toml::Value {
    let time = key == "created_at" || key == "updated_at";
    let scalar = |v: &Value| -> toml::Value {
        let t = text(v).unwrap_or_default();
        match t.parse::<i64>() {
            Ok(n) if time => toml::Value::Integer(n),
            _ => toml::Value::String(t),
        }
    };
    match (operator, v) {
        (_, Value::Array(list)) => toml::Value::Array(list.iter().map(scalar).collect()),
        ("in" | "bt", v) => {
            let t = text(v).unwrap_or_default();
            toml::Value::Array(
                t.split(',')
                    .map(|s| scalar(&Value::String(s.to_string())))
                    .collect(),
            )
        }
        (_, v) => scalar(v),
    }
}

/// A scalar query value as text (`None` for a list or a map).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        // A repeated scalar (`a=1&a=2`): the last one counts.
        Value::Array(list) if list.iter().all(|v| !v.is_object() && !v.is_array()) => {
            list.last().and_then(text)
        }
        _ => None,
    }
}

fn bool_of(v: &Value) -> Option<bool> {
    match text(v)?.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" | "" => Some(false),
        _ => None,
    }
}

/// A value that may be one item or a list of them.
fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(list) => list.clone(),
        other => vec![other.clone()],
    }
}

/// A UTC date-time: RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC), a date
/// (midnight UTC) or UNIX milliseconds.
fn parse_time(t: &str) -> Option<i64> {
    let t = t.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> ExportQuery {
        let (query, _, problems) = parse(q);
        assert!(problems.is_empty(), "{q}: {problems:?}");
        query.unwrap()
    }

    #[test]
    fn raw_and_encoded_brackets_mean_the_same() {
        let raw = "system_id=erp&filter_groups[0][or]=true&filter_groups[0][filters][0][key]=channel&filter_groups[0][filters][0][operator]=in&filter_groups[0][filters][0][value][0]=a&filter_groups[0][filters][0][value][1]=b&filter_groups[0][filters][0][not]=true&includes[]=lines";
        let enc = raw.replace('[', "%5B").replace(']', "%5D");
        let low = raw.replace('[', "%5b").replace(']', "%5d");
        for q in [raw.to_string(), enc, low] {
            let p = ok(&q);
            assert_eq!(p.filter_groups.len(), 1, "{q}");
            assert!(p.lines, "{q}");
            assert_eq!(
                format!("{:?}", p.filter_groups),
                format!("{:?}", ok(raw).filter_groups)
            );
        }
    }

    /// Issue 22: a NUL in a filter value reached PostgreSQL, which refused
    /// the query after the answer's 200 was sent.
    #[test]
    fn a_nul_anywhere_is_named() {
        let (_, _, problems) = parse(
            "system_id=erp&filter_groups[0][filters][0][key]=channel&filter_groups[0][filters][0][operator]=eq&filter_groups[0][filters][0][value]=a%00b",
        );
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "filter_groups[0][filters][0][value]: contains U+0000 (NUL), which no query value may hold"
            ]
        );
    }

    #[test]
    fn every_problem_is_named() {
        let (_, _, problems) = parse(
            "include_cancelled=2&limit=0&colour=red&filter_groups[0][filters][0][key]=colour&filter_groups[0][filters][0][operator]=eq&filter_groups[0][filters][0][value]=x&filter_groups[0][filters][1][key]=channel&filter_groups[0][filters][1][operator]=like&filter_groups[0][filters][1][value]=x",
        );
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        for want in [
            "system_id: required",
            "include_cancelled: expected 0 or 1",
            "limit: expected",
            "colour: unknown parameter",
            "filter_groups[0][filters][0][key]: unknown filter key",
            "filter_groups[0][filters][1][operator]: unknown operator",
        ] {
            assert!(text.iter().any(|t| t.starts_with(want)), "{want}: {text:?}");
        }
    }

    /// Found by the `export_query` fuzz target: `=x` (or `+=x`, a blank
    /// name) was an "unknown parameter" problem with an empty `at`.
    #[test]
    fn a_parameter_without_a_name_is_named_query() {
        for q in [
            "system_id=erp&=x",
            "system_id=erp&+=x",
            "system_id=erp&%0B=x",
            // Found by the fuzz target after the NUL check came in: a NUL
            // under a blank name was a second problem with a blank `at`.
            "system_id=erp&=%00",
            "system_id=erp&+=%00",
        ] {
            let (_, _, problems) = parse(q);
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            assert_eq!(text.len(), 1, "{q}: {text:?}");
            assert!(
                text[0].starts_with("query: a parameter without a name ("),
                "{q}: {text:?}"
            );
        }
    }

    /// `in` values as `value=a,b`, `value[0]=a&value[1]=b` or `value[]=a&value[]=b`.
    #[test]
    fn list_values_three_ways() {
        let hit = serde_json::json!({"channel": "B2B"});
        let miss = serde_json::json!({"channel": "Web"});
        for v in [
            "value=shop,b2b",
            "value[0]=shop&value[1]=b2b",
            "value[]=shop&value[]=b2b",
        ] {
            let v = v.replace("value", "filter_groups[0][filters][0][value]");
            let q = ok(&format!(
                "system_id=erp&filter_groups[0][filters][0][key]=channel&filter_groups[0][filters][0][operator]=in&{v}"
            ));
            assert!(q.filter_groups[0].matches(&hit), "{v}");
            assert!(!q.filter_groups[0].matches(&miss), "{v}");
        }
    }

    /// Issue 15: `[operator]=` (empty) dropped the filter silently.
    #[test]
    fn an_empty_key_or_operator_is_named() {
        let f = "filter_groups[0][filters][0]";
        for (query, at) in [
            (
                format!("{f}[key]=channel&{f}[operator]=&{f}[value]=x"),
                "operator",
            ),
            (format!("{f}[key]=&{f}[operator]=eq&{f}[value]=x"), "key"),
            (format!("{f}[key]=%20&{f}[operator]=eq&{f}[value]=x"), "key"),
        ] {
            let (_, _, problems) = parse(&format!("system_id=erp&{query}"));
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            assert_eq!(
                text,
                [format!(
                    "{f}[{at}]: empty; a filter needs a key, an operator and a value"
                )],
                "{query}"
            );
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Some(1767225600000));
        assert_eq!(parse_time("2026-01-01 00:00:00"), Some(1767225600000));
        assert_eq!(parse_time("2026-01-01"), Some(1767225600000));
        assert_eq!(parse_time("yesterday"), None);
    }
}
