//! Shared helpers for the integration tests: each test gets its own folder
//! with a config, an inbox and the real `ordersync` binary.
#![allow(dead_code)]

pub mod sshd;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

/// One test's working folder.
pub struct Work {
    pub dir: tempfile::TempDir,
    /// Under `ORDERSYNC_TEST_BACKEND=postgres`, the database its config
    /// names, kept for every config written for it (`write_config`) and
    /// dropped with it; `None` on sled.
    db: Option<TestDb>,
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
    /// A folder with this config.toml, on the store the tests run on
    /// (`with_test_backend`): unchanged on sled; under
    /// `ORDERSYNC_TEST_BACKEND=postgres` with a `[store]` naming a new
    /// database of its own.
    pub fn new(config: &str) -> Work {
        Work::on(config, test_database())
    }

    /// A folder with this config.toml on sled whatever
    /// `ORDERSYNC_TEST_BACKEND` says: for a test that needs a sled store as
    /// such (a sled dump to restore into PostgreSQL).
    pub fn sled(config: &str) -> Work {
        Work::on(config, None)
    }

    /// A folder with this config.toml exactly as given, whatever
    /// `ORDERSYNC_TEST_BACKEND` says: for a test that names its own store.
    pub fn as_given(config: &str) -> Work {
        Work::on(config, None)
    }

    fn on(config: &str, db: Option<TestDb>) -> Work {
        let dir = tempfile::tempdir().expect("temp dir");
        let w = Work { dir, db };
        w.write_config(config);
        fs::create_dir_all(w.path("inbox")).expect("inbox");
        w
    }

    /// `config` as this folder's store needs it: unchanged on sled, with
    /// `[store]` naming this folder's database on PostgreSQL (the same one
    /// every time). For a config written elsewhere (`--config`,
    /// `ORDERSYNC_CONFIG`) that must run on this folder's store.
    pub fn config_text(&self, config: &str) -> String {
        match &self.db {
            None => config.to_string(),
            Some(db) => with_postgres_store(config, db.url()),
        }
    }

    /// Writes config.toml anew (a test that restarts with other settings):
    /// on PostgreSQL still on this folder's database.
    pub fn write_config(&self, config: &str) {
        fs::write(self.path("config.toml"), self.config_text(config)).expect("config");
    }

    /// The conninfo of this folder's PostgreSQL database; `None` on sled.
    pub fn store_url(&self) -> Option<&str> {
        self.db.as_ref().map(TestDb::url)
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

    /// [`wait_for`], with the daemon's log when it times out.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: std::time::Duration,
        mut check: impl FnMut() -> bool,
    ) {
        let start = std::time::Instant::now();
        while !check() {
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the daemon's log:\n{}",
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
/// ORDERSYNC_E2E=1 or ORDERSYNC_TEST_BACKEND=postgres, where that fails the
/// test.
pub fn pg_server() -> Option<String> {
    static SERVER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    extern "C" fn stop() {
        if let Some(dir) = DIR.get() {
            let _ = Command::new(CLUSTER_SCRIPT).args(["stop", dir]).output();
        }
    }
    SERVER
        .get_or_init(|| {
            if let Ok(given) = std::env::var("ORDERSYNC_TEST_PG") {
                return Some(given);
            }
            let started = start_cluster(|why| {
                assert!(
                    test_backend() != Backend::Postgres,
                    "ORDERSYNC_TEST_BACKEND=postgres needs a PostgreSQL server \
                     (ORDERSYNC_TEST_PG, or apt-get install postgresql): {why}"
                );
            });
            let (dir, conninfo) = started?;
            let _ = DIR.set(dir);
            // SAFETY: registers a plain function, run at exit.
            unsafe { libc::atexit(stop) };
            Some(conninfo)
        })
        .clone()
}

/// `.ci/pg-cluster`, which starts a throwaway cluster (and stops one).
const CLUSTER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/pg-cluster");

/// Starts a throwaway cluster with `.ci/pg-cluster`: its folder and
/// conninfo. `None` (the test is skipped) when there is no PostgreSQL to
/// start, after `refuse(why)`, except under ORDERSYNC_E2E=1, where that
/// fails the test.
fn start_cluster(refuse: impl FnOnce(&str)) -> Option<(String, String)> {
    let out = Command::new(CLUSTER_SCRIPT)
        .arg("start")
        .output()
        .expect("run .ci/pg-cluster");
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(
            std::env::var("ORDERSYNC_E2E").as_deref() != Ok("1"),
            "a PostgreSQL server is needed (apt-get install postgresql): {why}"
        );
        refuse(&why);
        eprintln!("skipped: no PostgreSQL server: {why}");
        return None;
    }
    let conninfo = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = conninfo
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("host="))
        .expect("host= in the conninfo")
        .to_string();
    Some((dir, conninfo))
}

/// A PostgreSQL cluster of a test's own, for a test that stops or
/// restarts the server (doing so to the shared one would disturb the other
/// tests); stopped when dropped.
pub struct OwnCluster {
    pub dir: String,
    /// Its conninfo, without `dbname`.
    pub conninfo: String,
}

impl OwnCluster {
    /// `None`: skipped (see `start_cluster`).
    pub fn start() -> Option<OwnCluster> {
        let (dir, conninfo) = start_cluster(|_| {})?;
        Some(OwnCluster { dir, conninfo })
    }

    /// Runs `pg_ctl ARGS` on it (as `postgres` when we are root), with the
    /// options `.ci/pg-cluster` starts it with.
    pub fn pg_ctl(&self, args: &[&str]) {
        let bin = fs::read_dir("/usr/lib/postgresql")
            .expect("postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin/pg_ctl"))
            .max()
            .expect("pg_ctl");
        let data = format!("{}/data", self.dir);
        let log = format!("{}/server.log", self.dir);
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c max_connections=200 -c shared_preload_libraries=pg_stat_statements",
            self.dir
        );
        let mut all = vec!["-D", &data, "-l", &log, "-w", "-o", &opts];
        all.extend_from_slice(args);
        // SAFETY: geteuid has no preconditions.
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let out = cmd.args(&all).output().expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(CLUSTER_SCRIPT)
            .args(["stop", &self.dir])
            .output();
    }
}

// ---- the store the tests run on ----------------------------------------------

/// Where the integration tests keep the daemon's state:
/// `ORDERSYNC_TEST_BACKEND` unset or `sled` (the default: the configs as
/// written), or `postgres` (every `Work` on a database of its own on
/// `pg_server()`). Read at run time only: switching it rebuilds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Postgres,
}

/// The backend `ORDERSYNC_TEST_BACKEND` asks for. Any other value fails
/// the test: a misspelt `postgres` must not run the suite on sled.
pub fn test_backend() -> Backend {
    match std::env::var("ORDERSYNC_TEST_BACKEND").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("" | "sled") => Backend::Sled,
        Ok("postgres") => Backend::Postgres,
        Ok(other) => panic!("ORDERSYNC_TEST_BACKEND={other:?}: expected \"sled\" or \"postgres\""),
        Err(e) => panic!("ORDERSYNC_TEST_BACKEND: {e}"),
    }
}

/// For a test about sled itself (its files in the state folder, its lock,
/// its settings): false on sled; on another backend true, after saying on
/// stderr `sled only: {why}`, and the test returns at once:
/// `if common::sled_only("…") { return; }`.
pub fn sled_only(why: &str) -> bool {
    let skip = test_backend() != Backend::Sled;
    if skip {
        eprintln!("sled only: {why}");
    }
    skip
}

/// A database of its own on the test server (`pg_server`), dropped when
/// this is (with any session still on it: `WITH (FORCE)`). A test that
/// fails keeps it, named on stderr, for a look at what it held.
pub struct TestDb {
    /// Empty once kept (`keep`).
    name: String,
    url: String,
}

impl TestDb {
    /// A new, empty database (`t_<uuid>`). Fails the test when there is no
    /// server: a run that asked for PostgreSQL must not pass on sled.
    pub fn create() -> TestDb {
        let base = pg_server().expect("a PostgreSQL server for the test's database");
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        admin(&base)
            .and_then(|mut c| c.batch_execute(&format!("CREATE DATABASE {name}")))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {base}: {e}"));
        TestDb {
            url: format!("{base} dbname={name}"),
            name,
        }
    }

    /// Its conninfo: the server's and `dbname=…`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Lets the database outlive this (it goes with the test cluster);
    /// returns its conninfo.
    pub fn keep(mut self) -> String {
        self.name.clear();
        std::mem::take(&mut self.url)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        if std::thread::panicking() {
            eprintln!("kept the failed test's database: {}", self.url);
            return;
        }
        // Best effort, and never a panic here: the server goes at the end
        // of the run anyway.
        if let Some(base) = pg_server()
            && let Ok(mut c) = admin(&base)
        {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A session on the server's `postgres` database, for CREATE and DROP
/// DATABASE (trust authentication on a unix socket: no password).
fn admin(base: &str) -> Result<postgres::Client, postgres::Error> {
    postgres::Client::connect(&format!("{base} dbname=postgres"), postgres::NoTls)
}

/// A new database when the tests run on PostgreSQL; `None` on sled.
pub fn test_database() -> Option<TestDb> {
    (test_backend() == Backend::Postgres).then(TestDb::create)
}

/// A config as the tests' backend runs it. On sled (the default): `config`
/// unchanged, byte for byte. Under `ORDERSYNC_TEST_BACKEND=postgres`: on a
/// new database of its own (`with_postgres_store`), which stays until the
/// test cluster is stopped. For a config that is not a `Work`'s (`Work::new`
/// does the same and drops its database with it; `Work::config_text` for
/// another config on a `Work`'s database).
pub fn with_test_backend(config: &str) -> String {
    match test_database() {
        None => config.to_string(),
        Some(db) => with_postgres_store(config, &db.keep()),
    }
}

/// `config` with `[store] backend = "postgres"` and `url = "{url}"`: set in
/// its `store` table (made when absent), which keeps its other keys
/// (`cache_capacity`…), then written out again. The TOML is re-serialized:
/// comments go and keys come sorted, the values stay the same.
///
/// - `compression` is removed: sled's zstd setting, which a PostgreSQL
///   store refuses. The template `init` writes has it (`false`; the worked
///   example runs on it), and `state.rs`'s compression test, sled-only.
/// - A config that is not TOML, or whose `store` is not a table, is left as
///   written: the binary rejects it before it opens any store, and the
///   config-error tests that write one check that message.
pub fn with_postgres_store(config: &str, url: &str) -> String {
    let Ok(mut table) = config.parse::<toml::Table>() else {
        return config.to_string();
    };
    let store = table
        .entry("store")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(store) = store.as_table_mut() else {
        return config.to_string();
    };
    // A config that chooses its backend itself is left as it is.
    if store.contains_key("backend") {
        return config.to_string();
    }
    store.insert("backend".into(), "postgres".into());
    store.insert("url".into(), url.into());
    // sled-only, an error with PostgreSQL.
    store.remove("compression");
    store.remove("cache_capacity");
    toml::to_string(&table).expect("a TOML table serializes")
}

/// Whether a record of [`ordersync::store::Store::dump`] is a big file's
/// progress (sled: its key `g:…`; PostgreSQL: a dump line).
pub fn is_progress(key: &str) -> bool {
    key.starts_with("g:") || key.starts_with(r#"{"type":"progress""#)
}

/// A tmpfs mounted on a folder (a small disk to fill), unmounted when
/// dropped; `None` where mounting is not allowed.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
