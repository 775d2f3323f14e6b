//! `ordersync validate`: the inbox's checks without applying anything,
//! with or without a config, through the real binary.

mod common;

use std::fs;

use common::{TWO_SYSTEMS, Work};

/// The problem lines `validate` printed (without their indent).
fn problems(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .map(str::to_string)
        .collect()
}

/// Its report is the inbox's report: the same lines as the
/// `errors/<name>.error.txt` that `run --once` writes for the same file.
#[test]
fn reports_exactly_what_the_inbox_reports_and_applies_nothing() {
    let w = Work::new(TWO_SYSTEMS);
    let bad_orders = concat!(
        "{\"external_id\": \"a\", \"type\": \"Sales Order\", \"currency\": \"dkk\"}\n",
        "not json\n"
    );
    let bad_acks =
        "order_id,system_id,regulate_inventory\nshop-1001,erp,maybe\nshop-1001,nosuch,no\nz\n";
    fs::write(w.path("bad.ndjson"), bad_orders).unwrap();
    fs::write(w.path("bad.csv"), bad_acks).unwrap();
    let out = w.cmd(&["validate", "bad.ndjson", "bad.csv"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("bad.csv: invalid: 3 problem(s)"),
        "{stdout}"
    );
    let said = problems(&stdout);
    // Nothing was applied or moved: there is not even a store.
    assert!(!w.path("state").exists());

    // The acks name a stored order: what needs the store is not checked
    // by validate (documented), so the comparison leaves it out.
    w.drop_file("order.json", include_str!("fixtures/order.json"));
    w.ok(&["run", "--once"]);
    w.drop_file("bad.ndjson", bad_orders);
    w.drop_file("bad.csv", bad_acks);
    w.ok(&["run", "--once"]);
    let mut reported = Vec::new();
    for name in ["bad.ndjson", "bad.csv"] {
        let report = fs::read_to_string(w.path(&format!("errors/{name}.error.txt"))).unwrap();
        reported.extend(report.lines().map(str::to_string));
    }
    assert_eq!(said, reported);
}

/// A partner has no config and no store: defaults are used and it says so.
#[test]
fn works_without_a_config_and_exits_0_when_all_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let order = include_str!("fixtures/order.json");
    fs::write(dir.path().join("order.json"), order).unwrap();
    fs::write(
        dir.path().join("acks.csv"),
        "order_id,system_id,regulate_inventory\nshop-1001,any-system,yes\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ordersync"))
        .args(["validate", "order.json", "acks.csv"])
        .current_dir(dir.path())
        .env_remove("ORDERSYNC_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("order.json: valid: orders, 1 order(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("acks.csv: valid: acks, 1 row(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("note: no config"), "{stdout}");
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        2,
        "it created something"
    );
}

/// `--system S` checks an ack file as if dropped into S's own drop
/// folder: rows naming another system are problems.
#[test]
fn system_checks_acks_as_a_partner_folder_would() {
    let w = Work::new(TWO_SYSTEMS);
    fs::write(
        w.path("acks.csv"),
        "order_id,system_id,regulate_inventory\na,erp,no\nb,wms,no\n",
    )
    .unwrap();
    w.ok(&["validate", "acks.csv"]);
    let out = w.cmd(&["validate", "--system", "erp", "acks.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        problems(&String::from_utf8(out.stdout).unwrap()),
        [
            "line 3: system_id \"wms\": this file is in the drop folder of system \"erp\", whose acks may only name \"erp\""
        ]
    );
    let out = w.cmd(&["validate", "--system", "nosuch", "acks.csv"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown --system is a usage error"
    );
}
