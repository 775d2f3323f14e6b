//! The candidates of `GET /v10/orders/export` as a backend gives them
//! ([`Candidate`]), and what it may narrow them by ([`Narrowing`]): the
//! conditions every order the request's include flags and filter groups
//! accept meets, derived only where that is sure. A backend may read
//! fewer candidates with them (PostgreSQL: `postgres/candidates.rs`);
//! `crate::filter` still decides every one. Types only: both the rules
//! (`http.rs`) and the backends (`backend.rs`) use them, so they sit below
//! both.

use std::ops::Bound;

use serde_json::Value as Json;
use uuid::Uuid;

use crate::filter::{FilterGroup, FilterSpec};

/// An order `GET /v10/orders/export` may send, in the answer's order
/// (oldest `created` first, then by id).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its sort key: `created` (for a pending order, its listing's sort
    /// key, which is `created`).
    pub created: i64,
    pub id: Uuid,
    /// What the request decides on, when the backend read it with the
    /// candidate: the document's values of the filter keys ([`FILTER_KEYS`])
    /// and of `internal_status`, `cancelled` and `archived`, as a JSON
    /// object (a missing key is `null`). `None`: read the order itself.
    pub fields: Option<Json>,
}

/// The keys of an order's document the request's decision reads: the
/// filter keys (SPEC §7) and the include flags' facts.
pub const FILTER_KEYS: [&str; 11] = [
    "created",
    "updated",
    "channel",
    "type",
    "currency",
    "status",
    "internal_status",
    "reference",
    "external_id",
    "cancelled",
    "archived",
];

/// Conditions every order an HTTP GET's include flags and filter groups
/// accept meets: necessary, not sufficient. A backend may use them to
/// read fewer candidates (an index); [`crate::filter`] still decides every
/// candidate, so whatever a backend does with them can only drop orders
/// the filters would have dropped.
///
/// Derived only where it is sure: a filter with `not`, `ct` or `ew`, an OR
/// group with such a filter, adds nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Narrowing {
    /// Only approved orders (`internal_status` is exactly "approved").
    pub approved: bool,
    /// All of these; each is a list of conditions of which one at least
    /// holds (an OR group), most of them one condition long.
    pub clauses: Vec<Vec<Cond>>,
}

/// One necessary condition, on an order's document.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `created` or `updated` (UNIX ms, as a filter reads it: 0 when not
    /// an integer) passes the test.
    Time(TimeKey, Test<i64>),
    /// A text key's value ("" when missing or not a string): when it is
    /// all ASCII, its lower case passes the test (compared byte by byte);
    /// when not, the condition holds (it says nothing of such values,
    /// whose lower case only Rust's own rules give).
    Text(&'static str, Test<String>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeKey {
    Created,
    Updated,
}

/// A test on a value: within bounds, or one of a list.
#[derive(Debug, Clone, PartialEq)]
pub enum Test<T> {
    Range(Bound<T>, Bound<T>),
    In(Vec<T>),
}

/// The text keys of filters, as the document (and the typed columns)
/// name them.
const TEXT_KEYS: [&str; 7] = [
    "channel",
    "type",
    "currency",
    "status",
    "internal_status",
    "reference",
    "external_id",
];

impl Narrowing {
    /// What a request's include flags (only `include_not_approved` is
    /// used) and filter groups imply.
    pub fn of(include_not_approved: bool, groups: &[FilterGroup]) -> Narrowing {
        let mut clauses = Vec::new();
        for g in groups {
            let (or, specs) = g.to_specs();
            let conds: Vec<Option<Cond>> = specs.iter().map(cond).collect();
            if or {
                // One of the filters matches: one of their conditions
                // holds, unless one of them has none.
                if let Some(any) = conds.into_iter().collect::<Option<Vec<Cond>>>()
                    && !any.is_empty()
                {
                    clauses.push(any);
                }
            } else {
                clauses.extend(conds.into_iter().flatten().map(|c| vec![c]));
            }
        }
        Narrowing {
            approved: !include_not_approved,
            clauses,
        }
    }
}

/// The condition a filter (in the canonical form of
/// [`FilterGroup::to_specs`]: text lower-cased, times as UNIX ms) implies,
/// if one is sure.
fn cond(spec: &FilterSpec) -> Option<Cond> {
    if spec.not {
        return None;
    }
    let time = match spec.key.as_str() {
        "created_at" => Some(TimeKey::Created),
        "updated_at" => Some(TimeKey::Updated),
        _ => None,
    };
    if let Some(key) = time {
        let int = |v: &toml::Value| v.as_integer();
        return test(&spec.operator, &spec.value, int).map(|t| Cond::Time(key, t));
    }
    let key = TEXT_KEYS.iter().find(|k| **k == spec.key)?;
    let text = |v: &toml::Value| v.as_str().map(str::to_string);
    if spec.operator == "sw" {
        let prefix = text(&spec.value)?;
        if prefix.is_empty() {
            return None;
        }
        if !prefix.is_ascii() {
            // No ASCII value starts with it.
            return Some(Cond::Text(key, Test::In(Vec::new())));
        }
        // An ASCII value starts with `prefix` exactly when it sorts from
        // `prefix` (inclusive) to `prefix` + U+0080 (exclusive): the byte
        // after the prefix is below 0x80, and U+0080 is 0xC2 0x80 in UTF-8.
        let end = format!("{prefix}\u{80}");
        return Some(Cond::Text(
            key,
            Test::Range(Bound::Included(prefix), Bound::Excluded(end)),
        ));
    }
    test(&spec.operator, &spec.value, text).map(|t| Cond::Text(key, t))
}

/// The test of an operator on one value or a list; `None` for an operator
/// that implies nothing sure (`ct`, `ew`, and any other).
fn test<T: Clone>(
    operator: &str,
    value: &toml::Value,
    of: impl Fn(&toml::Value) -> Option<T>,
) -> Option<Test<T>> {
    use Bound::{Excluded, Included, Unbounded};
    let list = || -> Option<Vec<T>> { value.as_array()?.iter().map(&of).collect() };
    Some(match operator {
        "eq" => {
            let v = of(value)?;
            Test::Range(Included(v.clone()), Included(v))
        }
        "gt" => Test::Range(Excluded(of(value)?), Unbounded),
        "gte" => Test::Range(Included(of(value)?), Unbounded),
        "lt" => Test::Range(Unbounded, Excluded(of(value)?)),
        "lte" => Test::Range(Unbounded, Included(of(value)?)),
        "bt" => match list()?.as_slice() {
            [low, high] => Test::Range(Included(low.clone()), Included(high.clone())),
            _ => return None,
        },
        "in" => Test::In(list()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::ops::RangeBounds;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::order::Facts;

    /// What a backend's query holds a narrowing to (the SQL of
    /// `postgres/candidates.rs`), written again here.
    fn holds(n: &Narrowing, doc: &Json) -> bool {
        (!n.approved || doc["internal_status"].as_str() == Some("approved"))
            && n.clauses
                .iter()
                .all(|any| any.iter().any(|c| cond_holds(c, doc)))
    }

    fn cond_holds(c: &Cond, doc: &Json) -> bool {
        match c {
            Cond::Time(key, test) => {
                let name = match key {
                    TimeKey::Created => "created",
                    TimeKey::Updated => "updated",
                };
                test_holds(test, &doc[name].as_i64().unwrap_or(0))
            }
            Cond::Text(key, test) => {
                let value = doc[*key].as_str().unwrap_or("");
                // ordersync_fold: NULL (passes) unless all ASCII.
                !value.is_ascii() || test_holds(test, &value.to_ascii_lowercase())
            }
        }
    }

    fn test_holds<T: PartialOrd>(test: &Test<T>, v: &T) -> bool {
        match test {
            Test::Range(low, high) => (low.as_ref(), high.as_ref()).contains(v),
            Test::In(values) => values.contains(v),
        }
    }

    const TEXTS: &[&str] = &[
        "PO-1",
        "po-1",
        "Po-10",
        "\u{212A}elvin",
        "kelvin",
        "\u{130}x",
        "ix",
        "Straße",
        "strasse",
        "Été",
        "été",
        "",
        "a",
        "Z",
        "~",
        "\u{7f}",
        "k",
        "p",
        "po",
        "\u{80}",
    ];
    const TIMES: &[i64] = &[0, 1, 2, 1_767_225_600_000, 1_767_225_600_001, i64::MAX];

    fn doc() -> impl Strategy<Value = Json> {
        let text = || prop::option::of(prop::sample::select(TEXTS.to_vec()));
        let time = || prop::sample::select(TIMES.to_vec());
        (
            prop::collection::vec(text(), TEXT_KEYS.len()),
            time(),
            time(),
            any::<bool>(),
            any::<bool>(),
            prop::sample::select(vec!["approved", "draft", "Approved"]),
        )
            .prop_map(|(texts, created, updated, cancelled, archived, internal)| {
                let mut m = serde_json::Map::new();
                for (key, t) in TEXT_KEYS.iter().zip(texts) {
                    if let Some(t) = t {
                        m.insert(key.to_string(), json!(t));
                    }
                }
                m.insert("created".into(), json!(created));
                m.insert("updated".into(), json!(updated));
                m.insert("cancelled".into(), json!(cancelled));
                m.insert("archived".into(), json!(archived));
                if !m.contains_key("internal_status") {
                    m.insert("internal_status".into(), json!(internal));
                }
                Json::Object(m)
            })
    }

    /// (key, operator, value, not).
    type Spec = (String, String, toml::Value, bool);

    fn spec() -> impl Strategy<Value = Spec> {
        let key = prop::sample::select(
            TEXT_KEYS
                .iter()
                .copied()
                .chain(["created_at", "updated_at"])
                .collect::<Vec<_>>(),
        );
        let op = prop::sample::select(vec![
            "eq", "gt", "gte", "lt", "lte", "bt", "in", "ct", "sw", "ew",
        ]);
        let values = prop::collection::vec(
            prop_oneof![
                prop::sample::select(TEXTS.to_vec()).prop_map(|t| toml::Value::String(t.into())),
                prop::sample::select(TIMES.to_vec()).prop_map(toml::Value::Integer),
            ],
            1..4,
        );
        (key, op, values, any::<bool>()).prop_map(|(key, op, values, not)| {
            let value = match op {
                "in" => toml::Value::Array(values),
                "bt" => toml::Value::Array(vec![
                    values[0].clone(),
                    values.last().cloned().unwrap_or(toml::Value::Integer(0)),
                ]),
                _ => values[0].clone(),
            };
            (key.to_string(), op.to_string(), value, not)
        })
    }

    fn groups() -> impl Strategy<Value = Vec<FilterGroup>> {
        prop::collection::vec((any::<bool>(), prop::collection::vec(spec(), 0..4)), 0..3).prop_map(
            |groups| {
                groups
                    .into_iter()
                    // Filters of the wrong shape (a time for a text key) are
                    // refused by the config and the request alike: left out.
                    .filter_map(|(or, specs)| {
                        let specs = specs
                            .into_iter()
                            .map(|(key, operator, value, not)| FilterSpec {
                                key,
                                operator,
                                value,
                                not,
                            })
                            .collect();
                        FilterGroup::from_specs(or, specs).ok()
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever the filters accept, the narrowing lets through.
        #[test]
        fn narrowing_never_refuses_what_filters_accept(
            doc in doc(),
            groups in groups(),
            include_not_approved in any::<bool>(),
        ) {
            let n = Narrowing::of(include_not_approved, &groups);
            let accepted = (include_not_approved || Facts::of(&doc).approved)
                && groups.iter().all(|g| g.matches(&doc));
            if accepted {
                prop_assert!(holds(&n, &doc), "{n:?} refuses {doc}");
            }
        }
    }

    #[test]
    fn what_is_narrowed() {
        let group = |or: bool, specs: &[(&str, &str, toml::Value, bool)]| {
            FilterGroup::from_specs(
                or,
                specs
                    .iter()
                    .map(|(k, o, v, not)| FilterSpec {
                        key: k.to_string(),
                        operator: o.to_string(),
                        value: v.clone(),
                        not: *not,
                    })
                    .collect(),
            )
            .unwrap()
        };
        let s = |t: &str| toml::Value::String(t.into());
        let eq = |v: &str| Test::Range(Bound::Included(v.into()), Bound::Included(v.into()));
        // An AND group: one clause per filter that implies something.
        let n = Narrowing::of(
            false,
            &[group(
                false,
                &[
                    ("reference", "eq", s("PO-1"), false),
                    ("channel", "ct", s("x"), false),
                    ("status", "eq", s("Hold"), true),
                    ("created_at", "gt", toml::Value::Integer(5), false),
                ],
            )],
        );
        assert!(n.approved);
        assert_eq!(
            n.clauses,
            vec![
                vec![Cond::Text("reference", eq("po-1"))],
                vec![Cond::Time(
                    TimeKey::Created,
                    Test::Range(Bound::Excluded(5), Bound::Unbounded)
                )],
            ]
        );
        // An OR group: one clause, or none when a filter implies nothing.
        let or = |specs| Narrowing::of(true, &[group(true, specs)]);
        let specs = [
            ("reference", "eq", s("a"), false),
            ("external_id", "sw", s("X-"), false),
        ];
        assert_eq!(
            or(&specs).clauses,
            vec![vec![
                Cond::Text("reference", eq("a")),
                Cond::Text(
                    "external_id",
                    Test::Range(
                        Bound::Included("x-".into()),
                        Bound::Excluded("x-\u{80}".into())
                    )
                )
            ]]
        );
        let specs = [
            ("reference", "eq", s("a"), false),
            ("reference", "ew", s("b"), false),
        ];
        assert_eq!(or(&specs), Narrowing::default());
        // No filters, every flag: nothing.
        assert_eq!(Narrowing::of(true, &[]), Narrowing::default());
    }
}
