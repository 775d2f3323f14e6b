//! Inbox CSV (SPEC §3, §5, §6): decoding, delimiter sniffing, header lookup,
//! and the two row kinds, acknowledgements and stock.
//!
//! Accepts UTF-8 with or without BOM (or the configured single-byte
//! encoding), `,` or `;` (sniffed from the header line), LF, CRLF or CR, quoted
//! fields; header names are matched case-insensitively after trimming and
//! extra columns are ignored. Every row problem is reported with its line.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::problem::Problem;

/// How inbox CSV files are decoded (JSON is always UTF-8): `[inbox]
/// encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Encoding {
    #[serde(rename = "utf-8", alias = "utf8", alias = "UTF-8")]
    Utf8,
    #[serde(rename = "windows-1252", alias = "cp1252")]
    Windows1252,
    #[serde(rename = "iso-8859-1", alias = "latin1")]
    Iso88591,
}

/// A decoded CSV file, read in two passes so that memory follows one
/// row, not the file: [`Table::parse`] reads the header and checks every
/// record's syntax and width (those problems reject the file, as before);
/// [`Table::rows`] then reads the records again, one at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Table<'a> {
    text: Cow<'a, str>,
    delimiter: u8,
    columns: HashMap<String, usize>,
    width: usize,
    /// Records that do not match the header's width (left out of `rows`).
    pub problems: Vec<Problem>,
}

/// The largest stock value a row may set or add, either sign: `in_stock`
/// and `adjustment` cells must be within ±10^12. Stored totals are checked
/// again when they change.
pub const MAX_STOCK_VALUE: i64 = 1_000_000_000_000;

/// One record of a [`Table`], as [`Table::rows`] reads it.
pub struct Row<'r> {
    pub line: u64,
    fields: &'r csv::StringRecord,
}

/// What a CSV file is, by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvKind {
    Acks,
    StockAbsolute,
    StockAdjustment,
}

/// One acknowledgement row (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRow {
    pub line: u64,
    pub order_id: String,
    pub system_id: String,
    pub regulate: bool,
    pub note: Option<String>,
}

/// The longest note an acknowledgement may carry, in characters (a longer
/// one is the row's problem, in an ack CSV and over HTTP alike).
pub const MAX_NOTE_CHARS: usize = 1_000;

impl AckRow {
    /// The rules of a row's own content, the same for an ack CSV's row and
    /// a mark-as-exported entry (the store checks every row it is given,
    /// so no path can skip them): `order_id` a reference
    /// ([`crate::order::reference_problem`]) and a note of at most
    /// [`MAX_NOTE_CHARS`]. The problem is at `line N` and names the column.
    pub fn check(&self) -> Result<(), Problem> {
        let at = || format!("line {}", self.line);
        if self.order_id.is_empty() {
            return Err(Problem::new(at(), "order_id is empty"));
        }
        if let Some(what) = crate::order::reference_problem(&self.order_id) {
            return Err(Problem::new(at(), format!("order_id: {what}")));
        }
        if self.system_id.is_empty() {
            return Err(Problem::new(at(), "system_id is empty"));
        }
        // No configured system holds either, and a NUL must never reach
        // the store's reads (PostgreSQL refuses it: a 500 where sled said
        // "unknown system").
        if self.system_id.chars().any(char::is_control)
            || self.system_id.len() > crate::order::MAX_REFERENCE_CHARS
        {
            return Err(Problem::new(
                at(),
                format!(
                    "system_id: unknown system {}",
                    crate::problem::describe(&serde_json::Value::String(self.system_id.clone()))
                ),
            ));
        }
        if let Some(note) = &self.note {
            if note.contains('\0') {
                return Err(Problem::new(
                    at(),
                    "note: contains U+0000 (NUL), which no note may hold",
                ));
            }
            let n = note.chars().count();
            if n > MAX_NOTE_CHARS {
                return Err(Problem::new(
                    at(),
                    format!("note: {n} characters; at most {MAX_NOTE_CHARS} are kept per note"),
                ));
            }
        }
        Ok(())
    }
}

/// One stock row (SPEC §5): the value is absolute or an adjustment,
/// depending on the file's [`CsvKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRow {
    pub line: u64,
    pub sku: String,
    pub value: i64,
}

/// Decodes raw bytes to text. A UTF-8 BOM always means UTF-8. A file that
/// is not text at all (a NUL byte, a ZIP archive such as an .xlsx, or
/// invalid UTF-8 with control bytes) is told so, not to set an encoding.
pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<Cow<'_, str>, Problem> {
    if let Some(p) = not_text(bytes) {
        return Err(p);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return utf8(rest);
    }
    match encoding {
        Encoding::Utf8 => utf8(bytes),
        Encoding::Windows1252 => Ok(encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0),
        // ISO-8859-1 maps each byte to the code point of the same number
        // (encoding_rs would treat it as windows-1252, per WHATWG).
        Encoding::Iso88591 => Ok(Cow::Owned(bytes.iter().map(|&b| b as char).collect())),
    }
}

/// What to do with a file that is not a text CSV.
const NOT_TEXT_HINT: &str =
    "save or export it as CSV text (UTF-8, or the [inbox] encoding configured)";

/// The line (1-based) of byte offset `at`.
fn line_of(bytes: &[u8], at: usize) -> u64 {
    line_breaks(&bytes[..at.min(bytes.len())]) + 1
}

/// Why `bytes` are no text CSV in any encoding: a ZIP archive (an .xlsx
/// workbook is one) or a NUL byte (binary data, or UTF-16 text), which no
/// text CSV holds.
fn not_text(bytes: &[u8]) -> Option<Problem> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Some(Problem::new(
            "file",
            format!(
                "not a text CSV file: it is a ZIP archive (an .xlsx workbook?); {NOT_TEXT_HINT}"
            ),
        ));
    }
    let at = bytes.iter().position(|&b| b == 0)?;
    Some(Problem::new(
        format!("line {}", line_of(bytes, at)),
        format!(
            "not a text CSV file: a NUL byte at byte {at} (binary data, or UTF-16 text); {NOT_TEXT_HINT}"
        ),
    ))
}

/// A control byte that no text file holds (white space, form feed and
/// DOS's end-of-file mark are left out).
fn binary_control(b: u8) -> bool {
    b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C | 0x1A)
}

fn utf8(bytes: &[u8]) -> Result<Cow<'_, str>, Problem> {
    std::str::from_utf8(bytes).map(Cow::Borrowed).map_err(|e| {
        let at = e.valid_up_to();
        let line = line_of(bytes, at);
        // Not UTF-8 and control bytes too: binary, whatever the encoding.
        if let Some(c) = bytes.iter().position(|&b| binary_control(b)) {
            return Problem::new(
                format!("line {line}"),
                format!(
                    "not a text CSV file: not valid UTF-8 (byte {at}) and a control byte at byte {c}; {NOT_TEXT_HINT}"
                ),
            );
        }
        Problem::new(
            format!("line {line}"),
            format!(
                "not valid UTF-8 (byte {at}); set [inbox] encoding = \"windows-1252\" or \"iso-8859-1\" for such files"
            ),
        )
    })
}

/// `;` when the header line has more semicolons than commas outside quotes.
fn sniff_delimiter(text: &str) -> u8 {
    let header = text.split(['\r', '\n']).next().unwrap_or("");
    let (mut commas, mut semis, mut quoted) = (0, 0, false);
    for c in header.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => commas += 1,
            ';' if !quoted => semis += 1,
            _ => {}
        }
    }
    if semis > commas { b';' } else { b',' }
}

/// The line breaks in `bytes` as the csv crate reads them: LF, CRLF, and a
/// CR alone (old Mac files) each end a line.
fn line_breaks(bytes: &[u8]) -> u64 {
    let mut n = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
            n += 1;
        }
    }
    n
}

/// Line numbers of byte offsets, counted forward as the reader moves on.
struct Lines<'b> {
    bytes: &'b [u8],
    /// The offset up to which newlines are counted, and how many.
    pos: usize,
    newlines: u64,
}

impl<'b> Lines<'b> {
    fn new(bytes: &'b [u8]) -> Lines<'b> {
        Lines {
            bytes,
            pos: 0,
            newlines: 0,
        }
    }

    /// The line a record (or error) at `pos` starts on. The csv crate's
    /// positions are off with CRLF (they can point at the terminator before
    /// a record), so skip to the record's first byte (a record never starts
    /// with a raw CR or LF).
    fn at(&mut self, pos: Option<&csv::Position>) -> u64 {
        let Some(p) = pos else { return 0 };
        let mut start = p.byte() as usize;
        while matches!(self.bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        let start = start.min(self.bytes.len());
        if start < self.pos {
            (self.pos, self.newlines) = (0, 0);
        }
        self.newlines += line_breaks(&self.bytes[self.pos..start]);
        self.pos = start;
        self.newlines + 1
    }
}

impl<'a> Table<'a> {
    /// Reads the header and checks every record (syntax and width), without
    /// keeping the records. Blank lines are skipped.
    pub fn parse(text: Cow<'a, str>) -> Result<Table<'a>, Vec<Problem>> {
        let delimiter = sniff_delimiter(&text);
        let mut reader = reader(&text, delimiter);
        let mut lines = Lines::new(text.as_bytes());
        let mut record = csv::StringRecord::new();
        let header = match reader.read_record(&mut record) {
            Ok(false) => return Err(vec![Problem::new("line 1", "the file is empty")]),
            Err(e) => return Err(vec![csv_problem(&e, lines.at(e.position()))]),
            Ok(true) => record.clone(),
        };
        let mut columns = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            columns.entry(name.trim().to_lowercase()).or_insert(i);
        }
        // Trailing empty header cells (a spreadsheet's trailing delimiters)
        // name no column: a row needs only the named ones.
        let width = (0..header.len())
            .rev()
            .find(|&i| !header[i].trim().is_empty())
            .map_or(0, |i| i + 1);
        let mut syntax = Vec::new();
        let mut problems = Vec::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Err(e) => syntax.push(csv_problem(&e, lines.at(e.position()))),
                Ok(true) if blank(&record) => {}
                Ok(true) => {
                    if let Some(what) = misfit(&record, width) {
                        let line = lines.at(record.position());
                        problems.push(Problem::new(format!("line {line}"), what));
                    }
                }
            }
        }
        if !syntax.is_empty() {
            return Err(syntax);
        }
        Ok(Table {
            text,
            delimiter,
            width,
            columns,
            problems,
        })
    }

    /// The size of the decoded text, in bytes.
    pub fn size(&self) -> usize {
        self.text.len()
    }

    /// Calls `f` with each record that fits the header, in file order
    /// (blank records and those [`Table::parse`] reported are skipped);
    /// stops at the first error `f` returns.
    pub fn rows<E>(&self, mut f: impl FnMut(Row) -> Result<(), E>) -> Result<(), E> {
        let mut reader = reader(&self.text, self.delimiter);
        let mut lines = Lines::new(self.text.as_bytes());
        let mut record = csv::StringRecord::new();
        // The header, then the records; parse() saw no syntax error.
        let mut header = true;
        while let Ok(true) = reader.read_record(&mut record) {
            if std::mem::take(&mut header)
                || blank(&record)
                || misfit(&record, self.width).is_some()
            {
                continue;
            }
            let line = lines.at(record.position());
            f(Row {
                line,
                fields: &record,
            })?;
        }
        Ok(())
    }

    /// Whether the header has this column (lower-case name).
    pub fn has(&self, column: &str) -> bool {
        self.columns.contains_key(column)
    }

    /// The file's kind by its header, or `None` when it is neither.
    pub fn kind(&self) -> Result<CsvKind, Problem> {
        if self.has("order_id") && self.has("system_id") {
            if !self.has("regulate_inventory") {
                return Err(Problem::new(
                    "line 1",
                    "acknowledgement header needs a regulate_inventory column",
                ));
            }
            return Ok(CsvKind::Acks);
        }
        if self.has("sku") {
            match (self.has("in_stock"), self.has("adjustment")) {
                (true, false) => return Ok(CsvKind::StockAbsolute),
                (false, true) => return Ok(CsvKind::StockAdjustment),
                (true, true) => {
                    return Err(Problem::new(
                        "line 1",
                        "stock header has both in_stock and adjustment; use one per file",
                    ));
                }
                (false, false) => {}
            }
        }
        Err(Problem::new(
            "line 1",
            "unsupported file type: a CSV header needs order_id,system_id,regulate_inventory (acknowledgements) or sku,in_stock / sku,adjustment (stock)",
        ))
    }

    /// The trimmed cell of `column` in `row`; a problem when the row is short.
    fn cell<'r>(&self, row: &Row<'r>, column: &str) -> Result<&'r str, Problem> {
        let i = self.columns.get(column).copied().unwrap_or(usize::MAX);
        row.fields.get(i).map(|f| f.trim()).ok_or_else(|| {
            Problem::new(
                format!("line {}", row.line),
                format!(
                    "expected {} fields as in the header, got {} (no {column})",
                    self.width,
                    row.fields.len()
                ),
            )
        })
    }
}

fn reader(text: &str, delimiter: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
}

/// A record of blank cells only: skipped.
fn blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|f| f.trim().is_empty())
}

/// Why a record does not fit the header, if it does not.
fn misfit(record: &csv::StringRecord, width: usize) -> Option<String> {
    // Shorter than the header, or longer with something in the extra
    // cells: which value is in which column is a guess, so the row is
    // refused.
    let extra = record.iter().skip(width).any(|f| !f.trim().is_empty());
    (record.len() < width || extra).then(|| {
        format!(
            "expected {width} fields as in the header, got {}",
            record.len()
        )
    })
}

fn csv_problem(e: &csv::Error, line: u64) -> Problem {
    let what = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        _ => e.to_string(),
    };
    Problem::new(format!("line {line}"), what)
}

impl Table<'_> {
    /// Parses one acknowledgement row.
    pub fn ack_row(&self, row: &Row) -> Result<AckRow, Problem> {
        let at = format!("line {}", row.line);
        let order_id = self.cell(row, "order_id")?;
        let system_id = self.cell(row, "system_id")?;
        let regulate = self.cell(row, "regulate_inventory")?;
        if order_id.is_empty() {
            return Err(Problem::new(&at, "order_id is empty"));
        }
        if system_id.is_empty() {
            return Err(Problem::new(&at, "system_id is empty"));
        }
        let regulate = match regulate.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => {
                return Err(Problem::new(
                    &at,
                    format!(
                        "regulate_inventory: expected true/false, 1/0 or yes/no, got {regulate:?}"
                    ),
                ));
            }
        };
        let note = if self.has("note") {
            let n = self.cell(row, "note")?;
            (!n.is_empty()).then(|| n.to_string())
        } else {
            None
        };
        let ack = AckRow {
            line: row.line,
            order_id: order_id.to_string(),
            system_id: system_id.to_string(),
            regulate,
            note,
        };
        ack.check()?;
        Ok(ack)
    }

    /// Parses one stock row of a file of `kind`.
    pub fn stock_row(&self, row: &Row, kind: CsvKind) -> Result<StockRow, Problem> {
        let column = if kind == CsvKind::StockAbsolute {
            "in_stock"
        } else {
            "adjustment"
        };
        let at = format!("line {}", row.line);
        let sku = self.cell(row, "sku")?;
        let value = self.cell(row, column)?;
        if sku.is_empty() {
            return Err(Problem::new(&at, "sku is empty"));
        }
        if let Some(what) = crate::order::reference_problem(sku) {
            return Err(Problem::new(&at, format!("sku: {what}")));
        }
        let value =
            stock_value(value).map_err(|what| Problem::new(&at, format!("{column}: {what}")))?;
        Ok(StockRow {
            line: row.line,
            sku: sku.to_string(),
            value,
        })
    }
}

/// A stock cell: a whole number (optional sign) within ±[`MAX_STOCK_VALUE`].
fn stock_value(cell: &str) -> Result<i64, String> {
    let digits = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a whole number, got {cell:?}"));
    }
    match cell.parse::<i64>() {
        Ok(v) if (-MAX_STOCK_VALUE..=MAX_STOCK_VALUE).contains(&v) => Ok(v),
        // Too large even for i64: still a whole number out of range.
        _ => {
            let shown: String = cell.chars().take(40).collect();
            let more = if shown.len() < cell.len() { "…" } else { "" };
            Err(format!(
                "must be between -{MAX_STOCK_VALUE} and {MAX_STOCK_VALUE}, got {shown}{more}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {

    /// A note with U+0000 is the row's problem (an HTTP entry's note; a CSV
    /// file with a NUL byte is refused before its rows are read).
    /// Issue 22: a NUL in an ack's system_id reached PostgreSQL's reads.
    #[test]
    fn a_system_id_with_a_nul_is_the_rows_problem() {
        let ack = AckRow {
            line: 2,
            order_id: "o-1".into(),
            system_id: "erp\0".into(),
            regulate: false,
            note: None,
        };
        let p = ack.check().unwrap_err();
        assert!(
            p.to_string()
                .starts_with("line 2: system_id: unknown system"),
            "{p}"
        );
    }

    #[test]
    fn a_note_with_a_nul_is_the_rows_problem() {
        let row = AckRow {
            line: 3,
            order_id: "o-1".into(),
            system_id: "erp".into(),
            regulate: false,
            note: Some("a\0b".into()),
        };
        let p = row.check().unwrap_err();
        assert_eq!(p.line(), 3);
        assert!(p.to_string().contains("note: contains U+0000 (NUL)"), "{p}");
    }

    use super::*;

    /// Every row of `t` parsed by `f`: the good ones, and the problems.
    fn collect<T>(
        t: &Table,
        f: impl Fn(&Table, &Row) -> Result<T, Problem>,
    ) -> (Vec<T>, Vec<Problem>) {
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        t.rows(|r| {
            match f(t, &r) {
                Ok(v) => good.push(v),
                Err(p) => bad.push(p),
            }
            Ok::<_, ()>(())
        })
        .unwrap();
        (good, bad)
    }

    #[test]
    fn bom_crlf_semicolon_quotes_and_case() {
        let text = decode(
            b"\xEF\xBB\xBF Order_ID ;SYSTEM_ID;Regulate_Inventory;note;extra\r\nabc;erp;YES;\"a; b\"\"c\";x\r\n\r\ndef;erp;0;;\r\n",
            Encoding::Utf8,
        )
        .unwrap();
        let t = Table::parse(text).unwrap();
        assert_eq!(t.kind().unwrap(), CsvKind::Acks);
        let (rows, problems) = collect(&t, |t, r| t.ack_row(r));
        assert!(problems.is_empty());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].note.as_deref(), Some("a; b\"c"));
        assert!(rows[0].regulate && !rows[1].regulate);
        assert_eq!((rows[0].line, rows[1].line), (2, 4));
    }

    /// Found by the `inbox_file` fuzz target: with CR alone as line ends
    /// (which the csv crate reads as such) every row was reported at
    /// `line 1`, and the delimiter was sniffed from the whole file.
    #[test]
    fn lone_cr_ends_a_line() {
        let t = Table::parse("sku;in_stock\rA,1,2,3,4;5\r\rB;x\r".into()).unwrap();
        assert_eq!(t.kind().unwrap(), CsvKind::StockAbsolute);
        let (rows, problems) = collect(&t, |t, r| t.stock_row(r, CsvKind::StockAbsolute));
        assert_eq!(
            (rows[0].line, rows[0].sku.as_str(), rows[0].value),
            (2, "A,1,2,3,4", 5)
        );
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["line 4: in_stock: expected a whole number, got \"x\""]
        );
        let e = decode(b"a,b\rc,\xff", Encoding::Utf8).unwrap_err();
        assert_eq!(e.at, "line 2");
    }

    #[test]
    fn single_byte_encodings() {
        // "Æblegrød €" in windows-1252 and "Straße" in ISO-8859-1.
        assert_eq!(
            decode(b"\xC6blegr\xF8d \x80", Encoding::Windows1252).unwrap(),
            "Æblegrød €"
        );
        assert_eq!(decode(b"Stra\xDFe", Encoding::Iso88591).unwrap(), "Straße");
        let e = decode(b"sku,in_stock\n\xC6,1\n", Encoding::Utf8).unwrap_err();
        assert_eq!(e.at, "line 2");
    }

    #[test]
    fn every_bad_row_is_reported() {
        let t = Table::parse("sku,adjustment\nA,1\n,2\nB,ten\nC\n".into()).unwrap();
        let (rows, p) = collect(&t, |t, r| t.stock_row(r, CsvKind::StockAdjustment));
        assert_eq!(rows.len(), 1);
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "line 3: sku is empty",
                "line 4: adjustment: expected a whole number, got \"ten\"",
            ]
        );
        assert_eq!(
            t.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            ["line 5: expected 2 fields as in the header, got 1"]
        );
    }

    #[test]
    fn rows_must_match_the_header_but_may_have_empty_trailing_cells() {
        let t = Table::parse(
            "sku,in_stock,note,
A,1
B,2,x
C,3,,,
D,4,,,y
"
            .into(),
        )
        .unwrap();
        let mut lines = Vec::new();
        t.rows(|r| {
            lines.push(r.line);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(lines, [3, 4]);
        let text: Vec<String> = t.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "line 2: expected 3 fields as in the header, got 2",
                "line 5: expected 3 fields as in the header, got 5",
            ]
        );
    }

    /// Issue 15: a trimmed cell is matched as a reference, so a control
    /// character in it is the row's problem, naming the column; a note
    /// longer than MAX_NOTE_CHARS too.
    #[test]
    fn references_and_notes_are_checked_per_row() {
        let long = "é".repeat(MAX_NOTE_CHARS + 1);
        let fine = "é".repeat(MAX_NOTE_CHARS);
        let text = format!(
            "order_id,system_id,regulate_inventory,note\n  a\u{1}b ,erp,no,\n  a ,erp,no,{fine}\nb,erp,no,{long}\n"
        );
        let t = Table::parse(text.into()).unwrap();
        let (rows, p) = collect(&t, |t, r| t.ack_row(r));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].order_id, "a");
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "line 2: order_id: contains a control character (U+0001 at character 2); not allowed in a reference",
                "line 4: note: 1001 characters; at most 1000 are kept per note",
            ]
        );
        let t = Table::parse("sku,in_stock\nA\u{7f},1\n".into()).unwrap();
        let (_, p) = collect(&t, |t, r| t.stock_row(r, CsvKind::StockAbsolute));
        assert_eq!(
            p[0].to_string(),
            "line 2: sku: contains a control character (U+007F at character 2); not allowed in a reference"
        );
    }

    #[test]
    fn stock_values_are_bounded() {
        assert_eq!(stock_value("+12"), Ok(12));
        assert_eq!(stock_value("-1000000000000"), Ok(-MAX_STOCK_VALUE));
        for cell in [
            "1000000000001",
            "-9223372036854775808",
            "99999999999999999999999",
        ] {
            let e = stock_value(cell).unwrap_err();
            assert!(
                e.starts_with("must be between -1000000000000 and 1000000000000, got"),
                "{e}"
            );
        }
        for cell in ["", "-", "1.5", "1e3", "ten", "+-1"] {
            assert!(
                stock_value(cell)
                    .unwrap_err()
                    .starts_with("expected a whole number")
            );
        }
    }
}
