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
//!    silently drops an item. `items.optional` lines (a second name line, a
//!    modifier adding to the price, a discount line, a serial number) may come
//!    between or after an item's own lines, any number of times.
//!    An `items.void_line` line cancels the item just
//!    before it (a line void): that item moves to the order's `voided` with
//!    the line as its reason, out of `lines` and the totals.
//! 8. Amounts that the receipt does not print are derived: `total` = Σ line
//!    amounts, `discount` = `total − paid` (or zero), `paid` = `total −
//!    discount`; `qty` defaults to 1; a line's `amount` is after its own
//!    `discount`, so a missing one is `qty × price − discount` (and a missing
//!    `price` is `(amount + discount) ÷ qty`).
//! 9. Refunds: by default amounts are kept as printed (a POS that prints `-1`
//!    and `-59.90` gives exactly that); `refund_sign = "negative"` forces
//!    `qty`, `amount`, `total` and `paid` negative for POS that print refunds
//!    with positive numbers.
//! 10. `check_totals` (default true): Σ line amounts must equal `total` and
//!     `total − discount` must equal `paid`, else the receipt fails on that
//!     field — the usual sign of an item line the template missed.
//!
//! Invariants: amounts are read with the template's number format
//! (`decimal`, `grouping`: [`super::number`]) and one that does not fit it
//! fails the receipt naming its line, never guessed; decimals keep the scale
//! they were printed with; a parse failure
//! is a [`TemplateError`] naming the receipt line (1-based), its text, and the
//! field, so the receipt stays unparsed in the journal until a fixed template
//! is re-run over it (`tillrelay reparse`).

use std::fmt;

use std::ops::Range;

use chrono::NaiveDateTime;
use regex::{CaptureLocations, Regex, RegexSet, RegexSetBuilder};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::mask::Masker;
use super::number::NumberFormat;
use super::segment::Receipt;
use crate::order::{Kind, Line, Order, Payment, VoidedLine};

mod fields;
mod items;
mod lines;
mod optional;
mod rules;
mod time;

use fields::{err, neg};
use lines::{LineHits, LineRegexes, Slots};
use rules::{Field, ITEM_GROUPS, Items, OPTIONAL_GROUPS, Source, compile};
use time::TimeRule;

/// `[source.template]` as written in the config (and as `check-config` prints it
/// back).
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// The decimal mark amounts are printed with: `"."` (default) or `","`.
    #[serde(default)]
    pub decimal: Option<String>,
    /// The grouping (thousands) character: `","` (default with `decimal =
    /// "."`), `"."` (default with `decimal = ","`), `"'"`, `" "`, or `""`.
    #[serde(default)]
    pub grouping: Option<String>,
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFields {
    pub order_no: RawField,
    pub order_time: RawField,
    /// The date, when the receipt prints it apart from the time; then
    /// `order_time` is a time of day.
    #[serde(default)]
    pub order_date: Option<RawField>,
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
    /// chrono format, for `order_time` (default `%Y-%m-%d %H:%M:%S`, or
    /// `%H:%M:%S` with `order_date`) and `order_date` (default `%Y-%m-%d`).
    pub format: Option<String>,
}

/// Printed as it is usually written: a plain regex string unless `from` or
/// `format` is set.
impl Serialize for RawField {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.from.is_none() && self.format.is_none() {
            return s.serialize_str(&self.regex);
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("regex", &self.regex)?;
        if let Some(f) = &self.from {
            m.serialize_entry("from", f)?;
        }
        if let Some(f) = &self.format {
            m.serialize_entry("format", f)?;
        }
        m.end()
    }
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

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Regexes of lines an item may have besides its `lines`, each any number
    /// of times: between its own lines or after them, tried before the next
    /// item's first line. Named groups `name` (a further name line),
    /// `modifier` + `add` (added to the name, the price and the amount),
    /// `discount` (taken off the amount), `batch_no`, `box_no`.
    #[serde(default)]
    pub optional: Vec<String>,
    /// Regexes of a line that cancels the item printed just before it (a line
    /// void: `^STORNO`, `^作废`): the item leaves the order's lines and totals
    /// and is kept in `voided` with this line as its reason.
    #[serde(default)]
    pub void_line: Vec<String>,
    /// A line with negative quantity and amount that exactly undoes an earlier
    /// line of the same code cancels it (both leave the lines; the earlier one
    /// is kept in `voided`). Not on refunds. Default false.
    #[serde(default)]
    pub void_negative: Option<bool>,
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
    number: NumberFormat,
    masker: Masker,
    order_no: Field,
    order_time: Field,
    order_date: Option<Field>,
    time: TimeRule,
    cashier: Option<Field>,
    total: Option<Field>,
    discount: Option<Field>,
    paid: Option<Field>,
    payment: Vec<(Payment, Range<usize>)>,
    items: Items,
    /// What it was made from, defaults filled in, for `check-config`.
    raw: RawTemplate,
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

impl Template {
    /// The template as the file writes it (the defaults of `refund_sign`,
    /// `check_totals` and `mask_cards` filled in).
    pub fn raw(&self) -> &RawTemplate {
        &self.raw
    }

    /// With `check_totals = false`, why an order this template made has
    /// numbers that do not add up: it is stored as printed, and the capture
    /// says so (a warning per order) rather than storing it silently. None
    /// when they agree, or when the template checks them itself.
    pub fn unchecked_totals(&self, o: &Order) -> Option<String> {
        if self.check_totals {
            return None;
        }
        let e = o.check_consistency().err()?;
        Some(format!(
            "order {}: {}: {}; stored as printed because template.check_totals = false \
             (the clouds refuse an order whose numbers disagree)",
            o.order_no, e.field, e.problem
        ))
    }

    /// The masking this template asks for; applied to receipts before storage
    /// (see [`super::receipt::Pipeline`]), not by [`Template::parse`].
    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Turns one receipt into an order, a reprint, or not-an-order; a date
    /// printed without its year is placed by the local time now.
    pub fn parse(&self, r: &Receipt) -> Result<Parsed, TemplateError> {
        self.parse_with(r, None)
    }

    /// [`Template::parse`] for a receipt captured at `captured` (local time):
    /// a date printed without its year gets the year that puts it nearest
    /// before the capture (see the `time` module).
    pub fn parse_at(&self, r: &Receipt, captured: NaiveDateTime) -> Result<Parsed, TemplateError> {
        self.parse_with(r, Some(captured))
    }

    fn parse_with(
        &self,
        r: &Receipt,
        captured: Option<NaiveDateTime>,
    ) -> Result<Parsed, TemplateError> {
        // The clock is read only for a template whose dates lack the year
        // (no time-zone lookup per receipt otherwise).
        let captured = captured
            .or_else(|| {
                self.time
                    .needs_capture()
                    .then(|| chrono::Local::now().naive_local())
            })
            .unwrap_or_default();
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
        let order_time = match &self.order_date {
            None => self
                .time
                .read_datetime(&time.value, captured)
                .map_err(|e| {
                    err(
                        time.line,
                        lines,
                        "order_time",
                        format!(
                            "{:?} does not fit format {:?}: {e}",
                            time.value,
                            self.time.time_format()
                        ),
                    )
                })?,
            Some(date_field) => {
                let date = self
                    .find(date_field, r, &hits)
                    .ok_or_else(|| err(None, lines, "order_date", "no line matches"))?;
                self.time
                    .read_split(&date.value, &time.value, captured)
                    .map_err(|(is_date, e)| {
                        let (found, key) = if is_date {
                            (&date, "order_date")
                        } else {
                            (&time, "order_time")
                        };
                        err(
                            found.line,
                            lines,
                            key,
                            format!("{:?} does not fit its format: {e}", found.value),
                        )
                    })?
            }
        };
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

        let items::ItemsRead {
            lines: mut items,
            voided,
            computed,
        } = self.items(r, kind, &hits)?;
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
                    if computed.is_empty() {
                        format!(
                            "{total} is not the sum of the {} item amounts ({sum}); is an item \
                             line not matched by template.items?",
                            items.len()
                        )
                    } else {
                        format!(
                            "{total} is not the sum of the {} item amounts ({sum}), of which \
                             {} computed (not printed, or changed by items.optional lines): \
                             {}; is a price, \
                             quantity or discount read wrongly, or an item line not matched \
                             by template.items?",
                            items.len(),
                            computed.len(),
                            computed.join(", ")
                        )
                    },
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
            voided,
            source: None,
            shop: None,
            machine_id: None,
            video_start: None,
            video_end: None,
            zone: None,
        };
        // (Its totals were checked above, naming the printed line, unless the
        // template's `check_totals = false` carries them as printed.)
        order
            .check()
            .map_err(|e| err(None, lines, &e.field, e.problem))?;
        Ok(Parsed::Order(Box::new(order)))
    }
}

#[cfg(test)]
mod tests;
