//! The fence of an active/standby pair (`[cluster]`, issue 17 §2), on a
//! real PostgreSQL server with two nodes' stores open in one process: once
//! another node has taken the lease, nothing the former leader does is
//! written — no file's effects, no applied-file record, no export file —
//! and its inbox files stay where they are for the new leader. The whole
//! pair (processes, kill -9, SIGSTOP) is `tests/pair.rs`.

mod common;

use ordersync::config::Config;
use ordersync::engine::Engine;
use ordersync::store::StoreError;

use common::{TestDb, Work, order};

/// Node `node`'s config: the shared folders of `w`, a state folder of its
/// own, the database `url`.
fn node(w: &Work, node: &str, url: &str) -> Engine {
    let text = format!(
        "[paths]\nstate = \"state-{node}\"\n[inbox]\nsettle = \"0s\"\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n[cluster]\nnode = \"{node}\"\nlease = \"30s\"\n[[systems]]\nid = \"erp\"\n"
    );
    let file = w.path(&format!("{node}.toml"));
    std::fs::write(&file, text).unwrap();
    Engine::open(Config::load(&file).unwrap()).unwrap()
}

/// Before the fence, a node whose lease had expired and been taken by the
/// other went on committing: its file was applied a second time by a
/// second leader (here: the order stored, the file archived, an export
/// file written by the node that no longer leads).
#[test]
fn a_former_leader_writes_nothing() {
    if common::pg_server().is_none() {
        return;
    }
    let db = TestDb::create();
    let w = Work::as_given("");
    let a = node(&w, "a", db.url());
    let b = node(&w, "b", db.url());
    let (pa, pb) = (a.store.postgres().unwrap(), b.store.postgres().unwrap());

    // Before any node leads, nothing is written.
    w.drop_json("early.json", &order("early", &[("A", 1)]));
    let s = a.drain().map(|s| s.applied);
    assert!(
        matches!(&s, Err(e) if e.store_error().is_some_and(|e| matches!(e, StoreError::Fenced(_)))),
        "{s:?}"
    );
    assert_eq!(w.inbox(), ["early.json"]);

    // a leads: its writes commit; b cannot take the lease.
    assert_eq!(pa.take_lease("a").unwrap(), Some(1));
    assert_eq!(pb.take_lease("b").unwrap(), None);
    let s = a.drain().unwrap();
    assert_eq!((s.applied, s.export_files), (1, 1), "{s:?}");
    assert_eq!(w.outbox("erp").len(), 1);

    // a's lease runs out (a frozen process), b takes it.
    let mut admin = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    admin
        .execute(
            "UPDATE leader SET expires = clock_timestamp() - interval '1 second'",
            &[],
        )
        .unwrap();
    assert_eq!(pb.take_lease("b").unwrap(), Some(2));

    // a wakes up and goes on: nothing it does is written.
    w.drop_json("late.json", &order("late", &[("A", 1)]));
    // (It fails, or does nothing: what counts is what it wrote.)
    let _ = a.drain();
    assert_eq!(w.inbox(), ["late.json"], "the file stays for the leader");
    assert_eq!(b.store.order_count().unwrap(), 1);
    assert_eq!(w.outbox("erp").len(), 1);
    let fenced = |r: &Result<(), StoreError>| matches!(r, Err(StoreError::Fenced(_)));
    assert!(fenced(&a.store.check_lease()), "a may still write files");

    // b, the leader, applies it once.
    let s = b.drain().unwrap();
    assert_eq!((s.applied, s.export_files), (1, 1), "{s:?}");
    assert_eq!(b.store.order_count().unwrap(), 2);
    assert!(w.inbox().is_empty());
    assert_eq!(w.exported_ids("erp").len(), 2);
}

/// `[cluster]` is refused where it cannot work: on sled (one process's
/// store), and with a lease outside 1 s to 10 min; every problem named.
#[test]
fn cluster_needs_postgres_and_a_sane_lease() {
    let w =
        Work::as_given("[cluster]\nnode = \"a b\"\nlease = \"100ms\"\n[[systems]]\nid = \"erp\"\n");
    let out = w.cmd(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for what in [
        "cluster: a pair of nodes shares its state on PostgreSQL",
        "cluster.node: \"a b\" must be 1 to 64 characters",
        "cluster.lease: 100ms must be from 1s to 10m",
    ] {
        assert!(err.contains(what), "{what:?} not in:\n{err}");
    }
}
