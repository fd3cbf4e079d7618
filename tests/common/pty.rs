//! The serial side of a till on pseudo-terminals: a pty pair whose wire end the test
//! holds (as the POS or the printer), a printer that keeps reading, and receipts to
//! print.

use std::fs;
use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use serialport::SerialPort;

use super::fixture;

/// The first receipt of tests/fixtures/receipts/market.bin (GB18030 text, a raster
/// logo, a barcode, a cash-drawer kick, ending in a GS V cut) with its 13-digit order
/// number replaced everywhere it is printed (the 单号 line and the barcode, whose
/// length prefix stays right because the length does not change).
pub fn market_receipt(order_no: &str) -> Vec<u8> {
    assert_eq!(
        order_no.len(),
        13,
        "the receipt's order number has 13 digits"
    );
    let bin = fs::read(fixture("receipts/market.bin")).unwrap();
    let cut = b"\x1dVB\x03";
    let end = bin.windows(cut.len()).position(|w| w == cut).unwrap() + cut.len();
    replace_all(&bin[..end], b"2026112200013", order_no.as_bytes())
}

/// The order the market template reads from [`market_receipt`] (canonical fields).
pub fn market_order(order_no: &str) -> Value {
    let expected: Vec<Value> =
        serde_json::from_slice(&fs::read(fixture("receipts/market.expected.json")).unwrap())
            .unwrap();
    let mut o = expected[0].clone();
    o["order_no"] = Value::String(order_no.to_string());
    o
}

pub fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Reads from a pty end until `n` bytes came or `wait` ran out (what came so far).
pub fn receive(wire: &mut serialport::TTYPort, n: usize, wait: Duration) -> Vec<u8> {
    let deadline = std::time::Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.len() < n && std::time::Instant::now() < deadline {
        match wire.read(&mut buf) {
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

/// Writes `bytes` as a POS would (in 97-byte pieces) on `pos` and returns what
/// reached `printer` within `wait`.
pub fn print(
    pos: &mut serialport::TTYPort,
    printer: &mut serialport::TTYPort,
    bytes: &[u8],
    wait: Duration,
) -> Vec<u8> {
    use std::io::Write;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut read = |got: &mut Vec<u8>| match printer.read(&mut buf) {
        Ok(n) => got.extend_from_slice(&buf[..n]),
        Err(e) if e.kind() == ErrorKind::TimedOut => {}
        Err(e) => panic!("printer side: {e}"),
    };
    for chunk in bytes.chunks(97) {
        pos.write_all(chunk).unwrap();
        read(&mut got);
    }
    super::wait_until(wait, || {
        read(&mut got);
        got.len() >= bytes.len()
    });
    got
}

/// A pseudo-terminal: the test holds the wire end (`master`) and keeps the device
/// end open (`slave`), so the pty outlives any agent that opens it by `path`.
pub struct Pty {
    pub master: serialport::TTYPort,
    pub slave: serialport::TTYPort,
    pub path: String,
}

impl Pty {
    /// A pair whose wire end reads with a 50 ms timeout.
    pub fn new() -> Pty {
        let mut p = Pty::with_default_timeout();
        p.master
            .set_timeout(Duration::from_millis(50))
            .expect("pty timeout");
        p
    }

    /// A pair with the serialport crate's own read timeout on both ends.
    pub fn with_default_timeout() -> Pty {
        let (master, slave) = serialport::TTYPort::pair().expect("openpty");
        let path = slave.name().expect("pty name");
        Pty {
            master,
            slave,
            path,
        }
    }

    /// (wire end, device end, device path), for tests that hold them apart.
    pub fn into_parts(self) -> (serialport::TTYPort, serialport::TTYPort, String) {
        (self.master, self.slave, self.path)
    }
}

/// Clears the exclusive-open flag (TIOCEXCL) a SIGKILLed agent leaves on a pty: with a
/// real serial device the kernel forgets it at the last close, but here the test's own
/// open device end (`slave`) keeps the tty alive. (Root ignores the flag anyway.)
pub fn clear_exclusive(slave: &serialport::TTYPort) {
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCNXCL on a tty fd this process owns; no pointer argument.
    unsafe {
        libc::ioctl(slave.as_raw_fd(), libc::TIOCNXCL);
    }
}

/// Reads everything the agent forwards to the printer end, on its own thread, as a
/// printer would (a printer that is not read stops the tap's forwarding, and with
/// it, by back-pressure, the POS side). Counts the bytes.
pub struct PrinterSink {
    stop: Arc<AtomicBool>,
    pub bytes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PrinterSink {
    pub fn start(mut master: serialport::TTYPort) -> PrinterSink {
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let (s, b) = (stop.clone(), bytes.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while !s.load(Ordering::Relaxed) {
                match master.read(&mut buf) {
                    Ok(n) => {
                        b.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == ErrorKind::TimedOut => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        PrinterSink {
            stop,
            bytes,
            thread: Some(thread),
        }
    }
}

impl Drop for PrinterSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
