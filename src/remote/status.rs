//! Where each partner remote stands, for `status`, `/healthz` and the
//! metrics: one entry per remote, updated by its task.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::store::keys::Direction;

/// One remote's standing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Standing {
    /// `connecting`, `ok`, `failing`, or `standby` (a node that does not
    /// lead transfers nothing).
    pub state: &'static str,
    /// The last error, while failing (never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Passes failed in a row.
    pub failures: u32,
    /// When a pass last went through whole (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    pub pulled: u64,
    pub pushed: u64,
}

static STANDINGS: Mutex<BTreeMap<String, Standing>> = Mutex::new(BTreeMap::new());

fn with<T>(f: impl FnOnce(&mut BTreeMap<String, Standing>) -> T) -> T {
    f(&mut STANDINGS.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Changes `remote`'s standing.
pub fn update(remote: &str, f: impl FnOnce(&mut Standing)) {
    with(|m| f(m.entry(remote.to_string()).or_default()))
}

/// A pass went through whole.
pub fn succeeded(remote: &str) {
    let now = chrono::Utc::now();
    update(remote, |s| {
        s.state = "ok";
        s.error = None;
        s.failures = 0;
        s.last_success = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    });
    crate::metrics::global().remote_succeeded(remote, now.timestamp() as f64);
}

/// A pass or a file failed.
pub fn failed(remote: &str, error: &str, pass: bool) {
    update(remote, |s| {
        s.state = "failing";
        s.error = Some(error.to_string());
        if pass {
            s.failures += 1;
        }
    });
    crate::metrics::global().remote_error(remote);
}

/// A file went across.
pub fn transferred(remote: &str, direction: Direction, bytes: u64) {
    update(remote, |s| match direction {
        Direction::Pull => s.pulled += 1,
        Direction::Push => s.pushed += 1,
    });
    crate::metrics::global().remote_file(remote, direction.name(), bytes);
}

/// Every remote's standing, by name (empty without remotes).
pub fn snapshot() -> BTreeMap<String, Standing> {
    with(|m| m.clone())
}

/// [`snapshot`] as JSON (an object by remote name).
pub fn json() -> Value {
    serde_json::to_value(snapshot()).unwrap_or(Value::Null)
}
