//! Receipts pushed to the box with no printer behind it (`kind = "listen"`),
//! as NVR POS inputs take them: receipt text or ESC/POS over TCP or UDP.
//!
//! # Invariants
//!
//! - TCP: each connection is its own stream; its end ends its receipt.
//!   Nothing is ever written back to the pusher. Connections beyond
//!   `max_connections` wait in the listen backlog (see [`super::serve`]).
//! - UDP: datagrams are keyed by the sender's *address* (IP), each sender its
//!   own stream: a POS that sends every receipt from a new source port is one
//!   sender, and a change of port ends its receipt (a new stream begins). A
//!   sender silent for `peer_idle_timeout` has its stream ended; at most
//!   `max_connections` senders have a stream at once (more datagrams are
//!   dropped, counted as busy and logged at most once a minute), so memory
//!   stays bounded.
//! - With no printer to keep waiting, capture is handed the bytes with a
//!   wait for room ([`CaptureTx::data_wait`]): a pusher is held back (TCP flow
//!   control; the kernel's UDP buffer) rather than its receipt dropped while
//!   capture journals.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Receiver;

use super::settings::{ListenConfig, Protocol};
use super::{CaptureTx, Gate, NetOptions, NetSource, SourceStats, StreamEvent};
use super::{Slot, serve, spawn, timed_out, tune};
use crate::capture::stream::Gauge;
use crate::lifecycle::Shutdown;

/// Starts listen source `name`; capture events come out of the receiver.
pub fn start(
    name: &str,
    cfg: &ListenConfig,
    opts: NetOptions,
    shutdown: &Shutdown,
) -> std::io::Result<(NetSource, Receiver<StreamEvent>)> {
    start_with(name, cfg, opts, shutdown, Arc::default())
}

/// [`start`], counting in `stats` (the daemon keeps them across restarts of
/// the source, for `status` and metrics).
pub fn start_with(
    name: &str,
    cfg: &ListenConfig,
    opts: NetOptions,
    shutdown: &Shutdown,
    stats: Arc<SourceStats>,
) -> std::io::Result<(NetSource, Receiver<StreamEvent>)> {
    let (capture, rx) = CaptureTx::channel(name, opts.capture_capacity, stats.clone());
    let gate = Gate::new(name, cfg.allow.clone(), stats.clone());
    let source = match cfg.protocol {
        Protocol::Tcp => {
            let (o, sd, st) = (opts.clone(), shutdown.clone(), stats.clone());
            let idle = cfg.peer_idle_timeout;
            let source: Arc<str> = name.into();
            serve(
                name,
                cfg.listen,
                gate,
                cfg.max_connections,
                &opts,
                shutdown,
                Arc::new(move |s, peer, id, slot: Arc<Slot>| {
                    tcp_stream(&source, &st, &capture, &o, idle, &sd, s, peer, id, &slot)
                }),
            )?
        }
        Protocol::Udp => {
            let sock = UdpSocket::bind(cfg.listen)?;
            sock.set_read_timeout(Some(opts.poll))?;
            let local = sock.local_addr()?;
            let udp = Udp {
                name: name.to_string(),
                gate,
                capture,
                opts,
                idle_timeout: cfg.peer_idle_timeout,
                shutdown: shutdown.clone(),
                stats: stats.clone(),
                max_peers: cfg.max_connections,
            };
            let thread = spawn(format!("net-{name}-udp"), move || udp.run(&sock))?;
            NetSource {
                thread,
                local,
                stats,
            }
        }
    };
    Ok((source, rx))
}

#[allow(clippy::too_many_arguments)]
fn tcp_stream(
    source: &str,
    stats: &SourceStats,
    capture: &CaptureTx,
    opts: &NetOptions,
    idle_timeout: Duration,
    shutdown: &Shutdown,
    s: Arc<TcpStream>,
    peer: SocketAddr,
    id: u64,
    slot: &Slot,
) {
    let _connected = Gauge::up(&stats.connected_peers);
    if tune(&s, opts.poll).is_err() {
        return;
    }
    let mut buf = vec![0u8; opts.buffer.max(1)];
    loop {
        match (&*s).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                slot.touch();
                SourceStats::add(&stats.bytes_from_pos, n);
                slot.writing(|| capture.data_wait(id, Some(peer), &buf[..n], shutdown));
            }
            Err(e) if timed_out(&e) => {
                if shutdown.is_triggered() {
                    break;
                }
                if slot.idle_for() >= idle_timeout {
                    stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "source {source}: {peer} silent for {}; connection closed",
                        crate::settings::fmt_duration(idle_timeout)
                    );
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    capture.end(id, Some(peer), shutdown);
}

/// A UDP sender's stream: its id, the port it sends from, when it last sent.
struct Peer {
    id: u64,
    port: u16,
    last: Instant,
}

/// How often a refused datagram is logged (the rest are counted).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

struct Udp {
    name: String,
    gate: Gate,
    capture: CaptureTx,
    opts: NetOptions,
    idle_timeout: Duration,
    shutdown: Shutdown,
    stats: Arc<SourceStats>,
    max_peers: usize,
}

impl Udp {
    fn run(mut self, sock: &UdpSocket) {
        // Keyed by address, not address and port: a POS that sends each receipt
        // from a new port is one sender, its port change a receipt boundary.
        let mut peers: HashMap<IpAddr, Peer> = HashMap::new();
        let mut next_id = 1u64;
        let mut buf = vec![0u8; 65536];
        let mut refusals_logged: Option<Instant> = None;
        let mut refused_since_log = 0u64;
        while !self.shutdown.is_triggered() {
            let got = sock.recv_from(&mut buf);
            self.expire(&mut peers);
            let (n, from) = match got {
                Ok(x) => x,
                Err(e) if timed_out(&e) => continue,
                Err(e) => {
                    // ICMP errors and the like: never fatal, never a spin.
                    log::debug!("source {}: udp receive: {e}", self.name);
                    self.shutdown.wait(self.opts.poll);
                    continue;
                }
            };
            if !self.gate.admit(from) {
                continue;
            }
            let known = peers.len();
            let id = match peers.get_mut(&from.ip()) {
                Some(p) if p.port == from.port() => {
                    p.last = Instant::now();
                    p.id
                }
                Some(p) => {
                    // A new port: the previous receipt is over, a new stream begins.
                    let old = SocketAddr::new(from.ip(), p.port);
                    self.capture.end(p.id, Some(old), &self.shutdown);
                    *p = Peer {
                        id: next_id,
                        port: from.port(),
                        last: Instant::now(),
                    };
                    next_id += 1;
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    p.id
                }
                None if known >= self.max_peers => {
                    self.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                    refused_since_log += 1;
                    if refusals_logged.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                        log::warn!(
                            "source {}: datagram from {from} dropped: {} senders already have \
                             a receipt in progress ({refused_since_log} dropped since the last \
                             such message; max_connections)",
                            self.name,
                            self.max_peers
                        );
                        refusals_logged = Some(Instant::now());
                        refused_since_log = 0;
                    }
                    continue;
                }
                None => {
                    let id = next_id;
                    next_id += 1;
                    peers.insert(
                        from.ip(),
                        Peer {
                            id,
                            port: from.port(),
                            last: Instant::now(),
                        },
                    );
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    self.stats.connected_peers.fetch_add(1, Ordering::Relaxed);
                    id
                }
            };
            SourceStats::add(&self.stats.bytes_from_pos, n);
            self.capture
                .data_wait(id, Some(from), &buf[..n], &self.shutdown);
        }
        for (ip, p) in peers.drain() {
            self.stats.connected_peers.fetch_sub(1, Ordering::Relaxed);
            self.capture
                .end(p.id, Some(SocketAddr::new(ip, p.port)), &self.shutdown);
        }
    }

    /// Ends the streams of senders silent for `peer_idle_timeout`.
    fn expire(&mut self, peers: &mut HashMap<IpAddr, Peer>) {
        let idle = self.idle_timeout;
        let gone: Vec<IpAddr> = peers
            .iter()
            .filter(|(_, p)| p.last.elapsed() >= idle)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in gone {
            if let Some(p) = peers.remove(&ip) {
                self.stats.connected_peers.fetch_sub(1, Ordering::Relaxed);
                self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                self.capture
                    .end(p.id, Some(SocketAddr::new(ip, p.port)), &self.shutdown);
            }
        }
    }
}
