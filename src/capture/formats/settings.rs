//! The export readers' settings: a folder source's `format`, and its `[source.csv]`
//! table (encoding, delimiter, time format, column, payment and kind mappings), raw
//! and validated, with their validation.
//!
//! Invariant: every CSV column mapping names a canonical field the reader knows, and
//! the fields an order cannot do without (`CSV_REQUIRED`) are mapped, so the reader
//! never meets a mapping it cannot honour.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::settings::Problems;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// By file extension: `.json` → json, `.csv` → csv.
    Auto,
    Json,
    Csv,
    /// ESC/POS or plain receipt text, as a POS "printing to file" writes it; read with
    /// the source's `encoding`, `[source.segment]` and `[source.template]`.
    Receipt,
}

impl Format {
    /// Validates a source's `format` key (`auto` when absent), naming `key` in problems.
    pub fn validate(p: &mut Problems, key: &str, raw: Option<&str>) -> Format {
        match raw {
            None | Some("auto") => Format::Auto,
            Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some("receipt") => Format::Receipt,
            Some(f) => {
                p.push(
                    key,
                    format!("must be auto, json, csv or receipt, got {f:?}"),
                );
                Format::Auto
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8, with or without a byte-order mark.
    Utf8,
    /// GBK and its superset GB18030 (one decoder serves both).
    Gb18030,
}

/// `[source.csv]` as written in the file (and as `check-config` prints it back).
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    pub encoding: Option<String>,
    pub delimiter: Option<String>,
    pub time_format: Option<String>,
    /// The decimal mark of amounts: `"."` (default) or `","`.
    pub decimal: Option<String>,
    /// The grouping (thousands) character: none (`""`, the default with
    /// `decimal = "."`), `"."` (the default with `decimal = ","`), `","`,
    /// `"'"` or `" "`.
    pub grouping: Option<String>,
    /// canonical field → header name in the file.
    pub columns: Option<BTreeMap<String, String>>,
    /// label printed by the POS → canonical payment (`cash`, `wechat`, …).
    pub payment: Option<BTreeMap<String, String>>,
    /// label printed by the POS → canonical kind (`sale`, `refund`, `void`).
    pub kind: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CsvConfig {
    pub encoding: Encoding,
    pub delimiter: u8,
    pub time_format: String,
    /// How amounts are written (decimal mark, grouping).
    pub number: crate::capture::number::NumberFormat,
    pub columns: BTreeMap<String, String>,
    pub payment: BTreeMap<String, crate::order::Payment>,
    pub kind: BTreeMap<String, crate::order::Kind>,
}

/// Canonical fields a CSV column may be mapped to.
pub const CSV_ORDER_FIELDS: &[&str] = &[
    "order_no",
    "order_time",
    "kind",
    "cashier",
    "payment",
    "total",
    "order_discount",
    "paid",
    "shop",
    "machine_id",
];
pub const CSV_LINE_FIELDS: &[&str] = &[
    "code",
    "name",
    "qty",
    "price",
    "amount",
    "discount",
    "scan_time",
    "batch_no",
    "box_no",
];
const CSV_REQUIRED: &[&str] = &[
    "order_no",
    "order_time",
    "code",
    "name",
    "qty",
    "price",
    "amount",
];

impl Format {
    /// The `format` key's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Receipt => "receipt",
        }
    }
}

impl CsvConfig {
    /// The table as the file writes it, every default filled in: the encoding by
    /// name, the delimiter as a character, every column mapping.
    pub fn raw(&self) -> RawCsv {
        RawCsv {
            encoding: Some(
                match self.encoding {
                    Encoding::Utf8 => "utf-8",
                    Encoding::Gb18030 => "gb18030",
                }
                .into(),
            ),
            delimiter: Some(char::from(self.delimiter).to_string()),
            time_format: Some(self.time_format.clone()),
            decimal: Some(self.number.decimal_key()),
            grouping: Some(self.number.grouping_key()),
            columns: Some(self.columns.clone()),
            payment: Some(
                self.payment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().to_string()))
                    .collect(),
            ),
            kind: Some(
                self.kind
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().to_string()))
                    .collect(),
            ),
        }
    }
}

impl RawCsv {
    /// Validates `[source.csv]`, naming `key` (`source[lane1].csv`) in problems.
    pub fn validate(self, p: &mut Problems, key: &str) -> CsvConfig {
        let raw = self;
        let encoding = match raw
            .encoding
            .as_deref()
            .map(|s| s.to_ascii_lowercase().replace('_', "-"))
            .as_deref()
        {
            None | Some("utf-8") | Some("utf8") => Encoding::Utf8,
            Some("gbk") | Some("gb2312") | Some("gb18030") => Encoding::Gb18030,
            Some(e) => {
                p.push(
                    &format!("{key}.encoding"),
                    format!("must be utf-8, gbk or gb18030, got {e:?}"),
                );
                Encoding::Utf8
            }
        };
        let delimiter = match raw.delimiter.as_deref() {
            None => b',',
            Some("\\t") | Some("\t") => b'\t',
            Some(d) if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
            Some(d) => {
                p.push(
                    &format!("{key}.delimiter"),
                    format!("must be one ASCII character, got {d:?}"),
                );
                b','
            }
        };
        let time_format = raw
            .time_format
            .unwrap_or_else(|| crate::order::TIME_FORMAT.to_string());
        if chrono::format::StrftimeItems::new(&time_format)
            .parse()
            .is_err()
        {
            p.push(
                &format!("{key}.time_format"),
                format!("{time_format:?} is not a valid strftime format"),
            );
        }
        use crate::capture::number::NumberFormat;
        let number = NumberFormat::from_keys(
            key,
            raw.decimal.as_deref(),
            raw.grouping.as_deref(),
            NumberFormat::POINT.grouping,
        )
        .unwrap_or_else(|e| {
            // The message names the key in full (`source[x].csv.decimal: …`).
            p.push_named(e);
            NumberFormat::POINT
        });
        let mut columns = BTreeMap::new();
        for field in CSV_ORDER_FIELDS.iter().chain(CSV_LINE_FIELDS) {
            columns.insert(field.to_string(), field.to_string());
        }
        for (field, header) in raw.columns.unwrap_or_default() {
            if !CSV_ORDER_FIELDS.contains(&field.as_str())
                && !CSV_LINE_FIELDS.contains(&field.as_str())
            {
                p.push(
                    &format!("{key}.columns.{field}"),
                    format!(
                        "unknown field; known: {}",
                        CSV_ORDER_FIELDS
                            .iter()
                            .chain(CSV_LINE_FIELDS)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            columns.insert(field, header);
        }
        for req in CSV_REQUIRED {
            if columns.get(*req).is_none_or(|h| h.is_empty()) {
                p.push(&format!("{key}.columns.{req}"), "must name a column");
            }
        }
        let mut payment = BTreeMap::new();
        for (label, canon) in raw.payment.unwrap_or_default() {
            match crate::order::Payment::parse(&canon) {
                Some(v) => {
                    payment.insert(label, v);
                }
                None => p.push(
                    &format!("{key}.payment.{label}"),
                    format!("must be cash, wechat, alipay, card or other, got {canon:?}"),
                ),
            }
        }
        let mut kind = BTreeMap::new();
        for (label, canon) in raw.kind.unwrap_or_default() {
            let v = match canon.as_str() {
                "sale" => crate::order::Kind::Sale,
                "refund" => crate::order::Kind::Refund,
                "void" => crate::order::Kind::Void,
                _ => {
                    p.push(
                        &format!("{key}.kind.{label}"),
                        format!("must be sale, refund or void, got {canon:?}"),
                    );
                    continue;
                }
            };
            kind.insert(label, v);
        }
        CsvConfig {
            encoding,
            delimiter,
            time_format,
            number,
            columns,
            payment,
            kind,
        }
    }
}
