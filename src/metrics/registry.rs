//! The counters that live in the daemon, shared by the loops that move data and the
//! metrics endpoint that reads them: one [`SourceMetrics`] per source, one
//! [`DestMetrics`] per destination, all atomics behind `Arc`s.
//!
//! Invariants:
//! - Reporting is a relaxed atomic add or store: a loop never waits for a scrape, and
//!   a scrape never waits for a loop.
//! - Everything a scrape can read is bounded: one entry per configured source and
//!   destination, fixed outcome classes, fixed histogram buckets.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::capture::serial::TapStats;
use crate::capture::stream::SourceStats;

/// The request outcome classes (`tillrelay_destination_requests_total{outcome}`).
pub const OUTCOMES: [&str; 4] = ["delivered", "retry", "rejected", "misconfigured"];

/// Request duration buckets, seconds (upper bounds; `+Inf` is implied).
pub const DURATION_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Every source's and destination's counters, as the daemon hands them out.
#[derive(Debug, Default)]
pub struct Registry {
    pub sources: Vec<(String, Arc<SourceMetrics>)>,
    pub dests: Vec<(String, Arc<DestMetrics>)>,
    /// How the configuration was loaded and reloaded (`SIGHUP`).
    pub reload: ReloadState,
    /// Which configuration runs (`tillrelay_config_info`).
    pub running: Running,
    /// The configuration pull, when `[agent] config_url` is set.
    pub pull: Option<PullState>,
}

/// The running configuration: the pulled file's serial (0 for the local file) and
/// the hash of its text, comparable across a fleet.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Running {
    pub serial: u64,
    pub hash: String,
    /// "pulled" or "local".
    pub origin: &'static str,
}

/// The configuration pull's checks (`tillrelay_config_pull_*`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PullState {
    /// Checks made (one per poll).
    pub checks: u64,
    /// Checks that ended refused: server unreachable or answering an error, a file
    /// unsigned, badly signed, stale, holding a secret, or invalid.
    pub failures: u64,
    /// The last check ended well (the served file applied, or unchanged).
    pub last_ok: bool,
    /// Unix seconds of the last check, and of the last one that ended well.
    pub last_check_at: i64,
    pub last_success_at: i64,
}

/// The registry as the daemon and the endpoint share it: a reload adds the counters
/// of new sources and destinations while scrapes read.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// The configuration's reloads, for `tillrelay_config_*`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ReloadState {
    /// Reloads asked (SIGHUP), applied or refused.
    pub reloads: u64,
    /// Reloads refused (an invalid file: the running configuration stayed).
    pub failures: u64,
    /// The last load (at start, or the last reload) was applied.
    pub last_ok: bool,
    /// Unix seconds of the last applied load (the start, or a reload).
    pub last_success_at: i64,
}

impl ReloadState {
    /// The configuration read at start.
    pub fn started(at: i64) -> ReloadState {
        ReloadState {
            last_ok: true,
            last_success_at: at,
            ..ReloadState::default()
        }
    }

    /// One reload: applied (`ok`) or refused, at unix second `at`.
    pub fn record(&mut self, ok: bool, at: i64) {
        self.reloads += 1;
        self.last_ok = ok;
        if ok {
            self.last_success_at = at;
        } else {
            self.failures += 1;
        }
    }
}

impl Registry {
    /// Shared between the daemon and the endpoint.
    pub fn shared(self) -> SharedRegistry {
        Arc::new(Mutex::new(self))
    }

    /// The counters of source `name` (created on first ask).
    pub fn source(&mut self, name: &str) -> Arc<SourceMetrics> {
        if let Some((_, m)) = self.sources.iter().find(|(n, _)| n == name) {
            return m.clone();
        }
        let m = Arc::new(SourceMetrics::default());
        self.sources.push((name.to_string(), m.clone()));
        m
    }

    /// The counters of destination `name` (created on first ask).
    pub fn dest(&mut self, name: &str) -> Arc<DestMetrics> {
        if let Some((_, m)) = self.dests.iter().find(|(n, _)| n == name) {
            return m.clone();
        }
        let m = Arc::new(DestMetrics::default());
        self.dests.push((name.to_string(), m.clone()));
        m
    }
}

/// What a source's loop shares: the live counters of its tap or stream, handed over
/// when it starts (the loop owns them; this only keeps a reference to read).
#[derive(Debug, Default)]
pub struct SourceMetrics {
    tap: Mutex<Option<Arc<TapStats>>>,
    stream: Mutex<Option<Arc<SourceStats>>>,
}

/// A source's live state, read at scrape time.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct SourceLive {
    /// The device or peer is connected (None: not a streaming source).
    pub connected: Option<bool>,
    /// The printer answered the last attempt (None: no printer behind this source,
    /// or not tried yet).
    pub printer_reachable: Option<bool>,
    /// POS bytes passed on to the printer.
    pub bytes_forwarded: u64,
}

impl SourceMetrics {
    /// A serial source's tap started: read its counters from now on.
    pub fn attach_tap(&self, stats: Arc<TapStats>) {
        *lock(&self.tap) = Some(stats);
    }

    /// A network or device source started: read its counters from now on.
    pub fn attach_stream(&self, stats: Arc<SourceStats>) {
        *lock(&self.stream) = Some(stats);
    }

    pub fn live(&self) -> SourceLive {
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut l = SourceLive::default();
        if let Some(t) = lock(&self.tap).as_ref() {
            l.connected = Some(t.pos_up.load(Ordering::Relaxed));
            l.printer_reachable = Some(t.printer_up.load(Ordering::Relaxed));
            l.bytes_forwarded += get(&t.bytes_to_printer);
        }
        if let Some(s) = lock(&self.stream).as_ref() {
            l.connected = Some(get(&s.connected_peers) > 0);
            // Known once the printer was tried: a print proxy tries it when a POS
            // connects, so until then (a quiet lane after a start or reload) the
            // state is unknown and not reported: no "unreachable" that nobody saw
            // (as `status` says "not tried yet"). A source with no printer (`listen`)
            // never reports one.
            let reachable = s.printer_reachable.load(Ordering::Relaxed);
            if reachable || get(&s.printer_failures) > 0 {
                l.printer_reachable = Some(reachable);
            }
            l.bytes_forwarded += get(&s.bytes_to_printer);
        }
        l
    }
}

/// What an upload worker reports: one count per request by outcome class and each
/// request's duration; the server clock offset it learned.
#[derive(Debug, Default)]
pub struct DestMetrics {
    requests: [AtomicU64; 4],
    /// Orders by outcome class (delivered, retry, rejected, misconfigured).
    orders: [AtomicU64; 4],
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`], then `+Inf`.
    buckets: [AtomicU64; 11],
    duration_micros: AtomicU64,
    offset_secs: AtomicI64,
}

/// A snapshot of [`DestMetrics`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DestCounts {
    pub requests: [u64; 4],
    pub orders: [u64; 4],
    pub buckets: [u64; 11],
    pub duration_secs: f64,
    pub offset_secs: i64,
}

impl DestMetrics {
    /// One request answered: `outcome` indexes [`OUTCOMES`].
    pub fn request(&self, outcome: usize, took: Duration) {
        self.requests[outcome.min(3)].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.buckets[10].fetch_add(1, Ordering::Relaxed);
        self.duration_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// One order's outcome: `outcome` indexes [`OUTCOMES`].
    pub fn order(&self, outcome: usize) {
        self.orders[outcome.min(3)].fetch_add(1, Ordering::Relaxed);
    }

    /// The server clock offset the client learned (server − local, seconds).
    pub fn set_offset(&self, secs: i64) {
        self.offset_secs.store(secs, Ordering::Relaxed);
    }

    pub fn counts(&self) -> DestCounts {
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        DestCounts {
            requests: std::array::from_fn(|i| get(&self.requests[i])),
            orders: std::array::from_fn(|i| get(&self.orders[i])),
            buckets: std::array::from_fn(|i| get(&self.buckets[i])),
            duration_secs: get(&self.duration_micros) as f64 / 1e6,
            offset_secs: self.offset_secs.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fill_cumulative_buckets_and_classes() {
        let m = DestMetrics::default();
        m.request(0, Duration::from_millis(70));
        m.request(1, Duration::from_secs(3));
        m.request(3, Duration::from_secs(100));
        let c = m.counts();
        assert_eq!(c.requests, [1, 1, 0, 1]);
        assert_eq!(c.buckets[0], 0, "0.05");
        assert_eq!(c.buckets[1], 1, "0.1");
        assert_eq!(c.buckets[6], 2, "5");
        assert_eq!(c.buckets[9], 2, "60");
        assert_eq!(c.buckets[10], 3, "+Inf");
        assert!((c.duration_secs - 103.07).abs() < 1e-6);
    }

    #[test]
    fn a_tap_reports_connection_printer_and_bytes() {
        let m = SourceMetrics::default();
        assert_eq!(m.live(), SourceLive::default());
        let t = Arc::new(TapStats::default());
        t.pos_up.store(true, Ordering::Relaxed);
        t.bytes_to_printer.store(42, Ordering::Relaxed);
        m.attach_tap(t);
        let l = m.live();
        assert_eq!(l.connected, Some(true));
        assert_eq!(l.printer_reachable, Some(false));
        assert_eq!(l.bytes_forwarded, 42);
    }

    #[test]
    fn a_stream_printer_is_unknown_until_tried() {
        let m = SourceMetrics::default();
        let s = Arc::new(SourceStats::default());
        m.attach_stream(s.clone());
        assert_eq!(m.live().printer_reachable, None, "not tried yet");
        s.printer_failures.fetch_add(1, Ordering::Relaxed);
        assert_eq!(m.live().printer_reachable, Some(false));
        s.printer_reachable.store(true, Ordering::Relaxed);
        assert_eq!(m.live().printer_reachable, Some(true));
    }
}
