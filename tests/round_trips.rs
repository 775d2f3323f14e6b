//! Round trips per group, not per file (issue 24 §1), counted by the
//! PostgreSQL server itself (`pg_stat_statements`: every statement a
//! session of the test's database executed, BEGIN and COMMIT included).
//!
//! Before, each file of a group paid its own reads (the applied-file check,
//! the order by id, by external id and by the UUID it spells, the stock it
//! reserves, the kept counts: about five statements a file); now a group's
//! small files are read and parsed first and the store reads what they all
//! need at once. So 150 more single-order files in a run cost at most a
//! few statements more, not hundreds.
//!
//! These run on PostgreSQL whatever `ORDERSYNC_TEST_BACKEND` says, on a
//! cluster of their own (`.ci/pg-cluster`, which loads
//! `pg_stat_statements`): on the server the other tests share, their
//! hundreds of databases fill the module's table (5,000 entries) and it
//! drops entries, counts included. Without PostgreSQL they are skipped,
//! except under `ORDERSYNC_E2E=1`, where that fails.

mod common;

use common::{OwnCluster, Work, order, with_postgres_store};

/// A new database on `cluster`: its conninfo.
fn database(cluster: &OwnCluster, name: &str) -> String {
    let mut admin = postgres::Client::connect(
        &format!("{} dbname=postgres", cluster.conninfo),
        postgres::NoTls,
    )
    .expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create database");
    format!("{} dbname={name}", cluster.conninfo)
}

/// Every statement of the database at `url` so far, by the server's
/// count; `None` when the server does not load `pg_stat_statements`.
fn statements(url: &str) -> Option<i64> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .expect("create extension");
    match c.query_one(
        "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[],
    ) {
        Ok(row) => Some(row.get(0)),
        Err(e) => {
            assert!(
                std::env::var("ORDERSYNC_E2E").as_deref() != Ok("1"),
                "pg_stat_statements is needed (shared_preload_libraries, as .ci/pg-cluster starts the server): {e}"
            );
            eprintln!("skipped: the server does not load pg_stat_statements: {e}");
            None
        }
    }
}

/// The statements one `run --once` of `n` single-order files costs, in a
/// database of its own. The systems are fetched over HTTP, so the run
/// writes no export files: what is counted is taking the files in.
fn statements_for(cluster: &OwnCluster, n: usize) -> Option<i64> {
    let url = database(cluster, &format!("files_{n}"));
    let before = statements(&url)?;
    let w = Work::as_given(&with_postgres_store(
        "[inbox]\nsettle = \"0s\"\n\
         [[systems]]\nid = \"erp\"\ntransport = \"http\"\n\
         [[systems]]\nid = \"wms\"\ntransport = \"http\"\n",
        &url,
    ));
    for i in 0..n {
        // Each order names its own SKU and one shared with the others.
        let o = order(&format!("o-{i}"), &[("SHARED", 1), (&format!("S-{i}"), 2)]);
        w.drop_json(&format!("order-{i:04}.json"), &o);
    }
    w.run_once();
    assert_eq!(
        w.archived().len(),
        n,
        "every file applied: {:?}",
        w.errors()
    );
    let after = statements(&url)?;
    Some(after - before)
}

#[test]
fn a_group_of_files_costs_a_handful_of_statements_not_a_few_per_file() {
    let Some(cluster) = OwnCluster::start() else {
        return;
    };
    let Some(few) = statements_for(&cluster, 40) else {
        return;
    };
    let Some(many) = statements_for(&cluster, 190) else {
        return;
    };
    eprintln!("run --once: 40 files {few} statements, 190 files {many}");
    // The run's own start (migrations, the lease, the systems' settings)
    // is the same in both; 150 more files may add a group (its reads and
    // its commit, about 15 statements) if the slower run's group is cut by
    // time, but not a statement per file.
    assert!(
        many - few <= 40,
        "150 more files cost {} more statements (40 files: {few}, 190: {many})",
        many - few
    );
}
