//! `ordersync status [--json]`.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use std::time::{Duration, Instant};

use super::{CliError, json_line, table};
use crate::config::Config;
use crate::control::{OpenMode, ask, open_engine};
use crate::engine::Engine;
use crate::inbox;
use crate::store::ExportState;

/// The status as the JSON of SPEC §10.
pub fn status_json(e: &Engine) -> Result<Value, CliError> {
    let mut systems = Map::new();
    for s in &e.config.systems {
        let mut counts = Map::new();
        for st in ExportState::ALL {
            counts.insert(st.name().into(), e.store.count_in_state(&s.id, st)?.into());
        }
        systems.insert(s.id.clone(), Value::Object(counts));
    }
    let mut v = json!({
        "orders": e.store.order_count()?,
        "errors": inbox::error_count(&e.config),
        "systems": systems,
    });
    // On PostgreSQL: replication that cannot keep exactly-once across a
    // promotion.
    if let Some(pg) = e.store.postgres()
        && let Some(w) = pg.replication_warning()?
    {
        v["warnings"] = json!([w]);
    }
    // Answered by a daemon: its partner remotes.
    #[cfg(feature = "sftp")]
    if !e.config.remotes.is_empty() {
        v["remotes"] = crate::remote::status::json();
    }
    // Answered by a daemon: its part in its store (`crate::cluster`).
    if let Some(role) = crate::cluster::role() {
        v["role"] = role.name().into();
        v["node"] = role.node.clone().into();
        v["leader"] = role.leader().into();
    }
    Ok(v)
}

/// The status of a sled store at rest (no process has it open) from the
/// counts its last clean close left beside it, without opening it (see
/// `store/sled_backend/at_rest.rs`); `None` when there are none to trust,
/// or the store is on PostgreSQL (whose counts are one query away).
pub fn at_rest(config: &Config, as_json: bool) -> Option<String> {
    if config.store.backend != crate::config::Backend::Sled {
        return None;
    }
    let kept = crate::store::KeptCounts::of(&config.paths.state)?;
    let mut systems = Map::new();
    for s in &config.systems {
        let mut counts = Map::new();
        for st in ExportState::ALL {
            counts.insert(st.name().into(), kept.in_state(&s.id, st).into());
        }
        systems.insert(s.id.clone(), Value::Object(counts));
    }
    let v = json!({
        "orders": kept.orders(),
        "errors": inbox::error_count(config),
        "systems": systems,
    });
    Some(render(config, &v, as_json))
}

pub fn run(e: &Engine, as_json: bool) -> Result<String, CliError> {
    Ok(render(&e.config, &status_json(e)?, as_json))
}

/// The status `v` (see [`status_json`]) as printed.
fn render(config: &Config, v: &Value, as_json: bool) -> String {
    if as_json {
        return json_line(v);
    }
    let mut out = String::new();
    for w in v["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "warning: {}", w.as_str().unwrap_or_default());
    }
    if let Some(role) = crate::cluster::role().filter(|r| r.paired) {
        let leader = role.leader().unwrap_or_else(|| "none".into());
        let _ = writeln!(
            out,
            "role    {} (node {}, leader {leader})",
            role.name(),
            role.node
        );
    }
    let _ = writeln!(out, "orders  {}", v["orders"]);
    let _ = writeln!(out, "errors  {}", v["errors"]);
    let mut rows = vec![vec![
        "system".to_string(),
        "pending".into(),
        "written".into(),
        "acked".into(),
    ]];
    for s in &config.systems {
        let c = &v["systems"][&s.id];
        rows.push(vec![
            s.id.clone(),
            c["pending"].to_string(),
            c["written"].to_string(),
            c["acked"].to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    if let Some(remotes) = v["remotes"].as_object() {
        let mut rows = vec![vec![
            "remote".to_string(),
            "state".into(),
            "pulled".into(),
            "pushed".into(),
            "last success".into(),
            "error".into(),
        ]];
        for (name, r) in remotes {
            let text = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            rows.push(vec![
                name.clone(),
                text("state"),
                r["pulled"].to_string(),
                r["pushed"].to_string(),
                text("last_success"),
                text("error"),
            ]);
        }
        out.push('\n');
        out.push_str(&table(&rows));
    }
    out
}

/// `status --wait`: waits until the inbox holds no file to process and no
/// order is pending to be written, then prints the status. With a daemon
/// running, it watches the inbox folder and asks the daemon for the
/// pending counts; with none, it does the work itself (as `run --once`).
/// After `timeout` it gives up (exit 1), saying what is still waiting.
pub fn wait(config: &Config, json: bool, timeout: Duration) -> Result<(), CliError> {
    let start = Instant::now();
    let ask_status = |args: &[&str]| -> Result<Option<String>, CliError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let answer = ask(&config.paths.state, &args)
            .map_err(|e| anyhow::anyhow!("asking the running daemon: {e}"))?;
        match answer {
            None => Ok(None),
            Some(a) if a.code == 0 => Ok(Some(a.stdout)),
            Some(a) => Err(CliError::Remote {
                code: a.code,
                message: a.stderr,
            }),
        }
    };
    loop {
        // The inbox first, then the counts: a file gone from the inbox has
        // been applied (its orders counted as pending) or rejected, since
        // the daemon moves a file only after its effects are committed.
        let files = waiting_files(config)?;
        let Some(answer) = ask_status(&["status", "--json"])? else {
            // No daemon: do the work here, then report.
            let engine = open_engine(config, OpenMode::Create)?;
            super::run::once_with(&engine)?;
            super::out!("{}", run(&engine, json)?);
            return Ok(());
        };
        let v: Value = serde_json::from_str(&answer)
            .map_err(|e| anyhow::anyhow!("bad status from the daemon: {e}"))?;
        // Orders pending for an HTTP system wait for its client, not for
        // the daemon: they are not work in hand.
        let by_http = |id: &str| {
            config
                .systems
                .iter()
                .any(|s| s.id == id && s.transport == crate::config::Transport::Http)
        };
        let pending: u64 = v["systems"].as_object().map_or(0, |m| {
            m.iter()
                .filter(|(id, _)| !by_http(id))
                .filter_map(|(_, c)| c["pending"].as_u64())
                .sum()
        });
        if files == 0 && pending == 0 {
            let args: &[&str] = if json {
                &["status", "--json"]
            } else {
                &["status"]
            };
            if let Some(out) = ask_status(args)? {
                super::out!("{out}");
                return Ok(());
            }
            continue; // the daemon stopped meanwhile
        }
        if start.elapsed() >= timeout {
            let mut why = String::new();
            for (id, c) in v["systems"].as_object().into_iter().flatten() {
                let n = c["pending"].as_u64().unwrap_or(0);
                if n > 0 && !by_http(id) {
                    let _ = write!(why, "; {id}: {n} pending");
                    if let Some(problem) = unwritable_outbox(config, id) {
                        let _ = write!(why, ", its outbox {problem}");
                    }
                }
            }
            return Err(CliError::Runtime(anyhow::anyhow!(
                "still busy after {}: {files} file(s) in the inbox, {pending} order(s) pending to be written{why}",
                humantime::format_duration(timeout)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Why `outbox/<system>` cannot be written, if it cannot: not a real
/// folder (as the exporter opens it: without following a symlink), or not
/// writable. `None` when it is usable or not there yet (the exporter makes
/// it).
fn unwritable_outbox(config: &Config, system: &str) -> Option<String> {
    // Absolute: the message is read away from the config's folder.
    let outbox =
        &std::path::absolute(&config.paths.outbox).unwrap_or_else(|_| config.paths.outbox.clone());
    let path = outbox.join(system);
    let opened = match std::fs::symlink_metadata(outbox) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        _ => {
            crate::fsutil::Dir::open(outbox).and_then(|o| match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                _ => o.sub(system, false).map(Some),
            })
        }
    };
    match opened {
        // The error names the folder.
        Err(e) => Some(format!("cannot be written: {e}")),
        Ok(None) => None,
        Ok(Some(_)) => rustix::fs::access(&path, rustix::fs::Access::WRITE_OK)
            .err()
            .map(|e| {
                format!(
                    "cannot be written: {}: {}",
                    path.display(),
                    std::io::Error::from(e)
                )
            }),
    }
}

/// How many inbox files wait to be processed: the candidates, less those
/// still waiting for their ready marker (they are not taken until it comes).
fn waiting_files(config: &Config) -> Result<usize, CliError> {
    let mut noted = std::collections::HashSet::new();
    let found = inbox::scan_all(config, &mut noted)
        .map_err(|e| anyhow::anyhow!("scanning the inbox {}: {e}", config.paths.inbox.display()))?;
    Ok(found
        .iter()
        .filter(|c| {
            config
                .inbox
                .ready_marker
                .as_deref()
                .is_none_or(|m| inbox::marker_path(&c.path, m).exists())
        })
        .count())
}
