//! Capture streams shared by the network and device sources ([`super::net`],
//! [`super::device`]): the events a source hands to capture, the bounded
//! channel they travel on, the per-source counters, and [`Demux`], which gives
//! each stream its own receipt chain ([`super::receipt::Pipeline`]).
//!
//! ```text
//!  conn 1 ─┐                                         ┌─▶ Pipeline(conn 1) ─▶ receipts (1, …)
//!  conn 2 ─┼─▶ CaptureTx (try_send, bounded) ─▶ rx ─▶ Demux ─▶ Pipeline(conn 2) ─▶ receipts (2, …)
//!  conn 3 ─┘   overflow dropped + counted            └─▶ …
//! ```
//!
//! # Invariants
//!
//! - **Forwarding never waits for capture.** [`CaptureTx::data`] uses
//!   `try_send`; when the channel is full the bytes are dropped from capture
//!   only, counted in [`SourceStats::capture_dropped_bytes`] and logged (loudly,
//!   but not once per chunk).
//! - **Streams never mix.** Every event carries its stream id (one per TCP
//!   connection, per UDP peer, per opening of a device); [`Demux`] keeps one
//!   decoder/segmenter per id, so two POS printing at once to a shared printer
//!   produce two clean receipts, not one interleaved one.
//! - **The end of a stream ends its receipt.** A source sends
//!   [`StreamKind::End`] when a stream is over (connection closed, peer idle,
//!   device unplugged); [`Demux`] then flushes that stream's receipt and forgets
//!   its state. An end is sent after forwarding for that stream is over, so it
//!   may wait (boundedly) for room in the channel instead of being dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{Receiver, Sender, channel};

use super::receipt::{Pipeline, ReceiptRules};
use super::segment::Receipt;
use crate::lifecycle::Shutdown;

/// What happened on one stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamKind {
    /// Bytes the POS sent (and that were forwarded, where there is a printer).
    Data(Vec<u8>),
    /// The stream is over: its receipt in progress is complete.
    End,
}

/// One capture event of a source.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    /// The stream (connection, UDP peer, device opening) it belongs to; unique
    /// within a source for the life of the process.
    pub stream: u64,
    /// The POS's address, for network streams.
    pub peer: Option<SocketAddr>,
    pub kind: StreamKind,
    /// For the segmenter's idle timeout.
    pub at: Instant,
    /// For stamping (the order's capture time).
    pub wall: SystemTime,
}

/// Counters of one network or device source, for `status` and metrics. All
/// monotonic except the gauges `connected_peers` and `printer_reachable`.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// POS connections open now (a device source: 1 while the device is open).
    pub connected_peers: AtomicU64,
    /// POS connections (datagram peers, device openings) accepted so far.
    pub connections: AtomicU64,
    /// The last attempt to reach the printer succeeded.
    pub printer_reachable: AtomicBool,
    /// Printer connections (openings) that failed.
    pub printer_failures: AtomicU64,
    pub bytes_from_pos: AtomicU64,
    pub bytes_to_printer: AtomicU64,
    pub bytes_from_printer: AtomicU64,
    pub bytes_to_pos: AtomicU64,
    /// Connections and datagrams from peers not in `allow`.
    pub refused_peers: AtomicU64,
    /// UDP datagrams dropped because `max_connections` senders had a stream
    /// (TCP connections are never turned away: they wait in the backlog).
    pub refused_busy: AtomicU64,
    /// Idle connections that gave way to a new one (every slot taken).
    pub evicted_idle: AtomicU64,
    /// Connections (UDP senders) closed after `peer_idle_timeout` of silence.
    pub idle_closed: AtomicU64,
    /// Receipts in progress cut short because the source's streams together
    /// held more than their memory budget ([`Demux`]).
    pub cut_for_memory: AtomicU64,
    /// POS bytes forwarded but not captured (capture channel full).
    pub capture_dropped_bytes: AtomicU64,
    /// Ends of stream that could not be delivered (capture stalled); the
    /// segmenter's idle timeout still closes those receipts.
    pub capture_dropped_ends: AtomicU64,
    /// POS bytes that could not reach the printer (device sources: printer absent).
    pub printer_dropped_bytes: AtomicU64,
    /// Unix milliseconds of the last receipt captured (0: none yet); set by
    /// the consumer through [`SourceStats::note_receipt`].
    pub last_receipt_ms: AtomicU64,
}

impl SourceStats {
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::Relaxed)
    }

    pub fn add(v: &AtomicU64, n: usize) {
        v.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records that a receipt came out of this source at `wall`.
    pub fn note_receipt(&self, wall: SystemTime) {
        let ms = wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.last_receipt_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

/// Decrements a gauge when dropped (a connection ends however it ends).
pub(crate) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    pub(crate) fn up(v: &'a AtomicU64) -> Gauge<'a> {
        v.fetch_add(1, Ordering::Relaxed);
        Gauge(v)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sending side of a source's capture channel, shared by its threads.
#[derive(Clone)]
pub struct CaptureTx {
    tx: Sender<StreamEvent>,
    stats: Arc<SourceStats>,
    source: Arc<str>,
    /// Dropped-byte total at the last error log (logs at each doubling).
    drops_logged: Arc<AtomicU64>,
}

/// How long an end of stream waits for room in a stalled capture channel.
const END_WAIT: Duration = Duration::from_secs(5);

impl CaptureTx {
    /// A channel of `capacity` events (at least 1) for source `source`.
    pub fn channel(
        source: &str,
        capacity: usize,
        stats: Arc<SourceStats>,
    ) -> (CaptureTx, Receiver<StreamEvent>) {
        let (tx, rx) = channel(capacity.max(1));
        let tx = CaptureTx {
            tx,
            stats,
            source: source.into(),
            drops_logged: Arc::default(),
        };
        (tx, rx)
    }

    /// A sender whose events go nowhere (for a side that captures nothing).
    pub(crate) fn none() -> CaptureTx {
        let (tx, _) = channel(1);
        CaptureTx {
            tx,
            stats: Arc::default(),
            source: "".into(),
            drops_logged: Arc::default(),
        }
    }

    fn event(stream: u64, peer: Option<SocketAddr>, kind: StreamKind) -> StreamEvent {
        StreamEvent {
            stream,
            peer,
            kind,
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// Offers a copy of `bytes` to capture; never blocks.
    pub fn data(&self, stream: u64, peer: Option<SocketAddr>, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let ev = Self::event(stream, peer, StreamKind::Data(bytes.to_vec()));
        match self.tx.try_send(ev) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let total = self
                    .stats
                    .capture_dropped_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed)
                    + bytes.len() as u64;
                let logged = self.drops_logged.load(Ordering::Relaxed);
                if (logged == 0 || total >= logged * 2)
                    && self
                        .drops_logged
                        .compare_exchange(logged, total, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    log::error!(
                        "source {}: capture is not keeping up; {total} bytes forwarded but NOT \
                         captured so far",
                        self.source
                    );
                }
            }
            // The consumer has stopped (shutdown): forwarding goes on regardless.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Hands `bytes` to capture, waiting for room (until shutdown) where no
    /// printer waits on the sender: a pushed stream (`kind = "listen"`) is
    /// held back (TCP flow control, the kernel's UDP buffer) rather than
    /// dropped while capture is busy journalling.
    pub fn data_wait(
        &self,
        stream: u64,
        peer: Option<SocketAddr>,
        bytes: &[u8],
        shutdown: &Shutdown,
    ) {
        if bytes.is_empty() {
            return;
        }
        let mut ev = Self::event(stream, peer, StreamKind::Data(bytes.to_vec()));
        loop {
            match self.tx.try_send(ev) {
                Ok(()) | Err(TrySendError::Closed(_)) => return,
                Err(TrySendError::Full(back)) => {
                    if shutdown.wait(Duration::from_millis(5)) {
                        self.stats
                            .capture_dropped_bytes
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        return;
                    }
                    ev = back;
                }
            }
        }
    }

    /// Ends `stream`: waits (up to a few seconds, or until shutdown) for room,
    /// since an end lost would leave the stream's receipt to the idle timeout.
    pub fn end(&self, stream: u64, peer: Option<SocketAddr>, shutdown: &Shutdown) {
        let mut ev = Self::event(stream, peer, StreamKind::End);
        let deadline = Instant::now() + END_WAIT;
        loop {
            match self.tx.try_send(ev) {
                Ok(()) | Err(TrySendError::Closed(_)) => return,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline || shutdown.wait(Duration::from_millis(10)) {
                        self.stats
                            .capture_dropped_ends
                            .fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    ev = back;
                }
            }
        }
    }
}

/// Waits up to `timeout` for `fd` to be ready for `events` (`libc::POLLIN`,
/// `libc::POLLOUT`); true when ready (or in error/hung up: the next read or
/// write says which). Blocking threads use it to see shutdown promptly.
pub(crate) fn poll_fd(
    fd: std::os::fd::RawFd,
    events: libc::c_short,
    timeout: Duration,
) -> std::io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, its count 1.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(n > 0)
}

/// A receipt and the stream it came from.
#[derive(Debug, Clone)]
pub struct StreamReceipt {
    pub stream: u64,
    pub peer: Option<SocketAddr>,
    pub receipt: Receipt,
}

/// How many raw bytes of receipts in progress one source's streams may hold
/// together (besides each stream's own `segment.max_bytes`): with 256
/// connections each sending a long receipt without a cut, the chains would
/// otherwise hold 256 × `max_bytes` (and about twice that in decoded text).
pub const STREAMS_BUDGET: usize = 4 << 20;

/// A stream's end that freed at least this much makes the allocator hand
/// free memory back to the system (glibc keeps it otherwise).
const TRIM_AFTER: usize = 256 << 10;

/// One receipt chain per stream: feed it a source's events in order.
///
/// Memory: the streams together hold at most [`STREAMS_BUDGET`] raw bytes of
/// receipts in progress; past it the largest is cut there (as `max_bytes`
/// would cut it, [`Boundary::MaxBytes`](super::segment::Boundary)) and
/// counted ([`Demux::memory_cuts`]), and its chain started afresh (what the
/// old one's buffers grew to is freed). Nothing is lost: the bytes are in the
/// receipt cut.
pub struct Demux {
    /// The source's name, for the log.
    source: String,
    rules: ReceiptRules,
    streams: HashMap<u64, (Option<SocketAddr>, Pipeline)>,
    scratch: Vec<Receipt>,
    budget: usize,
    memory_cuts: u64,
    /// A large stream ended: see [`Demux::trim_if_due`].
    trim_due: bool,
}

impl Demux {
    pub fn new(rules: ReceiptRules) -> Demux {
        Demux::with_budget(rules, STREAMS_BUDGET)
    }

    /// A demux whose streams hold at most `budget` raw bytes together.
    pub fn with_budget(rules: ReceiptRules, budget: usize) -> Demux {
        Demux {
            source: String::new(),
            rules,
            streams: HashMap::new(),
            scratch: Vec::new(),
            budget,
            memory_cuts: 0,
            trim_due: false,
        }
    }

    /// Receipts cut short so far to keep the streams within the budget.
    pub fn memory_cuts(&self) -> u64 {
        self.memory_cuts
    }

    /// Raw bytes the streams hold for their receipts in progress.
    pub fn buffered(&self) -> usize {
        self.streams.values().map(|(_, p)| p.buffered()).sum()
    }

    /// Cuts the largest receipts in progress until the streams are within budget.
    fn bound(&mut self, out: &mut Vec<StreamReceipt>) {
        while self.buffered() > self.budget {
            let Some((&id, (peer, p))) = self
                .streams
                .iter_mut()
                .max_by_key(|(_, (_, p))| p.buffered())
            else {
                return;
            };
            let before = p.buffered();
            p.cut(&mut self.scratch);
            let (peer, after) = (*peer, p.buffered());
            if after == 0 {
                // A fresh chain: the old one's buffers keep the capacity of the
                // long receipt they held, for as long as the connection lasts.
                *p = Pipeline::new(&self.rules);
                self.trim_due = true;
            }
            self.memory_cuts += 1;
            Self::collect(id, peer, &mut self.scratch, out);
            if after >= before {
                return; // nothing could be cut: never spin
            }
        }
    }

    /// Once the receipts handed out are dropped: if a large stream ended since
    /// the last call, hands the memory it held back to the system (glibc
    /// keeps freed heap memory in the process otherwise, and RSS stays at its
    /// peak after the connections closed).
    pub fn trim_if_due(&mut self) {
        if std::mem::take(&mut self.trim_due) {
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only returns free memory to the system.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }

    /// The demux of source `name` (named in its log lines).
    pub fn named(mut self, name: &str) -> Demux {
        self.source = name.to_string();
        self
    }

    /// Logs, once per stream, the first command its decoder could not follow
    /// (each is counted with its receipt, `malformed_commands` in `status`).
    fn note(source: &str, stream: u64, peer: Option<SocketAddr>, p: &mut Pipeline) {
        if let Some(note) = p.malformed_note() {
            let from = peer.map(|a| format!(" from {a}")).unwrap_or_default();
            log::warn!(
                "source {source}: stream {stream}{from}: a command the decoder cannot follow: \
                 {note} (said once per stream; counted as malformed_commands in status)"
            );
        }
    }

    /// Streams with state (a receipt possibly in progress).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    pub fn push(&mut self, ev: StreamEvent, out: &mut Vec<StreamReceipt>) {
        match ev.kind {
            StreamKind::Data(bytes) => {
                let rules = &self.rules;
                let (_, p) = self
                    .streams
                    .entry(ev.stream)
                    .or_insert_with(|| (ev.peer, Pipeline::new(rules)));
                p.feed(&bytes, Some(ev.at), &mut self.scratch);
                Self::note(&self.source, ev.stream, ev.peer, p);
                Self::collect(ev.stream, ev.peer, &mut self.scratch, out);
                self.bound(out);
            }
            StreamKind::End => {
                if let Some((peer, mut p)) = self.streams.remove(&ev.stream) {
                    p.finish(&mut self.scratch);
                    Self::note(&self.source, ev.stream, peer, &mut p);
                    let freed: usize = self.scratch.iter().map(|r| r.raw.len()).sum();
                    self.trim_due |= freed >= TRIM_AFTER;
                    Self::collect(ev.stream, peer, &mut self.scratch, out);
                }
            }
        }
    }

    /// Closes every stream's receipt whose idle timeout passed by `now`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<StreamReceipt>) {
        for (&id, (peer, p)) in self.streams.iter_mut() {
            p.tick(now, &mut self.scratch);
            Self::note(&self.source, id, *peer, p);
            Self::collect(id, *peer, &mut self.scratch, out);
        }
    }

    /// The earliest idle deadline of any stream.
    pub fn deadline(&self) -> Option<Instant> {
        self.streams
            .values()
            .filter_map(|(_, p)| p.deadline())
            .min()
    }

    /// Shutdown: whatever every stream holds is one receipt each.
    pub fn finish(&mut self, out: &mut Vec<StreamReceipt>) {
        let mut ids: Vec<u64> = self.streams.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some((peer, mut p)) = self.streams.remove(&id) {
                p.finish(&mut self.scratch);
                Self::note(&self.source, id, peer, &mut p);
                Self::collect(id, peer, &mut self.scratch, out);
            }
        }
    }

    fn collect(
        stream: u64,
        peer: Option<SocketAddr>,
        from: &mut Vec<Receipt>,
        out: &mut Vec<StreamReceipt>,
    ) {
        out.extend(from.drain(..).map(|receipt| StreamReceipt {
            stream,
            peer,
            receipt,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::escpos::CodePage;
    use crate::capture::segment::Boundary;

    fn ev(stream: u64, kind: StreamKind) -> StreamEvent {
        CaptureTx::event(stream, None, kind)
    }

    #[test]
    fn interleaved_streams_make_separate_receipts_ended_by_their_end() {
        let mut d = Demux::new(ReceiptRules::plain(CodePage::Gb18030));
        let mut out = Vec::new();
        d.push(ev(1, StreamKind::Data(b"A line one\n".to_vec())), &mut out);
        d.push(ev(2, StreamKind::Data(b"B line one\n".to_vec())), &mut out);
        d.push(ev(1, StreamKind::Data(b"A line two\n".to_vec())), &mut out);
        assert!(out.is_empty());
        d.push(ev(2, StreamKind::End), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].stream, 2);
        assert_eq!(out[0].receipt.lines, vec!["B line one"]);
        d.push(ev(1, StreamKind::End), &mut out);
        assert_eq!(out[1].receipt.lines, vec!["A line one", "A line two"]);
        assert_eq!(d.open_streams(), 0);
    }

    #[test]
    fn a_full_channel_drops_data_but_counts_it() {
        let stats = Arc::new(SourceStats::default());
        let (tx, mut rx) = CaptureTx::channel("t", 1, stats.clone());
        tx.data(1, None, b"kept");
        tx.data(1, None, b"dropped");
        assert_eq!(SourceStats::get(&stats.capture_dropped_bytes), 7);
        assert_eq!(
            rx.try_recv().unwrap().kind,
            StreamKind::Data(b"kept".to_vec())
        );
        tx.end(1, None, &Shutdown::new());
        assert_eq!(rx.try_recv().unwrap().kind, StreamKind::End);
    }

    #[test]
    fn streams_holding_long_receipts_without_a_cut_stay_within_the_budget() {
        // 16 connections each sending 1 MiB of lines without a cut (under each
        // stream's own max_bytes): together they would hold 16 MiB.
        let mut d = Demux::new(ReceiptRules::plain(CodePage::Gb18030));
        let line = b"6901234567892  SOME ITEM   2   3.50   7.00\n";
        let chunk: Vec<u8> = line.iter().copied().cycle().take(16 * 1024).collect();
        let (streams, rounds) = (16u64, 64);
        let mut out = Vec::new();
        let mut most_held = 0;
        for _ in 0..rounds {
            for s in 1..=streams {
                d.push(ev(s, StreamKind::Data(chunk.clone())), &mut out);
                most_held = most_held.max(d.buffered());
            }
        }
        assert!(
            most_held <= STREAMS_BUDGET + chunk.len(),
            "the streams held {most_held} bytes together"
        );
        assert!(d.memory_cuts() > 0);
        assert!(out.iter().all(|r| r.receipt.ended_by == Boundary::MaxBytes));
        // Nothing lost: each stream's receipts are, joined, what it sent.
        for s in 1..=streams {
            d.push(ev(s, StreamKind::End), &mut out);
        }
        for s in 1..=streams {
            let joined: Vec<u8> = out
                .iter()
                .filter(|r| r.stream == s)
                .flat_map(|r| r.receipt.raw.clone())
                .collect();
            assert!(joined == chunk.repeat(rounds), "stream {s} lost bytes");
        }
        assert_eq!(d.open_streams(), 0);
    }
}
