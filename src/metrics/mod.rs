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
//! - A scrape never waits for the queue's length: a read that cost more than 10 ms is
//!   kept for 100 times its cost (at most 5 min) and then done again on a thread of
//!   its own while scrapes are served the last one (`Metrics::snapshot`).
//! - Every label value is bounded: source and destination names from the config and
//!   the queue, fixed outcome classes, a fixed set of pause reasons.
//! - A failing scrape or push is logged and changes nothing else.

use std::path::{Path, PathBuf};
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

pub use registry::{
    DestMetrics, PullState, Registry, ReloadState, Running, SharedRegistry, SourceMetrics,
};
pub use settings::{MetricsConfig, RawMetrics};

/// How long a read of the outbox serves scrapes, at least.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// A read that took longer than this is done again on a thread of its own, the
/// scrapes meanwhile served the last one: a scrape never waits for a long queue.
const READ_IN_BACKGROUND_FROM: Duration = Duration::from_millis(10);
/// A read serves scrapes for at least this many times what it cost, so reading the
/// queue takes at most 1/100 of a core whatever its length (with 50,000 orders
/// pending a read costs ~0.3 s on x86-64: read again after 30 s at most)…
const COST_FACTOR: u32 = 100;
/// …and is never older than this (when a read costs 3 s or more).
const CACHE_AT_MOST: Duration = Duration::from_secs(300);

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
    reader: Arc<Mutex<Reader>>,
    /// The pusher's own figures (pushes tried and failed), when it runs.
    pub push: push::PushStats,
}

#[derive(Default)]
struct Reader {
    conn: Option<Outbox>,
    last: Option<(Instant, Result<Snapshot, String>)>,
    /// How long the last read took.
    cost: Duration,
    /// A read runs on its own thread now (it holds `conn`).
    reading: bool,
}

impl Reader {
    /// How long the last read may serve scrapes.
    fn fresh_for(&self) -> Duration {
        (self.cost * COST_FACTOR).clamp(CACHE_FOR, CACHE_AT_MOST)
    }
}

/// One read of the outbox.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: Status,
    /// How old the read is (set when a scrape takes it from the cache): ages read
    /// from the queue are that much older now.
    pub age: Duration,
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
            reader: Arc::default(),
            push: push::PushStats::default(),
        })
    }

    /// The whole exposition.
    pub fn render(&self) -> String {
        let snap = self.snapshot();
        let mut e = expo::Expo::new();
        e.family(
            "tillrelay_build_info",
            "gauge",
            "Always 1: the agent's version, the commit it was built from, and the box it runs on.",
        );
        e.sample(
            "tillrelay_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", env!("TILLRELAY_COMMIT")),
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
        outbox::write(&mut e, snap.as_ref(), self.cap, &self.db);
        self.push.write(&mut e);
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        config::write(&mut e, &reg.reload);
        config::write_running(&mut e, &reg.running, reg.pull.as_ref());
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
        if let Some(since) = snap.status.queue_full_since {
            // At the cap or a full disk: captures wait (files stay in the folder,
            // receipts are held), so capture has stopped.
            let secs = (crate::outbox::now() - since).max(0);
            return Err(format!(
                "queue full for {secs} s (outbox.max_size or the disk): new captures wait for room"
            ));
        }
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

    /// The outbox as last read. A read older than it may be ([`Reader::fresh_for`])
    /// is done again: at once when reads are cheap, else on a thread of its own while
    /// this scrape is served the last one.
    fn snapshot(&self) -> Result<Snapshot, String> {
        let mut r = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, s)) = &r.last {
            let (at, s) = (*at, s.clone());
            let served = |s: Result<Snapshot, String>| {
                s.map(|mut s| {
                    s.age = at.elapsed();
                    s
                })
            };
            // A read on its own thread that never came back (it would have to panic)
            // is given up after twice the longest age: this scrape reads again.
            let waiting = r.reading && at.elapsed() < CACHE_AT_MOST * 2;
            if waiting || (!r.reading && at.elapsed() < r.fresh_for()) {
                return served(s);
            }
            if r.cost >= READ_IN_BACKGROUND_FROM && self.read_in_background(&mut r) {
                return served(s);
            }
        }
        read_into(&mut r, &self.db);
        r.last.as_ref().expect("just read").1.clone()
    }

    /// Starts a read on its own thread; false if no thread could be started.
    fn read_in_background(&self, r: &mut Reader) -> bool {
        let (reader, db) = (self.reader.clone(), self.db.clone());
        let spawned = std::thread::Builder::new()
            .name("metrics-read".into())
            .spawn(move || {
                let mut r = reader.lock().unwrap_or_else(|p| p.into_inner());
                // The read itself runs without the lock: scrapes go on meanwhile.
                let mut conn = r.conn.take();
                drop(r);
                let (result, cost) = read(&mut conn, &db);
                let mut r = reader.lock().unwrap_or_else(|p| p.into_inner());
                store(&mut r, conn, result, cost);
            });
        if spawned.is_ok() {
            r.reading = true;
        }
        spawned.is_ok()
    }
}

/// Reads the outbox now, with the reader's lock held.
fn read_into(r: &mut Reader, db: &Path) {
    let mut conn = r.conn.take();
    let (result, cost) = read(&mut conn, db);
    store(r, conn, result, cost);
}

fn store(r: &mut Reader, conn: Option<Outbox>, result: Result<Snapshot, String>, cost: Duration) {
    // Reopen at the next read after a failure: the file may have been replaced or repaired.
    r.conn = if result.is_ok() { conn } else { None };
    r.cost = cost;
    r.reading = false;
    r.last = Some((Instant::now(), result));
}

/// One read: the `status` view, and how long it took.
fn read(conn: &mut Option<Outbox>, db: &Path) -> (Result<Snapshot, String>, Duration) {
    let t0 = Instant::now();
    let result = (|| {
        if conn.is_none() {
            *conn = Some(Outbox::open_read_only(db).map_err(|e| format!("outbox: {e}"))?);
        }
        let ob = conn.as_ref().expect("just opened");
        let status = ob
            .status(crate::outbox::now())
            .map_err(|e| format!("outbox: {e}"))?;
        Ok(Snapshot {
            status,
            age: Duration::ZERO,
        })
    })();
    (result, t0.elapsed())
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
    fn a_costly_read_is_redone_on_its_own_thread_while_scrapes_get_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = queue(dir.path());
        let m = Metrics::new(
            "b".into(),
            db.clone(),
            1 << 30,
            Registry::default().shared(),
            None,
        );
        assert!(m.render().contains("tillrelay_outbox_full 0\n"));
        // The queue changes; the last read is made to look costly (100 ms: good for
        // 10 s) and 20 s old.
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "INSERT INTO counter (source, name, value) VALUES ('lane1', 'queue_full_since', 1)",
                [],
            )
            .unwrap();
        {
            let mut r = m.reader.lock().unwrap();
            r.cost = Duration::from_millis(100);
            let (_, last) = r.last.take().unwrap();
            let then = Instant::now().checked_sub(Duration::from_secs(20)).unwrap();
            r.last = Some((then, last));
        }
        // This scrape is served the last read, without waiting for a new one…
        let text = m.render();
        assert!(text.contains("tillrelay_outbox_full 0\n"), "{text}");
        // …which lands on its own thread: later scrapes see the change.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !m.render().contains("tillrelay_outbox_full 1\n") {
            assert!(Instant::now() < deadline, "the read never landed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn health_fails_while_captures_wait_for_room() {
        let dir = tempfile::tempdir().unwrap();
        let db = queue(dir.path());
        let m = Metrics::new(
            "b".into(),
            db.clone(),
            1 << 30,
            Registry::default().shared(),
            None,
        );
        assert_eq!(m.health(), Ok(()));
        // What a capture refused at the cap (or on a full disk) leaves (`note_full`).
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "INSERT INTO counter (source, name, value) VALUES ('lane1', 'queue_full_since', 1)",
                [],
            )
            .unwrap();
        let fresh = Metrics::new("b".into(), db, 1 << 30, Registry::default().shared(), None);
        let why = fresh.health().unwrap_err();
        assert!(why.starts_with("queue full for "), "{why}");
        assert!(fresh.render().contains("tillrelay_outbox_full 1\n"));
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
            "tillrelay_source_last_capture_timestamp_seconds{source=\"lane1\"} 0",
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
