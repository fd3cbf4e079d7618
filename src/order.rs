//! The canonical order: the one shape an order has everywhere outside the code
//! (what `parse` prints, what a watched folder accepts as `.json`, what `orders`
//! shows and what the uploaders translate into the clouds' formats).
//!
//! Invariants:
//! - Money and quantities are [`Decimal`]s that keep the scale they were written
//!   with (`"0"` stays `"0"`, `"0.00"` stays `"0.00"`); no binary float ever holds one.
//! - Times are shop-local and naive, `YYYY-MM-DD HH:MM:SS` on the wire.
//! - The stamp fields (`source`, `shop`, `machine_id`, `video_*`) are absent until
//!   [`crate::stamp`] fills them; serialisation leaves them out while they are `None`,
//!   so an unstamped order prints exactly as the POS described it.
//! - [`to_stored_json`] is the same JSON without the fields that say nothing (a null,
//!   a line's empty `attrs`): it reads back as the same order.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Wire format of every time in the canonical order.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Amounts, prices and quantities must stay below this in magnitude (10^12): far
/// above any sale a till rings up, far below `Decimal`'s own limit (~7.9 × 10^28),
/// so that the sums and products the readers, templates and uploaders compute from
/// an accepted order can never overflow (which would panic).
pub const MAX_MAGNITUDE: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// What kind of transaction the POS closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Sale,
    /// Goods returned.
    Refund,
    /// Cancelled before payment.
    Void,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sale => "sale",
            Kind::Refund => "refund",
            Kind::Void => "void",
        }
    }
}

/// How the customer paid, as far as the POS says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Payment {
    Cash,
    Wechat,
    Alipay,
    Card,
    Other,
}

impl Payment {
    pub const ALL: [Payment; 5] = [
        Payment::Cash,
        Payment::Wechat,
        Payment::Alipay,
        Payment::Card,
        Payment::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Payment::Cash => "cash",
            Payment::Wechat => "wechat",
            Payment::Alipay => "alipay",
            Payment::Card => "card",
            Payment::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Payment> {
        Payment::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// One SKU attribute of a line (Ovopark `skus[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    pub key_id: i64,
    pub value: String,
}

/// One line item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Product code / SKU / barcode.
    pub code: String,
    pub name: String,
    /// Quantity or weight; negative only where the POS prints it so (refunds).
    pub qty: Decimal,
    /// Unit price.
    pub price: Decimal,
    /// What the line costs as printed: qty × price − line discount, rounded as the POS rounds.
    pub amount: Decimal,
    /// The line's own discount (positive).
    #[serde(default)]
    pub discount: Decimal,
    #[serde(default, with = "opt_time", skip_serializing_if = "stored_none")]
    pub scan_time: Option<NaiveDateTime>,
    #[serde(default, skip_serializing_if = "stored_none")]
    pub batch_no: Option<String>,
    #[serde(default, skip_serializing_if = "stored_none")]
    pub box_no: Option<String>,
    #[serde(default, skip_serializing_if = "stored_empty")]
    pub attrs: Vec<Attr>,
}

/// An item printed and then cancelled on the same receipt (a line void), with
/// the receipt line that cancelled it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoidedLine {
    /// Why: the cancelling line as printed (`STORNO`, `作废 …`).
    pub reason: String,
    /// The item as it was printed before it was cancelled.
    pub line: Line,
}

/// One closed order, as the POS described it, plus the stamp once applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_no: String,
    #[serde(with = "time")]
    pub order_time: NaiveDateTime,
    #[serde(default)]
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "stored_none")]
    pub cashier: Option<String>,
    #[serde(default, skip_serializing_if = "stored_none")]
    pub payment: Option<Payment>,
    /// Sum of line amounts before the order-level discount.
    pub total: Decimal,
    /// Order-level discount (positive).
    #[serde(default)]
    pub discount: Decimal,
    /// What the customer paid (total − discount), as printed.
    pub paid: Decimal,
    pub lines: Vec<Line>,
    /// Items cancelled on the receipt itself (line voids): not sold, so not in
    /// `lines` nor in the totals, and not sent to the clouds; kept with their
    /// reason for loss prevention. Left out when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voided: Vec<VoidedLine>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub video_start: Option<NaiveDateTime>,
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub video_end: Option<NaiveDateTime>,
    /// The till's UTC offset (`+09:00`): `order_time` and the video window are that
    /// zone's wall time. Stamped from `agent.timezone`; a destination that wants
    /// another zone's time (Wangdiantong: 东八区) converts with it. Orders stored
    /// before it existed have none and are read as UTC+8, as they were sent then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// The zone an order without one is taken to be in (what was assumed before orders
/// carried their zone): UTC+8.
pub const DEFAULT_ZONE_SECS: i32 = 8 * 3600;

impl Order {
    /// The till's zone of this order (seconds east of UTC): its `zone`, else
    /// [`DEFAULT_ZONE_SECS`].
    pub fn zone_secs(&self) -> i32 {
        self.zone
            .as_deref()
            .and_then(|z| z.parse::<chrono::FixedOffset>().ok())
            .map_or(DEFAULT_ZONE_SECS, |z| z.local_minus_utc())
    }

    /// `t`, a wall time of this order's till, as unix seconds.
    pub fn unix_of(&self, t: &NaiveDateTime) -> i64 {
        t.and_utc().timestamp() - i64::from(self.zone_secs())
    }
}

thread_local! {
    /// Set while [`to_stored_json`] serialises on this thread.
    static STORED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The order as the outbox stores it: the canonical JSON, in its field order, without
/// the fields that say nothing (a null; a line's empty `attrs`), ~50 bytes a line
/// that every order would write twice to the flash (issue #14). Reads back as the
/// same order: a missing field is its default.
pub fn to_stored_json(order: &Order) -> serde_json::Result<String> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            STORED.with(|s| s.set(false));
        }
    }
    STORED.with(|s| s.set(true));
    let _reset = Reset;
    serde_json::to_string(order)
}

fn stored_none<T>(v: &Option<T>) -> bool {
    v.is_none() && STORED.with(|s| s.get())
}

fn stored_empty<T>(v: &[T]) -> bool {
    v.is_empty() && STORED.with(|s| s.get())
}

/// Why an order is not acceptable as data. Names the field so that a person
/// can find it in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("order {order_no:?}: {field}: {problem}")]
pub struct OrderError {
    pub order_no: String,
    pub field: String,
    pub problem: String,
}

impl Order {
    /// Checks what every destination needs of an order, whatever its source:
    /// an identity and at least one line with a code.
    pub fn check(&self) -> Result<(), OrderError> {
        let err = |field: &str, problem: &str| OrderError {
            order_no: self.order_no.clone(),
            field: field.to_string(),
            problem: problem.to_string(),
        };
        if self.order_no.trim().is_empty() {
            return Err(err("order_no", "is empty"));
        }
        if self.order_no.chars().any(char::is_control) {
            return Err(err("order_no", "contains control characters"));
        }
        if self.lines.is_empty() && self.kind != Kind::Void {
            return Err(err("lines", "a sale or refund needs at least one line"));
        }
        for (i, line) in self.lines.iter().enumerate() {
            if line.code.trim().is_empty() {
                return Err(err(&format!("lines[{i}].code"), "is empty"));
            }
            for (name, v) in [
                ("qty", line.qty),
                ("price", line.price),
                ("amount", line.amount),
                ("discount", line.discount),
            ] {
                if v.abs() >= MAX_MAGNITUDE {
                    return Err(err(&format!("lines[{i}].{name}"), OUT_OF_RANGE));
                }
            }
            if line.scan_time.is_some_and(|t| !time_in_range(&t)) {
                return Err(err(&format!("lines[{i}].scan_time"), YEAR_OUT_OF_RANGE));
            }
        }
        for (name, v) in [
            ("total", self.total),
            ("discount", self.discount),
            ("paid", self.paid),
        ] {
            if v.abs() >= MAX_MAGNITUDE {
                return Err(err(name, OUT_OF_RANGE));
            }
        }
        for (name, t) in [
            ("order_time", Some(self.order_time)),
            ("video_start", self.video_start),
            ("video_end", self.video_end),
        ] {
            if t.is_some_and(|t| !time_in_range(&t)) {
                return Err(err(name, YEAR_OUT_OF_RANGE));
            }
        }
        Ok(())
    }

    /// What every reader checks before it accepts an order: [`Order::check`], then
    /// [`Order::check_consistency`].
    pub fn check_captured(&self) -> Result<(), OrderError> {
        self.check()?;
        self.check_consistency()
    }

    /// Checks that the order's own numbers agree, as the JSON and CSV readers do
    /// before they accept an order (the receipt template does the same, naming the
    /// printed line, unless its `check_totals = false`): an order that disagrees with
    /// itself is rejected at capture with the reason, never rewritten, so that what
    /// reaches a cloud is what the POS said.
    /// - The line amounts add up to `total` (a void without lines aside).
    /// - `|total| − |discount| = |paid|`, and `paid` has the sign of `total`: a
    ///   discount lowers what is paid, or what is paid back on a refund printed
    ///   negative (total −9.00, discount 0.50, paid −8.50).
    ///
    /// Exact at the printed scale: all are printed numbers, and decimal equality
    /// ignores trailing zeros (`7.00 = 7`). A line's own `qty × price − discount` is
    /// not held to its `amount` (the POS rounds weights and prices its own way; the
    /// amount as printed is what is sent; Wangdiantong gets the difference as
    /// `adjust_amount`). Call after [`Order::check`] (which bounds the magnitudes, so
    /// these sums cannot overflow).
    pub fn check_consistency(&self) -> Result<(), OrderError> {
        let err = |field: &str, problem: String| OrderError {
            order_no: self.order_no.clone(),
            field: field.to_string(),
            problem,
        };
        let sum: Decimal = self.lines.iter().map(|l| l.amount).sum();
        let void_without_lines = self.lines.is_empty() && self.kind == Kind::Void;
        if sum != self.total && !void_without_lines {
            return Err(err(
                "total",
                format!(
                    "is {}, but the {} line amount(s) add up to {sum}",
                    self.total,
                    self.lines.len()
                ),
            ));
        }
        let opposite = self.paid.is_sign_negative() != self.total.is_sign_negative()
            && !self.paid.is_zero()
            && !self.total.is_zero();
        if self.total.abs() - self.discount.abs() != self.paid.abs() || opposite {
            return Err(err(
                "paid",
                format!(
                    "is {}, but total {} less discount {} is {}",
                    self.paid,
                    self.total,
                    self.discount,
                    (self.total.abs() - self.discount.abs())
                        * if self.total.is_sign_negative() {
                            Decimal::NEGATIVE_ONE
                        } else {
                            Decimal::ONE
                        }
                ),
            ));
        }
        Ok(())
    }

    /// Earliest scan time of any line, the natural start of the video window.
    pub fn first_scan(&self) -> Option<NaiveDateTime> {
        self.lines.iter().filter_map(|l| l.scan_time).min()
    }
}

const OUT_OF_RANGE: &str = "is out of range (at most 12 digits before the decimal point)";
const YEAR_OUT_OF_RANGE: &str = "has a year outside 0001-9999";

/// A time the wire format can write (four-digit year). Also keeps the video
/// window's arithmetic (± minutes) far from the calendar's ends, where chrono
/// panics.
fn time_in_range(t: &NaiveDateTime) -> bool {
    (1..=9999).contains(&chrono::Datelike::year(t))
}

/// Parses a canonical time, `YYYY-MM-DD HH:MM:SS`.
pub fn parse_time(s: &str) -> Result<NaiveDateTime, chrono::ParseError> {
    NaiveDateTime::parse_from_str(s, TIME_FORMAT)
}

/// Formats a canonical time.
pub fn format_time(t: &NaiveDateTime) -> String {
    Canonical(t).to_string()
}

/// A time printed as [`TIME_FORMAT`] prints it, without parsing the format string for
/// each time (4 times per stored order: it showed in the folder's profile). Years
/// outside 0..=9999 and leap seconds are left to chrono.
struct Canonical<'a>(&'a NaiveDateTime);

impl std::fmt::Display for Canonical<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::{Datelike, Timelike};
        let t = self.0;
        if !(0..=9999).contains(&t.year()) || t.nanosecond() >= 1_000_000_000 {
            return write!(f, "{}", t.format(TIME_FORMAT));
        }
        let two = |n: u32| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        let y = t.year() as u32;
        let mut b = [0u8; 19];
        b[..2].copy_from_slice(&two(y / 100));
        b[2..4].copy_from_slice(&two(y % 100));
        b[4] = b'-';
        b[5..7].copy_from_slice(&two(t.month()));
        b[7] = b'-';
        b[8..10].copy_from_slice(&two(t.day()));
        b[10] = b' ';
        b[11..13].copy_from_slice(&two(t.hour()));
        b[13] = b':';
        b[14..16].copy_from_slice(&two(t.minute()));
        b[16] = b':';
        b[17..19].copy_from_slice(&two(t.second()));
        f.write_str(std::str::from_utf8(&b).map_err(|_| std::fmt::Error)?)
    }
}

mod time {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&super::Canonical(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_time(&s)
            .map_err(|e| D::Error::custom(format!("time {s:?} is not YYYY-MM-DD HH:MM:SS: {e}")))
    }
}

mod opt_time {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<NaiveDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::time::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDateTime>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::time")] NaiveDateTime);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "order_no": "2026112200013", "order_time": "2026-11-22 09:15:02", "kind": "sale",
      "cashier": "张三", "payment": "wechat", "total": "19.96", "discount": "0.96", "paid": "19.00",
      "lines": [{"code": "6901234567892", "name": "可口可乐500ml", "qty": "2", "price": "3.50",
                 "amount": "7.00", "discount": "0", "scan_time": null, "batch_no": null,
                 "box_no": null, "attrs": [{"key_id": 2, "value": "Sports"}]}]
    }"#;

    #[test]
    fn round_trip_keeps_decimal_scale_and_omits_missing_stamp() {
        let o: Order = serde_json::from_str(SAMPLE).unwrap();
        let back = serde_json::to_value(&o).unwrap();
        let orig: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(back, orig);
        assert_eq!(o.lines[0].discount.to_string(), "0");
        assert_eq!(o.paid.to_string(), "19.00");
    }

    #[test]
    fn bad_time_names_the_value() {
        let bad = SAMPLE.replace("2026-11-22 09:15:02", "22/11/2026");
        let e = serde_json::from_str::<Order>(&bad).unwrap_err().to_string();
        assert!(e.contains("22/11/2026"), "{e}");
    }

    #[test]
    fn check_rejects_empty_identity_and_codeless_lines() {
        let mut o: Order = serde_json::from_str(SAMPLE).unwrap();
        assert!(o.check().is_ok());
        o.lines[0].code = " ".into();
        assert_eq!(o.check().unwrap_err().field, "lines[0].code");
        o.order_no = String::new();
        assert_eq!(o.check().unwrap_err().field, "order_no");
    }

    #[test]
    fn check_rejects_amounts_and_years_no_destination_can_take() {
        let check = |edit: &dyn Fn(&mut Order), field: &str| {
            let mut o: Order = serde_json::from_str(SAMPLE).unwrap();
            edit(&mut o);
            let got = o.check().err().map(|e| e.field);
            assert_eq!(got.as_deref(), (!field.is_empty()).then_some(field));
        };
        let big = MAX_MAGNITUDE;
        let under = MAX_MAGNITUDE - Decimal::new(1, 2);
        check(&|_| {}, "");
        check(&|o| o.lines[0].amount = under, "");
        check(&|o| o.total = -under, "");
        check(&|o| o.lines[0].qty = big, "lines[0].qty");
        check(&|o| o.lines[0].price = -big, "lines[0].price");
        check(&|o| o.lines[0].amount = Decimal::MAX, "lines[0].amount");
        check(&|o| o.lines[0].discount = big, "lines[0].discount");
        check(&|o| o.total = big, "total");
        check(&|o| o.discount = Decimal::MIN, "discount");
        check(&|o| o.paid = big, "paid");
        let year = |y: i32| o_time(y);
        check(&|o| o.order_time = year(9999), "");
        check(&|o| o.order_time = year(1), "");
        check(&|o| o.order_time = year(10000), "order_time");
        check(&|o| o.order_time = year(0), "order_time");
        check(
            &|o| o.lines[0].scan_time = Some(year(262000)),
            "lines[0].scan_time",
        );
        check(&|o| o.video_end = Some(year(-5)), "video_end");
    }

    #[test]
    fn check_consistency_names_the_field_whose_number_disagrees() {
        let mut o: Order = serde_json::from_str(SAMPLE).unwrap();
        // SAMPLE's total is not its one line's amount.
        let e = o.check_consistency().unwrap_err();
        assert_eq!(
            (e.order_no.as_str(), e.field.as_str()),
            ("2026112200013", "total")
        );
        assert!(
            e.problem.contains("19.96") && e.problem.contains("7.00"),
            "{e}"
        );
        o.total = "7".parse().unwrap();
        let e = o.check_consistency().unwrap_err();
        assert_eq!(e.field, "paid");
        assert!(e.problem.contains("is 6.04"), "{e}");
        // A refund printed negative: the discount lowers what is paid back.
        let mut r = o.clone();
        r.kind = Kind::Refund;
        r.lines[0].amount = -r.lines[0].amount;
        r.total = "-7".parse().unwrap();
        r.paid = "-6.04".parse().unwrap();
        assert!(r.check_consistency().is_ok());
        r.paid = "6.04".parse().unwrap();
        assert_eq!(r.check_consistency().unwrap_err().field, "paid");
        o.discount = "0.00".parse().unwrap();
        o.paid = "7.000".parse().unwrap();
        assert!(o.check_consistency().is_ok(), "exact at any printed scale");
        // A deposit return: +10.00 and −1 × 0.50, paid 9.50.
        let mut back = o.lines[0].clone();
        o.lines[0].amount = "10.00".parse().unwrap();
        back.qty = "-1".parse().unwrap();
        back.price = "0.50".parse().unwrap();
        back.amount = "-0.50".parse().unwrap();
        o.lines.push(back);
        o.total = "9.50".parse().unwrap();
        o.paid = "9.50".parse().unwrap();
        assert!(o.check_consistency().is_ok());
        // The issue's case: total 100.00 over lines of 3.00.
        o.lines.truncate(1);
        o.lines[0].amount = "3.00".parse().unwrap();
        o.total = "100.00".parse().unwrap();
        o.paid = "100.00".parse().unwrap();
        let e = o.check_consistency().unwrap_err();
        assert_eq!(e.field, "total");
        assert!(
            e.problem.contains("100.00") && e.problem.contains("3.00"),
            "{e}"
        );
    }

    fn o_time(year: i32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(year, 6, 1)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
    }

    #[test]
    fn canonical_times_print_as_chrono_prints_them() {
        let times = [
            "2026-11-22 09:15:02",
            "0000-01-01 00:00:00",
            "0999-12-31 23:59:59",
            "9999-12-31 23:59:59",
            "2024-02-29 12:00:00",
        ];
        for s in times {
            let t = parse_time(s).unwrap();
            assert_eq!(format_time(&t), s);
            assert_eq!(format_time(&t), t.format(TIME_FORMAT).to_string());
        }
        let odd = [
            chrono::NaiveDate::from_ymd_opt(10000, 1, 1).unwrap(),
            chrono::NaiveDate::from_ymd_opt(-1, 6, 30).unwrap(),
            chrono::NaiveDate::from_ymd_opt(1, 1, 1).unwrap(),
        ];
        for d in odd {
            let t = d.and_hms_opt(7, 8, 9).unwrap();
            assert_eq!(format_time(&t), t.format(TIME_FORMAT).to_string(), "{t:?}");
        }
        // A leap second: chrono prints :60.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_milli_opt(23, 59, 59, 1500)
            .unwrap();
        assert_eq!(format_time(&leap), "2016-12-31 23:59:60");
        // Through serde as well.
        let mut o: Order = serde_json::from_str(SAMPLE).unwrap();
        o.order_time = leap;
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["order_time"], "2016-12-31 23:59:60");
    }
}
