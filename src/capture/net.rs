//! Network capture sources: the TCP print proxy ([`proxy`], `kind = "tcp"`)
//! and receipts pushed over the LAN with no printer behind ([`listen`],
//! `kind = "listen"`, TCP or UDP). Both hand what the POS sent to capture as
//! [`StreamEvent`]s, one stream per connection (per UDP peer), on a bounded
//! channel ([`super::stream`]).
//!
//! ```text
//!  POS ──TCP──▶ [accept: allow? room?] ──▶ conn thread: POS ──▶ printer   (copy ─try_send─▶ capture)
//!                                          reply thread: POS ◀── printer  (DLE EOT, GS r, ASB)
//! ```
//!
//! # Invariants
//!
//! - **Only allowed peers are heard.** A connection (datagram) from an
//!   address outside `allow` is closed (dropped) before a byte is read,
//!   counted in [`SourceStats::refused_peers`] and logged once per peer.
//! - **Threads are bounded.** At most `max_connections` POS connections are
//!   served at once (two threads each for the proxy, one for listen); more are
//!   closed at once and counted in [`SourceStats::refused_busy`].
//! - **Shutdown is seen promptly.** Every blocking call (accept, read, write)
//!   waits at most [`NetOptions::poll`] before it looks at the shutdown value;
//!   the accept loop joins every connection thread before it returns.
//! - A source never exits because of a peer or the network: a failed accept,
//!   read or write ends that connection only.

pub mod allow;
pub mod listen;
pub mod proxy;
pub mod settings;

use std::collections::HashSet;
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use super::stream::poll_fd;
pub use super::stream::{CaptureTx, SourceStats, StreamEvent, StreamKind};
use crate::lifecycle::Shutdown;
use allow::AllowList;

/// Tuning of a network source's threads; the defaults suit production.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// The longest any blocking call waits before looking at shutdown.
    pub poll: Duration,
    /// Events the capture channel holds before capture drops (forwarding never
    /// does): with reads of at most `buffer` bytes, at most 4 MiB of receipts
    /// per source by default, as on the serial tap.
    pub capture_capacity: usize,
    /// Bytes read (and forwarded) at a time, per direction and connection:
    /// with the kernel's socket buffers, all a connection ever holds.
    pub buffer: usize,
    /// After the POS has finished sending, how long the proxy keeps the
    /// printer connection open for its last replies before closing both.
    pub close_wait: Duration,
    /// A UDP peer silent this long has its stream ended (its receipt flushed).
    pub udp_peer_idle: Duration,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            poll: Duration::from_millis(200),
            capture_capacity: 256,
            buffer: 16 * 1024,
            close_wait: Duration::from_secs(30),
            udp_peer_idle: Duration::from_secs(60),
        }
    }
}

/// A running network source. Trigger the shutdown value, then [`NetSource::join`].
pub struct NetSource {
    thread: JoinHandle<()>,
    local: SocketAddr,
    stats: Arc<SourceStats>,
}

impl NetSource {
    /// The address actually bound (port 0 in the config → the one chosen).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    /// Waits for the source's threads to end (after shutdown was triggered).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Who is let in; logs each refused address once (up to a bound, so a scan
/// of the LAN cannot grow memory).
pub(crate) struct Gate {
    source: Arc<str>,
    allow: AllowList,
    logged: HashSet<IpAddr>,
    stats: Arc<SourceStats>,
}

const MAX_LOGGED_PEERS: usize = 256;

impl Gate {
    pub(crate) fn new(source: &str, allow: AllowList, stats: Arc<SourceStats>) -> Gate {
        Gate {
            source: source.into(),
            allow,
            logged: HashSet::new(),
            stats,
        }
    }

    pub(crate) fn admit(&mut self, peer: SocketAddr) -> bool {
        if self.allow.allows(peer.ip()) {
            return true;
        }
        self.stats.refused_peers.fetch_add(1, Ordering::Relaxed);
        if self.logged.len() < MAX_LOGGED_PEERS && self.logged.insert(peer.ip()) {
            log::warn!(
                "source {}: refused {} (not in allow){}",
                self.source,
                peer.ip(),
                if self.logged.len() == MAX_LOGGED_PEERS {
                    "; further refused addresses are counted, not logged"
                } else {
                    ""
                }
            );
        }
        false
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(f)
}

/// A connection handler: the accepted stream, its peer, its stream id.
pub(crate) type Handler = Arc<dyn Fn(TcpStream, SocketAddr, u64) + Send + Sync>;

/// Binds `listen` and serves it on a thread: each admitted connection runs
/// `handler` on a thread of its own, at most `max_connections` at once.
pub(crate) fn serve(
    name: &str,
    listen: SocketAddr,
    mut gate: Gate,
    max_connections: usize,
    opts: &NetOptions,
    shutdown: &Shutdown,
    handler: Handler,
) -> std::io::Result<NetSource> {
    let stats = gate.stats.clone();
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let (name, poll, shutdown) = (name.to_string(), opts.poll, shutdown.clone());
    let st = stats.clone();
    let thread = spawn(format!("net-{name}-accept"), move || {
        let mut conns: Vec<JoinHandle<()>> = Vec::new();
        let mut next_id = 1u64;
        let mut accept_failing = false;
        while !shutdown.is_triggered() {
            match poll_fd(listener.as_raw_fd(), libc::POLLIN, poll) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    log::error!("source {name}: cannot wait for connections: {e}");
                    shutdown.wait(poll);
                    continue;
                }
            }
            let (stream, peer) = match listener.accept() {
                Ok(c) => {
                    accept_failing = false;
                    c
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // EMFILE and the like: wait, never spin or exit.
                    if !accept_failing {
                        log::error!("source {name}: accept failed: {e}");
                        accept_failing = true;
                    }
                    shutdown.wait(poll);
                    continue;
                }
            };
            if !gate.admit(peer) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                continue;
            }
            conns.retain(|h| !h.is_finished());
            if conns.len() >= max_connections {
                st.refused_busy.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "source {name}: {peer} turned away: {max_connections} connections already open"
                );
                let _ = stream.shutdown(std::net::Shutdown::Both);
                continue;
            }
            let id = next_id;
            next_id += 1;
            st.connections.fetch_add(1, Ordering::Relaxed);
            let h = handler.clone();
            match spawn(format!("net-{name}-{id}"), move || h(stream, peer, id)) {
                Ok(t) => conns.push(t),
                Err(e) => log::error!("source {name}: cannot start a connection thread: {e}"),
            }
        }
        for t in conns {
            let _ = t.join();
        }
    })?;
    Ok(NetSource {
        thread,
        local,
        stats,
    })
}

/// Prepares an accepted or connected stream: blocking with short timeouts
/// (so shutdown is seen), no Nagle delay (status replies are single bytes).
pub(crate) fn tune(s: &TcpStream, poll: Duration) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(poll))?;
    s.set_write_timeout(Some(poll))
}

/// Is this read/write error only the poll timeout?
pub(crate) fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Writes all of `bytes`, however long the peer takes, unless shutdown comes
/// or the connection fails; the error carries how much was written.
pub(crate) fn write_all(
    mut s: &TcpStream,
    bytes: &[u8],
    shutdown: &Shutdown,
) -> Result<(), (usize, std::io::Error)> {
    let mut done = 0;
    while done < bytes.len() {
        match s.write(&bytes[done..]) {
            Ok(0) => return Err((done, ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if timed_out(&e) => {
                if shutdown.is_triggered() {
                    return Err((done, ErrorKind::Interrupted.into()));
                }
            }
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}
