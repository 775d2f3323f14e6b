//! `cargo bench`: the daemon's speed on this machine, measured with the real
//! (release) binary on real folders. Results go in docs/BENCHMARKS.md.
//!
//! - burst: 20,000 files renamed into the inbox at once (10% orders, 90%
//!   stock adjustments) with the daemon running: time until every file is
//!   applied and every order exported; the daemon's peak memory (VmHWM).
//! - latency: with the default settle of 1s, the time from an order's rename
//!   into the inbox to its export file in the outbox, over 20 orders.
//! - once: `run --once` over 5,000 files.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ordersync");

fn order(ext: &str) -> Vec<u8> {
    format!(
        r#"{{"external_id":"{ext}","type":"Sales Order","currency":"EUR","reference":"r","line_items":[{{"sku":"B","qty_ordered":1}}],"billing_address":{{"address1":"a","city":"c","country":"DE"}},"shipping_address":{{"address1":"a","city":"c","country":"DE"}},"shipping_rule":{{"name":"x","recovery":1}},"tax_rule":{{"name":"v","inclusive":true,"rate":0.19}}}}"#
    )
    .into_bytes()
}

fn setup(dir: &Path, settle: &str) {
    fs::create_dir_all(dir.join("inbox")).unwrap();
    fs::write(
        dir.join("config.toml"),
        format!("[inbox]\nsettle = \"{settle}\"\nrescan = \"1h\"\n[[systems]]\nid = \"erp\"\nbatch_size = 1000\n"),
    )
    .unwrap();
}

fn stage(dir: &Path, files: usize) -> Vec<std::path::PathBuf> {
    let staging = dir.join("staging");
    fs::create_dir_all(&staging).unwrap();
    (0..files)
        .map(|i| {
            let (name, body) = if i % 10 == 0 {
                (format!("o-{i:06}.json"), order(&format!("o-{i}")))
            } else {
                (format!("adj-{i:06}.csv"), b"sku,adjustment\nA,1\n".to_vec())
            };
            let p = staging.join(name);
            fs::write(&p, body).unwrap();
            p
        })
        .collect()
}

fn daemon(dir: &Path) -> Child {
    let c = Command::new(BIN)
        .arg("run")
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !dir.join("state/ordersync.sock").exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    c
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

fn exported_orders(dir: &Path) -> usize {
    let out = Command::new(BIN)
        .args(["status", "--json"])
        .current_dir(dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["systems"]["erp"]["written"].as_u64().unwrap_or(0) as usize
}

fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn stop(mut c: Child) {
    Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status()
        .unwrap();
    c.wait().unwrap();
}

fn burst(files: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir, "1s");
    let staged = stage(dir, files);
    let d = daemon(dir);
    let start = Instant::now();
    for p in &staged {
        fs::rename(p, dir.join("inbox").join(p.file_name().unwrap())).unwrap();
    }
    let dropped = start.elapsed();
    while count(&dir.join("inbox")) > 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    while exported_orders(dir) < files / 10 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    let rss = peak_rss_kib(d.id());
    stop(d);
    println!(
        "burst: {files} files dropped in {:.2}s, all applied and exported {:.2}s after the first drop ({:.0} files/s); daemon peak RSS {:.1} MiB",
        dropped.as_secs_f64(),
        took.as_secs_f64(),
        files as f64 / took.as_secs_f64(),
        rss as f64 / 1024.0
    );
}

fn latency(samples: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir, "1s");
    let d = daemon(dir);
    let outbox = dir.join("outbox/erp");
    let mut times = Vec::new();
    for i in 0..samples {
        let staged = dir.join(format!("o-{i}.json"));
        fs::write(&staged, order(&format!("lat-{i}"))).unwrap();
        let before = count(&outbox);
        let start = Instant::now();
        fs::rename(&staged, dir.join("inbox").join(format!("o-{i}.json"))).unwrap();
        while count(&outbox) == before {
            std::thread::sleep(Duration::from_millis(2));
        }
        times.push(start.elapsed());
    }
    stop(d);
    times.sort();
    println!(
        "latency (settle 1s): drop to export file over {samples} orders: min {:.3}s, median {:.3}s, max {:.3}s",
        times[0].as_secs_f64(),
        times[samples / 2].as_secs_f64(),
        times[samples - 1].as_secs_f64()
    );
}

fn once(files: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir, "0s");
    for p in stage(dir, files) {
        fs::rename(&p, dir.join("inbox").join(p.file_name().unwrap())).unwrap();
    }
    let start = Instant::now();
    let ok = Command::new(BIN)
        .args(["run", "--once"])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(ok.success());
    let took = start.elapsed();
    println!(
        "once: run --once over {files} files: {:.2}s ({:.0} files/s)",
        took.as_secs_f64(),
        files as f64 / took.as_secs_f64()
    );
}

fn main() {
    // `cargo bench -- NAME` runs one of them; `cargo test` runs none.
    let args: Vec<String> = std::env::args().collect();
    // Only under `cargo bench` (which passes --bench): `cargo test
    // --all-targets` runs bench binaries too, without flags.
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        return;
    }
    let want = |name: &str| {
        !args.iter().skip(1).any(|a| !a.starts_with('-')) || args.iter().any(|a| a == name)
    };
    if want("latency") {
        latency(20);
    }
    if want("once") {
        once(5_000);
    }
    if want("burst") {
        burst(20_000);
    }
}
