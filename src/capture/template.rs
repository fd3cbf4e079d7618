//! Receipt templates: config-driven rules that turn a receipt's text into the
//! canonical [`Order`] — or say it is a reprint, or not an order at all.
//!
//! A template is written per source in `[source.template]` (see
//! `docs/TEMPLATES.md` for the walk-through and `config/tillrelay.toml` for
//! two complete examples). It is validated once ([`RawTemplate::validate`]:
//! every regex compiled, every name checked, errors naming the key) and then
//! applied to each receipt by [`Template::parse`].
//!
//! # Rules, in the order they are applied
//!
//! 1. Nothing printed but a drawer kick → [`Parsed::NotAnOrder`].
//! 2. A line matching an `ignore` regex (shift reports, test prints) →
//!    [`Parsed::NotAnOrder`].
//! 3. A line matching a `reprint` regex → [`Parsed::Reprint`]: **a reprint is
//!    never a new order**, whatever else it says.
//! 4. `void` / `refund` regexes set the kind.
//! 5. Fields: each is a regex tried on every line in order (or, with `from`, on
//!    barcode/QR payloads); the first match wins, its first capture group (or
//!    the whole match) is the value. `order_no` and `order_time` are required;
//!    `order_time` has a chrono `format`.
//! 6. Payment: the first line matching one of a payment's regexes.
//! 7. Items: one regex per printed line of an item (one-line or multi-line
//!    layouts), with named groups `code name qty price amount discount
//!    batch_no box_no`. With `items.start`/`items.end` the item region is
//!    strict: every non-blank line in it that is not `items.skip` must be part
//!    of an item, or the receipt fails naming that line — a template never
//!    silently drops an item.
//! 8. Amounts that the receipt does not print are derived: `total` = Σ line
//!    amounts, `discount` = `total − paid` (or zero), `paid` = `total −
//!    discount`; `qty` defaults to 1, a missing line `amount` is `qty × price`.
//! 9. Refunds: by default amounts are kept as printed (a POS that prints `-1`
//!    and `-59.90` gives exactly that); `refund_sign = "negative"` forces
//!    `qty`, `amount`, `total` and `paid` negative for POS that print refunds
//!    with positive numbers.
//! 10. `check_totals` (default true): Σ line amounts must equal `total` and
//!     `total − discount` must equal `paid`, else the receipt fails on that
//!     field — the usual sign of an item line the template missed.
//!
//! Invariants: decimals keep the scale they were printed with; a parse failure
//! is a [`TemplateError`] naming the receipt line (1-based), its text, and the
//! field, so the receipt stays unparsed in the journal until a fixed template
//! is re-run over it (`tillrelay reparse`).

use std::fmt;

use std::ops::Range;

use chrono::NaiveDateTime;
use regex::{CaptureLocations, Regex, RegexSet, RegexSetBuilder};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::mask::Masker;
use super::segment::Receipt;
use crate::order::{Kind, Line, Order, Payment};

/// `[source.template]` as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    /// Regexes; a matching line makes the receipt a reprint (never an order).
    #[serde(default)]
    pub reprint: Vec<String>,
    /// Regexes; a matching line makes the order a refund.
    #[serde(default)]
    pub refund: Vec<String>,
    /// Regexes; a matching line makes the order a void.
    #[serde(default)]
    pub void: Vec<String>,
    /// Regexes; a matching line makes the receipt not an order (reports, tests).
    #[serde(default)]
    pub ignore: Vec<String>,
    /// `"printed"` (default) or `"negative"`.
    #[serde(default)]
    pub refund_sign: Option<String>,
    /// Check Σ amounts = total and total − discount = paid. Default true.
    #[serde(default)]
    pub check_totals: Option<bool>,
    /// Blank card numbers (see `capture::mask`). Default true.
    #[serde(default)]
    pub mask_cards: Option<bool>,
    /// Extra regexes whose first group (or match) is masked but for 4 digits.
    #[serde(default)]
    pub mask: Vec<String>,
    pub fields: RawFields,
    /// Payment name (`cash wechat alipay card other`) → regexes.
    #[serde(default)]
    pub payment: std::collections::BTreeMap<String, Vec<String>>,
    pub items: RawItems,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFields {
    pub order_no: RawField,
    pub order_time: RawField,
    #[serde(default)]
    pub cashier: Option<RawField>,
    #[serde(default)]
    pub total: Option<RawField>,
    #[serde(default)]
    pub discount: Option<RawField>,
    #[serde(default)]
    pub paid: Option<RawField>,
}

/// A field: a regex string, or `{ regex = "…", from = "qr", format = "…" }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawField {
    pub regex: String,
    /// `"lines"` (default), `"codes"`, a code kind (`"qr"`, `"barcode"`,
    /// `"pdf417"`, `"datamatrix"`) or a symbology (`"code128"`, `"ean13"`…).
    pub from: Option<String>,
    /// chrono format, for `order_time` only. Default `%Y-%m-%d %H:%M:%S`.
    pub format: Option<String>,
}

impl<'de> Deserialize<'de> for RawField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a regex string or a table { regex, from, format }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawField, E> {
                Ok(RawField {
                    regex: s.to_string(),
                    ..Default::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawField, A::Error> {
                let mut f = RawField::default();
                let mut regex = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "regex" => regex = Some(map.next_value()?),
                        "from" => f.from = Some(map.next_value()?),
                        "format" => f.format = Some(map.next_value()?),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["regex", "from", "format"],
                            ));
                        }
                    }
                }
                f.regex = regex.ok_or_else(|| de::Error::missing_field("regex"))?;
                Ok(f)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawItems {
    /// Regex; items begin after the first matching line (the column header).
    #[serde(default)]
    pub start: Option<String>,
    /// Regex; items end before the first matching line after `start`.
    #[serde(default)]
    pub end: Option<String>,
    /// One regex per printed line of an item, with named groups.
    pub lines: Vec<String>,
    /// Regexes of lines inside the item region that are not items.
    #[serde(default)]
    pub skip: Vec<String>,
}

const ITEM_GROUPS: [&str; 8] = [
    "code", "name", "qty", "price", "amount", "discount", "batch_no", "box_no",
];

/// Where a field is looked for.
#[derive(Debug, Clone)]
enum Source {
    /// Receipt lines: the field's regex is `LineRegexes::all[i]`.
    Lines(usize),
    /// Code payloads, optionally only of one kind or symbology.
    Codes {
        filter: Option<String>,
        regex: Regex,
    },
}

#[derive(Debug, Clone)]
struct Field {
    key: &'static str,
    source: Source,
}

/// The item rules; numbers index `LineRegexes::all`.
#[derive(Debug, Clone)]
struct Items {
    start: Option<usize>,
    end: Option<usize>,
    lines: Range<usize>,
    skip: Range<usize>,
    /// Per name of [`ITEM_GROUPS`]: which layout line (0-based within
    /// `lines`) and which capture group of its regex holds it.
    groups: [Option<(usize, usize)>; ITEM_GROUPS.len()],
}

/// Every regex a template tries on receipt lines, in one list that the rules
/// refer to by index, and the same regexes as one [`RegexSet`]: a receipt line
/// is searched once for all of them ([`LineHits`]) instead of once per rule,
/// and a rule's own regex runs only to extract captures from a line the set
/// says it matches.
#[derive(Debug, Clone)]
struct LineRegexes {
    all: Vec<Regex>,
    /// Per regex, the same pattern with Unicode mode off, used for captures
    /// on all-ASCII lines (item code lines, mostly). On ASCII text it matches
    /// exactly as the Unicode regex does (`\d`, `\s`, `\w`, `.`, `(?i)` differ
    /// only on non-ASCII characters), and its automaton is a fraction of the
    /// size, which makes captures about three times cheaper. None where the
    /// pattern needs Unicode mode (`\p{…}`).
    ascii: Vec<Option<regex::bytes::Regex>>,
    /// None if the set would exceed the regex size limit (a huge template):
    /// then each regex is tried on its own, with the same result.
    set: Option<RegexSet>,
}

/// The capture spans of one regex on one line, from whichever variant ran.
struct Slots {
    unicode: CaptureLocations,
    ascii: Option<regex::bytes::CaptureLocations>,
    from_ascii: bool,
}

impl Slots {
    /// Byte span of capture group `i` in the line, if it took part.
    fn get(&self, i: usize) -> Option<(usize, usize)> {
        match (&self.ascii, self.from_ascii) {
            (Some(a), true) => a.get(i),
            _ => self.unicode.get(i),
        }
    }
}

impl LineRegexes {
    fn add(&mut self, key: &str, pattern: &str) -> Result<usize, String> {
        self.all.push(compile(key, pattern)?);
        self.ascii.push(
            regex::bytes::RegexBuilder::new(pattern)
                .unicode(false)
                .build()
                .ok(),
        );
        Ok(self.all.len() - 1)
    }

    fn slots(&self, re: usize) -> Slots {
        Slots {
            unicode: self.all[re].capture_locations(),
            ascii: self.ascii[re]
                .as_ref()
                .map(regex::bytes::Regex::capture_locations),
            from_ascii: false,
        }
    }

    /// Runs regex `re` on `line` for its captures; false when it does not match.
    fn captures(&self, re: usize, line: &str, slots: &mut Slots) -> bool {
        if line.is_ascii() {
            if let (Some(a), Some(locs)) = (&self.ascii[re], &mut slots.ascii) {
                slots.from_ascii = true;
                return a.captures_read(locs, line.as_bytes()).is_some();
            }
        }
        slots.from_ascii = false;
        self.all[re]
            .captures_read(&mut slots.unicode, line)
            .is_some()
    }

    /// A field's value on `line`: the first capture group, or the whole match.
    fn value(&self, re: usize, line: &str) -> Option<String> {
        let mut slots = self.slots(re);
        if !self.captures(re, line, &mut slots) {
            return None;
        }
        let (a, b) = slots.get(1).or_else(|| slots.get(0))?;
        Some(line[a..b].trim().to_string())
    }

    fn add_all(&mut self, key: &str, patterns: &[String]) -> Result<Range<usize>, String> {
        let first = self.all.len();
        for (i, p) in patterns.iter().enumerate() {
            self.add(&format!("{key}[{i}]"), p)?;
        }
        Ok(first..self.all.len())
    }

    fn build_set(&mut self) {
        self.set = RegexSetBuilder::new(self.all.iter().map(Regex::as_str))
            .build()
            .ok();
    }

    /// Which regexes match which line.
    fn hits(&self, lines: &[String]) -> LineHits {
        let words = self.all.len().div_ceil(64).max(1);
        let mut bits = vec![0u64; lines.len() * words];
        for (i, line) in lines.iter().enumerate() {
            let row = &mut bits[i * words..(i + 1) * words];
            match &self.set {
                Some(set) => {
                    for p in set.matches(line).iter() {
                        row[p / 64] |= 1 << (p % 64);
                    }
                }
                None => {
                    for (p, re) in self.all.iter().enumerate() {
                        if re.is_match(line) {
                            row[p / 64] |= 1 << (p % 64);
                        }
                    }
                }
            }
        }
        LineHits { words, bits }
    }
}

/// Per receipt line, the set of [`LineRegexes`] that match it.
struct LineHits {
    words: usize,
    bits: Vec<u64>,
}

impl LineHits {
    fn matches(&self, line: usize, re: usize) -> bool {
        self.bits[line * self.words + re / 64] & (1 << (re % 64)) != 0
    }

    fn any(&self, line: usize, res: &Range<usize>) -> bool {
        res.clone().any(|re| self.matches(line, re))
    }

    fn lines(&self) -> usize {
        self.bits.len() / self.words
    }

    /// The first line at or after `from` that one of `res` matches.
    fn first(&self, from: usize, res: &Range<usize>) -> Option<usize> {
        (from..self.lines()).find(|&i| self.any(i, res))
    }
}

/// A validated template.
#[derive(Debug, Clone)]
pub struct Template {
    regexes: LineRegexes,
    reprint: Range<usize>,
    refund: Range<usize>,
    void: Range<usize>,
    ignore: Range<usize>,
    refund_negative: bool,
    check_totals: bool,
    masker: Masker,
    order_no: Field,
    order_time: Field,
    time_format: String,
    cashier: Option<Field>,
    total: Option<Field>,
    discount: Option<Field>,
    paid: Option<Field>,
    payment: Vec<(Payment, Range<usize>)>,
    items: Items,
}

/// What a receipt turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Order(Box<Order>),
    /// A reprint of an earlier receipt: never a new order.
    Reprint {
        order_no: Option<String>,
    },
    /// Not a sale at all (a report, a drawer opening, an ignored receipt).
    NotAnOrder {
        reason: String,
    },
}

/// Why a receipt could not be parsed: names the receipt line (1-based) and its
/// text when one is to blame, and the template field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    pub line: Option<usize>,
    pub text: Option<String>,
    pub field: String,
    pub problem: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.line {
            write!(f, "line {n}")?;
            if let Some(t) = &self.text {
                write!(f, " {t:?}")?;
            }
            write!(f, ": ")?;
        }
        write!(f, "{}: {}", self.field, self.problem)
    }
}

fn compile(key: &str, pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("{key}: {e}"))
}

/// For the `mask` regexes, which the masker applies itself.
fn compile_all(key: &str, patterns: &[String]) -> Result<Vec<Regex>, String> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| compile(&format!("{key}[{i}]"), p))
        .collect()
}

impl RawField {
    fn validate(&self, key: &'static str, regexes: &mut LineRegexes) -> Result<Field, String> {
        let path = format!("template.fields.{key}");
        let regex_key = format!("{path}.regex");
        let source = match self.from.as_deref() {
            None | Some("lines") => Source::Lines(regexes.add(&regex_key, &self.regex)?),
            Some("codes") => Source::Codes {
                filter: None,
                regex: compile(&regex_key, &self.regex)?,
            },
            Some(kind) => {
                const KNOWN: [&str; 18] = [
                    "barcode",
                    "qr",
                    "pdf417",
                    "datamatrix",
                    "aztec",
                    "maxicode",
                    "upc-a",
                    "upc-e",
                    "ean13",
                    "ean8",
                    "code39",
                    "itf",
                    "codabar",
                    "code93",
                    "code128",
                    "gs1-128",
                    "gs1-databar",
                    "code128-auto",
                ];
                if !KNOWN.contains(&kind) {
                    return Err(format!(
                        "{path}.from: must be lines, codes or one of {}, got {kind:?}",
                        KNOWN.join(", ")
                    ));
                }
                Source::Codes {
                    filter: Some(kind.to_string()),
                    regex: compile(&regex_key, &self.regex)?,
                }
            }
        };
        if self.format.is_some() && key != "order_time" {
            return Err(format!("{path}.format: only order_time has a format"));
        }
        Ok(Field { key, source })
    }
}

/// Checks that `format` can print and read back a full date and time.
fn check_time_format(format: &str) -> Result<(), String> {
    use std::fmt::Write;
    let key = "template.fields.order_time.format";
    let sample = crate::order::parse_time("2026-11-22 09:15:02").map_err(|e| e.to_string())?;
    let mut printed = String::new();
    write!(printed, "{}", sample.format(format))
        .map_err(|_| format!("{key}: {format:?} is not a valid chrono format"))?;
    match NaiveDateTime::parse_from_str(&printed, format) {
        Ok(t) if t == sample => Ok(()),
        _ => Err(format!(
            "{key}: {format:?} does not give a full date and time (needs year, month, day, \
             hour, minute and second)"
        )),
    }
}

impl RawTemplate {
    /// Errors name the key relative to the source, e.g. `template.items.lines[1]: …`.
    pub fn validate(self) -> Result<Template, String> {
        let refund_negative = match self.refund_sign.as_deref() {
            None | Some("printed") => false,
            Some("negative") => true,
            Some(other) => {
                return Err(format!(
                    "template.refund_sign: must be printed or negative, got {other:?}"
                ));
            }
        };
        let time_format = self
            .fields
            .order_time
            .format
            .clone()
            .unwrap_or_else(|| crate::order::TIME_FORMAT.to_string());
        check_time_format(&time_format)?;
        let mut regexes = LineRegexes {
            all: Vec::new(),
            ascii: Vec::new(),
            set: None,
        };
        let mut payment = Vec::new();
        for (name, patterns) in &self.payment {
            let p = Payment::parse(name).ok_or_else(|| {
                format!(
                    "template.payment.{name}: not a payment; use one of {}",
                    Payment::ALL.map(Payment::as_str).join(", ")
                )
            })?;
            payment.push((
                p,
                regexes.add_all(&format!("template.payment.{name}"), patterns)?,
            ));
        }
        // Lines are tried payment by payment in the canonical order, so the
        // result does not depend on how the TOML table is ordered.
        payment.sort_by_key(|(p, _)| Payment::ALL.iter().position(|q| q == p));
        let start = self
            .items
            .start
            .as_deref()
            .map(|p| regexes.add("template.items.start", p))
            .transpose()?;
        let end = self
            .items
            .end
            .as_deref()
            .map(|p| regexes.add("template.items.end", p))
            .transpose()?;
        let lines = regexes.add_all("template.items.lines", &self.items.lines)?;
        let skip = regexes.add_all("template.items.skip", &self.items.skip)?;
        if lines.is_empty() {
            return Err("template.items.lines: needs at least one regex".into());
        }
        let mut groups = [None; ITEM_GROUPS.len()];
        for (i, re) in regexes.all[lines.clone()].iter().enumerate() {
            for (index, name) in re.capture_names().enumerate() {
                let Some(name) = name else { continue };
                let Some(g) = ITEM_GROUPS.iter().position(|n| *n == name) else {
                    return Err(format!(
                        "template.items.lines[{i}]: unknown group {name:?}; groups are {}",
                        ITEM_GROUPS.join(", ")
                    ));
                };
                if let Some((j, _)) = groups[g] {
                    return Err(format!(
                        "template.items.lines[{i}]: group {name:?} already in items.lines[{j}]"
                    ));
                }
                groups[g] = Some((i, index));
            }
        }
        let has = |g: &str| {
            ITEM_GROUPS
                .iter()
                .position(|n| *n == g)
                .is_some_and(|g| groups[g].is_some())
        };
        if !has("code") {
            return Err(
                "template.items.lines: no (?P<code>…) group; every line needs a code".into(),
            );
        }
        if !has("price") && !has("amount") {
            return Err("template.items.lines: needs a (?P<price>…) or (?P<amount>…) group".into());
        }
        let items = Items {
            start,
            end,
            lines,
            skip,
            groups,
        };
        let reprint = regexes.add_all("template.reprint", &self.reprint)?;
        let refund = regexes.add_all("template.refund", &self.refund)?;
        let void = regexes.add_all("template.void", &self.void)?;
        let ignore = regexes.add_all("template.ignore", &self.ignore)?;
        let masker = Masker::new(
            self.mask_cards.unwrap_or(true),
            compile_all("template.mask", &self.mask)?,
        );
        let f = &self.fields;
        let order_no = f.order_no.validate("order_no", &mut regexes)?;
        let order_time = f.order_time.validate("order_time", &mut regexes)?;
        let mut opt = |f: &Option<RawField>, key| {
            f.as_ref()
                .map(|f| f.validate(key, &mut regexes))
                .transpose()
        };
        let cashier = opt(&f.cashier, "cashier")?;
        let total = opt(&f.total, "total")?;
        let discount = opt(&f.discount, "discount")?;
        let paid = opt(&f.paid, "paid")?;
        regexes.build_set();
        Ok(Template {
            regexes,
            reprint,
            refund,
            void,
            ignore,
            refund_negative,
            check_totals: self.check_totals.unwrap_or(true),
            masker,
            order_no,
            order_time,
            time_format,
            cashier,
            total,
            discount,
            paid,
            payment,
            items,
        })
    }
}

/// A found value and the receipt line (0-based) it came from, if a line.
struct Found {
    value: String,
    line: Option<usize>,
}

fn err(
    line: Option<usize>,
    lines: &[String],
    field: &str,
    problem: impl Into<String>,
) -> TemplateError {
    TemplateError {
        line: line.map(|i| i + 1),
        text: line.and_then(|i| lines.get(i).cloned()),
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A field's value: its regex's first capture group, or the whole match.
fn capture_value(re: &Regex, text: &str) -> Option<String> {
    let c = re.captures(text)?;
    Some(
        c.get(1)
            .or_else(|| c.get(0))
            .map(|m| m.as_str().trim().to_string())
            .unwrap_or_default(),
    )
}

/// Parses a printed decimal: thousands separators and spaces are dropped, the
/// scale is kept.
fn decimal(s: &str) -> Option<Decimal> {
    if !s.contains(|c: char| c == ',' || c.is_whitespace()) {
        return s.parse::<Decimal>().ok();
    }
    let cleaned: String = s
        .chars()
        .filter(|c| *c != ',' && !c.is_whitespace())
        .collect();
    cleaned.parse::<Decimal>().ok()
}

fn neg(d: Decimal) -> Decimal {
    -d.abs()
}

impl Template {
    /// The masking this template asks for; applied to receipts before storage
    /// (see [`super::receipt::Pipeline`]), not by [`Template::parse`].
    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// The field's value from the first line (or code) its regex matches.
    fn find(&self, f: &Field, r: &Receipt, hits: &LineHits) -> Option<Found> {
        match &f.source {
            Source::Lines(re) => {
                let i = hits.first(0, &(*re..*re + 1))?;
                self.regexes.value(*re, &r.lines[i]).map(|value| Found {
                    value,
                    line: Some(i),
                })
            }
            Source::Codes { filter, regex } => r
                .codes
                .iter()
                .filter(|c| match filter {
                    None => true,
                    Some(k) => c.code.kind.name() == k || c.code.symbology == k,
                })
                .find_map(|c| {
                    capture_value(regex, &c.code.payload).map(|value| Found { value, line: None })
                }),
        }
    }

    fn find_decimal(
        &self,
        f: &Option<Field>,
        r: &Receipt,
        hits: &LineHits,
    ) -> Result<Option<Decimal>, TemplateError> {
        let Some(f) = f else { return Ok(None) };
        let Some(found) = self.find(f, r, hits) else {
            return Ok(None);
        };
        decimal(&found.value).map(Some).ok_or_else(|| {
            err(
                found.line,
                &r.lines,
                f.key,
                format!("{:?} is not a decimal", found.value),
            )
        })
    }

    /// Turns one receipt into an order, a reprint, or not-an-order.
    pub fn parse(&self, r: &Receipt) -> Result<Parsed, TemplateError> {
        let lines = &r.lines;
        if lines.iter().all(|l| l.trim().is_empty()) && r.codes.is_empty() {
            return Ok(Parsed::NotAnOrder {
                reason: if r.drawer_kicks > 0 {
                    "drawer opened, nothing printed".into()
                } else {
                    "nothing printed".into()
                },
            });
        }
        // Every line searched once for every line regex of the template.
        let hits = self.regexes.hits(lines);
        if let Some(i) = hits.first(0, &self.ignore) {
            return Ok(Parsed::NotAnOrder {
                reason: format!("line {} {:?} matches template.ignore", i + 1, lines[i]),
            });
        }
        if hits.first(0, &self.reprint).is_some() {
            return Ok(Parsed::Reprint {
                order_no: self.find(&self.order_no, r, &hits).map(|f| f.value),
            });
        }
        let kind = if hits.first(0, &self.void).is_some() {
            Kind::Void
        } else if hits.first(0, &self.refund).is_some() {
            Kind::Refund
        } else {
            Kind::Sale
        };

        let order_no = self
            .find(&self.order_no, r, &hits)
            .ok_or_else(|| err(None, lines, "order_no", "no line matches"))?;
        if order_no.value.is_empty() {
            return Err(err(order_no.line, lines, "order_no", "is empty"));
        }
        if r.masked > 0 && order_no.value.contains('*') {
            return Err(err(
                order_no.line,
                lines,
                "order_no",
                "was masked as a card number; set template.mask_cards = false and mask \
                 card numbers with template.mask instead",
            ));
        }
        let time = self
            .find(&self.order_time, r, &hits)
            .ok_or_else(|| err(None, lines, "order_time", "no line matches"))?;
        let order_time =
            NaiveDateTime::parse_from_str(&time.value, &self.time_format).map_err(|e| {
                err(
                    time.line,
                    lines,
                    "order_time",
                    format!(
                        "{:?} does not fit format {:?}: {e}",
                        time.value, self.time_format
                    ),
                )
            })?;
        let cashier = self
            .cashier
            .as_ref()
            .and_then(|f| self.find(f, r, &hits))
            .map(|f| f.value)
            .filter(|v| !v.is_empty());
        // The first line that any payment matches; on it, the first payment
        // in canonical order.
        let payment = (0..lines.len()).find_map(|i| {
            self.payment
                .iter()
                .find(|(_, res)| hits.any(i, res))
                .map(|(p, _)| *p)
        });

        let mut items = self.items(r, kind, &hits)?;
        let mut total = self.find_decimal(&self.total, r, &hits)?;
        let discount = self.find_decimal(&self.discount, r, &hits)?;
        let mut paid = self.find_decimal(&self.paid, r, &hits)?;

        if kind == Kind::Refund && self.refund_negative {
            for l in &mut items {
                l.qty = neg(l.qty);
                l.amount = neg(l.amount);
            }
            total = total.map(neg);
            paid = paid.map(neg);
        }
        // Absurd printed amounts must fail the receipt, not panic on overflow.
        let overflow = |field: &Option<Field>, name: &str| {
            err(
                field
                    .as_ref()
                    .and_then(|f| self.find(f, r, &hits))
                    .and_then(|found| found.line),
                lines,
                name,
                "the amounts add up past any real amount",
            )
        };
        let sum = items
            .iter()
            .try_fold(Decimal::ZERO, |a, l| a.checked_add(l.amount))
            .ok_or_else(|| overflow(&self.total, "total"))?;
        let total = total.unwrap_or(sum);
        // Refunds may print negative amounts: the discount is a size, positive.
        let discount = match (discount, paid) {
            (Some(d), _) => d,
            (None, Some(p)) => total.abs() - p.abs(),
            (None, None) => Decimal::new(0, total.scale()),
        };
        let paid = match paid {
            Some(p) => p,
            None if total.is_sign_negative() => total + discount.abs(),
            None => total
                .checked_sub(discount)
                .ok_or_else(|| overflow(&self.discount, "paid"))?,
        };

        if self.check_totals {
            let field_line = |f: &Option<Field>| {
                f.as_ref()
                    .and_then(|f| self.find(f, r, &hits))
                    .and_then(|found| found.line)
            };
            if sum != total && !(items.is_empty() && kind == Kind::Void) {
                return Err(err(
                    field_line(&self.total),
                    lines,
                    "total",
                    format!(
                        "{total} is not the sum of the {} item amounts ({sum}); is an item line \
                         not matched by template.items?",
                        items.len()
                    ),
                ));
            }
            if total.abs() - discount.abs() != paid.abs() {
                return Err(err(
                    field_line(&self.paid),
                    lines,
                    "paid",
                    format!("{paid} is not total {total} minus discount {discount}"),
                ));
            }
        }

        let order = Order {
            order_no: order_no.value,
            order_time,
            kind,
            cashier,
            payment,
            total,
            discount,
            paid,
            lines: items,
            source: None,
            shop: None,
            machine_id: None,
            video_start: None,
            video_end: None,
        };
        order
            .check()
            .map_err(|e| err(None, lines, &e.field, e.problem))?;
        Ok(Parsed::Order(Box::new(order)))
    }

    /// The item lines of the receipt.
    fn items(&self, r: &Receipt, kind: Kind, hits: &LineHits) -> Result<Vec<Line>, TemplateError> {
        let lines = &r.lines;
        let it = &self.items;
        let mut from = 0;
        let mut to = lines.len();
        if let Some(start) = it.start {
            match hits.first(0, &(start..start + 1)) {
                Some(i) => from = i + 1,
                None if kind == Kind::Void => return Ok(Vec::new()),
                None => return Err(err(None, lines, "items.start", "no line matches")),
            }
        }
        if let Some(end) = it.end {
            if let Some(i) = hits.first(from, &(end..end + 1)) {
                to = i;
            }
        }
        let strict = it.start.is_some() || it.end.is_some();
        let skipped = |i: usize| lines[i].trim().is_empty() || hits.any(i, &it.skip);
        let layout = it.lines.clone();
        // One set of capture slots per layout line, reused for every item.
        let mut locs: Vec<Slots> = layout.clone().map(|re| self.regexes.slots(re)).collect();
        let mut out = Vec::new();
        let mut i = from;
        while i < to {
            if skipped(i) {
                i += 1;
                continue;
            }
            // Try the layout at line i: its k-th regex on line i + k (run for
            // its captures only where the set says it matches).
            let mut failed = None;
            for (k, re) in layout.clone().enumerate() {
                let line = i + k;
                let matched = line < to
                    && hits.matches(line, re)
                    && self.regexes.captures(re, &lines[line], &mut locs[k]);
                if !matched {
                    failed = Some(k);
                    break;
                }
            }
            match failed {
                None => {
                    out.push(self.item(i, &locs, lines)?);
                    i += layout.len();
                }
                Some(k) if strict => {
                    let at = (i + k).min(to.saturating_sub(1));
                    let problem = if i + k >= to {
                        format!(
                            "the item starting at line {} is cut off by the end of the item \
                             region before items.lines[{k}]",
                            i + 1
                        )
                    } else if k == 0 {
                        "is in the item region but matches neither items.lines[0] nor \
                         items.skip"
                            .to_string()
                    } else {
                        format!(
                            "does not match items.lines[{k}] (the item starting at line {})",
                            i + 1
                        )
                    };
                    return Err(err(Some(at), lines, "items", problem));
                }
                Some(_) => i += 1,
            }
        }
        Ok(out)
    }

    /// The item whose layout starts at line `first`, from the captures of
    /// each of its lines.
    fn item(&self, first: usize, locs: &[Slots], lines: &[String]) -> Result<Line, TemplateError> {
        let get = |name: &str| -> Option<(usize, &str)> {
            let g = ITEM_GROUPS.iter().position(|n| *n == name)?;
            let (k, index) = self.items.groups[g]?;
            let (a, b) = locs[k].get(index)?;
            Some((first + k, lines[first + k][a..b].trim()))
        };
        let dec = |name: &str| -> Result<Option<Decimal>, TemplateError> {
            match get(name) {
                None => Ok(None),
                Some((i, v)) => decimal(v).map(Some).ok_or_else(|| {
                    err(
                        Some(i),
                        lines,
                        &format!("items.{name}"),
                        format!("{v:?} is not a decimal"),
                    )
                }),
            }
        };
        let first = Some(first);
        let code = match get("code") {
            Some((_, c)) if !c.is_empty() => c.to_string(),
            _ => return Err(err(first, lines, "items.code", "is empty")),
        };
        let qty = dec("qty")?.unwrap_or(Decimal::ONE);
        let price = dec("price")?;
        let amount = dec("amount")?;
        let (price, amount) = match (price, amount) {
            (Some(p), Some(a)) => (p, a),
            (Some(p), None) => match qty.checked_mul(p) {
                Some(a) => (p, a.round_dp(p.scale())),
                None => return Err(err(first, lines, "items.amount", "qty × price overflows")),
            },
            (None, Some(a)) if !qty.is_zero() => match a.checked_div(qty) {
                Some(p) => (p.round_dp(a.scale()), a),
                None => return Err(err(first, lines, "items.price", "amount ÷ qty overflows")),
            },
            _ => {
                return Err(err(
                    first,
                    lines,
                    "items.price",
                    "no price, and no amount and quantity to derive it from",
                ));
            }
        };
        let text = |name: &str| get(name).map(|(_, v)| v.to_string());
        Ok(Line {
            code,
            name: text("name").unwrap_or_default(),
            qty,
            price,
            amount,
            discount: dec("discount")?.unwrap_or(Decimal::ZERO),
            scan_time: None,
            batch_no: text("batch_no").filter(|v| !v.is_empty()),
            box_no: text("box_no").filter(|v| !v.is_empty()),
            attrs: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests;
