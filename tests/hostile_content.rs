//! Content crafted by partners we do not trust (issue 7): values nested too
//! deep to read back, quantities near the limits of `i64`, order references
//! that name two orders at once, CSV rows that do not match their header.
//! Each is rejected with a report naming where and what, and leaves the store
//! as it was.

mod common;

use common::{TWO_SYSTEMS, Work, acks, order};
use serde_json::{Value, json};

/// `[[…[1]…]]`: `arrays` arrays, one inside the other.
fn nested(arrays: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..arrays {
        v = Value::Array(vec![v]);
    }
    v
}

/// What every reading command shows, to check a rejected file changed nothing.
fn snapshot(w: &Work) -> (Value, Value, Value) {
    (
        w.json(&["status"])["systems"].clone(),
        w.json(&["inventory"]),
        w.json(&["orders", "list"]),
    )
}

/// The id of a stored order.
fn id_of(w: &Work, order: &str) -> String {
    w.json(&["orders", "show", order])["order"]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

fn assert_rejected(w: &Work, name: &str, wanted: &[&str]) {
    assert!(
        w.errors().contains(&name.to_string()),
        "{name} was not rejected; errors/ has {:?}",
        w.errors()
    );
    let report = w.report(name);
    for want in wanted {
        assert!(
            report.lines().any(|l| l.starts_with(want)),
            "{name}: {want:?} not in report:\n{report}"
        );
    }
}

// ---- nesting -------------------------------------------------------------------

/// The order object is level 1, so 63 arrays in a field reach level 64, the
/// limit: accepted, exported, and readable again by every command, also
/// inside the `{"orders": [...]}` wrapper.
#[test]
fn nesting_at_the_limit_is_accepted_exported_and_readable() {
    let w = Work::new(TWO_SYSTEMS);
    let mut plain = order("deep-1", &[("A", 1)]);
    plain["x_deep"] = nested(63);
    let mut wrapped = order("deep-2", &[("A", 1)]);
    wrapped["line_items"][0]["x_deep"] = nested(61); // order, line_items, line: 3 levels
    w.drop_json("plain.json", &plain);
    w.drop_json("wrapped.json", &json!({"orders": [wrapped]}));
    w.run_once();
    assert!(w.errors().is_empty(), "{:?}", w.errors());
    let mut ids = w.exported_ids("erp");
    ids.sort();
    assert_eq!(ids, ["deep-1", "deep-2"]);
    let wms = w.exported("wms");
    let one = wms.iter().find(|o| o["external_id"] == "deep-1").unwrap();
    assert_eq!(one["x_deep"], nested(63));
    let shown = w.json(&["orders", "show", "deep-1"]);
    assert_eq!(shown["order"]["x_deep"], nested(63));
    let shown = w.json(&["orders", "show", "deep-2"]);
    assert_eq!(shown["order"]["line_items"][0]["x_deep"], nested(61));
    w.ok(&["orders", "list"]);
    w.run_once();
}

/// One level more is rejected, naming the path of the value that is too deep,
/// whether the order is alone, in an array, in the wrapper or in ndjson.
#[test]
fn nesting_one_beyond_the_limit_is_rejected_with_its_path() {
    let w = Work::new(TWO_SYSTEMS);
    let mut o = order("deep", &[("A", 1)]);
    o["x_deep"] = nested(64);
    let mut line = order("deep-line", &[("A", 1)]);
    line["line_items"][0]["x_deep"] = nested(62);
    let deep = format!("$.x_deep{}", "[0]".repeat(63));
    let deep_line = format!("$.orders[0].line_items[0].x_deep{}", "[0]".repeat(61));
    w.drop_json("plain.json", &o);
    w.drop_json("array.json", &json!([order("fine", &[("A", 1)]), o]));
    w.drop_json("wrapped.json", &json!({"orders": [line]}));
    w.drop_file(
        "lines.ndjson",
        format!("{}\n", serde_json::to_string(&o).unwrap()),
    );
    w.run_once();
    let what = ": nested deeper than 64 levels";
    assert_rejected(&w, "plain.json", &[&format!("{deep}{what}")]);
    assert_rejected(&w, "array.json", &[&format!("$[1]{}{what}", &deep[1..])]);
    assert_rejected(&w, "wrapped.json", &[&format!("{deep_line}{what}")]);
    assert_rejected(&w, "lines.ndjson", &[&format!("line 1: {deep}{what}")]);
    assert_eq!(w.json(&["status"])["orders"], 0);
}

/// Regression: an order with a field 126 arrays deep was accepted, but its
/// stored record (two levels more) could not be read back, so every export
/// failed from then on and `run --once` exited 1.
#[test]
fn an_order_too_deep_to_read_back_no_longer_poisons_the_store() {
    let w = Work::new(TWO_SYSTEMS);
    let mut o = order("poison", &[("A", 1)]);
    o["x_deep"] = nested(126);
    w.drop_json("poison.json", &o);
    w.drop_json("fine.json", &order("fine", &[("A", 1)]));
    let out = w.cmd(&["run", "--once"]);
    assert!(
        out.status.success(),
        "run --once failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_rejected(&w, "poison.json", &["$.x_deep[0][0]"]);
    assert_eq!(w.exported_ids("erp"), ["fine"]);
    w.ok(&["orders", "list"]);
}

/// A file nested beyond what the parser takes (128 levels) gets a report
/// that says so, not only "recursion limit exceeded".
#[test]
fn a_file_nested_far_too_deep_gets_a_clear_report() {
    let w = Work::new(TWO_SYSTEMS);
    let mut o = order("abyss", &[("A", 1)]);
    o["x_deep"] = json!(null);
    let text = serde_json::to_string(&o).unwrap().replace(
        "\"x_deep\":null",
        &format!("\"x_deep\":{}1{}", "[".repeat(5000), "]".repeat(5000)),
    );
    w.drop_file("abyss.json", &text);
    w.drop_file("abyss.ndjson", format!("\n{text}\n"));
    w.run_once();
    assert_rejected(&w, "abyss.json", &["line 1, column "]);
    let report = w.report("abyss.json");
    assert!(
        report.contains("nested more than 128 levels deep"),
        "{report}"
    );
    assert!(report.contains("at most 64 levels"), "{report}");
    let report = w.report("abyss.ndjson");
    assert!(report.starts_with("line 2, column "), "{report}");
    assert!(
        report.contains("nested more than 128 levels deep"),
        "{report}"
    );
}

// ---- quantities ----------------------------------------------------------------

/// `qty_ordered` and `qty_shipped` are at most 10^9; the limit itself is fine.
#[test]
fn quantities_above_a_billion_are_rejected() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_json("max.json", &order("max", &[("A", 1_000_000_000)]));
    w.run_once();
    assert_eq!(w.stock("A"), (0, 1_000_000_000, -1_000_000_000));
    let before = snapshot(&w);

    let mut big = order("big", &[("A", 1), ("B", 1_000_000_001)]);
    big["line_items"][0]["qty_shipped"] = json!(1_000_000_001i64);
    w.drop_json("big.json", &big);
    let mut huge = order("huge", &[("A", 1)]);
    huge["line_items"][0]["qty_ordered"] = json!(u64::MAX);
    w.drop_json("huge.json", &huge);
    w.run_once();
    assert_rejected(
        &w,
        "big.json",
        &[
            "$.line_items[0].qty_shipped: must be at most 1000000000, got 1000000001",
            "$.line_items[1].qty_ordered: must be at most 1000000000, got 1000000001",
        ],
    );
    assert_rejected(
        &w,
        "huge.json",
        &["$.line_items[0].qty_ordered: must be at most 1000000000, got 18446744073709551615"],
    );
    assert_eq!(snapshot(&w), before);
}

/// Regression: two orders of `qty_ordered` i64::MAX wrapped the SKU's
/// reservation around to -2, so the reservation vanished.
#[test]
fn quantities_near_i64_max_no_longer_wrap_reservations() {
    let w = Work::new(TWO_SYSTEMS);
    let max = i64::MAX;
    w.drop_json(
        "two.json",
        &json!([order("x-1", &[("A", max)]), order("x-2", &[("A", max)])]),
    );
    w.drop_json("one.json", &order("x-3", &[("A", 2)]));
    w.run_once();
    assert_rejected(
        &w,
        "two.json",
        &[
            "$[0].line_items[0].qty_ordered: must be at most 1000000000",
            "$[1].line_items[0].qty_ordered: must be at most 1000000000",
        ],
    );
    assert_eq!(w.stock("A"), (0, 2, -2));
}

/// Stock values are whole numbers within ±10^12 per row.
#[test]
fn stock_values_beyond_a_trillion_are_rejected() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file(
        "ok.csv",
        "sku,in_stock\nA,1000000000000\nB,-1000000000000\n",
    );
    w.run_once();
    assert_eq!(w.stock("A").0, 1_000_000_000_000);
    assert_eq!(w.stock("B").0, -1_000_000_000_000);
    let before = snapshot(&w);
    w.drop_file("abs.csv", "sku,in_stock\nA,1000000000001\nC,7\n");
    w.drop_file(
        "adj.csv",
        "sku,adjustment\nA,-1000000000001\nA,9223372036854775807\n",
    );
    w.run_once();
    let range = "must be between -1000000000000 and 1000000000000";
    assert_rejected(
        &w,
        "abs.csv",
        &[&format!("line 2: in_stock: {range}, got 1000000000001")],
    );
    assert_rejected(
        &w,
        "adj.csv",
        &[
            &format!("line 2: adjustment: {range}, got -1000000000001"),
            &format!("line 3: adjustment: {range}, got 9223372036854775807"),
        ],
    );
    assert_eq!(snapshot(&w), before);
}

// ---- ambiguous order references ---------------------------------------------

/// Regression: an order whose `external_id` was another order's UUID was
/// accepted, and an ack naming that string regulated the other order. Every
/// text form of the UUID counts (case, hyphens, braces, urn).
#[test]
fn an_external_id_naming_another_orders_id_is_rejected() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\nB,10\n");
    w.drop_json("a.json", &order("a", &[("A", 1)]));
    w.run_once();
    let id = id_of(&w, "a");
    let before = snapshot(&w);
    let simple = id.replace('-', "");
    let forms = [
        id.clone(),
        id.to_uppercase(),
        simple.clone(),
        format!("{{{id}}}"),
        format!("urn:uuid:{}", id.to_uppercase()),
    ];
    for (i, form) in forms.iter().enumerate() {
        w.drop_json(&format!("b{i}.json"), &order(form, &[("B", 1)]));
    }
    w.run_once();
    for (i, form) in forms.iter().enumerate() {
        assert_rejected(
            &w,
            &format!("b{i}.json"),
            &[&format!(
                "$.external_id: {form:?} is the id of another order ({id})"
            )],
        );
    }
    assert_eq!(snapshot(&w), before);
    // The reference keeps naming one order only.
    w.drop_file("ack.csv", acks(&[(&id.to_uppercase(), "erp", true)]));
    w.run_once();
    assert_eq!(w.stock("A"), (9, 0, 9));
    assert_eq!(w.stock("B"), (10, 0, 10));
}

/// The reverse: a new order whose `id` is, in any text form, the
/// `external_id` of a stored order.
#[test]
fn an_id_naming_another_orders_external_id_is_rejected() {
    let w = Work::new(TWO_SYSTEMS);
    let u = "6f1c2b9e-3d4a-4e5f-8a7b-0c1d2e3f4a5b";
    w.drop_json(
        "b.json",
        &order(&u.to_uppercase().replace('-', ""), &[("B", 1)]),
    );
    w.run_once();
    assert!(w.errors().is_empty(), "{:?}", w.errors());
    let before = snapshot(&w);
    let mut a = order("a", &[("A", 1)]);
    a["id"] = json!(u);
    w.drop_json("a.json", &a);
    // Another text form of the same UUID as an external id is the same reference.
    w.drop_json("c.json", &order(&format!("{{{u}}}"), &[("C", 1)]));
    w.run_once();
    let b_id = id_of(&w, &u.to_uppercase().replace('-', ""));
    assert_rejected(
        &w,
        "a.json",
        &[&format!(
            "$.id: {u} is the external_id of another order ({b_id})"
        )],
    );
    assert_rejected(
        &w,
        "c.json",
        &[&format!(
            "$.external_id: \"{{{u}}}\" names the same UUID as the external_id of order {b_id}"
        )],
    );
    assert_eq!(snapshot(&w), before);
}

/// Two orders of the same file that reference each other are rejected too.
#[test]
fn conflicting_references_within_one_file_are_rejected() {
    let w = Work::new(TWO_SYSTEMS);
    let u = "0e7a1d52-5c55-4a11-9d0b-7a3f3e8b2c10";
    let mut a = order("a", &[("A", 1)]);
    a["id"] = json!(u);
    let b = order(&u.to_uppercase(), &[("B", 1)]);
    w.drop_json("ab.json", &json!([a.clone(), b.clone()]));
    w.drop_json("ba.json", &json!({"orders": [b, a]}));
    w.run_once();
    assert_rejected(
        &w,
        "ab.json",
        &[&format!(
            "$[1].external_id: \"{}\" is the id of another order ({u})",
            u.to_uppercase()
        )],
    );
    assert_rejected(
        &w,
        "ba.json",
        &[&format!(
            "$.orders[1].id: {u} is the external_id of another order"
        )],
    );
    assert_eq!(w.json(&["status"])["orders"], 0);
}

/// An order whose external id is its own id is not ambiguous, and updates of
/// it are still updates.
#[test]
fn an_external_id_equal_to_the_orders_own_id_is_fine() {
    let w = Work::new(TWO_SYSTEMS);
    let u = "3b0f6a4c-9a57-4d0c-8f2e-1e2d3c4b5a69";
    let mut a = order(u, &[("A", 1)]);
    a["id"] = json!(u.to_uppercase());
    w.drop_json("a.json", &a);
    w.run_once();
    a["updated"] = json!(1_790_000_000_001i64);
    a["line_items"][0]["qty_ordered"] = json!(3);
    w.drop_json("a2.json", &a);
    w.run_once();
    assert!(w.errors().is_empty(), "{:?}", w.errors());
    assert_eq!(w.stock("A"), (0, 3, -3));
    assert_eq!(w.json(&["orders", "show", u])["order"]["id"], u);
}

// ---- CSV rows and their header -------------------------------------------------

/// Regression: a row with fewer fields than the header was accepted when the
/// missing ones were optional (`note`) or unknown columns; the contract (§3)
/// says it is an error. Longer rows are fine only when the extra cells are empty.
#[test]
fn csv_rows_must_match_their_header() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    w.run_once();
    let before = snapshot(&w);
    w.drop_file(
        "ack.csv",
        "order_id,system_id,regulate_inventory,note\no-1,erp,false,fine\no-1,erp\no-1,wms,false\n",
    );
    w.drop_file(
        "stock.csv",
        "sku;in_stock;comment\r\nA;5;ok\r\nA;5\r\nA;5;ok;surprise\r\n",
    );
    w.run_once();
    assert_rejected(
        &w,
        "ack.csv",
        &[
            "line 3: expected 4 fields as in the header, got 2",
            "line 4: expected 4 fields as in the header, got 3",
        ],
    );
    assert_eq!(
        w.report("ack.csv").lines().count(),
        2,
        "{}",
        w.report("ack.csv")
    );
    assert_rejected(
        &w,
        "stock.csv",
        &[
            "line 3: expected 3 fields as in the header, got 2",
            "line 4: expected 3 fields as in the header, got 4",
        ],
    );
    assert_eq!(snapshot(&w), before);

    // Trailing empty cells (a spreadsheet's trailing delimiters) are fine.
    w.drop_file(
        "ack-ok.csv",
        "order_id,system_id,regulate_inventory\no-1,erp,false,,\n",
    );
    w.drop_file("stock-ok.csv", "sku,in_stock,\nA,5,\n");
    w.run_once();
    assert_eq!(w.archived(), ["ack-ok.csv", "o.json", "stock-ok.csv"]);
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("acked"));
    assert_eq!(w.stock("A"), (5, 1, 4));
}

// ---- one meaning per reference (issue 15) -------------------------------------

/// Regression (issue 15): an order whose `external_id` was another order's
/// id with a leading space was accepted; an ack CSV trims its cells, so the
/// row meant for it acked (and regulated) the other order, and an
/// `external_id` ending in a space could never be acked by CSV. A NUL was
/// accepted in a SKU. Now a reference (external_id, sku) may not begin or
/// end with white space nor hold a control character.
#[test]
fn references_with_edge_white_space_or_control_characters_are_rejected() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\nB,10\n");
    w.drop_json("a.json", &order("a", &[("A", 1)]));
    w.run_once();
    let id = id_of(&w, "a");
    let before = snapshot(&w);
    w.drop_json("lead.json", &order(&format!(" {id}"), &[("B", 1)]));
    w.drop_json("tail.json", &order("shop-7 ", &[("B", 1)]));
    w.drop_json("nul.json", &order("shop-8", &[("B\u{0}", 1)]));
    w.run_once();
    assert_rejected(
        &w,
        "lead.json",
        &[&format!(
            "$.external_id: begins or ends with white space (\" {id}\"); not allowed in a reference"
        )],
    );
    assert_rejected(
        &w,
        "tail.json",
        &["$.external_id: begins or ends with white space (\"shop-7 \")"],
    );
    assert_rejected(
        &w,
        "nul.json",
        &["$.line_items[0].sku: contains a control character (U+0000 at character 2)"],
    );
    assert_eq!(snapshot(&w), before);
    // The ack row the exploit used, padded as a spreadsheet pads it: it
    // names order "a" (its id, trimmed), and only that one.
    w.drop_file(
        "ack.csv",
        format!("order_id,system_id,regulate_inventory\n {id} ,erp,true\n"),
    );
    w.run_once();
    assert!(
        !w.errors().contains(&"ack.csv".to_string()),
        "{}",
        w.report("ack.csv")
    );
    assert_eq!(w.stock("A"), (9, 0, 9));
    assert_eq!(w.stock("B"), (10, 0, 10));
}

/// A CSV cell is trimmed, then matched exactly: a control character left in
/// an ack's `order_id` or a stock `sku` is that row's problem, naming the
/// column (issue 15); padding alone is fine.
#[test]
fn csv_references_with_control_characters_are_row_errors() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    w.run_once();
    let before = snapshot(&w);
    w.drop_file(
        "ack.csv",
        "order_id,system_id,regulate_inventory\no-1\u{1},erp,false\n",
    );
    w.drop_file("stock.csv", "sku,in_stock\n  A  ,5\nB\u{7},5\n");
    w.run_once();
    assert_rejected(
        &w,
        "ack.csv",
        &["line 2: order_id: contains a control character (U+0001 at character 4)"],
    );
    assert_rejected(
        &w,
        "stock.csv",
        &["line 3: sku: contains a control character (U+0007 at character 2)"],
    );
    assert_eq!(w.report("stock.csv").lines().count(), 1);
    assert_eq!(snapshot(&w), before);
}

// ---- messages (issue 15) --------------------------------------------------------

/// An empty file (0 bytes, or only white space) says so, whatever its kind,
/// instead of the JSON parser's "EOF while parsing a value".
#[test]
fn an_empty_file_says_the_file_is_empty() {
    let w = Work::new(TWO_SYSTEMS);
    let names = ["a.json", "b.ndjson", "c.jsonl", "d.csv", "e.json", "f.csv"];
    for (i, name) in names.iter().enumerate() {
        w.drop_file(name, if i < 4 { "" } else { " \r\n\n\t " });
    }
    w.run_once();
    for name in names {
        assert_rejected(&w, name, &["file: the file is empty"]);
        assert_eq!(w.report(name).lines().count(), 1, "{}", w.report(name));
    }
}

/// A binary `.csv` (NUL bytes, UTF-16, an .xlsx saved as .csv) is told it
/// is not a text CSV, not to set `encoding = "windows-1252"`.
#[test]
fn a_binary_csv_is_told_it_is_not_text() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("nul.csv", b"sku,in_stock\nA,1\n\x00\x01\x02\xff\xfe\n");
    w.drop_file("utf16.csv", b"\xff\xfes\x00k\x00u\x00,\x00");
    w.drop_file("book.csv", b"PK\x03\x04\x14\x00\x06\x00\x08\x00");
    w.run_once();
    assert_rejected(
        &w,
        "nul.csv",
        &["line 3: not a text CSV file: a NUL byte at byte 17"],
    );
    assert_rejected(&w, "utf16.csv", &["line 1: not a text CSV file"]);
    assert_rejected(
        &w,
        "book.csv",
        &["file: not a text CSV file: it is a ZIP archive"],
    );
    for name in ["nul.csv", "utf16.csv", "book.csv"] {
        assert!(
            !w.report(name).contains("windows-1252"),
            "{}",
            w.report(name)
        );
    }
}

/// A bad `unit_price` names the field and what is allowed, briefly: it
/// printed the largest float in 309 digits. A number beyond a float says so.
#[test]
fn a_bad_unit_price_is_told_briefly() {
    let w = Work::new(TWO_SYSTEMS);
    let mut neg = order("p-1", &[("A", 1)]);
    neg["line_items"][0]["unit_price"] = json!(-1e300);
    w.drop_json("neg.json", &neg);
    w.drop_file(
        "huge.json",
        serde_json::to_string(&order("p-2", &[("A", 1)]))
            .unwrap()
            .replace("\"unit_price\":10.0", "\"unit_price\":1e400"),
    );
    w.run_once();
    assert_rejected(
        &w,
        "neg.json",
        &["$.line_items[0].unit_price: expected a number of at least 0, got -1e+300"],
    );
    assert!(w.report("neg.json").len() < 200, "{}", w.report("neg.json"));
    assert_rejected(&w, "huge.json", &["line 1, column"]);
    let report = w.report("huge.json");
    assert!(
        report.contains("number out of range (a number must be within about ±1.8e308"),
        "{report}"
    );
}

/// U+0000 in any text of an order (an address, a custom field, a key) or in
/// an ack is the file's problem, named by its path, on every
/// backend. Regression: PostgreSQL's text and jsonb cannot hold it, and the
/// order's commit failed again and again, keeping the file (and the files
/// of its group) in the inbox for ever; sled took it.
#[test]
fn a_nul_in_any_order_text_or_note_is_a_problem_named_by_its_path() {
    let w = Work::new(TWO_SYSTEMS);
    let mut bad = order("nul-1", &[("A", 1)]);
    bad["billing_address"]["address1"] = json!("Main St\u{0}1");
    bad["custom"] = json!({"tags": ["ok", "x\u{0}"], "k\u{0}ey": 1});
    w.drop_json("nul.json", &bad);
    w.drop_json("good.json", &order("good-1", &[("A", 1)]));
    w.run_once();
    assert_rejected(
        &w,
        "nul.json",
        &[
            "$.billing_address.address1: contains U+0000 (NUL)",
            "$.custom.tags[1]: contains U+0000 (NUL)",
            "$.custom.k\\0ey: a key that contains U+0000 (NUL)",
        ],
    );
    assert_eq!(
        w.json(&["status"])["orders"],
        1,
        "good.json applied beside it"
    );
    w.drop_file(
        "ack.csv",
        "order_id,system_id,regulate_inventory,note\ngood-1,erp,false,a\u{0}b\n",
    );
    w.run_once();
    // A CSV file refuses a NUL byte before its rows are read; an HTTP
    // entry's note is refused by the row's own check (csvin's unit test).
    assert_rejected(&w, "ack.csv", &["line 2: not a text CSV file: a NUL byte"]);
    assert!(w.inbox().iter().all(|n| n == ".gitkeep"), "{:?}", w.inbox());
}
