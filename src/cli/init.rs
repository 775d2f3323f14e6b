//! `ordersync init [DIR]`: a commented config.toml and the folders.

use std::path::Path;

use anyhow::Context as _;

use super::CliError;
use crate::config::Config;

/// The commented example config, `contrib/config.example.toml`: a template
/// of its own, so a developer's edits of the repository's working
/// `config.toml` (a token, a port) never reach `init`'s output or a package.
pub const TEMPLATE: &str = include_str!("../../contrib/config.example.toml");

pub fn run(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("config.toml");
    if file.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists; not overwritten",
            file.display()
        )));
    }
    let config = Config::parse(TEMPLATE, &file)?;
    let p = &config.paths;
    // Something else at a folder's name: say so before writing anything
    // (create_dir_all would only say "File exists").
    for d in [&p.inbox, &p.outbox, &p.archive, &p.errors, &p.state] {
        if d.symlink_metadata().is_ok() && !d.is_dir() {
            return Err(CliError::Usage(format!(
                "{} is not a folder; move it away first (nothing was written)",
                d.display()
            )));
        }
    }
    std::fs::write(&file, TEMPLATE).with_context(|| format!("writing {}", file.display()))?;
    for d in [&p.inbox, &p.outbox, &p.archive, &p.errors, &p.state] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    for s in &config.systems {
        let d = p.outbox.join(&s.id);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    // The store too, as `run`, `status --wait` and `restore` do (the
    // other commands never create one).
    crate::store::Store::open(&p.state, &config.store)?;
    super::outln!("wrote {} and its folders", file.display());
    Ok(())
}
