//! The leader's lease of an active/standby pair (`[cluster]`,
//! `crate::cluster`), in the one row of `leader` (migration 4).
//!
//! - **Taken only when expired**, by the server's clock
//!   (`clock_timestamp()`): the nodes' clocks never decide. Each take adds 1
//!   to `epoch`, the fencing token.
//! - **Renewed by its holder** every fifth of the lease, on a connection of
//!   its own ([`super::live::Live`]'s session), and by every write of the
//!   holder.
//! - **The fence.** Every write transaction of a node of a pair ends,
//!   before its `COMMIT`, with [`FENCE`]: it renews the lease only if this
//!   node's epoch still holds it unexpired, and the transaction is rolled
//!   back when it does not. The row stays locked until the `COMMIT`, so no
//!   other node can take the lease in between: a write commits only while
//!   its node leads. A node frozen between the fence and its `COMMIT` keeps
//!   that lock only until the server ends its session
//!   (`idle_in_transaction_session_timeout`, the lease, on the pool's
//!   connections), which rolls the transaction back.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use postgres::GenericClient;

/// Renews the lease of epoch `$1` for `$2` ms, if it holds it unexpired.
pub const FENCE: &str = "UPDATE leader SET expires = clock_timestamp() + $2::float8 * interval '1 millisecond' \
     WHERE epoch = $1::int8 AND expires > clock_timestamp() RETURNING epoch";

/// Takes the lease for node `$1` for `$2` ms, if nobody holds it unexpired.
const TAKE: &str = "INSERT INTO leader AS l (id, node, epoch, expires, since) \
     VALUES (true, $1::text, 1, clock_timestamp() + $2::float8 * interval '1 millisecond', clock_timestamp()) \
     ON CONFLICT (id) DO UPDATE SET node = excluded.node, epoch = l.epoch + 1, \
       expires = excluded.expires, since = excluded.since \
     WHERE l.expires <= clock_timestamp() RETURNING epoch";

/// The holder and whether its lease is unexpired.
const HOLDER: &str = "SELECT node, epoch, expires > clock_timestamp() FROM leader";

/// Lets the lease of epoch `$1` expire now (a clean stop).
const RELEASE: &str = "UPDATE leader SET expires = clock_timestamp() WHERE epoch = $1::int8";

/// The lease as this process sees it: how long it lasts and the epoch this
/// node leads under, 0 when it does not lead (every write is refused).
pub struct Fence {
    pub lease: Duration,
    epoch: AtomicI64,
}

/// Who holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    pub epoch: i64,
    /// Its lease is unexpired.
    pub live: bool,
}

impl Fence {
    pub fn new(lease: Duration) -> Fence {
        Fence {
            lease,
            epoch: AtomicI64::new(0),
        }
    }

    /// The epoch this node leads under; 0 when it does not.
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn set_epoch(&self, epoch: i64) {
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    fn millis(&self) -> f64 {
        self.lease.as_millis() as f64
    }

    /// Whether this node's epoch still holds the lease (renewing it), in
    /// `client`'s transaction or on its own.
    pub fn holds(&self, client: &mut impl GenericClient) -> Result<bool, postgres::Error> {
        let epoch = self.epoch();
        if epoch == 0 {
            return Ok(false);
        }
        Ok(client
            .query_opt(FENCE, &[&epoch, &self.millis()])?
            .is_some())
    }

    /// Takes the lease for `node` when it is free: its new epoch, which
    /// this node now leads under; `None` when another node holds it.
    pub fn take(
        &self,
        client: &mut impl GenericClient,
        node: &str,
    ) -> Result<Option<i64>, postgres::Error> {
        if holder(client)?.is_some_and(|h| h.live) {
            return Ok(None);
        }
        let taken = client
            .query_opt(TAKE, &[&node, &self.millis()])?
            .map(|r| r.get::<_, i64>(0));
        if let Some(epoch) = taken {
            self.set_epoch(epoch);
        }
        Ok(taken)
    }

    /// Lets this node's lease expire now, and leads no more.
    pub fn release(&self, client: &mut impl GenericClient) -> Result<(), postgres::Error> {
        let epoch = self.epoch.swap(0, Ordering::SeqCst);
        if epoch != 0 {
            client.execute(RELEASE, &[&epoch])?;
        }
        Ok(())
    }
}

/// Who holds the lease, if anyone ever took it.
pub fn holder(client: &mut impl GenericClient) -> Result<Option<Holder>, postgres::Error> {
    Ok(client.query_opt(HOLDER, &[])?.map(|r| Holder {
        node: r.get(0),
        epoch: r.get(1),
        live: r.get(2),
    }))
}
