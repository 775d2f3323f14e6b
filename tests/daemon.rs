//! The daemon (`ordersync run`): start-up scan, live drops, polling, missed
//! events, settle, ready markers, the control socket, systemd notifications
//! and shutdown. The real binary as a subprocess, except where the loop is
//! driven directly to withhold file system events.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::thread::sleep;
use std::time::Duration;

use common::{Work, acks, order, wait_for};
use ordersync::config::Config;
use ordersync::daemon::{Hint, Systemd, run_loop};
use ordersync::engine::Engine;
use serde_json::json;

const LONG: Duration = Duration::from_secs(20);

fn config(extra_inbox: &str) -> String {
    format!("[inbox]\nsettle = \"200ms\"\n{extra_inbox}\n[[systems]]\nid = \"erp\"\n")
}

#[test]
fn start_up_scan_live_drops_status_and_shutdown() {
    let w = Work::new(&config("rescan = \"1h\""));
    // Dropped while the daemon was down.
    w.drop_json("before.json", &order("o-before", &[("A", 1)]));
    let mut d = w.start(&[]);
    wait_for("the start-up file", LONG, || w.exported("erp").len() == 1);

    // Dropped while it runs: exported on the event, not at a rescan (1h).
    w.drop_json("live.json", &order("o-live", &[("A", 2)]));
    wait_for("the live file", LONG, || w.exported("erp").len() == 2);

    // Commands go through the control socket while it runs.
    let status = w.json(&["status"]);
    assert_eq!(status["orders"], 2);
    assert_eq!(status["systems"]["erp"]["written"], 2);
    assert_eq!(w.stock("A"), (0, 3, -3));
    w.drop_file("ack.csv", acks(&[("o-live", "erp", true)]));
    wait_for("the ack", LONG, || w.stock("A") == (-2, 1, -3));
    assert_eq!(w.state("o-live", "erp").as_deref(), Some("acked"));
    let out = w.ok(&["reexport", "--system", "erp", "--since", "0"]);
    assert!(out.starts_with("1 order(s)"), "{out}");
    // The daemon exports it again at once.
    wait_for("the re-export", LONG, || w.exported("erp").len() == 3);
    let missing = w.cmd(&["orders", "show", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no order"));

    // A second daemon on the same state folder is refused.
    let second = w.cmd(&["run"]);
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another ordersync process"), "{err}");
    // ...and did not take the first one's socket away.
    assert_eq!(w.json(&["status"])["orders"], 2);

    let status = d.terminate();
    assert!(status.success(), "exit {status}:\n{}", d.log_text());
    assert!(!w.path("state/ordersync.sock").exists());
    // Without the daemon the CLI opens the store itself.
    assert_eq!(w.json(&["status"])["orders"], 2);
    let log = d.log_text();
    assert!(
        log.contains("applied") && log.contains("file=\"live.json\""),
        "{log}"
    );
}

#[test]
fn control_socket_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let w = Work::new(&config(""));
    let _d = w.start(&[]);
    let mode = fs::metadata(w.path("state/ordersync.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn poll_mode_finds_files_without_events() {
    let w = Work::new(&config("poll = true\nrescan = \"1h\""));
    let mut d = w.start(&[]);
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    wait_for("the polled file", LONG, || w.exported("erp").len() == 1);
    assert!(
        d.log_text().contains("mode=\"polling\""),
        "{}",
        d.log_text()
    );
    assert!(d.terminate().success());
}

/// The loop driven directly, with a hint channel that never gets a file
/// system event: the periodic rescan must find the file anyway, and an
/// overflow hint must trigger a full scan.
#[test]
fn rescans_find_files_whose_events_were_missed() {
    for (rescan, hint) in [("300ms", None), ("0s", Some(Hint::Rescan))] {
        let w = Work::new(&format!(
            "[inbox]\nsettle = \"0s\"\nrescan = \"{rescan}\"\n[[systems]]\nid = \"erp\"\n"
        ));
        let engine = Engine::open(Config::load(&w.path("config.toml")).unwrap()).unwrap();
        let (tx, rx) = sync_channel(4);
        let stop = AtomicBool::new(false);
        let (engine, stop) = (&engine, &stop);
        std::thread::scope(|s| {
            let looping = s
                .spawn(move || run_loop(engine, &rx, stop, &mut || true, &mut Systemd::from_env()));
            // A first file, with the hint its event would give, proves the
            // loop is past its start-up scan: the next file, which gets no
            // event, can only be found by a rescan or the overflow hint.
            w.drop_json("first.json", &order("o-0", &[("A", 1)]));
            tx.send(Hint::Changed).unwrap();
            wait_for("the first file", LONG, || {
                common::files_in(&w.path("outbox/erp")).len() == 1
            });
            w.drop_json("missed.json", &order("o-1", &[("A", 1)]));
            if let Some(h) = hint.clone() {
                tx.send(h).unwrap();
            }
            wait_for(&format!("rescan {rescan} / {hint:?}"), LONG, || {
                common::files_in(&w.path("outbox/erp")).len() == 2
            });
            stop.store(true, Ordering::SeqCst);
            tx.send(Hint::Wake).unwrap();
            looping.join().unwrap().unwrap();
        });
    }
}

/// A file written in chunks over ~3 s, each well sooner than `settle` after
/// the last (300 ms against 2 s: a margin for a loaded machine), is read
/// once, whole. Any prefix of it is invalid JSON, so an early
/// read would have landed in errors/.
#[test]
fn a_slowly_written_file_is_read_once_whole() {
    let w = Work::new("[inbox]\nsettle = \"2s\"\n[[systems]]\nid = \"erp\"\n");
    let _d = w.start(&[]);
    let orders: Vec<_> = (0..10)
        .map(|i| order(&format!("slow-{i}"), &[("A", 1)]))
        .collect();
    let text = serde_json::to_string_pretty(&json!(orders)).unwrap();
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(text.len() / 10 + 1).collect();
    let mut f = fs::File::create(w.path("inbox/slow.json")).unwrap();
    for c in &chunks {
        f.write_all(c).unwrap();
        f.flush().unwrap();
        sleep(Duration::from_millis(300));
    }
    drop(f);
    wait_for("the slow file", LONG, || w.exported("erp").len() == 10);
    assert!(w.errors().is_empty(), "read early: {:?}", w.errors());
    let archived = common::files_in(&w.path("archive"));
    let content = fs::read_to_string(archived[0].join("slow.json")).unwrap();
    assert_eq!(content, text);
}

#[test]
fn upload_temporaries_are_ignored_until_renamed() {
    let w = Work::new(&config(""));
    let _d = w.start(&[]);
    let text = serde_json::to_vec(&order("o-1", &[("A", 1)])).unwrap();
    let mut f = fs::File::create(w.path("inbox/o.json.filepart")).unwrap();
    f.write_all(&text[..20]).unwrap();
    f.flush().unwrap();
    sleep(Duration::from_millis(700)); // well past settle: still not read
    assert_eq!(w.inbox(), ["o.json.filepart"]);
    f.write_all(&text[20..]).unwrap();
    drop(f);
    fs::rename(w.path("inbox/o.json.filepart"), w.path("inbox/o.json")).unwrap();
    wait_for("the renamed file", LONG, || w.exported("erp").len() == 1);
    assert!(w.errors().is_empty());
}

#[test]
fn ready_marker_mode_waits_for_the_marker_and_removes_it() {
    let w = Work::new(&config("ready_marker = \".done\""));
    let _d = w.start(&[]);
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    sleep(Duration::from_millis(700)); // well past settle: no marker yet
    assert_eq!(w.inbox(), ["o.json"]);
    assert!(w.outbox("erp").is_empty());
    w.drop_file("o.json.done", "");
    wait_for("the marked file", LONG, || w.exported("erp").len() == 1);
    wait_for("the marker's removal", LONG, || w.inbox().is_empty());
}

/// sd_notify: READY=1 after the start-up scan, STATUS= lines, WATCHDOG=1 at
/// half of WATCHDOG_USEC, STOPPING=1 on SIGTERM.
#[test]
fn systemd_notifications() {
    let w = Work::new(&config(""));
    let sock_path = w.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // A missing message fails the test rather than hanging it.
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    let (got, reader) = common::read_notifications(sock);
    let mut d = w.spawn(&[
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let count = |what: &str| got.lock().unwrap().iter().filter(|l| *l == what).count();
    wait_for("READY=1", LONG, || count("READY=1") == 1);
    // READY comes after the start-up scan: the socket exists, the scan ran.
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("STATUS=watching")),
        "{:?}",
        got.lock().unwrap()
    );
    // The watchdog keeps being pinged (every 200 ms here) while idle.
    wait_for("a first WATCHDOG=1", LONG, || count("WATCHDOG=1") >= 1);
    let pings = count("WATCHDOG=1");
    wait_for("more WATCHDOG=1", LONG, || count("WATCHDOG=1") >= pings + 2);
    let status = d.terminate();
    assert!(status.success());
    // STOPPING=1 is delivered before the process exits.
    reader.join().unwrap();
    let got = got.lock().unwrap();
    let ready = got.iter().position(|l| l == "READY=1").unwrap();
    let stopping = got
        .iter()
        .position(|l| l == "STOPPING=1")
        .expect("STOPPING=1");
    assert!(ready < stopping);
}

/// 20,000 files dropped at once: every one is processed, none missed, even
/// though the event queue overflows. (How long it takes is measured by
/// `cargo bench`, see docs/BENCHMARKS.md, not asserted here.)
#[test]
fn a_burst_of_20000_files_is_fully_processed() {
    const FILES: usize = 20_000;
    let w = Work::new(
        "[inbox]\nsettle = \"200ms\"\nrescan = \"1h\"\n[[systems]]\nid = \"erp\"\nbatch_size = 1000\n",
    );
    let mut d = w.start(&[("RUST_LOG", "warn")]);
    // Written aside and renamed in, as fast as possible.
    let staging = w.path("staging");
    fs::create_dir(&staging).unwrap();
    for i in 0..FILES {
        let (name, body) = if i % 10 == 0 {
            (
                format!("o-{i:05}.json"),
                serde_json::to_vec(&order(&format!("o-{i}"), &[("B", 1)])).unwrap(),
            )
        } else {
            (format!("adj-{i:05}.csv"), b"sku,adjustment\nA,1\n".to_vec())
        };
        fs::write(staging.join(&name), body).unwrap();
    }
    for entry in fs::read_dir(&staging).unwrap() {
        let p = entry.unwrap().path();
        fs::rename(&p, w.path("inbox").join(p.file_name().unwrap())).unwrap();
    }
    wait_for("the burst to drain", Duration::from_secs(600), || {
        w.inbox().is_empty()
    });
    let orders = FILES / 10;
    wait_for("the burst's exports", LONG, || {
        w.json(&["status"])["systems"]["erp"]["written"] == orders
    });
    assert!(d.terminate().success());
    assert!(w.errors().is_empty());
    assert_eq!(w.archived().len(), FILES);
    assert_eq!(w.stock("A").0, (FILES - orders) as i64);
    assert_eq!(w.stock("B").1, orders as i64);
}

/// A CLI command (here: this test process) holding the store for a moment
/// when the daemon starts does not stop it: it waits for the store.
#[test]
fn the_daemon_waits_for_a_cli_command_holding_the_store() {
    let w = Work::new(&config(""));
    let held = Engine::open(Config::load(&w.path("config.toml")).unwrap()).unwrap();
    let mut d = w.spawn(&[]);
    sleep(Duration::from_millis(500));
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "gave up:\n{}",
        d.log_text()
    );
    drop(held);
    wait_for("the daemon's control socket", LONG, || {
        w.path("state/ordersync.sock").exists()
    });
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    wait_for("the file", LONG, || w.exported("erp").len() == 1);
    assert!(d.terminate().success());
}

/// A network share going away and coming back, and an outbox that cannot be
/// written for a while: the daemon logs, keeps running, and catches up.
#[test]
fn the_daemon_survives_its_folders_misbehaving() {
    let w = Work::new(&config("rescan = \"1h\""));
    let mut d = w.start(&[]);

    // The inbox vanishes (share unmounted) and comes back as a new folder.
    fs::remove_dir_all(w.path("inbox")).unwrap();
    wait_for("the error to be logged", LONG, || {
        d.log_text().contains("cannot scan the inbox")
    });
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "it stopped:\n{}",
        d.log_text()
    );
    fs::create_dir(w.path("inbox")).unwrap();
    wait_for("the new inbox to be watched", LONG, || {
        d.log_text().contains("watching it again")
    });
    // Rescans are an hour apart: only the new watch's events can find it.
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    wait_for("the file in the new inbox", LONG, || {
        w.exported("erp").len() == 1
    });

    // The outbox folder is replaced by a file: exports fail and are retried.
    fs::remove_dir_all(w.path("outbox/erp")).unwrap();
    fs::write(w.path("outbox/erp"), "not a folder").unwrap();
    w.drop_json("o2.json", &order("o-2", &[("A", 1)]));
    wait_for("the export failure to be logged", LONG, || {
        d.log_text().contains("export failed")
    });
    assert_eq!(w.state("o-2", "erp").as_deref(), Some("pending"));
    fs::remove_file(w.path("outbox/erp")).unwrap();
    wait_for("the retried export", LONG, || {
        w.exported("erp").len() == 1 && w.state("o-2", "erp").as_deref() == Some("written")
    });
    assert!(d.terminate().success(), "{}", d.log_text());
}

/// The process asks the kernel for no transparent huge pages (mimalloc
/// would map 2 MiB pages, resident as a whole however little is used).
#[test]
fn the_daemon_runs_without_transparent_huge_pages() {
    let w = Work::new(&config("rescan = \"1h\""));
    let mut d = w.start(&[]);
    let status = fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let flag = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    d.terminate();
    // Kernels before 5.0 do not report the flag.
    if let Some(flag) = flag {
        assert_eq!(flag, "0", "{status}");
    }
}
