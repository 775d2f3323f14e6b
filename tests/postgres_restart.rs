//! The store on PostgreSQL while PostgreSQL itself goes away: the daemon
//! runs on a cluster of this test's own, which is crashed (`pg_ctl restart
//! -m immediate`) again and again while the daemon drains an inbox of
//! stock adjustments, orders and regulating acknowledgements, and stopped
//! for a while in between. Nothing may be lost or applied twice, the
//! inventory must come out exact, `/healthz` must say 503 while the server
//! is down, and the cause is logged once per outage, naming the server.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Work, acks, order, wait_for};

fn healthz(url: &str) -> Option<u16> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            url,
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn postgres_restarted_mid_run_loses_nothing_and_doubles_nothing() {
    let Some(cluster) = common::OwnCluster::start() else {
        return;
    };
    let port = common::free_port();
    // Its own cluster, whatever ORDERSYNC_TEST_BACKEND says.
    let w = Work::as_given(&format!(
        "[inbox]\nsettle = \"0s\"\n[store]\nbackend = \"postgres\"\nurl = \"{} dbname=postgres\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[[systems]]\nid = \"erp\"\nbatch_size = 5\n",
        cluster.conninfo
    ));
    const ADJUSTMENTS: usize = 300;
    const ORDERS: usize = 40;
    for i in 0..ORDERS {
        w.drop_json(
            &format!("order-{i:04}.json"),
            &order(&format!("o-{i}"), &[("B", 2)]),
        );
    }
    for i in 0..ADJUSTMENTS {
        w.drop_file(&format!("adj-{i:04}.csv"), "sku,adjustment\nA,1\n");
    }
    let mut d = w.spawn(&[]);
    // Crash the server again and again while the inbox drains.
    for pause in [150u64, 300, 100, 250, 200, 350, 120, 280] {
        std::thread::sleep(Duration::from_millis(pause));
        cluster.pg_ctl(&["-m", "immediate", "restart"]);
    }
    // Down for a while: /healthz says so. (The HTTP API listens once the
    // store is open: a crash above may have come while the daemon was
    // starting, and it waits for the server before it listens.)
    let health = format!("http://127.0.0.1:{port}/healthz");
    let start = Instant::now();
    while healthz(&health) != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "/healthz did not answer 200 within 60 s of the last restart; the daemon's log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.pg_ctl(&["-m", "immediate", "stop"]);
    let start = Instant::now();
    let mut seen = Vec::new();
    while healthz(&health).inspect(|c| seen.push(*c)) != Some(503) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "/healthz never answered 503 with the server stopped (answers: {seen:?}); the daemon's log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    cluster.pg_ctl(&["start"]);
    wait_for("/healthz to answer 200", Duration::from_secs(60), || {
        healthz(&health) == Some(200)
    });
    wait_for("the inbox to drain", Duration::from_secs(120), || {
        w.inbox().iter().all(|n| n == ".gitkeep")
    });
    wait_for("every order exported", Duration::from_secs(60), || {
        w.exported_ids("erp").len() >= ORDERS
    });
    // Acknowledge (and regulate) every order, half in each file, with a
    // crash in between, then the first file again.
    let rows: Vec<(String, &str, bool)> = (0..ORDERS)
        .map(|i| (format!("o-{i}"), "erp", true))
        .collect();
    let refs: Vec<(&str, &str, bool)> = rows.iter().map(|(o, s, r)| (o.as_str(), *s, *r)).collect();
    let first = acks(&refs[..ORDERS / 2]);
    w.drop_file("ack-1.csv", &first);
    w.drop_file("ack-2.csv", acks(&refs[ORDERS / 2..]));
    std::thread::sleep(Duration::from_millis(100));
    cluster.pg_ctl(&["-m", "immediate", "restart"]);
    w.drop_file("ack-1-again.csv", &first);
    let start = Instant::now();
    wait_for("the acknowledgements", Duration::from_secs(120), || {
        w.inbox().iter().all(|n| n == ".gitkeep")
    });
    eprintln!("acks drained in {:?}", start.elapsed());

    assert!(w.errors().is_empty(), "rejected: {:?}", w.errors());
    let archived = w.archived();
    assert_eq!(archived.len(), ADJUSTMENTS + ORDERS + 3, "{archived:?}");
    assert!(archived.iter().all(|n| !n.ends_with(".1")), "{archived:?}");
    // Each adjustment once; each order's 2 B taken out of stock once.
    assert_eq!(w.stock("A"), (ADJUSTMENTS as i64, 0, ADJUSTMENTS as i64));
    assert_eq!(w.stock("B"), (-2 * ORDERS as i64, 0, -2 * ORDERS as i64));
    // Every order exported, none twice.
    let ids = w.exported_ids("erp");
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ORDERS, "{ids:?}");
    assert_eq!(ids.len(), ORDERS, "an order was exported twice: {ids:?}");
    let status = w.json(&["status"]);
    assert_eq!(status["orders"], ORDERS);
    assert_eq!(status["systems"]["erp"]["acked"], ORDERS);
    for i in 0..ORDERS {
        let events = w.events(&format!("o-{i}"));
        let regulated = events.iter().filter(|e| e.as_str() == "regulated").count();
        assert_eq!(regulated, 1, "o-{i}: {events:?}");
    }

    d.terminate();
    let log = d.log_text();
    // The cause, logged at error level, names the server.
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("the store failed"))
        .collect();
    assert!(!failures.is_empty(), "no outage was logged:\n{log}");
    assert!(
        failures.iter().all(|l| l.contains(&cluster.dir)),
        "an outage's cause does not name the server: {failures:?}"
    );
    // Once per outage, not once per attempt: at most one line per crash.
    assert!(
        failures.len() <= 8,
        "logged {} times:\n{log}",
        failures.len()
    );
}
