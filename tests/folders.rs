//! The folders ordersync writes into are shared with partners we do not
//! trust (SFTP drops): whatever they put at a name — a folder, a symlink, a
//! FIFO, a file of their own — must never be taken for our file, replaced,
//! or followed (SPEC §3, §8, §9). And one system's broken outbox must not
//! hold back the others. Real binary, real folders.

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::Utc;
use common::{Work, order, wait_for};
use ordersync::config::Config;
use ordersync::engine::Engine;
use ordersync::store::ExportState;
use serde_json::Value;

const ONE_SYSTEM: &str = "[inbox]\nsettle = \"0s\"\n[[systems]]\nid = \"erp\"\n";
const LONG: Duration = Duration::from_secs(30);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The external ids in the regular export files of `system` (json format),
/// skipping anything else in the outbox.
fn ids_in_real_files(w: &Work, system: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for p in w.outbox(system) {
        let meta = fs::symlink_metadata(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !meta.file_type().is_file() || !name.ends_with(".json") {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&fs::read(&p).unwrap()) else {
            continue;
        };
        if let Some(orders) = v["orders"].as_array() {
            ids.extend(
                orders
                    .iter()
                    .map(|o| o["external_id"].as_str().unwrap().to_string()),
            );
        }
    }
    ids
}

/// Everything under `dir`, as relative paths with their content (files) or
/// kind, to show that nothing there changed.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in common::files_in(dir) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(&p).unwrap();
        let what = if meta.file_type().is_file() {
            String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned()
        } else if meta.is_dir() {
            format!("dir {:?}", snapshot(&p))
        } else if meta.file_type().is_symlink() {
            format!("symlink {:?}", fs::read_link(&p).unwrap())
        } else {
            "special".into()
        };
        out.push((name, what));
    }
    out
}

/// Regression (issue 7 §2): a folder created at the name of the next export
/// file made the write fail with "Is a directory"; the retry took the folder
/// for the file already written and marked the order `written` — with no
/// file anywhere. Names carry the time, so every name the next seconds could
/// give (sequences 1 to 3) is squatted.
#[test]
fn folders_at_the_next_export_names_are_stepped_over() {
    let w = Work::new(ONE_SYSTEM);
    let dir = w.path("outbox/erp");
    fs::create_dir_all(&dir).unwrap();
    let start = Utc::now().timestamp();
    let mut squatters = Vec::new();
    for t in start - 1..start + 20 {
        let when = chrono::DateTime::from_timestamp(t, 0).unwrap();
        for seq in 1..=3 {
            let p = dir.join(ordersync::export::file_name(
                when,
                seq,
                ordersync::config::Format::Json,
            ));
            fs::create_dir(&p).unwrap();
            squatters.push(p);
        }
    }
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    // The old code failed the first run and claimed the folder on the next.
    let first = w.cmd(&["run", "--once"]);
    w.cmd(&["run", "--once"]);

    assert_eq!(w.state("o-1", "erp").as_deref(), Some("written"));
    assert_eq!(
        ids_in_real_files(&w, "erp"),
        ["o-1"],
        "the order is in no real file"
    );
    for p in &squatters {
        assert!(
            p.is_dir() && fs::read_dir(p).unwrap().next().is_none(),
            "{p:?} changed"
        );
    }
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("name taken"),
        "not logged: {}",
        stderr(&first)
    );
    let real: Vec<String> = common::names(&dir)
        .into_iter()
        .filter(|n| fs::symlink_metadata(dir.join(n)).unwrap().is_file())
        .collect();
    assert_eq!(real.len(), 1, "{real:?}");
    assert!(real[0].ends_with("-000004.json"), "{real:?}");
}

/// What a partner might leave at an export file's name.
#[derive(Debug, Clone, Copy)]
enum Squatter {
    Folder,
    Symlink,
    Fifo,
    ForeignFile,
}

fn squat(at: &Path, kind: Squatter, w: &Work) {
    match kind {
        Squatter::Folder => fs::create_dir(at).unwrap(),
        Squatter::Symlink => {
            let target = w.path("elsewhere.json");
            fs::write(&target, "{\"orders\": []}\n").unwrap();
            symlink(&target, at).unwrap();
        }
        Squatter::Fifo => {
            let ok = Command::new("mkfifo").arg(at).status().unwrap().success();
            assert!(ok, "mkfifo");
        }
        Squatter::ForeignFile => fs::write(at, "{\"orders\": []}\n").unwrap(),
    }
}

/// Regression (issue 7 §2): after a crash between recording a batch and
/// writing its file, *anything* at the batch's name was taken for the file
/// (`path.exists()`), and the orders were marked written without a file.
/// Only a regular file with the recorded content counts; anything else is
/// left alone and the batch goes to the next sequence number.
#[test]
fn an_interrupted_batch_counts_only_its_own_file() {
    for kind in [
        Squatter::Folder,
        Squatter::Symlink,
        Squatter::Fifo,
        Squatter::ForeignFile,
    ] {
        let (w, e, id) = order_pending_for_erp();
        let batch = e
            .store
            .start_batch("erp", &[id], |seq| {
                format!("orders-20260101T000000Z-{seq:06}.json")
            })
            .unwrap();
        e.store.flush().unwrap();
        drop(e); // the "crash", before the file was written
        let at = w.path(&format!("outbox/erp/{}", batch.file));
        squat(&at, kind, &w);
        let before = snapshot(&w.path("outbox/erp"));
        let elsewhere = fs::read(w.path("elsewhere.json")).ok();

        let out = w.cmd(&["run", "--once"]);
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        assert_eq!(
            w.state("o-1", "erp").as_deref(),
            Some("written"),
            "{kind:?}"
        );
        assert_eq!(
            ids_in_real_files(&w, "erp"),
            ["o-1"],
            "{kind:?}: no real file has it"
        );
        // The squatter is untouched (and so is what a symlink points to).
        let after = snapshot(&w.path("outbox/erp"));
        let squatted = |s: &[(String, String)]| s.iter().find(|(n, _)| *n == batch.file).cloned();
        assert_eq!(squatted(&after), squatted(&before), "{kind:?}");
        assert_eq!(
            fs::read(w.path("elsewhere.json")).ok(),
            elsewhere,
            "{kind:?}"
        );
        assert!(
            common::names(&w.path("outbox/erp"))
                .iter()
                .any(|n| n.ends_with("-000002.json")),
            "{kind:?}: {after:?}"
        );
    }
}

/// The other side: an interrupted batch whose file did reach the outbox
/// (same size and SHA-256 as recorded) is finished without a second file.
#[test]
fn an_interrupted_batch_whose_file_is_there_is_not_written_again() {
    let (w, e, id) = order_pending_for_erp();
    let rec = e.store.order(id).unwrap().unwrap();
    let system = &e.config.systems[0];
    let doc = e.store.order_for_export(id).unwrap().unwrap();
    let bytes = ordersync::export::render(system, std::slice::from_ref(&doc));
    let batch = e
        .store
        .record_batches(
            "erp",
            &[(
                vec![(id, rec.revision)],
                Some(ordersync::store::Content::of(&bytes)),
            )],
            |seq| format!("orders-20260101T000000Z-{seq:06}.json"),
        )
        .unwrap()
        .remove(0);
    e.store.flush().unwrap();
    fs::write(w.path(&format!("outbox/erp/{}", batch.file)), &bytes).unwrap();
    drop(e); // the "crash", after the file was written

    w.run_once();
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("written"));
    assert_eq!(common::names(&w.path("outbox/erp")), vec![batch.file]);
}

/// Regression (issue 7 §3): with `outbox/erp` replaced by a symlink, export
/// files were written where it pointed and start-up removed `.*.tmp` files
/// there. Now nothing happens there, the error names the folder, the order
/// stays pending, and it is exported once the folder is real again.
#[test]
fn a_symlinked_outbox_is_refused_until_it_is_a_folder_again() {
    let w = Work::new(ONE_SYSTEM);
    fs::create_dir_all(w.path("outbox")).unwrap();
    fs::create_dir_all(w.path("elsewhere")).unwrap();
    fs::write(w.path("elsewhere/.precious.tmp"), "not ours").unwrap();
    symlink(w.path("elsewhere"), w.path("outbox/erp")).unwrap();
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));

    let out = w.cmd(&["run", "--once"]);
    assert!(!out.status.success(), "it claimed success");
    assert!(stderr(&out).contains("outbox/erp"), "{}", stderr(&out));
    assert_eq!(common::names(&w.path("elsewhere")), [".precious.tmp"]);
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("pending"));

    fs::remove_file(w.path("outbox/erp")).unwrap();
    fs::create_dir(w.path("outbox/erp")).unwrap();
    w.run_once();
    assert_eq!(ids_in_real_files(&w, "erp"), ["o-1"]);
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("written"));
    assert_eq!(common::names(&w.path("elsewhere")), [".precious.tmp"]);
}

/// Regression (issue 7 §3): `errors/`, `archive/` and `archive/<today>/`
/// were followed when they were symlinks. Now nothing is written where they
/// point, the file stays in the inbox, and it is handled once fixed.
#[test]
fn symlinked_archive_and_errors_folders_are_refused() {
    let today = Utc::now().format("%Y-%m-%d").to_string();
    for (link, bad) in [
        ("errors".to_string(), true),
        ("archive".to_string(), false),
        (format!("archive/{today}"), false),
    ] {
        let w = Work::new(ONE_SYSTEM);
        if link.starts_with("archive/") {
            fs::create_dir_all(w.path("archive")).unwrap();
        }
        fs::create_dir_all(w.path("elsewhere")).unwrap();
        symlink(w.path("elsewhere"), w.path(&link)).unwrap();
        if bad {
            w.drop_file("bad.json", "{not json");
        } else {
            w.drop_json("o.json", &order("o-1", &[("A", 1)]));
        }
        let name = if bad { "bad.json" } else { "o.json" };

        let out = w.cmd(&["run", "--once"]);
        assert!(!out.status.success(), "{link}: it claimed success");
        assert!(stderr(&out).contains(&*link), "{link}: {}", stderr(&out));
        assert!(
            common::names(&w.path("elsewhere")).is_empty(),
            "{link}: written where the symlink points: {:?}",
            common::names(&w.path("elsewhere"))
        );
        assert_eq!(w.inbox(), [name], "{link}: the file left the inbox");

        fs::remove_file(w.path(&link)).unwrap();
        w.run_once();
        assert!(w.inbox().is_empty(), "{link}: {:?}", w.inbox());
        if bad {
            assert_eq!(w.errors(), ["bad.json", "bad.json.error.txt"], "{link}");
        } else {
            assert_eq!(w.archived(), ["o.json"], "{link}");
            assert_eq!(ids_in_real_files(&w, "erp"), ["o-1"], "{link}");
        }
        assert!(common::names(&w.path("elsewhere")).is_empty(), "{link}");
    }
}

/// Regression (SPEC §9): a symlinked state folder was followed and the
/// database created where it pointed. Now it is refused, naming it.
#[test]
fn a_symlinked_state_folder_is_refused() {
    let w = Work::new(ONE_SYSTEM);
    fs::create_dir_all(w.path("elsewhere")).unwrap();
    symlink(w.path("elsewhere"), w.path("state")).unwrap();
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    let out = w.cmd(&["run", "--once"]);
    assert!(!out.status.success(), "it claimed success");
    assert!(stderr(&out).contains("state"), "{}", stderr(&out));
    assert!(common::names(&w.path("elsewhere")).is_empty());
    assert_eq!(w.inbox(), ["o.json"]);
}

/// wms first in the config, so that the old exporter, which returned at the
/// first system's error, never reached erp.
const WMS_FIRST: &str =
    "[inbox]\nsettle = \"0s\"\n[[systems]]\nid = \"wms\"\n[[systems]]\nid = \"erp\"\n";

/// Regression (issue 7): one system's failing outbox stopped the export of
/// every other system. Now erp gets its file, and `run --once` still fails,
/// naming wms.
#[test]
fn one_broken_outbox_does_not_block_the_other_systems() {
    for broken in ["file", "symlink"] {
        let w = Work::new(WMS_FIRST);
        fs::create_dir_all(w.path("outbox")).unwrap();
        if broken == "file" {
            fs::write(w.path("outbox/wms"), "not a folder").unwrap();
        } else {
            fs::create_dir_all(w.path("elsewhere")).unwrap();
            symlink(w.path("elsewhere"), w.path("outbox/wms")).unwrap();
        }
        w.drop_json("o.json", &order("o-1", &[("A", 1)]));
        let out = w.cmd(&["run", "--once"]);
        assert!(!out.status.success(), "{broken}: it claimed success");
        assert!(stderr(&out).contains("wms"), "{broken}: {}", stderr(&out));
        assert_eq!(ids_in_real_files(&w, "erp"), ["o-1"], "{broken}");
        assert_eq!(w.state("o-1", "erp").as_deref(), Some("written"));
        assert_eq!(w.state("o-1", "wms").as_deref(), Some("pending"));
        assert_eq!(w.archived(), ["o.json"], "{broken}");
    }
}

/// The daemon too: erp keeps getting its exports while wms's outbox is
/// broken, and wms catches up once it is fixed.
#[test]
fn the_daemon_keeps_exporting_to_the_others() {
    let w = Work::new(WMS_FIRST);
    fs::create_dir_all(w.path("outbox")).unwrap();
    fs::write(w.path("outbox/wms"), "not a folder").unwrap();
    let mut d = w.start(&[]);
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    wait_for("o-1 exported to erp", LONG, || {
        ids_in_real_files(&w, "erp") == ["o-1"]
    });
    w.drop_json("o2.json", &order("o-2", &[("A", 1)]));
    wait_for("o-2 exported to erp", LONG, || {
        ids_in_real_files(&w, "erp").len() == 2
    });
    assert!(d.log_text().contains("export failed"), "{}", d.log_text());
    assert_eq!(w.state("o-2", "wms").as_deref(), Some("pending"));

    fs::remove_file(w.path("outbox/wms")).unwrap();
    wait_for("wms to catch up", LONG, || {
        ids_in_real_files(&w, "wms").len() == 2
    });
    assert!(d.terminate().success(), "{}", d.log_text());
}

/// Regression (issue 7): an uploaded `x.error.txt` is rejected like any
/// unsupported file, but `status` counted it as a second rejected file (it
/// counted every `*.error.txt`). It gets its own report and counts once.
#[test]
fn a_rejected_file_named_like_a_report_counts_once() {
    let w = Work::new(ONE_SYSTEM);
    w.drop_file("x.error.txt", "line 1: looks like a report\n");
    w.run_once();
    assert_eq!(w.errors(), ["x.error.txt", "x.error.txt.error.txt"]);
    assert!(
        w.report("x.error.txt").contains("unsupported"),
        "{}",
        w.report("x.error.txt")
    );
    assert_eq!(w.json(&["status"])["errors"], 1);

    w.drop_file("bad.json", "{not json");
    w.run_once();
    assert_eq!(w.json(&["status"])["errors"], 2);
}

/// A folder with one order applied (through the library) and pending for
/// erp, not yet exported; the open engine; the order's id.
fn order_pending_for_erp() -> (Work, Engine, uuid::Uuid) {
    let w = Work::new(ONE_SYSTEM);
    w.drop_json("o.json", &order("o-1", &[("A", 1)]));
    let config = Config::load(&w.path("config.toml")).unwrap();
    let e = Engine::open(config.clone()).unwrap();
    let c =
        ordersync::inbox::scan(&config.paths.inbox, &config.inbox, &mut HashSet::new()).unwrap();
    e.process(&c[0]).unwrap();
    let ids = e
        .store
        .ids_in_state("erp", ExportState::Pending, 10)
        .unwrap();
    assert_eq!(ids.len(), 1);
    (w, e, ids[0])
}
