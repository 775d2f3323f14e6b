//! The README's five-minute walk-through, run as written (its `sh` block,
//! with the test's binary for `./target/release/ordersync`) on a copy of the config
//! `ordersync init` writes (`contrib/config.example.toml`, which the
//! repository's own `config.toml` matches in its systems, see below), once
//! with no daemon and once with the daemon running: it must give the outputs
//! it shows either way. The repository's `config.toml` is the developer's
//! working config: a local edit (a token, a taken port) must not change what
//! a test sees.

mod common;

use std::fs;
use std::process::Command;

use common::Work;

/// The `sh` block of the README's "A five-minute walk-through" section.
fn example() -> String {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## A five-minute walk-through")
        .nth(1)
        .expect("a walk-through section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an sh block");
    block
        .lines()
        .filter(|l| !l.starts_with("cargo build"))
        .map(|l| {
            l.replace(
                "./target/release/ordersync",
                env!("CARGO_BIN_EXE_ordersync"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_example(w: &Work) -> String {
    let out = Command::new("bash")
        .args(["-euc", &example()])
        .current_dir(w.dir.path())
        .env("RUST_LOG", "warn")
        .env_remove("ORDERSYNC_CONFIG")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn check_outputs(stdout: &str) {
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for want in [
        ["MUG-RED", "10", "0", "10"],
        ["MUG-RED", "10", "2", "8"],
        ["MUG-RED", "8", "0", "8"],
    ] {
        assert!(
            rows.iter().any(|r| r[..] == want[..]),
            "{want:?} not shown:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("tests/fixtures/order.json: valid: orders, 1 order(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(concat!(
            "line 2: regulate_inventory: expected true/false, 1/0 or yes/no, got \"maybe\"\n",
            "line 3: unknown order \"ghost\"\n"
        )),
        "{stdout}"
    );
    assert!(
        rows.iter().any(|r| r[..] == ["erp", "0", "0", "1"]),
        "{stdout}"
    );
}

fn workdir() -> Work {
    let w = Work::new(ordersync::cli::TEMPLATE);
    fs::create_dir_all(w.path("outbox")).unwrap();
    fs::create_dir_all(w.path("tests/fixtures")).unwrap();
    fs::write(
        w.path("tests/fixtures/order.json"),
        include_str!("fixtures/order.json"),
    )
    .unwrap();
    w
}

#[test]
fn the_worked_example_without_a_daemon() {
    check_outputs(&run_example(&workdir()));
}

#[test]
fn the_worked_example_with_the_daemon_running() {
    let w = workdir();
    let _d = w.start(&[]);
    check_outputs(&run_example(&w));
}
