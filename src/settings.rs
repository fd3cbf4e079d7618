//! The vocabulary settings are written in, shared by every part that owns settings:
//! durations and sizes (read, and written back as the file writes them for
//! `check-config`), and a collector of problems that names each key.
//!
//! Settings flow down: [`crate::config`] reads the file and hands each part its raw
//! settings; the part validates them into this collector. This module is a leaf (it
//! imports nothing of the crate), so parts below `config` can use it without
//! importing `config`.
//!
//! Invariants:
//! - A problem is recorded, never returned early: validation goes on with a default
//!   so that one run reports every problem of the file.
//! - Every problem names its key (`source[lane1].settle`).

use std::time::Duration;

/// Collects problems so that one run reports all of them.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn new() -> Problems {
        Problems(Vec::new())
    }

    /// A problem with the value at `key`.
    pub fn push(&mut self, key: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{key}: {msg}"));
    }

    /// A problem whose message already names its key (the clouds' validation and the
    /// serial settings word their own).
    pub fn push_named(&mut self, msg: String) {
        self.0.push(msg);
    }

    /// The duration at `key`, or `default` when absent (or invalid, recorded).
    pub fn duration(&mut self, key: &str, v: Option<&str>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(s).unwrap_or_else(|e| {
                self.push(key, e);
                default
            }),
        }
    }

    /// The size at `key`, or `default` when absent (or invalid, recorded).
    pub fn size(&mut self, key: &str, v: Option<&str>, default: u64) -> u64 {
        match v {
            None => default,
            Some(s) => parse_size(s).unwrap_or_else(|e| {
                self.push(key, e);
                default
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// `"90s"`, `"5m"`, `"1h 30m"`, `"7d"`, `"500ms"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like 30s, 5m, 2h or 7d ({e})"))
}

/// `"16MB"`, `"256MiB"`, `"1G"`, `"4096"` (bytes). MB and MiB both mean 2^20 here:
/// the cap is a rough bound, and integrators write either.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 16MB or 1GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?} has an unknown unit (use B, KB, MB or GB)")),
    };
    Ok((n * mult as f64) as u64)
}

/// A duration as the config file writes it, and [`parse_duration`] reads back exactly:
/// `"30s"`, `"7d"`, `"1h 30m"`, `"500ms"`, `"0s"`.
pub fn fmt_duration(d: Duration) -> String {
    const UNITS: [(u128, &str); 7] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let mut left = d.as_nanos();
    let mut parts = Vec::new();
    for (size, unit) in UNITS {
        if left >= size {
            parts.push(format!("{}{unit}", left / size));
            left %= size;
        }
    }
    if parts.is_empty() {
        return "0s".into();
    }
    parts.join(" ")
}

/// A signed number of seconds as a duration (`"-45s"`, `"1m 30s"`).
pub fn fmt_signed_secs(secs: i64) -> String {
    let d = fmt_duration(Duration::from_secs(secs.unsigned_abs()));
    if secs < 0 { format!("-{d}") } else { d }
}

/// A size as the config file writes it, and [`parse_size`] reads back exactly: the
/// largest unit that divides it (`"256MB"`, `"512KB"`), else bytes (`"1000"`).
pub fn fmt_size(n: u64) -> String {
    for (shift, unit) in [(30, "GB"), (20, "MB"), (10, "KB")] {
        if n != 0 && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Prints a duration as `check-config` shows it (`1m 30s`).
pub fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&fmt_duration(*d))
}

/// `"+08:00"`, `"-05:30"`, `"UTC"`, `"Z"`.
pub fn parse_offset(s: &str) -> Result<chrono::FixedOffset, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return chrono::FixedOffset::east_opt(0).ok_or_else(|| "unreachable".into());
    }
    let bad = || format!("{s:?} is not a UTC offset like +08:00");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if h > 14 || m > 59 {
        return Err(bad());
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_key_and_fall_back_to_the_default() {
        let mut p = Problems::new();
        let d = p.duration("a.settle", Some("soon"), Duration::from_secs(2));
        assert_eq!(d, Duration::from_secs(2));
        let s = p.size("a.max", Some("lots"), 7);
        assert_eq!(s, 7);
        let v = p.into_vec();
        assert_eq!(v.len(), 2);
        assert!(v[0].starts_with("a.settle: \"soon\""), "{v:?}");
        assert!(v[1].starts_with("a.max: \"lots\""), "{v:?}");
    }

    #[test]
    fn durations_and_sizes_print_as_written_and_read_back() {
        for (d, text) in [
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(7 * 86400), "7d"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(fmt_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
        assert_eq!(fmt_signed_secs(-45), "-45s");
        for (n, text) in [
            (256 << 20, "256MB"),
            (1 << 30, "1GB"),
            (512 << 10, "512KB"),
            (1000, "1000"),
            (0, "0"),
        ] {
            assert_eq!(fmt_size(n), text);
            assert_eq!(parse_size(text), Ok(n));
        }
    }
}
