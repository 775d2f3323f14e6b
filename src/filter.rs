//! Export eligibility filters (`[[systems.filter_groups]]`, SPEC §7).
//!
//! Filters are compiled once when the config is loaded, so an unknown key, an
//! unknown operator or a value of the wrong shape is a config error, and
//! evaluating a filter on an order can never fail.

use serde::Deserialize;
use serde_json::Value;

/// A filter group as written in the config. Unknown keys are reported by
/// the config's reading (`serde_ignored`), with every other mistake.
#[derive(Debug, Deserialize)]
pub struct RawFilterGroup {
    #[serde(default)]
    or: bool,
    #[serde(default)]
    filters: Vec<RawFilter>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawFilter {
    key: String,
    operator: String,
    value: toml::Value,
    #[serde(default)]
    not: bool,
}

/// Groups are ANDed; the filters inside one are ANDed, or ORed when `or`.
#[derive(Debug, Clone)]
pub struct FilterGroup {
    or: bool,
    filters: Vec<Filter>,
}

/// One compiled filter.
#[derive(Debug, Clone)]
pub struct Filter {
    key: Key,
    test: Test,
    not: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    CreatedAt,
    UpdatedAt,
    /// A string field of the order, by its JSON name.
    Text(&'static str),
}

const TEXT_KEYS: &[&str] = &[
    "channel",
    "type",
    "currency",
    "status",
    "internal_status",
    "reference",
    "external_id",
];

/// Comparison against a constant: integers (UNIX ms) for the time keys,
/// lower-cased strings for the others.
#[derive(Debug, Clone)]
enum Test {
    Cmp(Op, Operand),
    Between(Operand, Operand),
    In(Vec<Operand>),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Operand {
    Time(i64),
    Text(String),
}

/// For `check`: `channel in ["shopify", "b2b"] AND NOT created_at gte
/// 2026-01-01T00:00:00Z` (text values lower-cased as compared, times as
/// RFC 3339).
impl std::fmt::Display for FilterGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = if self.or { " OR " } else { " AND " };
        let parts: Vec<String> = self.filters.iter().map(ToString::to_string).collect();
        if parts.is_empty() {
            return f.write_str("(empty: passes every order)");
        }
        f.write_str(&parts.join(join))
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = match self.key {
            Key::CreatedAt => "created_at",
            Key::UpdatedAt => "updated_at",
            Key::Text(k) => k,
        };
        let show = |o: &Operand| match o {
            Operand::Time(ms) => chrono::DateTime::from_timestamp_millis(*ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_else(|| ms.to_string()),
            Operand::Text(t) => format!("{t:?}"),
        };
        let test = match &self.test {
            Test::Cmp(op, v) => {
                let op = match op {
                    Op::Eq => "eq",
                    Op::Gt => "gt",
                    Op::Gte => "gte",
                    Op::Lt => "lt",
                    Op::Lte => "lte",
                };
                format!("{op} {}", show(v))
            }
            Test::Between(lo, hi) => format!("bt [{}, {}]", show(lo), show(hi)),
            Test::In(vs) => format!(
                "in [{}]",
                vs.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            Test::Contains(t) => format!("ct {t:?}"),
            Test::StartsWith(t) => format!("sw {t:?}"),
            Test::EndsWith(t) => format!("ew {t:?}"),
        };
        let not = if self.not { "NOT " } else { "" };
        write!(f, "{not}{key} {test}")
    }
}

impl FilterGroup {
    /// Compiles a group; an error names the key below the group
    /// (`.filters[1].operator`) and what is wrong.
    pub fn compile(raw: RawFilterGroup) -> Result<FilterGroup, (String, String)> {
        let mut filters = Vec::with_capacity(raw.filters.len());
        for (i, f) in raw.filters.into_iter().enumerate() {
            filters.push(Filter::compile(f).map_err(|(k, m)| (format!(".filters[{i}].{k}"), m))?);
        }
        Ok(FilterGroup {
            or: raw.or,
            filters,
        })
    }

    /// Whether the (filled-in) order document passes this group. An empty
    /// group passes.
    pub fn matches(&self, order: &Value) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        if self.or {
            self.filters.iter().any(|f| f.matches(order))
        } else {
            self.filters.iter().all(|f| f.matches(order))
        }
    }
}

/// One filter as an HTTP request gives it (`filter_groups[g][filters][f]`),
/// its value already shaped as the config would hold it.
pub struct FilterSpec {
    pub key: String,
    pub operator: String,
    pub value: toml::Value,
    pub not: bool,
}

impl FilterGroup {
    /// Compiles a group given over HTTP with exactly the rules of the config
    /// (the same keys, operators and value checks), so a filter means the
    /// same on both sides. An error names the filter's index, the part
    /// (`key`, `operator`, `value`) and what is wrong.
    pub fn from_specs(
        or: bool,
        specs: Vec<FilterSpec>,
    ) -> Result<FilterGroup, Vec<(usize, String, String)>> {
        let mut filters = Vec::with_capacity(specs.len());
        let mut errors = Vec::new();
        for (i, s) in specs.into_iter().enumerate() {
            let raw = RawFilter {
                key: s.key,
                operator: s.operator,
                value: s.value,
                not: s.not,
            };
            match Filter::compile(raw) {
                Ok(f) => filters.push(f),
                Err((part, what)) => errors.push((i, part, what)),
            }
        }
        if errors.is_empty() {
            Ok(FilterGroup { or, filters })
        } else {
            Err(errors)
        }
    }
}

impl FilterGroup {
    /// The group as specs in a canonical form (text lower-cased as
    /// compared, times as UNIX ms): [`FilterGroup::from_specs`] of them
    /// gives the same group. For the export query's fuzz target.
    #[doc(hidden)]
    pub fn to_specs(&self) -> (bool, Vec<FilterSpec>) {
        (self.or, self.filters.iter().map(Filter::to_spec).collect())
    }
}

impl Filter {
    fn to_spec(&self) -> FilterSpec {
        let value = |o: &Operand| match o {
            Operand::Time(ms) => toml::Value::Integer(*ms),
            Operand::Text(t) => toml::Value::String(t.clone()),
        };
        let text = |t: &String| toml::Value::String(t.clone());
        let (operator, value) = match &self.test {
            Test::Cmp(op, v) => (
                match op {
                    Op::Eq => "eq",
                    Op::Gt => "gt",
                    Op::Gte => "gte",
                    Op::Lt => "lt",
                    Op::Lte => "lte",
                },
                value(v),
            ),
            Test::Between(lo, hi) => ("bt", toml::Value::Array(vec![value(lo), value(hi)])),
            Test::In(vs) => ("in", toml::Value::Array(vs.iter().map(value).collect())),
            Test::Contains(t) => ("ct", text(t)),
            Test::StartsWith(t) => ("sw", text(t)),
            Test::EndsWith(t) => ("ew", text(t)),
        };
        FilterSpec {
            key: match self.key {
                Key::CreatedAt => "created_at",
                Key::UpdatedAt => "updated_at",
                Key::Text(k) => k,
            }
            .to_string(),
            operator: operator.to_string(),
            value,
            not: self.not,
        }
    }
}

impl Filter {
    fn compile(raw: RawFilter) -> Result<Filter, (String, String)> {
        let key = match raw.key.as_str() {
            "created_at" => Key::CreatedAt,
            "updated_at" => Key::UpdatedAt,
            k => match TEXT_KEYS.iter().find(|t| **t == k) {
                Some(t) => Key::Text(t),
                None => {
                    return Err((
                        "key".into(),
                        format!(
                            "unknown filter key {k:?}; expected one of created_at, updated_at, {}",
                            TEXT_KEYS.join(", ")
                        ),
                    ));
                }
            },
        };
        let bad_value = |m: String| ("value".to_string(), m);
        let scalar = |v: &toml::Value| operand(key, v).map_err(bad_value);
        let list = |v: &toml::Value| -> Result<Vec<Operand>, (String, String)> {
            match v {
                toml::Value::Array(items) => items.iter().map(scalar).collect(),
                other => Err(bad_value(format!(
                    "operator {:?} needs an array, got {}",
                    raw.operator,
                    other.type_str()
                ))),
            }
        };
        let text_only = |v: &toml::Value| -> Result<String, (String, String)> {
            match (key, v) {
                (Key::Text(_), toml::Value::String(s)) => Ok(s.to_lowercase()),
                (Key::Text(_), other) => Err(bad_value(format!(
                    "expected a string, got {}",
                    other.type_str()
                ))),
                _ => Err((
                    "operator".into(),
                    format!(
                        "{:?} only applies to text keys, not {}",
                        raw.operator, raw.key
                    ),
                )),
            }
        };
        let test = match raw.operator.as_str() {
            "eq" => Test::Cmp(Op::Eq, scalar(&raw.value)?),
            "gt" => Test::Cmp(Op::Gt, scalar(&raw.value)?),
            "gte" => Test::Cmp(Op::Gte, scalar(&raw.value)?),
            "lt" => Test::Cmp(Op::Lt, scalar(&raw.value)?),
            "lte" => Test::Cmp(Op::Lte, scalar(&raw.value)?),
            "bt" => {
                let mut v = list(&raw.value)?;
                if v.len() != 2 {
                    return Err(bad_value(format!(
                        "operator \"bt\" needs [low, high], got {} values",
                        v.len()
                    )));
                }
                let high = v.pop().unwrap_or(Operand::Time(0));
                let low = v.pop().unwrap_or(Operand::Time(0));
                Test::Between(low, high)
            }
            "in" => Test::In(list(&raw.value)?),
            "ct" => Test::Contains(text_only(&raw.value)?),
            "sw" => Test::StartsWith(text_only(&raw.value)?),
            "ew" => Test::EndsWith(text_only(&raw.value)?),
            other => {
                return Err((
                    "operator".into(),
                    format!(
                        "unknown operator {other:?}; expected eq, gt, gte, lt, lte, bt, in, ct, sw or ew"
                    ),
                ));
            }
        };
        Ok(Filter {
            key,
            test,
            not: raw.not,
        })
    }

    /// Whether the order passes this filter (`not` negates exactly).
    pub fn matches(&self, order: &Value) -> bool {
        let field = match self.key {
            Key::CreatedAt => Operand::Time(order["created"].as_i64().unwrap_or(0)),
            Key::UpdatedAt => Operand::Time(order["updated"].as_i64().unwrap_or(0)),
            // A missing optional field (channel) compares as the empty string.
            Key::Text(name) => Operand::Text(order[name].as_str().unwrap_or("").to_lowercase()),
        };
        let text = match &field {
            Operand::Text(s) => s.as_str(),
            Operand::Time(_) => "",
        };
        let hit = match &self.test {
            Test::Cmp(op, v) => match op {
                Op::Eq => field == *v,
                Op::Gt => field > *v,
                Op::Gte => field >= *v,
                Op::Lt => field < *v,
                Op::Lte => field <= *v,
            },
            Test::Between(low, high) => *low <= field && field <= *high,
            Test::In(values) => values.contains(&field),
            Test::Contains(s) => text.contains(s.as_str()),
            Test::StartsWith(s) => text.starts_with(s.as_str()),
            Test::EndsWith(s) => text.ends_with(s.as_str()),
        };
        hit != self.not
    }
}

/// A config value as an operand for `key`: RFC 3339 or UNIX ms for the time
/// keys, a string for the others.
fn operand(key: Key, v: &toml::Value) -> Result<Operand, String> {
    match (key, v) {
        (Key::Text(_), toml::Value::String(s)) => Ok(Operand::Text(s.to_lowercase())),
        (Key::Text(_), other) => Err(format!("expected a string, got {}", other.type_str())),
        (_, toml::Value::Integer(ms)) => Ok(Operand::Time(*ms)),
        (_, toml::Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Operand::Time(t.timestamp_millis()))
            .map_err(|e| format!("{s:?} is not an RFC 3339 time or UNIX milliseconds: {e}")),
        (_, toml::Value::Datetime(d)) => {
            let s = d.to_string();
            chrono::DateTime::parse_from_rfc3339(&s)
                .map(|t| Operand::Time(t.timestamp_millis()))
                .map_err(|e| format!("{s:?} needs a date, a time and an offset: {e}"))
        }
        (_, other) => Err(format!(
            "expected an RFC 3339 time or UNIX milliseconds, got {}",
            other.type_str()
        )),
    }
}

/// Compiles one filter from the inside of a TOML inline table, for tests.
#[cfg(test)]
pub(crate) fn filter_from_toml(text: &str) -> Result<Filter, (String, String)> {
    #[derive(Deserialize)]
    struct One {
        f: RawFilter,
    }
    let one: One = toml::from_str(&format!("f = {{ {text} }}"))
        .map_err(|e| ("toml".to_string(), e.to_string()))?;
    Filter::compile(one.f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Value {
        json!({
            "created": 1767225600000i64, // 2026-01-01T00:00:00Z
            "updated": 1767312000000i64, // 2026-01-02T00:00:00Z
            "channel": "Shopify",
            "type": "Sales Order",
            "currency": "DKK",
            "status": "Waiting",
            "internal_status": "approved",
            "reference": "PO-1234",
            "external_id": "shop-1001",
        })
    }

    /// Every operator, with `not` both ways: `not` must be the exact complement.
    #[test]
    fn table_of_operators() {
        let cases: &[(&str, bool)] = &[
            (r#"key="channel", operator="eq", value="shopify""#, true),
            (r#"key="channel", operator="eq", value="B2B""#, false),
            (r#"key="currency", operator="gt", value="dkj""#, true),
            (r#"key="currency", operator="gte", value="DKK""#, true),
            (r#"key="currency", operator="lt", value="DKK""#, false),
            (r#"key="currency", operator="lte", value="dkk""#, true),
            (
                r#"key="created_at", operator="eq", value=1767225600000"#,
                true,
            ),
            (
                r#"key="created_at", operator="gte", value="2026-01-01T00:00:00Z""#,
                true,
            ),
            (
                r#"key="created_at", operator="gt", value="2026-01-01T00:00:00Z""#,
                false,
            ),
            (
                r#"key="updated_at", operator="lt", value="2026-01-03T00:00:00+01:00""#,
                true,
            ),
            (
                r#"key="updated_at", operator="lte", value=1767311999999"#,
                false,
            ),
            (
                r#"key="created_at", operator="bt", value=["2025-12-31T00:00:00Z", "2026-01-01T00:00:00Z"]"#,
                true,
            ),
            (
                r#"key="updated_at", operator="bt", value=[0, 1767225600000]"#,
                false,
            ),
            (
                r#"key="channel", operator="in", value=["B2B", "SHOPIFY"]"#,
                true,
            ),
            (r#"key="status", operator="in", value=["Hold"]"#, false),
            (r#"key="reference", operator="ct", value="12""#, true),
            (r#"key="reference", operator="sw", value="po-""#, true),
            (r#"key="external_id", operator="ew", value="1002""#, false),
            (r#"key="type", operator="bt", value=["a", "t"]"#, true),
            (
                r#"key="internal_status", operator="eq", value="Approved""#,
                true,
            ),
        ];
        for (text, expected) in cases {
            let f = filter_from_toml(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(f.matches(&order()), *expected, "{text}");
            let negated = filter_from_toml(&format!("{text}, not = true")).unwrap();
            assert_eq!(negated.matches(&order()), !*expected, "not {text}");
        }
    }

    #[test]
    fn config_errors() {
        for (text, where_) in [
            (r#"key="colour", operator="eq", value="x""#, "key"),
            (r#"key="channel", operator="like", value="x""#, "operator"),
            (r#"key="channel", operator="bt", value=["a"]"#, "value"),
            (r#"key="channel", operator="in", value="a""#, "value"),
            (
                r#"key="created_at", operator="ct", value="2026""#,
                "operator",
            ),
            (
                r#"key="created_at", operator="eq", value="yesterday""#,
                "value",
            ),
            (r#"key="channel", operator="eq", value=3"#, "value"),
        ] {
            let err = filter_from_toml(text).unwrap_err();
            assert_eq!(err.0, where_, "{text}: {err:?}");
        }
    }

    #[test]
    fn missing_channel_is_empty_text() {
        let f = filter_from_toml(r#"key="channel", operator="eq", value="""#).unwrap();
        assert!(f.matches(&json!({})));
    }
}
