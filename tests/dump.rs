//! `dump` and `restore` (issue 16 §5): a dump made while the daemon runs
//! restores into a new store that goes on exactly where the old one
//! stopped, dumps again to the same records, and a bad or cut-short dump is
//! refused with its line, never restored in part.

mod common;

use std::fs;
use std::time::Duration;

use common::{TWO_SYSTEMS, Work, acks, order, wait_for};
use serde_json::Value;

/// The records of a dump (everything after the header), sorted.
fn records(w: &Work, file: &str) -> Vec<String> {
    let text = fs::read_to_string(w.path(file)).expect("the dump");
    let mut lines: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    lines.sort();
    lines
}

fn header(w: &Work, file: &str) -> Value {
    let text = fs::read_to_string(w.path(file)).expect("the dump");
    serde_json::from_str(text.lines().next().expect("a header")).expect("header json")
}

#[test]
fn a_dump_taken_while_the_daemon_runs_restores_a_store_that_goes_on_where_it_stopped() {
    if common::sled_only(
        "a sled dump (its header), restored into a new store by moving the state folder aside",
    ) {
        return;
    }
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\nB,5\n");
    let mut daemon = w.start(&[]);
    for i in 1..=4 {
        w.drop_json(
            &format!("o{i}.json"),
            &order(&format!("o-{i}"), &[("A", 1), ("B", 1)]),
        );
    }
    wait_for(
        "4 orders exported to each system",
        Duration::from_secs(20),
        || w.exported_ids("erp").len() == 4 && w.exported_ids("wms").len() == 4,
    );
    w.drop_file(
        "ack.csv",
        acks(&[("o-1", "erp", true), ("o-2", "erp", false)]),
    );
    wait_for("the ack applied", Duration::from_secs(20), || {
        w.state("o-1", "erp").as_deref() == Some("acked")
            && w.state("o-2", "erp").as_deref() == Some("acked")
    });
    let stock_before = (w.stock("A"), w.stock("B"));
    assert_eq!(stock_before.0, (9, 3, 6), "o-1 regulated, three reserved");

    // Through the running daemon.
    w.ok(&["dump", "--output", "one.ndjson"]);
    let h = header(&w, "one.ndjson");
    assert_eq!(h["format"], "ordersync-dump");
    assert_eq!(h["version"], 1);
    assert_eq!(h["backend"], "sled");
    let mode = fs::metadata(w.path("one.ndjson")).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "a dump holds every order: readable by its owner only"
    );
    daemon.terminate();

    // Into a new state folder; the old one is kept aside.
    fs::rename(w.path("state"), w.path("state.old")).unwrap();
    let said = w.ok(&["restore", "one.ndjson"]);
    assert!(said.contains("4 orders"), "{said}");
    w.ok(&["dump", "--output", "two.ndjson"]);
    assert_eq!(
        records(&w, "one.ndjson"),
        records(&w, "two.ndjson"),
        "a restored store dumps to the same records"
    );
    assert_eq!((w.stock("A"), w.stock("B")), stock_before);
    assert_eq!(
        w.events("o-1"),
        {
            fs::rename(w.path("state"), w.path("state.new")).unwrap();
            fs::rename(w.path("state.old"), w.path("state")).unwrap();
            let old = w.events("o-1");
            fs::rename(w.path("state"), w.path("state.old")).unwrap();
            fs::rename(w.path("state.new"), w.path("state")).unwrap();
            old
        },
        "the timeline, in its order"
    );

    // It goes on: the next export file takes the next sequence number,
    // nothing is exported again, a re-sent ack regulates nothing twice.
    let erp_files_before = w.outbox("erp").len();
    w.drop_json("o5.json", &order("o-5", &[("A", 1)]));
    w.drop_file(
        "ack-again.csv",
        acks(&[("o-1", "erp", true), ("o-2", "erp", false)]),
    );
    w.run_once();
    assert_eq!(w.errors(), Vec::<String>::new());
    let ids = w.exported_ids("erp");
    assert_eq!(ids.len(), 5, "o-5 once, nothing again: {ids:?}");
    assert_eq!(w.exported_ids("wms").len(), 5);
    assert_eq!(w.outbox("erp").len(), erp_files_before + 1);
    let mut names: Vec<String> = w
        .outbox("erp")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), erp_files_before + 1, "no file name used twice");
    assert_eq!(
        w.stock("A"),
        (9, 4, 5),
        "o-1 not regulated again; o-5 reserves one"
    );
    assert_eq!(w.stock("B"), stock_before.1);
}

#[test]
fn restore_refuses_a_bad_or_cut_short_dump_and_a_store_that_is_not_empty() {
    if common::sled_only(
        "empties the store (and clears a part-restored one) by removing the state folder",
    ) {
        return;
    }
    let w = Work::new(TWO_SYSTEMS);
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    w.run_once();
    w.ok(&["dump", "--output", "d.ndjson"]);
    let dump = fs::read_to_string(w.path("d.ndjson")).unwrap();
    let lines: Vec<&str> = dump.lines().collect();

    // Into the store it came from: not empty.
    let out = w.cmd(&["restore", "d.ndjson"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds a store"), "{err}");

    let refused = |name: &str, text: String, expect: &str| {
        fs::write(w.path(name), text).unwrap();
        let _ = fs::remove_dir_all(w.path("state"));
        let out = w.cmd(&["restore", name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(expect), "{name}: expected {expect:?} in {err}");
        err.into_owned()
    };
    let cut = lines[..lines.len() - 1].join("\n") + "\n";
    refused("cut.ndjson", cut, "cut short");
    refused("empty.ndjson", String::new(), "line 1: the dump is empty");
    refused(
        "csv.ndjson",
        "order_id,system_id\n".into(),
        "line 1: not an ordersync dump",
    );
    let mut newer = lines.clone();
    let v2 = lines[0].replace(r#""version":1"#, r#""version":2"#);
    newer[0] = &v2;
    refused("v2.ndjson", newer.join("\n"), "version 2");
    let after = dump.clone() + lines[1] + "\n";
    refused("after.ndjson", after, "after the closing line");

    // A record naming an order no earlier line holds.
    let orphan = format!(
        "{}\n{}\n{}\n",
        lines[0],
        r#"{"type":"export","system":"erp","order":"6f1c5a52-0d36-4a4f-9a57-7f3c6b0e2a11","state":"pending","sort":1}"#,
        r#"{"format":"ordersync-dump-end","records":1}"#
    );
    refused("orphan.ndjson", orphan, "line 2: names the order");

    // A bad record after some were written: the store is left marked, and
    // refused until the folder is removed.
    let order_line = lines
        .iter()
        .find(|l| l.contains(r#""type":"order""#))
        .unwrap();
    let broken = format!(
        "{}\n{order_line}\n{{\"type\":\"stock\",\"sku\":\"A\"}}\n",
        lines[0]
    );
    refused("broken.ndjson", broken, "line 3: missing field `in_stock`");
    for args in [
        &["status"][..],
        &["run", "--once"][..],
        &["restore", "d.ndjson"][..],
    ] {
        let out = w.cmd(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("restored only in part"), "{args:?}: {err}");
    }
    let _ = fs::remove_dir_all(w.path("state"));
    assert!(w.ok(&["restore", "d.ndjson"]).contains("1 orders"));
}

/// Dumps taken while the daemon applies files are each of one instant: an
/// order is in a dump exactly when the file it came from is recorded as
/// applied in that dump, and each restores.
#[test]
fn dumps_taken_while_files_are_applied_are_each_of_one_instant() {
    let w = Work::new(TWO_SYSTEMS);
    let mut daemon = w.start(&[]);
    let n = 400;
    let dropper = {
        let inbox = w.path("inbox");
        std::thread::spawn(move || {
            for i in 0..n {
                let tmp = inbox.join(format!(".o{i}.tmp"));
                fs::write(
                    &tmp,
                    serde_json::to_vec(&order(&format!("o-{i}"), &[("A", 1)])).unwrap(),
                )
                .unwrap();
                fs::rename(&tmp, inbox.join(format!("o{i}.json"))).unwrap();
            }
        })
    };
    let mut dumps = Vec::new();
    for k in 0..6 {
        let name = format!("live-{k}.ndjson");
        w.ok(&["dump", "--output", &name]);
        dumps.push(name);
    }
    dropper.join().unwrap();
    daemon.terminate();
    let mut sizes = Vec::new();
    for name in &dumps {
        let text = fs::read_to_string(w.path(name)).unwrap();
        let mut orders = std::collections::BTreeSet::new();
        let mut files = std::collections::BTreeSet::new();
        for line in text.lines().skip(1) {
            let v: Value = serde_json::from_str(line).unwrap();
            match v["type"].as_str() {
                Some("order") => {
                    let ext = v["external_id"].as_str().unwrap();
                    orders.insert(ext.trim_start_matches("o-").to_string());
                }
                Some("applied_file") => {
                    let file = v["name"].as_str().unwrap();
                    files.insert(
                        file.trim_start_matches('o')
                            .trim_end_matches(".json")
                            .to_string(),
                    );
                }
                _ => {}
            }
        }
        assert_eq!(orders, files, "{name}: orders and applied files differ");
        sizes.push(orders.len());
        // A new store for each: a state folder of its own, and on
        // PostgreSQL a database of its own.
        let state = format!("state-{name}");
        fs::write(
            w.path(&format!("{name}.toml")),
            common::with_test_backend(&format!("[paths]\nstate = \"{state}\"\n{TWO_SYSTEMS}")),
        )
        .unwrap();
        w.ok(&["--config", &format!("{name}.toml"), "restore", name]);
    }
    eprintln!("orders in each dump: {sizes:?}");
}

/// Issue 22 §3: a tampered dump restored on sled where PostgreSQL refused
/// it (an export record twice, after which `run --once` wrote 25,739 files
/// of one order in 60 s; two orders with one external_id; an applied file
/// twice; a NUL; a sequence at 2^64 − 1, after which the next file was
/// `…-000000`). One admission check refuses each on both backends, with
/// the same line and words.
#[test]
fn a_tampered_dump_is_refused_alike_on_sled_and_postgresql() {
    let base = fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dumps/small.ndjson"),
    )
    .expect("the fixture");
    let lines: Vec<String> = base.lines().map(str::to_string).collect();
    let first = |kind: &str| {
        lines
            .iter()
            .position(|l| l.contains(&format!(r#""type":"{kind}""#)))
            .unwrap_or_else(|| panic!("a {kind} in the fixture"))
    };
    // The dump with `edit` made to its records, the closing line's count
    // made right.
    let tampered = |edit: &dyn Fn(&mut Vec<String>)| {
        let mut body: Vec<String> = lines[1..lines.len() - 1].to_vec();
        edit(&mut body);
        let mut out = vec![lines[0].clone()];
        out.extend(body.iter().cloned());
        out.push(format!(
            r#"{{"format":"ordersync-dump-end","records":{}}}"#,
            body.len()
        ));
        out.join("\n") + "\n"
    };
    let at = |kind: &str| first(kind) - 1; // in the body
    let order_line = lines[first("order")].clone();
    let id = order_line
        .split(r#""id":""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the order's id")
        .to_string();
    let cases: Vec<(&str, String, String)> = vec![
        (
            "export-twice",
            tampered(&|b| {
                let i = at("export");
                let l = b[i].clone();
                b.insert(i + 1, l);
            }),
            format!(
                "line {}: an export record of the order",
                first("export") + 2
            ),
        ),
        (
            "external-id-twice",
            tampered(&|b| {
                let i = at("order");
                let other = uuid::Uuid::new_v4().to_string();
                let l = b[i].replace(&id, &other);
                b.insert(i + 1, l);
            }),
            format!(
                "line {}: the external_id \"A-1\" a second time",
                first("order") + 2
            ),
        ),
        (
            "applied-file-twice",
            tampered(&|b| {
                let i = at("applied_file");
                let l = b[i].clone();
                b.insert(i + 1, l);
            }),
            format!("line {}: the applied file", first("applied_file") + 2),
        ),
        (
            "nul",
            tampered(&|b| {
                let i = at("event");
                b[i] = b[i].replace(r#""detail":""#, r#""detail":"\u0000"#);
            }),
            format!("line {}: detail", first("event") + 1),
        ),
        (
            "sequence-at-the-end",
            tampered(&|b| {
                let i = at("sequence");
                b[i] = b[i].replace(r#""last":1"#, r#""last":18446744073709551615"#);
            }),
            format!(
                "line {}: last 18446744073709551615 is beyond the largest export sequence number",
                first("sequence") + 1
            ),
        ),
        (
            "long-external-id",
            tampered(&|b| {
                let i = at("order");
                b[i] = b[i].replace(r#""A-1""#, &format!("\"{}\"", "A".repeat(3_000)));
            }),
            format!(
                "line {}: external_id: 3000 characters; at most 255 are allowed",
                first("order") + 1
            ),
        ),
    ];
    let mut stores: Vec<Option<common::TestDb>> = vec![None];
    if common::pg_server().is_some() {
        stores.push(Some(common::TestDb::create()));
    }
    for (name, text, expect) in &cases {
        for db in &stores {
            let config = match db {
                None => TWO_SYSTEMS.to_string(),
                Some(db) => common::with_postgres_store(TWO_SYSTEMS, db.url()),
            };
            let w = Work::as_given(&config);
            fs::write(w.path("d.ndjson"), text).unwrap();
            let out = w.cmd(&["restore", "d.ndjson"]);
            let err = String::from_utf8_lossy(&out.stderr);
            let backend = if db.is_some() { "postgres" } else { "sled" };
            assert_eq!(out.status.code(), Some(1), "{name} on {backend}: {err}");
            assert!(
                err.contains(expect.as_str()),
                "{name} on {backend}: expected {expect:?} in {err}"
            );
        }
        // The PostgreSQL database is reused: a refused restore leaves it
        // empty (one transaction).
    }
    // The fixture itself restores.
    let w = Work::as_given(TWO_SYSTEMS);
    fs::write(w.path("d.ndjson"), &base).unwrap();
    w.ok(&["restore", "d.ndjson"]);
}
