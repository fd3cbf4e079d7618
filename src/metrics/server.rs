//! The endpoint: a tiny HTTP/1.1 server on std::net, serving `GET /metrics` and
//! `GET /health` (and `HEAD` of both: the head alone), `Connection: close`, gzipped
//! when the request's `Accept-Encoding` takes it (Prometheus asks for it).
//!
//! Invariants:
//! - One slow client never holds back a scrape: each connection is served on its own
//!   short-lived thread, at most [`MAX_CONNECTIONS`] at once (more are answered `503`
//!   at once and closed), and a whole request (head read, answer written) gets
//!   [`DEADLINE`] in all, not per read: a client sending a byte every few seconds is
//!   dropped when its deadline passes.
//! - Bounded: a request head over 8 KiB is refused; the threads are counted, not pooled,
//!   so an idle endpoint costs the accept thread only.
//! - It never ends the daemon: an address in use is logged (once) and retried every 30 s.
//! - It stops at shutdown: the accept is woken by a connection to itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::Metrics;
use super::expo::{CONTENT_TYPE, accepts_gzip, gzip};
use crate::lifecycle::Shutdown;

const MAX_HEAD: usize = 8 << 10;
/// The whole of one request: its head read and its answer written.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; a scraper or two and a person's `curl` need far fewer.
pub const MAX_CONNECTIONS: usize = 8;
const REBIND_EVERY: Duration = Duration::from_secs(30);

/// Starts the endpoint's thread.
pub fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || run(addr, metrics, &shutdown))
}

fn run(addr: SocketAddr, metrics: Arc<Metrics>, shutdown: &Shutdown) {
    let mut warned = false;
    let listener = loop {
        match TcpListener::bind(addr) {
            Ok(l) => break l,
            Err(e) => {
                // Once per outage: a port taken for days must not flood the log.
                if !warned {
                    warn!("metrics: cannot listen on {addr}: {e}; retrying every 30s");
                    warned = true;
                }
                if shutdown.wait(REBIND_EVERY) {
                    return;
                }
            }
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    info!("metrics: serving /metrics and /health on http://{bound}");
    shutdown.on_trigger(move || {
        // Wakes the blocking accept below; it then sees the shutdown.
        let _ = TcpStream::connect_timeout(&bound, Duration::from_secs(1));
    });
    let busy = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if shutdown.is_triggered() {
            break;
        }
        match conn {
            Ok(s) => dispatch(s, &metrics, &busy),
            Err(e) => {
                warn!("metrics: accept failed: {e}");
                if shutdown.wait(Duration::from_millis(100)) {
                    break;
                }
            }
        }
    }
}

/// One connection on a thread of its own, or refused when [`MAX_CONNECTIONS`] are busy.
fn dispatch(mut s: TcpStream, metrics: &Arc<Metrics>, busy: &Arc<AtomicUsize>) {
    if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        busy.fetch_sub(1, Ordering::AcqRel);
        // Never waits on the client: what it sent so far is read without waiting
        // (closing on unread bytes would reset the connection before the answer is
        // read), the answer written with a short timeout.
        let _ = s.set_nonblocking(true);
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        let _ = s.set_nonblocking(false);
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        let _ = respond(
            &mut s,
            "503 Service Unavailable",
            "text/plain",
            b"busy\n",
            None,
        );
        let _ = s.shutdown(std::net::Shutdown::Write);
        return;
    }
    let (m, b) = (metrics.clone(), busy.clone());
    let spawned = std::thread::Builder::new()
        .name("metrics-conn".into())
        .spawn(move || {
            if let Err(e) = serve(s, &m, Instant::now() + DEADLINE) {
                log::debug!("metrics: a request failed: {e}");
            }
            b.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        busy.fetch_sub(1, Ordering::AcqRel);
        warn!("metrics: cannot serve a connection: {e}");
    }
}

/// What is left of `deadline`, or a timeout error once it passed.
fn left(deadline: Instant) -> std::io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request's deadline passed",
        ));
    }
    Ok(d)
}

fn serve(mut s: TcpStream, metrics: &Metrics, deadline: Instant) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        // Each read may wait only for what is left of the whole request's time.
        s.set_read_timeout(Some(left(deadline)?))?;
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            s.set_write_timeout(Some(left(deadline)?))?;
            return respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
                None,
            );
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head = String::from_utf8_lossy(&head);
    let zip = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept-encoding") && accepts_gzip(v.trim())
        })
    });
    let answer = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, metrics.render()),
        ("GET" | "HEAD", "/health") => match metrics.health() {
            Ok(()) => ("200 OK", "application/json", "{\"status\":\"ok\"}\n".into()),
            Err(why) => {
                let body = serde_json::json!({ "status": "unhealthy", "reason": why });
                (
                    "503 Service Unavailable",
                    "application/json",
                    format!("{body}\n"),
                )
            }
        },
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /health\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", String::new()),
    };
    // HEAD answers the head GET would have (its length compressed too).
    let (body, encoding) = if zip && !answer.2.is_empty() {
        (gzip(answer.2.as_bytes()), Some("gzip"))
    } else {
        (answer.2.into_bytes(), None)
    };
    s.set_write_timeout(Some(left(deadline)?))?;
    if method == "GET" {
        respond(&mut s, answer.0, answer.1, &body, encoding)
    } else {
        respond_head(&mut s, answer.0, answer.1, body.len(), encoding)
    }
}

/// The answer, head and body.
fn respond(
    s: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    encoding: Option<&str>,
) -> std::io::Result<()> {
    respond_head(s, status, ctype, body.len(), encoding)?;
    s.write_all(body)?;
    s.flush()
}

/// The head alone (HEAD, or before the body), with the body's length.
fn respond_head(
    s: &mut TcpStream,
    status: &str,
    ctype: &str,
    len: usize,
    encoding: Option<&str>,
) -> std::io::Result<()> {
    let coding = encoding.map_or(String::new(), |e| format!("Content-Encoding: {e}\r\n"));
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n{coding}\
         Vary: Accept-Encoding\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes())?;
    s.flush()
}
