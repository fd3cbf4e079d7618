//! Reopening a device by path, shared by the serial tap (`serial.rs`) and the
//! character device source (`device.rs`): the delays between openings, and what
//! may be opened at all.
//!
//! # Invariants
//!
//! - **The backoff starts over only after an opening that lasted.** Each failed
//!   opening, and each opening that ended within `healthy`, doubles the next delay
//!   from `min` up to `max`; only an opening that stayed open at least `healthy`
//!   brings it back to `min`. A device that opens and hangs up at once
//!   (`/dev/null`, a flapping USB adapter) is reopened ever more slowly, at most
//!   every `max`, never every `min` for ever (issue #24).
//! - **Only devices are read.** A regular file or a block device is refused
//!   ([`refuse_non_device`], `ErrorKind::Unsupported`): a file gives the same bytes
//!   again at every opening, and reading one in a loop journalled one receipt
//!   hundreds of times (issue #24). Bytes cannot tell a re-read from a reprint, so
//!   the agent decides by what the path is; receipts saved to files belong to a
//!   folder source with `format = "receipt"`, whose ledger takes each file once.

use std::fs::FileType;
use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

/// The reopen delays of one device path.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    healthy: Duration,
    /// The delay the next failure waits.
    next: Duration,
    /// How many delays in a row were at the cap.
    at_cap: u32,
}

impl Backoff {
    /// Delays from `min` (at least 1 ms) doubling up to `max`; an opening that
    /// lasted `healthy` starts them over.
    pub(crate) fn new(min: Duration, max: Duration, healthy: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            healthy,
            next: min,
            at_cap: 0,
        }
    }

    /// An opening failed: the delay to wait before the next.
    pub(crate) fn failed(&mut self) -> Duration {
        let d = self.next;
        self.at_cap = if d >= self.max { self.at_cap + 1 } else { 0 };
        self.next = (d * 2).min(self.max);
        d
    }

    /// An opening ended after `lasted`: the delay to wait before the next.
    pub(crate) fn lost_after(&mut self, lasted: Duration) -> Duration {
        if lasted >= self.healthy {
            self.next = self.min;
        }
        self.failed()
    }

    /// Whether the next delay is the shortest (no outage under way).
    pub(crate) fn is_start(&self) -> bool {
        self.next == self.min
    }

    /// Whether the last delay was at the cap.
    pub(crate) fn at_cap(&self) -> bool {
        self.at_cap > 0
    }

    /// Whether the last delay was the first at the cap (said once, then quiet).
    pub(crate) fn first_at_cap(&self) -> bool {
        self.at_cap == 1
    }
}

/// `Err(ErrorKind::Unsupported)` with the reason for a regular file or a block
/// device (see the module's invariants); `Ok` for anything else.
pub(crate) fn refuse_non_device(t: FileType) -> std::io::Result<()> {
    if !t.is_file() && !t.is_block_device() {
        return Ok(());
    }
    Err(std::io::Error::new(
        ErrorKind::Unsupported,
        format!(
            "is a {}, not a character device: not read (a file gives the same bytes \
             again at every opening, which would journal its receipts over and over); \
             for receipts saved to files use a folder source with format = \"receipt\"",
            if t.is_file() {
                "regular file"
            } else {
                "block device"
            }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_while_openings_end_at_once_and_starts_over_after_a_healthy_one() {
        let mut b = Backoff::new(
            Duration::from_millis(250),
            Duration::from_secs(2),
            Duration::from_secs(10),
        );
        let quick = Duration::from_millis(1);
        let ms = |d: Duration| d.as_millis();
        let got: Vec<u128> = (0..6).map(|_| ms(b.lost_after(quick))).collect();
        assert_eq!(got, [250, 500, 1000, 2000, 2000, 2000]);
        assert!(b.at_cap() && !b.first_at_cap());
        // a healthy opening: the next loss waits the shortest delay again
        assert_eq!(ms(b.lost_after(Duration::from_secs(10))), 250);
        assert!(!b.at_cap());
        // failed openings double as well
        assert_eq!(ms(b.failed()), 500);
        assert_eq!(ms(b.failed()), 1000);
    }

    #[test]
    fn files_and_block_devices_are_refused_character_devices_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("receipts.bin");
        std::fs::write(&file, b"TOTAL 1.00\n\x1dV\x00").unwrap();
        let t = std::fs::metadata(&file).unwrap().file_type();
        let e = refuse_non_device(t).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("is a regular file"), "{e}");
        let null = std::fs::metadata("/dev/null").unwrap().file_type();
        assert!(refuse_non_device(null).is_ok());
    }
}
