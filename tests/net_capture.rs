//! The network sources (print proxy, pushed text) against real sockets on
//! 127.0.0.1 and a stand-in printer that answers status queries (`DLE EOT n`
//! → one status byte) and can be slow, stuck, down, or reset mid-job; and the
//! device source against pseudo-terminals standing in for the USB printer
//! gadget and the printer. Every wait is bounded; nothing sleeps a fixed
//! long time.

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{fixture, wait_until};
use serialport::{SerialPort, TTYPort};
use tillrelay::capture::device::{self, DeviceOptions, RawDevice};
use tillrelay::capture::escpos::CodePage;
use tillrelay::capture::net::settings::RawNet;
use tillrelay::capture::net::{NetOptions, NetSource, listen, proxy};
use tillrelay::capture::receipt::{ReceiptRules, split_bytes};
use tillrelay::capture::stream::{Demux, SourceStats, StreamEvent, StreamKind};
use tillrelay::lifecycle::Shutdown;
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(20);

// ───────────────────────────── the stand-in printer ─────────────────────────────

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Reads at once, answers every `DLE EOT n`.
    Normal,
    /// Takes 256 bytes a millisecond.
    Slow,
    /// Never reads.
    Stuck,
    /// Resets the connection (RST) once it has read this many bytes.
    ResetAfter(usize),
    /// As `Normal`, but keeps its side open after the proxy's FIN (until the
    /// test ends), as some printers do.
    KeepOpen,
    /// Reads nothing until [`Printer::release`], then as `Normal`.
    Held,
    /// As `KeepOpen`, and sends a status byte every 50 ms for ever (automatic
    /// status back), before and after the proxy's FIN.
    Chatty,
}

/// What each printer connection has received so far.
type Conns = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A raw-TCP receipt printer on 127.0.0.1: what each connection received.
struct Printer {
    addr: SocketAddr,
    conns: Conns,
    replies: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Printer {
    fn start(mode: Mode) -> Printer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let conns: Conns = Arc::default();
        let replies = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let released = Arc::new(AtomicBool::new(false));
        let (c, r, s, rel) = (
            conns.clone(),
            replies.clone(),
            stop.clone(),
            released.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut threads = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((sock, _)) => {
                        let got = Arc::new(Mutex::new(Vec::new()));
                        c.lock().unwrap().push(got.clone());
                        let (r, s, rel) = (r.clone(), s.clone(), rel.clone());
                        threads.push(std::thread::spawn(move || {
                            serve(sock, mode, &got, &r, &s, &rel)
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for t in threads {
                let _ = t.join();
            }
        });
        Printer {
            addr,
            conns,
            replies,
            stop,
            released,
            thread: Some(thread),
        }
    }

    /// A `Held` printer starts reading.
    fn release(&self) {
        self.released.store(true, Ordering::Relaxed);
    }

    /// What each connection received, in connection order.
    fn received(&self) -> Vec<Vec<u8>> {
        let conns = self.conns.lock().unwrap();
        conns.iter().map(|c| c.lock().unwrap().clone()).collect()
    }

    fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut s: TcpStream,
    mode: Mode,
    got: &Mutex<Vec<u8>>,
    replies: &AtomicU64,
    stop: &AtomicBool,
    released: &AtomicBool,
) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = vec![0u8; if mode == Mode::Slow { 256 } else { 8192 }];
    // The last two bytes seen, to find DLE EOT n split across reads.
    let mut tail: Vec<u8> = Vec::new();
    let mut last_chat = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if mode == Mode::Stuck || (mode == Mode::Held && !released.load(Ordering::Relaxed)) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if mode == Mode::Chatty && last_chat.elapsed() >= Duration::from_millis(50) {
            let _ = s.write_all(&[0x14]);
            last_chat = Instant::now();
        }
        let n = match s.read(&mut buf) {
            Ok(0) if mode == Mode::Chatty => {
                while !stop.load(Ordering::Relaxed) {
                    let _ = s.write_all(&[0x14]);
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            Ok(0) if mode == Mode::KeepOpen => {
                // The proxy's FIN: this printer keeps its side open regardless.
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return;
            }
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        };
        let total = {
            let mut g = got.lock().unwrap();
            g.extend_from_slice(&buf[..n]);
            g.len()
        };
        if let Mode::ResetAfter(k) = mode {
            if total >= k {
                reset(s);
                return;
            }
        }
        for &b in &buf[..n] {
            tail.push(b);
            if tail.len() > 3 {
                tail.remove(0);
            }
            if tail.len() == 3 && tail[0] == 0x10 && tail[1] == 0x04 {
                // n = 1: printer status, online, drawer closed.
                let _ = s.write_all(&[0x12 | (tail[2] & 0x01)]);
                replies.fetch_add(1, Ordering::Relaxed);
                tail.clear();
            }
        }
        if mode == Mode::Slow {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What the stand-in printer answers to a stream: one byte per `DLE EOT n`.
fn status_replies(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut tail: Vec<u8> = Vec::new();
    for &b in stream {
        tail.push(b);
        if tail.len() > 3 {
            tail.remove(0);
        }
        if tail.len() == 3 && tail[0] == 0x10 && tail[1] == 0x04 {
            out.push(0x12 | (tail[2] & 0x01));
            tail.clear();
        }
    }
    out
}

/// Closes with SO_LINGER 0: the peer sees a reset, as when a printer reboots.
fn reset(s: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

// ───────────────────────────── the proxy and the POS ─────────────────────────────

fn opts() -> NetOptions {
    NetOptions {
        poll: Duration::from_millis(20),
        close_wait: Duration::from_secs(2),
        ..NetOptions::default()
    }
}

struct Running {
    source: Option<NetSource>,
    rx: Receiver<StreamEvent>,
    shutdown: Shutdown,
    stats: Arc<SourceStats>,
    /// Per stream: the bytes captured and whether its end came.
    streams: BTreeMap<u64, (Vec<u8>, bool)>,
    events: Vec<StreamEvent>,
}

impl Running {
    fn proxy(printer: SocketAddr, allow: &str) -> Running {
        Running::proxy_with(printer, allow, opts())
    }

    fn proxy_with(printer: SocketAddr, allow: &str, opts: NetOptions) -> Running {
        Running::proxy_keys(printer, allow, "", opts)
    }

    /// A proxy with `extra` keys.
    fn proxy_keys(printer: SocketAddr, allow: &str, extra: &str, opts: NetOptions) -> Running {
        let cfg = toml::from_str::<RawNet>(&format!(
            "listen = \"127.0.0.1:0\"\nprinter = \"{printer}\"\nallow = [{allow}]\nconnect_timeout = \"1s\"\n{extra}"
        ))
        .unwrap()
        .validate_tcp()
        .unwrap();
        let shutdown = Shutdown::new();
        let (source, rx) = proxy::start("till", &cfg, opts, &shutdown).unwrap();
        Running::new(source, rx, shutdown)
    }

    fn listen(protocol: &str, allow: &str) -> Running {
        Running::listen_with(protocol, allow, "peer_idle_timeout = \"300ms\"")
    }

    /// A listen source with `extra` keys.
    fn listen_with(protocol: &str, allow: &str, extra: &str) -> Running {
        let cfg = toml::from_str::<RawNet>(&format!(
            "listen = \"127.0.0.1:0\"\nprotocol = \"{protocol}\"\nallow = [{allow}]\n{extra}"
        ))
        .unwrap()
        .validate_listen()
        .unwrap();
        let shutdown = Shutdown::new();
        let (source, rx) = listen::start("nvr", &cfg, opts(), &shutdown).unwrap();
        Running::new(source, rx, shutdown)
    }

    fn new(source: NetSource, rx: Receiver<StreamEvent>, shutdown: Shutdown) -> Running {
        Running {
            stats: source.stats(),
            source: Some(source),
            rx,
            shutdown,
            streams: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.source.as_ref().unwrap().local_addr()
    }

    fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            let s = self.streams.entry(ev.stream).or_default();
            match &ev.kind {
                StreamKind::Data(b) => {
                    assert!(!s.1, "data after the end of stream {}", ev.stream);
                    s.0.extend_from_slice(b);
                }
                StreamKind::End => s.1 = true,
            }
            self.events.push(ev);
        }
    }

    /// Waits until `n` streams have ended.
    fn ended(&mut self, n: usize) -> Vec<Vec<u8>> {
        let ok = wait_until(WAIT, || {
            self.drain();
            self.streams.values().filter(|s| s.1).count() >= n
        });
        assert!(
            ok,
            "{} of {n} streams ended",
            self.streams.values().filter(|s| s.1).count()
        );
        self.streams.values().map(|s| s.0.clone()).collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(s) = self.source.take() {
            s.join();
        }
    }
}

fn get(v: &AtomicU64) -> u64 {
    v.load(Ordering::Relaxed)
}

fn payload(name: &str, times: usize) -> Vec<u8> {
    std::fs::read(fixture(&format!("receipts/{name}.bin")))
        .unwrap()
        .repeat(times)
}

/// A POS printing `job` in random chunks, with a `DLE EOT 1` status query
/// between some of them when `queries`; returns what it sent and what came back.
fn pos_print(addr: SocketAddr, job: &[u8], seed: u64, queries: bool) -> (Vec<u8>, Vec<u8>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut back = Vec::new();
        let _ = r.read_to_end(&mut back);
        back
    });
    let mut sent = Vec::new();
    let mut rest = job;
    while !rest.is_empty() {
        let n = rng.usize(1..=700).min(rest.len());
        s.write_all(&rest[..n]).unwrap();
        sent.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if queries && rng.u8(..) < 40 {
            s.write_all(&[0x10, 0x04, 0x01]).unwrap();
            sent.extend_from_slice(&[0x10, 0x04, 0x01]);
        }
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    (sent, reader.join().unwrap())
}

/// Whether the POS's connection ends (EOF or error) within the wait.
fn closed_soon(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 64];
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
    false
}

// ───────────────────────────── the print proxy ─────────────────────────────

#[test]
fn a_job_reaches_the_printer_byte_identical_and_status_replies_reach_the_pos() {
    let printer = Printer::start(Mode::Normal);
    let mut p = Running::proxy(printer.addr, "\"127.0.0.1\"");
    let job = payload("market", 3);
    let (sent, back) = pos_print(p.addr(), &job, 7, true);
    let queries = sent.len() - job.len();
    assert!(queries > 0, "the job carried status queries");

    let captured = p.ended(1);
    assert_eq!(
        printer.received(),
        vec![sent.clone()],
        "bytes at the printer"
    );
    assert_eq!(captured, vec![sent.clone()], "bytes captured");
    assert_eq!(
        back.len() as u64,
        get(&printer.replies),
        "one status byte per query"
    );
    assert!(back.len() >= queries / 3);
    assert_eq!(
        back,
        status_replies(&sent),
        "the POS got the printer's replies, in order"
    );
    assert!(wait_until(WAIT, || get(&p.stats.connected_peers) == 0));
    assert_eq!(get(&p.stats.bytes_to_printer), sent.len() as u64);
    assert_eq!(get(&p.stats.bytes_to_pos), back.len() as u64);
    assert!(p.stats.printer_reachable.load(Ordering::Relaxed));
    assert_eq!(get(&p.stats.capture_dropped_bytes), 0);
}

#[test]
fn concurrent_connections_keep_their_streams_and_receipts_apart() {
    let printer = Printer::start(Mode::Normal);
    let mut p = Running::proxy(printer.addr, "\"127.0.0.0/8\", \"::1\"");
    let addr = p.addr();
    let jobs: Vec<Vec<u8>> = (0..4)
        .map(|i| payload(if i % 2 == 0 { "market" } else { "kiosk" }, 2 + i))
        .collect();
    let go = Arc::new(Barrier::new(jobs.len()));
    let posts: Vec<_> = jobs
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, job)| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                pos_print(addr, &job, 100 + i as u64, false).0
            })
        })
        .collect();
    let mut sent: Vec<Vec<u8>> = posts.into_iter().map(|t| t.join().unwrap()).collect();
    let captured = p.ended(jobs.len());
    sent.sort();
    let mut at_printer = printer.received();
    at_printer.sort();
    assert_eq!(
        at_printer, sent,
        "each printer connection got one POS's bytes"
    );
    let mut c = captured.clone();
    c.sort();
    assert_eq!(c, sent, "each capture stream is one POS's bytes");

    // Through the receipt chain, per connection: the same receipts as each
    // job alone would give, none mixed.
    let rules = ReceiptRules::plain(CodePage::Gb18030);
    let mut demux = Demux::new(rules.clone());
    let mut out = Vec::new();
    for ev in p.events.drain(..) {
        demux.push(ev, &mut out);
    }
    assert_eq!(demux.open_streams(), 0, "every end flushed its stream");
    for (id, bytes) in p.streams.iter().map(|(id, s)| (*id, &s.0)) {
        let want: Vec<Vec<u8>> = split_bytes(bytes, &rules)
            .into_iter()
            .map(|r| r.raw)
            .collect();
        let got: Vec<Vec<u8>> = out
            .iter()
            .filter(|r| r.stream == id)
            .map(|r| r.receipt.raw.clone())
            .collect();
        assert!(!got.is_empty());
        assert_eq!(got, want, "receipts of stream {id}");
    }
}

#[test]
fn a_stalled_capture_drops_from_capture_never_from_printing() {
    let printer = Printer::start(Mode::Normal);
    let small = NetOptions {
        capture_capacity: 2,
        buffer: 512,
        ..opts()
    };
    // Nobody drains the capture channel while the job prints.
    let p = Running::proxy_with(printer.addr, "\"127.0.0.1\"", small);
    let job = payload("market", 30);
    let (sent, back) = pos_print(p.addr(), &job, 11, true);
    assert!(wait_until(WAIT, || printer
        .received()
        .first()
        .map(Vec::len)
        == Some(sent.len())));
    assert_eq!(printer.received(), vec![sent.clone()], "every byte printed");
    assert_eq!(back, status_replies(&sent));
    let dropped = get(&p.stats.capture_dropped_bytes);
    assert!(
        dropped > 0 && dropped < sent.len() as u64,
        "{dropped} dropped"
    );
}

#[test]
fn a_slow_printer_gets_every_byte_in_order() {
    let printer = Printer::start(Mode::Slow);
    let mut p = Running::proxy(printer.addr, "\"127.0.0.1\"");
    let job = payload("kiosk", 120);
    let (sent, _) = pos_print(p.addr(), &job, 3, true);
    assert_eq!(p.ended(1), vec![sent.clone()]);
    assert_eq!(printer.received(), vec![sent]);
}

/// A slow printer still taking a long job after the POS left is waited for:
/// `close_wait` counts only while it takes nothing. (It counted from the POS's
/// end: under qemu a 10 MB job was cut after 2 s, the printer's last ~0.7 MB lost.)
#[test]
fn a_slow_printer_still_taking_a_job_after_the_pos_left_is_never_cut() {
    let printer = Printer::start(Mode::Slow);
    let opts = NetOptions {
        close_wait: Duration::from_secs(2),
        ..opts()
    };
    let p = Running::proxy_with(printer.addr, "\"127.0.0.1\"", opts);
    // Far more than the socket buffers hold at once: at 256 bytes a millisecond
    // the printer is still taking it seconds after the POS's FIN.
    let job = tagged(&payload("market", 600), 1);
    let _pos = pos_job(p.addr(), &job);
    assert!(
        wait_until(WAIT, || printer.received().first().map(Vec::len)
            == Some(job.len())),
        "the printer got {:?} of {} bytes (from the POS {}, to the printer {})",
        printer.received().iter().map(Vec::len).collect::<Vec<_>>(),
        job.len(),
        get(&p.stats.bytes_from_pos),
        get(&p.stats.bytes_to_printer)
    );
    assert_eq!(printer.received(), vec![job]);
}

#[test]
fn a_stuck_printer_holds_the_pos_back_without_buffering() {
    let printer = Printer::start(Mode::Stuck);
    let p = Running::proxy(printer.addr, "\"127.0.0.1\"");
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0usize;
    // A proxy that buffered would take all 256 MiB; a bounded one stops the
    // POS once the kernel's socket buffers (a few MiB on loopback) are full.
    while written < 256 << 20 {
        match s.write(&chunk) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    assert!(
        written < 32 << 20,
        "the POS wrote {written} bytes into a stuck printer"
    );
    assert_eq!(get(&p.stats.connected_peers), 1);
}

#[test]
fn an_unreachable_printer_closes_the_pos_connection_at_once() {
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut p = Running::proxy(gone, "\"127.0.0.1\"");
    let mut s = TcpStream::connect(p.addr()).unwrap();
    let _ = s.write_all(b"a job it cannot print\n");
    assert!(closed_soon(&mut s), "the POS connection was closed");
    assert!(wait_until(WAIT, || get(&p.stats.printer_failures) == 1));
    assert!(!p.stats.printer_reachable.load(Ordering::Relaxed));
    p.drain();
    assert!(p.events.is_empty(), "nothing captured of a job not printed");
}

#[test]
fn a_printer_reset_mid_job_ends_the_pos_connection_and_the_receipt() {
    let printer = Printer::start(Mode::ResetAfter(2000));
    let mut p = Running::proxy(printer.addr, "\"127.0.0.1\"");
    let job = payload("market", 40);
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    let mut sent = 0;
    for piece in job.chunks(500) {
        match s.write_all(piece) {
            Ok(()) => sent += piece.len(),
            Err(_) => break,
        }
    }
    assert!(closed_soon(&mut s), "the POS saw its job fail");
    let captured = p.ended(1).remove(0);
    let got = printer.received().remove(0);
    assert!(
        got.len() >= 2000 && job.starts_with(&got),
        "the printer got a prefix"
    );
    assert!(job.starts_with(&captured), "capture is a prefix of the job");
    assert!(captured.len() >= got.len() && captured.len() <= sent);
}

#[test]
fn peers_outside_allow_are_refused_and_counted() {
    let printer = Printer::start(Mode::Normal);
    let mut p = Running::proxy(printer.addr, "\"10.9.9.9\", \"192.168.0.0/16\"");
    for _ in 0..3 {
        let mut s = TcpStream::connect(p.addr()).unwrap();
        let _ = s.write_all(b"injected order\n");
        assert!(closed_soon(&mut s));
    }
    assert!(wait_until(WAIT, || get(&p.stats.refused_peers) == 3));
    assert_eq!(printer.connections(), 0, "the printer never saw them");
    p.drain();
    assert!(p.events.is_empty());
}

/// A POS sending `job` and half-closing, as a job ends; never waits for the
/// proxy (and ignores a refusal: the printer's bytes say what printed).
/// Returns the connection, kept open (dropping it unread could reset it).
fn pos_job(addr: SocketAddr, job: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(job);
    let _ = s.shutdown(std::net::Shutdown::Write);
    s
}

/// `job` tagged with `i`, so that each job is known at the printer.
fn tagged(job: &[u8], i: usize) -> Vec<u8> {
    let mut j = format!("JOB {i:04}\n").into_bytes();
    j.extend_from_slice(job);
    j
}

/// Issue #24: POS connections that went silent (a POS that lost power looks
/// like this) hold every slot; a new job still prints: the idle ones give
/// way (each holds a printer connection a one-connection printer would serve
/// first), counted, their connections and streams ended.
#[test]
fn idle_connections_give_way_so_a_new_job_prints() {
    let printer = Printer::start(Mode::Normal);
    let mut p = Running::proxy_keys(printer.addr, "\"127.0.0.1\"", "max_connections = 2", opts());
    // Two silent POS, one after the other (each served: its printer connection made).
    let mut silent = Vec::new();
    for n in 1..=2 {
        silent.push(TcpStream::connect(p.addr()).unwrap());
        assert!(wait_until(WAIT, || printer.connections() == n));
    }
    let job = tagged(&payload("kiosk", 1), 1);
    let _pos = pos_job(p.addr(), &job);
    assert!(
        wait_until(WAIT, || printer.received().contains(&job)),
        "the job never printed: {} printer connections",
        printer.connections()
    );
    // Both: silent since well before the job came (within one second of each other).
    assert_eq!(get(&p.stats.evicted_idle), 2);
    for s in &mut silent {
        s.set_read_timeout(Some(WAIT)).unwrap();
        assert!(matches!(s.read(&mut [0u8; 16]), Ok(0)));
    }
    p.ended(3);
}

/// Issue #24: a POS connection silent both ways for `peer_idle_timeout` is
/// closed (its receipt ended, counted); one that keeps printing is not.
#[test]
fn a_connection_silent_past_peer_idle_timeout_is_closed() {
    let printer = Printer::start(Mode::Normal);
    let mut p = Running::proxy_keys(
        printer.addr,
        "\"127.0.0.1\"",
        "peer_idle_timeout = \"300ms\"",
        opts(),
    );
    let mut silent = TcpStream::connect(p.addr()).unwrap();
    silent.write_all(b"HALF A RECEIPT\n").unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    assert!(matches!(silent.read(&mut [0u8; 16]), Ok(0)));
    let got = p.ended(1);
    assert_eq!(got, vec![b"HALF A RECEIPT\n".to_vec()]);
    assert_eq!(get(&p.stats.idle_closed), 1);
    // What it sent printed.
    assert!(wait_until(WAIT, || printer.received() == got));
}

/// Issue #24: with every slot busy (a job blocked on a printer that does not
/// read yet), a new POS is not accepted and closed: it waits in the listen
/// backlog, as at the printer itself, and prints once a slot frees.
#[test]
fn a_new_connection_waits_in_the_backlog_while_every_slot_is_busy() {
    let printer = Printer::start(Mode::Held);
    let mut p = Running::proxy_keys(printer.addr, "\"127.0.0.1\"", "max_connections = 1", opts());
    let addr = p.addr();
    // Bigger than every socket buffer on the way: the proxy's write blocks.
    let big = tagged(&payload("market", 3000), 1);
    let first = {
        let big = big.clone();
        std::thread::spawn(move || pos_job(addr, &big))
    };
    let stats = p.stats.clone();
    assert!(wait_until(WAIT, || get(&stats.bytes_from_pos) > 0));
    let job = tagged(&payload("kiosk", 1), 2);
    let _second = pos_job(addr, &job);
    printer.release();
    let _first = first.join().unwrap();
    assert!(
        wait_until(WAIT, || printer.received()
            == vec![big.clone(), job.clone()]),
        "the printer got {:?} bytes",
        printer.received().iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(get(&p.stats.refused_busy), 0);
    assert_eq!(
        get(&p.stats.evicted_idle),
        0,
        "a busy connection never gives way"
    );
    p.ended(2);
}

/// Issue #24: a finished job gives its slot back promptly whether the printer
/// closes its side after the proxy's FIN, keeps it open, or keeps it open and
/// sending status: jobs sent one right after another through one slot all
/// print, none is turned away.
#[test]
fn a_finished_job_frees_its_slot_whether_the_printer_closes_or_not() {
    for mode in [Mode::KeepOpen, Mode::Normal, Mode::Chatty] {
        let printer = Printer::start(mode);
        let mut p =
            Running::proxy_keys(printer.addr, "\"127.0.0.1\"", "max_connections = 1", opts());
        let jobs: Vec<Vec<u8>> = (0..4).map(|i| tagged(&payload("kiosk", 1), i)).collect();
        let _held: Vec<TcpStream> = jobs.iter().map(|j| pos_job(p.addr(), j)).collect();
        assert!(
            wait_until(WAIT, || printer.received() == jobs),
            "printed {} of {} jobs",
            printer
                .received()
                .iter()
                .filter(|r| jobs.contains(r))
                .count(),
            jobs.len()
        );
        assert_eq!(get(&p.stats.refused_busy), 0);
        p.ended(4);
    }
}

/// Issue #24: TCP keepalive is on for the POS's and the printer's connection
/// (a peer that lost power is found dead even while the proxy waits on it).
#[test]
fn keepalive_is_on_for_both_sides_of_a_proxied_connection() {
    fn keepalive_of(fd: i32) -> (i32, i32) {
        let get = |level, opt| {
            let mut v: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a valid socket and an int of the size given.
            unsafe {
                libc::getsockopt(
                    fd,
                    level,
                    opt,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            v
        };
        (
            get(libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            get(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        )
    }
    let printer = Printer::start(Mode::Normal);
    let p = Running::proxy(printer.addr, "\"127.0.0.1\"");
    let pos = TcpStream::connect(p.addr()).unwrap();
    assert!(wait_until(WAIT, || printer.connections() == 1));
    // The proxy's own sockets, found in this process's descriptors by their
    // addresses: the one accepted from `pos`, and the one connected to the printer.
    let (pos_local, pos_peer) = (pos.local_addr().unwrap(), pos.peer_addr().unwrap());
    let mut seen = Vec::new();
    assert!(wait_until(WAIT, || {
        seen.clear();
        for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let Ok(fd) = fd.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Some((local, peer)) = sock_addrs(fd) else {
                continue;
            };
            let accepted = local == pos_peer && peer == pos_local;
            let to_printer = peer == printer.addr && local.port() != printer.addr.port();
            if accepted || to_printer {
                seen.push((accepted, keepalive_of(fd)));
            }
        }
        seen.iter().any(|s| s.0) && seen.iter().any(|s| !s.0)
    }));
    for (accepted, (on, idle)) in &seen {
        assert_eq!(
            *on,
            1,
            "keepalive off on the {} side",
            if *accepted { "POS" } else { "printer" }
        );
        assert_eq!(*idle, 60);
    }
}

/// A TCP socket's local and peer addresses (None for anything else).
fn sock_addrs(fd: i32) -> Option<(SocketAddr, SocketAddr)> {
    fn addr(fd: i32, peer: bool) -> Option<SocketAddr> {
        // SAFETY: zeroed sockaddr_in is valid; its size is given.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let p = (&mut sa as *mut libc::sockaddr_in).cast();
        // SAFETY: as above.
        let r = unsafe {
            if peer {
                libc::getpeername(fd, p, &mut len)
            } else {
                libc::getsockname(fd, p, &mut len)
            }
        };
        if r != 0 || sa.sin_family != libc::AF_INET as libc::sa_family_t {
            return None;
        }
        let ip = std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        Some(SocketAddr::new(ip.into(), u16::from_be(sa.sin_port)))
    }
    Some((addr(fd, false)?, addr(fd, true)?))
}

// ───────────────────────────── pushed text ─────────────────────────────

#[test]
fn pushed_tcp_connections_are_streams_of_their_own() {
    let mut l = Running::listen("tcp", "\"127.0.0.1\"");
    let addr = l.addr();
    let jobs = [payload("kiosk", 1), payload("market", 2)];
    let posts: Vec<_> = jobs
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, job)| std::thread::spawn(move || pos_print(addr, &job, i as u64, false)))
        .collect();
    for t in posts {
        assert!(t.join().unwrap().1.is_empty(), "nothing is written back");
    }
    let mut got = l.ended(2);
    got.sort();
    let mut want = jobs.to_vec();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn udp_datagrams_are_keyed_by_peer_and_end_when_the_peer_goes_quiet() {
    let mut l = Running::listen("udp", "\"127.0.0.0/8\"");
    // Two POS: two addresses (a sender is its address, whatever its port).
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.2:0").unwrap();
    let (ja, jb) = (payload("kiosk", 1), payload("market", 1));
    // Interleaved datagrams of 200 bytes: loopback does not lose or reorder them.
    let (mut ca, mut cb) = (ja.chunks(200), jb.chunks(200));
    loop {
        let (x, y) = (ca.next(), cb.next());
        if x.is_none() && y.is_none() {
            break;
        }
        if let Some(x) = x {
            a.send_to(x, l.addr()).unwrap();
        }
        if let Some(y) = y {
            b.send_to(y, l.addr()).unwrap();
        }
    }
    let mut got = l.ended(2);
    got.sort();
    let mut want = vec![ja, jb];
    want.sort();
    assert!(
        got == want,
        "the two senders' streams differ from what they sent"
    );
    let peers: Vec<SocketAddr> = l.events.iter().filter_map(|e| e.peer).collect();
    assert!(peers.contains(&a.local_addr().unwrap()));
    assert!(peers.contains(&b.local_addr().unwrap()));
}

/// Issue #24: a burst of pushed connections beyond `max_connections` (all
/// connected and written before any closes), then a long run of them one after
/// another: every one is captured whole; none is turned away.
#[test]
fn pushed_tcp_bursts_and_runs_beyond_max_connections_are_all_captured() {
    let mut l = Running::listen("tcp", "\"127.0.0.1\"");
    let addr = l.addr();
    let n = 32;
    let all_written = Arc::new(Barrier::new(n + 1));
    let jobs: Vec<Vec<u8>> = (0..n).map(|i| tagged(&payload("kiosk", 1), i)).collect();
    let posts: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|job| {
            let b = all_written.clone();
            std::thread::spawn(move || {
                let s = pos_job(addr, &job);
                b.wait();
                drop(s);
            })
        })
        .collect();
    all_written.wait();
    for t in posts {
        t.join().unwrap();
    }
    l.ended(n);
    let mut want = jobs;
    for i in 0..100 {
        let job = tagged(&payload("market", 1), 1000 + i);
        drop(pos_job(addr, &job));
        want.push(job);
        l.drain();
    }
    let mut got = l.ended(n + 100);
    got.sort();
    want.sort();
    assert!(
        got == want,
        "{} of {} pushes captured whole",
        got.iter().filter(|g| want.contains(g)).count(),
        want.len()
    );
    assert_eq!(get(&l.stats.refused_busy), 0);
}

/// Issue #24: a POS that sends each receipt from a new UDP source port is one
/// sender (its address); each port change ends a receipt, so 40 receipts from
/// 40 ports are 40 streams, none refused for want of room.
#[test]
fn udp_receipts_from_a_new_port_each_are_all_captured() {
    let mut l = Running::listen("udp", "\"127.0.0.1\"");
    let jobs: Vec<Vec<u8>> = (0..40).map(|i| tagged(&payload("kiosk", 1), i)).collect();
    for job in &jobs {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        for chunk in job.chunks(1200) {
            sock.send_to(chunk, l.addr()).unwrap();
        }
        l.drain();
    }
    let got = l.ended(40);
    assert!(
        got == jobs,
        "{} of 40 receipts captured whole",
        got.iter().filter(|g| jobs.contains(g)).count()
    );
    assert_eq!(get(&l.stats.refused_busy), 0);
}

// ───────────────────────────── the device stream ─────────────────────────────

/// A pty pair: (wire end held by the test, device end kept open, device path).
fn pty() -> (TTYPort, TTYPort, String) {
    let (mut wire, dev, path) = common::pty::Pty::with_default_timeout().into_parts();
    wire.set_timeout(Duration::from_millis(50)).unwrap();
    (wire, dev, path)
}

/// Reads from a pty end until `n` bytes came or [`WAIT`] ran out.
fn receive(wire: &mut TTYPort, n: usize) -> Vec<u8> {
    common::pty::receive(wire, n, WAIT)
}

#[test]
fn the_gadget_stream_reaches_the_printer_and_comes_back_after_an_unplug() {
    let dir = tempfile::tempdir().unwrap();
    let gadget = dir.path().join("g_printer0");
    let (mut pos1, _pos1_dev, pos1_path) = pty();
    let (mut prn, _prn_dev, prn_path) = pty();
    std::os::unix::fs::symlink(&pos1_path, &gadget).unwrap();
    let cfg = RawDevice {
        device: Some(gadget.display().to_string()),
        passthrough: Some(prn_path),
    }
    .validate()
    .unwrap();
    let shutdown = Shutdown::new();
    let opts = DeviceOptions {
        poll: Duration::from_millis(20),
        reopen_min: Duration::from_millis(10),
        reopen_max: Duration::from_millis(100),
        ..DeviceOptions::default()
    };
    let (tap, mut rx) = device::start("usb", &cfg, opts, &shutdown).unwrap();
    let stats = tap.stats();
    assert!(wait_until(WAIT, || get(&stats.connected_peers) == 1
        && stats.printer_reachable.load(Ordering::Relaxed)));

    let job = payload("market", 2);
    let mut rng = fastrand::Rng::with_seed(5);
    for piece in job.chunks(rng.usize(50..400)) {
        pos1.write_all(piece).unwrap();
    }
    assert_eq!(receive(&mut prn, job.len()), job, "bytes at the printer");
    prn.write_all(&[0x12]).unwrap();
    assert_eq!(receive(&mut pos1, 1), vec![0x12], "status back to the POS");

    // Unplug: the gadget goes away and comes back as another node.
    drop(pos1);
    let (mut pos2, _pos2_dev, pos2_path) = pty();
    std::fs::remove_file(&gadget).unwrap();
    std::os::unix::fs::symlink(&pos2_path, &gadget).unwrap();
    assert!(wait_until(WAIT, || get(&stats.connections) == 2
        && get(&stats.connected_peers) == 1));
    let job2 = payload("kiosk", 1);
    pos2.write_all(&job2).unwrap();
    assert_eq!(receive(&mut prn, job2.len()), job2);

    shutdown.trigger();
    tap.join();
    let mut streams: BTreeMap<u64, (Vec<u8>, bool)> = BTreeMap::new();
    while let Ok(ev) = rx.try_recv() {
        let s = streams.entry(ev.stream).or_default();
        match ev.kind {
            StreamKind::Data(b) => s.0.extend_from_slice(&b),
            StreamKind::End => s.1 = true,
        }
    }
    assert_eq!(
        streams.into_values().collect::<Vec<_>>(),
        vec![(job, true), (job2, true)],
        "one stream per plug-in, each ended"
    );
}

#[test]
fn with_the_printer_absent_the_pos_is_still_captured_and_printing_resumes_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let printer_link = dir.path().join("lp0");
    let (mut pos, _pos_dev, pos_path) = pty();
    let cfg = RawDevice {
        device: Some(pos_path),
        passthrough: Some(printer_link.display().to_string()),
    }
    .validate()
    .unwrap();
    let shutdown = Shutdown::new();
    let opts = DeviceOptions {
        poll: Duration::from_millis(20),
        reopen_min: Duration::from_millis(10),
        reopen_max: Duration::from_millis(50),
        ..DeviceOptions::default()
    };
    let (tap, mut rx) = device::start("usb", &cfg, opts, &shutdown).unwrap();
    let stats = tap.stats();
    assert!(wait_until(WAIT, || get(&stats.connected_peers) == 1
        && get(&stats.printer_failures) > 0));
    let job = payload("kiosk", 1);
    pos.write_all(&job).unwrap();
    assert!(wait_until(WAIT, || get(&stats.printer_dropped_bytes)
        == job.len() as u64));
    let mut captured = Vec::new();
    assert!(wait_until(WAIT, || {
        while let Ok(ev) = rx.try_recv() {
            if let StreamKind::Data(b) = ev.kind {
                captured.extend_from_slice(&b);
            }
        }
        captured.len() >= job.len()
    }));
    assert_eq!(captured, job, "captured while the printer was away");

    let (mut prn, _prn_dev, prn_path) = pty();
    std::os::unix::fs::symlink(&prn_path, &printer_link).unwrap();
    assert!(wait_until(WAIT, || stats
        .printer_reachable
        .load(Ordering::Relaxed)));
    let job2 = payload("market", 1);
    pos.write_all(&job2).unwrap();
    assert_eq!(receive(&mut prn, job2.len()), job2, "printing resumed");
    shutdown.trigger();
    tap.join();
}
