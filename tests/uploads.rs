//! Uploads straight to their final name, as SFTP clients do them: a writer
//! that stalls longer than `settle` with the file open must be waited for; a
//! writer killed mid-file leaves a partial file that is then rejected; and
//! a FIFO in the inbox, even one renamed over a candidate between the scan
//! and the read, must never block the daemon (issue 7).
//!
//! Each test runs the real daemon on a real folder and writes with real
//! processes or file handles.

mod common;

use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Work, order, wait_for};
use serde_json::json;

const LONG: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_millis(300);

fn config() -> String {
    format!(
        "[inbox]\nsettle = \"{}ms\"\n[[systems]]\nid = \"erp\"\nbatch_size = 1000\n",
        SETTLE.as_millis()
    )
}

/// Several orders as one pretty JSON document: any prefix of it is invalid.
fn document(prefix: &str, n: usize) -> Vec<u8> {
    let orders: Vec<_> = (0..n)
        .map(|i| order(&format!("{prefix}-{i}"), &[("A", 1)]))
        .collect();
    serde_json::to_vec_pretty(&json!({ "orders": orders })).unwrap()
}

/// Regression (issue 7): an upload that paused longer than `settle` with
/// the file open was read half-written, rejected ("EOF while parsing") and
/// moved away while the writer went on writing into it.
#[test]
fn a_writer_that_stalls_longer_than_settle_is_waited_for() {
    let w = Work::new(&config());
    let mut d = w.start(&[]);
    let doc = document("stall", 20);
    let (head, tail) = doc.split_at(doc.len() / 2);

    let mut f = fs::File::create(w.path("inbox/stall.json")).unwrap();
    f.write_all(head).unwrap();
    f.flush().unwrap();
    // Three times `settle` with the file open and unchanged.
    std::thread::sleep(SETTLE * 3);
    assert!(
        w.errors().is_empty() && w.archived().is_empty(),
        "read while its writer had it open: errors {:?}, archived {:?}\n{}",
        w.errors(),
        w.archived(),
        d.log_text()
    );
    assert_eq!(w.inbox(), ["stall.json"]);
    f.write_all(tail).unwrap();
    drop(f);

    wait_for("the finished upload", LONG, || {
        w.exported("erp").len() == 20
    });
    assert!(w.errors().is_empty(), "{:?}\n{}", w.errors(), d.log_text());
    assert_eq!(w.archived(), ["stall.json"], "read once");
    let day = common::names(&w.path("archive"))[0].clone();
    assert_eq!(
        fs::read(w.path(&format!("archive/{day}/stall.json"))).unwrap(),
        doc,
        "read whole"
    );
    assert!(d.terminate().success());
}

/// A writer killed mid-file (the kernel closes its file): the partial file
/// is held while the writer lives, then rejected with its report; files
/// dropped meanwhile are applied as usual.
#[test]
fn a_writer_killed_mid_file_leaves_a_partial_file_that_is_rejected() {
    let w = Work::new(&config());
    let mut d = w.start(&[]);
    let doc = document("killed", 5);
    let partial = String::from_utf8(doc[..doc.len() / 2].to_vec()).unwrap();

    // One process (`exec sleep` keeps the shell's pid and its fd 3), so
    // SIGKILL leaves nobody holding the file.
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3>"$0"; printf '%s' "$1" >&3; echo written; exec sleep 60"#)
        .arg(w.path("inbox/killed.json"))
        .arg(&partial)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh");
    let mut line = String::new();
    BufReader::new(writer.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "written");

    // Others arrive and are applied while the writer stalls.
    w.drop_json("during.json", &order("during", &[("A", 1)]));
    wait_for("the file dropped during the stall", LONG, || {
        w.exported_ids("erp") == ["during"]
    });
    std::thread::sleep(SETTLE * 3);
    assert!(
        w.errors().is_empty(),
        "read while its writer had it open: {:?}\n{}",
        w.errors(),
        d.log_text()
    );
    assert_eq!(w.inbox(), ["killed.json"]);

    writer.kill().unwrap();
    writer.wait().unwrap();
    wait_for("the partial file to be rejected", LONG, || {
        w.errors().contains(&"killed.json".to_string())
    });
    assert!(!w.report("killed.json").trim().is_empty());
    assert_eq!(
        fs::read(w.path("errors/killed.json")).unwrap(),
        partial.as_bytes()
    );

    w.drop_json("after.json", &order("after", &[("A", 1)]));
    wait_for("the file dropped after the kill", LONG, || {
        w.exported_ids("erp").len() == 2
    });
    let mut archived = w.archived();
    archived.sort();
    assert_eq!(archived, ["after.json", "during.json"]);
    assert!(d.terminate().success());
}

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {p:?}"
    );
}

/// Regression (issue 7): a FIFO renamed over a candidate between the scan
/// and the open blocked the daemon forever in `open` (no writer ever comes),
/// deaf to SIGTERM. Now it is opened non-blocking, seen not to be a regular
/// file, and left alone.
///
/// The race is made certain: the daemon starts on an inbox of many files and
/// takes them in one pass, oldest mtime first; the candidate has the newest
/// mtime, so once the first file is archived there is all the time of the
/// others to put a FIFO at its name before the daemon opens it.
#[test]
fn a_fifo_in_the_inbox_never_blocks_the_daemon() {
    let w = Work::new("[inbox]\nsettle = \"0s\"\n[[systems]]\nid = \"erp\"\n");
    // A FIFO that simply sits in the inbox.
    mkfifo(&w.path("inbox/pipe.json"));
    // More than one group of files (engine::GROUP_FILES) ahead: the first
    // group is archived while the candidate, in the last, is still unread.
    let ahead = 600;
    for i in 0..ahead {
        w.drop_json(
            &format!("o-{i:02}.json"),
            &order(&format!("o-{i}"), &[("A", 1)]),
        );
    }
    let name = w.path("inbox/swapped.json");
    fs::write(
        &name,
        serde_json::to_vec(&order("swapped", &[("A", 1)])).unwrap(),
    )
    .unwrap();
    fs::File::options()
        .write(true)
        .open(&name)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    let fifo = w.path("stage.fifo");
    mkfifo(&fifo);

    let mut d = w.spawn(&[]);
    let start = Instant::now();
    while w.archived().is_empty() {
        assert!(start.elapsed() < LONG, "nothing archived\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(1));
    }
    fs::rename(&fifo, &name).unwrap();
    assert!(
        w.archived().len() < ahead,
        "too late: the daemon already took every file ahead of the candidate"
    );

    // The daemon still works…
    w.drop_json("after.json", &order("after", &[("A", 1)]));
    wait_for(
        "a file dropped after the FIFO (the daemon must not be stuck in open)",
        Duration::from_secs(10),
        || w.exported_ids("erp").contains(&"after".to_string()),
    );
    // …read no FIFO…
    assert!(w.errors().is_empty(), "{:?}\n{}", w.errors(), d.log_text());
    for p in ["inbox/pipe.json", "inbox/swapped.json"] {
        let meta = fs::symlink_metadata(w.path(p)).unwrap();
        assert!(meta.file_type().is_fifo(), "{p} is left alone");
    }
    assert_eq!(w.exported_ids("erp").len(), ahead + 1);
    // …and stops promptly on SIGTERM.
    let asked = Instant::now();
    assert!(d.terminate().success());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        asked.elapsed()
    );
}
