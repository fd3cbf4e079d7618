//! The live counters of network and device sources, handed from the daemon to
//! `tillrelay status` (a separate process) through one small file,
//! `<state_dir>/sources.json`.
//!
//! Why a file and not the database: the counters change with every chunk a POS
//! prints; rows rewritten for them would wear the box's flash and take the
//! queue's write lock from capture. The file is rewritten only when a counter
//! changed, at most every [`WRITE_EVERY`], atomically (temporary file +
//! rename), so a reader sees a whole snapshot or the previous one, and an idle
//! shop writes nothing. The file says when it was written and by which pid, so
//! `status` can tell a stale snapshot (daemon stopped) from a live one.
//!
//! Invariants: writing never fails the daemon (a failure is logged once); a
//! missing or damaged file only makes `status` say the counters are unknown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::capture::stream::SourceStats;
use crate::lifecycle::{Heartbeat, Shutdown};

/// The file's name in the state dir.
pub const FILE: &str = "sources.json";

/// The most often the file is rewritten.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);

/// One source's counters as `status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub connected_peers: u64,
    pub connections: u64,
    pub printer_reachable: bool,
    pub printer_failures: u64,
    pub bytes_from_pos: u64,
    pub bytes_to_printer: u64,
    pub bytes_from_printer: u64,
    pub bytes_to_pos: u64,
    pub refused_peers: u64,
    pub refused_busy: u64,
    /// Idle connections that gave way to a new one (written since issue #24).
    #[serde(default)]
    pub evicted_idle: u64,
    #[serde(default)]
    pub idle_closed: u64,
    #[serde(default)]
    pub cut_for_memory: u64,
    pub capture_dropped_bytes: u64,
    pub printer_dropped_bytes: u64,
    /// Unix milliseconds of the last receipt (0: none yet).
    pub last_receipt_ms: u64,
}

impl Counters {
    pub fn of(s: &SourceStats) -> Counters {
        let g = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
        Counters {
            connected_peers: g(&s.connected_peers),
            connections: g(&s.connections),
            printer_reachable: s.printer_reachable.load(Ordering::Relaxed),
            printer_failures: g(&s.printer_failures),
            bytes_from_pos: g(&s.bytes_from_pos),
            bytes_to_printer: g(&s.bytes_to_printer),
            bytes_from_printer: g(&s.bytes_from_printer),
            bytes_to_pos: g(&s.bytes_to_pos),
            refused_peers: g(&s.refused_peers),
            refused_busy: g(&s.refused_busy),
            evicted_idle: g(&s.evicted_idle),
            idle_closed: g(&s.idle_closed),
            cut_for_memory: g(&s.cut_for_memory),
            capture_dropped_bytes: g(&s.capture_dropped_bytes),
            printer_dropped_bytes: g(&s.printer_dropped_bytes),
            last_receipt_ms: g(&s.last_receipt_ms),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The daemon that wrote it.
    pub pid: u32,
    /// Unix milliseconds when it was written.
    pub written_ms: u64,
    pub sources: BTreeMap<String, Counters>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Reads the snapshot, if there is a readable one.
pub fn read(state_dir: &Path) -> Option<Snapshot> {
    let text = std::fs::read(path(state_dir)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn write(state_dir: &Path, snap: &Snapshot) -> std::io::Result<()> {
    let tmp = state_dir.join(format!(".{FILE}.tmp"));
    let text = serde_json::to_vec_pretty(snap).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path(state_dir))
}

/// The sources whose counters are written: a reload adds and removes some while
/// the writer runs.
pub type Live = Arc<Mutex<Vec<(String, Arc<SourceStats>)>>>;

/// The daemon's writer loop: rewrites the file when a counter changed, at most
/// every [`WRITE_EVERY`], and once more at shutdown. Nothing is written while no
/// network or device source ever ran.
pub fn run(state_dir: &Path, sources: &Live, shutdown: &Shutdown, beat: &Heartbeat) {
    let mut last: Option<BTreeMap<String, Counters>> = None;
    let mut failing = false;
    loop {
        beat.beat();
        let stop = shutdown.is_triggered();
        let now: BTreeMap<String, Counters> = sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, s)| (n.clone(), Counters::of(s)))
            .collect();
        let never = last.is_none() && now.is_empty();
        if !never && last.as_ref() != Some(&now) {
            let snap = Snapshot {
                pid: std::process::id(),
                written_ms: now_ms(),
                sources: now.clone(),
            };
            match write(state_dir, &snap) {
                Ok(()) => {
                    failing = false;
                    last = Some(now);
                }
                Err(e) => {
                    if !failing {
                        log::warn!(
                            "cannot write {} (status will not show live source counters): {e}",
                            path(state_dir).display()
                        );
                    }
                    failing = true;
                }
            }
        }
        if stop || shutdown.wait(WRITE_EVERY.min(beat.max_sleep())) {
            if stop {
                break;
            }
            continue;
        }
    }
}
