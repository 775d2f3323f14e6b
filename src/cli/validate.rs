//! `ordersync validate [--system S] FILE…`: checks files exactly as the
//! inbox would (through [`crate::validate`]) and applies nothing. It needs
//! neither a store nor a config: a partner can run it on its own files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::CliError;
use crate::config::Config;
use crate::problem::Problem;
use crate::validate::{self, Target};

/// Checks `files` and returns what to print; `Err` (exit 1) when any is
/// invalid, after printing every file's report.
pub fn run(config_path: &Path, system: Option<&str>, files: &[PathBuf]) -> Result<(), CliError> {
    // A config is used when there is one (its encoding, size limit and
    // systems); without one the defaults apply and system ids are not
    // checked. A config that is there but broken is an error (exit 2).
    let config = if config_path.exists() {
        Some(Config::load(config_path)?)
    } else {
        None
    };
    let defaults;
    let c = match &config {
        Some(c) => c,
        None => {
            defaults = Config::parse("", config_path)?;
            &defaults
        }
    };
    if let (Some(s), Some(c)) = (system, &config)
        && c.system(s).is_none()
    {
        return Err(CliError::Usage(format!(
            "--system {s:?} is not a configured system"
        )));
    }
    let target = Target {
        systems: config.as_ref().map(|c| c.systems.as_slice()),
        only_system: system,
    };
    let mut out = String::new();
    let mut invalid = 0;
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let report = match read(file, c.inbox.max_file_size) {
            Ok(bytes) => validate::check(
                &name,
                &bytes,
                c.inbox.encoding,
                c.inbox.max_file_size,
                target,
            ),
            Err(p) => validate::Report {
                kind: None,
                items: 0,
                problems: vec![p],
            },
        };
        if report.problems.is_empty() {
            let kind = report.kind.unwrap_or("file");
            let unit = if kind == "orders" {
                "order(s)"
            } else {
                "row(s)"
            };
            let _ = writeln!(
                out,
                "{}: valid: {kind}, {} {unit}",
                file.display(),
                report.items
            );
        } else {
            invalid += 1;
            let _ = writeln!(
                out,
                "{}: invalid: {} problem(s)",
                file.display(),
                report.problems.len()
            );
            for p in &report.problems {
                // One problem per line, as in errors/<name>.error.txt.
                let _ = writeln!(out, "  {}", p.to_string().replace(['\r', '\n'], " "));
            }
        }
    }
    if config.is_none() {
        out.push_str(&format!(
            "note: no config at {}: defaults used, system ids in acks not checked\n",
            config_path.display()
        ));
    }
    super::out!("{out}");
    match invalid {
        0 => Ok(()),
        n => Err(CliError::Runtime(anyhow::anyhow!(
            "{n} of {} file(s) invalid",
            files.len()
        ))),
    }
}

/// The file's bytes; a problem naming what is wrong when it cannot be read
/// (not a regular file, too large, unreadable).
fn read(path: &Path, max: u64) -> Result<Vec<u8>, Problem> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Problem::new("file", format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Problem::new("file", "not a regular file"));
    }
    if meta.len() > max {
        return Err(Problem::new(
            "file",
            format!(
                "{} bytes is larger than [inbox] max_file_size ({max} bytes); not read",
                meta.len()
            ),
        ));
    }
    std::fs::read(path)
        .map_err(|e| Problem::new("file", format!("cannot read {}: {e}", path.display())))
}
