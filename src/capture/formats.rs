//! Readers for POS export files: canonical JSON and mapped CSV → canonical orders.
//!
//! JSON is read as a stream ([`JsonOrders`]: one order at a time from any reader, the
//! memory being one element and a fixed buffer); [`read_json`] is the same reader over
//! bytes in memory. CSV is read from the decoded file in memory, since the rows of one
//! order may be anywhere in it.
//!
//! Invariants:
//! - A reader never panics and never guesses silently: every problem becomes a
//!   [`ReadError`] naming the line (and column where known), the order and the field.
//! - A problem with the file as a whole (not JSON, wrong encoding, a missing column)
//!   fails the whole file; a problem with one order fails that order only, and the
//!   other orders of the file are still returned, so one bad row never holds back a
//!   day's sales. A streamed JSON file can show a whole-file problem after some of its
//!   orders came back: the caller must then drop them (the folder rolls back).
//! - The streamed JSON reader accepts exactly the files that are UTF-8 JSON, and
//!   reports the same lines and columns, as parsing the whole file at once would.
//! - Decimals keep the scale they were written with; amounts the reader computes
//!   (a CSV order's total) take the scale of their inputs.

use std::collections::HashMap;
use std::fmt;

use chrono::NaiveDateTime;
use rust_decimal::Decimal;

use crate::capture::receipt::{ReceiptRules, parse_bytes_at};
use crate::capture::template::Parsed as ReceiptParsed;
use crate::order::{Kind, Line, Order, Payment};

mod csv;
mod json;
mod settings;

pub use self::csv::read_csv;
pub use json::{JsonOrders, StreamError, read_json};
pub use settings::{CSV_LINE_FIELDS, CSV_ORDER_FIELDS, CsvConfig, Encoding, Format, RawCsv};

/// A problem in an input file, located as precisely as the format allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub order_no: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl ReadError {
    fn file(message: impl Into<String>) -> ReadError {
        ReadError {
            line: None,
            column: None,
            order_no: None,
            field: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(l) = self.line {
            parts.push(match self.column {
                Some(c) => format!("line {l}, column {c}"),
                None => format!("line {l}"),
            });
        }
        if let Some(o) = &self.order_no {
            parts.push(format!("order {o:?}"));
        }
        if let Some(field) = &self.field {
            parts.push(format!("field {field}"));
        }
        if parts.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", parts.join(", "), self.message)
        }
    }
}

impl std::error::Error for ReadError {}

/// What a file held: the good orders, and the orders that could not be read.
#[derive(Debug, Default)]
pub struct Parsed {
    pub orders: Vec<Order>,
    pub errors: Vec<ReadError>,
    /// Things worth a log line that do not reject anything (an unknown payment label).
    pub warnings: Vec<String>,
}

/// The format a file is read as: the configured one, or by extension for `auto`.
pub fn detect(format: Format, file_name: &str) -> Option<Format> {
    match format {
        Format::Auto => {
            let ext = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
            match ext.as_str() {
                "json" => Some(Format::Json),
                "csv" | "txt" => Some(Format::Csv),
                "prn" | "bin" | "escpos" => Some(Format::Receipt),
                _ => None,
            }
        }
        f => Some(f),
    }
}

/// Reads one export file. `Err` means nothing in it could be read.
pub fn read(
    bytes: &[u8],
    format: Format,
    file_name: &str,
    csv: &CsvConfig,
    receipt: Option<&ReceiptRules>,
) -> Result<Parsed, ReadError> {
    match detect(format, file_name) {
        Some(Format::Json) => read_json(bytes),
        Some(Format::Csv) => read_csv(bytes, csv),
        Some(Format::Receipt) => match receipt {
            Some(rules) => Ok(read_receipts(bytes, rules)),
            None => Err(ReadError::file(
                "receipt files need the source's [source.template]",
            )),
        },
        _ => Err(ReadError::file(format!(
            "cannot tell the format of {file_name:?} (expected .json, .csv or .prn, or set the source's format)"
        ))),
    }
}

/// Receipt files (ESC/POS or plain text a POS "printed to file"): split into receipts
/// and parsed with the source's template. Reprints and non-sales are skipped; a
/// receipt the template cannot read is an error naming the receipt and its line.
pub fn read_receipts(bytes: &[u8], rules: &ReceiptRules) -> Parsed {
    read_receipts_at(bytes, rules, None)
}

/// [`read_receipts`] for a file captured at `captured` (local time; None =
/// now): the time that places a date printed without its year.
pub fn read_receipts_at(
    bytes: &[u8],
    rules: &ReceiptRules,
    captured: Option<chrono::NaiveDateTime>,
) -> Parsed {
    let mut parsed = Parsed::default();
    for (i, (receipt, result)) in parse_bytes_at(bytes, rules, captured)
        .into_iter()
        .enumerate()
    {
        match result {
            Ok(ReceiptParsed::Order(o)) => {
                if let Some(note) = rules.unchecked_totals(&o) {
                    parsed.warnings.push(format!("receipt {}: {note}", i + 1));
                }
                parsed.orders.push(*o)
            }
            Ok(ReceiptParsed::Reprint { order_no }) => parsed.warnings.push(format!(
                "receipt {}: a reprint{}, not a new order",
                i + 1,
                order_no.map(|n| format!(" of {n}")).unwrap_or_default()
            )),
            Ok(ReceiptParsed::NotAnOrder { .. }) => {}
            Err(e) => parsed.errors.push(ReadError {
                line: None,
                column: None,
                order_no: None,
                field: None,
                message: format!(
                    "receipt {} (bytes {}..{}): {e}",
                    i + 1,
                    receipt.stream_offset,
                    receipt.stream_offset + receipt.raw.len() as u64
                ),
            }),
        }
    }
    parsed
}

fn not_utf8(line: usize, column: usize) -> ReadError {
    ReadError {
        line: Some(line),
        column: Some(column),
        order_no: None,
        field: None,
        message: "the file is not UTF-8 (is the encoding set right?)".into(),
    }
}

fn line_col_bytes(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(offset, |i| offset - i - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
