//! The loop of a network or device source (`kind = "tcp"`, `"listen"`,
//! `"device"`): starts the part that forwards and hands over bytes
//! ([`super::net::proxy`], [`super::net::listen`], [`super::device`]), and
//! consumes its capture events: [`Demux`] (one receipt chain per stream) →
//! receipts → [`Journal`] (journal + orders, as for the serial tap), stamped
//! with the source's identity.
//!
//! Invariants:
//! - Forwarding never waits for this loop (the parts offer capture with
//!   `try_send`); this loop only consumes.
//! - A source that cannot start (its port taken, say) is retried every
//!   [`RESTART_EVERY`] until shutdown; the daemon never exits because of it.
//! - The counters live in one [`SourceStats`] per source, kept across such
//!   restarts, which the daemon reads for `status` (and metrics).
//! - A reload that only changes the enabled destinations hands the loop a new
//!   queue ([`Requeue`]) and leaves the part running: connections stay open.
//! - At shutdown the part's threads are joined first, then every event they
//!   sent is consumed and every stream's receipt in progress is journalled.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use tokio::sync::mpsc::Receiver;

use super::device::{self, DeviceConfig, DeviceOptions, DeviceTap};
use super::live::{Journal, Queue};
use super::net::settings::{ListenConfig, ProxyConfig};
use super::net::{NetOptions, NetSource, listen, proxy};
use super::receipt::ReceiptRules;
use super::stream::{Demux, SourceStats, StreamEvent, StreamReceipt};
use crate::lifecycle::{Heartbeat, Shutdown};
use crate::outbox::Opener;
use crate::stamp::Identity;

/// A new queue for a running stream source: a reload that changes the enabled
/// destinations hands it over ([`Requeue::hand`]) instead of restarting the
/// source, so a print proxy's POS connections stay open. Each receipt
/// journalled after the hand-over gets a delivery row per destination
/// enabled now.
#[derive(Default)]
pub struct Requeue {
    state: Mutex<RequeueState>,
    applied: Condvar,
    /// Wakes the source's loop (shared with its shutdown).
    wake: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct RequeueState {
    pending: Option<Opener>,
    applied: bool,
}

impl Requeue {
    fn state(&self) -> std::sync::MutexGuard<'_, RequeueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `opener` to the source's loop and waits (up to `within`) until
    /// it journals into the new queue; false if it did not in time (the
    /// caller then restarts the source).
    pub fn hand(&self, opener: Opener, within: Duration) -> bool {
        let mut st = self.state();
        st.pending = Some(opener);
        st.applied = false;
        self.wake.notify_one();
        let deadline = Instant::now() + within;
        while !st.applied {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                st.pending = None;
                return false;
            }
            st = self
                .applied
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// The loop's side: switches `journal` to a queue handed over, if any.
    fn apply(&self, source: &str, journal: &mut Journal) {
        let Some(opener) = self.state().pending.take() else {
            return;
        };
        let queue = match opener.open() {
            Ok(ob) => Queue::Open(ob),
            Err(e) => Queue::waiting(opener, e.to_string()),
        };
        journal.set_queue(queue);
        journal.commit_held();
        info!("source {source}: the enabled destinations changed; journalling for them now");
        self.state().applied = true;
        self.applied.notify_all();
    }
}

/// How long to wait before trying again to start a source that failed to.
pub const RESTART_EVERY: Duration = Duration::from_secs(10);

/// What a stream source runs, with its part's validated settings.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamSpec {
    Proxy(ProxyConfig),
    Listen(ListenConfig),
    Device(DeviceConfig),
}

impl StreamSpec {
    /// For logs and `status`: `tcp 0.0.0.0:9100 → 192.168.1.50:9100` and the like.
    pub fn describe(&self) -> String {
        match self {
            StreamSpec::Proxy(c) => format!("tcp {} → {}", c.listen, c.printer),
            StreamSpec::Listen(c) => format!(
                "listen {} {}",
                match c.protocol {
                    super::net::settings::Protocol::Tcp => "tcp",
                    super::net::settings::Protocol::Udp => "udp",
                },
                c.listen
            ),
            StreamSpec::Device(c) => match &c.passthrough {
                Some(p) => format!("device {} → {}", c.device.display(), p.display()),
                None => format!("device {}", c.device.display()),
            },
        }
    }
}

/// A started source's threads.
pub enum Running {
    Net(NetSource),
    Device(DeviceTap),
}

impl Running {
    /// Waits for the threads to end (after shutdown was triggered).
    pub fn join(self) {
        match self {
            Running::Net(n) => n.join(),
            Running::Device(d) => d.join(),
        }
    }

    /// The address a network source actually bound.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Running::Net(n) => Some(n.local_addr()),
            Running::Device(_) => None,
        }
    }
}

/// Starts source `name` as `spec` says, counting in `stats`.
pub fn start(
    name: &str,
    spec: &StreamSpec,
    shutdown: &Shutdown,
    stats: Arc<SourceStats>,
) -> std::io::Result<(Running, Receiver<StreamEvent>)> {
    Ok(match spec {
        StreamSpec::Proxy(c) => {
            let (s, rx) = proxy::start_with(name, c, NetOptions::default(), shutdown, stats)?;
            (Running::Net(s), rx)
        }
        StreamSpec::Listen(c) => {
            let (s, rx) = listen::start_with(name, c, NetOptions::default(), shutdown, stats)?;
            (Running::Net(s), rx)
        }
        StreamSpec::Device(c) => {
            let (s, rx) = device::start_with(name, c, DeviceOptions::default(), shutdown, stats)?;
            (Running::Device(s), rx)
        }
    })
}

/// The daemon's loop for one network or device source.
pub struct StreamWatch {
    spec: StreamSpec,
    journal: Journal,
    stats: Arc<SourceStats>,
    requeue: Arc<Requeue>,
}

impl StreamWatch {
    /// A loop for source `source` (its identity stamps its orders), counting in
    /// `stats` (the daemon keeps a clone for `status`).
    pub fn new(
        source: Identity,
        spec: StreamSpec,
        rules: ReceiptRules,
        outbox: Queue,
        stats: Arc<SourceStats>,
    ) -> StreamWatch {
        StreamWatch {
            spec,
            journal: Journal::new(source, rules, outbox),
            stats,
            requeue: Arc::default(),
        }
    }

    /// The handle a reload uses to give this loop a new queue.
    pub fn requeue(&self) -> Arc<Requeue> {
        self.requeue.clone()
    }

    /// Runs until shutdown.
    pub fn run(mut self, shutdown: &Shutdown, beat: &Heartbeat) {
        let name = self.journal.source.name.clone();
        let (running, rx) = loop {
            beat.beat();
            match start(&name, &self.spec, shutdown, self.stats.clone()) {
                Ok(r) => break r,
                Err(e) => {
                    error!(
                        "source {name}: cannot start {} (retrying every {}s): {e}",
                        self.spec.describe(),
                        RESTART_EVERY.as_secs()
                    );
                    // Wait in heartbeat-sized steps so the watchdog sees this loop alive.
                    let until = Instant::now() + RESTART_EVERY;
                    while Instant::now() < until {
                        if shutdown.wait(beat.max_sleep().min(RESTART_EVERY)) {
                            return;
                        }
                        beat.beat();
                        self.requeue.apply(&name, &mut self.journal);
                    }
                }
            }
        };
        info!("source {name}: {}", self.spec.describe());
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                error!("source {name}: {e}");
                running.join();
                return;
            }
        };
        let mut demux = Demux::new(self.journal.rules.clone()).named(&name);
        let mut rx = rx;
        let notify = self.requeue.wake.clone();
        {
            let notify = notify.clone();
            shutdown.on_trigger(move || notify.notify_one());
        }
        let mut out = Vec::new();
        let mut cuts = 0u64;
        rt.block_on(async {
            loop {
                beat.beat();
                let now = Instant::now();
                let mut wake = demux
                    .deadline()
                    .unwrap_or(now + beat.max_sleep())
                    .min(now + beat.max_sleep());
                if let Some(r) = self.journal.retry_at(now) {
                    wake = wake.min(r);
                }
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) => demux.push(ev, &mut out),
                        None => break, // the part stopped (shutdown)
                    },
                    _ = tokio::time::sleep_until(wake.into()) => {
                        demux.tick(Instant::now(), &mut out);
                    }
                    _ = notify.notified() => {}
                }
                self.requeue.apply(&name, &mut self.journal);
                self.take(&mut out);
                self.note_cuts(&demux, &mut cuts);
                demux.trim_if_due();
                if shutdown.is_triggered() {
                    break;
                }
            }
        });
        // The part's threads end on shutdown (each within its poll); what they
        // sent before is all in the channel then.
        running.join();
        while let Ok(ev) = rx.try_recv() {
            demux.push(ev, &mut out);
        }
        demux.finish(&mut out);
        self.take(&mut out);
        self.journal.report_left();
        debug!("source {name}: stream loop stopped");
    }

    /// Counts (and logs) receipts the demux cut to stay within its memory budget.
    fn note_cuts(&self, demux: &Demux, seen: &mut u64) {
        let now = demux.memory_cuts();
        if now > *seen {
            self.stats
                .cut_for_memory
                .fetch_add(now - *seen, Ordering::Relaxed);
            if *seen == 0 || now / 100 > *seen / 100 {
                warn!(
                    "source {}: receipts in progress on its connections held more than {} MiB \
                     together: the largest was cut there ({now} so far)",
                    self.journal.source.name,
                    super::stream::STREAMS_BUDGET >> 20
                );
            }
            *seen = now;
        }
    }

    fn take(&mut self, out: &mut Vec<StreamReceipt>) {
        for r in out.drain(..) {
            self.stats.note_receipt(std::time::SystemTime::now());
            self.journal.hold(r.receipt);
        }
        self.journal.commit_held();
    }
}
