//! The core pipeline, end to end: real binary, real folders, real sled.

mod common;

use std::fs;
use std::time::{Duration, SystemTime};

use common::{TWO_SYSTEMS, Work, acks, order};
use serde_json::json;

/// SPEC §7's example: 10/10 → order of 1 → 10/9 → regulating ack → 9/9.
#[test]
fn seed_example_regulates_stock() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\n");
    w.run_once();
    assert_eq!(w.stock("A"), (10, 0, 10));

    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    w.run_once();
    assert_eq!(w.stock("A"), (10, 1, 9));
    assert_eq!(w.exported("erp").len(), 1);

    w.drop_file("ack.csv", acks(&[("o-1", "erp", true)]));
    w.run_once();
    assert_eq!(w.stock("A"), (9, 0, 9));
    let shown = w.json(&["orders", "show", "o-1"]);
    assert_eq!(shown["order"]["archived"], true);
    assert_eq!(shown["systems"]["erp"]["state"], "acked");
    let events: Vec<&str> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "received",
            "written",
            "written",
            "acked",
            "regulated",
            "archived"
        ]
    );
    assert!(w.errors().is_empty(), "{:?}", w.errors());
}

#[test]
fn ack_without_regulation_leaves_stock_and_order() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\n");
    w.drop_json("o1.json", &order("o-1", &[("A", 3)]));
    w.run_once();
    w.drop_file("ack.csv", acks(&[("o-1", "erp", false)]));
    w.run_once();
    assert_eq!(w.stock("A"), (10, 3, 7));
    let shown = w.json(&["orders", "show", "o-1"]);
    assert_eq!(shown["order"]["archived"], false);
    assert_eq!(shown["systems"]["erp"]["state"], "acked");
    assert_eq!(shown["systems"]["wms"]["state"], "written");
}

/// Two systems get the same order independently; a second regulating ack
/// from the other system does not regulate again.
#[test]
fn two_systems_are_independent_and_regulation_happens_once() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\nB,5\n");
    w.drop_json("o1.json", &order("o-1", &[("A", 2), ("B", 1)]));
    w.run_once();
    for sys in ["erp", "wms"] {
        let got = w.exported(sys);
        assert_eq!(got.len(), 1, "{sys}");
        assert_eq!(got[0]["external_id"], "o-1");
        assert_eq!(got[0]["revision"], 1);
    }

    w.drop_file("ack-erp.csv", acks(&[("o-1", "erp", true)]));
    w.run_once();
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("acked"));
    assert_eq!(w.state("o-1", "wms").as_deref(), Some("written"));
    assert_eq!(w.stock("A"), (8, 0, 8));

    let id = w.json(&["orders", "show", "o-1"])["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Acked by its UUID this time.
    w.drop_file("ack-wms.csv", acks(&[(&id, "wms", true)]));
    w.run_once();
    assert_eq!(w.state("o-1", "wms").as_deref(), Some("acked"));
    assert_eq!(w.stock("A"), (8, 0, 8), "regulated twice");
    assert_eq!(w.stock("B"), (4, 0, 4), "regulated twice");
    let status = w.json(&["status"]);
    assert_eq!(
        status,
        json!({"orders": 1, "errors": 0, "systems": {
            "erp": {"pending": 0, "written": 0, "acked": 1},
            "wms": {"pending": 0, "written": 0, "acked": 1}}})
    );
}

/// Drafts, cancelled and archived orders reach only the systems that ask.
#[test]
fn include_flags_decide_who_gets_what() {
    let w = Work::new(
        r#"
[inbox]
settle = "0s"
[[systems]]
id = "plain"
[[systems]]
id = "drafts"
include_not_approved = true
[[systems]]
id = "cancelled"
include_cancelled = true
[[systems]]
id = "archived"
include_archived = true
"#,
    );
    let mut draft = order("draft", &[("A", 1)]);
    draft["internal_status"] = json!("draft");
    let mut cancelled = order("cancelled", &[("A", 1)]);
    cancelled["cancelled"] = json!(true);
    let mut archived = order("archived", &[("A", 1)]);
    archived["archived"] = json!(true);
    let normal = order("normal", &[("A", 1)]);
    w.drop_json("all.json", &json!([draft, cancelled, archived, normal]));
    w.run_once();

    let ids = |sys: &str| -> Vec<String> {
        let mut v = w.exported_ids(sys);
        v.sort();
        v
    };
    assert_eq!(ids("plain"), ["normal"]);
    assert_eq!(ids("drafts"), ["draft", "normal"]);
    assert_eq!(ids("cancelled"), ["cancelled", "normal"]);
    assert_eq!(ids("archived"), ["archived", "normal"]);
    // Only the approved, live order reserves stock.
    assert_eq!(w.stock("A"), (0, 1, -1));
}

#[test]
fn cancelling_releases_the_reservation() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\n");
    w.drop_json("o.json", &order("o-1", &[("A", 4)]));
    w.run_once();
    assert_eq!(w.stock("A"), (10, 4, 6));
    let mut update = order("o-1", &[("A", 4)]);
    update["cancelled"] = json!(true);
    update["updated"] = json!(1_790_000_100_000i64);
    w.drop_json("o-cancel.json", &update);
    w.run_once();
    assert_eq!(w.stock("A"), (10, 0, 10));
    // The systems that had it get the cancellation (revision 2).
    let erp = w.exported("erp");
    assert_eq!(erp.len(), 2);
    assert_eq!(erp[1]["cancelled"], true);
    assert_eq!(erp[1]["revision"], 2);
    // A cancelled order cannot regulate.
    w.drop_file("ack.csv", acks(&[("o-1", "erp", true)]));
    w.run_once();
    assert!(
        w.report("ack.csv").contains("line 2: order"),
        "{}",
        w.report("ack.csv")
    );
    assert!(w.report("ack.csv").contains("is cancelled"));
    assert_eq!(w.stock("A"), (10, 0, 10));
}

/// An update after export is exported again with revision 2; a duplicate
/// is nothing; a stale update is rejected.
#[test]
fn updates_duplicates_and_stale_orders() {
    let w = Work::new(TWO_SYSTEMS);
    let v1 = order("o-1", &[("A", 1)]);
    w.drop_json("v1.json", &v1);
    w.run_once();
    w.drop_file("ack.csv", acks(&[("o-1", "erp", false)]));
    w.run_once();

    // The same content again (another name): a duplicate, nothing happens.
    w.drop_json("v1-again.json", &v1);
    w.run_once();
    assert_eq!(w.exported("erp").len(), 1);

    let mut v2 = order("o-1", &[("A", 2)]);
    v2["updated"] = json!(1_790_000_100_000i64);
    w.drop_json("v2.json", &v2);
    w.run_once();
    for sys in ["erp", "wms"] {
        let got = w.exported(sys);
        assert_eq!(got.len(), 2, "{sys}");
        assert_eq!(got[1]["revision"], 2);
        assert_eq!(got[1]["line_items"][0]["qty_ordered"], 2);
    }
    assert_eq!(w.stock("A"), (0, 2, -2));

    let mut stale = order("o-1", &[("A", 9)]);
    stale["updated"] = json!(1_790_000_050_000i64);
    w.drop_json("stale.json", &stale);
    w.run_once();
    let report = w.report("stale.json");
    assert!(report.starts_with("$.updated: stale update"), "{report}");
    assert_eq!(w.stock("A"), (0, 2, -2));

    // Same external_id with another id: rejected.
    let mut other = order("o-1", &[("A", 1)]);
    other["id"] = json!("0b7e8c3a-5d1f-4c2e-9a7b-3f6d8e1c2a4b");
    w.drop_json("other.json", &other);
    w.run_once();
    assert!(w.report("other.json").contains("already belongs to order"));
}

#[test]
fn archived_orders_cannot_be_updated() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_json("v1.json", &order("o-1", &[("A", 1)]));
    w.run_once();
    w.drop_file("ack.csv", acks(&[("o-1", "erp", true)]));
    w.run_once();
    let mut v2 = order("o-1", &[("A", 5)]);
    v2["updated"] = json!(1_790_000_100_000i64);
    w.drop_json("v2.json", &v2);
    w.run_once();
    assert!(
        w.report("v2.json").contains("is archived"),
        "{}",
        w.report("v2.json")
    );
}

/// Every kind of bad input lands in errors/ with a report naming where and
/// what; the store is unchanged (checked via status, inventory and orders).
#[test]
fn bad_inputs_are_rejected_with_reports() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\n");
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    w.run_once();
    let snapshot = || {
        (
            w.json(&["status"])["systems"].clone(),
            w.json(&["inventory"]),
            w.json(&["orders", "list"]),
        )
    };
    let before = snapshot();

    let mut bad_qty = order("o-2", &[("A", 1)]);
    bad_qty["line_items"][0]["qty_ordered"] = json!("ten");
    let mut no_lines = order("o-3", &[]);
    no_lines["currency"] = json!("euro");
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("syntax.json", b"{\"external_id\": \"x\",\n  oops }".to_vec(), &["line 2, column 3: invalid JSON"]),
        ("qty.json", serde_json::to_vec(&bad_qty).unwrap(), &["$.line_items[0].qty_ordered: expected an integer, got \"ten\""]),
        ("two.json", serde_json::to_vec(&json!({"orders": [order("ok", &[("A", 1)]), no_lines]})).unwrap(),
            &["$.orders[1].currency: expected an ISO 4217 code", "$.orders[1].line_items: needs at least one line item"]),
        ("lines.ndjson", format!("{}\n{{\"external_id\": 1}}\n", serde_json::to_string(&order("n1", &[("A", 1)])).unwrap()).into_bytes(),
            &["line 2: $.external_id: expected a string, got 1"]),
        ("ack.csv", b"order_id,system_id,regulate_inventory\no-1,erp,perhaps\no-404,erp,true\no-1,crm,false\n".to_vec(),
            &["line 2: regulate_inventory: expected true/false", "line 3: unknown order \"o-404\"", "line 4: unknown system \"crm\""]),
        ("stock2.csv", b"sku;adjustment\r\nA;+2\r\n;3\r\nB;lots\r\n".to_vec(), &["line 3: sku is empty", "line 4: adjustment: expected a whole number, got \"lots\""]),
        ("what.csv", b"colour,size\nred,L\n".to_vec(), &["line 1: unsupported file type"]),
        ("orders.xml", b"<orders/>".to_vec(), &["file: unsupported file type"]),
        ("latin.csv", b"sku,in_stock\nK\xd8D,1\n".to_vec(), &["line 2: not valid UTF-8"]),
        ("empty.csv", b"".to_vec(), &["file: the file is empty"]),
    ];
    for (name, content, _) in &cases {
        w.drop_file(name, content);
    }
    w.run_once();
    for (name, _, wanted) in &cases {
        let report = w.report(name);
        for want in *wanted {
            assert!(
                report.lines().any(|l| l.starts_with(want)),
                "{name}: {want:?} not in report:\n{report}"
            );
        }
        assert!(
            w.errors().contains(&name.to_string()),
            "{name} not in errors/"
        );
    }
    assert_eq!(snapshot(), before, "a rejected file changed the store");
    assert!(w.inbox().iter().all(|n| n == ".gitkeep"), "{:?}", w.inbox());
    assert_eq!(w.json(&["status"])["errors"], cases.len());
}

#[test]
fn files_larger_than_max_file_size_are_rejected_unread() {
    let w = Work::new("[inbox]\nsettle = \"0s\"\nmax_file_size = \"1KiB\"\n");
    w.drop_file("big.json", vec![b' '; 2048]);
    w.run_once();
    assert!(
        w.report("big.json")
            .starts_with("file: 2048 bytes is larger than [inbox] max_file_size (1024 bytes)")
    );
}

#[test]
fn allow_negative_false_rejects_acks_and_adjustments_below_zero() {
    let w = Work::new(&format!(
        "{TWO_SYSTEMS}\n[inventory]\nallow_negative = false\n"
    ));
    w.drop_file("stock.csv", "sku,in_stock\nA,1\n");
    w.drop_json("o.json", &order("o-1", &[("A", 2)]));
    w.run_once();
    w.drop_file("ack.csv", acks(&[("o-1", "erp", true)]));
    w.drop_file("adj.csv", "sku,adjustment\nA,-3\n");
    w.run_once();
    assert!(
        w.report("ack.csv").contains("from 1 to -1"),
        "{}",
        w.report("ack.csv")
    );
    assert!(
        w.report("adj.csv").contains("below 0"),
        "{}",
        w.report("adj.csv")
    );
    assert_eq!(w.stock("A"), (1, 2, -1));
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("written"));
}

/// A file left behind by a crash (same name and content as one applied) is
/// archived without effect; the same adjustment under a new name applies.
#[test]
fn same_name_and_content_is_applied_once() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("adj.csv", "sku,adjustment\nA,5\n");
    w.run_once();
    w.drop_file("adj.csv", "sku,adjustment\nA,5\n");
    w.run_once();
    assert_eq!(w.stock("A"), (5, 0, 5));
    assert_eq!(w.archived(), ["adj.csv", "adj.csv.1"]);
    w.drop_file("adj-2.csv", "sku,adjustment\nA,5\n");
    w.run_once();
    assert_eq!(w.stock("A"), (10, 0, 10));
    // Same name, new content: a new instruction.
    w.drop_file("adj.csv", "sku,adjustment\nA,1\n");
    w.run_once();
    assert_eq!(w.stock("A"), (11, 0, 11));
}

/// An acknowledgement sent again (under a new name, as an ERP re-sending its
/// file does) changes nothing: the first ack's time stays and the timeline
/// gains nothing; only a row with a note adds an entry, and a regulating
/// row still regulates an order acked before without it.
#[test]
fn a_repeated_acknowledgement_changes_nothing() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\n");
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    w.run_once();
    w.drop_file("ack.csv", acks(&[("o-1", "erp", false)]));
    w.run_once();
    let first = w.json(&["orders", "show", "o-1"]);
    assert_eq!(first["systems"]["erp"]["state"], "acked");

    std::thread::sleep(Duration::from_millis(1100));
    w.drop_file("ack-again.csv", acks(&[("o-1", "erp", false)]));
    w.run_once();
    assert_eq!(w.archived().len(), 4);
    assert_eq!(w.json(&["orders", "show", "o-1"]), first);

    // With a note: a timeline entry, the ack's time unchanged.
    w.drop_file(
        "ack-note.csv",
        "order_id,system_id,regulate_inventory,note\no-1,erp,false,called them\n",
    );
    w.run_once();
    let noted = w.json(&["orders", "show", "o-1"]);
    assert_eq!(noted["systems"], first["systems"]);
    let last = noted["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["event"], "acked");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .starts_with("again by erp (ack-note.csv): called them"),
        "{last}"
    );

    // Regulating is still done once, by an ack of an acked order.
    w.drop_file("ack-reg.csv", acks(&[("o-1", "erp", true)]));
    w.run_once();
    assert_eq!(w.stock("A"), (9, 0, 9));
    w.drop_file("ack-reg-2.csv", acks(&[("o-1", "erp", true)]));
    w.run_once();
    assert_eq!(w.stock("A"), (9, 0, 9));
    let done = w.json(&["orders", "show", "o-1"]);
    assert_eq!(done["systems"], first["systems"]);
    let events = w.events("o-1");
    assert_eq!(
        events.iter().filter(|e| *e == "regulated").count(),
        1,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| *e == "acked").count(),
        2,
        "{events:?}"
    );
}

/// An acknowledgement dropped with its order is applied after it when it is
/// newer, even if its name sorts first.
#[test]
fn oldest_mtime_first() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_json("z-order.json", &order("o-1", &[("A", 1)]));
    w.drop_file("a-ack.csv", acks(&[("o-1", "erp", true)]));
    let set = |name: &str, secs_ago: u64| {
        let f = fs::File::options()
            .write(true)
            .open(w.path(&format!("inbox/{name}")))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
            .unwrap();
    };
    set("z-order.json", 20);
    set("a-ack.csv", 10);
    w.run_once();
    assert!(w.errors().is_empty(), "{:?}", w.errors());
    assert_eq!(w.stock("A"), (-1, 0, -1));
}

#[test]
fn ignored_and_special_files_are_left_alone() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("o.json.part", b"{");
    w.drop_file("o.json.filepart", b"{");
    w.drop_file("~lock.csv", b"x");
    fs::create_dir(w.path("inbox/sub")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", w.path("inbox/link.csv")).unwrap();
    w.run_once();
    let mut left = w.inbox();
    left.sort();
    assert_eq!(
        left,
        [
            "link.csv",
            "o.json.filepart",
            "o.json.part",
            "sub",
            "~lock.csv"
        ]
    );
    assert!(w.errors().is_empty());
}

#[test]
fn batch_size_splits_export_files_oldest_created_first() {
    let w = Work::new("[inbox]\nsettle = \"0s\"\n[[systems]]\nid = \"erp\"\nbatch_size = 2\n");
    let mut orders = Vec::new();
    for i in 0..5 {
        let mut o = order(&format!("o-{i}"), &[("A", 1)]);
        o["created"] = json!(1_790_000_000_000i64 - i * 1000);
        orders.push(o);
    }
    w.drop_json("five.json", &json!(orders));
    w.run_once();
    let files = w.outbox("erp");
    assert_eq!(files.len(), 3);
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for (i, n) in names.iter().enumerate() {
        assert!(
            n.starts_with("orders-") && n.ends_with(&format!("-{:06}.json", i + 1)),
            "{n}"
        );
    }
    assert_eq!(w.exported_ids("erp"), ["o-4", "o-3", "o-2", "o-1", "o-0"]);
}

#[test]
fn ready_marker_files_are_written_after_exports() {
    let w = Work::new("[inbox]\nsettle = \"0s\"\n[[systems]]\nid = \"erp\"\nready_marker = true\n");
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    w.run_once();
    let files = w.outbox("erp");
    assert_eq!(files.len(), 2);
    assert!(files[1].to_string_lossy().ends_with(".json.done"));
    assert_eq!(fs::read(&files[1]).unwrap(), b"");
}

#[test]
fn orders_keep_unknown_fields_and_get_defaults() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("fixture.json", include_bytes!("fixtures/order.json"));
    w.run_once();
    let o = &w.exported("erp")[0];
    assert_eq!(
        o["x_shop"],
        json!({"campaign": "winter", "tags": ["b2b", "vip"]})
    );
    assert_eq!(o["internal_status"], "approved");
    assert_eq!(o["line_items"][2]["line_number"], 3);
    assert_eq!(o["line_items"][0]["requires_shipping"], true);
    assert_eq!(o["revision"], 1);
    // The id is UUIDv5 of the external id: stable across re-sends.
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, b"shop-1001");
    assert_eq!(o["id"], id.to_string());
    // Reservations only for lines that ship.
    assert_eq!(w.stock("GIFT-WRAP"), (0, 0, 0));
    assert_eq!(w.stock("MUG-RED"), (0, 2, -2));
}

/// SPEC §9: every order eligible for a system reaches it, even one stored
/// before the system was added or its filters widened. Nothing is sent twice.
#[test]
fn added_systems_and_widened_filters_get_stored_orders() {
    let w = Work::new("[inbox]\nsettle = \"0s\"\n[[systems]]\nid = \"erp\"\n");
    w.drop_json(
        "o.json",
        &json!([order("o-1", &[("A", 1)]), order("o-2", &[("A", 1)])]),
    );
    w.run_once();
    w.drop_file("ack.csv", acks(&[("o-2", "erp", true)])); // o-2 is archived now
    w.run_once();

    let with_wms = |filter: &str| {
        format!(
            "[inbox]\nsettle = \"0s\"\n[[systems]]\nid = \"erp\"\n[[systems]]\nid = \"wms\"\n{filter}"
        )
    };
    w.write_config(&with_wms("[[systems.filter_groups]]\nfilters = [{ key = \"reference\", operator = \"eq\", value = \"nothing\" }]\n"));
    w.run_once();
    assert!(w.outbox("wms").is_empty(), "nothing matches the filter yet");

    // Widen the filter: the live order (not the archived one) goes out once.
    w.write_config(&with_wms(""));
    w.run_once();
    assert_eq!(w.exported_ids("wms"), ["o-1"]);
    assert_eq!(w.exported("erp").len(), 2, "erp got nothing twice");
    w.run_once();
    assert_eq!(w.exported("wms").len(), 1, "queued once only");
    let show = w.json(&["orders", "show", "o-1"]);
    assert!(
        show["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "queued")
    );
}
