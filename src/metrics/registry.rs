//! The counters that live in the daemon, shared by the loops that move data and the
//! metrics endpoint that reads them: one [`SourceMetrics`] per source, one
//! [`DestMetrics`] per destination, all atomics behind `Arc`s. The two types live
//! beside the loops that fill them (`capture::counters`, `upload::counters`, so
//! neither imports this layer); the registry only holds them by name.
//!
//! Invariants:
//! - Reporting is a relaxed atomic add or store: a loop never waits for a scrape, and
//!   a scrape never waits for a loop.
//! - Everything a scrape can read is bounded: one entry per configured source and
//!   destination, fixed outcome classes, fixed histogram buckets.

use std::sync::{Arc, Mutex};

pub use crate::capture::counters::{SourceLive, SourceMetrics};
pub use crate::upload::counters::{DURATION_BUCKETS, DestCounts, DestMetrics, OUTCOMES};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::serial::TapStats;
    use crate::capture::stream::SourceStats;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

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
