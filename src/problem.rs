//! A problem found in an inbox file: where it is and what is wrong.
//!
//! A rejected file's `errors/<name>.error.txt` is these, one per line.

use std::fmt;

use serde_json::Value;

/// One problem in an input file, e.g. `line 14: regulate_inventory: expected
/// true/false, got "maybe"` or `$.line_items[2].qty_ordered: expected a
/// number, got "ten"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `line 14`, `$.line_items[2].qty_ordered`, `file`.
    pub at: String,
    /// What is wrong.
    pub what: String,
}

impl Problem {
    /// A problem at `at`.
    pub fn new(at: impl Into<String>, what: impl Into<String>) -> Problem {
        Problem {
            at: at.into(),
            what: what.into(),
        }
    }

    /// The line number a problem names (`line 14…`), 0 when it names none.
    pub fn line(&self) -> u64 {
        self.at
            .strip_prefix("line ")
            .map(|r| r.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The same problem, located inside `outer` (e.g. `line 3` + `$.sku`).
    pub fn within(mut self, outer: &str) -> Problem {
        self.at = format!("{outer}: {}", self.at);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

/// A short description of a JSON value for messages: strings quoted (and cut
/// at 40 characters), numbers and literals as they are, containers by kind.
pub fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let cut: String = s.chars().take(40).collect();
            if cut.len() < s.len() {
                format!("{:?}…", cut)
            } else {
                format!("{s:?}")
            }
        }
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
        other => other.to_string(),
    }
}
