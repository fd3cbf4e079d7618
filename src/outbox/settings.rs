//! The outbox's settings (`[outbox]`): durability, the size cap, unparsed
//! receipts' share of it and retention, raw
//! and validated, with their validation.
//!
//! Invariant: validation records every problem under its `outbox.*` key and goes on
//! with the default, so that `check-config` reports all of them at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{Problems, fmt_duration, fmt_size, ser_duration};

/// `[outbox]` as written in the file (and as `check-config` prints it back).
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    pub synchronous: Option<String>,
    pub max_size: Option<String>,
    pub retention: Option<String>,
    pub raw_retention: Option<String>,
    pub unparsed_percent: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged order survives power loss.
    Full,
    /// fsync at WAL checkpoints only: faster on slow flash, but the last commits
    /// before a power cut can be lost (never corrupted).
    Normal,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxConfig {
    pub synchronous: Synchronous,
    /// Cap on the database file; at the cap new captures wait, nothing stored is dropped.
    pub max_size: u64,
    /// Delivered orders are deleted this long after their last delivery.
    #[serde(serialize_with = "ser_duration")]
    pub retention: Duration,
    /// Raw capture bytes (the journal) are kept this long.
    #[serde(serialize_with = "ser_duration")]
    pub raw_retention: Duration,
    /// The share of `max_size` (percent) the raw bytes of unparsed receipts may
    /// take; past it the oldest are dropped (counted) to make room.
    pub unparsed_percent: u8,
}

/// The default share of `max_size` unparsed receipts' raw bytes may take.
pub const DEFAULT_UNPARSED_PERCENT: u8 = 25;

impl OutboxConfig {
    /// Bytes of unparsed receipts' raw bytes the queue keeps at most.
    pub fn unparsed_max_bytes(&self) -> u64 {
        self.max_size
            .saturating_mul(u64::from(self.unparsed_percent))
            / 100
    }
}

impl OutboxConfig {
    /// The settings as the file writes them, every default filled in.
    pub fn raw(&self) -> RawOutbox {
        RawOutbox {
            synchronous: Some(
                match self.synchronous {
                    Synchronous::Full => "full",
                    Synchronous::Normal => "normal",
                }
                .into(),
            ),
            max_size: Some(fmt_size(self.max_size)),
            retention: Some(fmt_duration(self.retention)),
            raw_retention: Some(fmt_duration(self.raw_retention)),
            unparsed_percent: Some(u64::from(self.unparsed_percent)),
        }
    }
}

impl RawOutbox {
    /// Validates `[outbox]`, recording problems under `outbox.*`.
    pub fn validate(self, p: &mut Problems) -> OutboxConfig {
        let synchronous = match self.synchronous.as_deref() {
            None | Some("full") => Synchronous::Full,
            Some("normal") => Synchronous::Normal,
            Some(s) => {
                p.push(
                    "outbox.synchronous",
                    format!("must be full or normal, got {s:?}"),
                );
                Synchronous::Full
            }
        };
        let unparsed_percent = match self.unparsed_percent {
            None => DEFAULT_UNPARSED_PERCENT,
            Some(n @ 1..=50) => n as u8,
            Some(n) => {
                p.push(
                    "outbox.unparsed_percent",
                    format!("must be 1 to 50 (percent of max_size), got {n}"),
                );
                DEFAULT_UNPARSED_PERCENT
            }
        };
        let outbox = OutboxConfig {
            synchronous,
            unparsed_percent,
            max_size: p.size("outbox.max_size", self.max_size.as_deref(), 256 << 20),
            retention: p.duration(
                "outbox.retention",
                self.retention.as_deref(),
                Duration::from_secs(7 * 86400),
            ),
            raw_retention: p.duration(
                "outbox.raw_retention",
                self.raw_retention.as_deref(),
                Duration::from_secs(30 * 86400),
            ),
        };
        if outbox.max_size < 1 << 20 {
            p.push("outbox.max_size", "must be at least 1MiB");
        }
        outbox
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_too_small_cap() {
        let mut p = Problems::new();
        let o = RawOutbox::default().validate(&mut p);
        assert!(p.is_empty());
        assert_eq!(o.synchronous, Synchronous::Full);
        assert_eq!(o.max_size, 256 << 20);
        assert_eq!(o.retention, Duration::from_secs(7 * 86400));
        let raw = RawOutbox {
            max_size: Some("10".into()),
            ..RawOutbox::default()
        };
        raw.validate(&mut p);
        assert_eq!(p.into_vec(), ["outbox.max_size: must be at least 1MiB"]);
        assert_eq!(o.unparsed_percent, 25);
        assert_eq!(o.unparsed_max_bytes(), 64 << 20);
        for (n, ok) in [(0, false), (1, true), (50, true), (51, false)] {
            let mut p = Problems::new();
            let o = RawOutbox {
                unparsed_percent: Some(n),
                ..RawOutbox::default()
            }
            .validate(&mut p);
            assert_eq!(p.is_empty(), ok, "{n}");
            assert_eq!(o.raw().unparsed_percent, Some(if ok { n } else { 25 }));
        }
    }
}
