//! A destination's counters as its upload worker reports them ([`DestMetrics`]): one
//! count per request and order by outcome class, request durations, the server clock
//! offset. The daemon's registry (the metrics layer) keeps one per destination. Here,
//! beside the engine, so upload never imports the metrics layer above it.
//!
//! Invariants: reporting is a relaxed atomic add or store (a worker never waits for a
//! scrape); outcome classes and histogram buckets are fixed, so a scrape is bounded.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The request outcome classes (`tillrelay_destination_requests_total{outcome}`).
pub const OUTCOMES: [&str; 4] = ["delivered", "retry", "rejected", "misconfigured"];

/// Request duration buckets, seconds (upper bounds; `+Inf` is implied).
pub const DURATION_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

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
