//! Process plumbing shared by every long-running loop: the shutdown value and the
//! heartbeats behind the systemd watchdog.
//!
//! Invariants:
//! - Shutdown is a value passed to every loop, never a global. Triggering it wakes
//!   every loop that is waiting (through [`Shutdown::wait`] or a registered waker),
//!   so stopping never waits out an idle timeout.
//! - A [`Shutdown::child`] stops one loop alone (a reload replacing it) and is
//!   triggered by its parent too, so stopping the process still stops every loop.
//! - A loop beats its [`Heartbeat`] each time round, including when it wakes idle;
//!   the daemon pings the watchdog only while every heartbeat is fresh, so a stuck
//!   loop gets the process restarted and a busy one does not.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Waker = Box<dyn Fn() + Send + Sync>;
/// Each registered loop: its name and the millisecond (since start) it last beat.
type Beats = Arc<Mutex<Vec<(String, Arc<AtomicU64>)>>>;

#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Default)]
struct ShutdownInner {
    flag: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
    wakers: Mutex<Vec<Waker>>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    pub fn trigger(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        {
            let _g = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.inner.cond.notify_all();
        }
        let wakers = self.inner.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for w in wakers.iter() {
            w();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`; returns true (early) if shutdown was triggered.
    pub fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.is_triggered() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .inner
                .cond
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A shutdown of its own for one loop: triggering it stops that loop alone,
    /// triggering `self` triggers it too. The parent keeps only a weak reference, so
    /// a loop replaced at a reload leaves nothing behind but an empty closure.
    pub fn child(&self) -> Shutdown {
        let child = Shutdown::new();
        let weak = Arc::downgrade(&child.inner);
        self.on_trigger(move || {
            if let Some(inner) = weak.upgrade() {
                Shutdown { inner }.trigger();
            }
        });
        child
    }

    /// Registers a function called on trigger (e.g. one that sends a stop message on
    /// a loop's channel). Called at once if shutdown was already triggered.
    pub fn on_trigger(&self, waker: impl Fn() + Send + Sync + 'static) {
        if self.is_triggered() {
            waker();
        }
        self.inner
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(waker));
    }
}

/// The set of loops the watchdog vouches for.
#[derive(Clone, Default)]
pub struct Heartbeats {
    start: Option<Instant>,
    max_sleep: Duration,
    beats: Beats,
}

/// One loop's heartbeat.
#[derive(Clone)]
pub struct Heartbeat {
    start: Instant,
    max_sleep: Duration,
    last: Arc<AtomicU64>,
}

impl Heartbeats {
    /// `max_sleep`: the longest a registered loop may wait idle before beating again
    /// (a quarter of the watchdog period, so an idle loop is never mistaken for a
    /// stuck one).
    pub fn new(max_sleep: Duration) -> Heartbeats {
        Heartbeats {
            start: Some(Instant::now()),
            max_sleep,
            beats: Arc::default(),
        }
    }

    fn start(&self) -> Instant {
        self.start.unwrap_or_else(Instant::now)
    }

    pub fn register(&self, name: &str) -> Heartbeat {
        let hb = Heartbeat {
            start: self.start(),
            max_sleep: self.max_sleep,
            last: Arc::new(AtomicU64::new(self.start().elapsed().as_millis() as u64)),
        };
        self.beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), hb.last.clone()));
        hb
    }

    /// Forgets a loop that has stopped (a reload removed or replaced it), so the
    /// watchdog no longer waits for its beat.
    pub fn unregister(&self, beat: &Heartbeat) {
        self.beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, last)| !Arc::ptr_eq(last, &beat.last));
    }

    /// The loops that have not beaten within `max_age`.
    pub fn stale(&self, max_age: Duration) -> Vec<String> {
        let now = self.start().elapsed().as_millis() as u64;
        self.beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, last)| {
                now.saturating_sub(last.load(Ordering::Relaxed)) > max_age.as_millis() as u64
            })
            .map(|(n, _)| n.clone())
            .collect()
    }
}

impl Heartbeat {
    /// How long the loop may wait idle before it must beat again.
    pub fn max_sleep(&self) -> Duration {
        self.max_sleep
    }

    pub fn beat(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_wakes_waiters_and_wakers() {
        let s = Shutdown::new();
        let (tx, rx) = std::sync::mpsc::channel();
        s.on_trigger(move || {
            let _ = tx.send(());
        });
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.wait(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(20));
        s.trigger();
        assert!(t.join().unwrap(), "the waiter saw the trigger");
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(!Shutdown::new().wait(Duration::from_millis(1)));
    }

    #[test]
    fn a_child_stops_alone_and_with_its_parent() {
        let parent = Shutdown::new();
        let (a, b) = (parent.child(), parent.child());
        a.trigger();
        assert!(a.is_triggered());
        assert!(
            !b.is_triggered() && !parent.is_triggered(),
            "a child stops alone"
        );
        parent.trigger();
        assert!(b.is_triggered(), "the parent stops every child");
        assert!(
            parent.child().is_triggered(),
            "a child of a stopped parent is stopped"
        );
    }

    #[test]
    fn an_unregistered_loop_is_not_waited_for() {
        let hbs = Heartbeats::new(Duration::from_secs(1));
        let a = hbs.register("folder:lane1");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(hbs.stale(Duration::from_millis(15)), vec!["folder:lane1"]);
        hbs.unregister(&a);
        assert!(hbs.stale(Duration::from_millis(15)).is_empty());
    }

    #[test]
    fn stale_heartbeats_are_named() {
        let hbs = Heartbeats::new(Duration::from_secs(1));
        let a = hbs.register("folder:lane1");
        let _b = hbs.register("upload:wdt");
        std::thread::sleep(Duration::from_millis(30));
        a.beat();
        assert_eq!(hbs.stale(Duration::from_millis(15)), vec!["upload:wdt"]);
    }
}
