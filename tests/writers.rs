//! One writer per PostgreSQL store, whatever happens to a session (issue
//! 22 §1, CONTRACT §14): every process that writes holds the writer's
//! lease and every commit is fenced by it, a daemon alone too. Before, a
//! daemon alone relied on a session's advisory lock, which a terminated
//! backend, `idle_session_timeout` or a server restart takes away; a
//! second daemon then wrote beside it (orders exported twice, kept counts
//! corrupted). Also: a daemon alone beside a pair, a node name used twice,
//! a node with other settings, a take that waited for the lease's row, the
//! time of decisions (the server's clock, not a node's), and the timeline's
//! order across writers.
//!
//! These run on PostgreSQL whatever `ORDERSYNC_TEST_BACKEND` says (on the
//! test server, a database each); without a server they are skipped,
//! except under `ORDERSYNC_E2E=1`, where that fails (`common::pg_server`).
//! Under `ORDERSYNC_TEST_BACKEND=postgres` they return at once: the default
//! pass ran them on PostgreSQL already.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestDb, Work, order, wait_for};
use ordersync::config::Config;
use ordersync::engine::Engine;
use ordersync::store::StoreError;

/// False (the test returns) without a server or under
/// `ORDERSYNC_TEST_BACKEND=postgres`.
fn runs_here() -> bool {
    if common::test_backend() == common::Backend::Postgres {
        eprintln!(
            "skipped under ORDERSYNC_TEST_BACKEND=postgres: the default pass runs these on PostgreSQL already"
        );
        return false;
    }
    common::pg_server().is_some()
}

/// A config for a process on the shared spool of `w` with its own state
/// folder `state-{name}`; `cluster`: `Some((node, lease))` for a node of a
/// pair; `extra` appended (systems).
fn config(name: &str, url: &str, cluster: Option<(&str, &str)>, extra: &str) -> String {
    let url = toml::Value::String(url.to_string());
    let cluster = cluster.map_or(String::new(), |(node, lease)| {
        format!("[cluster]\nnode = \"{node}\"\nlease = \"{lease}\"\n")
    });
    format!(
        "[paths]\ninbox = \"inbox\"\noutbox = \"outbox\"\narchive = \"archive\"\nerrors = \"errors\"\nstate = \"state-{name}\"\n\
         [inbox]\nsettle = \"0s\"\nrescan = \"1s\"\n[store]\nbackend = \"postgres\"\nurl = {url}\n{cluster}{extra}"
    )
}

const SYSTEMS: &str = "[[systems]]\nid = \"erp\"\n[[systems]]\nid = \"wms\"\nformat = \"ndjson\"\n";

fn write_config(w: &Work, name: &str, text: &str) -> PathBuf {
    let file = w.path(&format!("{name}.toml"));
    fs::write(&file, text).expect("config");
    file
}

/// `ordersync --config FILE run`, its stderr in `{name}.log`.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(w: &Work, name: &str, config: &PathBuf, env: &[(&str, &str)]) -> Proc {
        let log = w.path(&format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ordersync"));
        cmd.arg("--config")
            .arg(config)
            .arg("run")
            .current_dir(w.dir.path())
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("spawn ordersync run"),
            log,
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit code when it ends within `timeout`; `None` if it runs on.
    fn exits_within(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return Some(s.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn leads(&self) -> bool {
        self.log_text().contains("became the leader")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every order id in every export file of `system` (json or ndjson), with
/// repeats.
fn exported(w: &Work, system: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for f in common::files_in(&w.path(&format!("outbox/{system}"))) {
        // A file being written has a temporary dot-name until it is whole.
        if f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let text = fs::read_to_string(&f).expect("export file");
        let docs: Vec<serde_json::Value> = if f.extension().is_some_and(|e| e == "json") {
            serde_json::from_str::<serde_json::Value>(&text).expect("json")["orders"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        } else {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).expect("ndjson"))
                .collect()
        };
        ids.extend(
            docs.iter()
                .filter_map(|d| d["external_id"].as_str().map(str::to_string)),
        );
    }
    ids.sort();
    ids
}

fn admin(db: &TestDb) -> postgres::Client {
    postgres::Client::connect(db.url(), postgres::NoTls).expect("admin session")
}

/// Ends every session of the daemons on the database (as an operator's
/// `pg_terminate_backend`, or the server's `idle_session_timeout`).
fn terminate_sessions(db: &TestDb) -> u64 {
    admin(db)
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE application_name = 'ordersync' AND datname = current_database()",
            &[],
        )
        .expect("terminate")
        .len() as u64
}

fn engine(w: &Work, name: &str, text: &str) -> Engine {
    let file = write_config(w, name, text);
    Engine::open(Config::load(&file).expect("config")).expect("open")
}

/// Before: a daemon alone whose session was terminated ran on without its
/// advisory lock, and a second daemon on the same database (another state
/// folder, the same inbox) started and exported beside it (orders in two
/// files, `status` "pending" for ever). Now the second is refused, naming
/// the holder, and every order is exported once.
#[test]
fn a_terminated_session_lets_no_second_daemon_write() {
    if !runs_here() {
        return;
    }
    let db = TestDb::create();
    let w = Work::as_given("");
    let a_cfg = write_config(&w, "a", &config("a", db.url(), None, SYSTEMS));
    let b_cfg = write_config(&w, "b", &config("b", db.url(), None, SYSTEMS));
    let mut a = Proc::start(&w, "a", &a_cfg, &[]);
    wait_for("a leads", Duration::from_secs(20), || a.leads());
    for i in 0..20 {
        w.drop_json(&format!("o{i}.json"), &order(&format!("o{i}"), &[("S", 1)]));
    }
    wait_for("a exports", Duration::from_secs(30), || {
        exported(&w, "wms").len() == 20
    });
    assert!(terminate_sessions(&db) > 0, "a had no session to end");

    let mut b = Proc::start(&w, "b", &b_cfg, &[]);
    for i in 20..60 {
        w.drop_json(&format!("o{i}.json"), &order(&format!("o{i}"), &[("S", 1)]));
    }
    let code = b.exits_within(Duration::from_secs(20));
    let b_log = b.log_text();
    assert!(
        code.is_some_and(|c| c != 0),
        "a second daemon ran beside the first (exit {code:?}):\n{b_log}"
    );
    // Refused by the lease (naming the holder), by the node name, or, when
    // a's sessions came back first, by the advisory lock's fast refusal.
    assert!(
        b_log.contains("another ordersync process writes this store")
            || b_log.contains("is in use by another running ordersync")
            || b_log.contains("is in use by another ordersync process"),
        "{b_log}"
    );
    assert!(!b.leads(), "{b_log}");
    wait_for("a exports the rest", Duration::from_secs(40), || {
        exported(&w, "wms").len() >= 60 && w.inbox().is_empty()
    });
    assert_eq!(a.exits_within(Duration::ZERO), None, "{}", a.log_text());
    let wms = exported(&w, "wms");
    let mut once = wms.clone();
    once.dedup();
    assert_eq!(wms, once, "an order exported twice");
    assert_eq!(wms.len(), 60);
    let erp = exported(&w, "erp");
    assert_eq!(erp.len(), 60, "{erp:?}");
}

/// The lease, not the advisory lock, keeps a second writer out: with the
/// first writer's session gone, a second process that opens the store to
/// write is refused naming the holder, and one that opens it as a daemon
/// does (the lock is free now) commits nothing: its writes are fenced.
/// Before, its drain applied the file beside the first.
#[test]
fn without_its_session_lock_a_second_process_commits_nothing() {
    if !runs_here() {
        return;
    }
    let db = TestDb::create();
    let w = Work::as_given("");
    // A process alone holds the lease from its opening.
    let a = engine(&w, "a", &config("a", db.url(), None, SYSTEMS));
    w.drop_json("first.json", &order("first", &[("S", 1)]));
    assert_eq!(a.drain().expect("a drains").applied, 1);

    assert!(terminate_sessions(&db) > 0);
    let b_cfg = write_config(&w, "b", &config("b", db.url(), None, SYSTEMS));
    let refused = Engine::open(Config::load(&b_cfg).unwrap());
    let Err(e) = refused else {
        panic!("b opened the store to write while a holds the lease");
    };
    assert!(e.to_string().contains("holds the writer's lease"), "{e:#}");

    let b = Engine::open_for_daemon(Config::load(&b_cfg).unwrap()).expect("b opens");
    w.drop_json("second.json", &order("second", &[("S", 1)]));
    let s = b.drain();
    assert!(
        matches!(&s, Err(e) if e.store_error().is_some_and(|e| matches!(e, StoreError::Fenced(_)))),
        "b wrote without the lease: {s:?}"
    );
    assert_eq!(w.inbox(), ["second.json"]);
    // The pool's connections that the termination ended fail once each.
    let count = || {
        (0..8)
            .find_map(|_| a.store.order_count().ok())
            .expect("a's store answers")
    };
    assert_eq!(count(), 1);

    // a, which holds it, goes on (its sessions come back by themselves;
    // a step on a connection the termination ended fails, and is done
    // again).
    assert!(
        (0..8).any(|_| a.drain().is_ok_and(|s| s.failed.is_empty())),
        "a could not drain again"
    );
    assert!(w.inbox().is_empty());
    assert_eq!(count(), 2);
}

/// Before: a daemon without `[cluster]` (or `run --once`) started on a
/// pair's database and led beside the pair's leader. Now both are refused,
/// naming the leader.
#[test]
fn a_daemon_alone_is_refused_beside_a_pair() {
    if !runs_here() {
        return;
    }
    let db = TestDb::create();
    let w = Work::as_given("");
    let a_cfg = write_config(&w, "a", &config("a", db.url(), Some(("a", "5s")), SYSTEMS));
    let x_cfg = write_config(&w, "x", &config("x", db.url(), None, SYSTEMS));
    let a = Proc::start(&w, "a", &a_cfg, &[]);
    wait_for("a leads", Duration::from_secs(20), || a.leads());

    let mut x = Proc::start(&w, "x", &x_cfg, &[]);
    let code = x.exits_within(Duration::from_secs(20));
    let log = x.log_text();
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}:\n{log}");
    assert!(
        log.contains("node \"a\" holds the writer's lease")
            || log.contains("another ordersync process writes this store: node \"a\""),
        "{log}"
    );

    let once = Command::new(env!("CARGO_BIN_EXE_ordersync"))
        .arg("--config")
        .arg(&x_cfg)
        .args(["run", "--once"])
        .current_dir(w.dir.path())
        .output()
        .expect("run --once");
    let err = String::from_utf8_lossy(&once.stderr);
    assert_eq!(once.status.code(), Some(1), "{err}");
    assert!(err.contains("node \"a\" holds the writer's lease"), "{err}");
}

/// Before: two nodes named alike both ran, and a standby reported itself
/// as the leader's name; nodes with other settings took over silently.
/// Now a name a live node holds is refused, and so are other settings,
/// each difference named.
#[test]
fn a_node_name_in_use_and_other_settings_are_refused() {
    if !runs_here() {
        return;
    }
    let db = TestDb::create();
    let w = Work::as_given("");
    let a_cfg = write_config(&w, "a", &config("a", db.url(), Some(("a", "3s")), SYSTEMS));
    let a = Proc::start(&w, "a", &a_cfg, &[]);
    wait_for("a leads", Duration::from_secs(20), || a.leads());

    let twin_cfg = write_config(
        &w,
        "twin",
        &config("twin", db.url(), Some(("a", "3s")), SYSTEMS),
    );
    let mut twin = Proc::start(&w, "twin", &twin_cfg, &[]);
    let code = twin.exits_within(Duration::from_secs(20));
    let log = twin.log_text();
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}:\n{log}");
    assert!(
        log.contains("the node name \"a\" is in use by another running ordersync"),
        "{log}"
    );

    let other = SYSTEMS.replace("format = \"ndjson\"", "format = \"csv\"");
    let b_cfg = write_config(&w, "b", &config("b", db.url(), Some(("b", "3s")), &other));
    let mut b = Proc::start(&w, "b", &b_cfg, &[]);
    let code = b.exits_within(Duration::from_secs(20));
    let log = b.log_text();
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}:\n{log}");
    assert!(
        log.contains("differ from those of node \"a\"")
            && log.contains("systems.wms.format: \"csv\" here, \"ndjson\" there"),
        "{log}"
    );

    // The same settings: b waits as a standby.
    let same_cfg = write_config(&w, "c", &config("c", db.url(), Some(("c", "3s")), SYSTEMS));
    let mut c = Proc::start(&w, "c", &same_cfg, &[]);
    assert_eq!(
        c.exits_within(Duration::from_secs(4)),
        None,
        "{}",
        c.log_text()
    );
    assert!(c.log_text().contains("standby"), "{}", c.log_text());
}

/// Before: the take computed the new expiry before it waited for the
/// lease's row, so a take blocked longer than the lease granted a lease
/// already expired. Now the expiry is read after the lock.
#[test]
fn a_take_that_waited_for_the_row_gets_a_whole_lease() {
    if !runs_here() {
        return;
    }
    let db = TestDb::create();
    let w = Work::as_given("");
    let a = engine(&w, "a", &config("a", db.url(), Some(("a", "1s")), SYSTEMS));
    let pg = a.store.postgres().expect("postgres");
    assert!(pg.take_lease("a").unwrap().is_some());
    pg.step_down(true).unwrap();

    let mut blocker = admin(&db);
    let mut tx = blocker.transaction().unwrap();
    tx.execute("SELECT 1 FROM leader FOR UPDATE", &[]).unwrap();
    let taking = std::thread::spawn({
        let url = db.url().to_string();
        let dir = w.path("a.toml");
        move || {
            let _ = url;
            let b = Engine::open(Config::load(&dir).unwrap()).unwrap();
            let got = b.store.postgres().unwrap().take_lease("a").unwrap();
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let live: bool = c
                .query_one("SELECT expires > clock_timestamp() FROM leader", &[])
                .unwrap()
                .get(0);
            (got, live)
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    tx.commit().unwrap();
    let (got, live) = taking.join().unwrap();
    assert!(got.is_some(), "the take failed");
    assert!(
        live,
        "the lease granted after waiting for its row had already expired"
    );
}

/// Before: a node whose clock was an hour ahead re-sent, on taking over,
/// every order written minutes earlier (`resend_after = "10m"`), and named
/// its files an hour off. Now decisions and times come from the server's
/// clock. (libfaketime moves one node's clock.)
#[test]
fn a_node_with_its_clock_off_decides_by_the_servers() {
    if !runs_here() {
        return;
    }
    let lib = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    let Some(lib) = lib else {
        if cfg!(e2e) {
            panic!("libfaketime is needed to move a node's clock: apt-get install faketime");
        }
        eprintln!("skipped: no libfaketime (apt-get install faketime)");
        return;
    };
    let db = TestDb::create();
    let w = Work::as_given("");
    let systems = "[[systems]]\nid = \"erp\"\nresend_after = \"10m\"\n";
    let a_cfg = write_config(&w, "a", &config("a", db.url(), Some(("a", "2s")), systems));
    let b_cfg = write_config(&w, "b", &config("b", db.url(), Some(("b", "2s")), systems));
    let mut a = Proc::start(&w, "a", &a_cfg, &[]);
    wait_for("a leads", Duration::from_secs(20), || a.leads());
    for i in 0..10 {
        w.drop_json(&format!("o{i}.json"), &order(&format!("o{i}"), &[("S", 1)]));
    }
    wait_for("a exports", Duration::from_secs(30), || {
        exported(&w, "erp").len() == 10
    });
    let _ = a.child.kill();
    let _ = a.child.wait();

    let b = Proc::start(
        &w,
        "b",
        &b_cfg,
        &[
            ("LD_PRELOAD", lib),
            ("FAKETIME", "+1h"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    wait_for("b leads", Duration::from_secs(20), || b.leads());
    w.drop_json("late.json", &order("late", &[("S", 1)]));
    wait_for("b exports", Duration::from_secs(30), || {
        exported(&w, "erp").len() >= 11
    });
    // A few more loops of b's: a resend would have happened by now.
    std::thread::sleep(Duration::from_secs(3));
    let erp = exported(&w, "erp");
    assert_eq!(
        erp.len(),
        11,
        "orders re-sent by the node whose clock is off: {erp:?}"
    );
    assert!(
        b.log_text().contains("clock is off the database server's"),
        "{}",
        b.log_text()
    );
    // b's file is named by the server's time (the hour is today's).
    let now = chrono::Utc::now();
    let names: Vec<String> = common::files_in(&w.path("outbox/erp"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in &names {
        let stamp = &name["orders-".len().."orders-".len() + 16];
        let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
            .expect("a time in the name")
            .and_utc();
        assert!(
            (now - t).num_minutes().abs() < 10,
            "{name} is named {} minutes off the server's clock",
            (t - now).num_minutes()
        );
    }
}

/// Before: each writer kept its own block of timeline ids, so after a
/// failover and a failback an order's timeline listed a later event
/// before an earlier one. Now a writer takes a new block at each take.
#[test]
fn the_timeline_stays_in_order_across_writers() {
    if !runs_here() {
        return;
    }
    let db = TestDb::create();
    let w = Work::as_given("");
    let a = engine(&w, "a", &config("a", db.url(), Some(("a", "5s")), SYSTEMS));
    let b = engine(&w, "b", &config("b", db.url(), Some(("b", "5s")), SYSTEMS));
    let (pa, pb) = (a.store.postgres().unwrap(), b.store.postgres().unwrap());

    assert!(pa.take_lease("a").unwrap().is_some());
    w.drop_json("o.json", &order("o", &[("S", 1)]));
    a.drain().unwrap();
    pa.step_down(true).unwrap();

    assert!(pb.take_lease("b").unwrap().is_some());
    w.drop_file(
        "ack.csv",
        "order_id,system_id,regulate_inventory,note\no,erp,false,by b\n",
    );
    b.drain().unwrap();
    pb.step_down(true).unwrap();

    assert!(pa.take_lease("a").unwrap().is_some());
    w.drop_file(
        "ack2.csv",
        "order_id,system_id,regulate_inventory,note\no,wms,false,by a again\n",
    );
    a.drain().unwrap();
    pa.step_down(true).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_ordersync"))
        .arg("--config")
        .arg(w.path("a.toml"))
        .args(["orders", "show", "o", "--json"])
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let details: Vec<String> = v["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or("").to_string())
        .collect();
    let b_at = details.iter().position(|d| d.contains("by b"));
    let a_at = details.iter().position(|d| d.contains("by a again"));
    assert!(
        matches!((b_at, a_at), (Some(x), Some(y)) if x < y),
        "the timeline is out of order: {details:#?}"
    );
}

/// The writer's advisory lock, as `store/postgres/live/session.rs` takes it.
const WRITER_LOCK: i64 = 0x6f72_6465_7273_7977;

/// A process killed a moment ago still holds the writer's advisory lock
/// until the server notices that its session ended. The next process (the
/// restarted service, `run --once`) waits for the lock a moment rather than
/// refuse, since the lease says nobody live holds the store. Before, it
/// was refused with "in use" (seen in CI: `tests/big_files.rs` opening the
/// store right after killing `run --once`). A live holder is still refused
/// at once (the tests above).
#[test]
fn a_lock_left_by_an_ended_process_is_waited_for() {
    if !runs_here() {
        return;
    }
    let db = TestDb::create();
    let w = Work::as_given("");
    let text = config("a", db.url(), None, SYSTEMS);
    // The schema, and a lease its holder gave back when it ended.
    drop(engine(&w, "a", &text));
    // A session holding the lock as a killed process's does, until the
    // server notices: here for one second.
    let mut dying = admin(&db);
    dying
        .query_one("SELECT pg_advisory_lock($1)", &[&WRITER_LOCK])
        .expect("lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        drop(dying);
    });
    let started = Instant::now();
    let file = write_config(&w, "b", &config("b", db.url(), None, SYSTEMS));
    let opened = Engine::open(Config::load(&file).expect("config"));
    release.join().unwrap();
    let e = match opened {
        Ok(e) => e,
        Err(e) => panic!("refused although no live process held the store: {e}"),
    };
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "opened while the lock was still held"
    );
    w.drop_json("o.json", &order("o", &[("S", 1)]));
    assert_eq!(e.drain().expect("drain").applied, 1);
}

/// The first line of the answer to a GET of the export API without a
/// token, or `None` when nothing listens on `port`.
fn export_status(port: u16) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(
        b"GET /v10/orders/export?system_id=erp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    Some(line.trim_end().to_string())
}

/// Before: a daemon alone on PostgreSQL served its HTTP API as soon as it
/// started, while it still waited for the writer's lease, and a client
/// asking then was answered 503 "a standby and no node leads yet" (CI saw
/// it once under load: `tests/http.rs::a_slow_client_does_not_stall_files`).
/// Now it starts the API once it leads: until then nothing listens, and
/// its first answer is a real one (here 401: no token).
#[test]
fn a_daemon_alone_serves_http_only_once_it_leads() {
    if !runs_here() {
        return;
    }
    let db = TestDb::create();
    let w = Work::as_given("");
    let port = common::free_port();
    let http = format!("[http]\nlisten = \"127.0.0.1:{port}\"\n");
    let text = config("a", db.url(), None, &format!("{http}{SYSTEMS}"));
    // Another process holds the lease for two more seconds: the daemon
    // waits for it.
    let other = engine(&w, "other", &config("other", db.url(), None, SYSTEMS));
    let pg = other.store.postgres().expect("postgres");
    assert!(pg.take_lease("other").unwrap().is_some());
    drop(other); // its session's advisory lock goes; the lease stays
    admin(&db)
        .execute(
            "UPDATE leader SET expires = clock_timestamp() + interval '2 seconds'",
            &[],
        )
        .unwrap();
    let file = write_config(&w, "a", &text);
    let a = Proc::start(&w, "a", &file, &[]);
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        if let Some(status) = export_status(port) {
            let leads = a.leads();
            seen.push((start.elapsed(), status.clone(), leads));
            if status.contains(" 401") {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no answer from the API within 30 s: {seen:?}\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        seen.iter().all(|(_, s, _)| !s.contains(" 503")),
        "answered 503 while it waited for the lease: {seen:?}\n{}",
        a.log_text()
    );
    assert!(a.leads(), "{}", a.log_text());
}
