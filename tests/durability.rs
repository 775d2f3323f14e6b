//! Power-loss durability (issue 15 §3): an inbox file may only be moved
//! into `archive/` after its effects are durable by `fsync`/`fdatasync` of
//! the store's files. sled 0.34's `flush` syncs with `sync_file_range`,
//! which flushes neither the drive's write cache nor the file's metadata:
//! after a power cut the file could already be in `archive/` while its
//! record was gone. A power cut cannot be staged in a test; what is checked
//! is the order of the system calls, under strace.
//!
//! Runs when `ORDERSYNC_E2E=1` at build time (as `.ci/run` sets, after
//! installing strace); without strace it then fails saying what to install.

mod common;

use std::process::Command;

use common::{Work, order};

/// One traced system call: the thread that made it, its name, its line.
struct Call {
    tid: String,
    name: String,
    line: String,
}

/// Parses `strace -f -y -o FILE` output: `PID name(args…`. A call split by
/// another thread's (`<unfinished …>` then `<… name resumed>`) is taken at
/// its start, which carries its arguments.
fn calls(trace: &str) -> Vec<Call> {
    trace
        .lines()
        .filter(|l| !l.contains(" resumed>"))
        .filter_map(|l| {
            let (tid, rest) = l.split_once(' ')?;
            let name = rest.trim_start().split_once('(')?.0;
            let word =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            (tid.chars().all(|c| c.is_ascii_digit()) && word(name)).then(|| Call {
                tid: tid.to_string(),
                name: name.to_string(),
                line: l.to_string(),
            })
        })
        .collect()
}

fn strace_missing() -> bool {
    Command::new("strace").arg("-V").output().is_err()
}

/// The strace'd `run --once` of one order file: between the group's flush
/// (sled's last `sync_file_range` of the `db` file) and the file's rename
/// into `archive/`, the thread that renames it made an `fsync`/`fdatasync`
/// of the `db` file. Before the fix it made none: sled's only fsyncs are
/// its flusher thread's, every 500 ms, on no schedule of ours.
#[test]
#[cfg_attr(
    not(e2e),
    ignore = "end-to-end under strace: run with ORDERSYNC_E2E=1 (needs strace)"
)]
fn the_store_is_fsynced_before_an_applied_file_is_archived() {
    if common::sled_only("the order of fsyncs of sled's db file, under strace") {
        return;
    }
    assert!(
        !strace_missing(),
        "ORDERSYNC_E2E=1 but strace is missing: apt-get install strace (or run without ORDERSYNC_E2E=1 to skip this test)"
    );
    let w = Work::new(common::TWO_SYSTEMS);
    // A store made beforehand, so the traced run is the group's, not sled's
    // creation of its files.
    let out = w.cmd(&["run", "--once"]);
    assert!(out.status.success(), "{out:?}");
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    let trace_file = w.path("trace.txt");
    let out = Command::new("strace")
        .args(["-f", "-y", "-qq", "-o"])
        .arg(&trace_file)
        .args([
            "-e",
            "trace=fsync,fdatasync,sync_file_range,rename,renameat,renameat2",
        ])
        .arg(env!("CARGO_BIN_EXE_ordersync"))
        .args(["run", "--once"])
        .current_dir(w.dir.path())
        .env("RUST_LOG", "info")
        .env_remove("ORDERSYNC_CONFIG")
        .output()
        .expect("run strace");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(w.archived(), ["o.json"], "{log}");
    let trace = std::fs::read_to_string(&trace_file).expect("strace output");
    let calls = calls(&trace);

    let db = format!("{}>", w.path("state/db").display());
    let on_db = |c: &Call| c.line.contains(&db);
    let archive = w.path("archive");
    let renamed = calls
        .iter()
        .position(|c| {
            c.name.starts_with("rename")
                && c.line.contains("o.json\"")
                && c.line.contains(&archive.display().to_string())
        })
        .unwrap_or_else(|| panic!("no rename of o.json into archive/ in:\n{trace}"));
    let flushed = calls[..renamed]
        .iter()
        .rposition(|c| c.name == "sync_file_range" && on_db(c))
        .unwrap_or_else(|| panic!("no sync_file_range of {db} before the rename in:\n{trace}"));
    let mover = &calls[renamed].tid;
    let synced = calls[flushed..renamed]
        .iter()
        .any(|c| (c.name == "fsync" || c.name == "fdatasync") && on_db(c) && &c.tid == mover);
    assert!(
        synced,
        "no fsync/fdatasync of {db} by the renaming thread between the flush and the rename:\n{}",
        calls[flushed..=renamed]
            .iter()
            .map(|c| c.line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
