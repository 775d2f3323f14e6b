//! The writer's lease, in the one row of `leader` (migrations 4 and 5):
//! on PostgreSQL every process that writes the store holds it, a daemon
//! alone as well as a node of an active/standby pair (`[cluster]`,
//! `crate::cluster`) or a command that writes (`run --once`, `reexport`,
//! `restore`).
//!
//! - **Taken only when expired**, by the server's clock
//!   (`clock_timestamp()`, read after the row's lock is had: a take that
//!   waited for the lock still gets a whole lease): the nodes' clocks never
//!   decide. Each take adds 1 to `epoch`, the fencing token. A process
//!   restarted on the same machine after its predecessor died (its `holder`
//!   names a process that no longer exists) takes it at once.
//! - **Renewed by its holder** every fifth of the lease, on a connection of
//!   its own ([`super::live::Live`]'s session), and by every write of the
//!   holder.
//! - **The fence.** Every write transaction ends, before its `COMMIT`, with
//!   [`FENCE`]: it renews the lease only if this process's epoch still
//!   holds it unexpired, and the transaction is rolled back when it does
//!   not. The row stays locked until the `COMMIT`, so no other process can
//!   take the lease in between: a write commits only while its process
//!   holds the lease. A process frozen between the fence and its `COMMIT`
//!   keeps that lock only until the server ends its session
//!   (`idle_in_transaction_session_timeout`, the lease, on the pool's
//!   connections), which rolls the transaction back. Whatever happens to a
//!   session (terminated, the server restarted), the lease is a row: it is
//!   not lost with the session, as an advisory lock is.
//! - **The server's clock.** Each take and renewal also reads the server's
//!   clock; [`Fence::now`] is that reading moved on by this process's
//!   monotonic clock. Decisions that depend on the time (a resend, the
//!   timeline, export file names) use it, so a node whose own clock is off
//!   decides as the others do.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use postgres::GenericClient;

/// The server's clock as milliseconds since the UNIX epoch, in SQL.
const SERVER_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::float8";

/// Renews the lease of epoch `$1` for `$2` ms, if it holds it unexpired;
/// returns the epoch and the server's clock.
pub const FENCE: &str = "UPDATE leader SET expires = clock_timestamp() + $2::float8 * interval '1 millisecond' \
     WHERE epoch = $1::int8 AND expires > clock_timestamp() \
     RETURNING epoch, (extract(epoch from clock_timestamp()) * 1000)::float8";

/// Takes the lease for node `$1` for `$2` ms by process `$3`, if nobody
/// holds it unexpired or its holder is `$4` (a process known to be dead;
/// `''` for none). The times of an update are read after the row's lock
/// is had. Returns the new epoch and the server's clock.
const TAKE: &str = "INSERT INTO leader AS l (id, node, epoch, expires, since, holder) \
     VALUES (true, $1::text, 1, clock_timestamp() + $2::float8 * interval '1 millisecond', clock_timestamp(), $3::text) \
     ON CONFLICT (id) DO UPDATE SET node = excluded.node, epoch = l.epoch + 1, \
       expires = clock_timestamp() + $2::float8 * interval '1 millisecond', \
       since = clock_timestamp(), holder = excluded.holder \
     WHERE l.expires <= clock_timestamp() OR ($4::text <> '' AND l.holder = $4::text) \
     RETURNING epoch, (extract(epoch from clock_timestamp()) * 1000)::float8";

/// The holder, whether its lease is unexpired, the process that took it
/// and its expiry in server milliseconds.
const HOLDER: &str = "SELECT node, epoch, expires > clock_timestamp(), holder, \
     (extract(epoch from expires) * 1000)::float8 FROM leader";

/// Lets the lease of epoch `$1` expire now (a clean stop).
const RELEASE: &str = "UPDATE leader SET expires = clock_timestamp() WHERE epoch = $1::int8";

/// The lease as this process sees it: how long it lasts and the epoch this
/// process holds it under, 0 when it does not (every write is refused).
pub struct Fence {
    pub lease: Duration,
    epoch: AtomicI64,
    /// The server's clock as last read: when (by this process's monotonic
    /// clock) and what it said.
    clock: Mutex<Option<(Instant, DateTime<Utc>)>>,
    /// The skew to this machine's clock was reported.
    skew_told: AtomicBool,
}

/// Who holds the lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub node: String,
    pub epoch: i64,
    /// Its lease is unexpired.
    pub live: bool,
    /// The process that took it ([`process`]'s form), `""` if unknown.
    pub process: String,
    /// When it expires, in the server's milliseconds: a holder that renews
    /// moves it on.
    pub expires_ms: f64,
}

/// How far this machine's clock may be off the server's before it is
/// reported (the server's is used either way).
const SKEW_TOLD: Duration = Duration::from_secs(2);

impl Fence {
    pub fn new(lease: Duration) -> Fence {
        Fence {
            lease,
            epoch: AtomicI64::new(0),
            clock: Mutex::new(None),
            skew_told: AtomicBool::new(false),
        }
    }

    /// The epoch this process holds the lease under; 0 when it does not.
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn set_epoch(&self, epoch: i64) {
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    fn millis(&self) -> f64 {
        self.lease.as_millis() as f64
    }

    /// Now, by the server's clock as last read and this process's monotonic
    /// clock since; this machine's clock before the server was ever read.
    pub fn now(&self) -> DateTime<Utc> {
        match *self.clock.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((at, server)) => {
                server + chrono::Duration::from_std(at.elapsed()).unwrap_or_default()
            }
            None => Utc::now(),
        }
    }

    /// Records a reading of the server's clock (`server_ms`) made by a
    /// statement sent at `sent` and answered now: the server read it about
    /// half the round trip ago.
    pub fn saw_clock(&self, sent: Instant, server_ms: f64) {
        let got = Instant::now();
        let Some(read) = DateTime::<Utc>::from_timestamp_millis(server_ms as i64) else {
            return;
        };
        let half = chrono::Duration::from_std((got - sent) / 2).unwrap_or_default();
        let server = read + half;
        *self.clock.lock().unwrap_or_else(|e| e.into_inner()) = Some((got, server));
        let skew = (Utc::now() - server).num_milliseconds();
        let told = self.skew_told.load(Ordering::SeqCst);
        if skew.unsigned_abs() > SKEW_TOLD.as_millis() as u64 {
            if !told {
                self.skew_told.store(true, Ordering::SeqCst);
                tracing::warn!(
                    skew_ms = skew,
                    "this machine's clock is off the database server's; ordersync uses the server's clock for every decision and time it records (set up NTP)"
                );
            }
        } else if told {
            self.skew_told.store(false, Ordering::SeqCst);
            tracing::info!(
                skew_ms = skew,
                "this machine's clock agrees with the database server's again"
            );
        }
    }

    /// Whether this process's epoch still holds the lease (renewing it), in
    /// `client`'s transaction or on its own.
    pub fn holds(&self, client: &mut impl GenericClient) -> Result<bool, postgres::Error> {
        let epoch = self.epoch();
        if epoch == 0 {
            return Ok(false);
        }
        let sent = Instant::now();
        let row = client.query_opt(FENCE, &[&epoch, &self.millis()])?;
        if let Some(r) = &row {
            self.saw_clock(sent, r.get(1));
        }
        Ok(row.is_some())
    }

    /// Takes the lease for `node` when it is free (or its holder is the
    /// process `dead`, known to have ended): its new epoch, which this
    /// process now holds it under; `None` when another holds it.
    pub fn take(
        &self,
        client: &mut impl GenericClient,
        node: &str,
        dead: Option<&str>,
    ) -> Result<Option<i64>, postgres::Error> {
        // Held by this process already: renewed, it stays so.
        if self.epoch() != 0 && self.holds(client)? {
            return Ok(Some(self.epoch()));
        }
        if dead.is_none() && holder(client)?.is_some_and(|h| h.live) {
            return Ok(None);
        }
        let sent = Instant::now();
        let taken = client.query_opt(
            TAKE,
            &[&node, &self.millis(), &process(), &dead.unwrap_or("")],
        )?;
        let Some(row) = taken else {
            return Ok(None);
        };
        let epoch: i64 = row.get(0);
        self.saw_clock(sent, row.get(1));
        self.set_epoch(epoch);
        Ok(Some(epoch))
    }

    /// Reads the server's clock on `client` (a process that holds no
    /// lease: the commands that only read).
    pub fn read_clock(&self, client: &mut impl GenericClient) -> Result<(), postgres::Error> {
        let sent = Instant::now();
        let row = client.query_one(&format!("SELECT {SERVER_MS}"), &[])?;
        self.saw_clock(sent, row.get(0));
        Ok(())
    }

    /// Lets this process's lease expire now, and holds it no more.
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
        process: r.get(3),
        expires_ms: r.get(4),
    }))
}

/// This process, as the lease and the nodes table record it:
/// `boot-id/pid-namespace/pid/start-time`, enough for a process on the same
/// machine to tell whether it still runs ([`ended`]).
pub fn process() -> String {
    static ME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        match (boot_id(), pid_namespace(), start_time(pid)) {
            (Some(boot), Some(ns), Some(start)) => format!("{boot}/{ns}/{pid}/{start}"),
            _ => String::new(),
        }
    })
    .clone()
}

/// Whether the process `recorded` ([`process`]'s form) is known to have
/// ended: it ran on this machine since its last boot, in this pid
/// namespace, and no process of its pid and start time exists now. False
/// whenever that cannot be told (another machine, another container).
pub fn ended(recorded: &str) -> bool {
    let parts: Vec<&str> = recorded.split('/').collect();
    let [boot, ns, pid, start] = parts[..] else {
        return false;
    };
    if Some(boot) != boot_id().as_deref() || Some(ns) != pid_namespace().as_deref() {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    start_time(pid).as_deref() != Some(start)
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// A process's start time (field 22 of `/proc/PID/stat`, in clock ticks
/// since boot): with its pid, it names one process.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_named_and_runs() {
        let me = process();
        assert_eq!(me.split('/').count(), 4, "{me}");
        assert!(!ended(&me));
    }

    #[test]
    fn an_ended_process_is_told_and_a_foreign_one_is_not() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_time(pid);
        child.wait().unwrap();
        let me = process();
        let parts: Vec<&str> = me.split('/').collect();
        let gone = format!(
            "{}/{}/{pid}/{}",
            parts[0],
            parts[1],
            start.unwrap_or_else(|| "1".into())
        );
        assert!(ended(&gone), "{gone}");
        let foreign = format!("another-boot/{}/{pid}/1", parts[1]);
        assert!(!ended(&foreign));
        assert!(!ended(""));
    }
}
