//! The state folder and the things around it that a long-running daemon
//! meets (issue 7): the folder deleted or replaced under it, a full disk, an
//! inbox file that can never be moved, a name too long for its report, a
//! hostile or slow control-socket client, and file names that try to forge
//! log lines. Each test is a regression test for what broke; the real binary
//! as a subprocess, real folders, a real sled store and, where the test needs
//! one, a real tmpfs.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::{Daemon, Tmpfs, Work, order, wait_for};

const LONG: Duration = Duration::from_secs(30);

/// Settles fast and rescans every second, so the daemon wakes on its own.
const CONFIG: &str = "[inbox]\nsettle = \"100ms\"\nrescan = \"1s\"\n[[systems]]\nid = \"erp\"\n";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits (at most `timeout`) for the daemon to exit on its own.
fn wait_exit(d: &mut Daemon, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(s) = d.child.try_wait().expect("wait") {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn run_once(w: &Work) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ordersync"))
        .args(["run", "--once"])
        .current_dir(w.dir.path())
        .env("RUST_LOG", "info")
        .env_remove("ORDERSYNC_CONFIG")
        .output()
        .expect("run ordersync")
}

// ---- 1. The state folder ---------------------------------------------------

/// Read commands used to create an empty store where there was none (a
/// wrong `--config`, a state folder deleted under a running daemon), showing
/// zero orders as if they had been lost. They never create one now.
#[test]
fn read_commands_never_create_a_store() {
    let w = Work::new(CONFIG);
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["orders", "list"],
        &["inventory"],
        &["reexport", "--system", "erp", "--since", "0"],
    ] {
        let out = w.cmd(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        let place = match w.store_url() {
            None => w.path("state").display().to_string(),
            Some(_) => "the database at postgresql://".into(),
        };
        assert!(
            err.contains(&format!("no store in {place}"))
                && err.contains("(`run`, `init`, `status --wait` and `restore` create it)"),
            "{args:?}: {err}"
        );
        assert!(!w.path("state/db").exists(), "{args:?} created a store");
        if let Some(url) = w.store_url() {
            let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
            let schema: Option<String> = c
                .query_one("SELECT to_regclass('ordersync_schema')::text", &[])
                .unwrap()
                .get(0);
            assert_eq!(schema, None, "{args:?} created a store");
        }
    }
    // `run --once` creates it; then the read commands work.
    w.run_once();
    assert_eq!(w.json(&["status"])["orders"], 0);
}

/// The state folder deleted while the daemon ran: it went on writing into
/// the deleted database, and the CLI created a new empty store; orders were
/// lost. Now the daemon stops with exit 1, naming the folder, and leaves the
/// inbox alone.
#[test]
fn deleted_state_folder_stops_the_daemon() {
    if common::sled_only("deletes the state folder, which holds sled's database") {
        return;
    }
    let w = Work::new(CONFIG);
    let mut d = w.start(&[]);
    w.drop_json("first.json", &order("o-1", &[("A", 1)]));
    wait_for("the first order", LONG, || w.exported("erp").len() == 1);

    fs::remove_dir_all(w.path("state")).unwrap();
    w.drop_json("second.json", &order("o-2", &[("A", 1)]));
    let status = wait_exit(&mut d, LONG)
        .unwrap_or_else(|| panic!("the daemon kept running:\n{}", d.log_text()));
    assert_eq!(status.code(), Some(1), "{}", d.log_text());
    let log = d.log_text();
    let state = w.path("state");
    assert!(
        log.contains(&format!(
            "the state folder {} was deleted or replaced",
            state.display()
        )),
        "{log}"
    );
    assert!(w.inbox().contains(&"second.json".to_string()), "{log}");
    // The CLI reports the missing store instead of making an empty one.
    let out = w.cmd(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no store in"), "{}", stderr(&out));
    assert!(!w.path("state").exists());
}

/// The same with the folder replaced (moved away and made again): another
/// folder is not the database the daemon has open.
#[test]
fn replaced_state_folder_stops_the_daemon() {
    if common::sled_only("replaces the state folder, which holds sled's database") {
        return;
    }
    let w = Work::new(CONFIG);
    let mut d = w.start(&[]);
    w.drop_json("first.json", &order("o-1", &[("A", 1)]));
    wait_for("the first order", LONG, || w.exported("erp").len() == 1);

    fs::rename(w.path("state"), w.path("state.old")).unwrap();
    fs::create_dir(w.path("state")).unwrap();
    w.drop_json("second.json", &order("o-2", &[("A", 1)]));
    let status = wait_exit(&mut d, LONG)
        .unwrap_or_else(|| panic!("the daemon kept running:\n{}", d.log_text()));
    assert_eq!(status.code(), Some(1), "{}", d.log_text());
    assert!(
        d.log_text().contains("was deleted or replaced"),
        "{}",
        d.log_text()
    );
    assert!(w.inbox().contains(&"second.json".to_string()));
    assert!(!w.path("state/db").exists(), "a new store was created");
}

/// `[store] compression` applies when the store is made: a store made with
/// it keeps working when the config is changed afterwards (sled itself
/// refuses to open a store with another setting), and the other way round.
#[test]
fn a_store_keeps_its_compression_when_the_config_changes() {
    if common::sled_only("[store] compression is sled's, read back from state/conf") {
        return;
    }
    for made in [true, false] {
        let config = |on: bool| format!("{CONFIG}[store]\ncompression = {on}\n");
        let w = Work::new(&config(made));
        w.drop_json("first.json", &order("o-1", &[("A", 1)]));
        w.run_once();
        w.write_config(&config(!made));
        w.drop_json("second.json", &order("o-2", &[("A", 2)]));
        let out = run_once(&w);
        assert!(out.status.success(), "made with {made}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("keeps the setting it was made with"),
            "{}",
            stderr(&out)
        );
        let mut ids = w.exported_ids("erp");
        ids.sort();
        assert_eq!(ids, ["o-1", "o-2"]);
        assert_eq!(w.stock("A").1, 3);
        let conf = fs::read(w.path("state/conf")).unwrap();
        assert!(
            String::from_utf8_lossy(&conf).contains(&format!("use_compression: {made}")),
            "{}",
            String::from_utf8_lossy(&conf)
        );
    }
}

// ---- 2. A full disk ----------------------------------------------------------

/// Fills the file system holding `path` with one file; returns its size.
fn fill(path: &Path) -> u64 {
    let mut f = fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    // Then byte by byte, so not even a small write fits.
    for c in [&chunk[..], &chunk[..1]] {
        while f.write_all(c).is_ok() {
            n += c.len() as u64;
        }
    }
    let _ = f.sync_all();
    n
}

/// After the disk holding the state folder had been full, the daemon kept
/// failing until restarted: sled keeps the first IO error and fails every
/// later write with it. Now it reopens the store and applies everything once
/// space is freed, exactly once, without a restart.
#[test]
fn full_disk_under_the_state_folder_recovers_without_restart() {
    if common::sled_only("fills the disk under the state folder, where sled writes") {
        return;
    }
    let w = Work::new(CONFIG);
    let Some(_mount) = Tmpfs::mount(&w.path("state"), "16m") else {
        eprintln!("skipped: cannot mount tmpfs");
        return;
    };
    let mut d = w.start(&[]);
    w.drop_json("first.json", &order("o-1", &[("A", 1)]));
    wait_for("the first order", LONG, || w.exported("erp").len() == 1);

    let filler = w.path("state/filler");
    fill(&filler);
    w.drop_json("second.json", &order("o-2", &[("A", 1)]));
    w.drop_file("stock.csv", "sku,adjustment\nA,5\n");
    w.drop_json("third.json", &order("o-3", &[("B", 2)]));
    // sled writes into log segments it has already allocated, so a few small
    // files may still be applied with the disk full; the exports after them
    // fail. Either way the store must fail before the space is freed, or the
    // test proves nothing.
    wait_for("the store to fail on the full disk", LONG, || {
        d.log_text().contains("the store failed")
    });
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log_text());
    // The log and `status` named no folder, and `status` said sled's
    // "IO error: the database is closed after an error and not yet
    // reopened" twice. Now they name the folder, the cause and the
    // remedy, once.
    let state = w.path("state").display().to_string();
    let remedy = format!("full (no space left on the device): free space in {state};");
    let log = d.log_text();
    let failed = log
        .lines()
        .find(|l| l.contains("the store failed"))
        .unwrap();
    assert_eq!(failed.matches(&remedy).count(), 1, "{log}");
    let out = w.cmd(&["status"]);
    let err = stderr(&out);
    if !out.status.success() {
        assert_eq!(err.matches(&remedy).count(), 1, "{err}");
        assert!(!err.contains("IO error"), "{err}");
    }

    fs::remove_file(&filler).unwrap();
    wait_for("every file applied", Duration::from_secs(120), || {
        w.inbox().is_empty()
    });
    wait_for("every order exported", LONG, || {
        w.exported("erp").len() >= 3
    });
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the daemon exited:\n{}",
        d.log_text()
    );
    let mut ids = w.exported_ids("erp");
    ids.sort();
    assert_eq!(ids, ["o-1", "o-2", "o-3"], "{}", d.log_text());
    // The stock adjustment is not idempotent: applied twice it would be 10.
    assert_eq!(w.stock("A"), (5, 2, 3), "{}", d.log_text());
    assert_eq!(w.stock("B"), (0, 2, -2));
    let mut archived = w.archived();
    archived.sort();
    assert_eq!(
        archived,
        ["first.json", "second.json", "stock.csv", "third.json"]
    );
    assert!(w.errors().is_empty(), "{:?}", w.errors());
    let status = d.terminate();
    assert!(status.success(), "{}", d.log_text());
}

// ---- 3. Files that cannot be handled -----------------------------------------

/// An immutable inbox file (`chattr +i`): read fine, never moved, even by
/// root. Made mutable again when dropped so the folder can be removed.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Immutable(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Sets a file's mtime `secs` seconds into the past.
fn age(path: &Path, secs: u64) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

/// A file that could never be moved made `run --once` exit 1 at once,
/// without handling the files after it. Now the others are handled and the
/// exit code (1) and message name it.
#[test]
fn run_once_goes_past_a_file_that_cannot_be_moved() {
    let w = Work::new(CONFIG);
    w.drop_json("stuck.json", &order("o-stuck", &[("A", 1)]));
    age(&w.path("inbox/stuck.json"), 60);
    let Some(_guard) = Immutable::set(&w.path("inbox/stuck.json")) else {
        eprintln!("skipped: cannot make a file immutable (chattr +i)");
        return;
    };
    w.drop_json("later.json", &order("o-later", &[("A", 1)]));
    w.drop_file("bad.json", "{ not json");

    let out = run_once(&w);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1 file(s) could not be processed") && err.contains("\"stuck.json\""),
        "{err}"
    );
    assert_eq!(w.archived(), ["later.json"], "{err}");
    assert_eq!(w.errors(), ["bad.json", "bad.json.error.txt"], "{err}");
    assert_eq!(w.inbox(), ["stuck.json"]);
    assert!(w.exported_ids("erp").contains(&"o-later".to_string()));
}

/// In the daemon such a file is retried with backoff, logged at error level
/// once (not at every retry), and the files after it are handled.
#[test]
fn daemon_logs_a_stuck_file_once_and_goes_on() {
    let w = Work::new(CONFIG);
    w.drop_json("stuck.json", &order("o-stuck", &[("A", 1)]));
    age(&w.path("inbox/stuck.json"), 60);
    let Some(guard) = Immutable::set(&w.path("inbox/stuck.json")) else {
        eprintln!("skipped: cannot make a file immutable (chattr +i)");
        return;
    };
    let mut d = w.start(&[]);
    w.drop_json("later.json", &order("o-later", &[("A", 1)]));
    wait_for("the later file", LONG, || w.archived() == ["later.json"]);
    // Retries at 1 s, 2 s, 4 s…: at least two of them.
    std::thread::sleep(Duration::from_secs(4));
    let log = d.log_text();
    let errors = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("stuck.json"))
        .count();
    assert_eq!(errors, 1, "{log}");
    // Once it can be moved, it is (already applied: without effect).
    drop(guard);
    wait_for("the stuck file", LONG, || w.inbox().is_empty());
    assert_eq!(w.stock("A"), (0, 2, -2));
    assert!(d.terminate().success(), "{}", d.log_text());
}

/// An invalid file that cannot be moved got a new report at every retry
/// (`bad.json.error.txt`, `bad.json.1.error.txt`…: 8 in 90 s). Its report
/// is written once now, and the file joins it when it can be moved.
#[test]
fn an_unmovable_invalid_file_gets_one_report() {
    let w = Work::new(CONFIG);
    w.drop_file("bad.json", "{ not json");
    age(&w.path("inbox/bad.json"), 60);
    let Some(guard) = Immutable::set(&w.path("inbox/bad.json")) else {
        eprintln!("skipped: cannot make a file immutable (chattr +i)");
        return;
    };
    let mut d = w.start(&[]);
    wait_for("the first report", LONG, || !w.errors().is_empty());
    // Retries at 1 s, 2 s, 4 s…: at least two of them.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(w.errors(), ["bad.json.error.txt"], "{}", d.log_text());
    drop(guard);
    wait_for("the file moved", LONG, || w.inbox().is_empty());
    assert_eq!(
        w.errors(),
        ["bad.json", "bad.json.error.txt"],
        "{}",
        d.log_text()
    );
    assert!(
        w.report("bad.json").contains("line 1"),
        "{}",
        w.report("bad.json")
    );
    assert!(d.terminate().success(), "{}", d.log_text());
}

/// A rejected file whose name is too long to take `.error.txt` (NAME_MAX is
/// 255 bytes) stayed in the inbox forever, and `run --once` exited 1 without
/// handling later files. It goes to errors/ under a shortened name now, with
/// a report that gives the original name: nothing is lost.
#[test]
fn a_name_too_long_for_its_report_is_rejected_under_a_shorter_name() {
    let w = Work::new(CONFIG);
    let long = format!("{}.json", "x".repeat(245));
    assert_eq!(long.len(), 250);
    w.drop_file(&long, "{ not json");
    age(&w.path(&format!("inbox/{long}")), 60);
    w.drop_json("later.json", &order("o-later", &[("A", 1)]));

    let out = run_once(&w);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(w.inbox().is_empty(), "{:?}", w.inbox());
    assert_eq!(w.archived(), ["later.json"]);
    let errors = w.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let short = errors
        .iter()
        .find(|n| !n.ends_with(".error.txt"))
        .unwrap()
        .clone();
    assert!(short.contains('…') && short.ends_with(".json"), "{short}");
    let report = w.report(&short);
    assert!(
        report.contains("expected") || report.contains("line 1"),
        "{report}"
    );
    assert!(report.contains(&long), "{report}");
}

// ---- 4. The control socket ---------------------------------------------------

/// The daemon's peak resident memory, in KiB.
fn vm_hwm(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Peak memory (KiB) of `ordersync ARGS` run in `w`'s folder with its
/// output discarded, as its parent sees it (`getrusage` of the children).
fn cli_peak_kib(w: &Work, args: &[&str]) -> u64 {
    let out = Command::new("python3")
        .args([
            "-c",
            "import resource, subprocess, sys\n\
             r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n\
             print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
            env!("CARGO_BIN_EXE_ordersync"),
        ])
        .args(args)
        .current_dir(w.path(""))
        .env("RUST_LOG", "warn")
        .env_remove("ORDERSYNC_CONFIG")
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let (code, kib) = text.trim().split_once(' ').expect("code and peak");
    assert_eq!(code, "0", "ordersync {args:?}: {}", stderr(&out));
    kib.parse().expect("KiB")
}

/// `orders list` gathered the whole listing in memory, in the daemon (one
/// JSON answer on the control socket) and in the CLI (which read all of it
/// before printing): at a million orders 527 MiB. It is streamed now, so
/// neither grows with the listing: here a listing of ~12 MB raises neither
/// the daemon's peak nor the CLI's by half of that.
#[test]
fn a_long_listing_is_streamed_through_the_daemon() {
    let w = Work::new(CONFIG);
    let d = w.start(&[]);
    let n = 8_000;
    let file: String = (0..n)
        .map(|i| {
            let mut o = order(&format!("list-{i:05}"), &[("A", 1)]);
            o["reference"] = serde_json::json!(format!("{i:05}-{}", "r".repeat(1_300)));
            format!("{o}\n")
        })
        .collect();
    w.drop_file("many.ndjson", file);
    wait_for("the orders", Duration::from_secs(300), || {
        w.archived().len() == 1
    });
    w.ok(&["status"]); // the control socket's first client, before measuring
    let before = vm_hwm(d.child.id());
    let out = w.cmd(&["orders", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = out.stdout.len() as u64;
    assert!(bytes > 10_000_000, "only {bytes} bytes listed");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON listing");
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), n);
    let ids: std::collections::BTreeSet<&str> = listed
        .iter()
        .filter_map(|o| o["external_id"].as_str())
        .collect();
    assert_eq!(ids.len(), n, "every order once");
    let after = vm_hwm(d.child.id());
    let allowed = bytes / 1024 / 2;
    assert!(
        after < before + allowed,
        "the daemon's peak went from {before} KiB to {after} KiB listing {bytes} bytes"
    );
    // The CLI: the JSON listing (with each order's long reference) against
    // the text listing (without), which reads the same orders. A CLI that
    // holds its output peaks higher by about the difference, or more.
    let text = w.cmd(&["orders", "list"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let extra = (bytes - text.stdout.len() as u64) / 1024;
    assert!(extra > 8_000, "the JSON listing is only {extra} KiB longer");
    let compare = |how: &str| {
        let short = cli_peak_kib(&w, &["orders", "list"]);
        let long = cli_peak_kib(&w, &["orders", "list", "--json"]);
        assert!(
            long < short + extra / 2,
            "{how}: the CLI's peak {long} KiB for the JSON listing, {short} KiB for the text listing ({extra} KiB shorter)"
        );
    };
    compare("through the daemon");
    // Without a daemon the CLI lists from the store itself, as bounded.
    drop(d);
    compare("without a daemon");
}

/// A request line was read without a size limit: 3 GiB raised the daemon's
/// memory to 3 GB. A 100 MB line is refused now, with memory bounded.
#[test]
fn an_oversized_control_request_is_refused_with_bounded_memory() {
    let w = Work::new(CONFIG);
    let d = w.start(&[]);
    let before = vm_hwm(d.child.id());
    let mut s = UnixStream::connect(w.path("state/ordersync.sock")).unwrap();
    let mut line = b"{\"args\": [\"status\", \"".to_vec();
    line.resize(100 * 1024 * 1024, b'x');
    line.extend_from_slice(b"\"]}\n");
    // The daemon stops reading early and closes: the write may fail.
    let _ = s.write_all(&line);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    drop(s);
    let after = vm_hwm(d.child.id());
    assert!(
        after < before + 50 * 1024,
        "peak memory went from {before} KiB to {after} KiB"
    );
    assert!(
        answer.is_empty() || answer.contains("request larger than"),
        "{answer}"
    );
    // Still answering.
    assert_eq!(w.json(&["status"])["orders"], 0);
}

/// Clients were served one at a time: one sending a byte every 5 s held up
/// `status` for two minutes. Now each client has its own thread and a
/// deadline for its whole request.
#[test]
fn a_slow_control_client_does_not_delay_status() {
    let w = Work::new(CONFIG);
    let _d = w.start(&[]);
    let sock = w.path("state/ordersync.sock");
    let slow = std::thread::spawn(move || {
        let mut s = UnixStream::connect(sock).unwrap();
        // A byte every 2 s for up to 12 s, until the daemon hangs up.
        for b in b"{\"args\":[\"status\"]}" {
            if s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let v = w.json(&["status"]);
    let took = start.elapsed();
    assert_eq!(v["orders"], 0);
    assert!(took < Duration::from_secs(3), "status took {took:?}");
    slow.join().unwrap();
}

/// The 17th client was refused while 16 slow ones held the socket, and the
/// CLI saw its connection reset: `status` failed. It waits now, and is
/// answered once a slow client's deadline (5 s) frees a place.
#[test]
fn status_waits_while_sixteen_slow_clients_hold_the_socket() {
    let w = Work::new(CONFIG);
    let _d = w.start(&[]);
    let sock = w.path("state/ordersync.sock");
    // Connected, sending nothing: each is held until its deadline.
    let slow: Vec<UnixStream> = (0..16)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let out = w.cmd(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["orders"], 0);
    drop(slow);
}

// ---- 5. Log lines --------------------------------------------------------------

/// File names were logged raw: a newline in a name forged a log line.
#[test]
fn file_names_cannot_forge_log_lines() {
    let w = Work::new(CONFIG);
    w.drop_json("a\nERROR forged.json", &order("o-1", &[("A", 1)]));
    w.drop_file("b\nERROR forged.json", "{ not json");
    let out = run_once(&w);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("applied") && err.contains("rejected"), "{err}");
    for line in err.lines() {
        assert!(!line.starts_with("ERROR forged"), "forged line: {err}");
    }
    assert_eq!(w.archived(), ["a\nERROR forged.json"]);

    // The daemon too.
    let d = w.start(&[]);
    w.drop_json("c\nERROR forged.json", &order("o-2", &[("A", 1)]));
    // Logged quoted and escaped (the log line follows the move: wait for it).
    wait_for("the third file's log line", LONG, || {
        d.log_text().contains(r#"file="c\nERROR forged.json""#)
    });
    let log = d.log_text();
    for line in log.lines() {
        assert!(!line.starts_with("ERROR forged"), "forged line: {log}");
    }
}

/// `status --json` of `w`, and whether the sled store's counts at rest
/// were there to answer it (`state/counts.json`).
fn status_at(w: &Work) -> (serde_json::Value, bool) {
    let at_rest = w.path("state/counts.json").exists();
    let out = w.ok(&["status", "--json"]);
    (serde_json::from_str(&out).expect("status JSON"), at_rest)
}

/// `status` with no daemon opened sled, whose open grows with the store
/// (361 ms at 100,000 orders). A clean close now leaves the kept counts
/// beside the store, and `status` answers from them while nothing opened
/// the store since: the same answer as from the store itself, after a
/// clean `run --once`, a daemon's clean stop, and not after a kill (the
/// open removed them; `status` opens the store and is exact).
#[test]
fn status_at_rest_says_what_the_store_says() {
    if common::sled_only("the counts at rest are sled's") {
        return;
    }
    let w = Work::new(CONFIG);
    for i in 0..3 {
        w.drop_json(
            &format!("o{i}.json"),
            &order(&format!("rest-{i}"), &[("A", 1)]),
        );
    }
    w.run_once();
    let (fast, at_rest) = status_at(&w);
    assert!(at_rest, "no counts at rest after a clean run --once");
    assert_eq!(fast["orders"], 3, "{fast}");
    assert_eq!(fast["systems"]["erp"]["written"], 3, "{fast}");
    // The same as the store says when opened (the file moved away).
    fs::rename(w.path("state/counts.json"), w.path("counts.kept")).unwrap();
    let (slow, at_rest) = status_at(&w);
    assert!(!at_rest);
    assert_eq!(fast, slow);
    // That status opened the store and closed it: the file is back.
    assert!(w.path("state/counts.json").exists());

    // A daemon killed after it applied more: no stale counts answer.
    let mut d = w.start(&[]);
    assert!(
        !w.path("state/counts.json").exists(),
        "an open store kept its counts at rest"
    );
    w.drop_json("o3.json", &order("rest-3", &[("A", 1)]));
    wait_for("the fourth order", Duration::from_secs(30), || {
        w.archived().len() == 4
    });
    let _ = d.child.kill();
    let _ = d.child.wait();
    let (after_kill, at_rest) = status_at(&w);
    assert!(!at_rest, "counts at rest after a kill");
    assert_eq!(after_kill["orders"], 4, "{after_kill}");

    // A clean stop leaves them, and they are exact.
    let mut d = w.start(&[]);
    w.drop_json("o4.json", &order("rest-4", &[("A", 1)]));
    wait_for("the fifth order", Duration::from_secs(30), || {
        w.archived().len() == 5
    });
    assert_eq!(d.terminate().code(), Some(0));
    let (fast, at_rest) = status_at(&w);
    assert!(at_rest, "no counts at rest after a clean stop");
    assert_eq!(fast["orders"], 5, "{fast}");
    fs::remove_file(w.path("state/counts.json")).unwrap();
    let (slow, _) = status_at(&w);
    assert_eq!(fast, slow);

    // Counts that do not go with the `db` file are not taken.
    let (_, at_rest) = status_at(&w);
    assert!(at_rest);
    let text = fs::read_to_string(w.path("state/counts.json")).unwrap();
    let forged = text.replacen("\"db\":[", "\"db\":[1", 1);
    fs::write(w.path("state/counts.json"), forged).unwrap();
    let (checked, _) = status_at(&w);
    assert_eq!(checked, slow, "forged counts were taken");
}
