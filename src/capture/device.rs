//! A character device stream (`kind = "device"`): typically the Linux USB
//! printer gadget `/dev/g_printer0` (an ARM box with an OTG port shows itself
//! to the POS as a USB printer), forwarded to the real USB printer
//! `/dev/usb/lp0` (`passthrough`), with the printer's status bytes sent back.
//!
//! ```text
//!  POS ═USB═▶ /dev/g_printer0 ─[gadget thread]─┬─▶ /dev/usb/lp0 ═USB═▶ printer
//!                                              └─▶ capture (try_send)
//!  POS ◀═════ /dev/g_printer0 ◀─[printer thread]── /dev/usb/lp0   (status, where it gives any)
//! ```
//!
//! # Invariants
//!
//! - **Printing goes first and is never held back by capture** (as on the
//!   serial tap): a chunk is written to the printer before it is offered to
//!   capture with `try_send`; overflow is dropped from capture only, counted.
//! - **Back-pressure, not buffering.** The gadget thread waits for the printer
//!   to take each chunk; meanwhile it reads nothing more, so the USB host (the
//!   POS) is held off as by a real printer. Memory is one buffer.
//! - **Devices come back.** Any read/write error or hang-up closes that
//!   device, which is reopened by path with capped exponential backoff; the
//!   source never exits because of a device. While the printer is absent,
//!   POS bytes are still read and captured, and counted as not printed
//!   ([`SourceStats::printer_dropped_bytes`]). The backoff goes back to its
//!   start only after a *healthy* opening (one that stayed open at least
//!   [`DeviceOptions::healthy`]): a device that hangs up at once (`/dev/null`)
//!   is reopened ever more slowly, at most every `reopen_max` (issue #24).
//!   The backoff and the refusal below are `reopen.rs`, shared with the serial tap.
//! - **Only devices are read.** A path that is a regular file (or a block
//!   device) is refused at every opening, with an error logged once per
//!   outage: a file gives the same bytes again at every opening, and reading
//!   it in a loop journalled one receipt hundreds of times (issue #24). Bytes
//!   cannot tell a re-read from a reprint, so the agent decides by what the
//!   path is, not by content; receipts saved to files belong to a folder
//!   source with `format = "receipt"`, which has a ledger.
//! - **Each opening of the POS-side device is its own stream**, and its end
//!   (unplug, shutdown) ends its receipt.
//! - A device that is a tty (a pty standing in, a USB-serial adapter) is put in
//!   raw mode, so the line discipline never alters a byte.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::mpsc::Receiver;

use super::reopen::{Backoff, refuse_non_device};
use super::stream::{CaptureTx, SourceStats, StreamEvent, poll_fd};
use crate::lifecycle::Shutdown;

/// The keys of a `kind = "device"` source, as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    /// The POS side, e.g. `/dev/g_printer0`.
    pub device: Option<String>,
    /// The real printer, e.g. `/dev/usb/lp0`; none to capture only.
    pub passthrough: Option<String>,
}

/// A validated `kind = "device"` source.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    pub device: PathBuf,
    pub passthrough: Option<PathBuf>,
}

impl DeviceConfig {
    /// The keys as the file writes them.
    pub fn raw(&self) -> RawDevice {
        RawDevice {
            device: Some(self.device.to_string_lossy().into_owned()),
            passthrough: self
                .passthrough
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        }
    }
}

impl RawDevice {
    /// Errors name the key relative to the source (`device: …`).
    pub fn validate(self) -> Result<DeviceConfig, String> {
        let path = |key: &str, v: Option<String>| -> Result<Option<PathBuf>, String> {
            match v.as_deref().map(str::trim) {
                None => Ok(None),
                Some(p) if p.starts_with('/') => Ok(Some(PathBuf::from(p))),
                Some(p) => Err(format!(
                    "{key}: {p:?} must be an absolute device path (e.g. /dev/g_printer0)"
                )),
            }
        };
        let device =
            path("device", self.device)?.ok_or("device: is required (e.g. \"/dev/g_printer0\")")?;
        let passthrough = path("passthrough", self.passthrough)?;
        if passthrough.as_deref() == Some(device.as_path()) {
            return Err("passthrough: is the POS device itself".into());
        }
        Ok(DeviceConfig {
            device,
            passthrough,
        })
    }
}

/// Tuning; the defaults suit production, tests shorten the backoff.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// The longest a blocked thread waits before looking at shutdown.
    pub poll: Duration,
    pub reopen_min: Duration,
    pub reopen_max: Duration,
    /// An opening that lasted this long was healthy: the backoff starts over.
    pub healthy: Duration,
    pub capture_capacity: usize,
    pub buffer: usize,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            poll: Duration::from_millis(200),
            reopen_min: Duration::from_millis(250),
            reopen_max: Duration::from_secs(10),
            healthy: Duration::from_secs(10),
            capture_capacity: 1024,
            buffer: 4096,
        }
    }
}

/// The write side of a device, shared with the thread that (re)opens it.
/// `failed` tells that thread a write failed without taking the lock, which
/// a write blocked on a busy printer may hold for long.
#[derive(Default)]
struct Dev {
    file: Mutex<Option<File>>,
    failed: AtomicBool,
}

type Slot = Arc<Dev>;

fn lock(slot: &Slot) -> MutexGuard<'_, Option<File>> {
    slot.file.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running device source. Trigger shutdown, then [`DeviceTap::join`].
pub struct DeviceTap {
    threads: Vec<JoinHandle<()>>,
    stats: Arc<SourceStats>,
}

impl DeviceTap {
    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts device source `name`; capture events come out of the receiver.
pub fn start(
    name: &str,
    cfg: &DeviceConfig,
    opts: DeviceOptions,
    shutdown: &Shutdown,
) -> std::io::Result<(DeviceTap, Receiver<StreamEvent>)> {
    start_with(name, cfg, opts, shutdown, Arc::default())
}

/// [`start`], counting in `stats` (the daemon keeps them across restarts of
/// the source, for `status` and metrics).
pub fn start_with(
    name: &str,
    cfg: &DeviceConfig,
    opts: DeviceOptions,
    shutdown: &Shutdown,
    stats: Arc<SourceStats>,
) -> std::io::Result<(DeviceTap, Receiver<StreamEvent>)> {
    let (capture, rx) = CaptureTx::channel(name, opts.capture_capacity, stats.clone());
    let pos_slot: Slot = Arc::default();
    let printer_slot: Slot = Arc::default();
    let mut threads = Vec::new();
    if let Some(printer) = &cfg.passthrough {
        let l = Link {
            path: printer.clone(),
            what: "printer",
            opts: opts.clone(),
            shutdown: shutdown.clone(),
            stats: stats.clone(),
        };
        let (own, other) = (printer_slot.clone(), pos_slot.clone());
        threads.push(spawn(format!("dev-{name}-prn"), move || {
            l.run(&own, |bytes| {
                SourceStats::add(&l.stats.bytes_from_printer, bytes.len());
                if forward(&other, bytes, &l.opts, &l.shutdown) {
                    SourceStats::add(&l.stats.bytes_to_pos, bytes.len());
                }
            })
        })?);
    }
    let l = Link {
        path: cfg.device.clone(),
        what: "POS",
        opts,
        shutdown: shutdown.clone(),
        stats: stats.clone(),
    };
    let passthrough = cfg.passthrough.is_some();
    threads.push(spawn(format!("dev-{name}-pos"), move || {
        let mut stream = 0u64;
        l.run_streams(&pos_slot, &mut stream, &capture, |bytes, id| {
            SourceStats::add(&l.stats.bytes_from_pos, bytes.len());
            if passthrough {
                if forward(&printer_slot, bytes, &l.opts, &l.shutdown) {
                    SourceStats::add(&l.stats.bytes_to_printer, bytes.len());
                } else {
                    SourceStats::add(&l.stats.printer_dropped_bytes, bytes.len());
                }
            }
            capture.data(id, None, bytes);
        })
    })?);
    Ok((DeviceTap { threads, stats }, rx))
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(f)
}

/// Writes `bytes` to the device in `slot`; false if it is absent or failed
/// (a failed device is taken out of the slot; its reader reopens it).
fn forward(slot: &Slot, bytes: &[u8], opts: &DeviceOptions, shutdown: &Shutdown) -> bool {
    let mut g = lock(slot);
    let Some(f) = g.as_mut() else {
        return false;
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        match f.write(rest) {
            Ok(0) => break,
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if shutdown.is_triggered() {
                    return false;
                }
                let _ = poll_fd(f.as_raw_fd(), libc::POLLOUT, opts.poll);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if rest.is_empty() {
        true
    } else {
        *g = None;
        slot.failed.store(true, Ordering::Relaxed);
        false
    }
}

/// One device: opened by path, reopened with backoff.
struct Link {
    path: PathBuf,
    what: &'static str,
    opts: DeviceOptions,
    shutdown: Shutdown,
    stats: Arc<SourceStats>,
}

/// How an open device was lost.
enum Lost {
    Shutdown,
    Gone(String),
}

impl Link {
    fn up(&self, v: bool) {
        if self.what == "printer" {
            self.stats.printer_reachable.store(v, Ordering::Relaxed);
        } else {
            let n = u64::from(v);
            self.stats.connected_peers.store(n, Ordering::Relaxed);
        }
    }

    /// The printer side: every read handed to `on_bytes`, until shutdown.
    fn run(&self, slot: &Slot, mut on_bytes: impl FnMut(&[u8])) {
        let mut ignored = 0;
        self.run_streams(slot, &mut ignored, &CaptureTx::none(), |b, _| on_bytes(b));
    }

    /// Opens, reads, reopens, until shutdown; each opening is stream
    /// `*stream` (incremented per opening) and is ended on `capture` when lost.
    fn run_streams(
        &self,
        slot: &Slot,
        stream: &mut u64,
        capture: &CaptureTx,
        mut on_bytes: impl FnMut(&[u8], u64),
    ) {
        let dev = self.path.display().to_string();
        let mut backoff = Backoff::new(
            self.opts.reopen_min,
            self.opts.reopen_max,
            self.opts.healthy,
        );
        let mut outage_logged = false;
        let mut buf = vec![0u8; self.opts.buffer.max(1)];
        while !self.shutdown.is_triggered() {
            let file = match open(&self.path).and_then(|f| f.try_clone().map(|w| (f, w))) {
                Ok(f) => f,
                Err(e) => {
                    if self.what == "printer" {
                        self.stats.printer_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    if !outage_logged {
                        if e.kind() == ErrorKind::Unsupported {
                            log::error!("{} device {dev}: {e}", self.what);
                        } else {
                            log::warn!(
                                "{} device {dev}: cannot open ({e}); retrying every {:?} at most",
                                self.what,
                                self.opts.reopen_max
                            );
                        }
                        outage_logged = true;
                    }
                    self.shutdown.wait(backoff.failed());
                    continue;
                }
            };
            let (mut reader, writer) = file;
            slot.failed.store(false, Ordering::Relaxed);
            *lock(slot) = Some(writer);
            *stream += 1;
            let id = *stream;
            if self.what == "POS" {
                self.stats.connections.fetch_add(1, Ordering::Relaxed);
            }
            self.up(true);
            let opened = Instant::now();
            if !outage_logged || backoff.is_start() {
                log::info!("{} device {dev}: open", self.what);
            }
            let lost = self.read_until_lost(&mut reader, slot, &mut buf, |b| on_bytes(b, id));
            *lock(slot) = None;
            self.up(false);
            if self.what == "POS" {
                capture.end(id, None, &self.shutdown);
            }
            if let Lost::Gone(why) = lost {
                let lasted = opened.elapsed();
                if lasted >= self.opts.healthy {
                    outage_logged = false;
                }
                let delay = backoff.lost_after(lasted);
                // Logged while the delay grows; a device that keeps hanging up
                // at once is then retried quietly every `reopen_max`.
                if !outage_logged || !backoff.at_cap() || backoff.first_at_cap() {
                    log::warn!("{} device {dev}: {why}; reopening in {delay:?}", self.what);
                }
                outage_logged = true;
                self.shutdown.wait(delay);
            }
        }
    }

    fn read_until_lost(
        &self,
        f: &mut File,
        slot: &Slot,
        buf: &mut [u8],
        mut on_bytes: impl FnMut(&[u8]),
    ) -> Lost {
        let mut readable = true;
        loop {
            if self.shutdown.is_triggered() {
                return Lost::Shutdown;
            }
            if !readable {
                // A printer with no status channel: it is lost when a write fails.
                if slot.failed.load(Ordering::Relaxed) {
                    return Lost::Gone("write failed".into());
                }
                self.shutdown.wait(self.opts.poll);
                continue;
            }
            match poll_fd(f.as_raw_fd(), libc::POLLIN, self.opts.poll) {
                Ok(true) => {}
                Ok(false) => {
                    if slot.failed.load(Ordering::Relaxed) {
                        return Lost::Gone("write failed".into());
                    }
                    continue;
                }
                Err(e) => return Lost::Gone(format!("poll: {e}")),
            }
            match f.read(buf) {
                Ok(0) => return Lost::Gone("hung up".into()),
                Ok(n) => on_bytes(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                // usblp refuses reads from a printer with no back channel.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => readable = false,
                Err(e) => return Lost::Gone(e.to_string()),
            }
        }
    }
}

/// Opens a device read-write, nonblocking (every wait is a bounded poll), not
/// as a controlling tty; a tty is put in raw mode. A regular file or a block
/// device is refused (`ErrorKind::Unsupported`, see the module's invariants).
fn open(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    refuse_non_device(f.metadata()?.file_type())?;
    let fd = f.as_raw_fd();
    // SAFETY: fd is open for the life of `f`; termios is plain data.
    unsafe {
        if libc::isatty(fd) == 1 {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) == 0 {
                libc::cfmakeraw(&mut t);
                libc::tcsetattr(fd, libc::TCSANOW, &t);
            }
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_refused_a_character_device_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("receipts.bin");
        std::fs::write(&file, b"TOTAL 1.00\n\x1dV\x00").unwrap();
        let e = open(&file).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("is a regular file"), "{e}");
        assert!(open(Path::new("/dev/null")).is_ok());
    }

    #[test]
    fn settings_name_their_key() {
        let ok = RawDevice {
            device: Some("/dev/g_printer0".into()),
            passthrough: Some("/dev/usb/lp0".into()),
        }
        .validate()
        .unwrap();
        assert_eq!(ok.device, PathBuf::from("/dev/g_printer0"));
        let e = RawDevice::default().validate().unwrap_err();
        assert!(e.starts_with("device: is required"), "{e}");
        let e = RawDevice {
            device: Some("/dev/g_printer0".into()),
            passthrough: Some("usb/lp0".into()),
        }
        .validate()
        .unwrap_err();
        assert!(e.starts_with("passthrough:"), "{e}");
        let e = RawDevice {
            device: Some("/dev/x".into()),
            passthrough: Some("/dev/x".into()),
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("POS device itself"), "{e}");
    }
}
