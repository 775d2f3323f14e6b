//! Issue 15, as a partner's client sees it over HTTP and in export files:
//! notes are capped and a repeated note adds nothing (the store does not
//! grow with repeated calls), an empty filter key or operator is named, and
//! an optional field sent as `null` is left out of answers and export files
//! alike. The real daemon on a free 127.0.0.1 port, curl as the client.
//!
//! Needs curl; without it the HTTP tests say so and pass, unless
//! `ORDERSYNC_E2E=1`, where a missing tool is a failure.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "references-token-5d1e";
const WAIT: Duration = Duration::from_secs(30);

/// Whether curl is here; panics under ORDERSYNC_E2E=1 when not.
fn have_curl() -> bool {
    have_tool("curl", "the HTTP tests")
}

/// A folder whose daemon serves HTTP on a free port with one token for
/// every system; `systems` is TOML.
struct Api {
    work: Work,
    port: u16,
}

impl Api {
    fn new(systems: &str) -> Api {
        let port = free_port();
        let sha = token_sha256(TOKEN);
        let config = format!(
            "[inbox]\nsettle = \"0s\"\nrescan = \"1s\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[http.tokens]]\nname = \"all\"\nsha256 = \"{sha}\"\nsystems = [\"*\"]\n{systems}"
        );
        Api {
            work: Work::new(&config),
            port,
        }
    }

    fn start(&self) -> Daemon {
        let d = self.work.start(&[]);
        wait_for("the HTTP API", WAIT, || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        d
    }

    /// curl: (status, body as JSON). `-g`: brackets are sent as they are.
    fn curl(&self, args: &[&str], path: &str) -> (u16, Value) {
        let auth = format!("Authorization: Bearer {TOKEN}");
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let out = Command::new("curl")
            .args(["-sS", "-g", "-w", "\n%{http_code}", "-H", &auth])
            .args(args)
            .arg(&url)
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl {url}: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let v = serde_json::from_str(body).unwrap_or_else(|e| panic!("{url}: {e}: {body:?}"));
        (status, v)
    }

    fn get(&self, path_and_query: &str) -> (u16, Value) {
        self.curl(&[], path_and_query)
    }

    fn mark(&self, body: &Value) -> (u16, Value) {
        let file = self.work.path("body.json");
        std::fs::write(&file, body.to_string()).unwrap();
        let data = format!("@{}", file.display());
        self.curl(
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &data,
            ],
            "/v10/orders/mark-as-exported",
        )
    }

    /// Drops files and waits until the daemon has archived them all.
    fn drop_and_wait(&self, files: &[(&str, String)]) {
        self.work.drop_and_wait(files, WAIT);
    }
}

/// `du -sb`: the bytes a folder takes, as an operator measures it.
fn du(path: &std::path::Path) -> u64 {
    let out = Command::new("du")
        .arg("-sb")
        .arg(path)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du's size")
}

/// The `(at, what)` of a problem answer.
fn problems(v: &Value) -> Vec<(String, String)> {
    v["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems in {v}"))
        .iter()
        .map(|p| {
            (
                p["at"].as_str().unwrap().to_string(),
                p["what"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Regression (issue 15): the same mark-as-exported call with a long note,
/// sent 20 times, put the note in the order's timeline 20 times (the store
/// grew from 15 to 80 MB with 1,000,000-character notes), and a note had
/// no length limit. Now a note is at most 1,000 characters (longer: a 422
/// naming the entry's note) and a repeat of the same note by the same
/// system adds nothing.
#[test]
fn a_repeated_note_adds_nothing_and_a_long_note_is_refused() {
    if !have_curl() {
        return;
    }
    let api = Api::new("[[systems]]\nid = \"erp\"\ntransport = \"http\"\n");
    let mut d = api.start();
    api.drop_and_wait(&[("o.json", order("shop-1", &[("A", 1)]).to_string())]);
    let note = "ø".repeat(1_000);
    let call = json!({"orders": [
        {"order_id": "shop-1", "system_id": "erp", "regulate_inventory": false, "note": note}
    ]});
    let (status, v) = api.mark(&call);
    assert_eq!((status, &v), (200, &json!({"marked": 1, "regulated": 0})));
    let before = du(&api.work.path("state"));
    for _ in 0..20 {
        let (status, v) = api.mark(&call);
        assert_eq!(status, 200, "{v}");
    }
    let grown = du(&api.work.path("state")).saturating_sub(before);
    assert!(grown <= 1 << 20, "20 repeats grew state/ by {grown} bytes");
    let show = api.work.json(&["orders", "show", "shop-1"]);
    let with_note = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"].as_str().unwrap_or("").contains(&note))
        .count();
    assert_eq!(with_note, 1, "the timeline has the note {with_note} times");

    for chars in [1_001, 1_000_000] {
        let long = json!({"orders": [
            {"order_id": "shop-1", "system_id": "erp", "regulate_inventory": false, "note": "x".repeat(chars)}
        ]});
        let (status, v) = api.mark(&long);
        assert_eq!(status, 422, "{v}");
        assert_eq!(
            problems(&v),
            [(
                "orders[0].note".to_string(),
                format!("note: {chars} characters; at most 1000 are kept per note")
            )]
        );
    }
    // An order_id with edge white space names no order, and says why.
    let (status, v) = api.mark(&json!({"orders": [
        {"order_id": "shop-1 ", "system_id": "erp", "regulate_inventory": false}
    ]}));
    assert_eq!(status, 422, "{v}");
    assert_eq!(problems(&v)[0].0, "orders[0].order_id");
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}

/// An ack CSV's note longer than 1,000 characters is that row's problem,
/// naming the line and the column (issue 15).
#[test]
fn a_csv_note_longer_than_1000_characters_is_a_row_error() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    w.run_once();
    let fine = "é".repeat(1_000);
    let long = "é".repeat(1_001);
    w.drop_file(
        "ack.csv",
        format!("order_id,system_id,regulate_inventory,note\no-1,erp,false,{fine}\no-1,wms,false,{long}\n"),
    );
    w.run_once();
    assert_eq!(
        w.report("ack.csv").trim_end(),
        "line 3: note: 1001 characters; at most 1000 are kept per note"
    );
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("written"));
}

/// Regression (issue 15): `…[key]=channel&…[operator]=&…[value]=nomatch`
/// silently dropped the filter and returned every order; an empty key or
/// operator is now a 422 naming the parameter, like every other typo.
#[test]
fn an_empty_filter_key_or_operator_is_a_422_naming_it() {
    if !have_curl() {
        return;
    }
    let api = Api::new("[[systems]]\nid = \"erp\"\ntransport = \"http\"\n");
    let mut d = api.start();
    api.drop_and_wait(&[("o.json", order("shop-1", &[("A", 1)]).to_string())]);
    let f = "filter_groups[0][filters][0]";
    for (query, at) in [
        (
            format!("{f}[key]=channel&{f}[operator]=&{f}[value]=nomatch"),
            "operator",
        ),
        (
            format!("{f}[key]=&{f}[operator]=eq&{f}[value]=nomatch"),
            "key",
        ),
    ] {
        let (status, v) = api.get(&format!("/v10/orders/export?system_id=erp&{query}"));
        assert_eq!(status, 422, "{query}: {v}");
        assert_eq!(
            problems(&v),
            [(
                format!("{f}[{at}]"),
                "empty; a filter needs a key, an operator and a value".to_string()
            )],
            "{query}"
        );
    }
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}

/// Regression (issue 15): optional strings sent as `null` were echoed back
/// as `null` (CONTRACT: null counts as absent). They are left out of the
/// stored order, so of HTTP answers and json export files alike (a csv
/// export has an empty cell); unknown fields stay as sent. Re-sending the
/// same order is still a duplicate.
#[test]
fn null_optional_fields_are_left_out_of_answers_and_export_files() {
    if !have_curl() {
        return;
    }
    let api = Api::new(
        "[[systems]]\nid = \"erp\"\ntransport = \"http\"\n\
         [[systems]]\nid = \"wms\"\n\
         [[systems]]\nid = \"crm\"\nformat = \"csv\"\n",
    );
    let mut d = api.start();
    let mut o = order("shop-null", &[("A", 1)]);
    o["channel"] = Value::Null;
    o["account_id"] = Value::Null;
    o["billing_address"]["state"] = Value::Null;
    o["shipping_address"]["shipping_reference"] = Value::Null;
    o["line_items"][0]["description"] = Value::Null;
    o["x_partner"] = Value::Null;
    api.drop_and_wait(&[("o.json", o.to_string())]);
    wait_for("the export files", WAIT, || {
        !api.work.exported("wms").is_empty() && !api.work.outbox("crm").is_empty()
    });

    let (status, v) = api.get("/v10/orders/export?system_id=erp&includes[]=lines");
    assert_eq!(status, 200, "{v}");
    let answered = &v["orders"][0];
    let exported = &api.work.exported("wms")[0];
    for (what, doc) in [("GET", answered), ("json export", exported)] {
        let top = doc.as_object().unwrap();
        assert_eq!(top["external_id"], "shop-null", "{what}: {doc}");
        for key in ["channel", "account_id"] {
            assert!(!top.contains_key(key), "{what}: {key} in {doc}");
        }
        assert!(
            !doc["billing_address"]
                .as_object()
                .unwrap()
                .contains_key("state"),
            "{what}: {doc}"
        );
        assert!(
            !doc["shipping_address"]
                .as_object()
                .unwrap()
                .contains_key("shipping_reference"),
            "{what}: {doc}"
        );
        assert!(
            !doc["line_items"][0]
                .as_object()
                .unwrap()
                .contains_key("description"),
            "{what}: {doc}"
        );
        assert_eq!(top.get("x_partner"), Some(&Value::Null), "{what}: {doc}");
    }
    let csv = std::fs::read_to_string(&api.work.outbox("crm")[0]).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let cell = |name: &str| &row[header.iter().position(|h| h == name).unwrap()];
    assert_eq!((cell("channel"), cell("description")), ("", ""));

    // The same order again (as sent, null included): a duplicate, no
    // new revision, no second export.
    api.drop_and_wait(&[("again.json", o.to_string())]);
    let show = api.work.json(&["orders", "show", "shop-null"]);
    assert_eq!(show["order"]["revision"], 1, "{show}");
    assert_eq!(
        api.work.events("shop-null"),
        ["received", "written", "written"]
    );
    assert_eq!(api.work.exported("wms").len(), 1);
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}
