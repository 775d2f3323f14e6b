//! The PostgreSQL store's schema and its dump and restore, on a real server
//! (`common::pg_server`; each test makes a database of its own). A sled store's dump restored into
//! PostgreSQL dumps again to the same records (issue 16 §5).

mod common;

use std::fs;
use std::io::BufReader;

use common::{TWO_SYSTEMS, Work, acks, order};
use ordersync::store::dump::DumpError;
use ordersync::store::postgres::{PgError, Postgres, schema_version};

/// A new, empty database on the test server (see `common::pg_server`), as
/// a conninfo; `None`: skipped.
fn database() -> Option<String> {
    let base = common::pg_server()?;
    let name = format!("ordersync_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = postgres::Client::connect(&format!("{base} dbname=postgres"), postgres::NoTls)
        .expect("the test server");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create database");
    Some(format!("{base} dbname={name}"))
}

/// A sled store's dump with every kind of record the daemon writes.
fn sled_dump(w: &Work) -> String {
    w.drop_file("stock.csv", "sku,in_stock\nA,10\nB,5\n");
    w.run_once();
    w.drop_json("o1.json", &order("o-1", &[("A", 1), ("B", 2)]));
    w.drop_json("o2.json", &order("o-2", &[("A", 3)]));
    w.drop_json(
        "o3.json",
        &order("6f1c5a52-0d36-4a4f-9a57-7f3c6b0e2a11", &[("B", 1)]),
    );
    w.run_once();
    w.drop_file(
        "ack.csv",
        acks(&[("o-1", "erp", true), ("o-2", "wms", false)]),
    );
    w.run_once();
    w.ok(&["dump", "--output", "sled.ndjson"]);
    fs::read_to_string(w.path("sled.ndjson")).unwrap()
}

fn records(dump: &str) -> Vec<String> {
    let mut lines: Vec<String> = dump.lines().skip(1).map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn a_sled_dump_restored_into_postgres_dumps_again_to_the_same_records() {
    let Some(url) = database() else { return };
    let w = Work::new(TWO_SYSTEMS);
    let dump = sled_dump(&w);
    let mut pg = Postgres::connect(&url).unwrap();
    let done = pg.restore_from(BufReader::new(dump.as_bytes())).unwrap();
    assert_eq!(done.orders, 3);
    let mut again = Vec::new();
    pg.dump_to(&mut again).unwrap();
    let again = String::from_utf8(again).unwrap();
    assert!(
        again
            .lines()
            .next()
            .unwrap()
            .contains(r#""backend":"postgres""#)
    );
    assert_eq!(records(&dump), records(&again));

    // What an operator can query: typed columns and kept counts.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let n: i64 = c
        .query_one(
            "SELECT n FROM state_counts WHERE system = 'erp' AND state = 'acked'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let spelt: Option<uuid::Uuid> = c
        .query_one(
            "SELECT external_uuid FROM orders WHERE external_id = '6f1c5a52-0d36-4a4f-9a57-7f3c6b0e2a11'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(spelt.is_some());

    // The store is not empty now: a second restore is refused.
    let e = pg
        .restore_from(BufReader::new(dump.as_bytes()))
        .unwrap_err();
    assert!(matches!(e, DumpError::NotEmpty(_)), "{e}");
}

#[test]
fn a_bad_dump_restores_nothing_and_a_file_is_applied_once_by_the_schema() {
    let Some(url) = database() else { return };
    let w = Work::new(TWO_SYSTEMS);
    let dump = sled_dump(&w);
    // A bad line near the end: the transaction leaves nothing behind.
    let mut lines: Vec<&str> = dump.lines().collect();
    let at = lines.len() - 2;
    lines[at] = r#"{"type":"stock","sku":"A"}"#;
    let bad = lines.join("\n") + "\n";
    let mut pg = Postgres::connect(&url).unwrap();
    let e = pg.restore_from(BufReader::new(bad.as_bytes())).unwrap_err();
    assert!(e.to_string().contains(&format!("line {}", at + 1)), "{e}");
    assert!(pg.is_empty().unwrap(), "a failed restore left records");
    pg.restore_from(BufReader::new(dump.as_bytes())).unwrap();

    // The applied-file record's key is the database's: a second process
    // can never record the same file twice.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let again = c.execute(
        "INSERT INTO applied_files (name, sha256, at, kind)
             SELECT name, sha256, at, kind FROM applied_files LIMIT 1",
        &[],
    );
    let e = again.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
        "{e}"
    );
}

#[test]
fn migrations_run_once_under_a_lock_and_a_newer_schema_is_refused() {
    let Some(url) = database() else { return };
    // A read finds no store and creates none.
    let mut pg = Postgres::connect(&url).unwrap();
    let e = pg.check_schema().unwrap_err();
    assert!(matches!(e, PgError::Missing(_)), "{e}");
    assert!(e.to_string().contains("no ordersync store"), "{e}");

    // Eight processes' worth of starts at once: each migration once.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Postgres::connect(&url).unwrap().migrate().unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), schema_version());
    }
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows = c
        .query("SELECT version FROM ordersync_schema ORDER BY version", &[])
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=schema_version()).collect::<Vec<_>>());
    pg.check_schema().unwrap();

    // A newer ordersync migrated it further: refused, naming both.
    c.execute("INSERT INTO ordersync_schema (version) VALUES (99)", &[])
        .unwrap();
    for e in [pg.check_schema().unwrap_err(), pg.migrate().unwrap_err()] {
        let text = e.to_string();
        assert!(
            text.contains("schema version 99")
                && text.contains(&format!("ordersync's {}", schema_version())),
            "{text}"
        );
        assert!(!text.contains("password"), "{text}");
    }
}
