//! Checking an inbox file without applying it: what `ordersync validate`
//! does, and the one check a system's own drop folder adds (its acks may
//! only name that system).
//!
//! It goes through the inbox's own parse path ([`input::parse`], which
//! validates every order with [`crate::order::validate`] and every CSV row
//! with [`crate::csvin`]), so a file valid here passes every check the
//! inbox makes on the file by itself. What needs the store — an ack naming
//! an order that does not exist, a stale update, an `external_id` taken by
//! another order, stock going below zero — is not checked: a partner has no
//! store.

use crate::config::{Encoding, SystemConfig};
use crate::csvin::AckRow;
use crate::input::{self, CsvRow, Input};
use crate::problem::Problem;

/// What a file was found to be, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `orders`, `acks`, `stock`; `None` when the file is not readable as
    /// any kind.
    pub kind: Option<&'static str>,
    /// How many orders or rows it holds (valid or not).
    pub items: usize,
    /// Every problem, in file order, exactly as `errors/<name>.error.txt`
    /// would list them.
    pub problems: Vec<Problem>,
}

/// Where a file is checked as if dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The configured systems, if a config is at hand: ack rows naming
    /// another system are problems. `None`: system ids are not checked.
    pub systems: Option<&'a [SystemConfig]>,
    /// The system whose own drop folder the file is in: ack rows may only
    /// name it.
    pub only_system: Option<&'a str>,
}

/// Checks a file named `name` with content `bytes` as the inbox would,
/// without a store. `max_size` is `[inbox] max_file_size`.
pub fn check(
    name: &str,
    bytes: &[u8],
    encoding: Encoding,
    max_size: u64,
    target: Target,
) -> Report {
    if bytes.len() as u64 > max_size {
        // The same words as the inbox's rejection.
        return Report {
            kind: None,
            items: 0,
            problems: vec![Problem::new(
                "file",
                format!(
                    "{} bytes is larger than [inbox] max_file_size ({max_size} bytes); not read",
                    bytes.len()
                ),
            )],
        };
    }
    let now = chrono::Utc::now().timestamp_millis();
    let parsed = input::parse(name, bytes, encoding, now);
    let mut problems = parsed.problems;
    let Some(found) = &parsed.input else {
        return Report {
            kind: None,
            items: 0,
            problems,
        };
    };
    let items = match found {
        Input::Orders(orders) => orders.len(),
        Input::OrderStream(stream) => {
            let mut n = 0;
            let _ = stream.each(|(_, r)| {
                n += 1;
                if let Err(p) = r {
                    problems.extend(p);
                }
                Ok::<(), ()>(())
            });
            n
        }
        Input::Acks(rows) => {
            if let Some(systems) = target.systems {
                problems.extend(unknown_systems(rows, systems));
            }
            if let Some(only) = target.only_system {
                problems.extend(foreign_acks(rows, only));
            }
            rows.len()
        }
        Input::Stock { rows, .. } => rows.len(),
        Input::Rows(stream) => {
            let mut n = 0;
            let _ = stream.each(|r| {
                n += 1;
                match r {
                    Ok(CsvRow::Ack(row)) => {
                        let row = std::slice::from_ref(&row);
                        if let Some(systems) = target.systems {
                            problems.extend(unknown_systems(row, systems));
                        }
                        if let Some(only) = target.only_system {
                            problems.extend(foreign_acks(row, only));
                        }
                    }
                    Ok(CsvRow::Stock { .. }) => {}
                    Err(p) => problems.push(p),
                }
                Ok::<(), ()>(())
            });
            n
        }
    };
    problems.sort_by_key(Problem::line);
    Report {
        kind: Some(found.kind()),
        items,
        problems,
    }
}

/// Ack rows naming a system that is not configured, worded as the store
/// words them when it applies the file.
pub fn unknown_systems(rows: &[AckRow], systems: &[SystemConfig]) -> Vec<Problem> {
    let known: Vec<&str> = systems.iter().map(|s| s.id.as_str()).collect();
    rows.iter()
        .filter(|r| !known.contains(&r.system_id.as_str()))
        .map(|r| {
            Problem::new(
                format!("line {}", r.line),
                format!(
                    "unknown system {:?} (configured: {})",
                    r.system_id,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
        .collect()
}

/// Ack rows naming another system than `only`, whose own drop folder the
/// file came from: a partner may acknowledge orders for itself only.
pub fn foreign_acks(rows: &[AckRow], only: &str) -> Vec<Problem> {
    rows.iter()
        .filter(|r| r.system_id != only)
        .map(|r| {
            Problem::new(
                format!("line {}", r.line),
                format!(
                    "system_id {:?}: this file is in the drop folder of system {only:?}, whose acks may only name {only:?}",
                    r.system_id
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target::default()
    }

    #[test]
    fn reports_every_problem_of_orders_and_rows() {
        let r = check("a.ndjson", b"{}\n[1]\n", Encoding::Utf8, 1 << 20, target());
        assert_eq!(r.kind, Some("orders"));
        assert_eq!(r.items, 2);
        assert!(r.problems.iter().any(|p| p.at.starts_with("line 1: $.")));
        assert!(r.problems.iter().any(|p| p.at.starts_with("line 2: $")));
        let r = check(
            "a.csv",
            b"order_id,system_id,regulate_inventory\nx,erp,maybe\n",
            Encoding::Utf8,
            1 << 20,
            target(),
        );
        assert_eq!(r.kind, Some("acks"));
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    }

    #[test]
    fn a_partner_folder_takes_acks_for_its_system_only() {
        let csv = b"order_id,system_id,regulate_inventory\nx,erp,no\ny,wms,no\n";
        let t = Target {
            systems: None,
            only_system: Some("erp"),
        };
        let r = check("a.csv", csv, Encoding::Utf8, 1 << 20, t);
        let text: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "line 3: system_id \"wms\": this file is in the drop folder of system \"erp\", whose acks may only name \"erp\""
            ]
        );
    }

    #[test]
    fn too_large_is_not_read() {
        let r = check("a.json", b"{}", Encoding::Utf8, 1, target());
        assert_eq!(r.kind, None);
        assert!(r.problems[0].what.contains("max_file_size"));
    }
}
