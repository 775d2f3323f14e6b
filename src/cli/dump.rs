//! `dump` and `restore`: the whole state as a portable NDJSON dump (see
//! [`crate::store::dump`]) and back into a new store.

use std::io::{self, BufReader, Write};
use std::path::Path;

use anyhow::Context as _;

use super::CliError;
use crate::config::Config;
use crate::control::{self, OpenMode, open_engine};

/// Writes the dump to `output` (made under a temporary name beside it,
/// mode 0600, renamed when complete and synced) or to stdout. While the
/// daemon runs, it makes the dump and this process writes it out.
pub fn run(config: &Config, args: &[String], output: Option<&Path>) -> Result<(), CliError> {
    match output {
        Some(path) => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let mut tmp = tempfile::Builder::new()
                .prefix(".ordersync-dump.")
                .tempfile_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let records = write(config, args, tmp.as_file_mut())?;
            tmp.as_file()
                .sync_all()
                .with_context(|| format!("writing {}", path.display()))?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
            crate::fsutil::sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
            // On stderr, as stdout may be the dump elsewhere; a closed
            // stderr is no reason to fail a dump that is complete.
            let _ = writeln!(
                io::stderr(),
                "dumped {records} records to {}",
                path.display()
            );
        }
        None => {
            let mut stdout = super::stdout();
            write(config, args, &mut stdout)?;
            stdout.flush().context("writing the dump")?;
        }
    }
    Ok(())
}

fn write(config: &Config, args: &[String], out: &mut dyn Write) -> Result<u64, CliError> {
    let asked = control::ask_dump(&config.paths.state, args, out).map_err(|e| {
        // The daemon's own failure keeps its exit code.
        e.downcast::<CliError>().unwrap_or_else(CliError::Runtime)
    })?;
    if let Some(records) = asked {
        return Ok(records);
    }
    let engine = open_engine(config, OpenMode::Existing)?;
    Ok(engine.store.dump_to(out).context("dumping the store")?)
}

/// Loads the dump `file` (`-`: stdin) into the configured store (the
/// state folder's sled database, or the PostgreSQL database), which must
/// hold no store yet (it is created).
pub fn restore(config: &Config, file: &Path) -> Result<String, CliError> {
    let state = &config.paths.state;
    if control::ask(state, &["status".into()])
        .ok()
        .flatten()
        .is_some()
    {
        return Err(anyhow::anyhow!(
            "the daemon is running on this store ({}; its control socket in {} answers): restore loads a dump into a new, empty store, with no daemon running",
            config.store_shown(),
            state.display()
        )
        .into());
    }
    let input: Box<dyn io::Read> = if file == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?)
    };
    let engine = open_engine(config, OpenMode::Create)?;
    crate::cluster::hold_for_command(&engine, "`restore`")?;
    let done = engine
        .store
        .restore_from(BufReader::with_capacity(1 << 20, input))
        .with_context(|| format!("restoring {}", file.display()))?;
    Ok(format!(
        "restored {} records ({} orders) into {}\n",
        done.records,
        done.orders,
        config.store_shown()
    ))
}
