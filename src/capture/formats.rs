//! Readers for POS export files: canonical JSON and mapped CSV → canonical orders.
//!
//! Invariants:
//! - A reader never panics and never guesses silently: every problem becomes a
//!   [`ReadError`] naming the line (and column where known), the order and the field.
//! - A problem with the file as a whole (not JSON, wrong encoding, a missing column)
//!   fails the whole file; a problem with one order fails that order only, and the
//!   other orders of the file are still returned, so one bad row never holds back a
//!   day's sales.
//! - Decimals keep the scale they were written with; amounts the reader computes
//!   (a CSV order's total) take the scale of their inputs.

use std::collections::HashMap;
use std::fmt;

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::capture::receipt::{ReceiptRules, parse_bytes};
use crate::capture::template::Parsed as ReceiptParsed;
use crate::config::{CsvConfig, Encoding, Format};
use crate::order::{Kind, Line, Order, Payment};

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

/// Canonical JSON: one order object or an array of them.
pub fn read_json(bytes: &[u8]) -> Result<Parsed, ReadError> {
    let text = utf8(bytes)?;
    let trimmed = text.trim_start();
    let elements: Vec<&RawValue> = if trimmed.starts_with('[') {
        serde_json::from_str(text).map_err(json_error)?
    } else {
        vec![serde_json::from_str(text).map_err(json_error)?]
    };
    let mut parsed = Parsed::default();
    let mut cursor = LineCursor::default();
    for raw in elements {
        let part = raw.get();
        // RawValue borrows from `text`, so its offset locates the element in the file.
        let offset = part.as_ptr() as usize - text.as_ptr() as usize;
        let (base_line, base_col) = cursor.advance(text, offset);
        let mut de = serde_json::Deserializer::from_str(part);
        match serde_path_to_error::deserialize::<_, Order>(&mut de) {
            Ok(order) => match order.check() {
                Ok(()) => parsed.orders.push(order),
                Err(e) => parsed.errors.push(ReadError {
                    line: Some(base_line),
                    column: None,
                    order_no: Some(e.order_no),
                    field: Some(e.field),
                    message: e.problem,
                }),
            },
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let (l, c) = (inner.line(), inner.column());
                let line = base_line + l.saturating_sub(1);
                let column = if l <= 1 {
                    base_col + c.saturating_sub(1)
                } else {
                    c
                };
                parsed.errors.push(ReadError {
                    line: Some(line),
                    column: Some(column),
                    order_no: order_no_of(part),
                    field: (path != ".").then_some(path),
                    message: strip_position(&inner.to_string()),
                });
            }
        }
    }
    Ok(parsed)
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

/// Line and column of increasing offsets, scanning each byte once (a file of 10,000
/// orders must not be rescanned from the start for each of them).
#[derive(Default)]
struct LineCursor {
    offset: usize,
    line: usize,
    line_start: usize,
}

impl LineCursor {
    fn advance(&mut self, text: &str, offset: usize) -> (usize, usize) {
        let bytes = &text.as_bytes()[self.offset..offset];
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                self.line += 1;
                self.line_start = self.offset + i + 1;
            }
        }
        self.offset = offset;
        (self.line + 1, offset - self.line_start + 1)
    }
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
        ReadError {
            line: Some(line),
            column: Some(column),
            order_no: None,
            field: None,
            message: "the file is not UTF-8 (is the encoding set right?)".into(),
        }
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

/// Decodes a CSV file's text in its configured encoding.
fn decode(bytes: &[u8], encoding: Encoding) -> Result<String, ReadError> {
    match encoding {
        Encoding::Utf8 => utf8(bytes).map(str::to_string),
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
            Ok(text.into_owned())
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
    use crate::config::Config;
    use std::path::Path;

    fn csv_cfg(extra: &str) -> CsvConfig {
        let text = format!(
            "[[source]]\nname = \"l\"\nkind = \"folder\"\npath = \"/x\"\nshop = \"D\"\nmachine_id = \"M\"\n{extra}"
        );
        let c = Config::from_toml(&text, Path::new("/t.toml")).unwrap();
        let crate::config::SourceKind::Folder(f) = &c.sources[0].kind else {
            panic!("a folder source")
        };
        f.csv.clone()
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
}
