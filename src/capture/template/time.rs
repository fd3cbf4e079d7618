//! The order time as a receipt prints it: one field with a date and a time
//! (`order_time`), or a date and a time on separate lines (`order_date` +
//! `order_time`); seconds optional, the year optional.
//!
//! Invariants:
//! - A format is checked once, at template validation, on a sample: it must
//!   give back the date and the time to the minute. Seconds the receipt does
//!   not print are 0 (as the CSV reader does).
//! - A date printed without a year takes the year from the receipt's capture
//!   time: the year that puts the order at most [`AHEAD`] after the capture
//!   and nearest to it (a POS clock a little ahead of ours must not move a
//!   receipt back a year). A 29 February goes back to the last leap year.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime};

/// How far a printed time may lie after the capture time and still count as
/// this year (clocks of POS and agent differ, a receipt's time zone is local).
pub(super) const AHEAD: Duration = Duration::days(1);

/// A chrono format and whether it prints the year itself.
#[derive(Debug, Clone)]
pub(super) struct TimeFormat {
    pub(super) format: String,
    /// `format` with `%Y ` in front: how a year-less value is read.
    with_year: Option<String>,
}

/// What a template's formats read: a whole date and time, or a date and a
/// time of day from two fields.
#[derive(Debug, Clone)]
pub(super) enum TimeRule {
    DateTime(TimeFormat),
    Split { date: TimeFormat, time: String },
}

const SAMPLE_DATE: (i32, u32, u32) = (2026, 11, 22);

fn sample() -> NaiveDateTime {
    let (y, m, d) = SAMPLE_DATE;
    NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|d| d.and_hms_opt(21, 47, 0))
        .expect("a valid sample")
}

fn print(key: &str, t: &NaiveDateTime, format: &str) -> Result<String, String> {
    use std::fmt::Write;
    let mut s = String::new();
    write!(s, "{}", t.format(format))
        .map_err(|_| format!("{key}: {format:?} is not a valid chrono format"))?;
    Ok(s)
}

impl TimeFormat {
    /// Checks `format` on a sample: `full` = a date and a time to the
    /// minute, else a date alone.
    fn check(key: &str, format: &str, full: bool) -> Result<TimeFormat, String> {
        let t = sample();
        let printed = print(key, &t, format)?;
        let with_year = format!("%Y {format}");
        let read = |fmt: &str, s: &str| {
            if full {
                NaiveDateTime::parse_from_str(s, fmt).ok()
            } else {
                NaiveDate::parse_from_str(s, fmt)
                    .ok()
                    .map(|d| d.and_time(t.time()))
            }
        };
        if read(format, &printed) == Some(t) {
            return Ok(TimeFormat {
                format: format.to_string(),
                with_year: None,
            });
        }
        if read(&with_year, &format!("{} {printed}", t.year())) == Some(t) {
            return Ok(TimeFormat {
                format: format.to_string(),
                with_year: Some(with_year),
            });
        }
        Err(if full {
            format!(
                "{key}: {format:?} does not give a full date and time (needs month, day, hour \
                 and minute; year and seconds are optional)"
            )
        } else {
            format!("{key}: {format:?} does not give a date (needs month and day; year optional)")
        })
    }

    /// Reads `value` (a date and time if `full`, else a date at midnight);
    /// a year-less value gets the year nearest before `captured`.
    fn read(
        &self,
        value: &str,
        full: bool,
        captured: NaiveDateTime,
    ) -> Result<NaiveDateTime, String> {
        let one = |fmt: &str, s: &str| -> Result<NaiveDateTime, chrono::ParseError> {
            if full {
                NaiveDateTime::parse_from_str(s, fmt)
            } else {
                NaiveDate::parse_from_str(s, fmt).map(|d| d.and_time(NaiveTime::MIN))
            }
        };
        let Some(with_year) = &self.with_year else {
            return one(&self.format, value).map_err(|e| e.to_string());
        };
        // Nearest year first; 29 February may need up to 8 years back.
        let latest = captured + AHEAD;
        let mut first_err = None;
        for year in (latest.year() - 8..=latest.year()).rev() {
            match one(with_year, &format!("{year} {value}")) {
                Ok(t) if t <= latest => return Ok(t),
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.map_or_else(
            || "no year puts it before the capture".into(),
            |e| e.to_string(),
        ))
    }
}

impl TimeRule {
    /// `date_format` is Some when the template has an `order_date` field.
    pub(super) fn new(
        time_format: Option<&str>,
        date_format: Option<Option<&str>>,
    ) -> Result<TimeRule, String> {
        let time_key = "template.fields.order_time.format";
        match date_format {
            None => Ok(TimeRule::DateTime(TimeFormat::check(
                time_key,
                time_format.unwrap_or(crate::order::TIME_FORMAT),
                true,
            )?)),
            Some(date_format) => {
                let date = TimeFormat::check(
                    "template.fields.order_date.format",
                    date_format.unwrap_or("%Y-%m-%d"),
                    false,
                )?;
                let time = time_format.unwrap_or("%H:%M:%S");
                let t = sample().time();
                let printed = print(time_key, &sample(), time)?;
                if NaiveTime::parse_from_str(&printed, time).ok() != Some(t) {
                    return Err(format!(
                        "{time_key}: {time:?} does not give a time of day (needs hour and \
                         minute; seconds optional), as order_date holds the date"
                    ));
                }
                Ok(TimeRule::Split {
                    date,
                    time: time.to_string(),
                })
            }
        }
    }

    /// Whether reading needs the capture time (a date without its year).
    pub(super) fn needs_capture(&self) -> bool {
        match self {
            TimeRule::DateTime(f) => f.with_year.is_some(),
            TimeRule::Split { date, .. } => date.with_year.is_some(),
        }
    }

    /// The format that `order_time`'s value is read with, for messages.
    pub(super) fn time_format(&self) -> &str {
        match self {
            TimeRule::DateTime(f) => &f.format,
            TimeRule::Split { time, .. } => time,
        }
    }

    /// The whole order time (read with [`TimeRule::DateTime`]).
    pub(super) fn read_datetime(
        &self,
        value: &str,
        captured: NaiveDateTime,
    ) -> Result<NaiveDateTime, String> {
        match self {
            TimeRule::DateTime(f) => f.read(value, true, captured),
            // A split rule reads the date from order_date (read_split).
            TimeRule::Split { .. } => Err("the date is in order_date".into()),
        }
    }

    /// The date of a split rule; its year (if not printed) is chosen for the
    /// whole time (`time`), so that a receipt of 31 December 23:59 captured
    /// a minute later stays in its year.
    pub(super) fn read_split(
        &self,
        date_value: &str,
        time_value: &str,
        captured: NaiveDateTime,
    ) -> Result<NaiveDateTime, (bool, String)> {
        let TimeRule::Split { date, time } = self else {
            unreachable!("read_split on a DateTime rule")
        };
        let t = NaiveTime::parse_from_str(time_value, time).map_err(|e| (false, e.to_string()))?;
        // The year choice compares the whole time with the capture: shift
        // the capture by the time of day so that comparing midnights is the
        // same as comparing the date and time.
        let shifted = captured - (t - NaiveTime::MIN);
        let d = date
            .read(date_value, false, shifted)
            .map_err(|e| (true, e))?;
        Ok(d.date().and_time(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        crate::order::parse_time(s).unwrap()
    }

    #[test]
    fn formats_without_seconds_or_year_are_accepted_and_read() {
        let r = TimeRule::new(Some("%d.%m.%Y %H:%M"), None).unwrap();
        assert_eq!(
            r.read_datetime("22.11.2026 12:04", at("2027-01-01 00:00:00"))
                .unwrap(),
            at("2026-11-22 12:04:00")
        );
        let r = TimeRule::new(Some("%m/%d %H:%M"), None).unwrap();
        // Captured the same year, later.
        assert_eq!(
            r.read_datetime("11/22 12:04", at("2026-11-22 12:05:00"))
                .unwrap(),
            at("2026-11-22 12:04:00")
        );
        // Printed in December, captured (or re-parsed) in January: last year.
        assert_eq!(
            r.read_datetime("12/31 23:59", at("2027-01-01 00:01:00"))
                .unwrap(),
            at("2026-12-31 23:59:00")
        );
        // A POS clock a few minutes ahead of ours stays in this year.
        assert_eq!(
            r.read_datetime("01/01 00:03", at("2027-01-01 00:01:00"))
                .unwrap(),
            at("2027-01-01 00:03:00")
        );
        // 29 February goes back to the last leap year.
        assert_eq!(
            r.read_datetime("02/29 10:00", at("2027-03-01 00:00:00"))
                .unwrap(),
            at("2024-02-29 10:00:00")
        );
        assert!(
            r.read_datetime("13/40 10:00", at("2027-03-01 00:00:00"))
                .is_err()
        );
    }

    #[test]
    fn split_date_and_time() {
        let r = TimeRule::new(Some("%H:%M"), Some(Some("%m-%d"))).unwrap();
        assert_eq!(
            r.read_split("12-31", "23:59", at("2027-01-01 00:00:30"))
                .unwrap(),
            at("2026-12-31 23:59:00")
        );
        let r = TimeRule::new(None, Some(None)).unwrap();
        assert_eq!(
            r.read_split("2026-11-22", "12:04:33", at("2020-01-01 00:00:00"))
                .unwrap(),
            at("2026-11-22 12:04:33")
        );
        assert!(TimeRule::new(None, Some(Some("%H:%M"))).is_err());
        assert!(TimeRule::new(Some("%H"), None).is_err());
        assert!(TimeRule::new(Some("%d.%m.%Y %H"), None).is_err());
    }
}
