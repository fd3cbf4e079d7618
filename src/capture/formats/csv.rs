//! Mapped CSV exports: decoding (UTF-8, GB18030/GBK), header mapping, and
//! grouping rows into orders.
//!
//! Invariants: the file is read whole (the rows of one order may be anywhere
//! in it); a missing column fails the file, a bad row fails only its order;
//! computed totals take the scale of their inputs.

use super::*;

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |i| offset - i - 1) + 1;
    (line, col)
}

pub(super) fn utf8(bytes: &[u8]) -> Result<&str, ReadError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col_bytes(bytes, e.valid_up_to());
        not_utf8(line, column)
    })
}

/// Decodes a CSV file's text in its configured encoding (UTF-8 is used in place, not
/// copied).
pub(super) fn decode(
    bytes: &[u8],
    encoding: Encoding,
) -> Result<std::borrow::Cow<'_, str>, ReadError> {
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
    let mut rdr = ::csv::ReaderBuilder::new()
        .delimiter(cfg.delimiter)
        .has_headers(true)
        .flexible(true)
        .trim(::csv::Trim::All)
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
        match order.check_captured() {
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

pub(super) fn memchr_all(bytes: &[u8]) -> Vec<usize> {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .collect()
}

pub(super) struct Columns {
    pub(super) order_no: Option<usize>,
    pub(super) order_time: Option<usize>,
    pub(super) kind: Option<usize>,
    pub(super) cashier: Option<usize>,
    pub(super) payment: Option<usize>,
    pub(super) total: Option<usize>,
    pub(super) order_discount: Option<usize>,
    pub(super) paid: Option<usize>,
    pub(super) shop: Option<usize>,
    pub(super) machine_id: Option<usize>,
    pub(super) code: Option<usize>,
    pub(super) name: Option<usize>,
    pub(super) qty: Option<usize>,
    pub(super) price: Option<usize>,
    pub(super) amount: Option<usize>,
    pub(super) discount: Option<usize>,
    pub(super) scan_time: Option<usize>,
    pub(super) batch_no: Option<usize>,
    pub(super) box_no: Option<usize>,
}

/// The order-level values of a row; every row of an order must agree on them.
#[derive(PartialEq)]
pub(super) struct Head {
    pub(super) order_time: NaiveDateTime,
    pub(super) kind: Option<Kind>,
    pub(super) cashier: Option<String>,
    pub(super) payment: Option<Payment>,
    pub(super) total: Option<Decimal>,
    pub(super) discount: Option<Decimal>,
    pub(super) paid: Option<Decimal>,
    pub(super) shop: Option<String>,
    pub(super) machine_id: Option<String>,
}

impl Head {
    pub(super) fn differs(&self, other: &Head) -> Option<&'static str> {
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
    pub(super) fn into_order(
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
        // Without a paid column: the discount lowers what is paid, or what is paid
        // back on a refund printed negative (as `Order::check_consistency` holds it).
        let paid = match self.paid {
            Some(p) => p,
            None if total.is_sign_negative() && !total.is_zero() => total
                .checked_add(discount.abs())
                .ok_or_else(|| overflow("paid"))?,
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
            voided: Vec::new(),
            source: None,
            shop: self.shop,
            machine_id: self.machine_id,
            video_start: None,
            video_end: None,
            zone: None,
        })
    }
}

pub(super) struct Group {
    pub(super) order_no: String,
    pub(super) first_line: usize,
    pub(super) head: Option<Head>,
    pub(super) lines: Vec<Line>,
    pub(super) error: Option<ReadError>,
}

pub(super) fn row(
    cols: &Columns,
    rec: &::csv::StringRecord,
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
        cfg.number.parse(s).map(Some).map_err(|e| err(field, e))
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
