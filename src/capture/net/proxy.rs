//! The TCP print proxy (`kind = "tcp"`): the POS prints to the box
//! (`listen`), the box prints to the real printer (`printer`), and a copy of
//! what reached the printer goes to capture.
//!
//! ```text
//!  POS ──▶ [conn thread] read ─▶ write_all(printer) ─▶ capture.data (try_send)
//!  POS ◀── [reply thread] write_all(POS) ◀─ read(printer)      (DLE EOT, GS r, ASB)
//! ```
//!
//! # Invariants
//!
//! - **One POS connection, one printer connection.** The printer is
//!   connected (within `connect_timeout`) before a byte is read from the POS;
//!   if it cannot be reached the POS connection is closed at once, so the POS
//!   reports "printer offline" as it would without the box, and nothing is
//!   captured: the box never takes a job it cannot print.
//! - **Byte-identical, in order, both ways at once.** Each direction is one
//!   thread doing read → write-all; the printer gets exactly the POS's bytes,
//!   the POS exactly the printer's replies.
//! - **Bounded memory, back-pressure to the POS.** A connection holds at most
//!   one [`NetOptions::buffer`] per direction besides the kernel's socket
//!   buffers: a slow or stuck printer stops the conn thread in its write, the
//!   POS's TCP window fills, and the POS waits, exactly as it would at the
//!   printer itself.
//! - **Capture sees what reached the printer, never holds it back.** The copy
//!   is offered after the write, with `try_send` (overflow dropped and counted).
//!   When the POS is done (or either side fails) the stream's end is sent,
//!   which ends its receipt.
//! - **A failing side ends the connection.** Printer reset mid-job → the POS
//!   connection is closed (its job failed, as without the box); POS gone →
//!   the printer connection is half-closed so what was sent still prints.
//! - **A finished job frees its slot promptly.** After the POS's FIN (or
//!   when it is closed for idling or gives way) the printer is half-closed;
//!   once it is quiet for [`NetOptions::linger`] (at most 4 × `linger` for a
//!   printer that keeps sending status) the slot is released, and
//!   the printer connection is closed as soon as the printer has acknowledged
//!   every byte (or once it has taken none for [`NetOptions::close_wait`]: a
//!   slow printer still taking a long job is never cut): a printer that
//!   keeps its side open never holds a slot, and its late replies (to a POS
//!   that left) are dropped.

use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Receiver;

use super::settings::ProxyConfig;
use super::{CaptureTx, Gate, NetOptions, NetSource, SourceStats, StreamEvent};
use super::{Slot, serve, spawn, timed_out, tune, unacked, write_all};
use crate::capture::stream::Gauge;
use crate::lifecycle::Shutdown;

/// Starts the proxy for source `name`. Capture events come out of the
/// returned receiver; it closes when the proxy has stopped.
pub fn start(
    name: &str,
    cfg: &ProxyConfig,
    opts: NetOptions,
    shutdown: &Shutdown,
) -> std::io::Result<(NetSource, Receiver<StreamEvent>)> {
    start_with(name, cfg, opts, shutdown, Arc::default())
}

/// [`start`], counting in `stats` (the daemon keeps them across restarts of
/// the source, for `status` and metrics).
pub fn start_with(
    name: &str,
    cfg: &ProxyConfig,
    opts: NetOptions,
    shutdown: &Shutdown,
    stats: Arc<SourceStats>,
) -> std::io::Result<(NetSource, Receiver<StreamEvent>)> {
    let (capture, rx) = CaptureTx::channel(name, opts.capture_capacity, stats.clone());
    let ctx = Arc::new(Ctx {
        name: name.to_string(),
        printer: cfg.printer.clone(),
        connect_timeout: cfg.connect_timeout,
        idle_timeout: cfg.peer_idle_timeout,
        opts: opts.clone(),
        shutdown: shutdown.clone(),
        stats: stats.clone(),
        capture,
        outage_logged: AtomicBool::new(false),
    });
    let gate = Gate::new(name, cfg.allow.clone(), stats.clone());
    let source = serve(
        name,
        cfg.listen,
        gate,
        cfg.max_connections,
        &opts,
        shutdown,
        Arc::new(move |pos, peer, id, slot| connection(&ctx, pos, peer, id, slot)),
    )?;
    Ok((source, rx))
}

struct Ctx {
    name: String,
    printer: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    opts: NetOptions,
    shutdown: Shutdown,
    stats: Arc<SourceStats>,
    capture: CaptureTx,
    /// An unreachable printer is logged when it goes, and when it comes back.
    outage_logged: AtomicBool,
}

/// How the POS → printer direction ended.
enum Ended {
    PosDone,
    PosFailed,
    /// Silent both ways for `peer_idle_timeout`.
    Idle,
    /// Made to give way to a new connection (every slot taken).
    Evicted,
    PrinterFailed,
    Shutdown,
}

fn connect(ctx: &Ctx) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other("the printer's name resolves to no address");
    for addr in ctx.printer.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, ctx.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn connection(ctx: &Ctx, pos: Arc<TcpStream>, peer: SocketAddr, id: u64, slot: Arc<Slot>) {
    let stats = &ctx.stats;
    let _connected = Gauge::up(&stats.connected_peers);
    let printer = match connect(ctx).and_then(|p| tune(&p, ctx.opts.poll).map(|()| p)) {
        Ok(p) => {
            stats.printer_reachable.store(true, Ordering::Relaxed);
            if ctx.outage_logged.swap(false, Ordering::Relaxed) {
                log::info!(
                    "source {}: printer {} reachable again",
                    ctx.name,
                    ctx.printer
                );
            }
            p
        }
        Err(e) => {
            stats.printer_reachable.store(false, Ordering::Relaxed);
            stats.printer_failures.fetch_add(1, Ordering::Relaxed);
            if !ctx.outage_logged.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "source {}: printer {} unreachable ({e}); POS connections are closed \
                     until it is back",
                    ctx.name,
                    ctx.printer
                );
            }
            // Closing unread: the POS sees the connection fail, as at a dead printer.
            let _ = pos.shutdown(std::net::Shutdown::Both);
            return;
        }
    };
    if let Err(e) = tune(&pos, ctx.opts.poll) {
        log::warn!("source {}: connection from {peer}: {e}", ctx.name);
        return;
    }
    let pos_done = Arc::new(AtomicBool::new(false));
    // Both threads share each socket (reads and writes on a `&TcpStream`): two
    // descriptors per connection, not four (256 connections within the usual
    // limit of 1024 open files).
    let printer = Arc::new(printer);
    let replies = {
        let (pos, printer) = (pos.clone(), printer.clone());
        let (ctx_name, done) = (format!("net-{}-{id}-r", ctx.name), pos_done.clone());
        // The reply thread borrows nothing from this one: it gets its own
        // handles and a snapshot of what it needs.
        let r = Replies {
            stats: ctx.stats.clone(),
            shutdown: ctx.shutdown.clone(),
            buffer: ctx.opts.buffer,
            linger: ctx.opts.linger,
            close_wait: ctx.opts.close_wait,
            slot: slot.clone(),
        };
        spawn(ctx_name, move || r.run(&pos, &printer, &done)).ok()
    };
    if replies.is_none() {
        log::warn!(
            "source {}: connection from {peer}: no reply path; closing",
            ctx.name
        );
        let _ = pos.shutdown(std::net::Shutdown::Both);
        let _ = printer.shutdown(std::net::Shutdown::Both);
        return;
    }
    let ended = forward(ctx, &pos, &printer, peer, id, &slot);
    match ended {
        Ended::PosDone | Ended::PosFailed | Ended::Idle | Ended::Evicted => {
            // What was sent still prints; the printer's last replies may come.
            let _ = printer.shutdown(std::net::Shutdown::Write);
            if matches!(ended, Ended::Idle | Ended::Evicted) {
                let _ = pos.shutdown(std::net::Shutdown::Both);
            }
        }
        Ended::PrinterFailed | Ended::Shutdown => {
            let _ = pos.shutdown(std::net::Shutdown::Both);
            let _ = printer.shutdown(std::net::Shutdown::Both);
        }
    }
    match ended {
        Ended::PrinterFailed => log::warn!(
            "source {}: printer {} failed during a job from {peer}; closed the POS connection",
            ctx.name,
            ctx.printer
        ),
        Ended::Idle => {
            stats.idle_closed.fetch_add(1, Ordering::Relaxed);
            log::info!(
                "source {}: {peer} silent for {}; connection closed",
                ctx.name,
                crate::settings::fmt_duration(ctx.idle_timeout)
            );
        }
        _ => {}
    }
    pos_done.store(true, Ordering::Relaxed);
    ctx.capture.end(id, Some(peer), &ctx.shutdown);
    if let Some(t) = replies {
        let _ = t.join();
    }
}

/// POS → printer, then capture: until the POS is done, a side fails, the
/// connection is idle past `peer_idle_timeout` or gives way, or shutdown.
fn forward(
    ctx: &Ctx,
    pos: &TcpStream,
    printer: &TcpStream,
    peer: SocketAddr,
    id: u64,
    slot: &Slot,
) -> Ended {
    let stats = &ctx.stats;
    let mut buf = vec![0u8; ctx.opts.buffer.max(1)];
    let mut pos_r = pos;
    loop {
        match pos_r.read(&mut buf) {
            Ok(0) if slot.evicted() => return Ended::Evicted,
            Ok(0) => return Ended::PosDone,
            Ok(n) => {
                slot.touch();
                SourceStats::add(&stats.bytes_from_pos, n);
                let (sent, failed) =
                    match slot.writing(|| write_all(printer, &buf[..n], &ctx.shutdown)) {
                        Ok(()) => (n, false),
                        Err((k, _)) => (k, true),
                    };
                SourceStats::add(&stats.bytes_to_printer, sent);
                ctx.capture.data(id, Some(peer), &buf[..sent]);
                if failed {
                    return if ctx.shutdown.is_triggered() {
                        Ended::Shutdown
                    } else {
                        Ended::PrinterFailed
                    };
                }
            }
            Err(e) if timed_out(&e) => {
                if ctx.shutdown.is_triggered() {
                    return Ended::Shutdown;
                }
                if slot.idle_for() >= ctx.idle_timeout {
                    return Ended::Idle;
                }
            }
            Err(_) if slot.evicted() => return Ended::Evicted,
            Err(_) => return Ended::PosFailed,
        }
    }
}

/// The printer → POS direction of one connection.
struct Replies {
    stats: Arc<SourceStats>,
    shutdown: Shutdown,
    buffer: usize,
    linger: Duration,
    close_wait: Duration,
    slot: Arc<Slot>,
}

impl Replies {
    fn run(&self, pos: &TcpStream, printer: &TcpStream, pos_done: &AtomicBool) {
        let mut buf = vec![0u8; self.buffer.max(1)];
        let mut pos_open = true;
        // Since when the POS is done, and since when the printer is quiet.
        let mut done_since: Option<Instant> = None;
        let mut quiet_since: Option<Instant> = None;
        // The printer's unacknowledged bytes when last looked at, and since when
        // it has taken none: a slow printer draining a big job is not cut.
        let mut unacked_was: Option<usize> = None;
        let mut stalled_since: Option<Instant> = None;
        let mut printer_r = printer;
        let printer_closed = loop {
            match printer_r.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    quiet_since = None;
                    self.slot.touch();
                    SourceStats::add(&self.stats.bytes_from_printer, n);
                    if pos_open {
                        match write_all(pos, &buf[..n], &self.shutdown) {
                            Ok(()) => SourceStats::add(&self.stats.bytes_to_pos, n),
                            // The POS left: keep reading so the printer is never
                            // closed on unread replies (that would reset the job).
                            Err(_) => pos_open = false,
                        }
                    }
                }
                Err(e) if timed_out(&e) => {
                    if self.shutdown.is_triggered() {
                        break false;
                    }
                }
                Err(_) => break false,
            }
            if pos_done.load(Ordering::Relaxed) {
                let done = *done_since.get_or_insert_with(Instant::now);
                let quiet = *quiet_since.get_or_insert_with(Instant::now);
                // The POS left and the printer has nothing more to say to it (or
                // it chatters on: automatic status back): the slot is free for
                // the next job.
                let quiet = quiet.elapsed() >= self.linger;
                if quiet || done.elapsed() >= self.linger * 4 {
                    self.slot.release();
                }
                // Closed once the printer is quiet and has taken every byte of
                // the job (closing on unacknowledged bytes, or on replies unread,
                // could cut it), or once it has taken nothing for close_wait (a
                // printer still taking a long job is waited for; where the kernel
                // cannot say, close_wait counts from the POS's end).
                let left = unacked(printer);
                if left.is_none() || left != unacked_was {
                    stalled_since = None;
                }
                unacked_was = left;
                let stalled = match left {
                    Some(_) => *stalled_since.get_or_insert_with(Instant::now),
                    None => done,
                };
                if (quiet && left == Some(0)) || stalled.elapsed() >= self.close_wait {
                    break false;
                }
            }
        };
        self.slot.release();
        if printer_closed {
            // The printer finished: so does the POS's side, cleanly.
            let _ = pos.shutdown(std::net::Shutdown::Write);
        } else {
            // Printer reset, shutdown, or the POS gone and the printer quiet:
            // end both at once.
            let _ = pos.shutdown(std::net::Shutdown::Both);
            let _ = printer.shutdown(std::net::Shutdown::Both);
        }
    }
}
