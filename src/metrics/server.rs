//! The endpoint: a tiny HTTP/1.1 server on std::net and one thread, serving
//! `GET /metrics` and `GET /health`, one connection at a time, `Connection: close`.
//!
//! Invariants:
//! - Bounded: a request head over 8 KiB or slower than 5 s is dropped; one
//!   connection is served at a time, so a scrape costs one thread at most.
//! - It never ends the daemon: an address in use is logged (once) and retried every 30 s.
//! - It stops at shutdown: the accept is woken by a connection to itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{info, warn};

use super::Metrics;
use super::expo::CONTENT_TYPE;
use crate::lifecycle::Shutdown;

const MAX_HEAD: usize = 8 << 10;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const REBIND_EVERY: Duration = Duration::from_secs(30);

/// Starts the endpoint's thread.
pub fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || run(addr, &metrics, &shutdown))
}

fn run(addr: SocketAddr, metrics: &Metrics, shutdown: &Shutdown) {
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
    for conn in listener.incoming() {
        if shutdown.is_triggered() {
            break;
        }
        match conn {
            Ok(s) => {
                if let Err(e) = serve(s, metrics) {
                    log::debug!("metrics: a request failed: {e}");
                }
            }
            Err(e) => {
                warn!("metrics: accept failed: {e}");
                if shutdown.wait(Duration::from_millis(100)) {
                    break;
                }
            }
        }
    }
}

fn serve(mut s: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => respond(&mut s, "200 OK", CONTENT_TYPE, &metrics.render()),
        ("GET" | "HEAD", "/health") => match metrics.health() {
            Ok(()) => respond(
                &mut s,
                "200 OK",
                "application/json",
                "{\"status\":\"ok\"}\n",
            ),
            Err(why) => {
                let body = serde_json::json!({ "status": "unhealthy", "reason": why });
                respond(
                    &mut s,
                    "503 Service Unavailable",
                    "application/json",
                    &format!("{body}\n"),
                )
            }
        },
        ("GET" | "HEAD", _) => respond(
            &mut s,
            "404 Not Found",
            "text/plain",
            "try /metrics or /health\n",
        ),
        _ => respond(&mut s, "405 Method Not Allowed", "text/plain", ""),
    }
}

fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}
