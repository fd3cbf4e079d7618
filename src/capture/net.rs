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
//! - **A job is never turned away while the printer can take it.** At most
//!   `max_connections` POS connections hold a slot at once (two threads each
//!   for the proxy, one for listen). While all are held the accept loop
//!   accepts at most one more (to check it against `allow`) and holds it
//!   unread; the others wait in the kernel's listen backlog, as at a printer
//!   busy with another job, and are served as slots free. If a connection has
//!   been silent for [`NetOptions::evict_after`] (no write pending), it and
//!   the others silent at least half as long give way to the admitted one
//!   waiting — all of them, since each holds
//!   a printer connection a one-connection printer would serve before the new
//!   job (a peer outside `allow` never makes one give way), counted in
//!   [`SourceStats::evicted_idle`] and logged. Nothing is accepted and closed
//!   for want of room.
//! - **Dead peers end.** TCP keepalive on every connection (POS and printer)
//!   and the source's `peer_idle_timeout` close a connection whose peer lost
//!   power or cable; its receipt ends with it.
//! - **A slot is freed when the POS is done.** After the POS's FIN the proxy
//!   releases the slot once the printer is quiet for [`NetOptions::linger`]
//!   (what remains — the printer taking the job's last bytes — runs beside
//!   the slots, until the printer has taken every byte or has taken none for
//!   [`NetOptions::close_wait`]).
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// After the POS has finished sending (or left), how long the printer may
    /// stay quiet before its connection is closed and the slot freed: its
    /// last replies have no one to go to.
    pub linger: Duration,
    /// How long a printer connection is kept, after the POS left, while the
    /// printer takes none of the job's last bytes (a paper-out or stuck
    /// printer); one still taking them is waited for. The slot is already free.
    pub close_wait: Duration,
    /// With every slot taken and a new connection waiting, once a connection
    /// has been silent this long (both ways, no write pending) it and those
    /// silent half as long give way to it.
    pub evict_after: Duration,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            poll: Duration::from_millis(200),
            capture_capacity: 256,
            buffer: 16 * 1024,
            linger: Duration::from_millis(500),
            close_wait: Duration::from_secs(30),
            evict_after: Duration::from_secs(2),
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

/// One served connection's place among the `max_connections`: what the
/// accept loop reads to find an idle one to give way, and what the
/// connection's threads report (activity, a write in progress, done with
/// its slot).
pub(crate) struct Slot {
    /// The clock `last` counts from.
    epoch: Instant,
    /// Milliseconds after `epoch` of the last byte either way.
    last: AtomicU64,
    /// Writes in progress (a write blocked on a stuck printer is busy, not idle).
    writing: AtomicU64,
    /// The slot no longer counts (the POS is done, or was made to give way).
    released: AtomicBool,
    /// Made to give way to a new connection.
    evicted: AtomicBool,
    /// The POS connection (shared with its handler), to end it from the accept loop.
    pos: Arc<TcpStream>,
    /// Wakes the accept loop when the slot is released.
    freed: std::sync::mpsc::Sender<()>,
}

impl Slot {
    fn new(pos: Arc<TcpStream>, freed: std::sync::mpsc::Sender<()>) -> Slot {
        Slot {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            writing: AtomicU64::new(0),
            released: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            pos,
            freed,
        }
    }

    /// Bytes moved (either way) just now.
    pub(crate) fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long nothing moved either way.
    pub(crate) fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }

    /// Runs `f` (a write) counted as busy: a connection waiting on its printer
    /// never gives way.
    pub(crate) fn writing<T>(&self, f: impl FnOnce() -> T) -> T {
        self.writing.fetch_add(1, Ordering::Relaxed);
        let out = f();
        self.writing.fetch_sub(1, Ordering::Relaxed);
        self.touch();
        out
    }

    /// When bytes last moved (the connection's start if none have).
    fn last_active(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Idle this long or more, and not in the middle of a write.
    fn idle_at_least(&self, d: Duration) -> bool {
        self.writing.load(Ordering::Relaxed) == 0 && self.idle_for() >= d
    }

    /// The connection no longer needs its slot (what is left of it — the
    /// printer's last replies — runs beside the `max_connections`).
    pub(crate) fn release(&self) {
        if !self.released.swap(true, Ordering::Relaxed) {
            let _ = self.freed.send(());
        }
    }

    pub(crate) fn released(&self) -> bool {
        self.released.load(Ordering::Relaxed)
    }

    /// Whether the accept loop made this connection give way.
    pub(crate) fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Makes the connection give way: its slot is free at once, its POS side
    /// ended (the connection's thread sees the end and finishes its receipt).
    fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.release();
        let _ = self.pos.shutdown(std::net::Shutdown::Both);
    }
}

/// A connection handler: the accepted stream, its peer, its stream id, its slot.
pub(crate) type Handler = Arc<dyn Fn(Arc<TcpStream>, SocketAddr, u64, Arc<Slot>) + Send + Sync>;

/// A connection's thread and its slot.
struct Served {
    thread: JoinHandle<()>,
    slot: Arc<Slot>,
    peer: SocketAddr,
}

/// Binds `listen` and serves it on a thread: each admitted connection runs
/// `handler` on a thread of its own, at most `max_connections` holding a slot
/// at once. While all are held, new connections wait in the kernel's listen
/// backlog (as at a printer busy with another job) — unless some have been
/// idle [`NetOptions::evict_after`]: those then give way.
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
    let evict_after = opts.evict_after;
    let st = stats.clone();
    let thread = spawn(format!("net-{name}-accept"), move || {
        let mut conns: Vec<Served> = Vec::new();
        let (freed_tx, freed) = std::sync::mpsc::channel::<()>();
        let mut next_id = 1u64;
        let mut accept_failing = false;
        // One admitted connection waiting for a slot (the others wait in the
        // kernel's backlog). Only an admitted peer can make an idle one give way.
        let mut waiting: Option<(TcpStream, SocketAddr)> = None;
        while !shutdown.is_triggered() {
            while freed.try_recv().is_ok() {}
            conns.retain(|c| !c.thread.is_finished());
            let held = conns.iter().filter(|c| !c.slot.released()).count();
            let full = held >= max_connections;
            if waiting.is_none() {
                // Full: only look whether someone waits, accepting nothing more.
                let wait = if full { Duration::ZERO } else { poll };
                match poll_fd(listener.as_raw_fd(), libc::POLLIN, wait) {
                    Ok(true) => {}
                    Ok(false) => {
                        if full {
                            let _ = freed.recv_timeout(poll);
                        }
                        continue;
                    }
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
                waiting = Some((stream, peer));
            }
            if full {
                // The idle connections give way to the one waiting — all of
                // them: each holds a printer connection, and a printer that
                // serves one connection at a time would keep the new job
                // behind every one of them. Else it waits (its bytes in the
                // kernel) until a slot frees.
                // Once one has been silent `evict_after`, those silent half as
                // long go with it (connections left by a POS that lost power
                // seldom went silent at the very same moment).
                let idle: Vec<&Served> = conns
                    .iter()
                    .filter(|c| !c.slot.released() && c.slot.idle_at_least(evict_after / 2))
                    .collect();
                // The one silent longest: it must be silent `evict_after`.
                let first = idle.iter().min_by_key(|c| c.slot.last_active());
                match first.filter(|c| c.slot.idle_at_least(evict_after)) {
                    Some(first) => {
                        st.evicted_idle
                            .fetch_add(idle.len() as u64, Ordering::Relaxed);
                        log::warn!(
                            "source {name}: all {max_connections} connections taken; {} idle \
                             one(s) give way to a new one ({} silent {}s)",
                            idle.len(),
                            first.peer,
                            first.slot.idle_for().as_secs()
                        );
                        for c in idle {
                            c.slot.evict();
                        }
                    }
                    None => {
                        let _ = freed.recv_timeout(poll);
                    }
                }
                continue;
            }
            let Some((stream, peer)) = waiting.take() else {
                continue;
            };
            let id = next_id;
            next_id += 1;
            st.connections.fetch_add(1, Ordering::Relaxed);
            let stream = Arc::new(stream);
            let slot = Arc::new(Slot::new(stream.clone(), freed_tx.clone()));
            let (h, s) = (handler.clone(), slot.clone());
            match spawn(format!("net-{name}-{id}"), move || {
                h(stream, peer, id, s.clone());
                s.release();
            }) {
                Ok(thread) => conns.push(Served { thread, slot, peer }),
                Err(e) => log::error!("source {name}: cannot start a connection thread: {e}"),
            }
        }
        for c in conns {
            let _ = c.thread.join();
        }
    })?;
    Ok(NetSource {
        thread,
        local,
        stats,
    })
}

/// TCP keepalive on every connection, POS and printer: a peer that lost power
/// or its cable is found dead after about [`KEEPALIVE_IDLE`] + 3 ×
/// [`KEEPALIVE_INTERVAL`] of silence, idle or not, and its connection ends.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const KEEPALIVE_COUNT: u32 = 3;

fn setsockopt_int(
    s: &TcpStream,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: a valid socket and a c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Turns TCP keepalive on (see [`KEEPALIVE_IDLE`]).
pub(crate) fn keepalive(s: &TcpStream) -> std::io::Result<()> {
    setsockopt_int(s, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    setsockopt_int(
        s,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPIDLE,
        KEEPALIVE_IDLE.as_secs() as libc::c_int,
    )?;
    setsockopt_int(
        s,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        KEEPALIVE_INTERVAL.as_secs() as libc::c_int,
    )?;
    setsockopt_int(
        s,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPCNT,
        KEEPALIVE_COUNT as libc::c_int,
    )
}

/// Bytes written to `s` that its peer has not acknowledged yet (`SIOCOUTQ`);
/// None where the kernel cannot say.
pub(crate) fn unacked(s: &TcpStream) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: a valid socket; TIOCOUTQ (= SIOCOUTQ) writes one c_int.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (r == 0).then_some(n.max(0) as usize)
}

/// Prepares an accepted or connected stream: blocking with short timeouts
/// (so shutdown is seen), no Nagle delay (status replies are single bytes),
/// keepalive on.
pub(crate) fn tune(s: &TcpStream, poll: Duration) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_nodelay(true)?;
    keepalive(s)?;
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
