//! Stamping: what an order needs beyond what the POS said, so that loss-prevention
//! staff can jump from it to its video.
//!
//! Invariants:
//! - Identity fields the input already has (`source`, `shop`, `machine_id`, a video
//!   window) are kept; only missing ones are filled from the capture source.
//! - The video window is start = (earliest line scan, else order time) − pre_roll and
//!   end = order time + post_roll, both shifted by the NVR−POS clock offset, so the
//!   window is in the camera's clock, not the till's.

use chrono::TimeDelta;

use crate::config::Source;
use crate::order::Order;

/// Fills the stamp of `order` from its capture source.
pub fn stamp(order: &mut Order, source: &Source) {
    if order.source.is_none() {
        order.source = Some(source.name.clone());
    }
    if order.shop.is_none() {
        order.shop = Some(source.shop.clone());
    }
    if order.machine_id.is_none() {
        order.machine_id = Some(source.machine_id.clone());
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
    use crate::config::{Config, SourceKind};
    use crate::order::{format_time, parse_time};
    use std::path::Path;

    fn source(extra: &str) -> Source {
        let text = format!(
            "{extra}\n[[source]]\nname = \"lane1\"\nkind = \"folder\"\npath = \"/x\"\nshop = \"D001\"\nmachine_id = \"NVR01-CH03\"\n"
        );
        let c = Config::from_toml(&text, Path::new("/t.toml")).unwrap();
        let s = c.sources[0].clone();
        assert!(matches!(s.kind, SourceKind::Folder(_)));
        s
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
}
