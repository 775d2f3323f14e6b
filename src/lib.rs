//! ordersync: a file-based order export daemon.
//!
//! The data flows one way — inbox file ([`inbox`]) → parsed, validated input
//! ([`input`], [`order`], [`csvin`]) → one atomic store batch ([`store`]) →
//! export files ([`export`]) — driven by the [`engine`], either once
//! (`run --once`) or by the [`daemon`]. See ARCHITECTURE.md.

pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod csvin;
pub mod daemon;
pub mod engine;
pub mod export;
pub mod filter;
pub mod fsutil;
pub mod http;
pub mod inbox;
pub mod input;
pub mod logging;
pub mod metrics;
pub mod order;
pub mod pgurl;
pub mod problem;
#[cfg(feature = "sftp")]
pub mod remote;
pub mod store;
pub mod validate;
