//! The daemons that run on a store (table `nodes`, migration 5): one row
//! per node name, held by one process at a time (`token`, new at each
//! start), seen by the server's clock, with the node's settings.
//!
//! - **A name is held by one live process.** A daemon claims its name at
//!   start; the claim succeeds when the name is free, stale (not seen
//!   within the window) or held by a process of this machine that has
//!   ended. Each daemon renews `seen` as it renews or waits for the lease.
//! - **Settings.** A daemon whose settings differ from a live node's is
//!   refused at start by `crate::cluster`, naming each difference.

use postgres::GenericClient;
use uuid::Uuid;

/// Claims `$1` for token `$2` (process `$3`, paired `$4`, settings `$5`):
/// free, held by this token, not seen within `$6` ms, or held by the ended
/// process `$7` (`''` for none).
const CLAIM: &str = "INSERT INTO nodes AS n (node, token, holder, paired, seen, settings) \
     VALUES ($1::text, $2::uuid, $3::text, $4::bool, clock_timestamp(), $5::jsonb) \
     ON CONFLICT (node) DO UPDATE SET token = excluded.token, holder = excluded.holder, \
       paired = excluded.paired, seen = clock_timestamp(), settings = excluded.settings \
     WHERE n.token = excluded.token \
        OR n.seen <= clock_timestamp() - $6::float8 * interval '1 millisecond' \
        OR ($7::text <> '' AND n.holder = $7::text) \
     RETURNING node";

/// The holder of a name: its process and how long ago it was seen (ms).
const HOLDER: &str = "SELECT holder, (extract(epoch from clock_timestamp() - seen) * 1000)::float8 \
     FROM nodes WHERE node = $1::text";

/// The other nodes seen within `$2` ms: name, paired, settings.
const OTHERS: &str = "SELECT node, paired, settings FROM nodes \
     WHERE node <> $1::text AND seen > clock_timestamp() - $2::float8 * interval '1 millisecond' \
     ORDER BY node";

/// Renews `seen` of `$1` held by `$2`; no row when another process took
/// the name.
const SEEN: &str = "UPDATE nodes SET seen = clock_timestamp() WHERE node = $1::text AND token = $2::uuid RETURNING node";

/// Gives the name up (a clean stop).
const LEAVE: &str = "DELETE FROM nodes WHERE node = $1::text AND token = $2::uuid";

/// Another live node.
#[derive(Debug, Clone)]
pub struct Other {
    pub node: String,
    pub paired: bool,
    pub settings: serde_json::Value,
}

/// How a claim went.
#[derive(Debug)]
pub enum Claim {
    /// The name is this process's.
    Held,
    /// A live process holds it, seen this many ms ago.
    Taken { seen_ms: f64 },
}

/// Claims `node` for `token` (see [`CLAIM`]).
pub fn claim(
    client: &mut impl GenericClient,
    node: &str,
    token: Uuid,
    paired: bool,
    settings: &serde_json::Value,
    window_ms: f64,
) -> Result<Claim, postgres::Error> {
    let holder = client.query_opt(HOLDER, &[&node])?;
    let dead = holder
        .as_ref()
        .map(|r| r.get::<_, String>(0))
        .filter(|p| super::lease::ended(p))
        .unwrap_or_default();
    let me = super::lease::process();
    let got = client.query_opt(
        CLAIM,
        &[&node, &token, &me, &paired, settings, &window_ms, &dead],
    )?;
    Ok(match got {
        Some(_) => Claim::Held,
        None => Claim::Taken {
            seen_ms: holder.map_or(0.0, |r| r.get(1)),
        },
    })
}

/// The other nodes seen within `window_ms`.
pub fn others(
    client: &mut impl GenericClient,
    node: &str,
    window_ms: f64,
) -> Result<Vec<Other>, postgres::Error> {
    Ok(client
        .query(OTHERS, &[&node, &window_ms])?
        .iter()
        .map(|r| Other {
            node: r.get(0),
            paired: r.get(1),
            settings: r.get(2),
        })
        .collect())
}

/// Renews this process's claim: false when another process took the name.
pub fn seen(
    client: &mut impl GenericClient,
    node: &str,
    token: Uuid,
) -> Result<bool, postgres::Error> {
    Ok(client.query_opt(SEEN, &[&node, &token])?.is_some())
}

/// Gives the name up.
pub fn leave(
    client: &mut impl GenericClient,
    node: &str,
    token: Uuid,
) -> Result<(), postgres::Error> {
    client.execute(LEAVE, &[&node, &token]).map(|_| ())
}
