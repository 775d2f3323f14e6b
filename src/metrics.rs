//! Process metrics for `GET /metrics` (Prometheus text format).
//!
//! One registry per process ([`global`]): the file side (engine, daemon)
//! counts what it does with one-line hooks, the HTTP side counts requests.
//! What the store already keeps (orders stored, per-system pending /
//! written / acked) is not counted here but read from the kept counts when
//! the metrics are scraped ([`Metrics::render`]), so it always matches
//! `status`.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
struct SystemState {
    system: String,
    state: String,
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
        let mut registry = Registry::with_prefix("ordersync");
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
            registry: Registry::default(),
        };
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
        Metrics { registry, ..m }
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

    /// The text exposition, with the store's kept counts read now.
    pub fn render(&self, store: &Store, config: &Config) -> Result<String, StoreError> {
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
        Ok(out)
    }
}
