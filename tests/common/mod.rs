//! Shared helpers for the integration tests: each test gets its own folder
//! with a config, an inbox and the real `ordersync` binary.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

/// One test's working folder.
pub struct Work {
    pub dir: tempfile::TempDir,
}

/// A config with `settle = "0s"` and two systems, erp and wms (json).
pub const TWO_SYSTEMS: &str = r#"
[inbox]
settle = "0s"
[[systems]]
id = "erp"
[[systems]]
id = "wms"
"#;

impl Work {
    /// A folder with this config.toml.
    pub fn new(config: &str) -> Work {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("config.toml"), config).expect("config");
        fs::create_dir_all(dir.path().join("inbox")).expect("inbox");
        Work { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Drops a file into the inbox (written aside, then renamed in).
    pub fn drop_file(&self, name: &str, content: impl AsRef<[u8]>) {
        let tmp = self.path(&format!("inbox/.{name}.tmp"));
        fs::write(&tmp, content).expect("write");
        fs::rename(&tmp, self.path(&format!("inbox/{name}"))).expect("rename");
    }

    /// Drops a JSON value as a file.
    pub fn drop_json(&self, name: &str, v: &Value) {
        self.drop_file(name, serde_json::to_vec_pretty(v).expect("json"));
    }

    /// Runs the binary with these arguments in this folder.
    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ordersync"))
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .env_remove("ORDERSYNC_CONFIG")
            .output()
            .expect("run ordersync")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "ordersync {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Starts `run --once` quietly (for crash tests that kill it).
    pub fn spawn_once(&self) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_ordersync"))
            .args(["run", "--once"])
            .current_dir(self.dir.path())
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run ordersync")
    }

    /// Starts `run --once` and SIGKILLs it after each of `delays_ms`, one
    /// run per delay.
    pub fn kill_once_after(&self, delays_ms: &[u64]) {
        for delay in delays_ms {
            let mut child = self.spawn_once();
            std::thread::sleep(std::time::Duration::from_millis(*delay));
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// `run --once`.
    pub fn run_once(&self) {
        self.ok(&["run", "--once"]);
    }

    /// Drops files and waits (at most `timeout`) until the daemon has
    /// archived them all; none may go to `errors/`.
    pub fn drop_and_wait(&self, files: &[(&str, String)], timeout: std::time::Duration) {
        let before = self.archived().len();
        for (name, content) in files {
            self.drop_file(name, content);
        }
        wait_for("the files to be applied", timeout, || {
            self.archived().len() >= before + files.len()
        });
        assert!(self.errors().is_empty(), "{:?}", self.errors());
    }

    /// A command with `--json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{a:?}: {e}: {out}"))
    }

    /// The event names of an order's timeline, oldest first.
    pub fn events(&self, order: &str) -> Vec<String> {
        let show = self.json(&["orders", "show", order]);
        show["timeline"]
            .as_array()
            .expect("a timeline")
            .iter()
            .map(|e| e["event"].as_str().expect("an event name").to_string())
            .collect()
    }

    /// (in_stock, reserved, available) of a SKU; zeros when unknown.
    pub fn stock(&self, sku: &str) -> (i64, i64, i64) {
        let inv = self.json(&["inventory"]);
        inv.as_array()
            .expect("array")
            .iter()
            .find(|r| r["sku"] == sku)
            .map_or((0, 0, 0), |r| {
                (
                    r["in_stock"].as_i64().unwrap(),
                    r["reserved"].as_i64().unwrap(),
                    r["available"].as_i64().unwrap(),
                )
            })
    }

    /// The export state of an order for a system (`None` when it has none).
    pub fn state(&self, order: &str, system: &str) -> Option<String> {
        let v = self.json(&["orders", "show", order]);
        v["systems"][system]["state"].as_str().map(str::to_string)
    }

    /// Export files in `outbox/<system>/`, sorted by name.
    pub fn outbox(&self, system: &str) -> Vec<PathBuf> {
        files_in(&self.path(&format!("outbox/{system}")))
    }

    /// The orders of every export file of a json-format system, in order.
    pub fn exported(&self, system: &str) -> Vec<Value> {
        self.outbox(system)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .flat_map(|p| {
                let v: Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
                v["orders"].as_array().unwrap().clone()
            })
            .collect()
    }

    /// The external ids of every exported order of a json-format system, in
    /// export order (an order exported twice appears twice).
    pub fn exported_ids(&self, system: &str) -> Vec<String> {
        self.exported(system)
            .iter()
            .map(|o| o["external_id"].as_str().expect("external_id").to_string())
            .collect()
    }

    /// Names of the files in `errors/`.
    pub fn errors(&self) -> Vec<String> {
        names(&self.path("errors"))
    }

    /// The error report of a rejected file.
    pub fn report(&self, name: &str) -> String {
        fs::read_to_string(self.path(&format!("errors/{name}.error.txt"))).unwrap_or_else(|e| {
            panic!("no report for {name}: {e}; errors/ has {:?}", self.errors())
        })
    }

    /// Names of files left in the inbox.
    pub fn inbox(&self) -> Vec<String> {
        names(&self.path("inbox"))
    }

    /// Names of archived files (all dates).
    pub fn archived(&self) -> Vec<String> {
        let mut out = Vec::new();
        for day in files_in(&self.path("archive")) {
            out.extend(names(&day));
        }
        out.sort();
        out
    }
}

/// Sorted paths in a folder (empty when it does not exist).
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Sorted file names in a folder.
pub fn names(dir: &Path) -> Vec<String> {
    files_in(dir)
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect()
}

/// A valid order with these `(sku, qty)` lines, all requiring shipping.
pub fn order(external_id: &str, lines: &[(&str, i64)]) -> Value {
    let items: Vec<Value> = lines
        .iter()
        .map(|(sku, qty)| json!({"sku": sku, "qty_ordered": qty, "unit_price": 10.0}))
        .collect();
    json!({
        "external_id": external_id,
        "type": "Sales Order",
        "currency": "EUR",
        "reference": format!("ref-{external_id}"),
        "created": 1_790_000_000_000i64,
        "updated": 1_790_000_000_000i64,
        "line_items": items,
        "billing_address": {"address1": "Main St 1", "city": "Berlin", "country": "DE"},
        "shipping_address": {"address1": "Main St 1", "city": "Berlin", "country": "DE"},
        "shipping_rule": {"name": "DHL", "recovery": 5.0},
        "tax_rule": {"name": "VAT", "inclusive": false, "rate": 0.19},
    })
}

/// An ack CSV with rows `(order, system, regulate)`.
pub fn acks(rows: &[(&str, &str, bool)]) -> String {
    let mut s = String::from("order_id,system_id,regulate_inventory\n");
    for (o, sys, r) in rows {
        s.push_str(&format!("{o},{sys},{r}\n"));
    }
    s
}

/// Polls `check` every 20 ms until it holds; panics after `timeout`. Waits
/// for a correctness condition with a generous bound: no speed is asserted.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A running `ordersync run`, killed when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Work {
    /// Starts the daemon with extra environment variables and waits until its
    /// control socket answers.
    pub fn start(&self, env: &[(&str, &str)]) -> Daemon {
        let d = self.spawn(env);
        wait_for(
            "the daemon's control socket",
            std::time::Duration::from_secs(20),
            || self.path("state/ordersync.sock").exists(),
        );
        d
    }

    /// Starts the daemon without waiting for it.
    pub fn spawn(&self, env: &[(&str, &str)]) -> Daemon {
        let log = self.path("daemon.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ordersync"));
        cmd.arg("run")
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().expect("spawn ordersync run"),
            log,
        }
    }
}

impl Daemon {
    /// Sends SIGTERM and waits (at most 20 s) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if start.elapsed() > std::time::Duration::from_secs(20) {
                panic!(
                    "the daemon did not stop within 20 s of SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads an `sd_notify` socket all the time, as systemd does (its queue is
/// short: 10 datagrams by default, and a full one blocks the sender), until
/// `STOPPING=1` or a read times out. Returns the lines received so far and
/// the reading thread.
pub fn read_notifications(
    sock: std::os::unix::net::UnixDatagram,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::thread::JoinHandle<()>,
) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let got = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                got.lock().unwrap().extend(text.lines().map(str::to_string));
                if text.lines().any(|l| l == "STOPPING=1") {
                    break;
                }
            }
        })
    };
    (got, reader)
}

/// The hex SHA-256 of a token, as `[[http.tokens]] sha256` takes it.
pub fn token_sha256(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether `tool --version` runs. Under ORDERSYNC_E2E=1 a missing tool
/// fails the test, saying what it is `needed_for`; otherwise the test is
/// skipped with a note.
pub fn have_tool(tool: &str, needed_for: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("ORDERSYNC_E2E").as_deref() != Ok("1"),
            "{tool} is needed for {needed_for} (.ci/run installs it)"
        );
        eprintln!("skipped: {tool} not found");
    }
    ok
}

/// The test PostgreSQL server, as a conninfo without a database name:
/// `ORDERSYNC_TEST_PG` when set (`.ci/run` starts one cluster for every
/// test binary), else a throwaway cluster this test binary starts once with
/// `.ci/pg-cluster` and stops when it exits. `None` (the test is skipped)
/// when there is no PostgreSQL server to start, except under
/// ORDERSYNC_E2E=1, where that fails the test.
pub fn pg_server() -> Option<String> {
    static SERVER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    extern "C" fn stop() {
        if let Some(dir) = DIR.get() {
            let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/pg-cluster"))
                .args(["stop", dir])
                .output();
        }
    }
    SERVER
        .get_or_init(|| {
            if let Ok(given) = std::env::var("ORDERSYNC_TEST_PG") {
                return Some(given);
            }
            let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/pg-cluster"))
                .arg("start")
                .output()
                .expect("run .ci/pg-cluster");
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr);
                assert!(
                    std::env::var("ORDERSYNC_E2E").as_deref() != Ok("1"),
                    "a PostgreSQL server is needed (apt-get install postgresql): {why}"
                );
                eprintln!("skipped: no PostgreSQL server: {why}");
                return None;
            }
            let conninfo = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let dir = conninfo
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("host="))
                .expect("host= in the conninfo")
                .to_string();
            let _ = DIR.set(dir);
            // SAFETY: registers a plain function, run at exit.
            unsafe { libc::atexit(stop) };
            Some(conninfo)
        })
        .clone()
}
