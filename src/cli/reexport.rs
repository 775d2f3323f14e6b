//! `ordersync reexport --system S --since T` (SPEC §8).

use super::CliError;
use crate::engine::Engine;

/// Parses RFC 3339, UNIX milliseconds or a date (midnight UTC) to UNIX ms.
pub fn parse_since(text: &str) -> Result<i64, CliError> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(dt) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(dt.and_utc().timestamp_millis());
    }
    Err(CliError::Usage(format!(
        "--since {text:?}: expected an RFC 3339 time (2026-11-01T00:00:00Z), UNIX milliseconds or a date (2026-11-01)"
    )))
}

pub fn run(e: &Engine, system: &str, since: &str) -> Result<String, CliError> {
    if e.config.system(system).is_none() {
        return Err(CliError::Usage(format!(
            "--system {system:?} is not a configured system"
        )));
    }
    let since = parse_since(since)?;
    let n = e
        .store
        .reexport(system, since, e.store.now().timestamp_millis())?;
    e.store.flush()?;
    Ok(format!("{n} order(s) pending again for {system}\n"))
}
