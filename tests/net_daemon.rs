//! Network and device sources through the real daemon: the test is the POS (a
//! TCP client, a UDP pusher, the wire end of a pty standing in for the USB
//! printer gadget) and the stand-in printer (a TCP listener on 127.0.0.1, a
//! pty); the agent runs the example config's market template on a `tcp`,
//! `listen` or `device` source. Every wait is bounded; nothing sleeps a fixed
//! long time.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::agent::cli;
use common::emu::Emu;
use common::orders::{by_order_no, canonical};
use common::pty::Pty;
use common::till::{Till, market_as};
use common::{fixture, poll, wait_until};
use serde_json::Value;
use tillrelay::emulator::EmuConfig;

const WAIT: Duration = Duration::from_secs(30);

/// A raw-TCP printer on 127.0.0.1 that keeps what it receives and answers
/// `DLE EOT n` with one status byte.
struct Printer {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Printer {
    fn start() -> Printer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let got: Arc<Mutex<Vec<u8>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mut c = match l.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let mut buf = [0u8; 4096];
                let mut prev = [0u8; 2];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            for &b in &buf[..n] {
                                if prev == [0x10, 0x04] {
                                    let _ = c.write_all(&[0x12]);
                                }
                                prev = [prev[1], b];
                            }
                            g.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            if s.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
        });
        Printer {
            addr,
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<u8> {
        self.got.lock().unwrap().clone()
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

/// Connects to the agent's `addr` (retrying while it binds) and sends `bytes` in
/// uneven pieces; returns the connection, half-closed for writing.
fn pos_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = None;
    assert!(
        wait_until(WAIT, || {
            s = TcpStream::connect(addr).ok();
            s.is_some()
        }),
        "nothing listens on {addr}"
    );
    let mut s = s.unwrap();
    let mut at = 0;
    let mut step = 1;
    while at < bytes.len() {
        let end = (at + step).min(bytes.len());
        s.write_all(&bytes[at..end]).unwrap();
        at = end;
        step = step * 7 % 1531 + 1;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s
}

fn market_bin() -> Vec<u8> {
    fs::read(fixture("receipts/market.bin")).unwrap()
}

fn expected() -> Vec<Value> {
    serde_json::from_slice(&fs::read(fixture("receipts/market.expected.json")).unwrap()).unwrap()
}

fn market_orders(till: &Till) -> Vec<Value> {
    till.orders()
        .into_iter()
        .filter(|o| o["source"] == "market")
        .collect()
}

/// The live counters of source `name` in `status --json` (Null until written).
fn live(till: &Till, name: &str) -> Value {
    till.json(&["status", "--json"])["live"]["sources"][name].clone()
}

#[test]
fn a_pos_printing_through_the_proxy_reaches_the_printer_byte_identical_and_both_clouds() {
    let printer = Printer::start();
    let emu = Emu::start(EmuConfig::default());
    let port = common::free_port();
    let mut till = market_as(
        "tcp",
        &format!(
            "listen = \"127.0.0.1:{port}\"\nprinter = \"{}\"\nallow = [\"127.0.0.1\"]",
            printer.addr
        ),
        &emu.dest_config("", ""),
    );
    till.start();
    let bin = market_bin();
    let _pos = pos_send(format!("127.0.0.1:{port}").parse().unwrap(), &bin);

    assert!(
        wait_until(WAIT, || printer.received().len() >= bin.len()),
        "the printer got {} of {} bytes",
        printer.received().len(),
        bin.len()
    );
    assert!(printer.received() == bin, "the printer's bytes differ");
    assert!(
        poll(WAIT, || market_orders(&till).len() == 3),
        "{:?}\n{}",
        market_orders(&till),
        till.log()
    );
    let got: Vec<Value> = market_orders(&till).iter().map(canonical).collect();
    assert_eq!(by_order_no(got), by_order_no(expected()));
    assert!(
        till.wait_delivered(&["ovopark", "wdt"], 3, WAIT, true),
        "{}",
        till.explain()
    );

    // status shows the source's live counters
    assert!(
        poll(WAIT, || live(&till, "market")["bytes_to_printer"]
            == bin.len() as u64),
        "{}",
        till.json(&["status", "--json"])
    );
    let c = live(&till, "market");
    assert_eq!(c["printer_reachable"], true);
    assert_eq!(c["refused_peers"], 0);
    assert!(c["last_receipt_ms"].as_u64().unwrap() > 0);
    let text = String::from_utf8(till.cli(&["status"]).stdout).unwrap();
    assert!(
        text.contains(&format!("market (tcp 127.0.0.1:{port} → {})", printer.addr))
            && text.contains("printer reachable")
            && text.contains("refused peers 0"),
        "{text}"
    );
    till.stop();
}

#[test]
fn a_peer_outside_allow_injects_nothing() {
    let printer = Printer::start();
    let port = common::free_port();
    let mut till = market_as(
        "tcp",
        &format!(
            "listen = \"127.0.0.1:{port}\"\nprinter = \"{}\"\nallow = [\"127.0.0.2\"]",
            printer.addr
        ),
        "",
    );
    till.start();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut pos = None;
    assert!(wait_until(WAIT, || {
        pos = TcpStream::connect(addr).ok();
        pos.is_some()
    }));
    let mut pos = pos.unwrap();
    // the agent closes the refused connection without reading it: writes may fail
    let _ = pos.write_all(&market_bin());
    let mut buf = [0u8; 16];
    pos.set_read_timeout(Some(WAIT)).unwrap();
    assert!(matches!(pos.read(&mut buf), Ok(0) | Err(_)));
    assert!(
        poll(WAIT, || live(&till, "market")["refused_peers"] == 1),
        "{}",
        till.json(&["status", "--json"])
    );
    let c = live(&till, "market");
    assert_eq!(c["connections"], 0);
    assert_eq!(c["bytes_from_pos"], 0);
    assert!(printer.received().is_empty());
    let log = till.log();
    assert!(log.contains("refused 127.0.0.1 (not in allow)"), "{log}");
    // the stop drains capture: had anything been captured, it would be journalled now
    till.stop();
    assert!(market_orders(&till).is_empty());
    let st = till.json(&["status", "--json"]);
    let market = st["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "market").cloned())
        .unwrap_or(Value::Null);
    assert!(market.is_null() || market["receipts"] == 0, "{market}");
}

#[test]
fn receipts_pushed_over_tcp_become_orders() {
    let port = common::free_port();
    let mut till = market_as(
        "listen",
        &format!("listen = \"127.0.0.1:{port}\"\nprotocol = \"tcp\"\nallow = [\"127.0.0.0/8\"]"),
        "",
    );
    till.start();
    let mut pos = pos_send(format!("127.0.0.1:{port}").parse().unwrap(), &market_bin());
    // nothing is ever written back to a pusher
    let mut buf = [0u8; 16];
    pos.set_read_timeout(Some(WAIT)).unwrap();
    assert!(matches!(pos.read(&mut buf), Ok(0)));
    assert!(
        poll(WAIT, || market_orders(&till).len() == 3),
        "{}",
        till.log()
    );
    let got: Vec<Value> = market_orders(&till).iter().map(canonical).collect();
    assert_eq!(by_order_no(got), by_order_no(expected()));
    till.stop();
}

#[test]
fn receipts_pushed_over_udp_become_orders() {
    let port = common::free_port();
    let mut till = market_as(
        "listen",
        &format!("listen = \"127.0.0.1:{port}\"\nprotocol = \"udp\"\nallow = [\"127.0.0.1\"]"),
        "",
    );
    till.start();
    let bin = market_bin();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // datagrams sent before the agent binds are lost: wait until it says it listens
    assert!(
        poll(WAIT, || till.log().contains(&format!(
            "source market: listen udp 127.0.0.1:{port}"
        ))),
        "{}",
        till.log()
    );
    // one go, no pause: a pause past the template's quiet time ends a receipt
    for chunk in bin.chunks(1200) {
        sock.send_to(chunk, ("127.0.0.1", port)).unwrap();
        // loopback drops nothing unless the receive buffer overflows: pace lightly
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        poll(WAIT, || market_orders(&till).len() == 3),
        "{}\n{}",
        till.json(&["status", "--json"]),
        till.log()
    );
    let got: Vec<Value> = market_orders(&till).iter().map(canonical).collect();
    assert_eq!(by_order_no(got), by_order_no(expected()));
    till.stop();
}

#[test]
fn a_device_source_on_a_pty_standing_in_for_the_gadget() {
    let (mut pos, _pos_dev, pos_path) = Pty::new().into_parts();
    let (mut printer, _prn_dev, prn_path) = Pty::new().into_parts();
    let mut till = market_as(
        "device",
        &format!("device = {pos_path:?}\npassthrough = {prn_path:?}"),
        "",
    );
    till.start();
    // the agent opens the devices on its own threads: wait until it has
    assert!(
        poll(WAIT, || live(&till, "market")["connected_peers"] == 1),
        "{}",
        till.log()
    );
    let bin = market_bin();
    let got = common::pty::print(&mut pos, &mut printer, &bin, WAIT);
    assert!(
        got == bin,
        "the printer got {} of {} bytes",
        got.len(),
        bin.len()
    );
    assert!(
        poll(WAIT, || market_orders(&till).len() == 3),
        "{}",
        till.log()
    );
    let got: Vec<Value> = market_orders(&till).iter().map(canonical).collect();
    assert_eq!(by_order_no(got), by_order_no(expected()));
    till.stop();
}

#[test]
fn check_config_names_shared_addresses_and_a_printer_pointing_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tillrelay.toml");
    let source = |name: &str, kind: &str, keys: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\nkind = \"{kind}\"\nshop = \"D001\"\n\
             machine_id = \"NVR01-CH0{}\"\n{keys}\n\n",
            name.len()
        )
    };
    let text = format!(
        "[agent]\nstate_dir = {:?}\n\n{}{}{}{}",
        dir.path().join("state"),
        source(
            "front",
            "tcp",
            "listen = \"0.0.0.0:9100\"\nprinter = \"192.168.1.50:9100\"\nallow = [\"192.168.1.0/24\"]"
        ),
        source(
            "push",
            "listen",
            "listen = \"127.0.0.1:9100\"\nprotocol = \"tcp\"\nallow = [\"192.168.1.20\"]"
        ),
        source(
            "back",
            "tcp",
            "listen = \"0.0.0.0:9101\"\nprinter = \"127.0.0.1:9100\"\nallow = [\"192.168.1.20\", \"10.0.0.x\"]"
        ),
        source("gadget", "device", "device = \"dev/g_printer0\""),
    );
    fs::write(&cfg, text).unwrap();
    let out = cli(&cfg, &["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source[push].listen: 127.0.0.1:9100 is also where source \"front\" listens"),
        "{err}"
    );
    assert!(err.contains("source[back].allow[1]:"), "{err}");
    assert!(err.contains("source[gadget].device:"), "{err}");

    // fixed allow: now the loop back to front's own listen is named
    let text = fs::read_to_string(&cfg)
        .unwrap()
        .replace(", \"10.0.0.x\"", "")
        .replace("\"dev/g_printer0\"", "\"/dev/g_printer0\"")
        .replace("listen = \"127.0.0.1:9100\"", "listen = \"127.0.0.1:7001\"");
    fs::write(&cfg, text).unwrap();
    let out = cli(&cfg, &["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source[back].printer: \"127.0.0.1:9100\" points back at this box's own listen of source \"front\""),
        "{err}"
    );
    assert!(!err.contains("source[push]"), "{err}");

    // and with the printer elsewhere the config is valid
    let text = fs::read_to_string(&cfg).unwrap().replace(
        "printer = \"127.0.0.1:9100\"",
        "printer = \"192.168.1.51:9100\"",
    );
    fs::write(&cfg, text).unwrap();
    let out = cli(&cfg, &["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn record_on_a_listen_source_writes_what_arrives_and_parse_reads_it() {
    let port = common::free_port();
    let till = market_as(
        "listen",
        &format!("listen = \"127.0.0.1:{port}\"\nallow = [\"127.0.0.1\"]"),
        "",
    );
    let out_file = till.dir.path().join("capture.bin");
    // no agent runs: record holds the address itself
    let rec = common::tillrelay()
        .args(["record", "--source", "market", "--seconds", "600", "--out"])
        .arg(&out_file)
        .arg("--config")
        .arg(&till.config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bin = market_bin();
    let mut pos = pos_send(format!("127.0.0.1:{port}").parse().unwrap(), &bin);
    // the source closes its side once it has read everything we sent
    let mut buf = [0u8; 16];
    pos.set_read_timeout(Some(WAIT)).unwrap();
    assert!(matches!(pos.read(&mut buf), Ok(0)));
    common::signal(rec.id(), libc::SIGINT);
    let done = rec.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(
        said.contains(&format!("recorded {} bytes", bin.len())),
        "{said}"
    );
    assert_eq!(fs::read(&out_file).unwrap(), bin);
    let parsed = till.cli(&[
        "parse",
        out_file.to_str().unwrap(),
        "--source",
        "market",
        "--json",
    ]);
    assert!(parsed.status.success());
    let got: Vec<Value> = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(by_order_no(got), by_order_no(expected()));
}

/// The first receipt of the market capture (one order) with its order number
/// made `2026112299000 + i`: one distinct order per push.
fn market_receipt(i: usize) -> Vec<u8> {
    let bin = market_bin();
    let cut = bin.windows(4).position(|w| w == b"\x1dVB\x03").unwrap() + 4;
    let mut r = bin[..cut].to_vec();
    let no = format!("{}", 2026112299000u64 + i as u64);
    let old = b"2026112200013";
    while let Some(at) = r.windows(old.len()).position(|w| w == old) {
        r[at..at + old.len()].copy_from_slice(no.as_bytes());
    }
    r
}

/// The distinct order numbers of the market lane's stored orders.
fn market_order_nos(till: &Till) -> std::collections::BTreeSet<String> {
    market_orders(till)
        .iter()
        .filter_map(|o| o["order_no"].as_str().map(String::from))
        .collect()
}

/// Issue #24: pushed TCP receipts, a burst of 32 connections (all connected and
/// written before any closes: twice `max_connections`) and then 100 one after
/// another, are all stored, one order each.
#[test]
fn pushed_tcp_receipts_in_a_burst_and_in_a_run_are_all_stored() {
    let port = common::free_port();
    let mut till = market_as(
        "listen",
        &format!("listen = \"127.0.0.1:{port}\"\nprotocol = \"tcp\"\nallow = [\"127.0.0.1\"]"),
        "",
    );
    till.start();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_until(WAIT, || TcpStream::connect(addr).is_ok()),
        "nothing listens on {addr}"
    );
    let all_written = Arc::new(std::sync::Barrier::new(33));
    let burst: Vec<_> = (0..32)
        .map(|i| {
            let b = all_written.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let _ = s.write_all(&market_receipt(i));
                let _ = s.shutdown(std::net::Shutdown::Write);
                b.wait();
            })
        })
        .collect();
    all_written.wait();
    for t in burst {
        t.join().unwrap();
    }
    for i in 32..132 {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&market_receipt(i));
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let want: std::collections::BTreeSet<String> = (0..132)
        .map(|i| format!("{}", 2026112299000u64 + i as u64))
        .collect();
    assert!(
        poll(WAIT * 4, || market_order_nos(&till) == want),
        "{} of 132 stored\n{}",
        market_order_nos(&till).intersection(&want).count(),
        till.log()
    );
    till.stop();
}

/// Issue #24: a POS that sends each receipt by UDP from a new source port: 40
/// receipts from 40 ports are 40 orders (a sender is its address; a new port
/// ends its receipt), none dropped as "too many senders".
#[test]
fn udp_receipts_from_a_new_port_each_are_all_stored() {
    let port = common::free_port();
    let mut till = market_as(
        "listen",
        &format!("listen = \"127.0.0.1:{port}\"\nprotocol = \"udp\"\nallow = [\"127.0.0.0/8\"]"),
        "",
    );
    till.start();
    assert!(
        poll(WAIT, || till.log().contains(&format!(
            "source market: listen udp 127.0.0.1:{port}"
        ))),
        "{}",
        till.log()
    );
    for i in 0..40 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        for chunk in market_receipt(i).chunks(1200) {
            sock.send_to(chunk, ("127.0.0.1", port)).unwrap();
        }
    }
    let want: std::collections::BTreeSet<String> = (0..40)
        .map(|i| format!("{}", 2026112299000u64 + i as u64))
        .collect();
    assert!(
        poll(WAIT, || market_order_nos(&till) == want),
        "{} of 40 stored\n{}\n{}",
        market_order_nos(&till).intersection(&want).count(),
        till.json(&["status", "--json"]),
        till.log()
    );
    // More senders (addresses) at once than max_connections (16; 127.0.0.1 has
    // one): the datagrams of the 17th and 18th are dropped, counted and logged.
    for host in 2..=18 {
        let sock = UdpSocket::bind(format!("127.0.0.{host}:0")).unwrap();
        sock.send_to(b"HELLO\n", ("127.0.0.1", port)).unwrap();
    }
    assert!(
        poll(WAIT, || live(&till, "market")["refused_busy"] == 2),
        "{}",
        till.json(&["status", "--json"])
    );
    let log = till.log();
    assert!(
        log.contains("datagram from 127.0.0.17") && log.contains("dropped: 16 senders"),
        "{log}"
    );
    let text = String::from_utf8(till.cli(&["status"]).stdout).unwrap();
    assert!(
        text.contains("datagrams dropped (too many senders) 2"),
        "{text}"
    );
    till.stop();
}

/// Issue #24: 16 silent POS connections (the default `max_connections`; a POS
/// that lost power mid-connection looks like this) do not keep a job from
/// printing, even at a printer that serves one connection at a time (as this
/// stand-in does): the silent ones give way, counted in `status`.
#[test]
fn silent_connections_filling_every_slot_do_not_block_the_next_job() {
    let printer = Printer::start();
    let emu = Emu::start(EmuConfig::default());
    let port = common::free_port();
    let mut till = market_as(
        "tcp",
        &format!(
            "listen = \"127.0.0.1:{port}\"\nprinter = \"{}\"\nallow = [\"127.0.0.1\"]",
            printer.addr
        ),
        &emu.dest_config("", ""),
    );
    till.start();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_until(WAIT, || TcpStream::connect(addr).is_ok()),
        "nothing listens on {addr}"
    );
    let silent: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    assert!(
        poll(WAIT, || live(&till, "market")["connected_peers"] == 16),
        "{}",
        till.json(&["status", "--json"])
    );
    let bin = market_bin();
    let _pos = pos_send(addr, &bin);
    assert!(
        wait_until(WAIT, || printer.received() == bin),
        "the printer got {} of {} bytes\n{}",
        printer.received().len(),
        bin.len(),
        till.log()
    );
    assert!(
        poll(WAIT, || market_orders(&till).len() == 3),
        "{}",
        till.log()
    );
    assert!(
        poll(WAIT, || live(&till, "market")["evicted_idle"] == 16),
        "{}",
        till.json(&["status", "--json"])
    );
    assert!(
        till.log().contains("16 idle one(s) give way to a new one"),
        "{}",
        till.log()
    );
    drop(silent);
    till.stop();
}
