//! The upload engine: one worker per destination, on its own thread (ureq and SQLite
//! block), taking due delivery rows from the outbox in batches and persisting each
//! attempt's [`Outcome`].
//!
//! Invariants:
//! - Destinations are independent: each worker has its own outbox connection, client
//!   and clock; one cloud down never delays the other.
//! - Memory is bounded by the batch: rows are claimed `batch` at a time, never the queue.
//! - Every outcome is persisted as soon as it is known, before any request that
//!   follows it (each destination keeps at most `concurrency` requests sent and not
//!   yet recorded, its own way — see [`Destination`] — so a crash re-sends at most
//!   that many):
//!   delivered, retry at a
//!   backoff time (exponential, jittered, capped; the server's advice when longer),
//!   rejected with its reason. A misconfigured destination is paused in the outbox (shown
//!   by `status`), its rows are left pending and untouched, and one row is tried again
//!   every `probe_interval` (or at once when woken).
//! - New orders leave at once: a capture's commit ends an idle wait
//!   ([`Wake::new_orders`]); `poll` is only the fallback. It never cuts a backoff or a
//!   pause short, and idle stays idle (no wake without a commit).
//! - A backlog drains at once when the network returns: a delivery after failures (or
//!   a pass the cloud answered with per-order rejections only: it is reachable), and
//!   every [`Wake::wake`] (SIGUSR1, `tillrelay flush`), switch the worker to draining,
//!   where it takes pending rows whatever their scheduled time until a pass delivers
//!   nothing; the rows' due times are brought forward to now as well (so `status`
//!   tells the truth).
//! - The cloud's return is noticed within [`EngineConfig::recheck`]: after a pass that
//!   got nothing through, the worker holds off for the backoff of its failures, never
//!   longer than `recheck` (unless the cloud asked for a longer wait: a rate limit is
//!   honoured, only `flush` cuts it short), and then sends ONE order (the earliest scheduled, due or
//!   not) as a probe. An outage therefore costs one request per hold, and a backlog
//!   starts draining at most `recheck` (plus a request in flight) after the cloud
//!   answers again, however long each row's own backoff has grown (up to
//!   `retry_max`). The log names the real next attempt.
//! - A jump of the wall clock (NTP correcting a box that booted without an RTC, a
//!   manual change) also switches the worker to draining: the rows' schedules were
//!   written by the old clock, and after a jump back they would all look hours ahead
//!   (not due) until the clock caught up. A jump is the wall clock moving more than
//!   [`CLOCK_JUMP_SECS`] differently from the monotonic clock between two passes.
//! - A pause has the scope of what is wrong (issue #26). A source whose identity the
//!   cloud refuses ([`Outcome::SourceMisconfigured`]: its shop, its enterprise) is
//!   paused for this destination alone: its rows stay pending and untouched, no claim
//!   takes them but one probe of one row every `probe_interval` (or at once on a
//!   flush), and every other source's rows go on, drained, probed and flushed as
//!   usual. The pause is kept in the outbox (`status`, `/metrics`) and, after a
//!   restart, probed at once. A judged row of the source (delivered, rejected) ends it.
//! - Shutdown: the batch in hand is finished and persisted, then the worker returns.
//! - The engine holds no cloud's rules: it is generic over [`Destination`] (batch
//!   limit, requests in flight, which orders may share a request), and reads time
//!   from its [`Clock`] (backoff, due times, clock jumps), so tests can simulate it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use log::{error, info, warn};

use super::counters::DestMetrics;
use super::{Destination, Outcome};
use crate::clock::{Clock, SystemClock};
use crate::lifecycle::{Heartbeat, Shutdown};
use crate::order::Order;
use crate::outbox::{self, Claim, Mark, Outbox};

/// Between two passes, a wall clock that moved this much more or less than the
/// monotonic clock has jumped (see the module invariants).
pub const CLOCK_JUMP_SECS: i64 = 60;

/// Timing of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// First retry delay; doubled per attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How often a paused (misconfigured) destination is probed.
    pub probe_interval: Duration,
    /// The longest hold after a pass that got nothing through: then one order is
    /// sent as a probe of the network (see the module invariants).
    pub recheck: Duration,
    /// How often an idle worker looks for new rows.
    pub poll: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(30 * 60),
            probe_interval: Duration::from_secs(10 * 60),
            recheck: Duration::from_secs(30),
            poll: Duration::from_secs(2),
        }
    }
}

/// The delay before attempt `attempts + 1`: `base·2^attempts`, capped, with jitter in
/// its upper half (so a fleet of boxes coming back online does not retry in lockstep).
pub fn backoff(cfg: &EngineConfig, attempts: u32) -> Duration {
    let base = cfg.retry_base.as_secs().max(1);
    let full = base
        .saturating_mul(1u64 << attempts.min(30))
        .min(cfg.retry_max.as_secs().max(1));
    Duration::from_secs(fastrand::u64(full.div_ceil(2)..=full))
}

/// A handle that wakes a worker. Two kinds of news:
/// - [`Wake::wake`] (SIGUSR1, `tillrelay flush`, shutdown): stop waiting, whatever the
///   wait, and drain the queue at once (rows in backoff included).
/// - [`Wake::new_orders`] (a capture just committed orders): end an idle wait and run a
///   normal pass at once, so a new order leaves in milliseconds instead of at the next
///   `poll`. It does not cut a backoff or a pause short: during an outage a till's
///   orders must not each cost a request (the next backoff pass takes them along).
#[derive(Clone, Default)]
pub struct Wake {
    inner: Arc<(Mutex<Woken>, Condvar)>,
}

/// What a wait ended with (the strongest news wins).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Woken {
    #[default]
    No,
    NewOrders,
    Flush,
}

impl Wake {
    pub fn new() -> Wake {
        Wake::default()
    }

    /// Drain now (see the type's doc).
    pub fn wake(&self) {
        self.notify(Woken::Flush);
    }

    /// New orders were committed: end an idle wait (see the type's doc).
    pub fn new_orders(&self) {
        self.notify(Woken::NewOrders);
    }

    fn notify(&self, news: Woken) {
        let (flag, cond) = &*self.inner;
        let mut g = flag.lock().unwrap_or_else(|e| e.into_inner());
        *g = (*g).max(news);
        cond.notify_all();
    }

    /// Waits up to `d` or until woken; returns what woke it (and clears that).
    fn wait(&self, d: Duration) -> Woken {
        let (flag, cond) = &*self.inner;
        let g = flag.lock().unwrap_or_else(|e| e.into_inner());
        let (mut g, _) = cond
            .wait_timeout_while(g, d, |woken| *woken == Woken::No)
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *g)
    }
}

/// Why a worker holds off between passes (which news may end the hold early).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Nothing to do: new orders end it.
    Idle,
    /// Backoff after failures, a pause (probing), a queue error: only a flush ends it.
    Backoff,
}

/// What one pass did (for logs and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
    pub delivered: usize,
    pub retry: usize,
    pub rejected: usize,
    /// The destination was found misconfigured in this pass (why).
    pub misconfigured: Option<String>,
    /// Sources found misconfigured for this destination in this pass (and why): their
    /// rows are held back, the others go on.
    pub paused_sources: BTreeMap<String, String>,
}

/// A source paused for this destination (its identity there is refused).
#[derive(Debug, Clone)]
struct SourceHold {
    reason: String,
    /// When one of its rows is tried again.
    probe_at: Instant,
}

/// One destination's worker, generic over the cloud it drives.
pub struct Worker<D: Destination> {
    dest: String,
    client: D,
    outbox: Outbox,
    cfg: EngineConfig,
    wake: Wake,
    /// Why the destination is paused, while it is.
    paused: Option<String>,
    /// Sources paused for this destination, by name (see the module invariants).
    source_pauses: BTreeMap<String, SourceHold>,
    /// The pauses an earlier run left in the outbox were read.
    source_pauses_loaded: bool,
    draining: bool,
    /// Passes in a row that got nothing through.
    failures: u32,
    /// The last pass got nothing through: the next is a probe (one order).
    probe_next: bool,
    /// The hold after the last pass that got nothing through: the backoff of the
    /// failures in a row, at most `recheck` unless the cloud asked for longer (drawn
    /// when the pass logs it).
    hold: Duration,
    /// The outbox may still show a pause from an earlier run (fixed since): clear it
    /// at the first request the server judges.
    clear_stale_pause: bool,
    beat: Option<Heartbeat>,
    /// The wall clock (seconds) and the monotonic clock at the last pass.
    clock_seen: Option<(i64, Instant)>,
    /// Where time comes from (backoff, due times, clock jumps).
    clock: Arc<dyn Clock>,
    /// Where requests' outcomes and durations are reported (`/metrics`), if anywhere.
    metrics: Option<Arc<DestMetrics>>,
}

impl<D: Destination> Worker<D> {
    /// `outbox`: this worker's own connection. `wake`: the handle others use to wake it.
    pub fn new(client: D, outbox: Outbox, cfg: EngineConfig, wake: Wake) -> Worker<D> {
        Worker {
            dest: client.name().to_string(),
            client,
            outbox,
            cfg,
            wake,
            paused: None,
            source_pauses: BTreeMap::new(),
            source_pauses_loaded: false,
            // A start (or restart after a fix) sends what is pending at once.
            draining: true,
            failures: 0,
            probe_next: false,
            hold: Duration::ZERO,
            clear_stale_pause: true,
            beat: None,
            clock_seen: None,
            clock: Arc::new(SystemClock),
            metrics: None,
        }
    }

    /// The worker reporting into `m` (the daemon's metrics registry).
    pub fn with_metrics(mut self, m: Arc<DestMetrics>) -> Worker<D> {
        self.metrics = Some(m);
        self
    }

    /// The worker on another clock (tests: simulated time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Worker<D> {
        self.clock = clock;
        self
    }

    /// Runs until shutdown.
    pub fn run(mut self, shutdown: &Shutdown, beat: &Heartbeat) {
        let wake = self.wake.clone();
        shutdown.on_trigger(move || wake.wake());
        self.beat = Some(beat.clone());
        info!("upload:{}: started", self.dest);
        let mut hold: Option<(Instant, Hold)> = None;
        while !shutdown.is_triggered() {
            beat.beat();
            if let Some((t, why)) = hold {
                let left = t.saturating_duration_since(self.clock.now_mono());
                if !left.is_zero() {
                    match self.wake.wait(left.min(beat.max_sleep())) {
                        Woken::Flush if !shutdown.is_triggered() => {
                            hold = None;
                            self.draining = true;
                            self.probe_next = false;
                            // A flush probes each paused source once, now.
                            let now = self.clock.now_mono();
                            for h in self.source_pauses.values_mut() {
                                h.probe_at = now;
                            }
                        }
                        Woken::NewOrders if why == Hold::Idle => hold = None,
                        _ => {}
                    }
                    continue;
                }
            }
            hold = self
                .step_why()
                .map(|(d, why)| (self.clock.now_mono() + d, why));
        }
        info!("upload:{}: stopped", self.dest);
    }

    /// Runs one pass as [`Worker::run`] does (a probe of one order after a pass that
    /// got nothing through) and says how long to hold off before the next (`None`:
    /// go on now). Public for tests driving the worker on simulated time.
    pub fn step(&mut self) -> Option<Duration> {
        self.step_why().map(|(d, _)| d)
    }

    /// [`Worker::step`], also saying why it holds off (new orders end an idle wait
    /// only).
    fn step_why(&mut self) -> Option<(Duration, Hold)> {
        let probe = std::mem::take(&mut self.probe_next);
        match self.pass_as(probe) {
            Err(e) => {
                error!("upload:{}: queue error (will retry): {e}", self.dest);
                Some((self.cfg.poll.max(Duration::from_secs(5)), Hold::Backoff))
            }
            Ok(_) if self.paused.is_some() => Some((self.cfg.probe_interval, Hold::Backoff)),
            Ok(p) if p.delivered == 0 && p.retry > 0 => {
                // Nothing got through: hold the whole destination off (each row also
                // has its own schedule), then probe with one order, so an outage
                // costs one request per hold and its end is noticed within `recheck`.
                self.probe_next = true;
                Some((self.hold, Hold::Backoff))
            }
            Ok(p) if p.claimed > 0 => None,
            Ok(_) => Some((self.idle_wait(), Hold::Idle)),
        }
    }

    /// How long to sleep when there was nothing to do: until the next scheduled row,
    /// at most `poll`. The daemon's captures wake the worker when they commit
    /// ([`Wake::new_orders`]); `poll` finds what other processes queued (`reparse`,
    /// `retry`) and is the fallback should a wake be missed.
    fn idle_wait(&self) -> Duration {
        let paused: Vec<String> = self.source_pauses.keys().cloned().collect();
        match self.outbox.next_due_except(&self.dest, &paused) {
            Ok(Some(t)) => Duration::from_secs((t - self.clock.now_unix()).clamp(0, 3600) as u64)
                .clamp(
                    Duration::from_millis(100),
                    self.cfg.poll.max(Duration::from_millis(100)),
                ),
            _ => self.cfg.poll,
        }
    }

    /// One pass: claim due rows (one row while paused: the probe), send, persist.
    pub fn pass(&mut self) -> outbox::Result<Pass> {
        self.pass_as(false)
    }

    /// One pass; `probe`: the pass after one that got nothing through, which sends
    /// one order, due or not, to see whether the cloud answers again.
    fn pass_as(&mut self, probe: bool) -> outbox::Result<Pass> {
        let now = self.clock.now_unix();
        self.notice_clock_jump(now, self.clock.now_mono());
        let probe = probe && !self.draining;
        let limit = if self.paused.is_some() || probe {
            1
        } else {
            self.client.batch_limit()
        };
        // Draining or probing ignores the backoff schedule: claiming "as of far ahead"
        // takes every pending row, oldest schedule first.
        let as_of = if self.draining || probe || self.paused.is_some() {
            i64::MAX / 4
        } else {
            now
        };
        if !self.source_pauses_loaded {
            // Pauses an earlier run left: probed at once (the config may be fixed).
            for p in self.outbox.source_pauses(&self.dest)? {
                let hold = SourceHold {
                    reason: p.reason,
                    probe_at: self.clock.now_mono(),
                };
                self.source_pauses.insert(p.source, hold);
            }
            self.source_pauses_loaded = true;
        }
        // The probes of paused sources whose time has come (one row each; not while
        // the destination itself is paused: its probe comes first).
        let mut rows = Vec::new();
        if self.paused.is_none() {
            let mono = self.clock.now_mono();
            let due: Vec<String> = self
                .source_pauses
                .iter()
                .filter(|(_, h)| h.probe_at <= mono)
                .map(|(s, _)| s.clone())
                .collect();
            for source in due {
                let probe =
                    self.outbox
                        .claim(&self.dest, i64::MAX / 4, 1, &Claim::Only(&source))?;
                if probe.is_empty() {
                    // Nothing of it waits any more: nothing to hold back.
                    self.source_pauses.remove(&source);
                    self.outbox.set_source_paused(&self.dest, &source, None)?;
                    continue;
                }
                if let Some(h) = self.source_pauses.get_mut(&source) {
                    h.probe_at = mono + self.cfg.probe_interval;
                }
                rows.extend(probe);
            }
        }
        let paused_sources: Vec<String> = self.source_pauses.keys().cloned().collect();
        let rest = limit.saturating_sub(rows.len());
        if rest > 0 {
            let more =
                self.outbox
                    .claim(&self.dest, as_of, rest, &Claim::Except(&paused_sources))?;
            rows.extend(more);
        }
        let mut pass = Pass {
            claimed: rows.len(),
            ..Pass::default()
        };
        if rows.is_empty() {
            self.draining = false;
            return Ok(pass);
        }
        // Orders stored before the source stamp existed get it here (in place: a copy
        // of every order per pass showed in the drain's profile).
        for r in &mut rows {
            if r.order.source.is_none() {
                r.order.source = Some(r.source.clone());
            }
        }
        let refs: Vec<&Order> = rows.iter().map(|r| &r.order).collect();
        let beat = self.beat.clone();
        let tick = || {
            if let Some(b) = &beat {
                b.beat();
            }
        };
        let mut last_error: Option<String> = None;
        let mut retry_delay: Option<Duration> = None;
        // The longest wait the cloud itself asked for in this pass (a rate limit):
        // the probe after a failed pass never comes sooner.
        let mut advised = Duration::ZERO;
        let (dest, cfg) = (self.dest.as_str(), &self.cfg);
        let outbox = &mut self.outbox;
        // Outcomes are persisted as each request's answer arrives: a single order's
        // alone, a batch's together in one transaction (one fsync for 100
        // orders); with requests in flight, the others go on meanwhile.
        let mut marks: Vec<(i64, Mark)> = Vec::new();
        // Sources whose rows the cloud judged (delivered, rejected): their identity works.
        let mut judged: BTreeSet<String> = BTreeSet::new();
        let mut failed: Option<outbox::OutboxError> = None;
        // Metrics: a request counts under the most severe outcome of its orders
        // (delivered < retry < rejected < misconfigured), timed from the send.
        let (metrics, sent_at, mut class) = (self.metrics.clone(), Instant::now(), 0);
        self.client
            .send(&refs, &tick, &mut |i, outcome, request_done| {
                let row = &rows[i];
                if let Some(m) = &metrics {
                    let c = outcome_class(&outcome);
                    m.order(c);
                    class = class.max(c);
                    if request_done {
                        m.request(class, sent_at.elapsed());
                        class = 0;
                    }
                }
                match outcome {
                    Outcome::Delivered { note } => {
                        judged.insert(row.source.clone());
                        marks.push((row.delivery_id, Mark::Delivered(Some(note))));
                        pass.delivered += 1;
                    }
                    Outcome::Retry { after, reason } => {
                        advised = advised.max(after.unwrap_or_default());
                        let delay = backoff(cfg, row.attempts).max(after.unwrap_or_default());
                        let next_at = now + delay.as_secs() as i64;
                        marks.push((
                            row.delivery_id,
                            Mark::Retry {
                                next_at,
                                error: reason.clone(),
                            },
                        ));
                        log::debug!(
                            "upload:{dest}: order {}: {reason}; retry in {}s",
                            row.order.order_no,
                            delay.as_secs()
                        );
                        pass.retry += 1;
                        retry_delay = Some(retry_delay.map_or(delay, |d| d.min(delay)));
                        last_error.get_or_insert(reason);
                    }
                    Outcome::Rejected { reason } => {
                        judged.insert(row.source.clone());
                        warn!("upload:{dest}: rejected: {reason}");
                        marks.push((row.delivery_id, Mark::Rejected(reason)));
                        pass.rejected += 1;
                    }
                    Outcome::Misconfigured { reason } => {
                        // The row stays as it was: pending, due, attempts unchanged.
                        pass.misconfigured.get_or_insert(reason);
                    }
                    Outcome::SourceMisconfigured { reason } => {
                        // The row stays as it was; its source is held back.
                        pass.paused_sources
                            .entry(row.source.clone())
                            .or_insert(reason);
                    }
                }
                if request_done && !marks.is_empty() {
                    if let Err(e) = outbox.record_outcomes(&marks) {
                        failed = Some(e);
                        return ControlFlow::Break(());
                    }
                    marks.clear();
                }
                ControlFlow::Continue(())
            });
        if let Some(m) = &self.metrics {
            m.set_offset(self.client.server_offset().offset());
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.outbox.record_outcomes(&marks)?;
        if let Some(reason) = &last_error {
            // One line per pass, not per order: an outage must not flood the log.
            // It names the real next attempt: the probe after a hold when nothing
            // got through, else the earliest of these orders' own schedules.
            let next = if pass.delivered == 0 && pass.misconfigured.is_none() {
                // Drawn once here (jitter) and held by `step`: the log says what happens.
                let hold = backoff(&self.cfg, self.failures)
                    .min(self.cfg.recheck)
                    .max(advised);
                self.hold = hold;
                format!("next attempt (one order) in {}s", hold.as_secs())
            } else {
                format!(
                    "next attempt for them in {}s",
                    retry_delay.unwrap_or_default().as_secs()
                )
            };
            warn!(
                "upload:{}: {} order(s) not delivered: {reason}; {next}",
                self.dest, pass.retry
            );
        }
        self.scope_source_pauses(&pass, &judged)?;
        if let Some(reason) = &pass.misconfigured {
            if self.paused.as_deref() != Some(reason.as_str()) {
                error!(
                    "upload:{}: paused, the destination is misconfigured: {reason}; orders wait, probing every {}s",
                    self.dest,
                    self.cfg.probe_interval.as_secs()
                );
            }
            self.outbox.set_paused(&self.dest, Some(reason))?;
            self.outbox.note_attempt(&self.dest, Some(reason))?;
            self.paused = Some(reason.clone());
            self.draining = false;
            return Ok(pass);
        }
        // The server judged an order (delivered or rejected): the configuration works.
        if pass.delivered > 0 || pass.rejected > 0 {
            if self.paused.take().is_some() {
                info!(
                    "upload:{}: resumed: the destination accepts requests again",
                    self.dest
                );
                self.outbox.set_paused(&self.dest, None)?;
            } else if std::mem::take(&mut self.clear_stale_pause) {
                self.outbox.set_paused(&self.dest, None)?;
            }
        }
        // The cloud answered again: it delivered, or judged orders on their own data
        // (a rejection is an answer too; the probe after an outage may well be that
        // order) with nothing waiting on a transient fault.
        let answered = pass.delivered > 0 || (pass.rejected > 0 && pass.retry == 0);
        if answered {
            // Delivering again after failures: the network is back, send the backlog now.
            if self.failures > 0 {
                let moved = self.outbox.reset_due(&self.dest, now)?;
                info!(
                    "upload:{}: delivering again: sending the backlog now ({moved} order(s) brought forward)",
                    self.dest
                );
                self.draining = true;
            }
            self.failures = 0;
        } else if pass.retry > 0 {
            // Nothing got through: follow the backoff schedule.
            self.failures = self.failures.saturating_add(1);
            self.draining = false;
        }
        self.outbox
            .note_attempt(&self.dest, last_error.as_deref())?;
        Ok(pass)
    }

    /// Pauses the sources this pass found misconfigured, and resumes those whose rows
    /// the cloud judged (their identity works again).
    fn scope_source_pauses(
        &mut self,
        pass: &Pass,
        judged: &BTreeSet<String>,
    ) -> outbox::Result<()> {
        let next_probe = self.clock.now_mono() + self.cfg.probe_interval;
        for (source, reason) in &pass.paused_sources {
            let known = self.source_pauses.get(source).map(|h| h.reason.as_str());
            if known != Some(reason.as_str()) {
                error!(
                    "upload:{}: source {source} paused: {reason}; its orders wait (every other source's go on), probing one of them every {}s",
                    self.dest,
                    self.cfg.probe_interval.as_secs()
                );
            }
            self.outbox
                .set_source_paused(&self.dest, source, Some(reason))?;
            let hold = SourceHold {
                reason: reason.clone(),
                probe_at: next_probe,
            };
            self.source_pauses.insert(source.clone(), hold);
        }
        for source in judged {
            if pass.paused_sources.contains_key(source) {
                continue;
            }
            if self.source_pauses.remove(source).is_some() {
                info!(
                    "upload:{}: source {source} resumed: the destination accepts its orders again",
                    self.dest
                );
                self.outbox.set_source_paused(&self.dest, source, None)?;
            }
        }
        Ok(())
    }

    /// The sources paused for this destination, with why.
    pub fn paused_sources(&self) -> Vec<(String, String)> {
        self.source_pauses
            .iter()
            .map(|(s, h)| (s.clone(), h.reason.clone()))
            .collect()
    }

    /// Switches to draining when the wall clock jumped since the last pass; returns
    /// the jump in seconds (`now` is the wall clock, `mono` the monotonic one).
    fn notice_clock_jump(&mut self, now: i64, mono: Instant) -> Option<i64> {
        let seen = self.clock_seen.replace((now, mono));
        let jump = clock_jump(seen?, now, mono)?;
        info!(
            "upload:{}: the clock jumped by {jump} s: sending what is pending now",
            self.dest
        );
        self.draining = true;
        Some(jump)
    }

    /// Why the destination is paused, while it is.
    pub fn paused(&self) -> Option<&str> {
        self.paused.as_deref()
    }
}

/// An outcome's index in [`super::counters::OUTCOMES`].
fn outcome_class(o: &Outcome) -> usize {
    match o {
        Outcome::Delivered { .. } => 0,
        Outcome::Retry { .. } => 1,
        Outcome::Rejected { .. } => 2,
        Outcome::Misconfigured { .. } | Outcome::SourceMisconfigured { .. } => 3,
    }
}

/// How far the wall clock jumped since `seen` (wall seconds, monotonic instant), if it
/// moved more than [`CLOCK_JUMP_SECS`] differently from the monotonic clock.
fn clock_jump(seen: (i64, Instant), now: i64, mono: Instant) -> Option<i64> {
    let (wall, at) = seen;
    let elapsed = mono.saturating_duration_since(at).as_secs() as i64;
    let jump = now - (wall + elapsed);
    (jump.abs() > CLOCK_JUMP_SECS).then_some(jump)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_bounds() {
        let cfg = EngineConfig {
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(300),
            ..EngineConfig::default()
        };
        let check = |attempts: u32, lo: u64, hi: u64| {
            for _ in 0..50 {
                let d = backoff(&cfg, attempts).as_secs();
                assert!(
                    (lo..=hi).contains(&d),
                    "attempt {attempts}: {d} not in {lo}..={hi}"
                );
            }
        };
        check(0, 5, 10);
        check(1, 10, 20);
        check(3, 40, 80);
        check(10, 150, 300);
        check(1000, 150, 300);
    }

    #[test]
    fn clock_jumps_are_told_from_time_passing() {
        let t0 = Instant::now();
        let wall = 1_800_000_000;
        let check = |mono_secs: u64, wall_delta: i64, expected: Option<i64>| {
            let mono = t0 + Duration::from_secs(mono_secs);
            assert_eq!(
                clock_jump((wall, t0), wall + wall_delta, mono),
                expected,
                "{mono_secs} s passed, the wall clock moved {wall_delta} s"
            );
        };
        check(0, 0, None);
        check(600, 600, None);
        check(600, 601, None);
        check(5, 65, None);
        check(5, 66, Some(61));
        check(5, -3 * 3600 + 5, Some(-3 * 3600));
        check(10, 8 * 3600 + 10, Some(8 * 3600));
        // a box asleep (monotonic time stopped) looks like a jump forward: harmless
        check(0, 3600, Some(3600));
    }

    #[test]
    fn wake_is_remembered_until_waited_for() {
        let w = Wake::new();
        assert_eq!(w.wait(Duration::from_millis(1)), Woken::No);
        w.wake();
        assert_eq!(
            w.wait(Duration::from_secs(60)),
            Woken::Flush,
            "a wake before the wait is not lost"
        );
        assert_eq!(
            w.wait(Duration::from_millis(1)),
            Woken::No,
            "and it is consumed"
        );
        w.new_orders();
        assert_eq!(w.wait(Duration::from_secs(60)), Woken::NewOrders);
        // A flush is not weakened by new orders arriving after it.
        w.wake();
        w.new_orders();
        assert_eq!(w.wait(Duration::from_secs(60)), Woken::Flush);
        assert_eq!(w.wait(Duration::from_millis(1)), Woken::No);
    }
}
