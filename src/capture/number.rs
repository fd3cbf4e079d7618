//! How a source prints amounts: the decimal mark (`.` or `,`) and the
//! grouping character (thousands separator), set per source
//! (`template.decimal`/`template.grouping`, `csv.decimal`/`csv.grouping`), and
//! the one reader of printed amounts that receipts and CSV exports share.
//!
//! Invariants:
//! - An amount either fits the format exactly or is an error: never a guess.
//!   A grouping character is accepted only between groups of exactly three
//!   digits (`1,234,567.50`), so `17,50` under a decimal point with `,`
//!   grouping is an error, not 1750 — the 100× mistake a decimal-comma
//!   receipt would otherwise make silently.
//! - The scale is kept as printed (`17,50` → 17.50, `2` → 2).
//! - The decimal mark and the grouping character differ.

use rust_decimal::Decimal;

/// A source's number format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NumberFormat {
    /// `.` or `,`.
    pub decimal: char,
    /// `,` `.` `'` or ` ` (which also stands for the no-break spaces), or
    /// none: then no grouping is accepted.
    pub grouping: Option<char>,
}

impl NumberFormat {
    /// Decimal point, `,` grouping: what receipt templates read before the
    /// format was a setting (`1,234.50`).
    pub const POINT_COMMA: NumberFormat = NumberFormat {
        decimal: '.',
        grouping: Some(','),
    };
    /// Decimal point, no grouping: what the CSV reader read before the
    /// format was a setting.
    pub const POINT: NumberFormat = NumberFormat {
        decimal: '.',
        grouping: None,
    };

    /// Validates the `decimal` and `grouping` keys (`key` is their table,
    /// e.g. `template`); `default_grouping` applies with a decimal point, a
    /// decimal comma groups with `.` unless told otherwise.
    pub fn from_keys(
        key: &str,
        decimal: Option<&str>,
        grouping: Option<&str>,
        default_grouping: Option<char>,
    ) -> Result<NumberFormat, String> {
        let decimal = match decimal {
            None | Some(".") => '.',
            Some(",") => ',',
            Some(other) => {
                return Err(format!(
                    "{key}.decimal: must be \".\" or \",\", got {other:?}"
                ));
            }
        };
        let grouping = match grouping {
            None if decimal == '.' => default_grouping,
            None => Some('.'),
            Some("") => None,
            Some(g @ ("," | "." | "'" | " ")) => g.chars().next(),
            Some(other) => {
                return Err(format!(
                    "{key}.grouping: must be \",\", \".\", \"'\", \" \" or \"\" (none), got \
                     {other:?}"
                ));
            }
        };
        if grouping == Some(decimal) {
            return Err(format!(
                "{key}.grouping: {decimal:?} is the decimal mark; set another grouping \
                 character or \"\" (none)"
            ));
        }
        Ok(NumberFormat { decimal, grouping })
    }

    /// The `decimal` key as the file writes it.
    pub fn decimal_key(&self) -> String {
        self.decimal.to_string()
    }

    /// The `grouping` key as the file writes it (`""` for none).
    pub fn grouping_key(&self) -> String {
        self.grouping.map(String::from).unwrap_or_default()
    }

    /// Describes the format, for messages.
    pub fn describe(&self) -> String {
        match self.grouping {
            Some(g) => format!("decimal {:?}, grouping {g:?}", self.decimal),
            None => format!("decimal {:?}, no grouping", self.decimal),
        }
    }

    /// Reads a printed amount: an optional sign, digits (grouped in threes
    /// by the grouping character, or not at all), and an optional decimal
    /// mark with at least one digit after it. The error says why, for a
    /// message that names the line or column.
    pub fn parse(&self, s: &str) -> Result<Decimal, String> {
        let bad = |why: &str| {
            format!(
                "{s:?} does not fit the number format ({}): {why}",
                self.describe()
            )
        };
        let t = s.trim();
        let (negative, body) = match t.strip_prefix('-') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, t.strip_prefix('+').unwrap_or(t).trim_start()),
        };
        let (int, frac) = match body.split_once(self.decimal) {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        if let Some(f) = frac {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&format!(
                    "after the decimal mark {:?} only digits may follow",
                    self.decimal
                )));
            }
        }
        if int.is_empty() && frac.is_none() {
            return Err(bad("no digits"));
        }
        let mut digits = String::with_capacity(int.len() + 1 + frac.map_or(0, str::len));
        if negative {
            digits.push('-');
        }
        if int.bytes().all(|b| b.is_ascii_digit()) {
            digits.push_str(int);
        } else {
            let Some(g) = self.grouping else {
                return Err(bad("only digits may come before the decimal mark"));
            };
            let is_group = |c: char| c == g || (g == ' ' && (c == '\u{a0}' || c == '\u{202f}'));
            let mut groups = int.split(is_group);
            let first = groups.next().unwrap_or_default();
            let digits_only = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
            if !digits_only(first) || first.len() > 3 {
                return Err(bad(&format!(
                    "{g:?} groups must be three digits (1{g}234{}50)",
                    self.decimal
                )));
            }
            digits.push_str(first);
            for group in groups {
                if group.len() != 3 || !digits_only(group) {
                    return Err(bad(&format!(
                        "{g:?} groups must be three digits (1{g}234{}50)",
                        self.decimal
                    )));
                }
                digits.push_str(group);
            }
        }
        if let Some(f) = frac {
            if int.is_empty() {
                digits.push('0');
            }
            digits.push('.');
            digits.push_str(f);
        }
        digits
            .parse::<Decimal>()
            .map_err(|_| bad("more digits than an amount can hold"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(decimal: &str, grouping: Option<&str>) -> NumberFormat {
        NumberFormat::from_keys("t", Some(decimal), grouping, Some(',')).unwrap()
    }

    /// Each row: printed text → what it reads as (None: an error).
    fn check(f: NumberFormat, rows: &[(&str, Option<&str>)]) {
        for (text, want) in rows {
            let got = f.parse(text);
            match want {
                Some(w) => {
                    let got = got.unwrap_or_else(|e| panic!("{text:?} under {f:?}: {e}"));
                    // Same value and the printed scale.
                    assert_eq!(got.to_string(), *w, "{text:?} under {f:?}");
                }
                None => {
                    let e = got.expect_err(&format!("{text:?} under {f:?} must be an error"));
                    assert!(e.contains(&format!("{text:?}")), "{e}");
                }
            }
        }
    }

    #[test]
    fn decimal_point_with_comma_grouping_the_default() {
        let f = NumberFormat::from_keys("t", None, None, Some(',')).unwrap();
        assert_eq!(f, NumberFormat::POINT_COMMA);
        check(
            f,
            &[
                ("17.50", Some("17.50")),
                ("2", Some("2")),
                ("0.00", Some("0.00")),
                ("-59.90", Some("-59.90")),
                ("- 3.00", Some("-3.00")),
                (".5", Some("0.5")),
                ("1,234.50", Some("1234.50")),
                ("1,234,567", Some("1234567")),
                ("-1,234.50", Some("-1234.50")),
                // A decimal comma is never read as grouping.
                ("17,50", None),
                ("17,5", None),
                ("1.234,50", None),
                ("1,2", None),
                ("-3,00", None),
                ("12,34.50", None),
                ("1234,567", None),
                (",5", None),
                ("1.2.3", None),
                ("17.", None),
                ("abc", None),
                ("", None),
                ("-", None),
                ("1e5", None),
                ("99999999999999999999999999999999", None),
            ],
        );
    }

    #[test]
    fn decimal_comma_with_point_grouping() {
        let f = format(",", None);
        assert_eq!(f.grouping, Some('.'));
        check(
            f,
            &[
                ("17,50", Some("17.50")),
                ("17,5", Some("17.5")),
                ("1.234,50", Some("1234.50")),
                ("1,2", Some("1.2")),
                ("-3,00", Some("-3.00")),
                ("2", Some("2")),
                ("1.234.567,00", Some("1234567.00")),
                // A decimal point is never read as grouping either.
                ("17.50", None),
                ("1,234.50", None),
                ("1.23,5", None),
                ("1,2,3", None),
            ],
        );
    }

    #[test]
    fn other_groupings_and_none() {
        check(
            format(",", Some(" ")),
            &[
                ("1 234,50", Some("1234.50")),
                ("1\u{a0}234,50", Some("1234.50")),
                ("1.234,50", None),
            ],
        );
        check(
            format(".", Some("'")),
            &[("1'234.50", Some("1234.50")), ("1,234.50", None)],
        );
        check(
            format(".", Some("")),
            &[("1234.50", Some("1234.50")), ("1,234.50", None)],
        );
        check(
            format(",", Some("")),
            &[("1234,50", Some("1234.50")), ("1.234,50", None)],
        );
    }

    #[test]
    fn keys_are_validated_naming_the_key() {
        let e = NumberFormat::from_keys("template", Some(";"), None, None).unwrap_err();
        assert!(e.starts_with("template.decimal:"), "{e}");
        let e = NumberFormat::from_keys("template", Some(","), Some("_"), None).unwrap_err();
        assert!(e.starts_with("template.grouping:"), "{e}");
        let e = NumberFormat::from_keys("csv", Some(","), Some(","), None).unwrap_err();
        assert!(
            e.starts_with("csv.grouping:") && e.contains("decimal mark"),
            "{e}"
        );
        let f = NumberFormat::from_keys("t", Some(","), Some(""), None).unwrap();
        assert_eq!((f.decimal_key(), f.grouping_key()), (",".into(), "".into()));
    }
}
