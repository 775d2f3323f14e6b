//! Reading a dump: [`Reader`] checks the header (the format and the
//! version this ordersync reads), then hands out one record at a time and
//! checks the closing line (it must be the last line and count the records
//! before it, so a dump cut short is refused).
//!
//! Memory is one line, bounded by [`MAX_LINE`]; nothing here checks what a
//! record says (that is `admit.rs`) or names a backend. The header's and
//! the closing line's messages are what an operator sees for a wrong file:
//! keep them saying which line and what was expected.

use std::io::{BufRead, Read};

use super::{DumpError, END, FORMAT, Header, MAX_LINE, Record, Trailer, VERSION, bad};

/// Reads a dump: its header, then its records one at a time, checking the
/// closing line. Memory is one line (at most [`MAX_LINE`]).
pub struct Reader<R> {
    input: R,
    line: u64,
    records: u64,
    ended: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<(Header, Reader<R>), DumpError> {
        let mut reader = Reader {
            input,
            line: 0,
            records: 0,
            ended: false,
            buf: Vec::new(),
        };
        if !reader.next_line()? {
            return Err(bad(1, "the dump is empty"));
        }
        let header: Header = serde_json::from_slice(&reader.buf).map_err(|e| {
            bad(
                1,
                format!("not an ordersync dump (the first line must be its header): {e}"),
            )
        })?;
        if header.format != FORMAT {
            return Err(bad(
                1,
                format!(
                    "not an ordersync dump: format {:?}, expected {FORMAT:?}",
                    header.format
                ),
            ));
        }
        if header.version != VERSION {
            return Err(bad(
                1,
                format!(
                    "dump format version {} is not the one this ordersync reads ({VERSION}); use the ordersync that wrote it, or a newer one",
                    header.version
                ),
            ));
        }
        Ok((header, reader))
    }

    /// The line number of the record last returned.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Reads the next line into `buf`; false at the end of the input.
    fn next_line(&mut self) -> Result<bool, DumpError> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            return Err(bad(
                self.line,
                format!("a line longer than {MAX_LINE} bytes"),
            ));
        }
        Ok(true)
    }

    /// The next record; `None` after the closing line, which must be the
    /// last line and count the records before it.
    pub fn next_record(&mut self) -> Result<Option<Record>, DumpError> {
        if self.ended {
            return Ok(None);
        }
        if !self.next_line()? {
            return Err(bad(
                self.line,
                "the dump ends without its closing line: it was cut short",
            ));
        }
        if self.buf.starts_with(br#"{"format""#) {
            let end: Trailer = serde_json::from_slice(&self.buf)
                .map_err(|e| bad(self.line, format!("bad closing line: {e}")))?;
            if end.format != END {
                return Err(bad(
                    self.line,
                    format!(
                        "bad closing line: format {:?}, expected {END:?}",
                        end.format
                    ),
                ));
            }
            if end.records != self.records {
                return Err(bad(
                    self.line,
                    format!(
                        "the closing line counts {} records, the dump holds {}",
                        end.records, self.records
                    ),
                ));
            }
            self.ended = true;
            if self.next_line()? {
                return Err(bad(self.line, "a line after the closing line"));
            }
            return Ok(None);
        }
        let record: Record =
            serde_json::from_slice(&self.buf).map_err(|e| bad(self.line, e.to_string()))?;
        self.records += 1;
        Ok(Some(record))
    }
}
