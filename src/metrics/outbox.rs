//! The outbox collector: whether the queue could be read, its size, its cap, and
//! whether it is full (captures waiting for room).

use super::Snapshot;
use super::expo::Expo;

pub fn write(e: &mut Expo, snap: Result<&Snapshot, &String>, cap: u64) {
    e.single(
        "tillrelay_outbox_up",
        "gauge",
        "1 when the last read of the outbox succeeded.",
        if snap.is_ok() { 1.0 } else { 0.0 },
    );
    if let Ok(s) = snap {
        e.single(
            "tillrelay_outbox_size_bytes",
            "gauge",
            "Size of the outbox database.",
            s.status.db_bytes as f64,
        );
        // "Queue full" said plainly: new captures wait for room (issue #15).
        e.single(
            "tillrelay_outbox_full",
            "gauge",
            "1 while the outbox is at its cap (or the disk is full) and new captures wait for room.",
            if s.status.queue_full_since.is_some() { 1.0 } else { 0.0 },
        );
    }
    e.single(
        "tillrelay_outbox_max_size_bytes",
        "gauge",
        "The outbox's cap (outbox.max_size): at the cap new captures wait.",
        cap as f64,
    );
}
