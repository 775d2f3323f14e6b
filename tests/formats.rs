//! Export formats and options (SPEC §8, issue 4): golden files byte for byte,
//! a real CSV consumer reading the csv back, encodings, resend and auto-ack.

mod common;

use std::fs;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use common::{Work, acks, order};
use serde_json::{Value, json};

const FORMATS: &str = r#"
[inbox]
settle = "0s"
[[systems]]
id = "json"
[[systems]]
id = "ndjson"
format = "ndjson"
[[systems]]
id = "csv"
format = "csv"
[[systems]]
id = "csv-excel"
format = "csv"
csv_delimiter = ";"
csv_crlf = true
csv_bom = true
[[systems]]
id = "csv-nolines"
format = "csv"
include_lines = false
[[systems]]
id = "json-nolines"
include_lines = false
"#;

fn formats() -> Work {
    let w = Work::new(FORMATS);
    w.drop_file("order.json", include_bytes!("fixtures/order.json"));
    w.run_once();
    w
}

/// The fixture order in, the exact expected file out, per format.
#[test]
fn golden_files() {
    let w = formats();
    for (system, golden) in [
        ("json", "json.json"),
        ("ndjson", "ndjson.ndjson"),
        ("csv", "csv.csv"),
        ("csv-excel", "csv-excel.csv"),
        ("csv-nolines", "csv-nolines.csv"),
        ("json-nolines", "json-nolines.json"),
    ] {
        let files = w.outbox(system);
        assert_eq!(files.len(), 1, "{system}: {files:?}");
        let got = fs::read(&files[0]).unwrap();
        let want = fs::read(format!("tests/golden/{golden}")).unwrap();
        assert!(
            got == want,
            "{system} differs from tests/golden/{golden}:\n{}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[test]
fn csv_variants_have_their_bytes() {
    let w = formats();
    let excel = fs::read(&w.outbox("csv-excel")[0]).unwrap();
    assert!(excel.starts_with(b"\xEF\xBB\xBForder_id;external_id;"));
    // Every record ends in CRLF (the newline inside the quoted description
    // is the order's own).
    assert!(excel.ends_with(b"149\r\n"));
    assert_eq!(excel.windows(2).filter(|w| w == b"\r\n").count(), 4);
    let plain = fs::read(&w.outbox("csv")[0]).unwrap();
    assert!(!plain.contains(&b'\r') && plain.starts_with(b"order_id,external_id,"));
}

fn python_rows(path: &std::path::Path, delimiter: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .args(["tests/readback.py", path.to_str().unwrap(), delimiter])
        .output()
        .expect("python3 is needed for the read-back test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Python's csv module reads back the same values, whatever the variant.
#[test]
fn csv_read_back_by_python() {
    let w = formats();
    let plain = python_rows(&w.outbox("csv")[0], ",");
    let excel = python_rows(&w.outbox("csv-excel")[0], ";");
    assert_eq!(plain, excel, "the variants read back differently");
    assert_eq!(plain.len(), 3);
    let columns: Vec<&String> = plain[0].as_object().unwrap().keys().collect();
    assert_eq!(columns.len(), ordersync::export::CSV_COLUMNS.len());
    let r = &plain;
    assert_eq!(r[0]["order_id"], "4ea4572a-f3fd-5351-baec-31f3abdd6a4b");
    assert_eq!(r[0]["description"], "Mug, red \"classic\", 33cl");
    assert_eq!(
        r[2]["description"],
        "Plate\nwith a newline; and a semicolon"
    );
    assert_eq!(r[2]["sku"], "PLATE-ØRE");
    assert_eq!(r[0]["billing_contact_name"], "Ann Sørensen");
    assert_eq!(r[0]["shipping_address1"], "Åboulevarden 12");
    assert_eq!(r[0]["billing_reference"], "'=SUM(A1)", "formula guard");
    assert_eq!(
        r[0]["billing_contact_number"], "'+45 12 34 56 78",
        "formula guard"
    );
    assert_eq!(r[0]["created"], "2026-11-18T11:06:40Z");
    assert_eq!(r[0]["unit_price"], "79.95");
    assert_eq!(r[1]["requires_shipping"], "false");
    assert_eq!(r[0]["tax_rule_inclusive"], "true");
    assert_eq!(r[0]["shipping_rule_recovery"], "49.0");
    assert_eq!(r[0]["revision"], "1");
    let nolines = python_rows(&w.outbox("csv-nolines")[0], ",");
    assert_eq!(nolines.len(), 1);
    assert_eq!(nolines[0]["sku"], "");
    assert_eq!(nolines[0]["external_id"], "shop-1001");
}

#[test]
fn negative_numbers_are_not_guarded_but_text_is() {
    let w = Work::new("[inbox]\nsettle = \"0s\"\n[[systems]]\nid = \"c\"\nformat = \"csv\"\n");
    let mut o = order("-1001", &[("-SKU", 1)]);
    o["shipping_rule"]["recovery"] = json!(-5.5);
    o["line_items"][0]["description"] = json!("\tTabbed");
    o["reference"] = json!("@ref");
    w.drop_json("o.json", &o);
    w.run_once();
    let rows = python_rows(&w.outbox("c")[0], ",");
    assert_eq!(rows[0]["external_id"], "'-1001");
    assert_eq!(rows[0]["sku"], "'-SKU");
    assert_eq!(rows[0]["description"], "'\tTabbed");
    assert_eq!(rows[0]["reference"], "'@ref");
    assert_eq!(rows[0]["shipping_rule_recovery"], "-5.5");
}

/// An ack exported by a spreadsheet in Windows-1252, `;` and CRLF.
#[test]
fn windows_1252_ack_from_a_spreadsheet() {
    let w = Work::new(
        "[inbox]\nsettle = \"0s\"\nencoding = \"windows-1252\"\n[[systems]]\nid = \"erp\"\n",
    );
    w.drop_file("order.json", include_bytes!("fixtures/order.json"));
    w.drop_file("stock.csv", "sku,in_stock\nMUG-RED,10\n");
    w.run_once();
    w.drop_file("ack.csv", include_bytes!("fixtures/ack-windows1252.csv"));
    w.run_once();
    assert!(w.errors().is_empty(), "{:?}", w.errors());
    let show = w.json(&["orders", "show", "shop-1001"]);
    assert_eq!(show["systems"]["erp"]["state"], "acked");
    assert_eq!(show["order"]["archived"], true);
    let acked = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "acked")
        .unwrap()
        .clone();
    assert!(
        acked["detail"]
            .as_str()
            .unwrap()
            .ends_with("Pakket af Søren – 5 € rabat, Straße"),
        "{acked}"
    );
    assert_eq!(w.stock("MUG-RED"), (8, 0, 8));
}

#[test]
fn iso_8859_1_stock_file() {
    let w = Work::new("[inbox]\nsettle = \"0s\"\nencoding = \"iso-8859-1\"\n");
    w.drop_file("stock.csv", b"sku;in_stock\r\nK\xd8D-\xdf;4\r\n");
    w.run_once();
    assert_eq!(w.stock("KØD-ß"), (4, 0, 4));
}

#[test]
fn resend_after_writes_unacked_orders_again() {
    // 3s: the two runs before the "not yet due" check fit inside it even on
    // a loaded machine.
    let w =
        Work::new("[inbox]\nsettle = \"0s\"\n[[systems]]\nid = \"erp\"\nresend_after = \"3s\"\n");
    w.drop_json("a.json", &order("o-a", &[("A", 1)]));
    w.drop_json("b.json", &order("o-b", &[("A", 1)]));
    w.run_once();
    assert_eq!(w.outbox("erp").len(), 1);
    w.drop_file("ack.csv", acks(&[("o-a", "erp", false)]));
    w.run_once();
    // Not yet due.
    assert_eq!(w.outbox("erp").len(), 1);
    sleep(Duration::from_millis(3100));
    w.run_once();
    let files = w.outbox("erp");
    assert_eq!(files.len(), 2);
    let again = w.exported("erp");
    assert_eq!(again.last().unwrap()["external_id"], "o-b");
    assert_eq!(again.len(), 3, "only the unacked order is resent");
    let show = w.json(&["orders", "show", "o-b"]);
    assert!(
        show["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "resend")
    );
    assert_eq!(show["systems"]["erp"]["state"], "written");
}

#[test]
fn auto_ack_and_auto_ack_regulate() {
    let w = Work::new(
        r#"
[inbox]
settle = "0s"
[[systems]]
id = "acct"
auto_ack = true
[[systems]]
id = "shop"
auto_ack = true
auto_ack_regulate = true
include_cancelled = true
"#,
    );
    w.drop_file("stock.csv", "sku,in_stock\nA,10\n");
    let mut cancelled = order("o-x", &[("A", 5)]);
    cancelled["cancelled"] = json!(true);
    w.drop_json("o.json", &json!([order("o-1", &[("A", 2)]), cancelled]));
    w.run_once();
    assert_eq!(w.state("o-1", "acct").as_deref(), Some("acked"));
    assert_eq!(w.state("o-1", "shop").as_deref(), Some("acked"));
    assert_eq!(w.stock("A"), (8, 0, 8), "regulated once, by shop");
    let o1 = w.json(&["orders", "show", "o-1"]);
    assert_eq!(o1["order"]["archived"], true);
    // The cancelled order is acked but cannot regulate; it says why.
    assert_eq!(w.state("o-x", "shop").as_deref(), Some("acked"));
    let ox = w.json(&["orders", "show", "o-x"]);
    let note = ox["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "not regulated")
        .cloned();
    assert!(
        note.is_some_and(|n| n["detail"].as_str().unwrap().contains("cancelled")),
        "{ox}"
    );
    assert!(w.errors().is_empty());
}

#[test]
fn filter_groups_select_orders() {
    let w = Work::new(
        r#"
[inbox]
settle = "0s"
[[systems]]
id = "b2b"
[[systems.filter_groups]]
or = true
filters = [
  { key = "channel", operator = "eq", value = "b2b" },
  { key = "reference", operator = "sw", value = "PO-" },
]
[[systems.filter_groups]]
filters = [{ key = "created_at", operator = "gte", value = "2026-01-01T00:00:00Z" }]
"#,
    );
    let mut a = order("a", &[("A", 1)]);
    a["channel"] = json!("B2B");
    let mut b = order("b", &[("A", 1)]);
    b["reference"] = json!("po-77");
    let c = order("c", &[("A", 1)]); // neither
    let mut d = order("d", &[("A", 1)]);
    d["channel"] = json!("B2B");
    d["created"] = json!(1_700_000_000_000i64); // 2023: too old
    w.drop_json("o.json", &json!([a, b, c, d]));
    w.run_once();
    let mut got = w.exported_ids("b2b");
    got.sort();
    assert_eq!(got, ["a", "b"]);
}
