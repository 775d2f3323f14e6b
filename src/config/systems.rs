//! `[[systems]]`: the downstream systems, one table each: export format
//! and transport, batching, CSV shape, resending, acknowledgement, its own
//! inbox, and which orders are eligible for it (include flags and filter
//! groups). `Config::parse` checks each one: a safe, unique id (it names
//! files and folders), a batch of at least 1, a one-character delimiter.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::filter::{FilterGroup, RawFilterGroup};

/// Export file format of one system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Ndjson,
    Csv,
}

impl Format {
    /// File name extension of export files in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// How a system receives its orders (`transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Export files in `outbox/<system>/`, acknowledgement CSVs back.
    Files,
    /// No files: the system fetches its orders with `GET
    /// /v10/orders/export` and marks them with `POST
    /// /v10/orders/mark-as-exported` (SPEC §11).
    Http,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Files => "files",
            Transport::Http => "http",
        })
    }
}

/// One downstream system (`[[systems]]`).
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub id: String,
    pub format: Format,
    pub batch_size: usize,
    pub include_not_approved: bool,
    pub include_cancelled: bool,
    pub include_archived: bool,
    pub include_lines: bool,
    pub ready_marker: bool,
    /// `None` when "0s" (never).
    pub resend_after: Option<Duration>,
    pub auto_ack: bool,
    pub auto_ack_regulate: bool,
    pub csv_delimiter: u8,
    pub csv_crlf: bool,
    pub csv_bom: bool,
    pub filter_groups: Vec<FilterGroup>,
    /// The system's own drop folder, if it has one: files there are taken
    /// like the shared inbox's, but its acks may only name this system.
    pub inbox: Option<PathBuf>,
    pub transport: Transport,
}

impl SystemConfig {
    /// Whether an order (its filled-in document) is eligible for this
    /// system: its include flags, then every filter group (SPEC §7).
    pub fn eligible(&self, doc: &serde_json::Value) -> bool {
        // Every order is queued for an HTTP system; the GET request's
        // include flags and filter groups decide what a client gets (SPEC
        // §11).
        if self.transport == Transport::Http {
            return true;
        }
        let f = crate::order::Facts::of(doc);
        (self.include_not_approved || f.approved)
            && (self.include_cancelled || !f.cancelled)
            && (self.include_archived || !f.archived)
            && self.filter_groups.iter().all(|g| g.matches(doc))
    }

    /// Identifies the settings that decide which orders are eligible (include
    /// flags and filters): when it changes, stored orders are re-evaluated.
    pub fn eligibility_fingerprint(&self) -> String {
        if self.transport == Transport::Http {
            // Every order is queued for an HTTP system: the request decides.
            return "v1 http".into();
        }
        format!(
            "v1 {} {} {} {:?}",
            self.include_not_approved,
            self.include_cancelled,
            self.include_archived,
            self.filter_groups
        )
    }
}

/// Whether `id` is a safe system id: `[A-Za-z0-9_-]{1,64}`.
pub fn valid_system_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Deserialize)]
pub(super) struct RawSystem {
    pub(super) id: String,
    #[serde(default = "default_format")]
    pub(super) format: Format,
    #[serde(default = "default_batch_size")]
    pub(super) batch_size: i64,
    #[serde(default)]
    pub(super) include_not_approved: bool,
    #[serde(default)]
    pub(super) include_cancelled: bool,
    #[serde(default)]
    pub(super) include_archived: bool,
    #[serde(default = "yes")]
    pub(super) include_lines: bool,
    #[serde(default)]
    pub(super) ready_marker: bool,
    #[serde(default, with = "humantime_serde")]
    pub(super) resend_after: Duration,
    #[serde(default)]
    pub(super) auto_ack: bool,
    #[serde(default)]
    pub(super) auto_ack_regulate: bool,
    #[serde(default = "default_delimiter")]
    pub(super) csv_delimiter: String,
    #[serde(default)]
    pub(super) csv_crlf: bool,
    #[serde(default)]
    pub(super) csv_bom: bool,
    #[serde(default)]
    pub(super) filter_groups: Vec<RawFilterGroup>,
    #[serde(default)]
    pub(super) inbox: PathBuf,
    #[serde(default = "default_transport")]
    pub(super) transport: Transport,
}

fn default_transport() -> Transport {
    Transport::Files
}

fn default_format() -> Format {
    Format::Json
}
fn default_batch_size() -> i64 {
    100
}
fn yes() -> bool {
    true
}
fn default_delimiter() -> String {
    ",".into()
}
