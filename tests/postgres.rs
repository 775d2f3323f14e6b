//! The PostgreSQL store's schema and its dump and restore, on a real server
//! (`common::pg_server`; each test makes a database of its own). A sled store's dump restored into
//! PostgreSQL dumps again to the same records (issue 16 §5).

mod common;

use std::fs;
use std::io::BufReader;

use common::{TWO_SYSTEMS, TestDb, Work, acks, order};
use ordersync::store::dump::DumpError;
use ordersync::store::postgres::{PgError, Postgres, schema_version};

/// A new, empty database on the test server (see `common::pg_server`),
/// dropped at the end of the test; `None`: skipped.
fn database() -> Option<TestDb> {
    common::pg_server()?;
    Some(TestDb::create())
}

/// A sled store's dump with every kind of record the daemon writes (`w` is
/// on sled whatever `ORDERSYNC_TEST_BACKEND` says: `Work::sled`).
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
    let Some(db) = database() else { return };
    let url = db.url().to_string();
    let w = Work::sled(TWO_SYSTEMS);
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
    let Some(db) = database() else { return };
    let url = db.url().to_string();
    let w = Work::sled(TWO_SYSTEMS);
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
    let Some(db) = database() else { return };
    let url = db.url().to_string();
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

// ---- the harness: ORDERSYNC_TEST_BACKEND (tests/common) ----------------------

/// The PostgreSQL injection: `backend` and `url` set in `[store]`, whose
/// other keys stay; sled's `compression` and `cache_capacity` go; a
/// `[store]` is made when there is none; a config that chooses its backend
/// or is not TOML is left alone (the binary rejects the latter before it
/// opens a store).
#[test]
fn the_postgres_store_is_set_into_the_config_keeping_its_other_keys() {
    let url = "host=/tmp/ordersync-pg.x user=postgres dbname=t_1";
    let text = common::with_postgres_store(
        "[inbox]\nsettle = \"0s\"\n[store]\ncache_capacity = \"8MiB\"\ncompression = true\n[[systems]]\nid = \"erp\"\n",
        url,
    );
    let t: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let store = t["store"].as_table().unwrap();
    assert_eq!(store["backend"].as_str(), Some("postgres"), "{text}");
    assert_eq!(store["url"].as_str(), Some(url), "{text}");
    assert!(!store.contains_key("cache_capacity"), "{text}");
    assert!(!store.contains_key("compression"), "{text}");
    assert_eq!(store.len(), 2, "{text}");
    assert_eq!(t["inbox"]["settle"].as_str(), Some("0s"), "{text}");
    assert_eq!(t["systems"][0]["id"].as_str(), Some("erp"), "{text}");

    let text = common::with_postgres_store(common::TWO_SYSTEMS, url);
    let t: toml::Table = text.parse().unwrap();
    assert_eq!(t["store"]["url"].as_str(), Some(url), "{text}");
    assert_eq!(t["systems"].as_array().unwrap().len(), 2, "{text}");
    assert_eq!(
        common::with_postgres_store("", url),
        format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n")
    );
    let chosen = "[store]\nbackend = \"postgres\"\nurl = \"host=/x dbname=y\"\n";
    assert_eq!(common::with_postgres_store(chosen, url), chosen);
    for not_toml in ["[inbox\nsettle = 1", "store = 3\n"] {
        assert_eq!(common::with_postgres_store(not_toml, url), not_toml);
    }
}

/// `with_test_backend` as this run's ORDERSYNC_TEST_BACKEND asks: on sled
/// the text unchanged, byte for byte; on PostgreSQL a `url` naming a new
/// database that exists, the config's other keys kept.
#[test]
fn with_test_backend_follows_ordersync_test_backend() {
    let config = "# a comment\n[store]\ncache_capacity = \"8MiB\"\n";
    let text = common::with_test_backend(config);
    match common::test_backend() {
        common::Backend::Sled => {
            assert_eq!(text, config);
            let w = Work::new(config);
            assert_eq!(w.store_url(), None);
            assert_eq!(fs::read_to_string(w.path("config.toml")).unwrap(), config);
        }
        common::Backend::Postgres => {
            let t: toml::Table = text.parse().unwrap();
            assert_eq!(t["store"]["backend"].as_str(), Some("postgres"));
            assert!(t["store"].get("cache_capacity").is_none());
            let url = t["store"]["url"].as_str().unwrap();
            postgres::Client::connect(url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            // A Work keeps its database through a rewritten config.
            let w = Work::new(config);
            let first = w.store_url().unwrap().to_string();
            assert_ne!(first, url, "each Work has a database of its own");
            w.write_config("[inbox]\nsettle = \"1s\"\n");
            let t: toml::Table = fs::read_to_string(w.path("config.toml"))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(t["store"]["url"].as_str(), Some(first.as_str()));
            assert_eq!(t["inbox"]["settle"].as_str(), Some("1s"));
        }
    }
}

/// Issue 16 §5 end to end, with the real binary: a sled store dumped while
/// its daemon runs, restored with `ordersync restore` into PostgreSQL (the
/// config's `[store]` switched), dumps again to the same records, and the
/// daemon on PostgreSQL goes on exactly where the sled one stopped: the
/// next export file continues the sequence, nothing is exported again, a
/// re-sent ack regulates nothing twice. Then a dump through the daemon
/// running on PostgreSQL has the same records plus what came since.
#[test]
fn a_sled_store_moved_to_postgres_goes_on_where_it_stopped() {
    let Some(db) = database() else { return };
    let w = Work::sled(TWO_SYSTEMS);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\nB,5\n");
    let mut daemon = w.start(&[]);
    for i in 1..=4 {
        w.drop_json(
            &format!("o{i}.json"),
            &order(&format!("o-{i}"), &[("A", 1), ("B", 1)]),
        );
    }
    common::wait_for(
        "4 orders exported to each system",
        std::time::Duration::from_secs(20),
        || w.exported_ids("erp").len() == 4 && w.exported_ids("wms").len() == 4,
    );
    w.drop_file(
        "ack.csv",
        acks(&[("o-1", "erp", true), ("o-2", "erp", false)]),
    );
    common::wait_for(
        "the ack applied",
        std::time::Duration::from_secs(20),
        || w.state("o-2", "erp").as_deref() == Some("acked"),
    );
    let stock_before = (w.stock("A"), w.stock("B"));
    assert_eq!(stock_before.0, (9, 3, 6), "o-1 regulated, three reserved");
    w.ok(&["dump", "--output", "sled.ndjson"]);
    daemon.terminate();
    let sled = fs::read_to_string(w.path("sled.ndjson")).unwrap();

    // The same folders, the store on PostgreSQL: restore, dump again.
    fs::write(
        w.path("config.toml"),
        common::with_postgres_store(TWO_SYSTEMS, db.url()),
    )
    .unwrap();
    let said = w.ok(&["restore", "sled.ndjson"]);
    assert!(said.contains("4 orders"), "{said}");
    w.ok(&["dump", "--output", "pg.ndjson"]);
    let pg = fs::read_to_string(w.path("pg.ndjson")).unwrap();
    assert!(
        pg.lines()
            .next()
            .unwrap()
            .contains(r#""backend":"postgres""#)
    );
    assert_eq!(records(&sled), records(&pg), "the same records");
    assert_eq!((w.stock("A"), w.stock("B")), stock_before);

    // It goes on.
    let erp_files_before = w.outbox("erp").len();
    let mut daemon = w.start(&[]);
    w.drop_json("o5.json", &order("o-5", &[("A", 1)]));
    w.drop_file(
        "ack-again.csv",
        acks(&[("o-1", "erp", true), ("o-2", "erp", false)]),
    );
    common::wait_for("o-5 exported", std::time::Duration::from_secs(20), || {
        w.exported_ids("erp").len() >= 5
            && w.exported_ids("wms").len() >= 5
            && w.inbox().iter().all(|n| n == ".gitkeep")
    });
    assert_eq!(w.errors(), Vec::<String>::new());
    let ids = w.exported_ids("erp");
    assert_eq!(ids.len(), 5, "o-5 once, nothing again: {ids:?}");
    assert_eq!(w.exported_ids("wms").len(), 5);
    let mut names: Vec<String> = w
        .outbox("erp")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), erp_files_before + 1);
    names.sort();
    let last = names.last().unwrap().clone();
    let seq = |name: &str| -> u64 {
        name.rsplit('-')
            .next()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before_max = names[..names.len() - 1]
        .iter()
        .map(|n| seq(n))
        .max()
        .unwrap();
    assert_eq!(
        seq(&last),
        before_max + 1,
        "the sequence goes on: {names:?}"
    );
    assert_eq!(
        w.stock("A"),
        (9, 4, 5),
        "o-1 not regulated again; o-5 reserves one"
    );
    assert_eq!(w.stock("B"), stock_before.1);

    // A dump through the daemon on PostgreSQL: the same records and more.
    w.ok(&["dump", "--output", "pg2.ndjson"]);
    daemon.terminate();
    let pg2 = records(&fs::read_to_string(w.path("pg2.ndjson")).unwrap());
    for r in records(&sled) {
        if r.starts_with(r#"{"type":"order""#) || r.starts_with(r#"{"type":"applied_file""#) {
            assert!(pg2.contains(&r), "lost: {r}");
        }
    }
    assert!(pg2.iter().any(|r| r.contains(r#""external_id":"o-5""#)));
}
