//! Partners who host their own SFTP server (issue 23), end to end: the real
//! daemon pulls orders from a partner's folder on OpenSSH's sshd
//! (127.0.0.1) and pushes a system's export files back to it; on the store
//! the tests run on (sled, or PostgreSQL under
//! `ORDERSYNC_TEST_BACKEND=postgres`).
//!
//! - everything goes across once: the order applied, the remote file moved
//!   to the partner's archive, the export file and its marker delivered
//!   under their final names with no temporary left, the local copies in
//!   `outbox/<system>/sent/`; hostile names, hidden files and symlinks on
//!   the server are left alone; a name the partner uses again is pulled
//!   again;
//! - a changed host key: refused, loudly, nothing transferred, visible in
//!   `status`;
//! - SIGKILL at random moments while files go both ways: every order
//!   applied once, every order delivered in exactly one file, nothing left
//!   behind on either side.

mod common;

use std::collections::HashMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

use common::sshd::{Partner, have_sshd, known_hosts_line, run};
use common::{Tmpfs, Work, names, order, wait_for};
use serde_json::Value;

impl Partner {
    /// Writes a file into `out` as a partner would: aside, then renamed.
    fn put(&self, name: &str, v: &Value) {
        let tmp = self.path(&format!("out/.{name}.part"));
        fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap()).unwrap();
        fs::rename(&tmp, self.path(&format!("out/{name}"))).unwrap();
    }

    /// The config of a daemon that pulls `out` and pushes erp's files.
    fn config(&self) -> String {
        format!(
            r#"
[inbox]
settle = "0s"
[[systems]]
id = "erp"
ready_marker = true
[[remotes]]
name = "acme"
host = "127.0.0.1"
port = {port}
user = "{user}"
identity = "{key}"
known_hosts = "{known}"
poll = "1s"
io_timeout = "5s"
[[remotes.pull]]
from = "{root}/out"
into = "inbox"
pattern = "*.json"
settle = "1s"
after = "move"
archive = "{root}/done"
[[remotes.push]]
system = "erp"
to = "{root}/in"
"#,
            port = self.sshd.port,
            user = self.sshd.user,
            key = self.sshd.key.display(),
            known = self.known_hosts.display(),
            root = self.root.display(),
        )
    }

    /// The export files delivered into `in` (not markers), by name.
    fn delivered(&self) -> Vec<String> {
        names(&self.path("in"))
            .into_iter()
            .filter(|n| !n.ends_with(".done") && !n.starts_with('.'))
            .collect()
    }

    /// How many delivered files hold each external id.
    fn delivered_ids(&self) -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for name in self.delivered() {
            if name.starts_with('.') {
                continue;
            }
            let v: Value =
                serde_json::from_slice(&fs::read(self.path(&format!("in/{name}"))).unwrap())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            for o in v["orders"].as_array().unwrap() {
                *seen
                    .entry(o["external_id"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
        }
        seen
    }
}

#[test]
fn orders_come_from_a_partners_server_and_exports_go_back_once() {
    if !have_sshd() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let p = Partner::start(scratch.path());
    let w = Work::new(&p.config());
    p.put("o1.json", &order("R-1", &[("SKU-1", 2)]));
    // Left alone: a hidden file, a name with a control character, a
    // symlink, a name the pattern does not match.
    fs::write(p.path("out/.hidden.json"), "{}").unwrap();
    fs::write(p.path("out/bad\nname.json"), "{}").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p.path("out/link.json")).unwrap();
    fs::write(p.path("out/readme.txt"), "hello").unwrap();

    let mut d = w.start(&[]);
    d.wait_for(
        "the export and its marker at the partner",
        Duration::from_secs(60),
        || {
            let n = names(&p.path("in"));
            n.iter().any(|f| f.ends_with(".json")) && n.iter().any(|f| f.ends_with(".json.done"))
        },
    );
    assert_eq!(w.json(&["status"])["orders"], 1);
    assert_eq!(names(&p.path("done")), vec!["o1.json"]);
    let mut left = names(&p.path("out"));
    left.sort();
    assert_eq!(
        left,
        vec![".hidden.json", "bad\nname.json", "link.json", "readme.txt"]
    );
    // Final names only at the partner, and the same bytes as ours.
    let delivered = names(&p.path("in"));
    assert!(
        delivered.iter().all(|n| !n.starts_with('.')),
        "a temporary left at the partner: {delivered:?}"
    );
    let file = p.delivered().pop().unwrap();
    assert_eq!(
        fs::read(p.path(&format!("in/{file}"))).unwrap(),
        fs::read(w.path(&format!("outbox/erp/sent/{file}"))).unwrap()
    );
    assert_eq!(p.delivered_ids().get("R-1"), Some(&1));
    let outbox: Vec<String> = names(&w.path("outbox/erp"))
        .into_iter()
        .filter(|n| n != "sent")
        .collect();
    assert!(outbox.is_empty(), "left in the outbox: {outbox:?}");

    let status = w.json(&["status"]);
    let acme = &status["remotes"]["acme"];
    assert_eq!(acme["state"], "ok", "{status}");
    assert_eq!(acme["pulled"], 1, "{status}");
    assert_eq!(acme["pushed"], 2, "{status}");

    // The partner uses the name again for a new file: pulled again.
    p.put("o1.json", &order("R-2", &[("SKU-1", 1)]));
    d.wait_for("the second order", Duration::from_secs(60), || {
        w.json(&["status"])["orders"] == 2
    });
    wait_for(
        "both in the partner's archive",
        Duration::from_secs(30),
        || names(&p.path("done")).len() == 2,
    );
    wait_for("its export at the partner", Duration::from_secs(30), || {
        p.delivered_ids().get("R-2") == Some(&1)
    });
    // Everything delivered and moved aside (markers too) before the stop,
    // so that the ledger has every transfer finished.
    wait_for("the outbox emptied", Duration::from_secs(30), || {
        names(&w.path("outbox/erp")).iter().all(|n| n == "sent")
            && names(&w.path("outbox/erp/sent")).len() == 4
    });
    assert!(d.terminate().success(), "{}", d.log_text());
    let log = d.log_text();
    assert!(
        log.contains("left alone on the remote") && log.contains("control character"),
        "{log}"
    );

    // The ledger is in the dump, and a restore brings it back exactly.
    w.ok(&["dump", "--output", "d.ndjson"]);
    let transfers = |w: &Work, f: &str| -> Vec<Value> {
        fs::read_to_string(w.path(f))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["type"] == "transfer")
            .collect()
    };
    let ledger = transfers(&w, "d.ndjson");
    let pulls = ledger.iter().filter(|t| t["direction"] == "pull").count();
    let pushes = ledger.iter().filter(|t| t["direction"] == "push").count();
    assert_eq!((pulls, pushes), (1, 4), "{ledger:?}");
    assert!(
        ledger
            .iter()
            .all(|t| ["done", "pushed"].contains(&t["transfer"]["stage"].as_str().unwrap())),
        "{ledger:?}"
    );
    let again = Work::new(&p.config());
    fs::copy(w.path("d.ndjson"), again.path("d.ndjson")).unwrap();
    again.ok(&["restore", "d.ndjson"]);
    again.ok(&["dump", "--output", "e.ndjson"]);
    assert_eq!(transfers(&again, "e.ndjson"), ledger);
}

#[test]
fn a_changed_host_key_is_refused_loudly_and_nothing_moves() {
    if !have_sshd() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let p = Partner::start(scratch.path());
    // known_hosts lists another key for the same host and port.
    let other = scratch.path().join("other_key");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other));
    fs::write(
        &p.known_hosts,
        known_hosts_line(p.sshd.port, &other.with_extension("pub")),
    )
    .unwrap();
    let w = Work::new(&p.config());
    p.put("o1.json", &order("R-1", &[("SKU-1", 2)]));
    let mut d = w.start(&[]);
    wait_for("the refusal in status", Duration::from_secs(30), || {
        let s = w.json(&["status"]);
        s["remotes"]["acme"]["state"] == "failing"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(names(&p.path("out")), vec!["o1.json"]);
    assert_eq!(w.json(&["status"])["orders"], 0);
    let status = w.json(&["status"]);
    let error = status["remotes"]["acme"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("127.0.0.1"), "{status}");
    assert!(d.terminate().success());
    let log = d.log_text();
    assert!(
        log.contains("REFUSED") && log.contains("acme"),
        "no loud refusal in the log:\n{log}"
    );
}

/// A small deterministic generator (no crate for ten lines).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn sigkill_at_any_moment_loses_nothing_and_delivers_nothing_twice() {
    if !have_sshd() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let p = Partner::start(scratch.path());
    let w = Work::new(&p.config().replace("settle = \"1s\"", "settle = \"0s\""));
    let total = 40;
    let kills: u64 = std::env::var("ORDERSYNC_REMOTE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let mut rng = Lcg(0x5eed_0023);
    let mut next = 0;
    // Orders of about 1 MB, so that kills land inside transfers too.
    let big = |i: usize| {
        let mut o = order(&format!("R-{i}"), &[("SKU-1", 1)]);
        o["padding"] = "x".repeat(1 << 20).into();
        o
    };
    for _ in 0..kills {
        // New orders at the partner while we come and go.
        for _ in 0..rng.below(3) {
            if next < total {
                p.put(&format!("o{next}.json"), &big(next));
                next += 1;
            }
        }
        let mut d = w.spawn(&[]);
        std::thread::sleep(Duration::from_millis(200 + rng.below(1200)));
        let _ = d.child.kill();
        let _ = d.child.wait();
    }
    while next < total {
        p.put(&format!("o{next}.json"), &big(next));
        next += 1;
    }
    let mut d = w.start(&[]);
    d.wait_for("every order delivered", Duration::from_secs(120), || {
        p.delivered_ids().len() == total
    });
    wait_for("the partner's out emptied", Duration::from_secs(30), || {
        names(&p.path("out")).is_empty()
    });
    wait_for("every marker delivered", Duration::from_secs(30), || {
        let n = names(&p.path("in"));
        p.delivered()
            .iter()
            .all(|f| n.contains(&format!("{f}.done")))
    });
    assert!(d.terminate().success(), "{}", d.log_text());

    let status = w.json(&["status"]);
    assert_eq!(status["orders"], total, "{status}");
    let twice: Vec<_> = p
        .delivered_ids()
        .into_iter()
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    for id in 0..total {
        let events = w.events(&format!("R-{id}"));
        let received = events.iter().filter(|e| e.as_str() == "received").count();
        assert_eq!(received, 1, "R-{id}: {events:?}");
    }
    let leftovers: Vec<String> = names(&p.path("in"))
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .chain(names(&w.path("inbox")))
        .chain(names(&w.path("outbox/erp")))
        .filter(|n| n != "sent")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert_eq!(names(&p.path("done")).len(), total);
}

/// `ordersync --config FILE status --json` in `w`'s folder (`None` when it
/// does not answer).
fn node_status(w: &Work, config: &str) -> Option<Value> {
    let out = w.cmd(&["--config", config, "status", "--json"]);
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn a_takeover_in_a_pair_neither_loses_nor_doubles_a_transfer() {
    if !have_sshd() || common::test_backend() != common::Backend::Postgres {
        // A pair needs PostgreSQL: the PostgreSQL pass runs it.
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let p = Partner::start(scratch.path());
    let base = p.config().replace("settle = \"1s\"", "settle = \"0s\"");
    let w = Work::new(&base);
    // Two nodes on the one store and spool, each with its state folder.
    let shared = fs::read_to_string(w.path("config.toml")).unwrap();
    for node in ["a", "b"] {
        let mut t: toml::Table = shared.parse().unwrap();
        let mut paths = toml::Table::new();
        paths.insert("state".into(), format!("state-{node}").into());
        t.insert("paths".into(), paths.into());
        let mut cluster = toml::Table::new();
        cluster.insert("node".into(), node.into());
        cluster.insert("lease".into(), "3s".into());
        t.insert("cluster".into(), cluster.into());
        fs::write(
            w.path(&format!("{node}.toml")),
            toml::to_string(&t).unwrap(),
        )
        .unwrap();
    }
    let spawn = |node: &str| {
        Command::new(env!("CARGO_BIN_EXE_ordersync"))
            .args(["--config", &format!("{node}.toml"), "run"])
            .current_dir(w.dir.path())
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdout(std::process::Stdio::null())
            .stderr(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(w.path(&format!("{node}.log")))
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    let total = 30;
    let big = |i: usize| {
        let mut o = order(&format!("R-{i}"), &[("SKU-1", 1)]);
        o["padding"] = "x".repeat(1 << 20).into();
        o
    };
    let mut nodes = [Some(spawn("a")), Some(spawn("b"))];
    let node_names = ["a", "b"];
    let mut next = 0;
    let mut rng = Lcg(0x7a1e_0023);
    let mut leaders_killed = 0;
    for _ in 0..5 {
        for _ in 0..6 {
            if next < total {
                p.put(&format!("o{next}.json"), &big(next));
                next += 1;
            }
        }
        // The leader, killed in the middle of whatever it does.
        let leader = (0..2).find(|&i| {
            node_status(&w, &format!("{}.toml", node_names[i]))
                .is_some_and(|s| s["role"] == "leader")
        });
        std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
        if let Some(i) = leader {
            leaders_killed += 1;
            if let Some(mut c) = nodes[i].take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            std::thread::sleep(Duration::from_millis(500));
            nodes[i] = Some(spawn(node_names[i]));
        }
    }
    while next < total {
        p.put(&format!("o{next}.json"), &big(next));
        next += 1;
    }
    assert!(
        leaders_killed >= 3,
        "only {leaders_killed} leaders found to kill"
    );
    let logs = || {
        node_names
            .iter()
            .map(|n| fs::read_to_string(w.path(&format!("{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let start = std::time::Instant::now();
    while p.delivered_ids().len() < total || !names(&p.path("out")).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "not everything went across; the nodes' logs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for c in nodes.iter_mut().flatten() {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
    let twice: Vec<_> = p
        .delivered_ids()
        .into_iter()
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    for id in 0..total {
        let show = w.json(&["--config", "a.toml", "orders", "show", &format!("R-{id}")]);
        let received = show["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "received")
            .count();
        assert_eq!(received, 1, "R-{id}: {show}");
    }
    let leftovers: Vec<String> = names(&p.path("in"))
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .chain(
            names(&w.path("inbox"))
                .into_iter()
                .filter(|n| n.starts_with(".ordersync")),
        )
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert_eq!(names(&p.path("done")).len(), total);
}

#[test]
fn a_key_file_others_may_read_is_refused() {
    if !have_sshd() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let p = Partner::start(scratch.path());
    let w = Work::new(&p.config());
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&p.sshd.key, fs::Permissions::from_mode(0o644)).unwrap();
    // `check` says so, naming the key.
    let out = w.cmd(&["check"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("remotes[0].identity") && said.contains("chmod 600"),
        "{said}"
    );
    // The daemon runs, and the remote transfers nothing with it.
    p.put("o1.json", &order("R-1", &[("SKU-1", 2)]));
    let mut d = w.start(&[]);
    d.wait_for("the remote failing", Duration::from_secs(30), || {
        w.json(&["status"])["remotes"]["acme"]["state"] == "failing"
    });
    let status = w.json(&["status"]);
    let error = status["remotes"]["acme"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("group or others"), "{status}");
    assert_eq!(names(&p.path("out")), vec!["o1.json"]);
    // Fixed: it goes on by itself.
    fs::set_permissions(&p.sshd.key, fs::Permissions::from_mode(0o600)).unwrap();
    d.wait_for("the order pulled", Duration::from_secs(60), || {
        w.json(&["status"])["orders"] == 1
    });
    assert!(d.terminate().success());

    // A known_hosts that lists no key for the host: `check` says so.
    fs::write(&p.known_hosts, "").unwrap();
    let out = w.cmd(&["check"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success()
            && said.contains("remotes[0].known_hosts")
            && said.contains("lists no key"),
        "{said}"
    );
}

/// `curl -sS http://127.0.0.1:PORT/PATH`: the body.
fn curl(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .arg("-sS")
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_marker_decides_and_goes_with_its_file_and_metrics_count() {
    if !have_sshd() || !common::have_tool("curl", "the remote's metrics") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let p = Partner::start(scratch.path());
    let port = common::free_port();
    let config = p
        .config()
        .replace(
            "settle = \"1s\"\nafter = \"move\"",
            "ready = \"marker\"\nmarker = \".ready\"\nafter = \"delete\"",
        )
        .replace(&format!("archive = \"{}/done\"\n", p.root.display()), "")
        .replace(
            "[inbox]\nsettle = \"0s\"",
            &format!("[inbox]\nsettle = \"0s\"\nready_marker = \".ok\"\n[http]\nlisten = \"127.0.0.1:{port}\""),
        );
    assert!(
        config.contains("ready = \"marker\"") && config.contains(".ok"),
        "{config}"
    );
    let w = Work::new(&config);
    p.put("o1.json", &order("R-1", &[("SKU-1", 2)]));
    let mut d = w.spawn(&[]);
    d.wait_for(
        "the daemon's control socket",
        Duration::from_secs(20),
        || w.path("state/ordersync.sock").exists(),
    );
    // No marker: not taken, however long it holds still.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(names(&p.path("out")), vec!["o1.json"]);
    assert_eq!(w.json(&["status"])["orders"], 0);
    // Its marker: taken, both gone from the server, and applied (the
    // inbox waits for its own marker, which the pull writes).
    fs::write(p.path("out/o1.json.ready"), "").unwrap();
    d.wait_for("the order applied", Duration::from_secs(60), || {
        w.json(&["status"])["orders"] == 1
    });
    d.wait_for(
        "the server's folder emptied",
        Duration::from_secs(30),
        || names(&p.path("out")).is_empty(),
    );
    assert!(names(&p.path("done")).is_empty());
    d.wait_for("the export delivered", Duration::from_secs(30), || {
        p.delivered_ids().get("R-1") == Some(&1)
    });
    let metrics = curl(port, "/metrics");
    for want in [
        "ordersync_remote_files_total{remote=\"acme\",direction=\"pull\"} 1",
        "ordersync_remote_errors_total{remote=\"acme\"} 0",
        "ordersync_remote_last_success_timestamp_seconds{remote=\"acme\"}",
    ] {
        assert!(metrics.contains(want), "{want} not in:\n{metrics}");
    }
    let health: Value = serde_json::from_str(&curl(port, "/healthz")).unwrap();
    assert_eq!(health["remotes"]["acme"]["state"], "ok", "{health}");
    assert!(d.terminate().success());
}

#[test]
fn a_full_local_disk_loses_nothing_and_leaves_nothing_behind() {
    if !have_sshd() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let p = Partner::start(scratch.path());
    let w = Work::new(&p.config().replace("settle = \"1s\"", "settle = \"0s\""));
    let Some(_mount) = Tmpfs::mount(&w.path("inbox"), "4m") else {
        eprintln!("skipped: cannot mount a tmpfs");
        return;
    };
    // The inbox's disk full (a hidden file the inbox never reads).
    {
        use std::io::Write;
        let mut f = fs::File::create(w.path("inbox/.filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        for c in [&chunk[..], &chunk[..1]] {
            while f.write_all(c).is_ok() {}
        }
        let _ = f.sync_all();
    }
    let mut big = order("R-1", &[("SKU-1", 2)]);
    big["padding"] = "x".repeat(256 << 10).into();
    p.put("o1.json", &big);
    let mut d = w.start(&[]);
    d.wait_for("the remote failing", Duration::from_secs(30), || {
        w.json(&["status"])["remotes"]["acme"]["state"] == "failing"
    });
    let status = w.json(&["status"]);
    let error = status["remotes"]["acme"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("o1.json"), "names the file: {status}");
    assert_eq!(
        names(&p.path("out")),
        vec!["o1.json"],
        "still at the partner"
    );
    let inbox: Vec<String> = names(&w.path("inbox"))
        .into_iter()
        .filter(|n| n != ".filler")
        .collect();
    assert!(inbox.is_empty(), "a partial download left: {inbox:?}");
    // Space again: taken once.
    fs::remove_file(w.path("inbox/.filler")).unwrap();
    d.wait_for("the order applied", Duration::from_secs(60), || {
        w.json(&["status"])["orders"] == 1
    });
    d.wait_for("the partner's out emptied", Duration::from_secs(30), || {
        names(&p.path("out")).is_empty()
    });
    assert!(d.terminate().success());
    let received = w
        .events("R-1")
        .iter()
        .filter(|e| e.as_str() == "received")
        .count();
    assert_eq!(received, 1);
    let log = d.log_text();
    assert!(
        log.contains("remote transfer failed") && log.contains("acme"),
        "{log}"
    );
}

#[test]
fn a_backlog_at_the_partner_never_holds_up_pushes() {
    if !have_sshd() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let p = Partner::start(scratch.path());
    let w = Work::new(&p.config().replace("settle = \"1s\"", "settle = \"0s\""));
    // 1,200 files waiting at the partner (not orders: they go to errors/).
    for i in 0..1200 {
        fs::write(p.path(&format!("out/junk-{i:04}.json")), "{").unwrap();
    }
    // One order of ours to export and push.
    w.drop_json("local.json", &order("R-LOCAL", &[("SKU-1", 1)]));
    let mut d = w.start(&[]);
    d.wait_for("our export delivered", Duration::from_secs(120), || {
        p.delivered_ids().get("R-LOCAL") == Some(&1)
    });
    let left = names(&p.path("out")).len();
    assert!(
        left > 0,
        "the push waited until the whole backlog was pulled"
    );
    d.wait_for("the backlog pulled", Duration::from_secs(120), || {
        names(&p.path("out")).is_empty()
    });
    assert!(d.terminate().success());
}
