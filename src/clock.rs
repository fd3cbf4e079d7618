//! The one clock: the wall clock (unix seconds, signed) and the monotonic clock, behind
//! a trait so that the upload engine can run on simulated time in tests.
//!
//! Invariants:
//! - Wall time is signed: a box that booted with no clock at all (before 1970) reads
//!   negative seconds, everywhere (the outbox's schedules, the engine's backoff and its
//!   clock-jump detection, the server offset); never 0 in one place and negative in
//!   another.
//! - Where time decides behaviour (backoff, due times, clock jumps), the engine reads
//!   it from its [`Clock`]; [`ManualClock`] moves only when a test says so.
//! - Not to be confused with [`crate::upload::ServerOffset`], the learned difference
//!   between a cloud's clock and this one.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall and monotonic time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix seconds as the box believes (negative before 1970).
    fn now_unix(&self) -> i64;
    /// A monotonic instant (never jumps; stops while the box sleeps on some kernels).
    fn now_mono(&self) -> Instant;
}

/// The system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        unix_now()
    }
    fn now_mono(&self) -> Instant {
        Instant::now()
    }
}

/// The system's wall clock in unix seconds (negative before 1970).
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        // A clock before 1970 is a box that booted with no clock at all.
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// A clock that moves only when told: [`ManualClock::advance`] moves both clocks
/// (time passing), [`ManualClock::jump`] the wall clock alone (NTP, a manual change).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    /// Wall seconds and monotonic time since `start`.
    state: Mutex<(i64, Duration)>,
}

impl ManualClock {
    /// Starts at wall time `unix`.
    pub fn new(unix: i64) -> ManualClock {
        ManualClock {
            start: Instant::now(),
            state: Mutex::new((unix, Duration::ZERO)),
        }
    }

    /// Lets `d` pass (whole seconds on the wall clock).
    pub fn advance(&self, d: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += d.as_secs() as i64;
        s.1 += Duration::from_secs(d.as_secs());
    }

    /// Moves the wall clock alone by `secs`.
    pub fn jump(&self, secs: i64) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 += secs;
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> i64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }
    fn now_mono(&self) -> Instant {
        self.start + self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(-100);
        let (w, m) = (c.now_unix(), c.now_mono());
        assert_eq!(w, -100, "before 1970 is negative");
        c.advance(Duration::from_secs(30));
        assert_eq!(c.now_unix(), -70);
        assert_eq!(c.now_mono() - m, Duration::from_secs(30));
        c.jump(3600);
        assert_eq!(c.now_unix(), 3530);
        assert_eq!(c.now_mono() - m, Duration::from_secs(30));
        assert!(SystemClock.now_unix() > 1_700_000_000);
    }
}
