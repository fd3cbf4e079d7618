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
use serde_json::value::RawValue;

use crate::capture::receipt::{ReceiptRules, parse_bytes};
use crate::capture::template::Parsed as ReceiptParsed;
use crate::order::{Kind, Line, Order, Payment};

mod settings;
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
    let mut parsed = Parsed::default();
    for (i, (receipt, result)) in parse_bytes(bytes, rules).into_iter().enumerate() {
        match result {
            Ok(ReceiptParsed::Order(o)) => parsed.orders.push(*o),
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

/// Canonical JSON: one order object or an array of them, read whole from memory.
/// The folder reads files through [`JsonOrders`] instead, one order at a time.
pub fn read_json(bytes: &[u8]) -> Result<Parsed, ReadError> {
    let mut reader = JsonOrders::new(bytes);
    let mut parsed = Parsed::default();
    loop {
        match reader.next_order() {
            Ok(Some(Ok(order))) => parsed.orders.push(order),
            Ok(Some(Err(e))) => parsed.errors.push(e),
            Ok(None) => return Ok(parsed),
            Err(StreamError::Invalid(e)) => return Err(e),
            // A slice cannot fail to read; kept as a file error rather than a panic.
            Err(StreamError::Io(e)) => return Err(ReadError::file(e.to_string())),
        }
    }
}

/// Why a JSON export could not be read to its end.
#[derive(Debug)]
pub enum StreamError {
    /// The file as a whole is not what it should be (not JSON, not UTF-8): nothing of
    /// it may be used.
    Invalid(ReadError),
    /// Reading failed (the file vanished or was cut under us): try again later.
    Io(std::io::Error),
}

/// A canonical JSON export read incrementally: one order (or one order's error) per
/// call, holding only the element at hand and a fixed read buffer, never the file.
///
/// The file is split into its top-level elements by a small scanner that tracks
/// strings and bracket depth, and each element is handed to serde_json on its own,
/// so every error is located by line and column in the file. Everything between the
/// elements (`[`, `,`, `]`, whitespace) is checked here, and each element is checked
/// by serde_json in full, so a file whose orders all come back is valid UTF-8 JSON,
/// exactly as if it had been parsed at once. A syntax error anywhere is
/// [`StreamError::Invalid`] (the whole file is refused, as before); a well-formed
/// element that is not a valid order is an `Err` item for that order only.
pub struct JsonOrders<R> {
    src: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// File offset of `buf[pos]`.
    offset: u64,
    /// Line (from 1) of `buf[pos]`, and the file offset where that line starts.
    line: usize,
    line_start: u64,
    state: JsonState,
    /// The element being read (reused: its capacity is the largest element so far).
    elem: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonState {
    Start,
    /// After `[`: an element or `]`.
    First,
    /// After an element of the array: `,` or `]`.
    Next,
    /// The file is one order object.
    Single,
    /// After the array or the single object: only whitespace may follow.
    End,
    Done,
}

/// Read-buffer size: the memory a JSON export costs besides its largest order.
const JSON_CHUNK: usize = 64 * 1024;

impl<R: std::io::Read> JsonOrders<R> {
    pub fn new(src: R) -> JsonOrders<R> {
        JsonOrders {
            src,
            buf: vec![0; JSON_CHUNK].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset: 0,
            line: 1,
            line_start: 0,
            state: JsonState::Start,
            elem: Vec::new(),
        }
    }

    /// The next order of the file, `Some(Err)` for an element that is not a valid
    /// order (that order only), `None` at the end of a well-formed file.
    pub fn next_order(&mut self) -> Result<Option<Result<Order, ReadError>>, StreamError> {
        loop {
            match self.state {
                JsonState::Start => {
                    self.skip_bom()?;
                    self.skip_ws()?;
                    match self.peek()? {
                        None => return Err(self.syntax("EOF while parsing a value")),
                        Some(b'[') => {
                            self.advance(1);
                            self.state = JsonState::First;
                        }
                        Some(_) => self.state = JsonState::Single,
                    }
                }
                JsonState::First => {
                    self.skip_ws()?;
                    match self.peek()? {
                        None => return Err(self.syntax("EOF while parsing a list")),
                        Some(b']') => {
                            self.advance(1);
                            self.state = JsonState::End;
                        }
                        Some(_) => return self.element(JsonState::Next).map(Some),
                    }
                }
                JsonState::Next => {
                    self.skip_ws()?;
                    match self.peek()? {
                        None => return Err(self.syntax("EOF while parsing a list")),
                        Some(b',') => {
                            self.advance(1);
                            self.skip_ws()?;
                            if self.peek()? == Some(b']') {
                                return Err(self.syntax("trailing comma"));
                            }
                            return self.element(JsonState::Next).map(Some);
                        }
                        Some(b']') => {
                            self.advance(1);
                            self.state = JsonState::End;
                        }
                        Some(b) => return Err(self.unexpected(b, "expected `,` or `]`")),
                    }
                }
                JsonState::Single => return self.element(JsonState::End).map(Some),
                JsonState::End => {
                    self.skip_ws()?;
                    match self.peek()? {
                        None => self.state = JsonState::Done,
                        Some(b) => return Err(self.unexpected(b, "trailing characters")),
                    }
                }
                JsonState::Done => return Ok(None),
            }
        }
    }

    /// Reads one element (at the current position) and turns it into an order.
    fn element(&mut self, then: JsonState) -> Result<Result<Order, ReadError>, StreamError> {
        if let Some(b @ (b',' | b']' | b'}')) = self.peek()? {
            return Err(self.unexpected(b, "expected value"));
        }
        let (base_line, base_col) = (self.line, self.column());
        self.scan_element()?;
        self.state = then;
        // A position inside the element, as a position in the file.
        let at = |l: usize, c: usize| {
            (
                base_line + l.saturating_sub(1),
                if l <= 1 {
                    base_col + c.saturating_sub(1)
                } else {
                    c
                },
            )
        };
        let text = match std::str::from_utf8(&self.elem) {
            Ok(t) => t,
            Err(e) => {
                let (l, c) = line_col_bytes(&self.elem, e.valid_up_to());
                let (line, column) = at(l, c);
                return Err(StreamError::Invalid(not_utf8(line, column)));
            }
        };
        // The common case first: a good order, without the bookkeeping of a path.
        let first = match serde_json::from_str::<Order>(text) {
            Ok(order) => Ok(order),
            Err(e) if e.is_data() => Err(()),
            Err(e) => {
                let (line, column) = at(e.line(), e.column());
                return Err(StreamError::Invalid(ReadError {
                    line: Some(line),
                    column: Some(column),
                    ..json_error(e)
                }));
            }
        };
        let order = match first {
            Ok(order) => order,
            Err(()) => {
                // serde_json stopped at the first wrong value: the rest of the element
                // must still be JSON, or the file is not.
                if let Err(e) = serde_json::from_str::<&RawValue>(text) {
                    let (line, column) = at(e.line(), e.column());
                    return Err(StreamError::Invalid(ReadError {
                        line: Some(line),
                        column: Some(column),
                        ..json_error(e)
                    }));
                }
                let mut de = serde_json::Deserializer::from_str(text);
                let e = match serde_path_to_error::deserialize::<_, Order>(&mut de) {
                    Ok(order) => order.check().map(|()| order).err().map_or_else(
                        || ReadError::file("the order was read only on the second try"),
                        |e| ReadError {
                            line: Some(base_line),
                            column: None,
                            order_no: Some(e.order_no),
                            field: Some(e.field),
                            message: e.problem,
                        },
                    ),
                    Err(e) => {
                        let path = e.path().to_string();
                        let inner = e.into_inner();
                        let (line, column) = at(inner.line(), inner.column());
                        ReadError {
                            line: Some(line),
                            column: Some(column),
                            order_no: order_no_of(text),
                            field: (path != ".").then_some(path),
                            message: strip_position(&inner.to_string()),
                        }
                    }
                };
                return Ok(Err(e));
            }
        };
        Ok(match order.check() {
            Ok(()) => Ok(order),
            Err(e) => Err(ReadError {
                line: Some(base_line),
                column: None,
                order_no: Some(e.order_no),
                field: Some(e.field),
                message: e.problem,
            }),
        })
    }

    /// Copies one JSON value's bytes into `elem`: an object or array up to its closing
    /// bracket, a string up to its closing quote, anything else up to whitespace or
    /// punctuation. Whether the bytes are valid JSON is serde_json's to say; at the end
    /// of the file the element simply ends (serde_json reports what is missing).
    fn scan_element(&mut self) -> Result<(), StreamError> {
        self.elem.clear();
        let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
        loop {
            if self.pos == self.end && !self.fill()? {
                return Ok(());
            }
            let chunk = &self.buf[self.pos..self.end];
            let mut done = None;
            let mut i = 0;
            if escaped {
                // The byte after a backslash that ended the last chunk.
                escaped = false;
                i = 1;
            }
            while i < chunk.len() {
                if in_str {
                    // Most of an order is string contents: skip to what can end them.
                    match chunk[i..].iter().position(|&b| b == b'"' || b == b'\\') {
                        None => i = chunk.len(),
                        Some(k) if chunk[i + k] == b'\\' => {
                            i += k + 2;
                            if i > chunk.len() {
                                escaped = true;
                                i = chunk.len();
                            }
                        }
                        Some(k) => {
                            i += k + 1;
                            in_str = false;
                            if depth == 0 {
                                done = Some(i);
                                break;
                            }
                        }
                    }
                    continue;
                }
                match chunk[i] {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => {
                        done = Some(i);
                        break;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            done = Some(i + 1);
                            break;
                        }
                    }
                    b' ' | b'\t' | b'\n' | b'\r' | b',' if depth == 0 => {
                        done = Some(i);
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
            let n = done.unwrap_or(chunk.len());
            self.elem.extend_from_slice(&chunk[..n]);
            self.advance(n);
            if done.is_some() {
                return Ok(());
            }
        }
    }

    fn skip_bom(&mut self) -> Result<(), StreamError> {
        self.fill_to(3)?;
        if self.buf[self.pos..self.end].starts_with(b"\xEF\xBB\xBF") {
            // Not part of the text: columns on line 1 count from after it.
            self.pos += 3;
            self.offset += 3;
            self.line_start = self.offset;
        }
        Ok(())
    }

    fn skip_ws(&mut self) -> Result<(), StreamError> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek()? {
            self.advance(1);
        }
        Ok(())
    }

    fn peek(&mut self) -> Result<Option<u8>, StreamError> {
        if self.pos == self.end && !self.fill()? {
            return Ok(None);
        }
        Ok(Some(self.buf[self.pos]))
    }

    /// Reads more bytes after those in hand; false at the end of the file.
    fn fill(&mut self) -> Result<bool, StreamError> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StreamError::Io(e)),
            }
        }
    }

    /// Consumes `n` bytes in hand, keeping the line count.
    fn advance(&mut self, n: usize) {
        let taken = &self.buf[self.pos..self.pos + n];
        let lines = taken.iter().filter(|&&b| b == b'\n').count();
        if lines > 0 {
            self.line += lines;
            let last = taken.iter().rposition(|&b| b == b'\n').unwrap_or(0);
            self.line_start = self.offset + last as u64 + 1;
        }
        self.pos += n;
        self.offset += n as u64;
    }

    fn column(&self) -> usize {
        (self.offset - self.line_start) as usize + 1
    }

    fn syntax(&self, message: &str) -> StreamError {
        StreamError::Invalid(ReadError {
            line: Some(self.line),
            column: Some(self.column()),
            order_no: None,
            field: None,
            message: format!("not valid JSON: {message}"),
        })
    }

    /// An unexpected byte between elements: a syntax error, or the first sign that the
    /// file is in another encoding.
    fn unexpected(&mut self, b: u8, message: &str) -> StreamError {
        if b >= 0x80 {
            // Up to one character's bytes: enough to tell a stray character from bytes
            // that are not UTF-8 at all.
            let _ = self.fill_to(4);
            let ahead = &self.buf[self.pos..self.end.min(self.pos + 4)];
            if let Err(e) = std::str::from_utf8(ahead) {
                if e.valid_up_to() == 0 && e.error_len().is_some() {
                    return StreamError::Invalid(not_utf8(self.line, self.column()));
                }
            }
        }
        self.syntax(message)
    }

    /// Makes at least `n` bytes available at `pos` unless the file ends first.
    fn fill_to(&mut self, n: usize) -> Result<(), StreamError> {
        while self.end - self.pos < n {
            if !self.fill()? {
                break;
            }
        }
        Ok(())
    }
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

fn json_error(e: serde_json::Error) -> ReadError {
    ReadError {
        line: Some(e.line()),
        column: Some(e.column()),
        order_no: None,
        field: None,
        message: format!("not valid JSON: {}", strip_position(&e.to_string())),
    }
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Best effort: the order number of an element that failed to deserialise.
fn order_no_of(part: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(part).ok()?;
    v.get("order_no")?.as_str().map(str::to_string)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |i| offset - i - 1) + 1;
    (line, col)
}

fn utf8(bytes: &[u8]) -> Result<&str, ReadError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col_bytes(bytes, e.valid_up_to());
        not_utf8(line, column)
    })
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

/// Decodes a CSV file's text in its configured encoding (UTF-8 is used in place, not
/// copied).
fn decode(bytes: &[u8], encoding: Encoding) -> Result<std::borrow::Cow<'_, str>, ReadError> {
    match encoding {
        Encoding::Utf8 => utf8(bytes).map(std::borrow::Cow::Borrowed),
        Encoding::Gb18030 => {
            let (text, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(bytes);
            if had_errors {
                let at = text.find('\u{FFFD}').unwrap_or(0);
                let (line, column) = line_col(&text, at);
                return Err(ReadError {
                    line: Some(line),
                    column: Some(column),
                    order_no: None,
                    field: None,
                    message: "bytes that are not GBK/GB18030 (is the encoding set right?)".into(),
                });
            }
            Ok(text)
        }
    }
}

/// CSV with one row per line item, grouped into orders by order number, with the
/// configured header mapping.
pub fn read_csv(bytes: &[u8], cfg: &CsvConfig) -> Result<Parsed, ReadError> {
    let text = decode(bytes, cfg.encoding)?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(cfg.delimiter)
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| ReadError::file(format!("cannot read the header row: {e}")))?
        .clone();
    let col = |field: &str| -> Option<usize> {
        let name = cfg.columns.get(field)?;
        headers.iter().position(|h| h == name)
    };
    let mut missing = Vec::new();
    for req in [
        "order_no",
        "order_time",
        "code",
        "name",
        "qty",
        "price",
        "amount",
    ] {
        if col(req).is_none() {
            missing.push(format!("{:?} ({req})", cfg.columns[req]));
        }
    }
    if !missing.is_empty() {
        return Err(ReadError {
            line: Some(1),
            column: None,
            order_no: None,
            field: None,
            message: format!(
                "the header has no column {}; it has: {}",
                missing.join(", "),
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let cols = Columns {
        order_no: col("order_no"),
        order_time: col("order_time"),
        kind: col("kind"),
        cashier: col("cashier"),
        payment: col("payment"),
        total: col("total"),
        order_discount: col("order_discount"),
        paid: col("paid"),
        shop: col("shop"),
        machine_id: col("machine_id"),
        code: col("code"),
        name: col("name"),
        qty: col("qty"),
        price: col("price"),
        amount: col("amount"),
        discount: col("discount"),
        scan_time: col("scan_time"),
        batch_no: col("batch_no"),
        box_no: col("box_no"),
    };

    // Line numbers come from byte offsets: the csv crate's own line count is off
    // by one per CRLF line, and Windows POS software writes CRLF. A record after a
    // CRLF starts (by the reader's count) at the LF that ends the line before it.
    let newlines: Vec<usize> = memchr_all(text.as_bytes());
    let line_of = |byte: u64| newlines.partition_point(|&nl| (nl as u64) <= byte) + 1;
    let mut parsed = Parsed::default();
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| line_of(p.byte()));
                parsed.errors.push(ReadError {
                    line,
                    column: None,
                    order_no: None,
                    field: None,
                    message: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| line_of(p.byte()));
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("");
        let order_no = get(cols.order_no).to_string();
        let gi = match index.get(&order_no) {
            Some(&i) => i,
            None => {
                index.insert(order_no.clone(), groups.len());
                groups.push(Group {
                    order_no: order_no.clone(),
                    first_line: line,
                    head: None,
                    lines: Vec::new(),
                    error: None,
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[gi];
        if g.error.is_some() {
            continue;
        }
        match row(&cols, &rec, line, &order_no, cfg, &mut parsed.warnings) {
            Ok((head, item)) => {
                if let Some(h) = &g.head {
                    if let Some(field) = h.differs(&head) {
                        g.error = Some(ReadError {
                            line: Some(line),
                            column: None,
                            order_no: Some(order_no),
                            field: Some(field.into()),
                            message: format!(
                                "differs from the order's first row (line {})",
                                g.first_line
                            ),
                        });
                        continue;
                    }
                } else {
                    g.head = Some(head);
                }
                g.lines.push(item);
            }
            Err(e) => g.error = Some(e),
        }
    }
    for g in groups {
        if let Some(e) = g.error {
            parsed.errors.push(e);
            continue;
        }
        let Some(head) = g.head else { continue };
        let order = match head.into_order(g.order_no.clone(), g.lines) {
            Ok(o) => o,
            Err((field, message)) => {
                parsed.errors.push(ReadError {
                    line: Some(g.first_line),
                    column: None,
                    order_no: Some(g.order_no),
                    field: Some(field.into()),
                    message,
                });
                continue;
            }
        };
        match order.check() {
            Ok(()) => parsed.orders.push(order),
            Err(e) => parsed.errors.push(ReadError {
                line: Some(g.first_line),
                column: None,
                order_no: Some(e.order_no),
                field: Some(e.field),
                message: e.problem,
            }),
        }
    }
    Ok(parsed)
}

fn memchr_all(bytes: &[u8]) -> Vec<usize> {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .collect()
}

struct Columns {
    order_no: Option<usize>,
    order_time: Option<usize>,
    kind: Option<usize>,
    cashier: Option<usize>,
    payment: Option<usize>,
    total: Option<usize>,
    order_discount: Option<usize>,
    paid: Option<usize>,
    shop: Option<usize>,
    machine_id: Option<usize>,
    code: Option<usize>,
    name: Option<usize>,
    qty: Option<usize>,
    price: Option<usize>,
    amount: Option<usize>,
    discount: Option<usize>,
    scan_time: Option<usize>,
    batch_no: Option<usize>,
    box_no: Option<usize>,
}

/// The order-level values of a row; every row of an order must agree on them.
#[derive(PartialEq)]
struct Head {
    order_time: NaiveDateTime,
    kind: Option<Kind>,
    cashier: Option<String>,
    payment: Option<Payment>,
    total: Option<Decimal>,
    discount: Option<Decimal>,
    paid: Option<Decimal>,
    shop: Option<String>,
    machine_id: Option<String>,
}

impl Head {
    fn differs(&self, other: &Head) -> Option<&'static str> {
        if self.order_time != other.order_time {
            Some("order_time")
        } else if self.kind != other.kind {
            Some("kind")
        } else if self.cashier != other.cashier {
            Some("cashier")
        } else if self.payment != other.payment {
            Some("payment")
        } else {
            None
        }
    }

    /// The order, or the field whose derived value overflows `Decimal` (absurd
    /// amounts in the file: the order is refused, never a panic).
    fn into_order(
        self,
        order_no: String,
        lines: Vec<Line>,
    ) -> Result<Order, (&'static str, String)> {
        let overflow = |field| {
            (
                field,
                "the line amounts add up past any real amount".to_string(),
            )
        };
        let mut sum = None::<Decimal>;
        for l in &lines {
            sum = Some(match sum {
                None => l.amount,
                Some(a) => a.checked_add(l.amount).ok_or_else(|| overflow("total"))?,
            });
        }
        let total = self.total.unwrap_or(sum.unwrap_or_default());
        let discount = self
            .discount
            .unwrap_or_else(|| Decimal::new(0, total.scale()));
        let paid = match self.paid {
            Some(p) => p,
            None => total
                .checked_sub(discount)
                .ok_or_else(|| overflow("paid"))?,
        };
        let kind = self
            .kind
            .unwrap_or(if total.is_sign_negative() && !total.is_zero() {
                Kind::Refund
            } else {
                Kind::Sale
            });
        Ok(Order {
            order_no,
            order_time: self.order_time,
            kind,
            cashier: self.cashier,
            payment: self.payment,
            total,
            discount,
            paid,
            lines,
            source: None,
            shop: self.shop,
            machine_id: self.machine_id,
            video_start: None,
            video_end: None,
        })
    }
}

struct Group {
    order_no: String,
    first_line: usize,
    head: Option<Head>,
    lines: Vec<Line>,
    error: Option<ReadError>,
}

fn row(
    cols: &Columns,
    rec: &csv::StringRecord,
    line: usize,
    order_no: &str,
    cfg: &CsvConfig,
    warnings: &mut Vec<String>,
) -> Result<(Head, Line), ReadError> {
    let err = |field: &str, message: String| ReadError {
        line: Some(line),
        column: None,
        order_no: Some(order_no.to_string()),
        field: Some(field.to_string()),
        message,
    };
    let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("");
    let opt = |c: Option<usize>| Some(get(c)).filter(|s| !s.is_empty()).map(str::to_string);
    let dec = |field: &str, c: Option<usize>| -> Result<Option<Decimal>, ReadError> {
        let s = get(c);
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<Decimal>()
            .map(Some)
            .map_err(|_| err(field, format!("{s:?} is not a number")))
    };
    let req_dec = |field: &str, c: Option<usize>| -> Result<Decimal, ReadError> {
        dec(field, c)?.ok_or_else(|| err(field, "is empty".into()))
    };
    let time = |field: &str, s: &str| -> Result<NaiveDateTime, ReadError> {
        NaiveDateTime::parse_from_str(s, &cfg.time_format).map_err(|e| {
            err(
                field,
                format!(
                    "{s:?} does not match the time format {:?} ({e})",
                    cfg.time_format
                ),
            )
        })
    };
    if order_no.is_empty() {
        return Err(err("order_no", "is empty".into()));
    }
    let t = get(cols.order_time);
    if t.is_empty() {
        return Err(err("order_time", "is empty".into()));
    }
    let order_time = time("order_time", t)?;
    let kind = match opt(cols.kind) {
        None => None,
        Some(label) => Some(match cfg.kind.get(&label) {
            Some(k) => *k,
            None => match label.as_str() {
                "sale" => Kind::Sale,
                "refund" => Kind::Refund,
                "void" => Kind::Void,
                _ => {
                    return Err(err(
                        "kind",
                        format!("{label:?} is not a known kind (map it under csv.kind)"),
                    ));
                }
            },
        }),
    };
    let payment = opt(cols.payment).map(|label| {
        cfg.payment
            .get(&label)
            .copied()
            .or_else(|| Payment::parse(&label))
            .unwrap_or_else(|| {
                warnings.push(format!(
                    "line {line}: payment {label:?} is not mapped under csv.payment; recorded as other"
                ));
                Payment::Other
            })
    });
    let code = get(cols.code);
    if code.is_empty() {
        return Err(err("code", "is empty".into()));
    }
    let scan_time = match get(cols.scan_time) {
        "" => None,
        s => Some(time("scan_time", s)?),
    };
    let head = Head {
        order_time,
        kind,
        cashier: opt(cols.cashier),
        payment,
        total: dec("total", cols.total)?,
        discount: dec("order_discount", cols.order_discount)?,
        paid: dec("paid", cols.paid)?,
        shop: opt(cols.shop),
        machine_id: opt(cols.machine_id),
    };
    let item = Line {
        code: code.to_string(),
        name: get(cols.name).to_string(),
        qty: req_dec("qty", cols.qty)?,
        price: req_dec("price", cols.price)?,
        amount: req_dec("amount", cols.amount)?,
        discount: dec("discount", cols.discount)?.unwrap_or_default(),
        scan_time,
        batch_no: opt(cols.batch_no),
        box_no: opt(cols.box_no),
        attrs: Vec::new(),
    };
    Ok((head, item))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The CSV settings of a source whose table ends with `extra` (`[source.csv]…`
    /// or nothing), validated as config validates them.
    fn csv_cfg(extra: &str) -> CsvConfig {
        let file: toml::Table = toml::from_str(extra).unwrap();
        let raw: RawCsv = match file.get("source").and_then(|s| s.get("csv")) {
            Some(t) => t.clone().try_into().unwrap(),
            None => RawCsv::default(),
        };
        let mut p = crate::settings::Problems::new();
        let csv = raw.validate(&mut p, "source[l].csv");
        assert!(p.is_empty(), "{:?}", p.into_vec());
        csv
    }

    /// Data-driven: (input, expected orders by order_no, expected error texts).
    fn check_csv(cfg: &CsvConfig, input: &str, orders: &[&str], errors: &[&str]) {
        let p = read_csv(input.as_bytes(), cfg).unwrap();
        let got: Vec<_> = p.orders.iter().map(|o| o.order_no.as_str()).collect();
        assert_eq!(got, orders, "orders of {input:?}");
        let errs: Vec<_> = p.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), errors.len(), "errors of {input:?}: {errs:?}");
        for (e, want) in errs.iter().zip(errors) {
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
    }

    const HEAD: &str = "order_no,order_time,code,name,qty,price,amount\n";

    #[test]
    fn csv_rows_group_and_bad_rows_reject_only_their_order() {
        let cfg = csv_cfg("");
        check_csv(
            &cfg,
            &format!("{HEAD}A,2026-11-22 10:00:00,1,x,1,2.00,2.00\n"),
            &["A"],
            &[],
        );
        check_csv(
            &cfg,
            &format!(
                "{HEAD}A,2026-11-22 10:00:00,1,x,1,2.00,2.00\nB,2026-11-22 10:01:00,1,x,one,2.00,2.00\nA,2026-11-22 10:00:00,2,y,1,1,1\n"
            ),
            &["A"],
            &["line 3, order \"B\", field qty: \"one\" is not a number"],
        );
        check_csv(
            &cfg,
            &format!("{HEAD}A,22/11/2026,1,x,1,2,2\n"),
            &[],
            &["line 2, order \"A\", field order_time"],
        );
        check_csv(
            &cfg,
            &format!("{HEAD}A,2026-11-22 10:00:00,1,x,1,2,2\nA,2026-11-22 10:09:00,2,y,1,2,2\n"),
            &[],
            &["line 3, order \"A\", field order_time: differs from the order's first row (line 2)"],
        );
        check_csv(
            &cfg,
            &format!("{HEAD},2026-11-22 10:00:00,1,x,1,2,2\n"),
            &[],
            &["field order_no: is empty"],
        );
    }

    #[test]
    fn crlf_files_report_true_line_numbers() {
        let cfg = csv_cfg("");
        let input = "order_no,order_time,code,name,qty,price,amount\r\nA,2026-11-22 10:00:00,1,x,1,2,2\r\nB,2026-11-22 10:00:00,1,x,z,2,2\r\n";
        check_csv(&cfg, input, &["A"], &["line 3, order \"B\""]);
    }

    #[test]
    fn csv_totals_are_computed_with_the_inputs_scale() {
        let cfg = csv_cfg("");
        let p = read_csv(
            format!("{HEAD}A,2026-11-22 10:00:00,1,x,1,65.00,65.00\nA,2026-11-22 10:00:00,2,y,2,3.00,5.00\nR,2026-11-22 10:00:00,2,y,-1,3.00,-3.00\n").as_bytes(),
            &cfg,
        )
        .unwrap();
        let a = &p.orders[0];
        assert_eq!(
            (
                a.total.to_string(),
                a.discount.to_string(),
                a.paid.to_string()
            ),
            ("70.00".into(), "0.00".into(), "70.00".into())
        );
        assert_eq!(a.kind, Kind::Sale);
        assert_eq!(
            p.orders[1].kind,
            Kind::Refund,
            "a negative total is a refund"
        );
    }

    #[test]
    fn missing_columns_fail_the_file_naming_them() {
        let cfg = csv_cfg("[source.csv.columns]\norder_no = \"单号\"");
        let e = read_csv(HEAD.as_bytes(), &cfg).unwrap_err().to_string();
        assert!(e.contains("\"单号\" (order_no)"), "{e}");
        assert!(e.starts_with("line 1"), "{e}");
    }

    #[test]
    fn gbk_errors_name_the_line() {
        let cfg = csv_cfg("[source.csv]\nencoding = \"gbk\"");
        let mut bytes = HEAD.as_bytes().to_vec();
        bytes.extend_from_slice(b"A,2026-11-22 10:00:00,1,\x81\x20,1,1,1\n");
        let e = read_csv(&bytes, &cfg).unwrap_err().to_string();
        assert!(e.starts_with("line 2"), "{e}");
    }

    #[test]
    fn json_errors_locate_line_order_and_field() {
        let input = r#"[
  {"order_no": "A", "order_time": "2026-11-22 10:00:00", "total": "1", "paid": "1",
   "lines": [{"code": "1", "name": "x", "qty": "1", "price": "1", "amount": "1"}]},
  {"order_no": "B", "order_time": "2026-11-22 10:00:00", "total": "1", "paid": "1",
   "lines": [{"code": "1", "name": "x", "qty": "lots", "price": "1", "amount": "1"}]},
  {"order_no": "C", "order_time": "2026-11-22 10:00:00", "total": "1", "paid": "1", "lines": []}
]"#;
        let p = read_json(input.as_bytes()).unwrap();
        assert_eq!(p.orders.len(), 1);
        let errs: Vec<_> = p.errors.iter().map(|e| e.to_string()).collect();
        assert!(errs[0].starts_with("line 5, column"), "{errs:?}");
        assert!(
            errs[0].contains("order \"B\", field lines[0].qty"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("line 6, order \"C\", field lines"),
            "{errs:?}"
        );
        let e = read_json(b"[{\"order_no\": ").unwrap_err().to_string();
        assert!(e.starts_with("line 1, column"), "{e}");
        let e = read_json(b"\xff\xfe").unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    /// A reader that hands out one byte per read: every chunk boundary falls
    /// everywhere once.
    struct Trickle<'a>(&'a [u8]);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(out)) => {
                    *out = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    /// Orders and error texts, or the file's error text.
    fn json_outcome(r: impl std::io::Read) -> Result<(Vec<String>, Vec<String>), String> {
        let mut reader = JsonOrders::new(r);
        let (mut orders, mut errors) = (Vec::new(), Vec::new());
        loop {
            match reader.next_order() {
                Ok(Some(Ok(o))) => orders.push(serde_json::to_string(&o).unwrap()),
                Ok(Some(Err(e))) => errors.push(e.to_string()),
                Ok(None) => return Ok((orders, errors)),
                Err(StreamError::Invalid(e)) => return Err(e.to_string()),
                Err(StreamError::Io(e)) => panic!("{e}"),
            }
        }
    }

    /// Data-driven: (input, Ok(orders, error texts) or Err(text the file's error holds)).
    fn check_json(input: &[u8], expected: Result<(usize, &[&str]), &str>) {
        let got = json_outcome(input);
        // One byte at a time reads the same.
        assert_eq!(json_outcome(Trickle(input)), got, "{input:?} byte by byte");
        let input = String::from_utf8_lossy(input);
        match (&got, expected) {
            (Ok((orders, errors)), Ok((n, want))) => {
                assert_eq!(orders.len(), n, "orders of {input:?}");
                assert_eq!(errors.len(), want.len(), "{input:?}: {errors:?}");
                for (e, w) in errors.iter().zip(want) {
                    assert!(e.contains(w), "{input:?}: {e:?} lacks {w:?}");
                }
            }
            (Err(e), Err(want)) => assert!(e.contains(want), "{input:?}: {e:?} lacks {want:?}"),
            _ => panic!("{input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    const ORDER: &str = r#"{"order_no": "A", "order_time": "2026-11-22 10:00:00", "total": "1", "paid": "1",
   "lines": [{"code": "1", "name": "x]}\"[{", "qty": "1", "price": "1", "amount": "1"}]}"#;

    #[test]
    fn json_files_are_split_into_orders_and_checked_whole() {
        let two = format!("[{ORDER},\n {}]", ORDER.replace("\"A\"", "\"B\""));
        check_json(two.as_bytes(), Ok((2, &[])));
        check_json(ORDER.as_bytes(), Ok((1, &[])));
        check_json(format!("\u{FEFF}  {two}\n\n").as_bytes(), Ok((2, &[])));
        check_json(b"[]", Ok((0, &[])));
        check_json(b" [ ] ", Ok((0, &[])));
        // Elements that are JSON but not orders fail alone.
        check_json(
            b"[{}]",
            Ok((0, &["line 1, column 3: missing field `order_no`"])),
        );
        check_json(
            format!("[1, \"]\", {ORDER}, null]").as_bytes(),
            Ok((
                1,
                &["line 1, column 2", "line 1, column 7", "line 2, column 94"],
            )),
        );
        // The file as a whole.
        check_json(b"", Err("line 1, column 1: not valid JSON: EOF"));
        check_json(
            b"[",
            Err("line 1, column 2: not valid JSON: EOF while parsing a list"),
        );
        check_json(
            b"[,]",
            Err("line 1, column 2: not valid JSON: expected value"),
        );
        check_json(
            b"[{},]",
            Err("line 1, column 5: not valid JSON: trailing comma"),
        );
        check_json(
            b"[{} {}]",
            Err("line 1, column 5: not valid JSON: expected `,` or `]`"),
        );
        check_json(
            b"[{}]\n x",
            Err("line 2, column 2: not valid JSON: trailing characters"),
        );
        check_json(
            b"{} {}",
            Err("line 1, column 4: not valid JSON: trailing characters"),
        );
        check_json(
            format!("[{ORDER},\n{{\"order_no\": ").as_bytes(),
            Err("line 3, column 13: not valid JSON: EOF while parsing a value"),
        );
        // An element whose first wrong value is data, but which is not JSON after it.
        check_json(
            b"[{}, {\"order_no\": 5,\n \"lines\": [}]",
            Err("line 2, column 12: not valid JSON"),
        );
        // Not UTF-8, inside an element or between them; a stray character that is
        // UTF-8 is a syntax error.
        check_json(
            b"[{\"order_no\": \"\xff\"}]",
            Err("line 1, column 16: the file is not UTF-8"),
        );
        check_json(
            b"[{}\n\xfe]",
            Err("line 2, column 1: the file is not UTF-8"),
        );
        check_json(b"\xff\xfe", Err("line 1, column 1: the file is not UTF-8"));
        check_json(
            "[{} 中]".as_bytes(),
            Err("line 1, column 5: not valid JSON: expected `,`"),
        );
    }

    /// The streaming reader accepts exactly the files that are UTF-8 JSON, as parsing
    /// the whole file at once would: checked on random mutations of a small export.
    #[test]
    fn json_files_read_in_a_stream_are_valid_exactly_when_the_whole_file_is() {
        let base = format!("[{ORDER},\n {ORDER}, [1, {{}}], \"s\"]").into_bytes();
        let alphabet = b"[]{},:\" \\\n0aeE-.\xff\xc3";
        let mut rng = fastrand::Rng::with_seed(6);
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..4000 {
            let mut input = base.clone();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..=input.len());
                match rng.u8(..3) {
                    0 if at < input.len() => {
                        input.remove(at);
                    }
                    1 if at < input.len() => input[at] = alphabet[rng.usize(..alphabet.len())],
                    _ => input.insert(at, alphabet[rng.usize(..alphabet.len())]),
                }
            }
            let whole = std::str::from_utf8(&input)
                .ok()
                .filter(|t| serde_json::from_str::<&RawValue>(t).is_ok());
            let got = json_outcome(&input[..]);
            assert_eq!(json_outcome(Trickle(&input)), got, "byte by byte");
            assert_eq!(
                got.is_ok(),
                whole.is_some(),
                "{:?}: {got:?}",
                String::from_utf8_lossy(&input)
            );
            if whole.is_some() {
                valid += 1
            } else {
                invalid += 1
            }
        }
        assert!(
            valid > 100 && invalid > 100,
            "{valid} valid, {invalid} invalid"
        );
    }

    /// The shared export, read one byte at a time, gives the orders the fixtures say.
    #[test]
    fn the_shared_json_export_streamed_gives_the_expected_orders() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exports");
        let bytes = std::fs::read(dir.join("orders-20261122-1005.json")).unwrap();
        let expected: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let (orders, errors) = json_outcome(Trickle(&bytes)).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!orders.is_empty());
        for o in orders {
            let o: serde_json::Value = serde_json::from_str(&o).unwrap();
            assert!(expected.contains(&o), "{o} is not in expected.json");
        }
    }
}
