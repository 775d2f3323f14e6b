//! The HTTP API (issue 9, SPEC §11) end to end: the real daemon on a free
//! 127.0.0.1 port, real clients (curl for requests; Python's urllib and the
//! prometheus_client parser for /metrics), real folders and store.
//!
//! Needs curl (and python3 with prometheus_client for the metrics test);
//! `.ci/run` installs them. Without curl the tests say so and pass, unless
//! `ORDERSYNC_E2E=1`, where a missing tool is a failure.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ERP_TOKEN: &str = "erp-secret-token-0f3a9c";
const ALL_TOKEN: &str = "all-systems-token-77b1e2";
const WAIT: Duration = Duration::from_secs(30);

fn sha(t: &str) -> String {
    token_sha256(t)
}

fn have(tool: &str) -> bool {
    have_tool(tool, "the HTTP tests")
}

/// A folder with `systems` (TOML) and `[http]` on a free port with two
/// tokens: "erp-partner" for erp only, "all" for every system.
struct Api {
    work: Work,
    port: u16,
}

impl Api {
    fn new(systems: &str) -> Api {
        Api::on_port(systems, free_port())
    }

    fn on_port(systems: &str, port: u16) -> Api {
        let config = format!(
            r#"
[inbox]
settle = "0s"
rescan = "1s"
[http]
listen = "127.0.0.1:{port}"
[[http.tokens]]
name = "erp-partner"
sha256 = "{}"
systems = ["erp"]
[[http.tokens]]
name = "all"
sha256 = "{}"
systems = ["*"]
{systems}
"#,
            sha(ERP_TOKEN),
            sha(ALL_TOKEN)
        );
        Api {
            work: Work::new(&config),
            port,
        }
    }

    fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    fn start_with(&self, env: &[(&str, &str)]) -> Daemon {
        let d = self.work.start(env);
        wait_for("the HTTP API", WAIT, || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        d
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// curl: (status, body). `-g`: brackets in the URL are sent as they are.
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "-g", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl {args:?}: no status: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (status, body.to_string())
    }

    fn get(&self, token: &str, path_and_query: &str) -> (u16, Value) {
        let auth = format!("Authorization: Bearer {token}");
        let (status, body) = self.curl(&["-H", &auth, &self.url(path_and_query)]);
        let v = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}: {body:?}"));
        (status, v)
    }

    /// The external ids a GET returns (status must be 200).
    fn ids(&self, token: &str, query: &str) -> Vec<String> {
        let (status, v) = self.get(token, &format!("/v10/orders/export?{query}"));
        assert_eq!(status, 200, "{query}: {v}");
        v["orders"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {v}"))
            .iter()
            .map(|o| o["external_id"].as_str().unwrap().to_string())
            .collect()
    }

    fn post(&self, token: &str, body: &Value) -> (u16, Value) {
        self.post_raw(token, body.to_string().as_bytes())
    }

    fn post_raw(&self, token: &str, body: &[u8]) -> (u16, Value) {
        let file = self.work.path("body.json");
        std::fs::write(&file, body).unwrap();
        let auth = format!("Authorization: Bearer {token}");
        let data = format!("@{}", file.display());
        let (status, text) = self.curl(&[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &data,
            &self.url("/v10/orders/mark-as-exported"),
        ]);
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST: {e}: {text:?}"));
        (status, v)
    }

    /// Drops files and waits until the daemon has archived them all.
    fn drop_and_wait(&self, files: &[(&str, String)]) {
        self.work.drop_and_wait(files, WAIT);
    }
}

fn mark(order: &str, system: &str, regulate: bool) -> Value {
    json!({"order_id": order, "system_id": system, "regulate_inventory": regulate, "note": "from the test"})
}

const TWO_HTTP: &str = r#"
[[systems]]
id = "erp"
transport = "http"
[[systems]]
id = "wms"
transport = "http"
"#;

/// The seed's flow over HTTP: stock 10 → order for 1 → GET shows it (10/9)
/// → mark-as-exported with regulate → GET no longer shows it, 9/9,
/// archived; a second system still sees it.
#[test]
fn seed_flow_over_http() {
    if !have("curl") {
        return;
    }
    let api = Api::new(TWO_HTTP);
    let mut d = api.start();
    api.drop_and_wait(&[
        ("stock.csv", "sku,in_stock\nA,10\n".into()),
        ("o1.json", order("shop-1", &[("A", 1)]).to_string()),
    ]);
    assert_eq!(api.work.stock("A"), (10, 1, 9));
    let (status, v) = api.get(ERP_TOKEN, "/v10/orders/export?system_id=erp");
    assert_eq!(status, 200, "{v}");
    let orders = v["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1, "{v}");
    assert_eq!(orders[0]["external_id"], "shop-1");
    assert_eq!(orders[0]["revision"], 1);
    // Without includes[]=lines, no lines (as the platform does).
    assert!(orders[0].get("line_items").is_none(), "{v}");
    let with_lines = api
        .get(
            ERP_TOKEN,
            "/v10/orders/export?system_id=erp&includes[]=lines",
        )
        .1;
    assert_eq!(with_lines["orders"][0]["line_items"][0]["sku"], "A");
    // GET changes nothing.
    assert_eq!(api.work.state("shop-1", "erp").as_deref(), Some("pending"));

    let id = orders[0]["id"].as_str().unwrap().to_string();
    let (status, v) = api.post(ERP_TOKEN, &json!({"orders": [mark(&id, "erp", true)]}));
    assert_eq!((status, &v), (200, &json!({"marked": 1, "regulated": 1})));
    assert!(api.ids(ERP_TOKEN, "system_id=erp").is_empty());
    assert_eq!(api.work.stock("A"), (9, 0, 9));
    let show = api.work.json(&["orders", "show", "shop-1"]);
    assert_eq!(show["order"]["archived"], true, "{show}");
    assert_eq!(show["systems"]["erp"]["state"], "acked");
    // The timeline says it came over HTTP, and from which token.
    let timeline = show["timeline"].to_string();
    assert!(
        timeline.contains(r#"HTTP mark-as-exported, token \"erp-partner\""#),
        "{timeline}"
    );
    // The second system still has it (archived now, so asked for with
    // include_archived=1, as the platform's flag says).
    assert!(api.ids(ALL_TOKEN, "system_id=wms").is_empty());
    assert_eq!(
        api.ids(ALL_TOKEN, "system_id=wms&include_archived=1"),
        ["shop-1"]
    );
    // Repeating the call is harmless: no second regulation.
    let (status, v) = api.post(ERP_TOKEN, &json!({"orders": [mark(&id, "erp", true)]}));
    assert_eq!((status, &v), (200, &json!({"marked": 1, "regulated": 0})));
    assert_eq!(api.work.stock("A"), (9, 0, 9));
    // An HTTP system gets no outbox files.
    assert!(api.work.outbox("erp").is_empty() && api.work.outbox("wms").is_empty());
    let status = api.work.json(&["status"]);
    assert_eq!(status["systems"]["erp"]["acked"], 1, "{status}");
    assert_eq!(status["systems"]["wms"]["pending"], 1, "{status}");
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}

/// Regression: the loop reported an HTTP system's pending orders as an
/// export in progress (`STATUS=exporting: erp 1 orders pending`, and the
/// same log line every 5 s) although no file is ever written for it.
#[test]
fn http_systems_are_not_reported_as_exporting() {
    use std::os::unix::net::UnixDatagram;
    let api = Api::new(TWO_HTTP);
    let sock_path = api.work.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let (got, reader) = common::read_notifications(sock);
    api.work.drop_json("o1.json", &order("shop-1", &[("A", 1)]));
    let mut d = api
        .work
        .spawn(&[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    // The status at the end of the loop's step that applied the order.
    wait_for("the step that applied the order", WAIT, || {
        got.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("STATUS=watching") && l.contains(" 1 applied"))
    });
    assert_eq!(d.terminate().code(), Some(0));
    let _ = reader.join();
    let lines = got.lock().unwrap().clone();
    assert!(
        !lines.iter().any(|l| l.contains("orders pending")),
        "{lines:?}"
    );
}

/// Files and HTTP on one state: an order dropped as a file is served over
/// HTTP; one marked over HTTP is acked in `status`, and an ack CSV
/// afterwards does not regulate again. The file system still gets files.
#[test]
fn files_and_http_share_one_state() {
    if !have("curl") {
        return;
    }
    let api = Api::new(
        r#"
[[systems]]
id = "erp"
transport = "http"
[[systems]]
id = "fs"
"#,
    );
    let mut d = api.start();
    api.drop_and_wait(&[
        ("stock.csv", "sku,in_stock\nA,10\n".into()),
        ("o1.json", order("shop-1", &[("A", 2)]).to_string()),
    ]);
    wait_for("the export file", WAIT, || api.work.outbox("fs").len() == 1);
    assert_eq!(api.ids(ERP_TOKEN, "system_id=erp"), ["shop-1"]);
    let (status, _) = api.post(ERP_TOKEN, &json!({"orders": [mark("shop-1", "erp", true)]}));
    assert_eq!(status, 200);
    let st = api.work.json(&["status"]);
    assert_eq!(st["systems"]["erp"]["acked"], 1, "{st}");
    assert_eq!(st["systems"]["erp"]["pending"], 0, "{st}");
    assert_eq!(api.work.stock("A"), (8, 0, 8));
    // The file system acks it with regulate: marked, not regulated again.
    api.drop_and_wait(&[("ack.csv", acks(&[("shop-1", "fs", true)]))]);
    assert_eq!(api.work.stock("A"), (8, 0, 8));
    assert_eq!(api.work.state("shop-1", "fs").as_deref(), Some("acked"));
    let timeline = api.work.json(&["orders", "show", "shop-1"])["timeline"].to_string();
    assert!(timeline.contains("already regulated"), "{timeline}");
    assert_eq!(d.terminate().code(), Some(0));
}

/// `not_exported_since`: orders marked at or after it come again.
#[test]
fn not_exported_since_returns_marked_orders_again() {
    if !have("curl") {
        return;
    }
    let api = Api::new(TWO_HTTP);
    let _d = api.start();
    let mut early = order("early", &[("A", 1)]);
    early["created"] = json!(1_700_000_000_000i64);
    api.drop_and_wait(&[
        ("o1.json", order("shop-1", &[("A", 1)]).to_string()),
        ("o2.json", early.to_string()),
    ]);
    // Oldest created first.
    assert_eq!(api.ids(ERP_TOKEN, "system_id=erp"), ["early", "shop-1"]);
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let (status, _) = api.post(
        ERP_TOKEN,
        &json!({"orders": [mark("shop-1", "erp", false)]}),
    );
    assert_eq!(status, 200);
    assert_eq!(api.ids(ERP_TOKEN, "system_id=erp"), ["early"]);
    let since = before.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert_eq!(
        api.ids(
            ERP_TOKEN,
            &format!("system_id=erp&not_exported_since={since}")
        ),
        ["early", "shop-1"]
    );
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
        .replace(' ', "%20");
    assert_eq!(
        api.ids(
            ERP_TOKEN,
            &format!("system_id=erp&not_exported_since={later}")
        ),
        ["early"]
    );
    // GET never changed the state.
    assert_eq!(api.work.state("shop-1", "erp").as_deref(), Some("acked"));
}

/// Every include flag, and paging.
#[test]
fn include_flags_and_paging() {
    if !have("curl") {
        return;
    }
    let api = Api::new(TWO_HTTP);
    let _d = api.start();
    let mut files = Vec::new();
    for (i, (ext, field, value)) in [
        ("approved", "internal_status", json!("approved")),
        ("draft", "internal_status", json!("draft")),
        ("cancelled", "cancelled", json!(true)),
        ("archived", "archived", json!(true)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut o = order(ext, &[("A", 1)]);
        o[field] = value;
        o["created"] = json!(1_790_000_000_000i64 + i as i64);
        files.push((format!("{ext}.json"), o.to_string()));
    }
    let files: Vec<(&str, String)> = files.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
    api.drop_and_wait(&files);
    let q = |extra: &str| api.ids(ERP_TOKEN, &format!("system_id=erp{extra}"));
    assert_eq!(q(""), ["approved"]);
    assert_eq!(q("&include_not_approved=1"), ["approved", "draft"]);
    assert_eq!(q("&include_cancelled=1"), ["approved", "cancelled"]);
    assert_eq!(q("&include_archived=1"), ["approved", "archived"]);
    assert_eq!(
        q("&include_not_approved=1&include_cancelled=1&include_archived=1"),
        ["approved", "draft", "cancelled", "archived"]
    );
    assert_eq!(
        q("&include_cancelled=0&include_not_approved=0"),
        ["approved"]
    );
    let all = "&include_not_approved=1&include_cancelled=1&include_archived=1";
    assert_eq!(
        q(&format!("{all}&limit=3")),
        ["approved", "draft", "cancelled"]
    );
    assert_eq!(q(&format!("{all}&limit=3&page=1")), ["archived"]);
    assert!(q(&format!("{all}&limit=3&page=2")).is_empty());
}

/// One filter case: the config's TOML for the groups and the same groups as
/// a query string (raw brackets), and the ids expected.
struct Case {
    toml: &'static str,
    query: String,
    expected: &'static [&'static str],
}

/// The orders the filter cases run on.
fn filter_orders() -> Vec<(String, String)> {
    let spec = [
        ("a-100", "Shopify", "PO-1", "2026-01-01T00:00:00Z"),
        ("b-200", "B2B", "PO-2", "2026-02-01T00:00:00Z"),
        ("c-300", "Amazon", "X-3", "2026-03-01T00:00:00Z"),
        ("d-400", "", "PO-4", "2026-04-01T00:00:00Z"),
    ];
    spec.iter()
        .map(|(ext, channel, reference, created)| {
            let mut o = order(ext, &[("A", 1)]);
            if !channel.is_empty() {
                o["channel"] = json!(channel);
            }
            o["reference"] = json!(reference);
            let ms = chrono::DateTime::parse_from_rfc3339(created)
                .unwrap()
                .timestamp_millis();
            o["created"] = json!(ms);
            o["updated"] = json!(ms);
            (format!("{ext}.json"), o.to_string())
        })
        .collect()
}

fn filter_cases() -> Vec<Case> {
    let f = |i: usize, key: &str, op: &str, value: &str| -> String {
        format!(
            "&filter_groups[0][filters][{i}][key]={key}&filter_groups[0][filters][{i}][operator]={op}&filter_groups[0][filters][{i}][value]={value}"
        )
    };
    vec![
        Case {
            toml: r#"[{filters = [{key = "channel", operator = "eq", value = "shopify"}]}]"#,
            query: f(0, "channel", "eq", "shopify"),
            expected: &["a-100"],
        },
        Case {
            toml: r#"[{filters = [{key = "created_at", operator = "gt", value = "2026-02-01T00:00:00Z"}]}]"#,
            query: f(0, "created_at", "gt", "2026-02-01T00:00:00Z"),
            expected: &["c-300", "d-400"],
        },
        Case {
            toml: r#"[{filters = [{key = "created_at", operator = "gte", value = 1769904000000}]}]"#,
            query: f(0, "created_at", "gte", "1769904000000"),
            expected: &["b-200", "c-300", "d-400"],
        },
        Case {
            toml: r#"[{filters = [{key = "updated_at", operator = "lt", value = "2026-02-01T00:00:00Z"}]}]"#,
            query: f(0, "updated_at", "lt", "2026-02-01T00:00:00Z"),
            expected: &["a-100"],
        },
        Case {
            toml: r#"[{filters = [{key = "updated_at", operator = "lte", value = "2026-02-01T00:00:00Z"}]}]"#,
            query: f(0, "updated_at", "lte", "2026-02-01T00:00:00Z"),
            expected: &["a-100", "b-200"],
        },
        Case {
            toml: r#"[{filters = [{key = "created_at", operator = "bt", value = ["2026-01-15T00:00:00Z", "2026-03-01T00:00:00Z"]}]}]"#,
            query: "&filter_groups[0][filters][0][key]=created_at&filter_groups[0][filters][0][operator]=bt&filter_groups[0][filters][0][value][0]=2026-01-15T00:00:00Z&filter_groups[0][filters][0][value][1]=2026-03-01T00:00:00Z".to_string(),
            expected: &["b-200", "c-300"],
        },
        Case {
            toml: r#"[{filters = [{key = "channel", operator = "in", value = ["B2B", "amazon"]}]}]"#,
            query: "&filter_groups[0][filters][0][key]=channel&filter_groups[0][filters][0][operator]=in&filter_groups[0][filters][0][value][]=B2B&filter_groups[0][filters][0][value][]=amazon".to_string(),
            expected: &["b-200", "c-300"],
        },
        Case {
            toml: r#"[{filters = [{key = "channel", operator = "in", value = ["B2B", "amazon"], not = true}]}]"#,
            query: "&filter_groups[0][filters][0][key]=channel&filter_groups[0][filters][0][operator]=in&filter_groups[0][filters][0][value][0]=B2B&filter_groups[0][filters][0][value][1]=amazon&filter_groups[0][filters][0][not]=true".to_string(),
            expected: &["a-100", "d-400"],
        },
        Case {
            toml: r#"[{filters = [{key = "reference", operator = "ct", value = "o-"}]}]"#,
            query: f(0, "reference", "ct", "o-"),
            expected: &["a-100", "b-200", "d-400"],
        },
        Case {
            toml: r#"[{filters = [{key = "reference", operator = "sw", value = "x"}]}]"#,
            query: f(0, "reference", "sw", "x"),
            expected: &["c-300"],
        },
        Case {
            toml: r#"[{filters = [{key = "external_id", operator = "ew", value = "00", not = true}]}]"#,
            query: format!(
                "{}&filter_groups[0][filters][0][not]=1",
                f(0, "external_id", "ew", "00")
            ),
            expected: &[],
        },
        // or within a group.
        Case {
            toml: r#"[{or = true, filters = [{key = "channel", operator = "eq", value = "B2B"}, {key = "reference", operator = "eq", value = "PO-4"}]}]"#,
            query: format!(
                "&filter_groups[0][or]=true{}{}",
                f(0, "channel", "eq", "B2B"),
                f(1, "reference", "eq", "PO-4")
            ),
            expected: &["b-200", "d-400"],
        },
        // AND within a group (no or).
        Case {
            toml: r#"[{filters = [{key = "reference", operator = "sw", value = "PO"}, {key = "created_at", operator = "gte", value = "2026-02-01T00:00:00Z"}]}]"#,
            query: format!(
                "{}{}",
                f(0, "reference", "sw", "PO"),
                f(1, "created_at", "gte", "2026-02-01T00:00:00Z")
            ),
            expected: &["b-200", "d-400"],
        },
        // Groups are ANDed, each an or.
        Case {
            toml: r#"[{or = true, filters = [{key = "channel", operator = "eq", value = "Shopify"}, {key = "channel", operator = "eq", value = "Amazon"}]}, {filters = [{key = "created_at", operator = "gt", value = "2026-01-15T00:00:00Z"}]}]"#,
            query: "&filter_groups[0][or]=true&filter_groups[0][filters][0][key]=channel&filter_groups[0][filters][0][operator]=eq&filter_groups[0][filters][0][value]=Shopify&filter_groups[0][filters][1][key]=channel&filter_groups[0][filters][1][operator]=eq&filter_groups[0][filters][1][value]=Amazon&filter_groups[1][filters][0][key]=created_at&filter_groups[1][filters][0][operator]=gt&filter_groups[1][filters][0][value]=2026-01-15T00:00:00Z".to_string(),
            expected: &["c-300"],
        },
    ]
}

/// Filter groups over the query string, raw and percent-encoded, agree with
/// the same groups in a system's config (table-driven: each case is also a
/// file system whose export is compared), and with the expected ids.
#[test]
fn http_filters_agree_with_config_filters() {
    if !have("curl") {
        return;
    }
    let cases = filter_cases();
    let mut systems = String::from("[[systems]]\nid = \"erp\"\ntransport = \"http\"\n");
    for (i, c) in cases.iter().enumerate() {
        systems.push_str(&format!(
            "[[systems]]\nid = \"case{i}\"\nfilter_groups = {}\n",
            c.toml
        ));
    }
    let api = Api::new(&systems);
    let _d = api.start();
    let files = filter_orders();
    let files: Vec<(&str, String)> = files.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
    api.drop_and_wait(&files);
    for (i, c) in cases.iter().enumerate() {
        let sys = format!("case{i}");
        if !c.expected.is_empty() {
            wait_for("the case's export", WAIT, || {
                api.work.exported_ids(&sys).len() == c.expected.len()
            });
        }
        let mut from_config = api.work.exported_ids(&sys);
        from_config.sort();
        let raw = api.ids(ERP_TOKEN, &format!("system_id=erp{}", c.query));
        let encoded_query = c.query.replace('[', "%5B").replace(']', "%5D");
        let encoded = api.ids(ERP_TOKEN, &format!("system_id=erp{encoded_query}"));
        assert_eq!(raw, c.expected, "case {i} over HTTP (raw): {}", c.query);
        assert_eq!(encoded, c.expected, "case {i} over HTTP (%5B%5D)");
        assert_eq!(
            from_config, c.expected,
            "case {i} in the config: {}",
            c.toml
        );
    }
}

/// 401 without or with a wrong token, 403 for another system's orders;
/// tokens never appear in the log (debug level, hyper's logs included).
#[test]
fn auth_and_tokens_never_logged() {
    if !have("curl") {
        return;
    }
    let api = Api::new(TWO_HTTP);
    let mut d = api.start_with(&[("RUST_LOG", "debug")]);
    api.drop_and_wait(&[("o1.json", order("shop-1", &[("A", 1)]).to_string())]);
    let url = api.url("/v10/orders/export?system_id=erp");
    let (status, body) = api.curl(&[&url]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("header Authorization"), "{body}");
    let (status, body) = api.curl(&["-H", "Authorization: Bearer not-the-token", &url]);
    assert_eq!(status, 401, "{body}");
    let (status, body) = api.curl(&["-H", &format!("Authorization: Basic {ERP_TOKEN}"), &url]);
    assert_eq!(status, 401, "{body}");
    let (status, v) = api.get(ERP_TOKEN, "/v10/orders/export?system_id=wms");
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["problems"][0]["at"], "system_id", "{v}");
    let (status, v) = api.post(ERP_TOKEN, &json!({"orders": [mark("shop-1", "wms", true)]}));
    assert_eq!(status, 403, "{v}");
    assert_eq!(api.work.state("shop-1", "wms").as_deref(), Some("pending"));
    assert_eq!(api.work.stock("A"), (0, 1, -1));
    // The right token works; the all-systems token too.
    assert_eq!(api.ids(ERP_TOKEN, "system_id=erp"), ["shop-1"]);
    assert_eq!(api.ids(ALL_TOKEN, "system_id=wms"), ["shop-1"]);
    let (status, _) = api.post(
        ALL_TOKEN,
        &json!({"orders": [mark("shop-1", "wms", false)]}),
    );
    assert_eq!(status, 200);
    assert_eq!(d.terminate().code(), Some(0));
    let log = d.log_text();
    assert!(log.contains("HTTP API listening"), "{log}");
    for secret in [ERP_TOKEN, ALL_TOKEN, "not-the-token"] {
        assert!(
            !log.contains(secret),
            "the token {secret} is in the log:\n{log}"
        );
    }
}

/// Every error class with its status and JSON body; nothing changes on any.
#[test]
fn errors_have_status_and_problems() {
    if !have("curl") {
        return;
    }
    let api = Api::new(TWO_HTTP);
    let _d = api.start();
    api.drop_and_wait(&[
        ("stock.csv", "sku,in_stock\nA,10\n".into()),
        ("o1.json", order("shop-1", &[("A", 1)]).to_string()),
    ]);
    let dump = || {
        (
            api.work.json(&["status"]),
            api.work.json(&["inventory"]),
            api.work.json(&["orders", "show", "shop-1"]),
        )
    };
    let before = dump();
    let problems = |v: &Value| -> Vec<String> {
        v["problems"]
            .as_array()
            .unwrap_or_else(|| panic!("no problems list: {v}"))
            .iter()
            .map(|p| {
                format!(
                    "{}: {}",
                    p["at"].as_str().unwrap(),
                    p["what"].as_str().unwrap()
                )
            })
            .collect()
    };
    // 400: no system_id.
    let (status, v) = api.get(ERP_TOKEN, "/v10/orders/export");
    assert_eq!(status, 400, "{v}");
    assert_eq!(problems(&v), ["system_id: required"]);
    // 422: every problem of the query, each with where and what.
    let (status, v) = api.get(
        ALL_TOKEN,
        "/v10/orders/export?system_id=nope&include_cancelled=yes&limit=100000&filter_groups[0][filters][0][key]=colour&filter_groups[0][filters][0][operator]=eq&filter_groups[0][filters][0][value]=red&not_exported_since=soon",
    );
    assert_eq!(status, 422, "{v}");
    let p = problems(&v);
    for want in [
        "system_id: unknown system \"nope\"",
        "include_cancelled: expected 0 or 1",
        "limit: expected a whole number from 1 to 10000",
        "filter_groups[0][filters][0][key]: unknown filter key \"colour\"",
        "not_exported_since: expected a UTC date-time",
    ] {
        assert!(p.iter().any(|x| x.starts_with(want)), "{want}: {p:?}");
    }
    // 422 on POST: every entry's problems, and the good entry not applied.
    let (status, v) = api.post(
        ERP_TOKEN,
        &json!({"orders": [
            mark("shop-1", "erp", true),
            mark("no-such-order", "erp", true),
            {"order_id": "shop-1", "system_id": "erp", "regulate_inventory": "maybe"},
        ]}),
    );
    assert_eq!(status, 422, "{v}");
    let p = problems(&v);
    assert!(
        p.contains(
            &"orders[2].regulate_inventory: expected true or false, got \"maybe\"".to_string()
        ),
        "{p:?}"
    );
    let (status, v) = api.post(
        ERP_TOKEN,
        &json!({"orders": [mark("shop-1", "erp", true), mark("no-such-order", "erp", true)]}),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        problems(&v),
        ["orders[1].order_id: unknown order \"no-such-order\""]
    );
    // 400: not JSON, and a 1 MB garbage body.
    let (status, v) = api.post_raw(ERP_TOKEN, b"{\"orders\": [");
    assert_eq!(status, 400, "{v}");
    assert!(problems(&v)[0].starts_with("body: not JSON"), "{v}");
    let garbage: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let (status, v) = api.post_raw(ERP_TOKEN, &garbage);
    assert_eq!(status, 400, "{v}");
    // 422: more entries than a call may hold.
    let many: Vec<Value> = (0..10_001).map(|_| mark("shop-1", "erp", false)).collect();
    let (status, v) = api.post(ERP_TOKEN, &json!({ "orders": many }));
    assert_eq!(status, 422, "{v}");
    assert!(problems(&v)[0].contains("at most 10000 per call"), "{v}");
    // 413: a body over 16 MiB.
    let big = vec![b' '; 17 << 20];
    let (status, v) = api.post_raw(ERP_TOKEN, &big);
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"], "invalid body", "{v}");
    // 404 and 405, JSON too.
    let (status, v) = api.get(ERP_TOKEN, "/v10/orders/nothing");
    assert_eq!(status, 404, "{v}");
    assert_eq!(problems(&v), ["/v10/orders/nothing: no such endpoint"]);
    let auth = format!("Authorization: Bearer {ERP_TOKEN}");
    let (status, body) = api.curl(&["-H", &auth, &api.url("/v10/orders/mark-as-exported")]);
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("method GET is not allowed"), "{body}");
    let (status, body) = api.curl(&[
        "-X",
        "DELETE",
        "-H",
        &auth,
        &api.url("/v10/orders/export?system_id=erp"),
    ]);
    assert_eq!(status, 405, "{body}");
    // Nothing changed on any of these.
    assert_eq!(dump(), before);
}

/// A slow client (a connection that sends half a request and holds it, and
/// one that asks for orders and never reads) does not delay files; SIGTERM
/// still stops the daemon with exit 0.
#[test]
fn a_slow_client_does_not_stall_files() {
    if !have("curl") {
        return;
    }
    let api = Api::new(
        r#"
[[systems]]
id = "erp"
transport = "http"
[[systems]]
id = "fs"
"#,
    );
    let mut d = api.start();
    let mut half = TcpStream::connect(("127.0.0.1", api.port)).unwrap();
    half.write_all(b"GET /v10/orders/export?system_id=erp HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut reader = TcpStream::connect(("127.0.0.1", api.port)).unwrap();
    reader
        .write_all(
            format!("GET /v10/orders/export?system_id=erp&includes[]=lines HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ERP_TOKEN}\r\n\r\n").as_bytes(),
        )
        .unwrap();
    for i in 0..5 {
        let name = format!("o{i}.json");
        api.work
            .drop_json(&name, &order(&format!("shop-{i}"), &[("A", 1)]));
        wait_for(
            "the file's export while a client holds a connection",
            WAIT,
            || api.work.exported_ids("fs").len() == i + 1,
        );
    }
    // A GET from another client is answered meanwhile, and the reader's
    // answer waits for it. (The half request is closed by the server after
    // `[http] header_timeout`: tests/http_limits.rs.)
    assert_eq!(api.ids(ERP_TOKEN, "system_id=erp").len(), 5);
    let mut first = [0u8; 12];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
    drop(half);
}

/// `/metrics` parsed by the prometheus_client OpenMetrics parser, values
/// matching `status --json`; `/healthz` answers without a token.
#[test]
fn metrics_match_status() {
    if !have("curl") || !have("python3") {
        return;
    }
    let api = Api::new(
        r#"
[[systems]]
id = "erp"
transport = "http"
[[systems]]
id = "fs"
"#,
    );
    let mut d = api.start();
    api.drop_and_wait(&[
        ("stock.csv", "sku,in_stock\nA,10\n".into()),
        ("o1.json", order("shop-1", &[("A", 1)]).to_string()),
        ("o2.json", order("shop-2", &[("A", 1)]).to_string()),
    ]);
    wait_for("the export", WAIT, || {
        api.work.exported_ids("fs").len() == 2
    });
    api.work.drop_file("bad.json", "{not json");
    wait_for("the rejection", WAIT, || !api.work.errors().is_empty());
    let (status, _) = api.post(
        ERP_TOKEN,
        &json!({"orders": [mark("shop-1", "erp", false)]}),
    );
    assert_eq!(status, 200);
    let (status, _) = api.curl(&[&api.url("/healthz")]);
    assert_eq!(status, 200);
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/http/metrics.py"
        ))
        .arg(api.url("/metrics"))
        .output()
        .expect("python3");
    if out.status.code() == Some(3) {
        assert!(
            std::env::var("ORDERSYNC_E2E").as_deref() != Ok("1"),
            "python3's prometheus_client is needed (.ci/run installs it)"
        );
        eprintln!("skipped: python3 prometheus_client not installed");
        return;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples = m["samples"].as_array().unwrap();
    let value = |name: &str, labels: Value| -> f64 {
        samples
            .iter()
            .find(|s| {
                s["name"] == name
                    && labels
                        .as_object()
                        .unwrap()
                        .iter()
                        .all(|(k, v)| s["labels"][k] == *v)
            })
            .and_then(|s| s["value"].as_f64())
            .unwrap_or_else(|| panic!("no sample {name} {labels}: {m}"))
    };
    let status = api.work.json(&["status"]);
    assert_eq!(
        value("ordersync_orders", json!({})),
        status["orders"].as_f64().unwrap()
    );
    for system in ["erp", "fs"] {
        for state in ["pending", "written", "acked"] {
            assert_eq!(
                value(
                    "ordersync_system_orders",
                    json!({"system": system, "state": state})
                ),
                status["systems"][system][state].as_f64().unwrap(),
                "{system} {state}: {status}"
            );
        }
    }
    assert_eq!(
        value("ordersync_files_applied_total", json!({"kind": "orders"})),
        2.0
    );
    assert_eq!(
        value("ordersync_files_applied_total", json!({"kind": "stock"})),
        1.0
    );
    assert_eq!(
        value("ordersync_files_rejected_total", json!({"kind": "orders"})),
        1.0
    );
    assert!(value("ordersync_export_files_written_total", json!({})) >= 1.0);
    assert!(value("ordersync_apply_duration_seconds_count", json!({})) >= 4.0);
    assert!(value("ordersync_export_duration_seconds_count", json!({})) >= 1.0);
    assert_eq!(
        value(
            "ordersync_http_requests_total",
            json!({"route": "/v10/orders/mark-as-exported", "status": "200"})
        ),
        1.0
    );
    assert!(value("ordersync_last_scan_timestamp_seconds", json!({})) > 1.7e9);
    assert!(value("ordersync_inbox_files_waiting", json!({})) >= 0.0);
    assert_eq!(d.terminate().code(), Some(0));
}

/// A taken address is a clear fatal error at start.
#[test]
fn a_taken_address_is_fatal_at_start() {
    // The port is held from the start: no other test can take it between.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = Api::on_port(TWO_HTTP, holder.local_addr().unwrap().port());
    let out = api.work.cmd(&["run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on 127.0.0.1:"), "{err}");
    assert!(err.contains("[http] listen"), "{err}");
}

/// Config checks of the new keys, and `check` shows them.
#[test]
fn http_config_is_checked_and_shown() {
    let api = Api::new(TWO_HTTP);
    let out = api.work.ok(&["check"]);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["transport", "http"]),
        "{out}"
    );
    assert!(
        out.contains(&format!("http: listening on 127.0.0.1:{}", api.port)),
        "{out}"
    );
    assert!(
        out.contains("http token \"erp-partner\": systems erp"),
        "{out}"
    );
    assert!(!out.contains(&sha(ERP_TOKEN)), "{out}");
    assert!(
        out.contains("http limits: max_connections the open-files limit minus 256, at most 4096, header_timeout 5s, body_timeout 10s, idle_timeout 5s"),
        "{out}"
    );
    for (config, key) in [
        ("[http]\nlisten = \"localhost\"\n", "http.listen"),
        (
            "[[systems]]\nid = \"erp\"\n[[http.tokens]]\nname = \"t\"\nsha256 = \"abc\"\nsystems = [\"erp\"]\n",
            "http.tokens[0].sha256",
        ),
        (
            &format!(
                "[[systems]]\nid = \"erp\"\n[[http.tokens]]\nname = \"t\"\nsha256 = \"{}\"\nsystems = [\"wms\"]\n",
                sha("x")
            ),
            "http.tokens[0].systems[0]",
        ),
        (
            "[[systems]]\nid = \"erp\"\ntransport = \"http\"\ninclude_cancelled = true\n",
            "systems[0].include_cancelled",
        ),
        (
            "[[systems]]\nid = \"erp\"\ntransport = \"ftp\"\n",
            "transport",
        ),
        ("[http]\nheader_timeout = \"0s\"\n", "http.header_timeout"),
        ("[http]\nmax_connections = 0\n", "http.max_connections"),
    ] {
        let w = Work::new(config);
        let out = w.cmd(&["check"]);
        assert_eq!(out.status.code(), Some(2), "{config}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{key}: {err}");
    }
}
