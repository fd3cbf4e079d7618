//! Receipts pushed to the box with no printer behind it (`kind = "listen"`),
//! as NVR POS inputs take them: receipt text or ESC/POS over TCP or UDP.
//!
//! # Invariants
//!
//! - TCP: each connection is its own stream; its end ends its receipt.
//!   Nothing is ever written back to the pusher.
//! - UDP: datagrams are keyed by peer address, each peer its own stream; a
//!   peer silent for [`NetOptions::udp_peer_idle`] has its stream ended, and
//!   at most `max_connections` peers have a stream at once (more are dropped
//!   and counted as busy), so memory stays bounded.
//! - Capture is offered with `try_send` as everywhere (overflow counted).

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc::Receiver;

use super::settings::{ListenConfig, Protocol};
use super::{CaptureTx, Gate, NetOptions, NetSource, SourceStats, StreamEvent};
use super::{serve, spawn, timed_out, tune};
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
            serve(
                name,
                cfg.listen,
                gate,
                cfg.max_connections,
                &opts,
                shutdown,
                Arc::new(move |s, peer, id| tcp_stream(&st, &capture, &o, &sd, s, peer, id)),
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

fn tcp_stream(
    stats: &SourceStats,
    capture: &CaptureTx,
    opts: &NetOptions,
    shutdown: &Shutdown,
    mut s: TcpStream,
    peer: SocketAddr,
    id: u64,
) {
    let _connected = Gauge::up(&stats.connected_peers);
    if tune(&s, opts.poll).is_err() {
        return;
    }
    let mut buf = vec![0u8; opts.buffer.max(1)];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                SourceStats::add(&stats.bytes_from_pos, n);
                capture.data(id, Some(peer), &buf[..n]);
            }
            Err(e) if timed_out(&e) => {
                if shutdown.is_triggered() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    capture.end(id, Some(peer), shutdown);
}

struct Udp {
    name: String,
    gate: Gate,
    capture: CaptureTx,
    opts: NetOptions,
    shutdown: Shutdown,
    stats: Arc<SourceStats>,
    max_peers: usize,
}

impl Udp {
    fn run(mut self, sock: &UdpSocket) {
        // Each peer: its stream id and when it last sent.
        let mut peers: HashMap<SocketAddr, (u64, Instant)> = HashMap::new();
        let mut next_id = 1u64;
        let mut buf = vec![0u8; 65536];
        while !self.shutdown.is_triggered() {
            let got = sock.recv_from(&mut buf);
            self.expire(&mut peers);
            let (n, peer) = match got {
                Ok(x) => x,
                Err(e) if timed_out(&e) => continue,
                Err(e) => {
                    // ICMP errors and the like: never fatal, never a spin.
                    log::debug!("source {}: udp receive: {e}", self.name);
                    self.shutdown.wait(self.opts.poll);
                    continue;
                }
            };
            if !self.gate.admit(peer) {
                continue;
            }
            let known = peers.len();
            let id = match peers.get_mut(&peer) {
                Some((id, last)) => {
                    *last = Instant::now();
                    *id
                }
                None if known >= self.max_peers => {
                    self.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                None => {
                    let id = next_id;
                    next_id += 1;
                    peers.insert(peer, (id, Instant::now()));
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    self.stats.connected_peers.fetch_add(1, Ordering::Relaxed);
                    id
                }
            };
            SourceStats::add(&self.stats.bytes_from_pos, n);
            self.capture.data(id, Some(peer), &buf[..n]);
        }
        for (peer, (id, _)) in peers.drain() {
            self.stats.connected_peers.fetch_sub(1, Ordering::Relaxed);
            self.capture.end(id, Some(peer), &self.shutdown);
        }
    }

    /// Ends the streams of peers silent for `udp_peer_idle`.
    fn expire(&mut self, peers: &mut HashMap<SocketAddr, (u64, Instant)>) {
        let idle = self.opts.udp_peer_idle;
        let gone: Vec<(SocketAddr, u64)> = peers
            .iter()
            .filter(|(_, (_, last))| last.elapsed() >= idle)
            .map(|(p, (id, _))| (*p, *id))
            .collect();
        for (peer, id) in gone {
            peers.remove(&peer);
            self.stats.connected_peers.fetch_sub(1, Ordering::Relaxed);
            self.capture.end(id, Some(peer), &self.shutdown);
        }
    }
}
