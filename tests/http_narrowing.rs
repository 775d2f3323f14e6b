//! `GET /v10/orders/export` with random include flags, filter groups and
//! pages over a few hundred random orders: the answer must be exactly what
//! `ordersync::filter` decides over every order, brute force, here. On
//! PostgreSQL (`ORDERSYNC_TEST_BACKEND=postgres`) the candidates are
//! narrowed by indexes first (store/postgres/candidates.rs), so this is
//! the proof that the narrowing never drops an order the filters accept:
//! mixed case, non-ASCII text (whose lower case only Rust's rules give: the
//! Kelvin sign, a dotted capital I, ß), missing fields, equal times.
//!
//! Needs curl, as tests/http.rs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use ordersync::filter::{FilterGroup, FilterSpec};
use ordersync::order::Facts;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};
use uuid::Uuid;

const TOKEN: &str = "narrowing-token-5d1c";
const ORDERS: usize = 300;

/// Text values, some only case apart, some non-ASCII: the orders' fields
/// and the filters' operands are drawn from these (and their prefixes).
const TEXTS: &[&str] = &[
    "PO-1",
    "po-1",
    "Po-10",
    "PO-2",
    "\u{212A}elvin", // KELVIN SIGN: Rust lower-cases it to an ASCII k
    "kelvin",
    "KELVIN",
    "\u{130}x", // LATIN CAPITAL LETTER I WITH DOT ABOVE: "i\u{307}x"
    "ix",
    "IX",
    "Straße",
    "STRASSE",
    "strasse",
    "Été",
    "été",
    "a",
    "Z",
    "~",
    "b2b",
    "B2B-dk",
];
const CHANNELS: &[Option<&str>] = &[
    Some("Shopify"),
    Some("shopify"),
    Some("B2B"),
    Some("\u{212A}anal"),
    Some("Été"),
    Some(""),
    None,
    None,
];
const TYPES: &[&str] = &["Sales Order", "sales order", "Return", "\u{130}ade"];
const STATUSES: &[&str] = &["Waiting", "Processing", "Hold", "Complete"];
const INTERNAL: &[&str] = &["approved", "approved", "approved", "draft", "selection"];
const CURRENCIES: &[&str] = &["EUR", "DKK", "USD"];
const TIMES: &[i64] = &[
    1_767_225_600_000,
    1_767_225_600_001,
    1_767_225_600_002,
    1_780_000_000_000,
    1_790_000_000_000,
];
const TEXT_KEYS: &[&str] = &[
    "channel",
    "type",
    "currency",
    "status",
    "internal_status",
    "reference",
    "external_id",
];

/// A small deterministic generator for the data set (proptest makes the
/// requests).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

fn external_id(i: usize) -> String {
    let stem = ["Ord", "ORD", "ord", "\u{212A}x", "Ünï", "\u{130}d"][i % 6];
    format!("{stem}-{i}")
}

fn orders() -> Vec<Value> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..ORDERS)
        .map(|i| {
            let mut o = order(&external_id(i), &[("A", 1)]);
            if let Some(c) = rng.pick(CHANNELS) {
                o["channel"] = json!(c);
            }
            o["type"] = json!(rng.pick(TYPES));
            o["status"] = json!(rng.pick(STATUSES));
            o["internal_status"] = json!(rng.pick(INTERNAL));
            o["currency"] = json!(rng.pick(CURRENCIES));
            o["reference"] = json!(rng.pick(TEXTS));
            o["created"] = json!(rng.pick(TIMES));
            o["updated"] = json!(rng.pick(TIMES));
            o["cancelled"] = json!(rng.chance(10));
            o["archived"] = json!(rng.chance(10));
            o
        })
        .collect()
}

/// One filter as the test makes it: its value a string, an integer or a
/// list of either.
#[derive(Debug, Clone)]
struct F {
    key: &'static str,
    operator: &'static str,
    value: toml::Value,
    not: bool,
}

#[derive(Debug, Clone)]
struct Request {
    groups: Vec<(bool, Vec<F>)>,
    include_not_approved: bool,
    include_cancelled: bool,
    include_archived: bool,
    /// None, or UNIX ms.
    since: Option<i64>,
    limit: usize,
    page: usize,
}

/// Operands: every text value, its lower case, and prefixes of them.
fn text_operands() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    for t in TEXTS
        .iter()
        .chain(TYPES)
        .chain(STATUSES)
        .chain(INTERNAL)
        .chain(CURRENCIES)
        .chain(CHANNELS.iter().flatten())
        .copied()
        .chain(["ord-1", "ORD-2", "\u{212A}x-3", "ünï-4", "i\u{307}d-5", "K"])
    {
        add(t);
        add(&t.to_lowercase());
        let chars: Vec<char> = t.chars().collect();
        for n in 1..chars.len().min(4) {
            add(&chars[..n].iter().collect::<String>());
        }
    }
    add("");
    out
}

fn filter() -> impl Strategy<Value = F> {
    let texts = text_operands();
    let text = prop::sample::select(texts.clone()).prop_map(toml::Value::String);
    let text_list = prop::collection::vec(prop::sample::select(texts), 1..4)
        .prop_map(|v| toml::Value::Array(v.into_iter().map(toml::Value::String).collect()));
    let times: Vec<i64> = TIMES
        .iter()
        .flat_map(|t| [t - 1, *t, t + 1])
        .chain([0])
        .collect();
    let time = prop::sample::select(times.clone()).prop_map(toml::Value::Integer);
    let time_list = prop::collection::vec(prop::sample::select(times), 1..4)
        .prop_map(|v| toml::Value::Array(v.into_iter().map(toml::Value::Integer).collect()));
    let pair = |s: BoxedStrategy<toml::Value>| {
        (s.clone(), s).prop_map(|(a, b)| toml::Value::Array(vec![a, b]))
    };
    let not = prop::bool::weighted(0.25);
    let text_filter = (
        prop::sample::select(TEXT_KEYS.to_vec()),
        prop_oneof![
            (
                prop::sample::select(vec!["eq", "gt", "gte", "lt", "lte", "ct", "sw", "ew"]),
                text.clone()
            ),
            (Just("in"), text_list),
            (Just("bt"), pair(text.boxed())),
        ],
        not,
    )
        .prop_map(|(key, (operator, value), not)| F {
            key,
            operator,
            value,
            not,
        });
    let time_filter = (
        prop::sample::select(vec!["created_at", "updated_at"]),
        prop_oneof![
            (
                prop::sample::select(vec!["eq", "gt", "gte", "lt", "lte"]),
                time.clone()
            ),
            (Just("in"), time_list),
            (Just("bt"), pair(time.boxed())),
        ],
        not,
    )
        .prop_map(|(key, (operator, value), not)| F {
            key,
            operator,
            value,
            not,
        });
    prop_oneof![3 => text_filter, 1 => time_filter]
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::collection::vec((any::<bool>(), prop::collection::vec(filter(), 1..4)), 0..3),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.3),
        prop::sample::select(vec![None, Some(0), Some(4_000_000_000_000)]),
        prop::sample::select(vec![1usize, 3, 7, 50, 1000]),
        0usize..4,
    )
        .prop_map(
            |(
                groups,
                include_not_approved,
                include_cancelled,
                include_archived,
                since,
                limit,
                page,
            )| {
                Request {
                    groups,
                    include_not_approved,
                    include_cancelled,
                    include_archived,
                    since,
                    limit,
                    page,
                }
            },
        )
}

/// Every byte but unreserved ones percent-encoded.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn scalar(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => enc(s),
        toml::Value::Integer(n) => n.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

impl Request {
    fn query(&self) -> String {
        let mut q = format!("system_id=erp&limit={}&page={}", self.limit, self.page);
        for (flag, on) in [
            ("include_not_approved", self.include_not_approved),
            ("include_cancelled", self.include_cancelled),
            ("include_archived", self.include_archived),
        ] {
            if on {
                q.push_str(&format!("&{flag}=1"));
            }
        }
        if let Some(since) = self.since {
            q.push_str(&format!("&not_exported_since={since}"));
        }
        for (g, (or, filters)) in self.groups.iter().enumerate() {
            let at = format!("filter_groups%5B{g}%5D");
            if *or {
                q.push_str(&format!("&{at}%5Bor%5D=true"));
            }
            for (i, f) in filters.iter().enumerate() {
                let at = format!("{at}%5Bfilters%5D%5B{i}%5D");
                q.push_str(&format!(
                    "&{at}%5Bkey%5D={}&{at}%5Boperator%5D={}",
                    f.key, f.operator
                ));
                match &f.value {
                    toml::Value::Array(items) => {
                        for (j, v) in items.iter().enumerate() {
                            q.push_str(&format!("&{at}%5Bvalue%5D%5B{j}%5D={}", scalar(v)));
                        }
                    }
                    v => q.push_str(&format!("&{at}%5Bvalue%5D={}", scalar(v))),
                }
                if f.not {
                    q.push_str(&format!("&{at}%5Bnot%5D=1"));
                }
            }
        }
        q
    }

    fn groups(&self) -> Vec<FilterGroup> {
        self.groups
            .iter()
            .map(|(or, filters)| {
                let specs = filters
                    .iter()
                    .map(|f| FilterSpec {
                        key: f.key.to_string(),
                        operator: f.operator.to_string(),
                        value: f.value.clone(),
                        not: f.not,
                    })
                    .collect();
                FilterGroup::from_specs(*or, specs).expect("the test's filters compile")
            })
            .collect()
    }
}

/// The external ids the request must return: brute force over `all` (the
/// stored documents), with `acked` those marked exported.
fn expected(r: &Request, all: &[Value], acked: &[String]) -> Vec<String> {
    let groups = r.groups();
    let mut hits: Vec<(i64, Uuid, String)> = all
        .iter()
        .filter(|doc| {
            let ext = doc["external_id"].as_str().unwrap();
            let candidate = !acked.iter().any(|a| a == ext) || r.since.is_some_and(|s| s <= 0);
            let f = Facts::of(doc);
            candidate
                && (r.include_not_approved || f.approved)
                && (r.include_cancelled || !f.cancelled)
                && (r.include_archived || !f.archived)
                && groups.iter().all(|g| g.matches(doc))
        })
        .map(|doc| {
            (
                doc["created"].as_i64().unwrap(),
                doc["id"].as_str().unwrap().parse().unwrap(),
                doc["external_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    hits.sort();
    hits.into_iter()
        .skip(r.page * r.limit)
        .take(r.limit)
        .map(|(_, _, ext)| ext)
        .collect()
}

fn get(port: u16, query: &str) -> (u16, Value) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg(format!("http://127.0.0.1:{port}/v10/orders/export?{query}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let v = serde_json::from_str(body).unwrap_or_else(|e| panic!("{query}: {e}: {body:?}"));
    (code.trim().parse().unwrap(), v)
}

fn ids(v: &Value) -> Vec<String> {
    v["orders"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|o| o["external_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn narrowed_answers_equal_the_filters_over_every_order() {
    if !have_tool("curl", "the HTTP tests") {
        return;
    }
    let port = free_port();
    let work = Work::new(&format!(
        r#"
[inbox]
settle = "0s"
[http]
listen = "127.0.0.1:{port}"
[[http.tokens]]
name = "test"
sha256 = "{}"
systems = ["*"]
[[systems]]
id = "erp"
transport = "http"
"#,
        token_sha256(TOKEN)
    ));
    let _d = work.start(&[]);
    wait_for("the HTTP API", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let sent = orders();
    let ndjson: String = sent.iter().map(|o| format!("{o}\n")).collect();
    work.drop_and_wait(
        &[
            ("stock.csv", "sku,in_stock\nA,100000\n".to_string()),
            ("orders.ndjson", ndjson),
        ],
        Duration::from_secs(60),
    );

    // Some orders marked exported (every seventh; every fourteenth with
    // regulation, which archives it, unless cancelled: that is refused).
    let acked: Vec<String> = (0..ORDERS).step_by(7).map(external_id).collect();
    let marks: Vec<Value> = (0..ORDERS)
        .step_by(7)
        .map(|i| {
            let id = ordersync::order::id_for_external_id(&external_id(i));
            let regulate = i % 14 == 0 && sent[i]["cancelled"] != json!(true);
            json!({"order_id": id, "system_id": "erp", "regulate_inventory": regulate})
        })
        .collect();
    let body = work.path("marks.json");
    std::fs::write(&body, json!({ "orders": marks }).to_string()).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!(
            "http://127.0.0.1:{port}/v10/orders/mark-as-exported"
        ))
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(answer["marked"], json!(marks.len()), "{out:?}");

    // The stored documents: every order, asked for with every include.
    let (status, v) = get(
        port,
        "system_id=erp&limit=10000&include_not_approved=1&include_cancelled=1&include_archived=1&not_exported_since=0",
    );
    assert_eq!(status, 200, "{v}");
    let all: Vec<Value> = v["orders"].as_array().unwrap().clone();
    let mut got: Vec<String> = ids(&v);
    let mut want: Vec<String> = (0..ORDERS).map(external_id).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every order, once");

    let cases: u32 = std::env::var("NARROWING_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(RunConfig {
        cases,
        failure_persistence: None,
        ..RunConfig::default()
    });
    let answered = AtomicUsize::new(0);
    let result = runner.run(&request(), |r| {
        let query = r.query();
        let (status, v) = get(port, &query);
        if status != 200 {
            return Err(TestCaseError::fail(format!("{query}: {status} {v}")));
        }
        let want = expected(&r, &all, &acked);
        if !want.is_empty() {
            answered.fetch_add(1, Ordering::Relaxed);
        }
        prop_assert_eq!(ids(&v), want, "GET ?{}", query);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The cases are worth something: many of them return orders.
    let answered = answered.load(Ordering::Relaxed);
    eprintln!("{answered} of {cases} requests returned orders");
    assert!(answered * 4 >= cases as usize, "{answered} of {cases}");
}
