//! Stamping: what an order needs beyond what the POS said, so that loss-prevention
//! staff can jump from it to its video.
//!
//! This module owns the settings stamping needs: a source's [`Identity`] (name, shop,
//! camera, video window) and the `[video]` window ([`Video`]), raw and validated.
//!
//! Invariants:
//! - Identity fields the input already has (`source`, `shop`, `machine_id`, a video
//!   window) are kept; only missing ones are filled from the capture source.
//! - The video window is start = (earliest line scan, else order time) − pre_roll and
//!   end = order time + post_roll, both shifted by the NVR−POS clock offset, so the
//!   window is in the camera's clock, not the till's.
//! - A validated window is bounded ([`MAX_VIDEO_SHIFT`]), so the date arithmetic of
//!   stamping cannot overflow.

use std::time::Duration;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use crate::order::Order;
use crate::settings::{Problems, fmt_duration, fmt_signed_secs, parse_duration, ser_duration};

/// `[video]` (or a source's `[source.video]`) as written in the file (and as
/// `check-config` prints it back).
#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawVideo {
    pub pre_roll: Option<String>,
    pub post_roll: Option<String>,
    pub clock_offset: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Video {
    #[serde(serialize_with = "ser_duration")]
    pub pre_roll: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub post_roll: Duration,
    /// NVR clock minus POS clock, in seconds (may be negative).
    pub clock_offset_secs: i64,
}

impl Default for Video {
    /// The documented defaults: a minute before the order, half a minute after.
    fn default() -> Video {
        Video {
            pre_roll: Duration::from_secs(60),
            post_roll: Duration::from_secs(30),
            clock_offset_secs: 0,
        }
    }
}

impl Video {
    /// The window as the file writes it, every key filled in.
    pub fn raw(&self) -> RawVideo {
        RawVideo {
            pre_roll: Some(fmt_duration(self.pre_roll)),
            post_roll: Some(fmt_duration(self.post_roll)),
            clock_offset: Some(fmt_signed_secs(self.clock_offset_secs)),
        }
    }
}

/// The largest pre/post roll or NVR clock offset accepted. Beyond it the value is a
/// typo (a window of days finds no order's video) and, unbounded, the date arithmetic
/// of stamping could overflow.
pub const MAX_VIDEO_SHIFT: Duration = Duration::from_secs(24 * 3600);

impl RawVideo {
    /// Validates a video window under `key` (`video`, `source[lane1].video`); keys
    /// left out take their value from `base` (the `[video]` defaults for a source).
    pub fn validate(&self, p: &mut Problems, key: &str, base: &Video) -> Video {
        let d = base;
        let clock_offset_secs = match self.clock_offset.as_deref() {
            None => d.clock_offset_secs,
            Some(s) => {
                let (neg, body) = match s.trim().strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, s.trim().trim_start_matches('+')),
                };
                match parse_duration(body) {
                    Ok(v) => {
                        let secs = v.as_secs() as i64;
                        if neg { -secs } else { secs }
                    }
                    Err(e) => {
                        p.push(&format!("{key}.clock_offset"), e);
                        0
                    }
                }
            }
        };
        let pre_roll = p.duration(
            &format!("{key}.pre_roll"),
            self.pre_roll.as_deref(),
            d.pre_roll,
        );
        let post_roll = p.duration(
            &format!("{key}.post_roll"),
            self.post_roll.as_deref(),
            d.post_roll,
        );
        let mut bounded = |name: &str, v: Duration, default: Duration| {
            if v > MAX_VIDEO_SHIFT {
                p.push(
                    &format!("{key}.{name}"),
                    "must be at most 24h (a video window is minutes around one order)",
                );
                default
            } else {
                v
            }
        };
        let pre_roll = bounded("pre_roll", pre_roll, d.pre_roll);
        let post_roll = bounded("post_roll", post_roll, d.post_roll);
        let clock_offset_secs = if clock_offset_secs.unsigned_abs() > MAX_VIDEO_SHIFT.as_secs() {
            p.push(
                &format!("{key}.clock_offset"),
                "must be within ±24h (set the NVR's clock if it is off by more)",
            );
            d.clock_offset_secs
        } else {
            clock_offset_secs
        };
        Video {
            pre_roll,
            post_roll,
            clock_offset_secs,
        }
    }
}

/// Who captured an order: what stamping fills in from the capture source.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The source's name, unique in the config (also the `source` of its orders).
    pub name: String,
    pub shop: String,
    /// The camera/NVR device id used for video traceback.
    pub machine_id: String,
    pub video: Video,
    /// The till's zone (`agent.timezone`): stamped on each order, so a destination
    /// that wants another zone's times can convert them.
    pub zone: chrono::FixedOffset,
}

impl Identity {
    /// The key this source's settings are named by in problems: `source[lane1]`.
    pub fn key(&self) -> String {
        source_key(&self.name)
    }
}

fn source_key(name: &str) -> String {
    format!("source[{name}]")
}

/// A source's identity keys as written in its `[[source]]` table.
#[derive(Debug, Default, Clone)]
pub struct RawIdentity {
    pub name: Option<String>,
    pub shop: Option<String>,
    pub machine_id: Option<String>,
    /// Per-source overrides of `[video]`.
    pub video: Option<RawVideo>,
    /// The tills' zone of this source when it differs from `agent.timezone`.
    pub timezone: Option<String>,
}

/// The zone of a source's tills when none is given (`agent.timezone`'s default).
pub fn default_zone() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(crate::order::DEFAULT_ZONE_SECS).expect("UTC+8 is in range")
}

impl RawIdentity {
    /// Validates a source's identity. `key` names the source by its place
    /// (`source[3]`) until its name is known, then problems are named by the name
    /// (`source[lane1].shop`). None when the name is missing or unusable: the rest of
    /// the source cannot be named then.
    /// `zone`: the tills' zone (`agent.timezone`).
    pub fn validate(
        self,
        p: &mut Problems,
        key: &str,
        video: &Video,
        zone: chrono::FixedOffset,
    ) -> Option<Identity> {
        let name = match self.name {
            Some(n) if valid_name(&n) => n,
            Some(n) => {
                p.push(
                    &format!("{key}.name"),
                    format!("{n:?} must be 1-64 letters, digits, '-', '_' or '.'"),
                );
                return None;
            }
            None => {
                p.push(&format!("{key}.name"), "is required");
                return None;
            }
        };
        let key = source_key(&name);
        let shop = self.shop.unwrap_or_default();
        if shop.trim().is_empty() {
            p.push(
                &format!("{key}.shop"),
                "is required (the shop this lane belongs to)",
            );
        }
        let machine_id = self.machine_id.unwrap_or_default();
        if machine_id.trim().is_empty() {
            p.push(
                &format!("{key}.machine_id"),
                "is required (the camera/NVR device id used for video traceback)",
            );
        }
        let video = match &self.video {
            Some(v) => v.validate(p, &format!("{key}.video"), video),
            None => video.clone(),
        };
        let zone = match self.timezone.as_deref() {
            None => zone,
            Some(z) => crate::settings::parse_offset(z).unwrap_or_else(|e| {
                p.push(&format!("{key}.timezone"), e);
                zone
            }),
        };
        Some(Identity {
            name,
            shop,
            machine_id,
            video,
            zone,
        })
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Fills the stamp of `order` from its capture source.
pub fn stamp(order: &mut Order, source: &Identity) {
    if order.source.is_none() {
        order.source = Some(source.name.clone());
    }
    if order.shop.is_none() {
        order.shop = Some(source.shop.clone());
    }
    if order.machine_id.is_none() {
        order.machine_id = Some(source.machine_id.clone());
    }
    if order.zone.is_none() {
        order.zone = Some(source.zone.to_string());
    }
    if order.video_start.is_none() || order.video_end.is_none() {
        let v = &source.video;
        let shift = TimeDelta::seconds(v.clock_offset_secs);
        let pre = TimeDelta::from_std(v.pre_roll).unwrap_or(TimeDelta::zero());
        let post = TimeDelta::from_std(v.post_roll).unwrap_or(TimeDelta::zero());
        // A scan stamped after the close (a POS clock quirk) must not start the
        // window late: the window always covers the close.
        let first = order
            .first_scan()
            .map_or(order.order_time, |s| s.min(order.order_time));
        order.video_start = Some(first - pre + shift);
        order.video_end = Some(order.order_time + post + shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{format_time, parse_time};

    /// Source lane1's identity under `extra` (a `[video]` table or nothing), as
    /// config makes it.
    fn source(extra: &str) -> Identity {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            video: RawVideo,
        }
        let file: File = toml::from_str(extra).unwrap();
        let mut p = Problems::new();
        let video = file.video.validate(&mut p, "video", &Video::default());
        let raw = RawIdentity {
            name: Some("lane1".into()),
            shop: Some("D001".into()),
            machine_id: Some("NVR01-CH03".into()),
            video: None,
            timezone: None,
        };
        let id = raw
            .validate(&mut p, "source[0]", &video, default_zone())
            .unwrap();
        assert!(p.is_empty(), "{:?}", p.into_vec());
        id
    }

    fn order(scans: &[Option<&str>]) -> Order {
        let lines: Vec<_> = scans
            .iter()
            .map(|s| {
                serde_json::json!({"code": "1", "name": "n", "qty": "1", "price": "1",
                                        "amount": "1", "scan_time": s})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "order_no": "1", "order_time": "2026-11-22 09:15:02", "total": "1", "paid": "1",
            "lines": lines }))
        .unwrap()
    }

    fn check(extra: &str, scans: &[Option<&str>], start: &str, end: &str) {
        let mut o = order(scans);
        stamp(&mut o, &source(extra));
        assert_eq!(format_time(&o.video_start.unwrap()), start, "start");
        assert_eq!(format_time(&o.video_end.unwrap()), end, "end");
        assert_eq!(o.machine_id.as_deref(), Some("NVR01-CH03"));
        assert_eq!(o.source.as_deref(), Some("lane1"));
    }

    #[test]
    fn windows() {
        // the design's example: orderTime 09:15:02, 60 s before, 30 s after
        check("", &[None], "2026-11-22 09:14:02", "2026-11-22 09:15:32");
        // earliest scan opens the window
        check(
            "",
            &[Some("2026-11-22 09:13:40"), Some("2026-11-22 09:12:10")],
            "2026-11-22 09:11:10",
            "2026-11-22 09:15:32",
        );
        // NVR clock 2 min behind the till, shorter rolls
        check(
            "[video]\npre_roll = \"10s\"\npost_roll = \"5s\"\nclock_offset = \"-2m\"",
            &[None],
            "2026-11-22 09:12:52",
            "2026-11-22 09:13:07",
        );
        // a scan after the close does not shrink the window below the close
        check(
            "",
            &[Some("2026-11-22 09:20:00")],
            "2026-11-22 09:14:02",
            "2026-11-22 09:15:32",
        );
    }

    #[test]
    fn input_identity_is_kept() {
        let mut o = order(&[None]);
        o.machine_id = Some("CAM-9".into());
        o.video_start = Some(parse_time("2026-11-22 09:00:00").unwrap());
        o.video_end = Some(parse_time("2026-11-22 09:20:00").unwrap());
        stamp(&mut o, &source(""));
        assert_eq!(o.machine_id.as_deref(), Some("CAM-9"));
        assert_eq!(format_time(&o.video_start.unwrap()), "2026-11-22 09:00:00");
        assert_eq!(o.shop.as_deref(), Some("D001"));
    }

    /// Issue #26: every order carries its till's zone (`agent.timezone`, or the
    /// source's own `timezone`), unless it came with one.
    #[test]
    fn the_tills_zone_is_stamped() {
        let mut o = order(&[None]);
        stamp(&mut o, &source(""));
        assert_eq!(o.zone.as_deref(), Some("+08:00"));
        assert_eq!(o.zone_secs(), 8 * 3600);
        let mut p = Problems::new();
        let raw = RawIdentity {
            name: Some("tokyo".into()),
            shop: Some("D001".into()),
            machine_id: Some("NVR01-CH03".into()),
            video: None,
            timezone: Some("+09:00".into()),
        };
        let id = raw
            .validate(&mut p, "source[0]", &Video::default(), default_zone())
            .unwrap();
        let mut o = order(&[None]);
        stamp(&mut o, &id);
        assert_eq!(o.zone.as_deref(), Some("+09:00"));
        let mut kept = order(&[None]);
        kept.zone = Some("-05:00".into());
        stamp(&mut kept, &id);
        assert_eq!(kept.zone.as_deref(), Some("-05:00"));
        assert_eq!(kept.zone_secs(), -5 * 3600);
        let bad = RawIdentity {
            name: Some("x".into()),
            shop: Some("D001".into()),
            machine_id: Some("M".into()),
            video: None,
            timezone: Some("JST".into()),
        };
        let mut p = Problems::new();
        let _ = bad.validate(&mut p, "source[0]", &Video::default(), default_zone());
        assert!(format!("{p:?}").contains("source[x].timezone"), "{p:?}");
    }
}
