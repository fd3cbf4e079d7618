//! A source's counters as the metrics endpoint reads them ([`SourceMetrics`]): the
//! loop hands over its tap's or stream's live counters when it starts; the daemon's
//! registry (the metrics layer) keeps one per source. Here, beside the loops, so
//! capture never imports the metrics layer above it.
//!
//! Invariant: reading is a relaxed atomic load; a loop never waits for a scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::serial::TapStats;
use super::stream::SourceStats;

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
