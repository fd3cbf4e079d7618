//! Metrics and health for a fleet: `/metrics` in the Prometheus text format and
//! `/health` on a small HTTP/1.1 endpoint (`server`), and the same exposition pushed
//! to a Pushgateway for boxes behind NAT (`push`).
//!
//! What is exposed comes from three places, one collector file each: the process
//! (`process`: /proc/self), the outbox (`outbox`, `sources`, `destinations`: the
//! `status` view, read at most once a second through a read-only connection), and
//! the daemon's live counters ([`registry`]: atomics the loops report into).
//!
//! Invariants:
//! - Capture and upload never wait for metrics: loops only touch atomics; the outbox
//!   is read on its own read-only connection (WAL: readers never block writers).
//! - Every label value is bounded: source and destination names from the config and
//!   the queue, fixed outcome classes, a fixed set of pause reasons.
//! - A failing scrape or push is logged and changes nothing else.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lifecycle::Heartbeats;
use crate::outbox::{Outbox, Status};

mod config;
mod destinations;
pub mod expo;
mod outbox;
pub mod process;
pub mod push;
pub mod registry;
pub mod server;
pub mod settings;
mod sources;

pub use registry::{DestMetrics, Registry, ReloadState, SharedRegistry, SourceMetrics};
pub use settings::{MetricsConfig, RawMetrics};

/// How long a read of the outbox serves scrapes.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// A loop whose heartbeat is older than this makes `/health` fail.
pub const STALE_AFTER: Duration = Duration::from_secs(90);

/// What the endpoint and the pusher read: fixed at start, shared by both.
pub struct Metrics {
    pub box_id: String,
    db: PathBuf,
    /// `outbox.max_size`.
    cap: u64,
    registry: SharedRegistry,
    beats: Option<Heartbeats>,
    reader: Mutex<Reader>,
}

#[derive(Default)]
struct Reader {
    conn: Option<Outbox>,
    last: Option<(Instant, Result<Snapshot, String>)>,
}

/// One read of the outbox.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: Status,
    /// Each source's last capture time (unix seconds), in `status.sources` order.
    pub last_capture: Vec<Option<i64>>,
}

impl Metrics {
    pub fn new(
        box_id: String,
        db: PathBuf,
        cap: u64,
        registry: SharedRegistry,
        beats: Option<Heartbeats>,
    ) -> Arc<Metrics> {
        Arc::new(Metrics {
            box_id,
            db,
            cap,
            registry,
            beats,
            reader: Mutex::new(Reader::default()),
        })
    }

    /// The whole exposition.
    pub fn render(&self) -> String {
        let snap = self.snapshot();
        let mut e = expo::Expo::new();
        e.family(
            "tillrelay_build_info",
            "gauge",
            "Always 1: the agent's version and the box it runs on.",
        );
        e.sample(
            "tillrelay_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("box_id", &self.box_id),
            ],
            1.0,
        );
        e.family(
            "tillrelay_box_info",
            "gauge",
            "Always 1: the box's id ([agent] box_id).",
        );
        e.sample("tillrelay_box_info", &[("box_id", &self.box_id)], 1.0);
        process::write(&mut e);
        outbox::write(&mut e, snap.as_ref(), self.cap);
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        config::write(&mut e, &reg.reload);
        if let Ok(s) = &snap {
            sources::write(&mut e, s, &reg);
            destinations::write(&mut e, s, &reg);
        }
        drop(reg);
        e.finish()
    }

    /// `/health`: `Ok` while capture and the outbox work, else a short reason.
    pub fn health(&self) -> Result<(), String> {
        let snap = self.snapshot()?;
        if snap.status.db_bytes >= self.cap.saturating_sub(self.cap / 100) {
            return Err(format!(
                "outbox full: {} of {} bytes",
                snap.status.db_bytes, self.cap
            ));
        }
        if let Some(b) = &self.beats {
            let stale = b.stale(STALE_AFTER);
            if !stale.is_empty() {
                return Err(format!("stuck loop(s): {}", stale.join(", ")));
            }
        }
        Ok(())
    }

    /// The outbox as last read, read again when older than [`CACHE_FOR`].
    fn snapshot(&self) -> Result<Snapshot, String> {
        let mut r = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, s)) = &r.last {
            if at.elapsed() < CACHE_FOR {
                return s.clone();
            }
        }
        let s = read(&mut r.conn, &self.db);
        if s.is_err() {
            // Reopen at the next read: the file may have been replaced or repaired.
            r.conn = None;
        }
        r.last = Some((Instant::now(), s.clone()));
        s
    }
}

fn read(conn: &mut Option<Outbox>, db: &std::path::Path) -> Result<Snapshot, String> {
    if conn.is_none() {
        *conn = Some(Outbox::open_read_only(db).map_err(|e| format!("outbox: {e}"))?);
    }
    let ob = conn.as_ref().expect("just opened");
    let status = ob
        .status(crate::outbox::now())
        .map_err(|e| format!("outbox: {e}"))?;
    let last_capture = status
        .sources
        .iter()
        .map(|s| ob.last_capture_at(&s.name))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("outbox: {e}"))?;
    Ok(Snapshot {
        status,
        last_capture,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::RawOutbox;
    use crate::settings::Problems;

    fn queue(dir: &std::path::Path) -> PathBuf {
        let db = dir.join("queue.db");
        let cfg = RawOutbox::default().validate(&mut Problems::new());
        Outbox::open(&db, &cfg, &["wdt".to_string()]).unwrap();
        db
    }

    #[test]
    fn health_fails_with_a_reason_when_the_queue_cannot_be_read_or_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Metrics::new(
            "b".into(),
            dir.path().join("none.db"),
            1 << 30,
            Registry::default().shared(),
            None,
        );
        let why = missing.health().unwrap_err();
        assert!(why.starts_with("outbox: "), "{why}");
        assert!(missing.render().contains("tillrelay_outbox_up 0\n"));

        let db = queue(dir.path());
        let ok = Metrics::new(
            "b".into(),
            db.clone(),
            1 << 30,
            Registry::default().shared(),
            None,
        );
        assert_eq!(ok.health(), Ok(()));
        let full = Metrics::new("b".into(), db, 4096, Registry::default().shared(), None);
        let why = full.health().unwrap_err();
        assert!(why.starts_with("outbox full: "), "{why}");
    }

    #[test]
    fn the_exposition_names_every_configured_source_and_destination() {
        let dir = tempfile::tempdir().unwrap();
        let db = queue(dir.path());
        let mut reg = Registry::default();
        reg.source("lane1");
        reg.dest("wdt").request(0, Duration::from_millis(20));
        reg.reload = ReloadState::started(1_700_000_000);
        reg.reload.record(false, 1_700_000_100);
        let text = Metrics::new("shop-1".into(), db, 1 << 30, reg.shared(), None).render();
        for line in [
            "tillrelay_box_info{box_id=\"shop-1\"} 1",
            "tillrelay_outbox_up 1",
            "tillrelay_source_orders_total{source=\"lane1\"} 0",
            "tillrelay_destination_pending_orders{destination=\"wdt\"} 0",
            "tillrelay_destination_requests_total{destination=\"wdt\",outcome=\"delivered\"} 1",
            "tillrelay_destination_request_duration_seconds_bucket{destination=\"wdt\",le=\"0.05\"} 1",
            "tillrelay_config_last_reload_successful 0",
            "tillrelay_config_last_reload_success_timestamp_seconds 1700000000",
            "tillrelay_config_reloads_total 1",
            "tillrelay_config_reload_failures_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    /// Issue #26: a source paused for one destination is named, with its reason
    /// class, and the destination itself is not shown paused.
    #[test]
    fn a_paused_source_is_named_apart_from_its_destination() {
        let dir = tempfile::tempdir().unwrap();
        let db = queue(dir.path());
        let cfg = RawOutbox::default().validate(&mut Problems::new());
        let mut ob = Outbox::open(&db, &cfg, &["wdt".to_string()]).unwrap();
        let why = "Wangdiantong status 100: 店铺编号不存在或已停用 (fix its shop_no)";
        ob.set_source_paused("wdt", "lane2", Some(why)).unwrap();
        let mut reg = Registry::default();
        reg.source("lane1");
        reg.dest("wdt");
        let text = Metrics::new("shop-1".into(), db, 1 << 30, reg.shared(), None).render();
        for line in [
            "tillrelay_source_paused{destination=\"wdt\",source=\"lane2\",reason=\"shop\"} 1",
            "tillrelay_destination_paused{destination=\"wdt\",reason=\"\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
