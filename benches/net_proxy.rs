//! The TCP print proxy on loopback (`cargo bench --bench net_proxy`):
//!
//! - **latency added per chunk**: a POS sends a 64-byte chunk and waits for the
//!   stand-in printer to send it back (it echoes), directly and through the
//!   proxy; the difference of the round trips' percentiles is what the proxy
//!   adds (both directions, so an upper bound on the one-way figure);
//! - **throughput**: one POS sends `BENCH_MB` (default 256) MiB in 64 KiB
//!   writes to a printer that reads as fast as it can, through the proxy, with
//!   a capture consumer draining the capture channel (every chunk is copied to
//!   capture, as in production);
//! - **peak memory with a stuck printer**: 16 POS connections write into a
//!   printer that never reads, until their writes block; the growth of this
//!   process's peak RSS (VmHWM) is what the proxy holds.
//!
//! Nothing is asserted about time; the targets (issue #12: p99 ≤ 1 ms added,
//! ≥ 50 MB/s) are compared in the printed report. The asserts check the work
//! was real (every byte arrived).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tillrelay::capture::net::settings::RawNet;
use tillrelay::capture::net::{NetOptions, NetSource, proxy};
use tillrelay::capture::stream::StreamEvent;
use tillrelay::lifecycle::Shutdown;

#[derive(Clone, Copy, PartialEq)]
enum Printer {
    Echo,
    Sink,
    Stuck,
}

/// A stand-in printer; returns its address and its received-byte counter.
fn printer(kind: Printer, stop: Arc<AtomicBool>) -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let (g, stop) = (g.clone(), stop.clone());
            std::thread::spawn(move || {
                s.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                if kind == Printer::Stuck {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return;
                }
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    g.fetch_add(n as u64, Ordering::Relaxed);
                    if kind == Printer::Echo && s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, got)
}

fn start_proxy(printer: SocketAddr, shutdown: &Shutdown) -> NetSource {
    let cfg = toml::from_str::<RawNet>(&format!(
        "listen = \"127.0.0.1:0\"\nprinter = \"{printer}\"\nallow = [\"127.0.0.1\"]\nmax_connections = 64"
    ))
    .unwrap()
    .validate_tcp()
    .unwrap();
    let (src, mut rx) = proxy::start("bench", &cfg, NetOptions::default(), shutdown).unwrap();
    // The capture consumer: takes everything, as the live loop would.
    std::thread::spawn(move || {
        let mut n = 0u64;
        while let Some(ev) = rx.blocking_recv() {
            let ev: StreamEvent = ev;
            if let tillrelay::capture::stream::StreamKind::Data(b) = ev.kind {
                n += b.len() as u64;
            }
        }
        std::hint::black_box(n);
    });
    src
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn round_trips(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let chunk = [0x41u8; 64];
    let mut back = [0u8; 64];
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 200 {
        let t = Instant::now();
        s.write_all(&chunk).unwrap();
        s.read_exact(&mut back).unwrap();
        if i >= 200 {
            out.push(t.elapsed());
        }
    }
    out.sort();
    out
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // As the daemon does at start (one malloc arena: per-thread arenas cost RSS).
    // SAFETY: mallopt only tunes glibc's allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let shutdown = Shutdown::new();
    let n = 20_000;

    // Latency.
    let (echo, _) = printer(Printer::Echo, stop.clone());
    let direct = round_trips(echo, n);
    let src = start_proxy(echo, &shutdown);
    let proxied = round_trips(src.local_addr(), n);
    println!("latency, 64-byte chunk echoed by the printer, {n} round trips:");
    for (name, p) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
        let (d, x) = (percentile(&direct, p), percentile(&proxied, p));
        println!(
            "  {name:>5}: direct {:>7.1} µs, through the proxy {:>7.1} µs, added {:>7.1} µs",
            d.as_secs_f64() * 1e6,
            x.as_secs_f64() * 1e6,
            (x.as_secs_f64() - d.as_secs_f64()) * 1e6
        );
    }

    // Throughput.
    let mb: usize = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let (sink, got) = printer(Printer::Sink, stop.clone());
    let src2 = start_proxy(sink, &shutdown);
    let total = (mb << 20) as u64;
    let chunk = vec![0x42u8; 64 * 1024];
    let t = Instant::now();
    let mut s = TcpStream::connect(src2.local_addr()).unwrap();
    let mut sent = 0u64;
    while sent < total {
        s.write_all(&chunk).unwrap();
        sent += chunk.len() as u64;
    }
    while got.load(Ordering::Relaxed) < total {
        std::thread::sleep(Duration::from_micros(200));
    }
    let secs = t.elapsed().as_secs_f64();
    drop(s);
    assert_eq!(got.load(Ordering::Relaxed), total);
    println!(
        "throughput: {mb} MiB through the proxy in {secs:.2} s = {:.0} MB/s",
        total as f64 / secs / 1e6
    );

    // Peak memory with a stuck printer.
    let (stuck, _) = printer(Printer::Stuck, stop.clone());
    let src3 = start_proxy(stuck, &shutdown);
    let before = vm_hwm_kb();
    let mut held = Vec::new();
    let mut written = 0usize;
    for _ in 0..16 {
        let mut s = TcpStream::connect(src3.local_addr()).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let chunk = vec![0x43u8; 64 * 1024];
        while let Ok(n) = s.write(&chunk) {
            written += n;
        }
        held.push(s);
    }
    let after = vm_hwm_kb();
    println!(
        "stuck printer: 16 connections took {:.1} MiB before blocking (kernel socket buffers); \
         peak RSS {} → {} kB (+{} kB)",
        written as f64 / (1 << 20) as f64,
        before,
        after,
        after.saturating_sub(before)
    );
    drop(held);
    stop.store(true, Ordering::Relaxed);
    shutdown.trigger();
    for s in [src, src2, src3] {
        s.join();
    }
}
