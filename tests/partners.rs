//! One drop folder per partner (`[[systems]] inbox`): files there are taken
//! like the shared inbox's, acks there may only name that system, names do
//! not clash across inboxes, and a symlinked partner inbox is refused.

mod common;

use std::fs;

use common::{Work, acks, names, order};

const PARTNERS: &str = r#"
[inbox]
settle = "0s"
[[systems]]
id = "erp"
inbox = "partners/erp/inbox"
[[systems]]
id = "wms"
"#;

fn drop_in(w: &Work, folder: &str, name: &str, content: impl AsRef<[u8]>) {
    // A short hidden temporary name: the final name may be 255 bytes.
    let tmp = w.path(&format!("{folder}/.upload.tmp"));
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, w.path(&format!("{folder}/{name}"))).unwrap();
}

fn archived(w: &Work) -> Vec<String> {
    let mut out = Vec::new();
    for day in common::files_in(&w.path("archive")) {
        out.extend(names(&day));
    }
    out.sort();
    out
}

/// An ack file in erp's own inbox naming wms is rejected whole, with a
/// report naming the line and why; nothing of it is applied.
#[test]
fn a_partner_inbox_rejects_acks_for_another_system() {
    let w = Work::new(PARTNERS);
    w.drop_json("o.json", &order("o-1", &[("A", 2)]));
    w.run_once();
    assert!(w.path("partners/erp/inbox").is_dir(), "created at start");
    drop_in(
        &w,
        "partners/erp/inbox",
        "acks.csv",
        acks(&[("o-1", "erp", true), ("o-1", "wms", false)]),
    );
    w.run_once();
    assert_eq!(
        fs::read_to_string(w.path("errors/erp--acks.csv.error.txt")).unwrap(),
        "line 3: system_id \"wms\": this file is in the drop folder of system \"erp\", whose acks may only name \"erp\"\n"
    );
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("written"));
    assert_eq!(w.state("o-1", "wms").as_deref(), Some("written"));
    assert_eq!(w.stock("A"), (0, 2, -2), "not regulated");

    // The same rows from the shared inbox are fine: the shared inbox
    // takes acks for any system.
    w.drop_file(
        "acks.csv",
        acks(&[("o-1", "erp", true), ("o-1", "wms", false)]),
    );
    w.run_once();
    assert_eq!(w.state("o-1", "wms").as_deref(), Some("acked"));
    assert_eq!(w.stock("A"), (-2, 0, -2));
}

/// Orders arrive through either folder and go to every system; a file of
/// the same name and content in both inboxes is two files (the record of
/// what was applied names the inbox: `erp/stock.csv`), and both are kept
/// in the archive under names that do not clash.
#[test]
fn orders_and_files_arrive_through_either_folder() {
    let w = Work::new(PARTNERS);
    fs::create_dir_all(w.path("partners/erp/inbox")).unwrap();
    w.drop_json("shop.json", &order("from-shop", &[("A", 1)]));
    drop_in(
        &w,
        "partners/erp/inbox",
        "erp.json",
        serde_json::to_vec(&order("from-erp", &[("A", 1)])).unwrap(),
    );
    let adjust = "sku,adjustment\nA,5\n";
    w.drop_file("stock.csv", adjust);
    drop_in(&w, "partners/erp/inbox", "stock.csv", adjust);
    w.run_once();
    for id in ["from-shop", "from-erp"] {
        for system in ["erp", "wms"] {
            assert_eq!(
                w.state(id, system).as_deref(),
                Some("written"),
                "{id} {system}"
            );
        }
    }
    // Two adjustments of 5: neither taken for a re-send of the other.
    assert_eq!(w.stock("A"), (10, 2, 8));
    assert_eq!(
        archived(&w),
        ["erp--erp.json", "erp--stock.csv", "shop.json", "stock.csv"]
    );
    assert!(common::names(&w.path("partners/erp/inbox")).is_empty());
    let timeline = w.json(&["orders", "show", "from-erp"])["timeline"].to_string();
    assert!(timeline.contains("erp/erp.json"), "{timeline}");
}

/// The running daemon watches the partner's inbox too, and `status --wait`
/// waits for files there.
#[test]
fn the_daemon_takes_files_from_a_partner_inbox() {
    // No rescan: only the watch on the partner's inbox brings its files.
    let w = Work::new(&PARTNERS.replace("settle = \"0s\"", "settle = \"1s\"\nrescan = \"0s\""));
    let _d = w.start(&[]);
    drop_in(
        &w,
        "partners/erp/inbox",
        "o.json",
        serde_json::to_vec(&order("o-1", &[("A", 2)])).unwrap(),
    );
    w.ok(&["status", "--wait", "--timeout", "60s"]);
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("written"));
    drop_in(
        &w,
        "partners/erp/inbox",
        "ack.csv",
        acks(&[("o-1", "erp", true)]),
    );
    let out = w.ok(&["status", "--wait", "--timeout", "60s"]);
    let errors: Vec<String> = common::files_in(&w.path("errors"))
        .iter()
        .map(|p| fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().eq(["erp", "0", "0", "1"])),
        "{out}"
    );
}

/// A partner inbox that is a symlink is refused like every folder shared
/// with partners: nothing in it is read or moved, `check` names it.
#[test]
fn a_symlinked_partner_inbox_is_refused() {
    let w = Work::new(PARTNERS);
    fs::create_dir_all(w.path("elsewhere")).unwrap();
    fs::create_dir_all(w.path("partners/erp")).unwrap();
    std::os::unix::fs::symlink(w.path("elsewhere"), w.path("partners/erp/inbox")).unwrap();
    fs::write(
        w.path("elsewhere/o.json"),
        serde_json::to_vec(&order("o-1", &[("A", 1)])).unwrap(),
    )
    .unwrap();
    let out = w.cmd(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "systems \"erp\" inbox: ./partners/erp/inbox is not a folder (it is a symlink)"
        ),
        "{err}"
    );
    let out = w.cmd(&["run", "--once"]);
    assert!(out.status.success());
    assert_eq!(
        common::names(&w.path("elsewhere")),
        ["o.json"],
        "left alone"
    );
    assert_eq!(w.json(&["status"])["orders"], 0);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("not a real folder"), "{log}");
    // The partner's inbox as a real folder again: its files are taken.
    fs::remove_file(w.path("partners/erp/inbox")).unwrap();
    fs::rename(w.path("elsewhere"), w.path("partners/erp/inbox")).unwrap();
    w.run_once();
    assert_eq!(w.json(&["status"])["orders"], 1);
}

/// Two systems may not share a drop folder, nor use one of the five.
#[test]
fn partner_inboxes_are_folders_of_their_own() {
    let w = Work::new(concat!(
        "[[systems]]\nid = \"erp\"\ninbox = \"inbox\"\n",
        "[[systems]]\nid = \"a\"\ninbox = \"p\"\n",
        "[[systems]]\nid = \"b\"\ninbox = \"p\"\n",
    ));
    let out = w.cmd(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("systems[0].inbox: is the same folder as paths.inbox"),
        "{err}"
    );
    assert!(
        err.contains("systems[2].inbox: is the same folder as the inbox of system \"a\""),
        "{err}"
    );
}

/// The `erp--` prefix can make a name too long for `errors/` or even for
/// the folder: such files are still rejected or archived (under a shortened
/// name, the report giving the original), never stuck in the inbox.
#[test]
fn long_names_from_a_partner_inbox_are_kept_shortened() {
    let w = Work::new(PARTNERS);
    fs::create_dir_all(w.path("partners/erp/inbox")).unwrap();
    let bad = format!("{}.json", "b".repeat(240));
    let good = format!("{}.csv", "g".repeat(250));
    drop_in(&w, "partners/erp/inbox", &bad, "{}");
    drop_in(&w, "partners/erp/inbox", &good, "sku,in_stock\nA,1\n");
    w.run_once();
    assert!(common::names(&w.path("partners/erp/inbox")).is_empty());
    let errors = common::names(&w.path("errors"));
    let report = errors
        .iter()
        .find(|n| n.ends_with(".error.txt"))
        .expect("a report");
    assert!(
        report.starts_with("erp--bbb") && report.contains('…'),
        "{report}"
    );
    let text = fs::read_to_string(w.path(&format!("errors/{report}"))).unwrap();
    assert!(
        text.contains(&format!("original name: \"erp/{bad}\"")),
        "{text}"
    );
    let kept = archived(&w);
    assert_eq!(kept.len(), 1);
    assert!(
        kept[0].starts_with("erp--ggg") && kept[0].ends_with(".csv"),
        "{kept:?}"
    );
    assert_eq!(w.stock("A"), (1, 0, 1));
}
