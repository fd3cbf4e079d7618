//! The vocabulary settings are written in, shared by every part that owns settings:
//! durations, sizes, a collector of problems that names each key, and the serde
//! helpers `check-config` prints settings with.
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

/// Prints a duration as `check-config` shows it (`1m 30s`).
pub fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// Prints a value by its `Debug` form (settings with no JSON shape of their own).
pub fn ser_debug<S: serde::Serializer, T: std::fmt::Debug>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:?}"))
}

/// Prints a value by its `Display` form.
pub fn ser_display<S: serde::Serializer, T: std::fmt::Display>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
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
}
