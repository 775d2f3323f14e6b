//! `GET /metrics` as an operator's tools read it (issue 15 §5): `promtool
//! check metrics` clean, counters with a known label set at 0 from the
//! start (so `increase()` sees the first rejection), `ordersync_build_info`
//! and the process metrics. `tests/http.rs` (`metrics_match_status`)
//! checks the values against `status` through an OpenMetrics parser.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Work, free_port, token_sha256, wait_for};

fn e2e() -> bool {
    std::env::var("ORDERSYNC_E2E").as_deref() == Ok("1")
}

/// `curl` of a URL: the body, or `None` (and a note) when curl is missing
/// outside ORDERSYNC_E2E=1.
fn curl(args: &[&str]) -> Option<String> {
    let out = match Command::new("curl").arg("-sSf").args(args).output() {
        Ok(o) => o,
        Err(e) => {
            assert!(!e2e(), "curl is needed (.ci/run installs it): {e}");
            eprintln!("skipped: curl not found");
            return None;
        }
    };
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    Some(String::from_utf8(out.stdout).expect("utf-8"))
}

/// The sample `name` (labels included, as written) and its value.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Before: `promtool check metrics` found "no help text" for every counter
/// (OpenMetrics names a counter's HELP `x`, its samples `x_total`), the
/// rejected/applied counters appeared only after the first file of their
/// kind, and there was neither build information nor process metrics.
#[test]
fn metrics_pass_promtool_and_exist_from_the_start() {
    let port = free_port();
    let hash = token_sha256("metrics-token");
    let w = Work::new(&format!(
        "[inbox]\nsettle = \"0s\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[[http.tokens]]\nname = \"t\"\nsha256 = \"{hash}\"\nsystems = [\"*\"]\n[[systems]]\nid = \"erp\"\n"
    ));
    let mut d = w.start(&[]);
    wait_for("the HTTP API", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("http://127.0.0.1:{port}/metrics");
    let Some(text) = curl(&[&url]) else { return };

    for kind in ["orders", "acks", "stock"] {
        let name = format!("ordersync_files_applied_total{{kind=\"{kind}\"}}");
        assert_eq!(sample(&text, &name), Some(0.0), "{name}:\n{text}");
    }
    for kind in ["orders", "csv", "other"] {
        let name = format!("ordersync_files_rejected_total{{kind=\"{kind}\"}}");
        assert_eq!(sample(&text, &name), Some(0.0), "{name}:\n{text}");
    }
    let build = format!(
        "ordersync_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &build), Some(1.0), "{text}");
    // A daemon that has done nothing yet may have used less than one
    // clock tick (10 ms) of CPU: 0 is a true answer, absence is not.
    assert!(
        sample(&text, "process_cpu_seconds_total").is_some_and(|v| v >= 0.0),
        "process_cpu_seconds_total:\n{text}"
    );
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(
            sample(&text, name).is_some_and(|v| v > 0.0),
            "{name}:\n{text}"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = sample(&text, "process_start_time_seconds").expect("start time");
    assert!(
        (now - 600.0..=now + 5.0).contains(&started),
        "{started} vs {now}"
    );

    // The first rejection is counted from 0.
    w.drop_file("bad.json", "{ not json");
    wait_for("the rejection", Duration::from_secs(30), || {
        !w.errors().is_empty()
    });
    let text = curl(&[&url]).expect("curl");
    assert_eq!(
        sample(&text, "ordersync_files_rejected_total{kind=\"orders\"}"),
        Some(1.0),
        "{text}"
    );

    // promtool reads the classic text format curl gets.
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Err(e) => {
            assert!(
                !e2e(),
                "ORDERSYNC_E2E=1 but promtool is missing: apt-get install prometheus ({e})"
            );
            eprintln!("skipped: promtool not found (apt-get install prometheus)");
        }
        Ok(mut child) => {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && said.trim().is_empty(),
                "promtool check metrics: {said}\n{text}"
            );
        }
    }
    assert!(d.terminate().success(), "{}", d.log_text());
}
