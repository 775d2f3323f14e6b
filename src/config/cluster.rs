//! `[cluster]`: this node of an active/standby pair sharing a PostgreSQL
//! store (`crate::cluster`): the node's name and the leader's lease.
//! Guarantees PostgreSQL as the backend, a node name that fits in a log
//! line, and a lease of 1 s to 10 min.

use std::time::Duration;

use serde::Deserialize;

use super::store::{Backend, StoreConfig};

/// `[cluster]`: the node's name and the leader's lease (`crate::cluster`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// This node's name, as the others show it (default: the host name).
    pub node: String,
    /// How long a leader's lease lasts unless renewed (every fifth of it).
    pub lease: Duration,
}

/// `[cluster] lease` when not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// This machine's host name: `[cluster] node` when not set, and the node a
/// daemon alone on its store names itself.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawCluster {
    node: Option<String>,
    #[serde(with = "humantime_serde")]
    lease: Option<Duration>,
}

/// Validates `[cluster]`: PostgreSQL only (the lease is a row there), a
/// node name that fits in a log line, a lease of 1 s to 10 min.
pub(super) fn cluster_config(
    raw: RawCluster,
    store: &StoreConfig,
    bad: &mut Vec<(String, String)>,
) -> ClusterConfig {
    if !matches!(store.backend, Backend::Postgres(_)) {
        bad.push((
            "cluster".into(),
            "a pair of nodes shares its state on PostgreSQL: needs [store] backend = \"postgres\""
                .into(),
        ));
    }
    let node = raw.node.unwrap_or_else(host_name);
    if node.is_empty()
        || node.len() > 64
        || node.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        bad.push((
            "cluster.node".into(),
            format!("{node:?} must be 1 to 64 characters without spaces or control characters"),
        ));
    }
    let lease = raw.lease.unwrap_or(DEFAULT_LEASE);
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&lease) {
        bad.push((
            "cluster.lease".into(),
            format!(
                "{} must be from 1s to 10m",
                humantime::format_duration(lease)
            ),
        ));
    }
    ClusterConfig { node, lease }
}
