//! Logs for journald (issue 10): when stderr is the journal (`JOURNAL_STREAM`
//! names it), every line carries its syslog priority as an sd-daemon(3)
//! prefix, so `journalctl -p warning` shows exactly the warnings and errors.
//! Runs the real binary with stderr in a file whose device:inode is put in
//! `JOURNAL_STREAM`, as systemd does with its journal stream.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::process::{Command, Stdio};

use common::{TWO_SYSTEMS, Work};

/// A work folder whose `run --once` logs at all three levels: an order
/// applied and exported (info), a symlink left alone (warning), and an
/// outbox folder that is a regular file (error).
fn noisy_work() -> Work {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file(
        "order.json",
        fs::read("tests/fixtures/order.json").expect("fixture"),
    );
    std::os::unix::fs::symlink("/etc/hostname", w.path("inbox/link.json")).expect("symlink");
    fs::create_dir_all(w.path("outbox")).expect("outbox");
    fs::write(w.path("outbox/wms"), "not a folder").expect("outbox/wms");
    w
}

/// Runs `run --once` with stderr in `log`; `journal` sets JOURNAL_STREAM
/// to the given value, or to the log file's own device:inode with "self".
fn run_once(w: &Work, journal: Option<&str>) -> String {
    let log = w.path("stderr.log");
    let file = fs::File::create(&log).expect("log file");
    let meta = file.metadata().expect("log metadata");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ordersync"));
    cmd.args(["run", "--once"])
        .current_dir(w.dir.path())
        .env("RUST_LOG", "info")
        .env_remove("ORDERSYNC_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(file);
    match journal {
        Some("self") => {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        Some(v) => {
            cmd.env("JOURNAL_STREAM", v);
        }
        None => {}
    }
    // Exit 1: the wms export failed, which is the error we want logged.
    let status = cmd.status().expect("run ordersync");
    assert_eq!(
        status.code(),
        Some(1),
        "run --once should fail on outbox/wms"
    );
    fs::read_to_string(&log).expect("read log")
}

#[test]
fn under_the_journal_every_line_carries_its_priority() {
    let w = noisy_work();
    let log = run_once(&w, Some("self"));
    let (mut errors, mut warnings, mut infos) = (0, 0, 0);
    for line in log.lines() {
        // `<N>` then the text a terminal would show, whose level word must
        // agree with N.
        let (prefix, text) = line.split_at(line.find('>').map_or(0, |i| i + 1));
        let level = text.split_whitespace().next().unwrap_or("");
        let expect = match level {
            "ERROR" | "ordersync:" => {
                errors += 1;
                "<3>"
            }
            "WARN" => {
                warnings += 1;
                "<4>"
            }
            "INFO" => {
                infos += 1;
                "<6>"
            }
            _ => panic!("a line without a known level: {line:?}\n{log}"),
        };
        assert_eq!(prefix, expect, "priority of {line:?}\n{log}");
    }
    assert!(errors >= 1 && warnings >= 1 && infos >= 1, "{log}");
    // Structured fields stay visible in the text.
    assert!(log.contains("file=\"order.json\""), "{log}");
    assert!(log.contains("system=erp"), "{log}");
    assert!(log.contains("kind=\"symlink\""), "{log}");

    // What `journalctl -p warning` would keep: priority 4 or lower, and only
    // those; every one of them is a warning or an error.
    let kept: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("<3>") || l.starts_with("<4>"))
        .collect();
    assert_eq!(kept.len(), errors + warnings, "{log}");
    assert!(
        kept.iter().any(|l| l.contains("not a regular file")),
        "{log}"
    );
    assert!(kept.iter().all(|l| !l.contains(" INFO ")), "{log}");
}

#[test]
fn on_a_terminal_or_file_the_text_is_plain() {
    let w = noisy_work();
    let log = run_once(&w, None);
    assert!(log.contains(" WARN ") && log.contains(" INFO "), "{log}");
    assert!(!log.lines().any(|l| l.starts_with('<')), "{log}");
}

#[test]
fn an_inherited_journal_stream_naming_another_file_is_ignored() {
    // A child whose stderr was redirected still inherits JOURNAL_STREAM:
    // it must only be believed when it names stderr itself.
    let w = noisy_work();
    let log = run_once(&w, Some("1:2"));
    assert!(log.contains(" WARN "), "{log}");
    assert!(!log.lines().any(|l| l.starts_with('<')), "{log}");
}
