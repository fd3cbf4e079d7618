//! The serial tap: sits between the POS and its receipt printer, reads what the
//! POS prints, passes every byte on to the real printer, passes the printer's
//! replies back, and hands the POS bytes to capture as timestamped [`Chunk`]s.
//!
//! ```text
//!  POS ──▶ [pos reader] ──┬──▶ printer queue ──▶ [printer writer] ──▶ printer
//!                         └──▶ capture channel (try_send, never blocks) ──▶ Receiver<Chunk>
//!  POS ◀── [pos writer] ◀── POS queue ◀── [printer reader] ◀── printer (DLE EOT replies, ASB, XON/XOFF)
//! ```
//!
//! serialport is blocking, so each direction is a plain thread; reads use a
//! short timeout so the shutdown flag is seen promptly.
//!
//! # Invariants
//!
//! - **Printing goes first and is never held back by capture.** A chunk read
//!   from the POS is queued for the printer before it is offered to capture,
//!   and capture is offered it with `try_send`. If the capture channel is full
//!   (its consumer stalled for [`TapOptions::capture_capacity`] chunks — about
//!   4 MiB of receipts by default) the chunk is **dropped from capture only**,
//!   counted in [`TapStats::capture_dropped_bytes`] and logged as an error;
//!   printing is unaffected. In practice the consumer drains far faster than a
//!   serial line fills it.
//! - **Bytes reach the printer at once and in order.** One reader, one FIFO
//!   queue, one writer. When the printer holds the line (busy, paper out, flow
//!   control) the writer waits and keeps the data; the queue filling up stops
//!   the POS reader, which is the back-pressure a POS expects from a printer.
//! - **A failed printer port never stops the POS side.** While the printer port
//!   is closed (absent, unplugged, write error) POS bytes are still read and
//!   captured; what could not be forwarded is counted in
//!   [`TapStats::printer_dropped_bytes`]. The same holds the other way round.
//! - **Devices come back.** Any read error, hang-up or open failure closes the
//!   port and reopens it by path with capped exponential backoff
//!   ([`TapOptions::reopen_min`] … [`TapOptions::reopen_max`]). Reopening by a
//!   stable path (`/dev/serial/by-id/…`) is what survives a USB-serial replug.
//!   The backoff starts over only after an opening that lasted
//!   [`TapOptions::healthy`]: a port that opens and hangs up at once (a flapping
//!   adapter) is reopened ever more slowly, at most every `reopen_max`, as the
//!   device source does (`reopen.rs`, shared with it; issue #24).
//!   The tap never exits because of a serial error; only the shutdown flag
//!   stops it. An outage is logged when it starts, while its delay grows, and
//!   when it ends.
//! - **Only devices are read.** A path that is a regular file (or a block
//!   device) is refused at every opening with a clear error, logged once per
//!   outage (a file would give the same receipts again at every opening).
//!
//! # Flow control
//!
//! With `flow_control = "none"` the tap is transparent: XON/XOFF bytes from the
//! printer reach the POS like any status byte, and the two ends pace each other
//! as if wired directly. With `"xonxoff"` or `"rtscts"` the kernel does flow
//! control on each link separately (POS ↔ tap, tap ↔ printer) and the printer's
//! pace crosses the tap through the bounded forwarding queue described above.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver as StdReceiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serialport::TTYPort;

use super::reopen::{Backoff, refuse_non_device};

mod settings;
pub use settings::{PortSettings, RawPassthrough, RawSerial, SerialConfig};

/// Tuning of the tap's threads; the defaults suit production, tests shorten
/// the backoff.
#[derive(Debug, Clone)]
pub struct TapOptions {
    /// Read timeout: how often a blocked thread looks at the shutdown flag.
    pub read_timeout: Duration,
    /// First reopen delay after a failure; doubles up to `reopen_max`.
    pub reopen_min: Duration,
    pub reopen_max: Duration,
    /// An opening that lasted this long was healthy: the backoff starts over.
    pub healthy: Duration,
    /// Chunks the capture channel holds before capture drops (printing never does).
    pub capture_capacity: usize,
    /// Chunks queued for each direction of the passthrough.
    pub forward_capacity: usize,
    /// Open ports exclusively (TIOCEXCL + flock), so no getty or modem manager
    /// reads our bytes. Default true.
    pub exclusive: bool,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            read_timeout: Duration::from_millis(200),
            reopen_min: Duration::from_millis(250),
            reopen_max: Duration::from_secs(10),
            healthy: Duration::from_secs(10),
            capture_capacity: 1024,
            forward_capacity: 64,
            exclusive: true,
        }
    }
}

/// Bytes read from the POS, with when they arrived.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    /// For the segmenter's idle timeout.
    pub at: Instant,
    /// For stamping (the order's capture time).
    pub wall: SystemTime,
}

/// Counters the tap keeps, for `status` and logs. All monotonic except the
/// `*_up` flags.
#[derive(Debug, Default)]
pub struct TapStats {
    pub pos_up: AtomicBool,
    pub printer_up: AtomicBool,
    pub pos_opens: AtomicU64,
    pub printer_opens: AtomicU64,
    pub bytes_from_pos: AtomicU64,
    pub bytes_to_printer: AtomicU64,
    pub bytes_from_printer: AtomicU64,
    pub bytes_to_pos: AtomicU64,
    /// POS bytes that were forwarded but not captured (capture channel full).
    pub capture_dropped_bytes: AtomicU64,
    /// POS bytes that could not reach the printer (its port was down).
    pub printer_dropped_bytes: AtomicU64,
    /// Printer bytes that could not reach the POS (its port was down).
    pub pos_dropped_bytes: AtomicU64,
}

impl TapStats {
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::Relaxed)
    }
}

/// A running tap. Set the shutdown flag, then [`Tap::join`].
pub struct Tap {
    threads: Vec<JoinHandle<()>>,
    stats: Arc<TapStats>,
}

/// The write half of a port, shared between the thread that (re)opens the port
/// and the thread that writes to it. None while the port is down.
type Slot = Arc<Mutex<Option<TTYPort>>>;

fn lock(slot: &Slot) -> MutexGuard<'_, Option<TTYPort>> {
    // A writer that panicked cannot leave the port half-valid: recover the guard.
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tap {
    /// Starts the tap's threads for source `name`. Chunks come out of the
    /// returned receiver (use `recv().await` in async code, `blocking_recv()` or
    /// `try_recv()` elsewhere); it closes when the tap has stopped.
    pub fn start(
        name: &str,
        cfg: &SerialConfig,
        opts: TapOptions,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<(Tap, tokio::sync::mpsc::Receiver<Chunk>)> {
        let (capture_tx, capture_rx) = tokio::sync::mpsc::channel(opts.capture_capacity.max(1));
        let stats = Arc::new(TapStats::default());
        let mut threads = Vec::new();
        let pos_slot: Slot = Arc::new(Mutex::new(None));

        // Set once the printer side's first opening was tried (opened or failed):
        // the POS side reads nothing before, so bytes the POS sent while the box
        // was starting (waiting in the POS port's buffer) are not dropped for a
        // printer port that was simply not open yet.
        let printer_tried = Arc::new(AtomicBool::new(cfg.passthrough.is_none()));
        let to_printer = match &cfg.passthrough {
            None => None,
            Some(printer) => {
                let printer_slot: Slot = Arc::new(Mutex::new(None));
                let (to_printer_tx, to_printer_rx) =
                    mpsc::sync_channel::<Vec<u8>>(opts.forward_capacity.max(1));
                let (to_pos_tx, to_pos_rx) =
                    mpsc::sync_channel::<Vec<u8>>(opts.forward_capacity.max(1));
                let side = Side::printer(stats.clone());
                threads.push(spawn(format!("tap-{name}-prn-w"), {
                    let (slot, stop, side) = (printer_slot.clone(), shutdown.clone(), side.clone());
                    move || write_loop(&side, to_printer_rx, &slot, &stop)
                })?);
                threads.push(spawn(format!("tap-{name}-prn-r"), {
                    let (settings, opts, stop) = (printer.clone(), opts.clone(), shutdown.clone());
                    let tried = printer_tried.clone();
                    move || {
                        let ports = (&printer_slot, &*tried);
                        read_loop(&side, &settings, &opts, ports, &stop, |bytes, _| {
                            // Replies are few and small; if the POS side is down
                            // or stuck they are dropped, never block the printer.
                            let n = bytes.len() as u64;
                            if to_pos_tx.try_send(bytes.to_vec()).is_err() {
                                side.stats.pos_dropped_bytes.fetch_add(n, Ordering::Relaxed);
                            }
                        })
                    }
                })?);
                threads.push(spawn(format!("tap-{name}-pos-w"), {
                    let (slot, stop, side) =
                        (pos_slot.clone(), shutdown.clone(), Side::pos(stats.clone()));
                    move || write_loop(&side, to_pos_rx, &slot, &stop)
                })?);
                Some(to_printer_tx)
            }
        };

        let side = Side::pos(stats.clone());
        let settings = cfg.pos.clone();
        let source = name.to_string();
        threads.push(spawn(format!("tap-{name}-pos-r"), move || {
            let mut capture_open = true;
            let mut drops_logged = 0u64;
            let started = Instant::now();
            while !printer_tried.load(Ordering::Relaxed)
                && !shutdown.load(Ordering::Relaxed)
                && started.elapsed() < FIRST_OPEN_WAIT
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            read_loop(
                &side,
                &settings,
                &opts,
                (&pos_slot, &AtomicBool::new(false)),
                &shutdown,
                |bytes, stop| {
                    if let Some(tx) = &to_printer {
                        forward(tx, bytes, stop);
                    }
                    let chunk = Chunk {
                        bytes: bytes.to_vec(),
                        at: Instant::now(),
                        wall: SystemTime::now(),
                    };
                    match capture_tx.try_send(chunk) {
                        Ok(()) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Full(c)) => {
                            let total = side
                                .stats
                                .capture_dropped_bytes
                                .fetch_add(c.bytes.len() as u64, Ordering::Relaxed)
                                + c.bytes.len() as u64;
                            // Loud, but not one line per chunk for a stalled consumer.
                            if drops_logged == 0 || total >= drops_logged * 2 {
                                log::error!(
                                    "source {source}: capture is not keeping up; {total} bytes \
                                 printed but NOT captured so far"
                                );
                                drops_logged = total.max(1);
                            }
                        }
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                            if capture_open {
                                log::warn!(
                                    "source {source}: capture stopped; still passing bytes through"
                                );
                                capture_open = false;
                            }
                        }
                    }
                },
            );
            // Dropping `to_printer` here lets the printer writer finish.
        })?);
        Ok((Tap { threads, stats }, capture_rx))
    }

    pub fn stats(&self) -> Arc<TapStats> {
        self.stats.clone()
    }

    /// Waits for every thread to end (after the shutdown flag was set: each
    /// sees it within one read timeout).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(f)
}

/// Which port a loop serves, for stats and log lines.
#[derive(Clone)]
struct Side {
    what: &'static str,
    stats: Arc<TapStats>,
}

impl Side {
    fn pos(stats: Arc<TapStats>) -> Side {
        Side { what: "POS", stats }
    }
    fn printer(stats: Arc<TapStats>) -> Side {
        Side {
            what: "printer",
            stats,
        }
    }
    fn is_pos(&self) -> bool {
        self.what == "POS"
    }
    fn up(&self) -> &AtomicBool {
        if self.is_pos() {
            &self.stats.pos_up
        } else {
            &self.stats.printer_up
        }
    }
    fn opens(&self) -> &AtomicU64 {
        if self.is_pos() {
            &self.stats.pos_opens
        } else {
            &self.stats.printer_opens
        }
    }
    fn read_bytes(&self) -> &AtomicU64 {
        if self.is_pos() {
            &self.stats.bytes_from_pos
        } else {
            &self.stats.bytes_from_printer
        }
    }
    fn written_bytes(&self) -> &AtomicU64 {
        if self.is_pos() {
            &self.stats.bytes_to_pos
        } else {
            &self.stats.bytes_to_printer
        }
    }
    fn dropped_bytes(&self) -> &AtomicU64 {
        if self.is_pos() {
            &self.stats.pos_dropped_bytes
        } else {
            &self.stats.printer_dropped_bytes
        }
    }
}

/// Opens a port by path with its settings. A path that is a regular file or a
/// block device is refused (`ErrorKind::Unsupported`, the module's invariants);
/// the rest is the serialport crate's (which fails on a file too, but only with
/// "Inappropriate ioctl for device").
fn open(settings: &PortSettings, opts: &TapOptions) -> std::io::Result<TTYPort> {
    refuse_non_device(std::fs::metadata(&settings.device)?.file_type())?;
    let port = serialport::new(settings.device.to_string_lossy(), settings.baud)
        .data_bits(settings.data_bits)
        .parity(settings.parity)
        .stop_bits(settings.stop_bits)
        .flow_control(settings.flow_control)
        .timeout(opts.read_timeout)
        .exclusive(opts.exclusive)
        .open_native()?;
    Ok(port)
}

/// Sleeps up to `d`, waking early on shutdown.
fn nap(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// How long the POS side waits at start for the printer side's first opening
/// (which takes microseconds; a device that hangs in open() must not hold the
/// tap for longer).
const FIRST_OPEN_WAIT: Duration = Duration::from_secs(2);

/// Opens `settings` (reopening with backoff whenever it fails or vanishes),
/// publishes a write handle in `slot`, sets `tried` once the first opening was
/// tried, and hands every read to `on_bytes`.
/// Returns only on shutdown.
fn read_loop(
    side: &Side,
    settings: &PortSettings,
    opts: &TapOptions,
    (slot, tried): (&Slot, &AtomicBool),
    stop: &AtomicBool,
    mut on_bytes: impl FnMut(&[u8], &AtomicBool),
) {
    let dev = settings.device.display().to_string();
    let mut backoff = Backoff::new(opts.reopen_min, opts.reopen_max, opts.healthy);
    let mut outage_logged = false;
    // Hanging up at once, again and again, at the longest delay: said once, then quiet.
    let mut flapping = false;
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut port = match open(settings, opts) {
            Ok(p) => p,
            Err(e) => {
                tried.store(true, Ordering::Relaxed);
                flapping = false;
                if !outage_logged {
                    if e.kind() == ErrorKind::Unsupported {
                        log::error!("{} port {dev}: {e}", side.what);
                    } else {
                        log::warn!(
                            "{} port {dev}: cannot open ({e}); retrying every {:?} at most",
                            side.what,
                            opts.reopen_max
                        );
                    }
                    outage_logged = true;
                }
                nap(backoff.failed(), stop);
                continue;
            }
        };
        match port.try_clone_native() {
            Ok(w) => *lock(slot) = Some(w),
            Err(e) => log::warn!(
                "{} port {dev}: no write handle ({e}); not forwarding to it",
                side.what
            ),
        }
        // After the write handle is in place: from now on bytes for it are written.
        tried.store(true, Ordering::Relaxed);
        side.up().store(true, Ordering::Relaxed);
        side.opens().fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        if !flapping {
            log::info!("{} port {dev}: open", side.what);
        }

        let lost = loop {
            if stop.load(Ordering::Relaxed) {
                break None;
            }
            match port.read(&mut buf) {
                Ok(0) => break Some("hung up".to_string()),
                Ok(n) => {
                    side.read_bytes().fetch_add(n as u64, Ordering::Relaxed);
                    on_bytes(&buf[..n], stop);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::TimedOut | ErrorKind::Interrupted | ErrorKind::WouldBlock
                    ) => {}
                Err(e) => break Some(e.to_string()),
            }
        };
        *lock(slot) = None;
        side.up().store(false, Ordering::Relaxed);
        drop(port);
        if let Some(why) = lost {
            let lasted = opened.elapsed();
            if lasted >= opts.healthy {
                outage_logged = false;
            }
            // The backoff starts over only after an opening that lasted: a port
            // that hangs up at once is reopened ever more slowly (issue #24).
            let delay = backoff.lost_after(lasted);
            flapping = outage_logged && backoff.at_cap() && !backoff.first_at_cap();
            if !flapping {
                log::warn!(
                    "{} port {dev}: lost ({why}); reopening in {delay:?}",
                    side.what
                );
            }
            outage_logged = true;
            nap(delay, stop);
        }
    }
}

/// Queues POS bytes for the printer, in order. Waits while the queue is full
/// (the printer is slower than the POS), which is the back-pressure the POS
/// would feel from a real printer; gives up only on shutdown.
fn forward(tx: &SyncSender<Vec<u8>>, bytes: &[u8], stop: &AtomicBool) {
    let mut item = bytes.to_vec();
    loop {
        match tx.try_send(item) {
            Ok(()) => return,
            Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(back)) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                item = back;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Writes queued bytes to the port in `slot`, in order. A busy port (write
/// timeout) is waited for, the data kept; a failed or absent port drops the
/// data (counted) so the other side never stalls behind it.
fn write_loop(side: &Side, rx: StdReceiver<Vec<u8>>, slot: &Slot, stop: &AtomicBool) {
    let mut down_logged = false;
    while let Ok(bytes) = rx.recv() {
        let mut guard = lock(slot);
        let Some(port) = guard.as_mut() else {
            side.dropped_bytes()
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if !down_logged {
                log::warn!(
                    "{} port is down: bytes for it are dropped until it is back",
                    side.what
                );
                down_logged = true;
            }
            continue;
        };
        down_logged = false;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match port.write(rest) {
                Ok(0) => {
                    side.dropped_bytes()
                        .fetch_add(rest.len() as u64, Ordering::Relaxed);
                    break;
                }
                Ok(n) => {
                    side.written_bytes().fetch_add(n as u64, Ordering::Relaxed);
                    rest = &rest[n..];
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::TimedOut | ErrorKind::Interrupted | ErrorKind::WouldBlock
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        side.dropped_bytes()
                            .fetch_add(rest.len() as u64, Ordering::Relaxed);
                        break;
                    }
                }
                Err(e) => {
                    log::warn!(
                        "{} port: write failed ({e}); dropping until it is reopened",
                        side.what
                    );
                    side.dropped_bytes()
                        .fetch_add(rest.len() as u64, Ordering::Relaxed);
                    // The reader notices the failure too and reopens; until
                    // then nothing more is written to this handle.
                    *guard = None;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialport::{DataBits, FlowControl, Parity, StopBits};
    use std::path::PathBuf;

    fn raw(text: &str) -> Result<RawSerial, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_inheritance() {
        let cfg = raw("device = \"/dev/ttyUSB0\"\nbaud = 19200\nparity = \"even\"\npassthrough = \"/dev/ttyS1\"")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(cfg.pos.baud, 19200);
        assert_eq!(cfg.pos.data_bits, DataBits::Eight);
        assert_eq!(cfg.pos.stop_bits, StopBits::One);
        assert_eq!(cfg.pos.flow_control, FlowControl::None);
        let p = cfg.passthrough.unwrap();
        assert_eq!(p.device, PathBuf::from("/dev/ttyS1"));
        assert_eq!((p.baud, p.parity), (19200, Parity::Even), "inherited");
        let cfg = raw("device = \"/dev/a\"\nflow_control = \"rtscts\"\npassthrough = { device = \"/dev/b\", baud = 38400, flow_control = \"xonxoff\" }")
            .unwrap()
            .validate()
            .unwrap();
        let p = cfg.passthrough.unwrap();
        assert_eq!((p.baud, p.flow_control), (38400, FlowControl::Software));
        assert_eq!(
            (cfg.pos.baud, cfg.pos.flow_control),
            (9600, FlowControl::Hardware)
        );
    }

    #[test]
    fn the_documented_sources_have_valid_serial_settings() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tillrelay.toml");
        let doc: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let keys = [
            "device",
            "baud",
            "data_bits",
            "parity",
            "stop_bits",
            "flow_control",
            "passthrough",
        ];
        let mut seen = 0;
        for src in doc["source"].as_array().unwrap() {
            if src.get("kind").and_then(|k| k.as_str()) != Some("serial") {
                continue;
            }
            let mut serial = toml::Table::new();
            for k in keys {
                if let Some(v) = src.get(k) {
                    serial.insert(k.to_string(), v.clone());
                }
            }
            let raw: RawSerial = toml::Value::Table(serial).try_into().unwrap();
            raw.validate().unwrap();
            seen += 1;
        }
        assert_eq!(seen, 2);
    }

    #[test]
    fn a_regular_file_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("receipts.bin");
        std::fs::write(&file, b"TOTAL 1.00\n\x1dV\x00").unwrap();
        let settings = PortSettings {
            device: file,
            baud: 9600,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
            flow_control: FlowControl::None,
        };
        let e = open(&settings, &TapOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("is a regular file"), "{e}");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases = [
            ("baud = 9600", "device: is required"),
            (
                "device = \"/dev/a\"\nbaud = 10",
                "baud: must be 50 to 4000000, got 10",
            ),
            (
                "device = \"/dev/a\"\ndata_bits = 9",
                "data_bits: must be 5, 6, 7 or 8, got 9",
            ),
            (
                "device = \"/dev/a\"\nparity = \"mark\"",
                "parity: must be none, odd or even, got \"mark\"",
            ),
            (
                "device = \"/dev/a\"\nstop_bits = 3",
                "stop_bits: must be 1 or 2, got 3",
            ),
            (
                "device = \"/dev/a\"\nflow_control = \"dtr\"",
                "flow_control: must be none, xonxoff or rtscts, got \"dtr\"",
            ),
            (
                "device = \"/dev/a\"\npassthrough = { device = \"/dev/b\", parity = \"x\" }",
                "passthrough.parity: must be none, odd or even",
            ),
            (
                "device = \"/dev/a\"\npassthrough = \"/dev/a\"",
                "passthrough.device: is the POS device itself",
            ),
            (
                "device = \"/dev/a\"\npassthrough = { baud = 9600 }",
                "passthrough.device: is required",
            ),
            ("device = \"/dev/a\"\nspeed = 9600", "unknown field `speed`"),
            (
                "device = \"/dev/a\"\npassthrough = { device = \"/dev/b\", passthrough = \"/dev/c\" }",
                "a passthrough has no passthrough of its own",
            ),
        ];
        for (text, want) in cases {
            let e = match raw(text) {
                Err(e) => e,
                Ok(r) => r.validate().unwrap_err(),
            };
            assert!(e.contains(want), "{text:?}: expected {want:?} in {e:?}");
        }
    }
}
