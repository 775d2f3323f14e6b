//! `cargo bench --bench load [-- ROW…]`: the figures of issue 8 ("Bounded and
//! fast under real load"), each row measured with the real release binary on
//! real folders in a temporary directory, so the code before and after a
//! rework can be compared by running one command. Results go in
//! docs/BENCHMARKS.md.
//!
//! Rows (all by default, or the ones named):
//! - ceiling: the store alone, without ordersync: on sled the kit's
//!   `sled-ceiling`; on PostgreSQL the kit's `store-ceilings` (`pg-insert`
//!   and `pg-copy`, the same write pattern) against the same server as the
//!   other rows.
//! - side:    `side_by_side.py` (floor, peer, ordersync on the same files) and
//!   ordersync's ratios to floor/100 and to the peer; with both backends,
//!   ordersync's files/s on PostgreSQL against sled's in the same run.
//! - bulk:    one ndjson file of 10,000 orders, `run --once`: orders/s applied
//!   and exported, peak RSS; where the time goes (apply vs export, from logs).
//! - grow:    the store grown 100k orders per `run --once` up to 1M: orders/s
//!   per step, peak RSS, state bytes per order vs raw JSON bytes.
//! - big:     one ~50 MB `{"orders": [...]}` file (`LOAD_BIG_MB`): time and
//!   peak RSS, under a memory cap.
//! - ack:     an ack CSV of 1M rows over 100k stored orders: rows/s, peak RSS;
//!   the same file again under a new name: growth of the state folder.
//! - backlog: the daemon under a 50,000-order backlog with a fake systemd:
//!   longest watchdog gap, SIGTERM to exit, `status` latency during the work.
//! - dump:    a store of 100k orders (`LOAD_DUMP_ORDERS`): `dump` without
//!   and with the daemon running (time, peak RSS, how long commits waited),
//!   `restore` into a new state folder, and the same dump restored into
//!   PostgreSQL and dumped from it (`ORDERSYNC_TEST_PG`, else a throwaway
//!   cluster from `.ci/pg-cluster`; skipped without a server).
//! - store:   on the largest store of `grow`: `status` and `inventory --sku`
//!   latency (store open), a `GET /v10/orders/export` whose filter matches
//!   one order, the daemon's peak RSS, `orders list --json` time and peak
//!   RSS. (`grow`'s store has a third system, `api`, `transport = "http"`,
//!   for the GET: every order stays pending for it.)
//!
//! Backends: `LOAD_BACKEND` = `sled` (the default), `postgres` or `both`
//! (each row on sled, then on PostgreSQL). On PostgreSQL every row's config
//! has `[store] backend = "postgres"` with a new database per folder, on the
//! server `ORDERSYNC_TEST_PG` names (a libpq conninfo without `dbname`),
//! else on a throwaway cluster from `.ci/pg-cluster` (stopped at the end);
//! the databases are dropped after their row. Where sled's figure is the
//! state folder's size (`du -sb state`), PostgreSQL's is
//! `pg_database_size` of the row's database. Peak RSS is of the ordersync
//! process only: the server's memory is not counted (its `shared_buffers`
//! is printed). `dump` runs on sled only (it restores into PostgreSQL
//! itself).
//!
//! Sizes: `LOAD_SCALE` (default 1) multiplies every default size; each size
//! can also be set on its own (`LOAD_BULK_ORDERS`, `LOAD_GROW_MAX`,
//! `LOAD_GROW_STEP`, `LOAD_BIG_MB` or `LOAD_BIG_ORDERS`, `LOAD_ACK_ORDERS`, `LOAD_ACK_ROWS`,
//! `LOAD_BACKLOG_ORDERS`, `LOAD_SIDE_FILES`, `LOAD_STORE_ORDERS`). Limits:
//! `LOAD_STEP_BUDGET_SECS` (600: a grow step running longer is stopped and
//! growing ends), `LOAD_MEM_CAP_MIB` (2048: any ordersync process above it is
//! killed and reported "killed at the cap"), `LOAD_BACKLOG_TERM_SECS` (10:
//! when SIGTERM is sent after the backlog is dropped). `LOAD_COMPRESSION=1`
//! runs every sled row with `[store] compression = true`.
//!
//! Peak RSS is the kernel's `ru_maxrss` of the ordersync process, read with
//! GNU time (`/usr/bin/time -f %M`, Debian package `time`), cross-checked
//! with VmHWM polled every 20 ms (the larger is reported).

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_ordersync");
const TIME: &str = "/usr/bin/time";
const MIB: f64 = 1024.0 * 1024.0;
/// The memory target of issue 8 for every row that has one.
const RSS_TARGET_MIB: f64 = 256.0;

/// Where the read-only benchmark kit (yardsticks and order generator) is
/// unpacked: `$BENCH_KIT`, by default `../shared/bench` beside the
/// repository (where the development machines have it).
fn yardsticks() -> PathBuf {
    match std::env::var_os("BENCH_KIT") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench"),
    }
}

// ---------------------------------------------------------------- sizes ----

fn scale() -> f64 {
    std::env::var("LOAD_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0)
}

/// `NAME` from the environment, else `full` × `LOAD_SCALE` (at least 1).
fn sized(name: &str, full: usize) -> usize {
    match std::env::var(name).ok().and_then(|v| v.parse().ok()) {
        Some(n) => n,
        None => ((full as f64 * scale()).round() as usize).max(1),
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_num_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mem_cap_kib() -> u64 {
    env_num("LOAD_MEM_CAP_MIB", 2048) * 1024
}

// ------------------------------------------------------------ backends ----

/// Where a row's store lives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Sled,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// The suffix of a row's name in the report.
    fn tag(self) -> &'static str {
        match self {
            Backend::Sled => "",
            Backend::Postgres => "/pg",
        }
    }
}

/// `LOAD_BACKEND`: `sled` (default), `postgres` or `both` (sled first).
fn backends() -> Vec<Backend> {
    match std::env::var("LOAD_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sled") => vec![Backend::Sled],
        Ok("postgres") | Ok("pg") => vec![Backend::Postgres],
        Ok("both") => vec![Backend::Sled, Backend::Postgres],
        Ok(other) => {
            eprintln!("LOAD_BACKEND={other:?}: sled, postgres or both");
            std::process::exit(2);
        }
    }
}

/// The backend of the row running now (rows run one at a time).
static ON_PG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn current() -> Backend {
    if ON_PG.load(std::sync::atomic::Ordering::Relaxed) {
        Backend::Postgres
    } else {
        Backend::Sled
    }
}

fn set_current(b: Backend) {
    ON_PG.store(b == Backend::Postgres, std::sync::atomic::Ordering::Relaxed);
}

/// The PostgreSQL server of this run, found or started on first use.
struct PgServer {
    /// A libpq conninfo without `dbname`.
    base: String,
    /// The folder of the cluster this run started (stopped at the end).
    started: Option<String>,
    /// Databases made by this run, with the folder each belongs to.
    dbs: Vec<(String, PathBuf)>,
}

/// `None` inside: no server could be had (said once).
static PG: Mutex<Option<Option<PgServer>>> = Mutex::new(None);

const PG_CLUSTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/pg-cluster");

fn pg_connect(conninfo: &str) -> postgres::Client {
    postgres::Client::connect(conninfo, postgres::NoTls)
        .unwrap_or_else(|e| panic!("PostgreSQL at {conninfo:?}: {e}"))
}

/// The server's conninfo (without `dbname`): `ORDERSYNC_TEST_PG`, else a
/// throwaway cluster from `.ci/pg-cluster start`. Prints the server's
/// settings the first time.
fn pg_base() -> Option<String> {
    let mut pg = PG.lock().unwrap();
    if pg.is_none() {
        let (base, started) = match std::env::var("ORDERSYNC_TEST_PG") {
            Ok(b) => (Some(b), None),
            Err(_) => {
                let out = Command::new(PG_CLUSTER).arg("start").output().unwrap();
                let info = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if out.status.success() {
                    let dir = info
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("host="))
                        .unwrap_or("")
                        .to_string();
                    (Some(info), Some(dir))
                } else {
                    eprint!("{}", String::from_utf8_lossy(&out.stderr));
                    (None, None)
                }
            }
        };
        *pg = Some(base.map(|base| {
            let mut c = pg_connect(&format!("{base} dbname=postgres"));
            let show = |c: &mut postgres::Client, what: &str| -> String {
                c.query_one(&format!("SHOW {what}"), &[])
                    .map(|row| row.get(0))
                    .unwrap_or_else(|_| "?".into())
            };
            println!(
                "PostgreSQL {} ({}): shared_buffers {}, synchronous_commit {}, fsync {}, wal_sync_method {}, max_connections {}; its memory is not in any peak RSS below",
                show(&mut c, "server_version"),
                started
                    .as_ref()
                    .map_or("ORDERSYNC_TEST_PG", |_| "a throwaway cluster from .ci/pg-cluster"),
                show(&mut c, "shared_buffers"),
                show(&mut c, "synchronous_commit"),
                show(&mut c, "fsync"),
                show(&mut c, "wal_sync_method"),
                show(&mut c, "max_connections"),
            );
            PgServer {
                base,
                started,
                dbs: Vec::new(),
            }
        }));
    }
    pg.as_ref()
        .unwrap()
        .as_ref()
        .map(|server| server.base.clone())
}

/// A new, empty database for the folder `dir`: its conninfo.
fn pg_new_db(dir: &Path) -> String {
    let base = pg_base().expect("LOAD_BACKEND=postgres: no PostgreSQL server (see above)");
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let db = format!("ordersync_load_{}_{n}", std::process::id());
    let mut admin = pg_connect(&format!("{base} dbname=postgres"));
    // Two statements: DROP DATABASE cannot run in the implicit transaction
    // of a multi-statement batch.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    if let Some(Some(server)) = PG.lock().unwrap().as_mut() {
        server.dbs.push((db.clone(), dir.to_path_buf()));
    }
    format!("{base} dbname={db}")
}

/// Drops this run's databases, but those of the folders `keep`.
fn pg_drop_dbs(keep: &[&Path]) {
    let mut pg = PG.lock().unwrap();
    let Some(Some(server)) = pg.as_mut() else {
        return;
    };
    let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut server.dbs)
        .into_iter()
        .partition(|(_, dir)| keep.contains(&dir.as_path()));
    server.dbs = kept;
    if gone.is_empty() {
        return;
    }
    let mut admin = pg_connect(&format!("{} dbname=postgres", server.base));
    for (db, _) in gone {
        if let Err(e) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")) {
            eprintln!("could not drop database {db}: {e}");
        }
    }
}

/// At the end (or a panic): drops the databases, stops a cluster this run
/// started.
struct PgCleanup;

impl Drop for PgCleanup {
    fn drop(&mut self) {
        pg_drop_dbs(&[]);
        let started = PG
            .lock()
            .map(|mut pg| {
                pg.as_mut()
                    .and_then(|s| s.as_mut())
                    .and_then(|s| s.started.take())
            })
            .unwrap_or(None);
        if let Some(dir) = started {
            let _ = Command::new(PG_CLUSTER).args(["stop", &dir]).status();
        }
    }
}

/// The file in a work folder naming its PostgreSQL database.
const PG_URL_FILE: &str = "load-pg-conninfo.txt";

/// What the store takes: sled's state folder (`du -sb state`), or on
/// PostgreSQL the database's size (`pg_database_size`: tables, indexes,
/// TOAST; not the WAL).
fn state_bytes(dir: &Path) -> u64 {
    match fs::read_to_string(dir.join(PG_URL_FILE)) {
        Ok(url) => {
            let mut c = pg_connect(url.trim());
            c.query_one("SELECT pg_database_size(current_database())", &[])
                .map(|row| row.get::<_, i64>(0) as u64)
                .unwrap_or(0)
        }
        Err(_) => du_sb(&dir.join("state")),
    }
}

/// What `state_bytes` measures, in words.
fn state_word() -> &'static str {
    match current() {
        Backend::Sled => "state",
        Backend::Postgres => "database",
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `[store]` section of a new work folder `dir` for the current
/// backend (on PostgreSQL a new database, named in `PG_URL_FILE`).
fn store_section(dir: &Path) -> String {
    match current() {
        Backend::Sled => {
            let compression = std::env::var_os("LOAD_COMPRESSION").is_some_and(|v| v == "1");
            format!("[store]\ncompression = {compression}\n")
        }
        // cache_capacity and compression are sled's keys: an error here.
        Backend::Postgres => {
            let url = pg_new_db(dir);
            fs::write(dir.join(PG_URL_FILE), &url).unwrap();
            format!(
                "[store]\nbackend = \"postgres\"\nurl = {}\n",
                toml_str(&url)
            )
        }
    }
}

/// `LOAD_AS_ORDERSYNC=BIN LOAD_AS_ORDERSYNC_PG=CONNINFO load --config PATH
/// ARGS…`: this binary stands in for ordersync where a yardstick writes its
/// own config (side_by_side.py): it adds `[store] backend = "postgres"` to
/// PATH and becomes `BIN --config PATH ARGS…` (one exec, no child).
fn as_ordersync(bin: std::ffi::OsString) -> ! {
    use std::os::unix::process::CommandExt as _;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let (Ok(url), Some(i)) = (
        std::env::var("LOAD_AS_ORDERSYNC_PG"),
        args.iter().position(|a| a == "--config"),
    ) {
        let path = &args[i + 1];
        let text = fs::read_to_string(path).unwrap();
        if !text.contains("backend = ") {
            fs::write(
                path,
                format!(
                    "{text}\n[store]\nbackend = \"postgres\"\nurl = {}\n",
                    toml_str(&url)
                ),
            )
            .unwrap();
        }
    }
    let e = Command::new(bin)
        .args(&args)
        .env_remove("LOAD_AS_ORDERSYNC")
        .env_remove("LOAD_AS_ORDERSYNC_PG")
        .exec();
    panic!("exec: {e}");
}

// ------------------------------------------------------------- verdicts ----

/// One line per figure: the figure, the target, MET or NOT MET; kept for the
/// summary at the end.
/// Rows measured on PostgreSQL are named with a `/pg` suffix.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    /// sled's own rate in this run (row `ceiling`), to compare with.
    ceiling: Option<f64>,
    /// PostgreSQL's own rate in this run (row `ceiling` on PostgreSQL): the
    /// faster of store-ceilings' `pg-insert` and `pg-copy`.
    pg_ceiling: Option<f64>,
    /// ordersync's files/s in the side row, per backend, in this run.
    side_files: Vec<(Backend, f64)>,
}

impl Report {
    fn verdict(&mut self, row: &str, what: &str, figure: String, target: &str, met: bool) {
        let row = format!("{row}{}", current().tag());
        let line = format!(
            "{row:8} {what}: {figure} (target {target}) {}",
            if met { "MET" } else { "NOT MET" }
        );
        println!("{line}");
        self.lines.push(line);
    }

    /// A figure that could not be measured (killed, timed out, skipped).
    fn missing(&mut self, row: &str, what: &str, why: &str, target: &str) {
        let row = format!("{row}{}", current().tag());
        let line = format!("{row:8} {what}: {why} (target {target}) NOT MET");
        println!("{line}");
        self.lines.push(line);
    }

    /// A figure with no target (a yardstick), kept for the summary.
    fn note(&mut self, row: &str, what: &str) {
        let line = format!("{:8} {what}", format!("{row}{}", current().tag()));
        println!("{line}");
        self.lines.push(line);
    }
}

// ------------------------------------------------------- one ordersync ----

/// An ordersync process run under GNU time, watched for its memory.
struct Proc {
    child: Child,
    /// The ordersync process itself (GNU time's child).
    pid: Option<u32>,
    start: Instant,
    rss_file: PathBuf,
    polled_hwm_kib: u64,
    killed_at_cap: bool,
    killed_at_budget: bool,
}

/// What a finished [`Proc`] did.
struct Measured {
    wall: Duration,
    peak_kib: u64,
    status: ExitStatus,
    killed_at_cap: bool,
    killed_at_budget: bool,
}

impl Measured {
    fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }

    fn ok(&self) -> bool {
        self.status.success() && !self.killed_at_cap && !self.killed_at_budget
    }

    /// Why a run gave no figure, in words.
    fn failure(&self) -> String {
        if self.killed_at_cap {
            format!(
                "killed at the cap of {} MiB after {:.1} s",
                mem_cap_kib() / 1024,
                self.wall.as_secs_f64()
            )
        } else if self.killed_at_budget {
            format!(
                "stopped at the time budget after {:.0} s",
                self.wall.as_secs_f64()
            )
        } else {
            format!(
                "failed ({}) after {:.1} s",
                self.status,
                self.wall.as_secs_f64()
            )
        }
    }
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Proc {
    /// Starts `ordersync ARGS` in `dir` (its config.toml), stderr (the log) to
    /// `dir/LOGNAME`, stdout to `stdout`.
    fn spawn(dir: &Path, args: &[&str], envs: &[(&str, &str)], log: &str, stdout: Stdio) -> Proc {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rss_file = dir.join(format!("peak-rss-{n}.txt"));
        let log = fs::File::create(dir.join(log)).unwrap();
        let mut cmd = Command::new(TIME);
        cmd.args(["-f", "%M", "-o"])
            .arg(&rss_file)
            .arg(BIN)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let start = Instant::now();
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {TIME} ({e}): install the Debian package `time`")
        });
        let mut p = Proc {
            child,
            pid: None,
            start,
            rss_file,
            polled_hwm_kib: 0,
            killed_at_cap: false,
            killed_at_budget: false,
        };
        p.find_pid();
        p
    }

    fn find_pid(&mut self) {
        let t = self.child.id();
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.pid.is_none() && Instant::now() < deadline {
            self.pid = fs::read_to_string(format!("/proc/{t}/task/{t}/children"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
            if self.pid.is_none() {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill")
                .args([sig, &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// One look: memory (killing above the cap), exit.
    fn poll(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        if let Some(pid) = self.pid {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |name: &str| -> u64 {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0)
            };
            self.polled_hwm_kib = self.polled_hwm_kib.max(field("VmHWM:"));
            if field("VmRSS:") > mem_cap_kib() && !self.killed_at_cap {
                self.killed_at_cap = true;
                self.signal("-KILL");
            }
        }
        None
    }

    /// Waits for the exit, killing the process after `budget`.
    fn wait(mut self, budget: Option<Duration>) -> Measured {
        let status = loop {
            if let Some(s) = self.poll() {
                break s;
            }
            if budget.is_some_and(|b| self.start.elapsed() > b) && !self.killed_at_budget {
                self.killed_at_budget = true;
                self.signal("-KILL");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let wall = self.start.elapsed();
        // GNU time writes "Command terminated by signal 9" etc. first.
        let from_time = fs::read_to_string(&self.rss_file)
            .unwrap_or_default()
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        Measured {
            wall,
            peak_kib: from_time.max(self.polled_hwm_kib),
            status,
            killed_at_cap: self.killed_at_cap,
            killed_at_budget: self.killed_at_budget,
        }
    }
}

/// `ordersync ARGS` in `dir`, to the end (or the budget), stdout discarded.
fn measure(dir: &Path, args: &[&str], log: &str, budget: Option<Duration>) -> Measured {
    Proc::spawn(dir, args, &[], log, Stdio::null()).wait(budget)
}

/// Wall time of a short command (no GNU time in between), with its output.
fn quick(dir: &Path, args: &[&str]) -> (Duration, String) {
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "ordersync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

// ------------------------------------------------------------- folders ----

/// A work folder with two json systems (batch 100, as side_by_side.py),
/// settle 0, no periodic rescan, on the current backend; `LOAD_COMPRESSION=1`
/// sets sled's `[store] compression`.
fn work() -> tempfile::TempDir {
    work_with(false)
}

/// [`work`], and with `http_system` a third system `api` with `transport =
/// "http"` (every order stays pending for it: what `GET
/// /v10/orders/export` scans).
fn work_with(http_system: bool) -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("ordersync-load-")
        .tempdir()
        .unwrap();
    fs::create_dir_all(tmp.path().join("inbox")).unwrap();
    let store = store_section(tmp.path());
    let api = if http_system {
        "[[systems]]\nid = \"api\"\ntransport = \"http\"\n"
    } else {
        ""
    };
    fs::write(
        tmp.path().join("config.toml"),
        format!(
            "[inbox]\nsettle = \"0s\"\nrescan = \"1h\"\n\
             {store}\
             [[systems]]\nid = \"erp\"\nformat = \"json\"\nbatch_size = 100\n\
             [[systems]]\nid = \"wms\"\nformat = \"json\"\nbatch_size = 100\n{api}"
        ),
    )
    .unwrap();
    tmp
}

/// `genorders.py DIR N --ndjson PER_FILE`: N orders, external ids G0000000…,
/// in files `orders-00000.ndjson`… of PER_FILE orders. Returns them sorted.
fn genorders(dir: &Path, n: usize, per_file: usize) -> Vec<PathBuf> {
    let ok = Command::new("python3")
        .arg(yardsticks().join("genorders.py"))
        .arg(dir)
        .arg(n.to_string())
        .args(["--ndjson", &per_file.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "genorders.py failed");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn move_into(files: &[PathBuf], inbox: &Path) -> u64 {
    let mut bytes = 0;
    for f in files {
        bytes += fs::metadata(f).unwrap().len();
        fs::rename(f, inbox.join(f.file_name().unwrap())).unwrap();
    }
    bytes
}

fn du_sb(path: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

/// The time of a log line (tracing's RFC 3339 UTC prefix), ANSI colours
/// stripped.
fn log_time(line: &str) -> Option<SystemTime> {
    let mut plain = String::new();
    let mut esc = false;
    for c in line.chars() {
        match (esc, c) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    let t = chrono::DateTime::parse_from_rfc3339(plain.split_whitespace().next()?).ok()?;
    Some(SystemTime::from(t))
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rss_verdict(r: &mut Report, row: &str, what: &str, m: &Measured) {
    r.verdict(
        row,
        what,
        format!("{:.1} MiB", m.peak_mib()),
        "<= 256 MiB",
        m.peak_mib() <= RSS_TARGET_MIB,
    );
}

// ----------------------------------------------------------------- rows ----

/// The kit's `sled-ceiling`: sled 0.34 alone, no parsing, no files, no
/// export (100,000 orders of a 2 KB value and 8 small keys, `apply_batch`
/// of 1,000, a flush each, the 64 MiB cache ordersync uses by default).
/// Not a target: what the embedded store itself can do on this machine in
/// this run, for the rates below to be read against.
fn ceiling(r: &mut Report) {
    match current() {
        Backend::Sled => sled_ceiling(r),
        Backend::Postgres => pg_ceiling(r),
    }
}

/// Where the kit's programs are built: `$CARGO_TARGET_DIR/NAME`, else
/// `target/NAME`.
fn kit_target(name: &str) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join(name),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(name),
    }
}

/// The kit's `store-ceilings` on PostgreSQL alone: `pg-insert` (a multi-row
/// INSERT per table per batch) and `pg-copy` (COPY BINARY), N orders of a
/// 2 KB value + 7 small keys in two tables (`orders`, `idx`), one commit
/// per 1,000 orders, then (pg-insert) 10,000 point reads of an order and
/// one key, each a round trip. It connects to `host=$PGSOCK port=54329
/// user=postgres dbname=postgres`: `$PGSOCK` is a folder made here whose
/// `.s.PGSQL.54329` is a symbolic link to the server's socket, so it runs
/// against the same server as the other rows. It makes the tables `orders`
/// and `idx` in the database `postgres` (refused if they exist; dropped
/// after).
fn pg_ceiling(r: &mut Report) {
    let orders = sized("LOAD_CEILING_ORDERS", 100_000);
    let Some(base) = pg_base() else {
        r.missing("ceiling", "PostgreSQL alone", "no server", "none");
        return;
    };
    let word = |key: &str| {
        base.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).map(str::to_string))
    };
    let host = word("host=").unwrap_or_default();
    let port = word("port=").unwrap_or_else(|| "5432".into());
    if !host.starts_with('/') {
        r.missing(
            "ceiling",
            "PostgreSQL alone",
            "store-ceilings reaches the server over a unix socket only: give ORDERSYNC_TEST_PG a host=/socket/folder",
            "none",
        );
        return;
    }
    let mut admin = pg_connect(&format!("{base} dbname=postgres"));
    let theirs: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('orders', 'idx')",
            &[],
        )
        .unwrap()
        .get(0);
    if theirs > 0 {
        r.missing(
            "ceiling",
            "PostgreSQL alone",
            "the database postgres already has a table orders or idx (not this run's to drop)",
            "none",
        );
        return;
    }
    let kit = yardsticks().join("store-ceilings");
    let target = kit_target("store-ceilings");
    println!(
        "ceiling: store-ceilings on PostgreSQL alone over {orders} orders, commits of 1,000 (building it first: minutes the first time)"
    );
    let built = Command::new("cargo")
        .args(["build", "--release", "-q", "--manifest-path"])
        .arg(kit.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .unwrap();
    if !built.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&built.stderr));
        r.missing(
            "ceiling",
            "PostgreSQL alone",
            "store-ceilings did not build",
            "none",
        );
        return;
    }
    let sock = tempfile::Builder::new()
        .prefix("ordersync-load-pgsock-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::symlink(
        Path::new(&host).join(format!(".s.PGSQL.{port}")),
        sock.path().join(".s.PGSQL.54329"),
    )
    .unwrap();
    // The cluster's data folder, for its memory sampler; none when the
    // server is not a .ci/pg-cluster one (the sampler then reports 0).
    let data = Path::new(&host).join("data");
    let data = if data.join("postmaster.pid").exists() {
        data
    } else {
        sock.path().join("no-data-folder")
    };
    let run = |args: &[&str]| -> Option<serde_json::Value> {
        let out = Command::new(target.join("release/bench"))
            .args(args)
            .env("PGSOCK", sock.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        serde_json::from_str(text.trim()).ok()
    };
    let data = data.to_str().unwrap();
    let n = orders.to_string();
    let mut best: Option<f64> = None;
    for engine in ["pg-insert", "pg-copy"] {
        match run(&[engine, "write", data, &n, "1000"]) {
            Some(v) => {
                let x = v["orders_s"].as_f64().unwrap_or(0.0);
                println!(
                    "  {engine}: {} orders/s ({:.2} s), tables {:.0} MB = {:.2}x the raw values, WAL {:.0} MB; {}",
                    thousands(x),
                    v["secs"].as_f64().unwrap_or(0.0),
                    v["disk_bytes"].as_f64().unwrap_or(0.0) / 1e6,
                    v["disk_raw"].as_f64().unwrap_or(0.0),
                    v["pg_wal_generated"].as_f64().unwrap_or(0.0) / 1e6,
                    v["pg_settings"].as_str().unwrap_or("")
                );
                r.note(
                    "ceiling",
                    &format!(
                        "PostgreSQL alone ({engine}): {} orders/s (a yardstick, not a target)",
                        thousands(x)
                    ),
                );
                best = Some(best.map_or(x, |b: f64| b.max(x)));
            }
            None => r.missing("ceiling", engine, "store-ceilings failed", "none"),
        }
        if engine == "pg-insert" {
            // One point read = one round trip to this server.
            if let Some(v) = run(&["pg-insert", "read", data, &n]) {
                println!(
                    "  pg-insert read: 10,000 random point reads of an order and one key (two statements, two round trips each): p50 {:.0} µs, p99 {:.0} µs",
                    v["lookup_p50_us"].as_f64().unwrap_or(0.0),
                    v["lookup_p99_us"].as_f64().unwrap_or(0.0)
                );
            }
        }
    }
    let _ = admin.batch_execute("DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS idx");
    r.pg_ceiling = best;
}

fn sled_ceiling(r: &mut Report) {
    let orders = sized("LOAD_CEILING_ORDERS", 100_000);
    let tmp = tempfile::Builder::new()
        .prefix("ordersync-load-")
        .tempdir()
        .unwrap();
    let kit = yardsticks().join("sled-ceiling");
    println!("ceiling: sled-ceiling over {orders} orders, batches of 1,000, cache 64 MiB");
    let out = Command::new("cargo")
        .args(["run", "--release", "-q", "--manifest-path"])
        .arg(kit.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(kit_target("sled-ceiling"))
        .arg("--")
        .arg(tmp.path().join("db"))
        .args([orders.to_string(), "1000".into(), (64u64 << 20).to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("  {}", text.trim());
    // "100000 orders in 11.2s = 8929 orders/s; disk …"
    let rate = text
        .split(" = ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    match rate {
        Some(x) => {
            r.ceiling = Some(x);
            let line = format!(
                "{:8} sled alone: {} orders/s (a yardstick, not a target)",
                "ceiling",
                thousands(x)
            );
            println!("{line}");
            r.lines.push(line);
        }
        None => {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            r.missing("ceiling", "orders/s", "sled-ceiling failed", "none");
        }
    }
}

fn side(r: &mut Report) {
    let files = sized("LOAD_SIDE_FILES", 10_000);
    println!(
        "side: side_by_side.py over {files} single-order files, ordersync on {}",
        current().name()
    );
    let mut cmd = Command::new("python3");
    cmd.arg(yardsticks().join("side_by_side.py"));
    // side_by_side.py writes ordersync's config itself (sled): on
    // PostgreSQL this binary stands in for ordersync, adds the [store]
    // section and execs it (`as_ordersync`).
    let db = tempfile::Builder::new()
        .prefix("ordersync-load-side-")
        .tempdir()
        .unwrap();
    let url = match current() {
        Backend::Sled => {
            cmd.arg(BIN);
            None
        }
        Backend::Postgres => {
            let url = pg_new_db(db.path());
            cmd.arg(std::env::current_exe().unwrap())
                .env("LOAD_AS_ORDERSYNC", BIN)
                .env("LOAD_AS_ORDERSYNC_PG", &url);
            Some(url)
        }
    };
    let out = cmd.arg(files.to_string()).output().unwrap();
    if let Some(url) = url {
        // That ordersync did run on PostgreSQL.
        let stored: Option<i64> = postgres::Client::connect(&url, postgres::NoTls)
            .and_then(|mut c| c.query_one("SELECT n FROM order_count", &[]))
            .map(|row| row.get(0))
            .ok();
        println!(
            "  ordersync's PostgreSQL database holds {} orders",
            stored.map_or("no".into(), |n| n.to_string())
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines() {
        println!("  {l}");
    }
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        r.missing("side", "ratios", "side_by_side.py failed", "see above");
        return;
    }
    // "ordersync / floor/100 0.41   ordersync / floor/1 1.2   ordersync / peer 1.9"
    let ratio = |name: &str| -> Option<f64> {
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .windows(4)
            .find(|w| w[0] == "ordersync" && w[1] == "/" && w[2] == name)
            .and_then(|w| w[3].parse().ok())
    };
    // "ordersync    1801 files/s"
    let own = text.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.len() == 3 && w[0] == "ordersync" && w[2] == "files/s")
            .then(|| w[1].parse::<f64>().ok())
            .flatten()
    });
    if let Some(x) = own {
        r.side_files.push((current(), x));
        let on = |b: Backend| {
            r.side_files
                .iter()
                .rev()
                .find(|(k, _)| *k == b)
                .map(|(_, x)| *x)
        };
        if let (Backend::Postgres, Some(pg), Some(sled)) =
            (current(), on(Backend::Postgres), on(Backend::Sled))
        {
            r.verdict(
                "side",
                &format!(
                    "small files/s on PostgreSQL ({}) / on sled ({}) in this run",
                    thousands(pg),
                    thousands(sled)
                ),
                format!("{:.2}x", pg / sled),
                ">= 1x",
                pg >= sled,
            );
        }
    }
    match ratio("floor/100") {
        Some(x) => r.verdict(
            "side",
            "ordersync / floor/100",
            format!("{x:.2}x"),
            ">= 0.5x",
            x >= 0.5,
        ),
        None => r.missing("side", "ordersync / floor/100", "not printed", ">= 0.5x"),
    }
    match ratio("peer") {
        Some(x) => r.verdict(
            "side",
            "ordersync / peer",
            format!("{x:.2}x"),
            ">= 2.5x",
            x >= 2.5,
        ),
        None => r.missing("side", "ordersync / peer", "not printed", ">= 2.5x"),
    }
}

fn bulk(r: &mut Report) {
    let orders = sized("LOAD_BULK_ORDERS", 10_000);
    let tmp = work();
    let dir = tmp.path();
    let files = genorders(&dir.join("gen"), orders, orders);
    let bytes = move_into(&files, &dir.join("inbox"));
    println!(
        "bulk: one ndjson file of {orders} orders ({:.1} MB), two json systems, run --once, on {}",
        bytes as f64 / 1e6,
        current().name()
    );
    let t0 = SystemTime::now();
    let m = measure(dir, &["run", "--once"], "run.log", None);
    if !m.ok() {
        r.missing("bulk", "orders/s", &m.failure(), ">= 10,000 orders/s");
        rss_verdict(r, "bulk", "peak RSS", &m);
        return;
    }
    // Where the time goes: start → "applied" (read, parse, validate, one
    // transaction, flush, move) → first export file → "inbox drained".
    let log = fs::read_to_string(dir.join("run.log")).unwrap_or_default();
    let at = |needle: &str| log.lines().find(|l| l.contains(needle)).and_then(log_time);
    if let (Some(applied), Some(drained)) = (at("applied file="), at("inbox drained")) {
        let exports = log
            .lines()
            .filter(|l| l.contains("export file written"))
            .count();
        println!(
            "  phases: start→applied {:.2} s (read+parse+apply+flush+move), applied→drained {:.2} s (export: {exports} files of ≤100 orders)",
            secs_between(t0, applied),
            secs_between(applied, drained)
        );
    }
    r.verdict(
        "bulk",
        &format!(
            "{orders} orders applied+exported in {:.2} s",
            m.wall.as_secs_f64()
        ),
        format!("{} orders/s", thousands(rate(orders, m.wall))),
        ">= 10,000 orders/s",
        rate(orders, m.wall) >= 10_000.0,
    );
    match (current(), r.ceiling, r.pg_ceiling) {
        (Backend::Sled, Some(c), _) => println!(
            "  = {:.2}x sled's own rate in this run (ceiling row: store writes only)",
            rate(orders, m.wall) / c
        ),
        (Backend::Postgres, _, Some(c)) => r.verdict(
            "bulk",
            &format!(
                "orders/s / PostgreSQL alone ({} orders/s, ceiling row, same server, this run)",
                thousands(c)
            ),
            format!("{:.2}x", rate(orders, m.wall) / c),
            ">= 0.5x",
            rate(orders, m.wall) >= 0.5 * c,
        ),
        (Backend::Postgres, _, None) => r.missing(
            "bulk",
            "orders/s / PostgreSQL alone",
            "no ceiling row on PostgreSQL in this run",
            ">= 0.5x",
        ),
        _ => {}
    }
    if current() == Backend::Postgres {
        println!(
            "  {} after the row: {:.1} MB",
            state_word(),
            state_bytes(dir) as f64 / 1e6
        );
    }
    rss_verdict(r, "bulk", "peak RSS", &m);
}

/// One step of a growing store.
struct Step {
    orders: usize,
    took: Duration,
    peak_mib: f64,
    state: u64,
    raw: u64,
}

/// Grows a store in `dir` to `total` orders, `step` per `run --once`, from
/// ndjson files of at most 10,000 orders; stops after a step that fails or
/// exceeds the budget (reported in the returned text).
fn grow_store(dir: &Path, total: usize, step: usize, quiet: bool) -> (Vec<Step>, Option<String>) {
    let per_file = (env_num("LOAD_GROW_FILE", 10_000) as usize)
        .min(step)
        .max(1);
    let budget = Duration::from_secs(env_num("LOAD_STEP_BUDGET_SECS", 600));
    let files = genorders(&dir.join("gen"), total, per_file);
    let files_per_step = step.div_ceil(per_file);
    let mut steps = Vec::new();
    let (mut stored, mut raw) = (0, 0);
    for chunk in files.chunks(files_per_step) {
        let n = (chunk.len() * per_file).min(total - stored);
        raw += move_into(chunk, &dir.join("inbox"));
        let m = measure(dir, &["run", "--once"], "run.log", Some(budget));
        if !m.ok() {
            return (
                steps,
                Some(format!("step {}→{}: {}", stored, stored + n, m.failure())),
            );
        }
        stored += n;
        let s = Step {
            orders: stored,
            took: m.wall,
            peak_mib: m.peak_mib(),
            state: state_bytes(dir),
            raw,
        };
        if !quiet {
            println!(
                "  {:>9} orders: step {:.1} s, {:>7} orders/s, peak RSS {:.1} MiB, {} {:.1} MB = {:.0} B/order = {:.2}x raw JSON ({:.0} B/order)",
                thousands(s.orders as f64),
                s.took.as_secs_f64(),
                thousands(rate(n, s.took)),
                s.peak_mib,
                state_word(),
                s.state as f64 / 1e6,
                s.state as f64 / s.orders as f64,
                s.state as f64 / s.raw as f64,
                s.raw as f64 / s.orders as f64
            );
        }
        steps.push(s);
    }
    (steps, None)
}

/// Returns the folder of the grown store, for `store`.
fn grow(r: &mut Report) -> tempfile::TempDir {
    let total = sized("LOAD_GROW_MAX", 1_000_000);
    let step = sized("LOAD_GROW_STEP", 100_000).min(total);
    println!(
        "grow: to {total} orders, {step} per run --once (ndjson files of ≤10,000 orders), systems erp, wms (json files) and api (http), on {}",
        current().name()
    );
    let tmp = work_with(true);
    let (steps, stopped) = grow_store(tmp.path(), total, step, false);
    if let Some(why) = &stopped {
        println!("  growing stopped early: {why}");
    }
    let Some(last) = steps.last() else {
        r.missing(
            "grow",
            "orders/s",
            stopped.as_deref().unwrap_or("no step"),
            ">= 10,000 orders/s",
        );
        return tmp;
    };
    let mut prev = 0;
    let rates: Vec<f64> = steps
        .iter()
        .map(|s| {
            let x = rate(s.orders - prev, s.took);
            prev = s.orders;
            x
        })
        .collect();
    let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
    r.verdict(
        "grow",
        &format!(
            "slowest step to {} orders{} (first step {}, last {})",
            thousands(last.orders as f64),
            if stopped.is_some() {
                ", stopped early"
            } else {
                ""
            },
            thousands(rates[0]),
            thousands(*rates.last().unwrap())
        ),
        format!("{} orders/s", thousands(min)),
        ">= 10,000 orders/s flat to 1M",
        min >= 10_000.0 && stopped.is_none() && last.orders >= 1_000_000,
    );
    let peak = steps.iter().map(|s| s.peak_mib).fold(0.0, f64::max);
    r.verdict(
        "grow",
        "peak RSS over the steps",
        format!("{peak:.1} MiB"),
        "<= 256 MiB",
        peak <= RSS_TARGET_MIB,
    );
    for at in [100_000, 1_000_000] {
        if let Some(s) = steps.iter().find(|s| s.orders == at) {
            let x = s.state as f64 / s.raw as f64;
            r.verdict(
                "grow",
                &format!("{} / raw JSON at {}", state_word(), thousands(at as f64)),
                format!("{x:.2}x"),
                "<= 2x",
                x <= 2.0,
            );
        }
    }
    if last.orders != 100_000 && last.orders != 1_000_000 {
        let x = last.state as f64 / last.raw as f64;
        r.verdict(
            "grow",
            &format!(
                "{} / raw JSON at {} (largest reached)",
                state_word(),
                thousands(last.orders as f64)
            ),
            format!("{x:.2}x"),
            "<= 2x",
            x <= 2.0,
        );
    }
    tmp
}

fn big(r: &mut Report) {
    // genorders' orders average ~2.1 KB, so a 50 MB file holds ~24k of them
    // (issue 8's "≈97k orders" assumed smaller orders; the size is what counts).
    let mb = env_num_f64("LOAD_BIG_MB", 50.0 * scale());
    let orders = match std::env::var("LOAD_BIG_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => n,
        None => ((mb * 1e6 / 2_100.0).round() as usize).max(1),
    };
    let tmp = work();
    let dir = tmp.path();
    // genorders' ndjson lines joined into one {"orders": [...]} document.
    let generated = genorders(&dir.join("gen"), orders, orders);
    let ndjson = fs::read_to_string(&generated[0]).unwrap();
    let mut doc = Vec::with_capacity(ndjson.len() + 16);
    doc.extend_from_slice(b"{\"orders\": [");
    for (i, line) in ndjson.lines().enumerate() {
        if i > 0 {
            doc.extend_from_slice(b",\n");
        }
        doc.extend_from_slice(line.as_bytes());
    }
    doc.extend_from_slice(b"]}\n");
    drop(ndjson);
    fs::write(dir.join("inbox/big.json"), &doc).unwrap();
    let mb = doc.len() as f64 / MIB;
    drop(doc);
    println!(
        "big: one {{\"orders\": [...]}} file of {orders} orders ({mb:.1} MiB), run --once, memory cap {} MiB",
        mem_cap_kib() / 1024
    );
    let m = measure(dir, &["run", "--once"], "run.log", None);
    if !m.ok() {
        r.missing(
            "big",
            &format!("{mb:.1} MiB file"),
            &m.failure(),
            "<= 256 MiB",
        );
        return;
    }
    let archived = !dir.join("inbox/big.json").exists() && count(&dir.join("errors")) == 0;
    println!(
        "  {:.2} s ({} orders/s){}",
        m.wall.as_secs_f64(),
        thousands(rate(orders, m.wall)),
        if archived {
            ""
        } else {
            "; the file was NOT applied (see errors/)"
        }
    );
    rss_verdict(
        r,
        "big",
        &format!(
            "peak RSS for a {mb:.1} MiB file ({:.1} s)",
            m.wall.as_secs_f64()
        ),
        &m,
    );
}

fn ack(r: &mut Report) {
    let orders = sized("LOAD_ACK_ORDERS", 100_000);
    let rows = sized("LOAD_ACK_ROWS", 1_000_000);
    let tmp = work();
    let dir = tmp.path();
    println!("ack: building a store of {orders} orders (exported to erp and wms)…");
    let t = Instant::now();
    let (_, stopped) = grow_store(dir, orders, orders, true);
    if let Some(why) = stopped {
        r.missing(
            "ack",
            "rows/s",
            &format!("store not built: {why}"),
            ">= 100,000 rows/s",
        );
        return;
    }
    println!("  store built in {:.1} s", t.elapsed().as_secs_f64());
    // Each order named rows/orders times, alternately for erp and wms; the
    // first row of each order regulates inventory.
    let mut csv = String::with_capacity(rows * 24);
    csv.push_str("order_id,system_id,regulate_inventory\n");
    for i in 0..rows {
        let system = if (i / orders).is_multiple_of(2) {
            "erp"
        } else {
            "wms"
        };
        let _ = writeln!(csv, "G{:07},{system},{}", i % orders, i < orders);
    }
    fs::write(dir.join("acks.csv"), &csv).unwrap();
    fs::write(dir.join("inbox/acks-1.csv"), &csv).unwrap();
    println!("  ack file: {rows} rows ({:.1} MB)", csv.len() as f64 / 1e6);
    drop(csv);
    let before = state_bytes(dir);
    let m = measure(dir, &["run", "--once"], "ack1.log", None);
    if !m.ok() || count(&dir.join("errors")) > 0 {
        r.missing("ack", "rows/s", &m.failure(), ">= 100,000 rows/s");
        rss_verdict(r, "ack", "peak RSS", &m);
        return;
    }
    let after_first = state_bytes(dir);
    r.verdict(
        "ack",
        &format!(
            "{rows} rows over {orders} orders in {:.2} s",
            m.wall.as_secs_f64()
        ),
        format!("{} rows/s", thousands(rate(rows, m.wall))),
        ">= 100,000 rows/s",
        rate(rows, m.wall) >= 100_000.0,
    );
    rss_verdict(r, "ack", "peak RSS", &m);
    println!(
        "  {} {:.1} MB → {:.1} MB after the first ack file",
        state_word(),
        before as f64 / 1e6,
        after_first as f64 / 1e6
    );
    fs::rename(dir.join("acks.csv"), dir.join("inbox/acks-2.csv")).unwrap();
    let m2 = measure(dir, &["run", "--once"], "ack2.log", None);
    if !m2.ok() {
        r.missing("ack", "no-op re-ack", &m2.failure(), "no state growth");
        return;
    }
    let grown = state_bytes(dir) as i64 - after_first as i64;
    println!(
        "  the same file as acks-2.csv: {:.2} s ({} rows/s), peak RSS {:.1} MiB",
        m2.wall.as_secs_f64(),
        thousands(rate(rows, m2.wall)),
        m2.peak_mib()
    );
    r.verdict(
        "ack",
        &format!(
            "{} growth from the same file re-acked under a new name",
            state_word()
        ),
        format!("{:+.1} MB ({grown:+} bytes)", grown as f64 / 1e6),
        "none (<= 64 KiB allowed for the applied-file record and sled's rounding)",
        grown <= 64 * 1024,
    );
}

fn backlog(r: &mut Report) {
    let orders = sized("LOAD_BACKLOG_ORDERS", 50_000);
    let per_file = orders.min(10_000);
    let term_after = Duration::from_secs(env_num("LOAD_BACKLOG_TERM_SECS", 10));
    let watchdog_usec = 2_000_000u64;
    let tmp = work();
    let dir = tmp.path();
    let staged = genorders(&dir.join("gen"), orders, per_file);
    println!(
        "backlog: daemon (settle 0), {orders} orders in {} ndjson files dropped at once, WATCHDOG_USEC={watchdog_usec}, SIGTERM {}s after the drop",
        staged.len(),
        term_after.as_secs()
    );
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Read all the time, like systemd (the socket's queue is short).
    let got: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (got, done) = (got.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let now = Instant::now();
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    got.lock()
                        .unwrap()
                        .extend(text.lines().map(|l| (now, l.to_string())));
                }
            }
        })
    };
    let usec = watchdog_usec.to_string();
    let mut d = Proc::spawn(
        dir,
        &["run"],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", &usec),
        ],
        "daemon.log",
        Stdio::null(),
    );
    let seen = |what: &str| got.lock().unwrap().iter().any(|(_, l)| l == what);
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !seen("READY=1") && Instant::now() < ready_by {
        if d.poll().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if !seen("READY=1") {
        d.signal("-KILL");
        let _ = d.wait(None);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = reader.join();
        r.missing("backlog", "daemon", "no READY=1 within 60 s", "-");
        return;
    }
    let dropped = Instant::now();
    move_into(&staged, &dir.join("inbox"));
    // `status` through the control socket while the daemon works, once a
    // second until SIGTERM (each waits up to 60 s).
    let mut probes: Vec<Duration> = Vec::new();
    let mut slow_probe = false;
    while dropped.elapsed() + Duration::from_secs(1) < term_after {
        std::thread::sleep(Duration::from_secs(1));
        let start = Instant::now();
        let mut c = Command::new(BIN)
            .arg("status")
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loop {
            if c.try_wait().unwrap().is_some() {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = c.kill();
                let _ = c.wait();
                slow_probe = true;
                break;
            }
            d.poll();
            std::thread::sleep(Duration::from_millis(2));
        }
        probes.push(start.elapsed());
    }
    while dropped.elapsed() < term_after {
        d.poll();
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = count(&dir.join("inbox"));
    let term_at = Instant::now();
    d.signal("-TERM");
    let mut killed = false;
    let (exit, stop_took) = loop {
        if let Some(s) = d.poll() {
            break (s, term_at.elapsed());
        }
        if term_at.elapsed() > Duration::from_secs(120) && !killed {
            killed = true;
            d.signal("-KILL");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let m = d.wait(None);
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.join();
    let msgs = got.lock().unwrap().clone();
    // The longest time without WATCHDOG=1 while working: from the drop to
    // STOPPING=1 (or the exit), counting both ends.
    let end = msgs
        .iter()
        .find(|(_, l)| l == "STOPPING=1")
        .map(|(t, _)| *t)
        .unwrap_or(term_at + stop_took);
    let mut last = dropped;
    let mut gap = Duration::ZERO;
    for (t, _) in msgs
        .iter()
        .filter(|(t, l)| l == "WATCHDOG=1" && *t > dropped && *t <= end)
    {
        gap = gap.max(t.duration_since(last));
        last = *t;
    }
    gap = gap.max(end.duration_since(last));
    let stopping = msgs.iter().any(|(_, l)| l == "STOPPING=1");
    let pings = msgs
        .iter()
        .filter(|(t, l)| l == "WATCHDOG=1" && *t > dropped)
        .count();
    println!(
        "  at SIGTERM {left} of {} files still in the inbox ({}); exit {exit}; {pings} WATCHDOG=1 after the drop; STOPPING=1 {}; daemon peak RSS {:.1} MiB",
        staged.len(),
        if left > 0 {
            "mid-work"
        } else {
            "the inbox was drained: raise LOAD_BACKLOG_ORDERS for a mid-work SIGTERM"
        },
        if stopping { "sent" } else { "never sent" },
        m.peak_mib()
    );
    r.verdict(
        "backlog",
        "longest gap between WATCHDOG=1 while working",
        format!("{:.2} s", gap.as_secs_f64()),
        "<= WATCHDOG_USEC = 2 s",
        gap.as_micros() as u64 <= watchdog_usec,
    );
    r.verdict(
        "backlog",
        "SIGTERM to exit",
        if killed {
            "still running 120 s after SIGTERM: killed".into()
        } else {
            format!("{:.2} s", stop_took.as_secs_f64())
        },
        "<= 5 s",
        stop_took <= Duration::from_secs(5) && exit.success(),
    );
    let worst = probes.iter().max().copied().unwrap_or_default();
    let list: Vec<String> = probes
        .iter()
        .map(|p| format!("{:.2}", p.as_secs_f64()))
        .collect();
    r.verdict(
        "backlog",
        &format!("slowest `status` during the work (s: {})", list.join(", ")),
        if slow_probe {
            ">60 s (killed)".into()
        } else {
            format!("{:.2} s", worst.as_secs_f64())
        },
        "<= 1 s",
        !probes.is_empty() && !slow_probe && worst <= Duration::from_secs(1),
    );
    rss_verdict(r, "backlog", "daemon peak RSS", &m);
}

/// The bearer token of the store row's HTTP API.
const TOKEN: &str = "load-bench-token";

/// `GET path` from the daemon's HTTP API on 127.0.0.1:`port` (a new
/// connection, the whole answer read): time, status line, body.
fn http_get(port: u16, path: &str) -> (Duration, String, String) {
    use std::io::Read as _;
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(900))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let took = start.elapsed();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.lines().next().unwrap_or("").to_string();
    (took, status, answer)
}

fn store(r: &mut Report, grown: Option<tempfile::TempDir>) {
    let tmp = match grown {
        Some(t) => t,
        None => {
            let total = sized("LOAD_STORE_ORDERS", 1_000_000);
            println!("store: building a store of {total} orders…");
            let tmp = work_with(true);
            let step = sized("LOAD_GROW_STEP", 100_000).min(total);
            let (_, stopped) = grow_store(tmp.path(), total, step, true);
            if let Some(why) = stopped {
                println!("  building stopped early: {why}");
            }
            tmp
        }
    };
    let dir = tmp.path();
    let (_, status) = quick(dir, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    let orders = v["orders"].as_u64().unwrap_or(0);
    println!(
        "store: {} orders, {} {:.1} MB, no daemon",
        thousands(orders as f64),
        state_word(),
        state_bytes(dir) as f64 / 1e6
    );
    let median = |args: &[&str]| {
        let mut t: Vec<Duration> = (0..5).map(|_| quick(dir, args).0).collect();
        t.sort();
        t[2]
    };
    let s = median(&["status"]);
    r.verdict(
        "store",
        &format!(
            "`status` at {} orders, no daemon: from the counts the last clean close left (median of 5)",
            thousands(orders as f64)
        ),
        format!("{:.0} ms", s.as_secs_f64() * 1e3),
        "<= 50 ms at 1M",
        s <= Duration::from_millis(50),
    );
    // The usual case: the service runs, and `status` asks it over the
    // control socket instead of opening the store. With the HTTP API on,
    // for a GET whose filter matches one order (`api` is an http system of
    // grow's store: every order is pending for it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = fs::read_to_string(dir.join("config.toml"))
        .unwrap_or_default()
        .contains("id = \"api\"");
    if http {
        use sha2::Digest as _;
        let sha: String = sha2::Sha256::digest(TOKEN.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut config = fs::OpenOptions::new()
            .append(true)
            .open(dir.join("config.toml"))
            .unwrap();
        write!(
            config,
            "\n[http]\nlisten = \"127.0.0.1:{port}\"\n[[http.tokens]]\nname = \"load\"\nsha256 = \"{sha}\"\nsystems = [\"*\"]\n"
        )
        .unwrap();
    }
    let mut d = Proc::spawn(dir, &["run"], &[], "daemon-store.log", Stdio::null());
    let started = Instant::now();
    let ready = loop {
        let log = fs::read_to_string(dir.join("daemon-store.log")).unwrap_or_default();
        if log.contains("start-up scan done") {
            break Some(started.elapsed());
        }
        if d.poll().is_some() || started.elapsed() > Duration::from_secs(60) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    match ready {
        Some(up) => {
            let s = median(&["status"]);
            r.verdict(
                "store",
                &format!(
                    "`status` at {} orders with the daemon running (median of 5; the daemon was up in {:.0} ms)",
                    thousands(orders as f64),
                    up.as_secs_f64() * 1e3
                ),
                format!("{:.0} ms", s.as_secs_f64() * 1e3),
                "<= 50 ms at 1M",
                s <= Duration::from_millis(50),
            );
            if http {
                store_get(r, &mut d, port, orders);
            }
        }
        None => r.missing("store", "daemon", "not up within 60 s", "-"),
    }
    d.signal("-TERM");
    let m = d.wait(None);
    rss_verdict(
        r,
        "store",
        &format!(
            "daemon peak RSS at {} orders (start, `status`, GETs)",
            thousands(orders as f64)
        ),
        &m,
    );
    let o = median(&["inventory", "--sku", "SKU-0001"]);
    r.verdict(
        "store",
        "store open (`inventory --sku SKU-0001`, median of 5)",
        format!("{:.0} ms", o.as_secs_f64() * 1e3),
        "<= 100 ms",
        o <= Duration::from_millis(100),
    );
    let m = Proc::spawn(
        dir,
        &["orders", "list", "--json"],
        &[],
        "list.log",
        Stdio::null(),
    )
    .wait(None);
    if !m.ok() {
        r.missing(
            "store",
            "`orders list --json`",
            &m.failure(),
            "bounded memory",
        );
        return;
    }
    rss_verdict(
        r,
        "store",
        &format!(
            "`orders list --json` >/dev/null ({:.2} s), peak RSS",
            m.wall.as_secs_f64()
        ),
        &m,
    );
}

/// `GET /v10/orders/export?system_id=api` with a filter on `reference`
/// that matches one order of the store (the last generated, `SO#G…`):
/// median of 3 (1 when the first takes over 60 s), after one unfiltered
/// `limit=10` GET.
fn store_get(r: &mut Report, d: &mut Proc, port: u16, orders: u64) {
    let listening = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if listening.elapsed() > Duration::from_secs(30) {
            r.missing("store", "GET", "the HTTP API did not listen", "<= 100 ms");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (warm, status, _) = http_get(port, "/v10/orders/export?system_id=api&limit=10");
    println!(
        "  GET, no filter, limit=10: {:.0} ms ({status})",
        warm.as_secs_f64() * 1e3
    );
    let last = format!("G{:07}", orders.saturating_sub(1));
    let path = format!(
        "/v10/orders/export?system_id=api&filter_groups%5B0%5D%5Bfilters%5D%5B0%5D%5Bkey%5D=reference\
         &filter_groups%5B0%5D%5Bfilters%5D%5B0%5D%5Boperator%5D=eq\
         &filter_groups%5B0%5D%5Bfilters%5D%5B0%5D%5Bvalue%5D=SO%23{last}"
    );
    let mut times = Vec::new();
    let mut found = true;
    for _ in 0..3 {
        let (took, status, body) = http_get(port, &path);
        d.poll();
        found &= status.contains(" 200") && body.contains(&format!("SO#{last}"));
        times.push(took);
        if took > Duration::from_secs(60) {
            break;
        }
    }
    times.sort();
    let t = times[times.len() / 2];
    let list: Vec<String> = times
        .iter()
        .map(|t| format!("{:.0}", t.as_secs_f64() * 1e3))
        .collect();
    r.verdict(
        "store",
        &format!(
            "GET /v10/orders/export, a filter matching 1 of {} orders (reference eq; ms: {}){}",
            thousands(orders as f64),
            list.join(", "),
            if found {
                ""
            } else {
                " — the order was NOT in the answer"
            }
        ),
        format!("{:.0} ms", t.as_secs_f64() * 1e3),
        "<= 100 ms at 1M",
        found && t <= Duration::from_millis(100),
    );
}
const ROWS: [&str; 9] = [
    "ceiling", "side", "bulk", "grow", "big", "ack", "backlog", "store", "dump",
];

fn dump(r: &mut Report) {
    if current() == Backend::Postgres {
        println!("dump: on sled only (it restores a sled dump into PostgreSQL itself)");
        return;
    }
    let orders = sized("LOAD_DUMP_ORDERS", 100_000);
    let tmp = work();
    let dir = tmp.path();
    println!("dump: building a store of {orders} orders (exported to erp and wms)…");
    let (_, stopped) = grow_store(dir, orders, orders, true);
    if let Some(why) = stopped {
        r.missing("dump", "dump", &format!("store not built: {why}"), "-");
        return;
    }
    let m = measure(dir, &["dump", "--output", "one.ndjson"], "dump.log", None);
    if !m.ok() {
        r.missing("dump", "dump", &m.failure(), "-");
        return;
    }
    let size = fs::metadata(dir.join("one.ndjson")).map_or(0, |m| m.len());
    println!(
        "  dump, no daemon: {:.2} s ({} orders/s), {:.0} MB",
        m.wall.as_secs_f64(),
        thousands(rate(orders, m.wall)),
        size as f64 / 1e6
    );
    rss_verdict(r, "dump", "dump peak RSS", &m);

    // Through the running daemon: how long its commits waited.
    let log = dir.join("daemon.log");
    let mut daemon = Command::new(BIN)
        .arg("run")
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !dir.join("state/ordersync.sock").exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (took, _) = quick(dir, &["dump", "--output", "two.ndjson"]);
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    let held = fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("dump: the store copied"))
        .and_then(|l| l.split("held=").nth(1))
        .map(|h| h.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_else(|| "?".into());
    println!(
        "  dump through the daemon: {:.2} s; its commits waited {held}",
        took.as_secs_f64()
    );
    // Duration's Debug form: 1.2s, 523.1ms, 80.5µs, 700ns.
    let held_secs = [("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9), ("s", 1.0)]
        .iter()
        .find_map(|(unit, scale)| {
            held.strip_suffix(unit)
                .and_then(|n| n.parse::<f64>().ok())
                .map(|n| n * scale)
        })
        .unwrap_or(f64::MAX);
    r.verdict(
        "dump",
        &format!("commits waiting during a dump of {orders} orders"),
        held.clone(),
        "<= a few seconds (no step of the loop longer)",
        held_secs <= 3.0,
    );

    // Into a new state folder.
    fs::rename(dir.join("state"), dir.join("state.old")).unwrap();
    let m = measure(dir, &["restore", "one.ndjson"], "restore.log", None);
    if !m.ok() {
        r.missing("dump", "restore", &m.failure(), "-");
        return;
    }
    println!(
        "  restore into sled: {:.2} s ({} orders/s)",
        m.wall.as_secs_f64(),
        thousands(rate(orders, m.wall))
    );
    rss_verdict(r, "dump", "restore peak RSS", &m);
    let m = measure(
        dir,
        &["dump", "--output", "three.ndjson"],
        "dump3.log",
        None,
    );
    let sorted = |f: &str| {
        let text = fs::read_to_string(dir.join(f)).unwrap_or_default();
        let mut lines: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
        lines.sort();
        lines
    };
    let same = m.ok() && sorted("one.ndjson") == sorted("three.ndjson");
    r.verdict(
        "dump",
        "restored store dumps to the same records",
        same.to_string(),
        "true",
        same,
    );

    // PostgreSQL.
    if pg_base().is_none() {
        println!("  PostgreSQL: no server, skipped");
        return;
    }
    let url = pg_new_db(dir);
    let mut pg = ordersync::store::postgres::Postgres::connect(&url).unwrap();
    let t = Instant::now();
    let file = std::io::BufReader::new(fs::File::open(dir.join("one.ndjson")).unwrap());
    pg.restore_from(file).unwrap();
    let restore = t.elapsed();
    let t = Instant::now();
    let mut out = std::io::BufWriter::new(fs::File::create(dir.join("pg.ndjson")).unwrap());
    pg.dump_to(&mut out).unwrap();
    drop(out);
    let dumped = t.elapsed();
    println!(
        "  PostgreSQL: restore {:.2} s ({} orders/s, one transaction), dump {:.2} s ({} orders/s)",
        restore.as_secs_f64(),
        thousands(rate(orders, restore)),
        dumped.as_secs_f64(),
        thousands(rate(orders, dumped))
    );
    let same = sorted("one.ndjson") == sorted("pg.ndjson");
    r.verdict(
        "dump",
        "sled dump restored into PostgreSQL dumps to the same records",
        same.to_string(),
        "true",
        same,
    );
}

fn main() {
    if let Some(bin) = std::env::var_os("LOAD_AS_ORDERSYNC") {
        as_ordersync(bin);
    }
    // `cargo bench --bench load -- ROW…` runs some; `cargo test` runs none.
    // `cargo bench` passes `--bench`; `cargo test --benches` / `--all-targets`
    // / `--bench load` run this binary with no flag at all (harness = false),
    // so only `--bench` lets anything run.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--test" || a == "--list") || !args.iter().any(|a| a == "--bench") {
        println!("load: nothing run (use `cargo bench --bench load [-- ROW…]`)");
        return;
    }
    let named: Vec<&str> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    if let Some(bad) = named.iter().find(|a| !ROWS.contains(a)) {
        eprintln!("unknown row {bad:?}; rows: {}", ROWS.join(", "));
        std::process::exit(2);
    }
    let want = |row: &str| named.is_empty() || named.contains(&row);
    let on = backends();
    println!(
        "load: LOAD_SCALE={} (other sizes: see benches/load.rs), memory cap {} MiB, backends {}, binary {BIN}",
        scale(),
        mem_cap_kib() / 1024,
        on.iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(" then ")
    );
    let _ = std::io::stdout().flush();
    let _cleanup = PgCleanup;
    if on.contains(&Backend::Postgres) && pg_base().is_none() {
        eprintln!("LOAD_BACKEND: no PostgreSQL server (ORDERSYNC_TEST_PG, or .ci/pg-cluster)");
        std::process::exit(1);
    }
    let mut r = Report::default();
    let mut grown: Vec<(Backend, tempfile::TempDir)> = Vec::new();
    // Each row on every backend, one after the other, so that a row's two
    // figures are measured back to back.
    for row in ROWS.iter().filter(|row| want(row)) {
        for &backend in &on {
            set_current(backend);
            let start = Instant::now();
            match *row {
                "ceiling" => ceiling(&mut r),
                "side" => side(&mut r),
                "bulk" => bulk(&mut r),
                "grow" => grown.push((backend, grow(&mut r))),
                "big" => big(&mut r),
                "ack" => ack(&mut r),
                "backlog" => backlog(&mut r),
                "store" => {
                    // The store grown on this backend, if any.
                    let mine = grown
                        .iter()
                        .position(|(b, _)| *b == backend)
                        .map(|i| grown.remove(i).1);
                    store(&mut r, mine)
                }
                "dump" => dump(&mut r),
                _ => unreachable!(),
            }
            println!(
                "  ({row}{} took {:.0} s)\n",
                backend.tag(),
                start.elapsed().as_secs_f64()
            );
            let _ = std::io::stdout().flush();
            // Every database of the row is dropped, but grown stores'
            // (for `store`).
            let keep: Vec<&Path> = grown.iter().map(|(_, t)| t.path()).collect();
            pg_drop_dbs(&keep);
        }
    }
    println!("summary:");
    for l in &r.lines {
        println!("  {l}");
    }
}
