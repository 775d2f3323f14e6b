//! Filter semantics (SPEC §7) as properties: random filter groups against
//! random orders, checked against an oracle written here independently, and
//! `not` as the exact complement.

mod common;

use std::path::Path;

use ordersync::config::Config;
use proptest::prelude::*;
use serde_json::{Value, json};

const CHANNELS: &[Option<&str>] = &[Some("Shopify"), Some("B2B"), Some("b2b-dk"), Some(""), None];
const REFERENCES: &[&str] = &["PO-1", "po-22", "X-9", "Po-Box"];
const TIMES: &[i64] = &[
    1_700_000_000_000,
    1_767_225_600_000,
    1_767_225_600_001,
    1_800_000_000_000,
];
const TEXTS: &[&str] = &["b2b", "SHOPIFY", "po-", "-9", "", "x", "po-22", "b"];

#[derive(Debug, Clone)]
struct F {
    key: &'static str,
    op: &'static str,
    text: Vec<&'static str>,
    time: Vec<i64>,
    not: bool,
}

fn filter() -> impl Strategy<Value = F> {
    let text_key = prop::sample::select(vec!["channel", "reference"]);
    let time_key = prop::sample::select(vec!["created_at", "updated_at"]);
    let text_op = prop::sample::select(vec![
        "eq", "gt", "gte", "lt", "lte", "bt", "in", "ct", "sw", "ew",
    ]);
    let time_op = prop::sample::select(vec!["eq", "gt", "gte", "lt", "lte", "bt", "in"]);
    prop_oneof![
        (
            text_key,
            text_op,
            prop::collection::vec(prop::sample::select(TEXTS.to_vec()), 2..4),
            any::<bool>()
        )
            .prop_map(|(key, op, text, not)| F {
                key,
                op,
                text,
                time: vec![],
                not
            }),
        (
            time_key,
            time_op,
            prop::collection::vec(prop::sample::select(TIMES.to_vec()), 2..4),
            any::<bool>()
        )
            .prop_map(|(key, op, time, not)| F {
                key,
                op,
                text: vec![],
                time,
                not
            }),
    ]
}

fn toml_value(f: &F) -> String {
    let many = matches!(f.op, "bt" | "in");
    let n = if f.op == "bt" {
        2
    } else if many {
        f.text.len().max(f.time.len())
    } else {
        1
    };
    let items: Vec<String> = if f.text.is_empty() {
        // Alternate between RFC 3339 and UNIX ms: both must mean the same.
        f.time[..n]
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if i % 2 == 0 {
                    t.to_string()
                } else {
                    let dt = chrono::DateTime::from_timestamp_millis(*t).unwrap();
                    format!(
                        "\"{}\"",
                        dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    )
                }
            })
            .collect()
    } else {
        f.text[..n].iter().map(|s| format!("{s:?}")).collect()
    };
    if many {
        format!("[{}]", items.join(", "))
    } else {
        items[0].clone()
    }
}

fn config(groups: &[(bool, Vec<F>)]) -> Config {
    let mut t = String::from("[[systems]]\nid = \"s\"\n");
    for (or, filters) in groups {
        t.push_str(&format!(
            "[[systems.filter_groups]]\nor = {or}\nfilters = [\n"
        ));
        for f in filters {
            t.push_str(&format!(
                "  {{ key = \"{}\", operator = \"{}\", value = {}, not = {} }},\n",
                f.key,
                f.op,
                toml_value(f),
                f.not
            ));
        }
        t.push_str("]\n");
    }
    Config::parse(&t, Path::new("/x/config.toml")).unwrap_or_else(|e| panic!("{e}\n{t}"))
}

/// The oracle: SPEC §7 read literally.
/// The comparison operators, read literally, for any ordered value.
fn compare<T: PartialOrd>(op: &str, field: &T, v: &[T]) -> Option<bool> {
    Some(match op {
        "eq" => *field == v[0],
        "gt" => *field > v[0],
        "gte" => *field >= v[0],
        "lt" => *field < v[0],
        "lte" => *field <= v[0],
        "bt" => v[0] <= *field && *field <= v[1],
        "in" => v.contains(field),
        _ => return None,
    })
}

fn oracle_filter(f: &F, o: &Value) -> bool {
    let hit = if f.text.is_empty() {
        let name = if f.key == "created_at" {
            "created"
        } else {
            "updated"
        };
        let field = o[name].as_i64().unwrap();
        compare(f.op, &field, &f.time).expect("a time operator")
    } else {
        let field = o[f.key].as_str().unwrap_or("").to_lowercase();
        let v: Vec<String> = f.text.iter().map(|s| s.to_lowercase()).collect();
        compare(f.op, &field, &v).unwrap_or_else(|| match f.op {
            "ct" => field.contains(&v[0]),
            "sw" => field.starts_with(&v[0]),
            "ew" => field.ends_with(&v[0]),
            _ => unreachable!(),
        })
    };
    hit != f.not
}

fn oracle(groups: &[(bool, Vec<F>)], o: &Value) -> bool {
    groups.iter().all(|(or, fs)| {
        if fs.is_empty() {
            true
        } else if *or {
            fs.iter().any(|f| oracle_filter(f, o))
        } else {
            fs.iter().all(|f| oracle_filter(f, o))
        }
    })
}

fn doc() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(CHANNELS.to_vec()),
        prop::sample::select(REFERENCES.to_vec()),
        prop::sample::select(TIMES.to_vec()),
        prop::sample::select(TIMES.to_vec()),
    )
        .prop_map(|(channel, reference, created, updated)| {
            let mut o = common::order("e", &[("A", 1)]);
            if let Some(c) = channel {
                o["channel"] = json!(c);
            }
            o["reference"] = json!(reference);
            o["created"] = json!(created);
            o["updated"] = json!(updated);
            let mut problems = Vec::new();
            ordersync::order::validate(&o, "$", 0, &mut problems)
                .expect("valid")
                .doc
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn groups_match_the_oracle(
        groups in prop::collection::vec((any::<bool>(), prop::collection::vec(filter(), 0..4)), 0..3),
        o in doc(),
    ) {
        let c = config(&groups);
        prop_assert_eq!(c.systems[0].eligible(&o), oracle(&groups, &o), "{:?}", groups);
    }

    #[test]
    fn not_is_the_exact_complement(f in filter(), o in doc()) {
        let mut negated = f.clone();
        negated.not = !f.not;
        let plain = config(&[(false, vec![f])]);
        let neg = config(&[(false, vec![negated])]);
        prop_assert_ne!(plain.systems[0].eligible(&o), neg.systems[0].eligible(&o));
    }
}
