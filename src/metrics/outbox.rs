//! The outbox collector: whether the queue could be read, its size, its cap, whether
//! it is full (captures waiting for room), and the room left on its file system.

use std::path::Path;

use super::Snapshot;
use super::expo::Expo;

pub fn write(e: &mut Expo, snap: Result<&Snapshot, &String>, cap: u64, db: &Path) {
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
    if let Some(free) = db.parent().and_then(available_bytes) {
        e.single(
            "tillrelay_outbox_disk_available_bytes",
            "gauge",
            "Room left for the agent on the file system of the outbox (state_dir).",
            free as f64,
        );
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn available_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct it is handed from a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0;
    // The fields are 32-bit on armv7, 64-bit on x86-64: widened either way.
    #[allow(clippy::useless_conversion)]
    let bytes = u64::from(st.f_bavail) * u64::from(st.f_frsize);
    ok.then_some(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_room_left_where_the_queue_lives() {
        let dir = tempfile::tempdir().unwrap();
        let free = super::available_bytes(dir.path()).expect("statvfs");
        assert!(free > 0);
        assert_eq!(super::available_bytes(&dir.path().join("none")), None);
    }
}
