//! `[inbox]`: how candidate files are found (ignore patterns, a ready
//! marker), when they are ready (settle, rescan, poll), how big they may be
//! and how they are decoded; and the byte sizes (`"64MiB"`) that `[inbox]`
//! and `[store]` are written in. `Config::parse` checks the values: the
//! patterns compile, the marker is a file name suffix, the size is not 0.

use std::fmt;
use std::time::Duration;

use globset::GlobSet;
use serde::Deserialize;

/// How inbox CSV files are decoded: the CSV reader's (`[inbox] encoding`).
pub use crate::csvin::Encoding;

/// `[inbox]`: how candidate files are found and when they are ready.
#[derive(Debug, Clone)]
pub struct InboxConfig {
    pub settle: Duration,
    /// `None` when configured as "0s" (never).
    pub rescan: Option<Duration>,
    pub poll: bool,
    pub max_file_size: u64,
    pub encoding: Encoding,
    pub ignore: GlobSet,
    /// The patterns as written, for `check`.
    pub ignore_patterns: Vec<String>,
    /// `None` when empty.
    pub ready_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawInbox {
    #[serde(with = "humantime_serde")]
    pub(super) settle: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) rescan: Duration,
    pub(super) poll: bool,
    pub(super) max_file_size: Size,
    pub(super) encoding: Encoding,
    pub(super) ignore: Vec<String>,
    pub(super) ready_marker: String,
}

impl Default for RawInbox {
    fn default() -> Self {
        RawInbox {
            settle: Duration::from_secs(1),
            rescan: Duration::from_secs(30),
            poll: false,
            max_file_size: Size(64 << 20),
            encoding: Encoding::Utf8,
            ignore: DEFAULT_IGNORE.iter().map(|s| s.to_string()).collect(),
            ready_marker: String::new(),
        }
    }
}

/// The default `[inbox] ignore` patterns: hidden files and the temporary names
/// that SFTP clients, rsync and WinSCP upload to before renaming.
pub const DEFAULT_IGNORE: &[&str] = &[".*", "*.tmp", "*.part", "*.partial", "*.filepart", "~*"];

/// A byte size written as `"64MiB"`, `"512 KiB"`, `"1GiB"`, `"1000"` or an integer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Size(pub(super) u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Int(n) => Ok(Size(n)),
            Either::Text(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `"64MiB"`-style sizes (B, KiB, MiB, GiB; KB/MB/GB as powers of ten).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected e.g. \"64MiB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("invalid size unit {other:?} in {text:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
            Encoding::Iso88591 => "iso-8859-1",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1 KiB"), Ok(1024));
        assert_eq!(parse_size("10"), Ok(10));
        assert!(parse_size("MiB").is_err());
    }
}
