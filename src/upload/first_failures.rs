//! Since when each order has been refused alone with a reply nobody recognises: what
//! lets a destination give up on it after its `give_up_after`, rejecting it (kept,
//! shown, re-sendable with `retry`) instead of retrying it for ever.
//!
//! Invariants:
//! - The book holds only orders refused right now (an entry leaves at the order's first
//!   other outcome), so it is bounded by the batch, not the queue.
//! - It lives in memory: after a restart an order's clock starts again, which only ever
//!   delays a rejection, never loses an order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Since when each lone trade has been refused with a message nobody recognises.
#[derive(Debug, Default)]
pub struct FirstFailures {
    since: Mutex<HashMap<String, i64>>,
}

impl FirstFailures {
    /// Notes a refusal of `tid` at `now` (unix seconds); returns how long it has been
    /// refused (0 at the first).
    pub fn refused(&self, tid: &str, now: i64) -> Duration {
        let mut m = self.since.lock().unwrap_or_else(|e| e.into_inner());
        let first = *m.entry(tid.to_string()).or_insert(now);
        Duration::from_secs(now.saturating_sub(first).max(0) as u64)
    }

    /// The trade had another outcome: its clock stops.
    pub fn clear(&self, tid: &str) {
        let mut m = self.since.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(tid);
    }
}
