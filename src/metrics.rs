//! Process metrics for `GET /metrics` (Prometheus text format).
//!
//! One registry per process ([`global`]): the file side (engine, daemon)
//! counts what it does with one-line hooks, the HTTP side counts requests.
//! What the store already keeps (orders stored, per-system pending /
//! written / acked) is not counted here but read from the kept counts when
//! the metrics are scraped ([`Metrics::render`]), so it always matches
//! `status`.
//!
//! Counters with a known label set (files applied and rejected, by kind)
//! exist at 0 from the start, so an `increase()` alert sees the first one.
//! Beside ordersync's own metrics: `ordersync_build_info` and the usual
//! process metrics (`process_*`, read from `/proc/self` at scrape time).
//! Rendered as OpenMetrics for clients that ask for it (Prometheus does),
//! otherwise in the classic text format (`curl`, `promtool check metrics`).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::config::Config;
use crate::store::{ExportState, Store, StoreError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

/// The kinds of applied files (`Input::kind`) and of rejected ones (from
/// the name): each counter exists at 0 from the start.
const APPLIED_KINDS: [&str; 3] = ["orders", "acks", "stock"];
const REJECTED_KINDS: [&str; 3] = ["orders", "csv", "other"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SystemState {
    system: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemoteDirection {
    remote: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemoteName {
    remote: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    route: String,
    status: String,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    files_applied: Family<Kind, Counter>,
    files_rejected: Family<Kind, Counter>,
    export_files: Counter,
    apply_seconds: Histogram,
    export_seconds: Histogram,
    http_requests: Family<Request, Counter>,
    inbox_waiting: Gauge,
    last_scan: Gauge<f64, AtomicU64>,
    orders: Gauge,
    per_system: Family<SystemState, Gauge>,
    leader: Gauge,
    remote_files: Family<RemoteDirection, Counter>,
    remote_bytes: Family<RemoteDirection, Counter>,
    remote_errors: Family<RemoteName, Counter>,
    remote_success: Family<RemoteName, Gauge<f64, AtomicU64>>,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Buckets from 1 ms to about 65 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    fn new() -> Metrics {
        let mut root = Registry::default();
        root.register_collector(Box::new(Process));
        let registry = root.sub_registry_with_prefix("ordersync");
        let m = Metrics {
            files_applied: Family::default(),
            files_rejected: Family::default(),
            export_files: Counter::default(),
            apply_seconds: seconds(),
            export_seconds: seconds(),
            http_requests: Family::default(),
            inbox_waiting: Gauge::default(),
            last_scan: Gauge::default(),
            orders: Gauge::default(),
            per_system: Family::default(),
            leader: Gauge::default(),
            remote_files: Family::default(),
            remote_bytes: Family::default(),
            remote_errors: Family::default(),
            remote_success: Family::default(),
            registry: Registry::default(),
        };
        for kind in APPLIED_KINDS {
            let _ = m.files_applied.get_or_create(&Kind { kind: kind.into() });
        }
        for kind in REJECTED_KINDS {
            let _ = m.files_rejected.get_or_create(&Kind { kind: kind.into() });
        }
        let build: Family<Version, Gauge> = Family::default();
        build
            .get_or_create(&Version {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register(
            "build_info",
            "The running ordersync's version (value 1)",
            build,
        );
        registry.register(
            "files_applied",
            "Inbox files applied, by kind (orders, acks, stock)",
            m.files_applied.clone(),
        );
        registry.register(
            "files_rejected",
            "Inbox files rejected to errors/, by kind (orders, csv, other: from the name)",
            m.files_rejected.clone(),
        );
        registry.register(
            "export_files_written",
            "Export files written to outbox folders",
            m.export_files.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "Time to read, check and apply one inbox file",
            m.apply_seconds.clone(),
        );
        registry.register(
            "export_duration_seconds",
            "Time of one export step over the due systems",
            m.export_seconds.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            m.http_requests.clone(),
        );
        registry.register(
            "inbox_files_waiting",
            "Candidate files in the inbox at the last scan",
            m.inbox_waiting.clone(),
        );
        registry.register(
            "last_scan_timestamp_seconds",
            "UNIX time of the last successful inbox scan",
            m.last_scan.clone(),
        );
        registry.register("orders", "Orders stored", m.orders.clone());
        registry.register(
            "system_orders",
            "Orders per system and export state (pending, written, acked)",
            m.per_system.clone(),
        );
        registry.register(
            "leader",
            "1 while this node leads (a daemon alone on its store always does), 0 on a standby of a pair",
            m.leader.clone(),
        );
        registry.register(
            "remote_files",
            "Files moved with a partner's SFTP server, by remote and direction (pull, push)",
            m.remote_files.clone(),
        );
        registry.register(
            "remote_bytes",
            "Bytes of the files moved with a partner's SFTP server, by remote and direction",
            m.remote_bytes.clone(),
        );
        registry.register(
            "remote_errors",
            "Failed connections, passes and file transfers, by remote",
            m.remote_errors.clone(),
        );
        registry.register(
            "remote_last_success_timestamp_seconds",
            "UNIX time a remote's last pass went through whole",
            m.remote_success.clone(),
        );
        Metrics {
            registry: root,
            ..m
        }
    }

    /// The counters of configured remotes, at 0 from the start.
    pub fn remotes(&self, names: &[&str]) {
        for remote in names {
            for direction in ["pull", "push"] {
                let key = RemoteDirection {
                    remote: remote.to_string(),
                    direction: direction.into(),
                };
                let _ = self.remote_files.get_or_create(&key);
                let _ = self.remote_bytes.get_or_create(&key);
            }
            let _ = self.remote_errors.get_or_create(&RemoteName {
                remote: remote.to_string(),
            });
        }
    }

    /// A file moved with a remote.
    pub fn remote_file(&self, remote: &str, direction: &str, bytes: u64) {
        let key = RemoteDirection {
            remote: remote.into(),
            direction: direction.into(),
        };
        self.remote_files.get_or_create(&key).inc();
        self.remote_bytes.get_or_create(&key).inc_by(bytes);
    }

    /// A remote's connection, pass or file failed.
    pub fn remote_error(&self, remote: &str) {
        self.remote_errors
            .get_or_create(&RemoteName {
                remote: remote.into(),
            })
            .inc();
    }

    /// A remote's pass went through whole at `unix` seconds.
    pub fn remote_succeeded(&self, remote: &str, unix: f64) {
        self.remote_success
            .get_or_create(&RemoteName {
                remote: remote.into(),
            })
            .set(unix);
    }

    /// This node leads (or no longer does).
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// An inbox file was applied; `kind` is orders, acks or stock.
    pub fn file_applied(&self, kind: &str, took: Duration) {
        self.files_applied
            .get_or_create(&Kind { kind: kind.into() })
            .inc();
        self.apply_seconds.observe(took.as_secs_f64());
    }

    /// An inbox file was rejected; its kind is guessed from its name.
    pub fn file_rejected(&self, name: &str, took: Duration) {
        let lower = name.to_ascii_lowercase();
        let kind = if [".json", ".ndjson", ".jsonl"]
            .iter()
            .any(|e| lower.ends_with(e))
        {
            "orders"
        } else if lower.ends_with(".csv") {
            "csv"
        } else {
            "other"
        };
        self.files_rejected
            .get_or_create(&Kind { kind: kind.into() })
            .inc();
        self.apply_seconds.observe(took.as_secs_f64());
    }

    /// One export step wrote `files` files in `took`.
    pub fn exported(&self, files: usize, took: Duration) {
        self.export_files.inc_by(files as u64);
        self.export_seconds.observe(took.as_secs_f64());
    }

    /// An inbox scan found `waiting` candidates.
    pub fn scanned(&self, waiting: usize) {
        self.inbox_waiting.set(waiting as i64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_scan.set(now);
    }

    /// An HTTP request was answered.
    pub fn request(&self, route: &str, status: u16) {
        self.http_requests
            .get_or_create(&Request {
                route: route.into(),
                status: status.to_string(),
            })
            .inc();
    }

    /// The text exposition, with the store's kept counts read now:
    /// OpenMetrics, or with `openmetrics` false the classic text format
    /// (see [`classic`]).
    pub fn render(
        &self,
        store: &Store,
        config: &Config,
        openmetrics: bool,
    ) -> Result<String, StoreError> {
        self.orders.set(store.order_count()? as i64);
        for s in &config.systems {
            for state in ExportState::ALL {
                let n = store.count_in_state(&s.id, state)?;
                self.per_system
                    .get_or_create(&SystemState {
                        system: s.id.clone(),
                        state: state.name().into(),
                    })
                    .set(n as i64);
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        Ok(if openmetrics { out } else { classic(&out) })
    }
}

/// The content type of each format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a request's `Accept` header asks for OpenMetrics (Prometheus
/// puts it first; curl and most tools send `*/*`).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// OpenMetrics text as Prometheus's classic text format (0.0.4): there a
/// counter's `# HELP` and `# TYPE` name its samples (`x_total`, not `x`),
/// and there is no `# EOF`. What `promtool check metrics` reads.
fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The process metrics every Prometheus client library exports, read from
/// `/proc/self` at each scrape. A value that cannot be read is left out.
#[derive(Debug)]
struct Process;

/// What `/proc/self` says, each value when it could be read.
#[derive(Default)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
    start_time: Option<f64>,
}

fn process_stats() -> ProcessStats {
    // SAFETY: sysconf and getrlimit only read the process's settings into
    // values owned here.
    let (ticks, page, limit) = unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let ok = libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0;
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
            ok.then_some(limit.rlim_cur),
        )
    };
    let mut stats = ProcessStats {
        max_fds: limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as i64),
        ..ProcessStats::default()
    };
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        stats.resident_bytes = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<i64>().ok())
            .map(|p| p * page);
    }
    // Fields after the command name (which may hold spaces), from 3 on:
    // utime and stime are fields 14 and 15, starttime 22, in clock ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    if ticks > 0 {
        let ticks = ticks as f64;
        if let (Some(u), Some(s)) = (field(14), field(15)) {
            stats.cpu_seconds = Some((u + s) / ticks);
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|b| b.trim().parse::<f64>().ok())
        });
        if let (Some(start), Some(boot)) = (field(22), boot) {
            stats.start_time = Some(boot + start / ticks);
        }
    }
    stats
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = process_stats();
        if let Some(v) = stats.cpu_seconds {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                m.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stats.resident_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                stats.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                stats.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let m = ConstGauge::new(v);
                m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
            }
        }
        if let Some(v) = stats.start_time {
            let m = ConstGauge::new(v);
            m.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                None,
                m.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter's HELP and TYPE take its samples' name; gauges and
    /// histograms keep theirs; `# EOF` goes.
    #[test]
    fn classic_format_names_counters_by_their_samples() {
        let om = "# HELP a_files Files.\n# TYPE a_files counter\na_files_total{kind=\"x\"} 0\n# HELP b Gauge.\n# TYPE b gauge\nb 1\n# EOF\n";
        assert_eq!(
            classic(om),
            "# HELP a_files_total Files.\n# TYPE a_files_total counter\na_files_total{kind=\"x\"} 0\n# HELP b Gauge.\n# TYPE b gauge\nb 1\n"
        );
    }
}
