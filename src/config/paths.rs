//! `[paths]`: the five folders (inbox, outbox, archive, errors, state),
//! which `Config::parse` resolves against the config file's folder.
//! Guarantees that the five are different folders, and that a system's own
//! inbox is none of them, no other system's, and not inside the outbox.

use std::path::PathBuf;

use serde::Deserialize;

use super::SystemConfig;

/// The resolved folders; all absolute or relative to the working directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub inbox: PathBuf,
    pub outbox: PathBuf,
    pub archive: PathBuf,
    pub errors: PathBuf,
    pub state: PathBuf,
}

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawPaths {
    pub(super) inbox: PathBuf,
    pub(super) outbox: PathBuf,
    pub(super) archive: PathBuf,
    pub(super) errors: PathBuf,
    pub(super) state: PathBuf,
}

impl Default for RawPaths {
    fn default() -> Self {
        RawPaths {
            inbox: "inbox".into(),
            outbox: "outbox".into(),
            archive: "archive".into(),
            errors: "errors".into(),
            state: "state".into(),
        }
    }
}

/// The five folders must be different, and none may lie inside the inbox:
/// otherwise archived files would be read again, or exports taken as input.
pub(super) fn check_distinct_paths(p: &Paths) -> Vec<(String, String)> {
    let all = [
        ("paths.inbox", &p.inbox),
        ("paths.outbox", &p.outbox),
        ("paths.archive", &p.archive),
        ("paths.errors", &p.errors),
        ("paths.state", &p.state),
    ];
    for (i, (ka, a)) in all.iter().enumerate() {
        for (kb, b) in &all[i + 1..] {
            if a == b {
                return vec![(
                    kb.to_string(),
                    format!("is the same folder as {ka} ({})", a.display()),
                )];
            }
        }
    }
    Vec::new()
}

/// A system's own inbox must be a folder of its own: not one of the five,
/// not another system's inbox.
pub(super) fn check_system_inboxes(p: &Paths, systems: &[SystemConfig]) -> Vec<(String, String)> {
    let shared = [
        ("paths.inbox", &p.inbox),
        ("paths.outbox", &p.outbox),
        ("paths.archive", &p.archive),
        ("paths.errors", &p.errors),
        ("paths.state", &p.state),
    ];
    let mut bad = Vec::new();
    for (i, s) in systems.iter().enumerate() {
        let Some(inbox) = &s.inbox else { continue };
        let key = format!("systems[{i}].inbox");
        if let Some((k, _)) = shared.iter().find(|(_, d)| *d == inbox) {
            bad.push((
                key,
                format!("is the same folder as {k} ({})", inbox.display()),
            ));
        } else if let Some(other) = systems[..i]
            .iter()
            .find(|o| o.inbox.as_ref() == Some(inbox))
        {
            bad.push((
                key,
                format!(
                    "is the same folder as the inbox of system {:?} ({})",
                    other.id,
                    inbox.display()
                ),
            ));
        } else if inbox.starts_with(&p.outbox) {
            bad.push((
                key,
                format!(
                    "{} is inside paths.outbox: export files would be read as input",
                    inbox.display()
                ),
            ));
        }
    }
    bad
}
