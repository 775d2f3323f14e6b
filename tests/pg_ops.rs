//! Operating the store on PostgreSQL (issue 22 §4): how the server is
//! named (every host with its port, `target_session_attrs`, never a
//! password), what is an outage and what is not (a permission refused
//! ends `run`), how an outage is logged and probed, and a CLI read after a
//! restart. The real binary, on the test server or a cluster of the test's
//! own (`OwnCluster`) when the server is stopped or restarted.

mod common;

use std::time::{Duration, Instant};

use common::{OwnCluster, Work, order, pg_server, wait_for};

/// A session on `conninfo`'s `postgres` database, as its superuser.
fn admin(conninfo: &str) -> postgres::Client {
    postgres::Client::connect(&format!("{conninfo} dbname=postgres"), postgres::NoTls)
        .expect("connect as the test server's superuser")
}

/// Regression (issue 22 §4): `check` showed
/// `postgresql://…@127.0.0.1,127.0.0.1:55451/…`, the first host's port
/// dropped and `target_session_attrs` hidden, and refused
/// `target_session_attrs=primary`. (It does not connect: no server needed.)
#[test]
fn check_shows_every_host_with_its_port_and_the_session_wanted() {
    let w = Work::as_given(
        "[store]\nbackend = \"postgres\"\nurl = \"postgresql://os:s3cret@127.0.0.1,127.0.0.1:55451/orders?target_session_attrs=primary\"\n",
    );
    let out = w.ok(&["check"]);
    assert!(
        out.contains(
            "postgresql://os@127.0.0.1:5432,127.0.0.1:55451/orders?target_session_attrs=read-write"
        ),
        "{out}"
    );
    assert!(!out.contains("s3cret"), "{out}");
}

/// Regression (issue 22 §4): a password with an unencoded `@` was partly
/// printed by `check` (postgres took its end for the host). Such a URL is
/// a config error naming the key and quoting nothing of it.
#[test]
fn a_password_with_an_unencoded_at_is_refused_unquoted() {
    let w = Work::as_given(
        "[store]\nbackend = \"postgres\"\nurl = \"postgresql://os:pa@ss-w0rd@db.example/orders\"\n",
    );
    let out = w.cmd(&["check"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("store.url"), "{text}");
    assert!(text.contains("%40"), "{text}");
    assert!(!text.contains("ss-w0rd"), "{text}");
}

/// Regression (issue 22 §4): a permission refused (SQLSTATE 42501) was
/// taken for an outage: `run` waited for the server for ever, logging
/// "cannot be reached". It now says what is wrong and exits 1, at start
/// and while running.
#[test]
fn a_permission_refused_ends_run_instead_of_waiting() {
    let Some(server) = pg_server() else { return };
    let role = format!("r_{}", uuid::Uuid::new_v4().simple());
    let db = format!("d_{}", uuid::Uuid::new_v4().simple());
    let mut su = admin(&server);
    su.batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .expect("role");
    su.batch_execute(&format!("CREATE DATABASE {db}"))
        .expect("database");
    let owner_url = format!("{server} dbname={db}");
    let role_url = format!("{server} dbname={db} user={role}");
    let config = |url: &str| {
        format!(
            "[inbox]\nsettle = \"0s\"\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n[[systems]]\nid = \"erp\"\n"
        )
    };
    // The store made by its owner; the role may use nothing of it.
    let w = Work::as_given(&config(&owner_url));
    w.ok(&["run", "--once"]);
    w.write_config(&config(&role_url));
    let mut d = w.spawn(&[]);
    let status = wait_exit(&mut d.child, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("run still waits on a refusal:\n{}", d.log_text()));
    let log = d.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("42501"), "{log}");
    assert!(!log.contains("cannot be reached"), "{log}");

    // Running with every right, then one taken away: the next file's
    // commit is refused, and run stops, the file left in the inbox.
    let mut c = postgres::Client::connect(&owner_url, postgres::NoTls).expect("owner");
    c.batch_execute(&format!(
        "GRANT ALL ON SCHEMA public TO {role};
         GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};
         GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role};"
    ))
    .expect("grant");
    let mut d = w.spawn(&[]);
    wait_for_socket(&w, &d);
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    wait_for("o-1 exported", Duration::from_secs(30), || {
        w.exported_ids("erp") == ["o-1"]
    });
    c.batch_execute(&format!("REVOKE INSERT ON applied_files FROM {role}"))
        .expect("revoke");
    w.drop_json("o2.json", &order("o-2", &[("A", 1)]));
    let status = wait_exit(&mut d.child, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("run still retries a refusal:\n{}", d.log_text()));
    let log = d.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("permission denied"), "{log}");
    assert!(
        w.inbox().contains(&"o2.json".to_string()),
        "{:?}",
        w.inbox()
    );
    drop(c);
    let _ = su.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"));
    let _ = su.batch_execute(&format!("DROP ROLE {role}"));
}

/// Regression (issue 22 §4): during an outage r2d2 logged `error
/// connecting to server` once per pool slot per second, naming no server
/// (168 lines in 50 s), and the store was probed with a backoff doubling up
/// to a minute (after a failover, the pause was what was left of it). Now
/// the outage is one error line naming the server (never the password),
/// the pool's failures are debug lines, and the store is probed every 2 s
/// at most: no retry is announced further away (`retry_in`).
#[test]
fn an_outage_is_one_line_and_the_store_is_probed_often() {
    let Some(cluster) = OwnCluster::start() else {
        return;
    };
    let w = Work::as_given(&format!(
        "[inbox]\nsettle = \"0s\"\nrescan = \"1s\"\n[store]\nbackend = \"postgres\"\nurl = \"{} dbname=postgres password=s3cret\"\npool_size = 8\n[[systems]]\nid = \"erp\"\n",
        cluster.conninfo
    ));
    let d = w.spawn(&[("RUST_LOG", "info,ordersync=debug")]);
    wait_for_socket(&w, &d);
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    wait_for("o-1 exported", Duration::from_secs(30), || {
        w.exported_ids("erp") == ["o-1"]
    });
    // Down for 13 s (long enough for a doubling backoff to reach 4 s):
    // first with an empty inbox (the export step finds
    // it), then with a file waiting.
    cluster.pg_ctl(&["-m", "fast", "stop"]);
    std::thread::sleep(Duration::from_secs(3));
    w.drop_json("o2.json", &order("o-2", &[("A", 1)]));
    std::thread::sleep(Duration::from_secs(10));
    cluster.pg_ctl(&["start"]);
    wait_for("o-2 exported", Duration::from_secs(60), || {
        w.exported_ids("erp").len() == 2
    });
    let log = d.log_text();
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect();
    assert_eq!(loud.len(), 1, "one line for the outage:\n{log}");
    assert!(loud[0].contains(&cluster.dir), "names the server: {loud:?}");
    assert!(!log.contains("s3cret"), "{log}");
    assert!(!log.contains(" r2d2: "), "r2d2's own lines:\n{log}");
    for l in log.lines() {
        let Some(at) = l.find("retry_in=") else {
            continue;
        };
        let v = l[at + "retry_in=".len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default();
        let secs = match v.strip_suffix("ms") {
            Some(ms) => ms.parse::<f64>().unwrap_or(f64::MAX) / 1000.0,
            None => v.trim_end_matches('s').parse::<f64>().unwrap_or(f64::MAX),
        };
        assert!(secs <= 2.0, "a probe {v} away: {l}\n{log}");
    }
    assert!(
        log.contains("the store works again") || log.contains("answers again"),
        "{log}"
    );
}

/// Regression (issue 22 §5): after a PostgreSQL restart, a CLI request
/// answered by the daemon failed once: its pooled connections were dead,
/// which a connection learns only when used. A read now goes again on
/// another connection.
#[test]
fn a_read_after_a_restart_goes_again_on_a_fresh_connection() {
    let Some(cluster) = OwnCluster::start() else {
        return;
    };
    let w = Work::as_given(&format!(
        "[inbox]\nsettle = \"0s\"\n[store]\nbackend = \"postgres\"\nurl = \"{} dbname=postgres\"\n[[systems]]\nid = \"erp\"\n",
        cluster.conninfo
    ));
    let d = w.spawn(&[]);
    wait_for_socket(&w, &d);
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    wait_for("o-1 exported", Duration::from_secs(30), || {
        w.exported_ids("erp") == ["o-1"]
    });
    for round in 0..3 {
        // Every pooled connection used, then the server restarted.
        for _ in 0..4 {
            w.ok(&["orders", "show", "o-1"]);
            w.ok(&["inventory"]);
        }
        cluster.pg_ctl(&["-m", "fast", "restart"]);
        for args in [&["orders", "show", "o-1"][..], &["inventory"], &["status"]] {
            let out = w.cmd(args);
            assert!(
                out.status.success(),
                "round {round}: ordersync {args:?} after the restart: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                d.log_text()
            );
        }
    }
}

/// A streaming replica of an [`OwnCluster`] (`pg_basebackup -R`), on the
/// same socket folder, port 5433; stopped when dropped (before its
/// primary, which removes the folder).
struct Replica {
    data: String,
}

/// Runs a PostgreSQL program as `postgres` when we are root.
fn as_postgres(program: &str, args: &[&str]) {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("postgresql")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(program))
        .max()
        .expect(program);
    // SAFETY: geteuid has no preconditions.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    let out = cmd.args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Replica {
    fn start(primary: &OwnCluster) -> Replica {
        let data = format!("{}/replica", primary.dir);
        as_postgres(
            "pg_basebackup",
            &[
                "-D",
                &data,
                "-R",
                "-X",
                "stream",
                "-h",
                &primary.dir,
                "-U",
                "postgres",
            ],
        );
        let r = Replica { data };
        r.pg_ctl(&["start"]);
        r
    }

    fn pg_ctl(&self, args: &[&str]) {
        let dir = self.data.trim_end_matches("/replica");
        let log = format!("{dir}/replica.log");
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{dir}' -c port=5433 -c max_connections=200"
        );
        let mut all = vec!["-D", &self.data, "-l", &log, "-w", "-o", &opts];
        all.extend_from_slice(args);
        as_postgres("pg_ctl", &all);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.pg_ctl(&["-m", "immediate", "stop"]));
    }
}

/// Issue 22 §4: with asynchronous replication a lagging replica, promoted,
/// lost 50 orders whose files were archived and exported. `check` and
/// `status` now warn when the server streams to standbys and commits
/// asynchronously, and say nothing once replication is synchronous.
#[test]
fn check_and_status_warn_of_asynchronous_replication() {
    let Some(cluster) = OwnCluster::start() else {
        return;
    };
    let _replica = Replica::start(&cluster);
    let mut su = admin(&cluster.conninfo);
    wait_for("the replica to stream", Duration::from_secs(30), || {
        su.query_one("SELECT count(*) FROM pg_stat_replication", &[])
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
            == 1
    });
    let w = Work::as_given(&format!(
        "[inbox]\nsettle = \"0s\"\n[store]\nbackend = \"postgres\"\nurl = \"{} dbname=postgres\"\n[[systems]]\nid = \"erp\"\n",
        cluster.conninfo
    ));
    let warned =
        |text: &str| text.contains("commits asynchronously (synchronous_standby_names is empty)");
    let check = w.ok(&["check"]);
    assert!(warned(&check), "{check}");
    w.ok(&["run", "--once"]);
    let status = w.ok(&["status"]);
    assert!(warned(&status), "{status}");
    let v = w.json(&["status"]);
    assert!(warned(v["warnings"][0].as_str().unwrap_or_default()), "{v}");

    // Synchronous: no warning.
    su.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .expect("synchronous replication");
    su.batch_execute("SELECT pg_reload_conf()").expect("reload");
    wait_for(
        "the standby to be synchronous",
        Duration::from_secs(30),
        || {
            su.query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                &[],
            )
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
                == 1
        },
    );
    let check = w.ok(&["check"]);
    assert!(
        check.contains("store replication: no standby, or synchronous"),
        "{check}"
    );
    let v = w.json(&["status"]);
    assert!(v.get("warnings").is_none(), "{v}");
}

/// Regression (issue 22 §4): with synchronous replication and the standby
/// gone, a commit hung 22 s with no log line and `/healthz` said 200. The
/// wait is not cut (the commit would then be on this server only, the
/// loss synchronous replication prevents), but it is logged, naming the
/// wait and the server, and `/healthz` answers 503 with the reason while
/// it lasts; the standby back, the file goes through, once.
#[test]
fn a_commit_waiting_for_a_gone_synchronous_standby_is_told() {
    let Some(cluster) = OwnCluster::start() else {
        return;
    };
    let replica = Replica::start(&cluster);
    let mut su = admin(&cluster.conninfo);
    su.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .expect("synchronous replication");
    su.batch_execute("SELECT pg_reload_conf()").expect("reload");
    wait_for(
        "the standby to be synchronous",
        Duration::from_secs(30),
        || {
            su.query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                &[],
            )
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
                == 1
        },
    );
    let port = common::free_port();
    let w = Work::as_given(&format!(
        "[inbox]\nsettle = \"0s\"\n[store]\nbackend = \"postgres\"\nurl = \"{} dbname=postgres\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[[systems]]\nid = \"erp\"\n",
        cluster.conninfo
    ));
    let d = w.spawn(&[]);
    wait_for_socket(&w, &d);
    let healthz = || -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.get(9..12)?.parse().ok()?;
        Some((status, text))
    };
    wait_for("/healthz 200", Duration::from_secs(30), || {
        healthz().is_some_and(|(s, _)| s == 200)
    });
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    wait_for("o-1 exported", Duration::from_secs(30), || {
        w.exported_ids("erp") == ["o-1"]
    });

    replica.pg_ctl(&["-m", "immediate", "stop"]);
    w.drop_json("o2.json", &order("o-2", &[("A", 1)]));
    let start = Instant::now();
    let last = loop {
        let last = healthz();
        if last.as_ref().is_some_and(|(s, _)| *s == 503) {
            break last;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "/healthz never said 503: {last:?}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (_, body) = last.unwrap_or_default();
    assert!(body.contains("synchronous standby"), "{body}");
    let log = d.log_text();
    let told: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") && l.contains("synchronous standby"))
        .collect();
    assert_eq!(told.len(), 1, "{log}");
    assert!(told[0].contains(&cluster.dir), "{told:?}");
    // Not cut: the file waits, nothing of it exported.
    assert!(
        w.inbox().contains(&"o2.json".to_string()),
        "{:?}",
        w.inbox()
    );
    assert_eq!(w.exported_ids("erp"), ["o-1"]);

    replica.pg_ctl(&["start"]);
    wait_for("o-2 exported", Duration::from_secs(60), || {
        w.exported_ids("erp").len() == 2
    });
    wait_for("/healthz 200 again", Duration::from_secs(30), || {
        healthz().is_some_and(|(s, _)| s == 200)
    });
    assert!(
        d.log_text()
            .contains("the commit waiting for a synchronous standby went through"),
        "{}",
        d.log_text()
    );
    assert_eq!(w.exported_ids("erp"), ["o-1", "o-2"]);
}

/// Issue 22 §4: the database's own failover. The daemon's URL names the
/// primary and its synchronous replica with `target_session_attrs=primary`;
/// the primary is killed and the replica promoted: the daemon logs the
/// outage once, finds the promoted server by itself, and the file that
/// waited goes through on it, nothing lost or doubled (the replica was
/// synchronous, so it had every commit the daemon had acted on).
#[test]
fn a_promoted_replica_is_found_and_nothing_is_lost() {
    let Some(cluster) = OwnCluster::start() else {
        return;
    };
    let replica = Replica::start(&cluster);
    let mut su = admin(&cluster.conninfo);
    su.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .expect("synchronous replication");
    su.batch_execute("SELECT pg_reload_conf()").expect("reload");
    wait_for(
        "the standby to be synchronous",
        Duration::from_secs(30),
        || {
            su.query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                &[],
            )
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
                == 1
        },
    );
    drop(su);
    let url = format!(
        "host={dir},{dir} port=5432,5433 user=postgres dbname=postgres target_session_attrs=primary",
        dir = cluster.dir
    );
    let w = Work::as_given(&format!(
        "[inbox]\nsettle = \"0s\"\nrescan = \"1s\"\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n[[systems]]\nid = \"erp\"\n"
    ));
    let check = w.ok(&["check"]);
    assert!(
        check.contains(&format!(
            "postgresql://postgres@/postgres?host={dir}&port=5432&host={dir}&port=5433&target_session_attrs=read-write",
            dir = cluster.dir
        )),
        "{check}"
    );
    let d = w.spawn(&[]);
    wait_for_socket(&w, &d);
    for i in 0..5 {
        w.drop_json(
            &format!("o{i}.json"),
            &order(&format!("o-{i}"), &[("A", 1)]),
        );
    }
    wait_for("5 orders exported", Duration::from_secs(30), || {
        w.exported_ids("erp").len() == 5
    });

    cluster.pg_ctl(&["-m", "immediate", "stop"]);
    w.drop_json("o5.json", &order("o-5", &[("A", 1)]));
    std::thread::sleep(Duration::from_secs(2));
    replica.pg_ctl(&["promote"]);
    wait_for("o-5 exported", Duration::from_secs(60), || {
        w.exported_ids("erp").len() == 6
    });
    let ids = w.exported_ids("erp");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "{ids:?}");
    assert_eq!(ids.len(), 6, "an order exported twice: {ids:?}");
    assert_eq!(w.json(&["status"])["orders"], 6);
    assert_eq!(w.stock("A"), (0, 6, -6));
    let log = d.log_text();
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect();
    assert!(
        !loud.is_empty() && loud.len() <= 2,
        "the outage, once (and perhaps the wait on the gone standby):\n{log}"
    );
}

/// Waits for the daemon's control socket, showing its log if it never comes.
fn wait_for_socket(w: &Work, d: &common::Daemon) {
    let start = Instant::now();
    while !w.path("state/ordersync.sock").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon never listened:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `timeout` for `child` to exit.
fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
