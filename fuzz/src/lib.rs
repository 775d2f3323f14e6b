//! The checks behind ordersync's fuzz targets, one function per input
//! surface. Each binary in `src/bin/` hands AFL's input to one of these;
//! `cargo test --lib` replays the seed corpora through them
//! (`regressions.rs`).
//!
//! A target asserts what must hold for every input, not only "no panic":
//! every problem says where and what; what the inbox accepts reads back
//! from the store; a query compiled again from its canonical form is the
//! same query; and so on. A failed assertion is a crash to AFL.

use std::path::Path;

use ordersync::config::{self, Config, ConfigError, Encoding};
use ordersync::control;
use ordersync::csvin::MAX_STOCK_VALUE;
use ordersync::filter::{FilterGroup, FilterSpec};
use ordersync::http::query::{self, ExportQuery};
use ordersync::input::{self, CsvRow, Input};
use ordersync::problem::Problem;
use ordersync::store::{ExportDoc, OrderRecord};
use ordersync::validate;

#[cfg(test)]
mod regressions;

/// The time of receipt the inbox target parses with (any fixed time).
const NOW_MS: i64 = 1_767_225_600_000;

/// Every problem names where and what.
fn named(problems: &[Problem], surface: &str) {
    for p in problems {
        assert!(
            !p.at.trim().is_empty() && !p.what.trim().is_empty(),
            "{surface}: a problem without where or what: {p:?}"
        );
    }
}

/// The file names the first byte picks from: every kind the inbox takes
/// (a `.csv` is acks or stock by its header).
const NAMES: [&str; 5] = [
    "orders.json",
    "orders.ndjson",
    "orders.jsonl",
    "rows.csv",
    "ROWS.CSV",
];
const ENCODINGS: [Encoding; 3] = [Encoding::Utf8, Encoding::Windows1252, Encoding::Iso88591];

/// `inbox_file`: the first byte picks the file's name (so its kind) and the
/// configured CSV encoding, the rest is the file. Checked through
/// `validate::check` (the inbox's parse path, as `ordersync validate` runs
/// it) and through `input::parse` item by item: every problem is named;
/// every valid order, stored as a record, reads back whole, as a head and
/// as an export document, and its export document inside `{"orders": […]}`
/// (an export file, `orders show --json`) is JSON that reads back.
pub fn inbox_file(data: &[u8]) {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    let encoding = ENCODINGS[usize::from(pick) / NAMES.len() % ENCODINGS.len()];

    let report = validate::check(name, file, encoding, u64::MAX, validate::Target::default());
    named(&report.problems, name);
    if report.kind.is_none() {
        assert!(
            !report.problems.is_empty(),
            "{name}: not readable, but no problem says why"
        );
    }
    let lines: Vec<u64> = report.problems.iter().map(Problem::line).collect();
    assert!(lines.is_sorted(), "{name}: problems out of line order");

    let parsed = input::parse(name, file, encoding, NOW_MS);
    named(&parsed.problems, name);
    assert_eq!(
        parsed.input.as_ref().map(Input::kind),
        report.kind,
        "{name}: validate and the inbox disagree on the kind"
    );
    let mut items = 0;
    match &parsed.input {
        None => {}
        Some(Input::OrderStream(stream)) => {
            let _ = stream.each(|(at, r)| {
                items += 1;
                assert!(!at.is_empty(), "{name}: an order without a place");
                match r {
                    Ok(order) => reads_back(order),
                    Err(problems) => {
                        assert!(!problems.is_empty(), "{name}: {at} invalid, no problem");
                        named(&problems, name);
                    }
                }
                Ok::<(), ()>(())
            });
        }
        Some(Input::Rows(rows)) => {
            let _ = rows.each(|r| {
                items += 1;
                match r {
                    Ok(CsvRow::Ack(a)) => {
                        assert!(a.line >= 2, "{name}: ack row at line {}", a.line);
                        assert!(!a.order_id.is_empty() && !a.system_id.is_empty());
                    }
                    Ok(CsvRow::Stock { row, .. }) => {
                        assert!(row.line >= 2, "{name}: stock row at line {}", row.line);
                        assert!(!row.sku.is_empty());
                        assert!(row.value.abs() <= MAX_STOCK_VALUE, "{row:?}");
                    }
                    Err(p) => named(&[p], name),
                }
                Ok::<(), ()>(())
            });
        }
        Some(other) => panic!("{name}: the inbox no longer streams {}", other.kind()),
    }
    assert_eq!(items, report.items, "{name}: validate counts other items");
}

/// A valid order, stored as the store stores a new one, reads back.
fn reads_back(order: ordersync::order::Order) {
    let rec = OrderRecord {
        id: order.id,
        external_id: order.external_id,
        revision: 1,
        sent_hash: order.sent_hash,
        doc: order.doc,
        regulated: false,
    };
    let (back, head, export) = rec
        .read_back()
        .unwrap_or_else(|e| panic!("a valid order does not read back: {e}"));
    // The stored document is the one exported: with its `revision`.
    let stored = OrderRecord {
        doc: rec.export_doc(),
        ..rec.clone()
    };
    assert_eq!(back, stored, "the order read back differs");
    assert_eq!(head, rec.head(), "the head read back differs");
    assert_eq!(export, ExportDoc::of(&rec), "the export document differs");
    // An export file (json) and `orders show --json` wrap it two deeper.
    let mut wrapped = b"{\"orders\":[".to_vec();
    wrapped.extend_from_slice(&export.json);
    wrapped.extend_from_slice(b"]}");
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&wrapped) {
        panic!("an exported order does not read back: {e}");
    }
}

/// `export_query`: a query string through the handler's own parser. Every
/// problem is named; whatever is accepted, rendered in its canonical form
/// ([`canonical_query`]) and parsed again, is accepted as the same query.
pub fn export_query(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let (q, system_id, problems) = query::parse(raw);
    named(&problems, "query");
    if let Some(q) = &q {
        assert_eq!(system_id.as_deref(), Some(q.system_id.as_str()));
    }
    let Some(q) = q.filter(|_| problems.is_empty()) else {
        return;
    };
    let again = canonical_query(&q);
    let (q2, _, problems2) = query::parse(&again);
    assert!(
        problems2.is_empty(),
        "{raw:?} accepted, its canonical form {again:?} is not: {problems2:?}"
    );
    let q2 = q2.unwrap_or_else(|| panic!("{again:?}: no query"));
    assert_eq!(
        format!("{q:?}"),
        format!("{q2:?}"),
        "{raw:?} and its canonical form {again:?} differ"
    );
}

/// A query in its canonical form: every parameter given explicitly, the
/// filters as [`FilterGroup::to_specs`] gives them, every value
/// percent-encoded.
pub fn canonical_query(q: &ExportQuery) -> String {
    let flag = |b: bool| if b { "1" } else { "0" };
    let mut out = vec![
        format!("system_id={}", encode(&q.system_id)),
        format!("include_not_approved={}", flag(q.include_not_approved)),
        format!("include_cancelled={}", flag(q.include_cancelled)),
        format!("include_archived={}", flag(q.include_archived)),
        format!("limit={}", q.limit),
        format!("page={}", q.page),
    ];
    if let Some(ms) = q.not_exported_since {
        out.push(format!("not_exported_since={ms}"));
    }
    if q.lines {
        out.push("includes[0]=lines".into());
    }
    for (g, group) in q.filter_groups.iter().enumerate() {
        let (or, specs) = group.to_specs();
        out.push(format!("filter_groups[{g}][or]={or}"));
        for (f, s) in specs.iter().enumerate() {
            let at = format!("filter_groups[{g}][filters][{f}]");
            out.push(format!("{at}[key]={}", encode(&s.key)));
            out.push(format!("{at}[operator]={}", encode(&s.operator)));
            out.push(format!("{at}[not]={}", s.not));
            match &s.value {
                toml::Value::Array(list) => {
                    for (i, v) in list.iter().enumerate() {
                        out.push(format!("{at}[value][{i}]={}", encode(&scalar(v))));
                    }
                }
                v => out.push(format!("{at}[value]={}", encode(&scalar(v)))),
            }
        }
    }
    out.join("&")
}

/// A filter value as query text (the specs hold strings and integers).
fn scalar(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A group compiled again from its own specs is the same group.
fn group_roundtrip(group: &FilterGroup, at: &str) {
    let (or, specs) = group.to_specs();
    let shown: Vec<String> = specs.iter().map(spec_text).collect();
    match FilterGroup::from_specs(or, specs) {
        Ok(again) => assert_eq!(
            format!("{group:?}"),
            format!("{again:?}"),
            "{at}: compiled again from {shown:?}, a different group"
        ),
        Err(e) => panic!("{at}: its own specs {shown:?} do not compile: {e:?}"),
    }
}

fn spec_text(s: &FilterSpec) -> String {
    format!("{} {} {} not={}", s.key, s.operator, s.value, s.not)
}

/// `mark_body`: a mark-as-exported body through the handler's parser.
/// Never more than the 10,000 entries a call may hold; every problem is
/// named, on `body`, `orders` or one entry (`orders[i]…`); every row is a
/// complete ack row of an entry that exists.
pub fn mark_body(data: &[u8]) {
    // The handler's limit (`MAX_ENTRIES` in src/http/entries.rs).
    let max = 10_000;
    match ordersync::http::mark_rows(data) {
        Err(problems) => {
            assert!(!problems.is_empty(), "mark: rejected without a problem");
            named(&problems, "mark");
            for p in &problems {
                assert!(
                    p.at == "body" || p.at == "orders",
                    "mark: a whole-body problem at {:?}",
                    p.at
                );
            }
        }
        Ok((rows, problems)) => {
            named(&problems, "mark");
            assert!(rows.len() <= max, "mark: {} rows", rows.len());
            for p in &problems {
                assert!(
                    p.at == "orders" || p.at.starts_with("orders["),
                    "mark: a problem at {:?}",
                    p.at
                );
            }
            for r in &rows {
                assert!(
                    r.line >= 1 && r.line <= max as u64,
                    "mark: row line {}",
                    r.line
                );
                assert!(!r.order_id.is_empty() && !r.system_id.is_empty(), "{r:?}");
            }
        }
    }
}

/// `control_request`: a control-socket request as the daemon reads it
/// (the first line, at most `MAX_REQUEST` bytes), parsed into a command
/// without a store. A refusal is exit code 2 with a reason; a request
/// accepted once is accepted again, as the same command, after its JSON
/// is written out again (the CLI writes it, the daemon reads it).
pub fn control_request(data: &[u8]) {
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.len() > control::MAX_REQUEST {
        return;
    }
    match control::command_of(line) {
        Err(refused) => {
            assert_eq!(refused.code, 2, "control: refused with {}", refused.code);
            assert!(refused.stdout.is_empty());
            assert!(
                !refused.stderr.trim().is_empty(),
                "control: refused, no reason"
            );
        }
        Ok(command) => {
            let request: control::Request = serde_json::from_slice(line)
                .unwrap_or_else(|e| panic!("control: accepted, yet not a request: {e}"));
            let again = serde_json::to_vec(&request).unwrap_or_default();
            match control::command_of(&again) {
                Ok(c) => assert_eq!(format!("{command:?}"), format!("{c:?}")),
                Err(r) => panic!("control: written out again, refused: {}", r.stderr),
            }
        }
    }
}

/// `config`: a config file's text. An error names its key (a syntax
/// error its line); a config that parses renders as `check` prints it
/// (filter groups, durations, every system's settings), its paths are
/// absolute (resolved against the file's folder), its system ids are safe
/// folder names, and every filter group compiles again from its own specs.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/etc/config.toml");
    match Config::parse(text, path) {
        Err(e) => {
            let _ = e.to_string();
            match e {
                ConfigError::Parse { message, .. } => {
                    assert!(!message.trim().is_empty(), "config: an empty syntax error")
                }
                ConfigError::Invalid { key, message, .. } => {
                    assert!(
                        !key.is_empty() && !message.is_empty(),
                        "config: {key:?} {message:?}"
                    )
                }
                ConfigError::Problems { problems, .. } => {
                    assert!(problems.len() > 1, "config: Problems with one problem");
                    for (key, message) in problems {
                        assert!(
                            !key.is_empty() && !message.is_empty(),
                            "config: {key:?} {message:?}"
                        );
                    }
                }
                ConfigError::Read { .. } | ConfigError::NotFound { .. } => {
                    panic!("config: a file error without a file: {e:?}")
                }
            }
        }
        Ok(c) => {
            let _ = format!("{c:?}");
            let p = &c.paths;
            for dir in [&p.inbox, &p.outbox, &p.archive, &p.errors, &p.state] {
                assert!(
                    dir.is_absolute(),
                    "config: {} is not absolute",
                    dir.display()
                );
            }
            let _ = c.inbox.encoding.to_string();
            for s in &c.systems {
                assert!(
                    config::valid_system_id(&s.id),
                    "config: system id {:?}",
                    s.id
                );
                if let Some(dir) = &s.inbox {
                    assert!(
                        dir.is_absolute(),
                        "config: {} is not absolute",
                        dir.display()
                    );
                }
                let _ = (s.format.to_string(), s.transport.to_string());
                let _ = (char::from(s.csv_delimiter)).to_string();
                let _ = s.eligibility_fingerprint();
                for (g, group) in s.filter_groups.iter().enumerate() {
                    let _ = group.to_string();
                    group_roundtrip(group, &format!("systems[{}].filter_groups[{g}]", s.id));
                }
            }
            // Parsing is a function of the text (the parts whose Debug
            // is deterministic: a GlobSet's may not be).
            let shown = |c: &Config| format!("{:?} {:?} {:?}", c.paths, c.systems, c.http);
            let again = Config::parse(text, path).map(|c| shown(&c));
            assert_eq!(again.ok(), Some(shown(&c)), "config: parsed twice, differs");
        }
    }
}

/// `dump`: a dump file as `restore` reads it (`store::dump::Reader`, the
/// reader `Store::restore_from` uses, and `dump::check`, its per-record
/// rule). Every error names its line (1 or more); a record the reader
/// accepts, written out again as a dump line, reads back as the same
/// record; the reader never returns a record after the closing line.
pub fn dump(data: &[u8]) {
    use ordersync::store::dump::{DumpError, Reader, Record};
    let named = |e: &DumpError| match e {
        DumpError::Bad { line, message } => {
            assert!(*line >= 1, "dump: line 0: {message}");
            assert!(!message.trim().is_empty(), "dump: line {line}: no message");
        }
        other => panic!("dump: an error without a line: {other}"),
    };
    let mut reader = match Reader::new(data) {
        Ok((_, reader)) => reader,
        Err(e) => return named(&e),
    };
    let mut last = 1;
    loop {
        match reader.next_record() {
            Ok(None) => {
                assert!(
                    matches!(reader.next_record(), Ok(None)),
                    "dump: a record after the end"
                );
                return;
            }
            Ok(Some(record)) => {
                assert!(reader.line() > last, "dump: line numbers go on");
                last = reader.line();
                let _ = ordersync::store::dump::check(&record);
                let line = serde_json::to_vec(&record).expect("a record writes out");
                assert!(!line.contains(&b'\n'), "dump: a record over two lines");
                let again: Record = serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!("dump: {record:?} written out does not read back: {e}")
                });
                assert_eq!(again, record, "dump: read back as another record");
            }
            Err(e) => return named(&e),
        }
    }
}
