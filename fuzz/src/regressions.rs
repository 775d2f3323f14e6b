//! Every input of every target's seed corpus through its checks, without
//! AFL: the inputs of the findings fixed so far are in the corpora, so this
//! is their regression test (`cargo test --lib` here: the target binaries
//! link only with AFL's runtime, `cargo afl build`). It builds ordersync with
//! the features the daemon ships with: the root crate's own tests also turn
//! on its dev-dependencies' features (serde_json's `float_roundtrip` among
//! them, which hid the long-number finding from them).

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a corpus entry").path();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("{}", path.display());
        check(&bytes);
        n += 1;
    }
    assert!(n > 0, "{}: no seeds", dir.display());
}

#[test]
fn inbox_file() {
    replay("inbox_file", crate::inbox_file);
}

#[test]
fn export_query() {
    replay("export_query", crate::export_query);
}

#[test]
fn mark_body() {
    replay("mark_body", crate::mark_body);
}

#[test]
fn control_request() {
    replay("control_request", crate::control_request);
}

#[test]
fn config() {
    replay("config", crate::config);
}

#[test]
fn dump() {
    replay("dump", crate::dump);
}
