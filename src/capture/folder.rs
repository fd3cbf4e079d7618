//! The watched folder: a POS drops export files, tillrelay turns them into stored
//! orders and moves each file out of the way.
//!
//! How a file travels: noticed (startup scan, inotify event, or the poll tick on
//! network shares where inotify sees nothing) → settled (renamed in, or size and mtime
//! unchanged for `settle`) → identified (size and sha1) and looked up in the ledger →
//! read and parsed → its orders committed with the file's ledger row in one
//! transaction → moved to `done/` (or deleted). A file that cannot be read moves to
//! `rejected/` with `<name>.error.txt` saying why.
//!
//! JSON exports are never held whole: a first pass only hashes the file, a second
//! reads it order by order ([`formats::JsonOrders`]) straight into the file's ingest
//! transaction ([`Outbox::begin_ingest`]), so a file of any size costs one order and a
//! 64 KiB read buffer. CSV files (an order's rows may be anywhere in the file) and
//! receipt files (journalled raw) are read whole, bounded by `max_file_size`, and
//! their orders are stored one at a time into the same kind of transaction.
//!
//! Invariants:
//! - **Nothing is acknowledged before it is durable**: a file leaves the folder only
//!   after its orders are committed.
//! - **A file is ingested once**: the ledger (source, name, size, sha1) is committed
//!   with the orders, so a crash between the commit and the move only finishes the move
//!   on restart.
//! - A file that changes while it is read is not used; it is read again once settled.
//!   A streamed file's bytes are hashed again as they are parsed and must be the bytes
//!   identified (same size, sha1 and mtime), checked before the commit and before the
//!   file is refused as invalid; otherwise the transaction rolls back. So a file cut
//!   or rewritten under the agent is neither half-stored nor rejected for it.
//! - A problem with a file as a whole found after some of its orders were read (a
//!   syntax error near the end) rolls the transaction back: nothing of it is stored.
//! - Hidden files, `*.tmp`, `*.part`, `~*`, symlinks and anything but regular files are
//!   ignored (never read, never moved).
//! - The loop never exits because of the folder: a missing folder is waited for, a
//!   full queue leaves the file in place to be tried again.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, error, info, warn};
use notify::Watcher;
use sha1::{Digest, Sha1};

use crate::capture::formats::{self, Format};
use crate::lifecycle::{Heartbeat, Shutdown};
use crate::outbox::{Capture, CaptureKind, Outbox, OutboxError};
use crate::stamp::{Identity, stamp};

mod files;
mod ingest;
mod settings;
mod watch;

pub use settings::{After, FolderSource, RawFolder};

/// How often a missing folder is looked for, and a full queue retried.
const RETRY: Duration = Duration::from_secs(5);

enum Msg {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// What became of one file.
#[derive(Debug, PartialEq, Eq)]
pub enum FileOutcome {
    /// All orders committed (`new` of them new), file moved to done (or deleted).
    Done { new: usize, duplicates: usize },
    /// Committed before (a crash interrupted the move); only the move was finished.
    AlreadyIngested,
    /// Some orders committed, the others named in the error file; moved to rejected.
    Partial { new: usize, bad: usize },
    /// Nothing readable; moved to rejected with the reason.
    Rejected,
    /// Changed or vanished while being read; left for the next round.
    NotSettled,
}

/// Whether a directory entry is one the agent may read (by name only).
pub fn is_candidate_name(name: &str) -> bool {
    !(name.starts_with('.')
        || name.starts_with('~')
        || name.ends_with(".tmp")
        || name.ends_with(".part")
        || name.ends_with(".error.txt"))
}

/// Watches one folder source until shutdown.
pub struct FolderWatch {
    source: Identity,
    folder: FolderSource,
    outbox: Outbox,
    /// Files seen but not yet settled: (size, mtime, stable since, renamed in).
    pending: HashMap<PathBuf, Seen>,
    full_logged: bool,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    size: u64,
    mtime: Option<SystemTime>,
    since: Instant,
    renamed_in: bool,
}

impl FolderWatch {
    pub fn new(source: Identity, folder: FolderSource, outbox: Outbox) -> FolderWatch {
        FolderWatch {
            source,
            folder,
            outbox,
            pending: HashMap::new(),
            full_logged: false,
        }
    }

    /// The loop: returns when `shutdown` is triggered, after finishing the file in hand.
    pub fn run(mut self, shutdown: &Shutdown, beat: &Heartbeat) {
        let (tx, rx) = mpsc::channel::<Msg>();
        {
            let tx = tx.clone();
            shutdown.on_trigger(move || {
                let _ = tx.send(Msg::Stop);
            });
        }
        let mut watcher: Option<notify::RecommendedWatcher> = None;
        let mut missing_logged = false;
        'outer: while !shutdown.is_triggered() {
            beat.beat();
            if !self.folder.path.is_dir() {
                if !missing_logged {
                    error!(
                        "source {}: folder {} does not exist (or is not a folder); waiting for it",
                        self.source.name,
                        self.folder.path.display()
                    );
                    missing_logged = true;
                }
                watcher = None;
                if shutdown.wait(RETRY.min(beat.max_sleep())) {
                    break;
                }
                continue;
            }
            if missing_logged {
                info!(
                    "source {}: folder {} is back",
                    self.source.name,
                    self.folder.path.display()
                );
                missing_logged = false;
            }
            if let Err(e) = self.ensure_dirs() {
                error!("source {}: {e}", self.source.name);
                if shutdown.wait(RETRY.min(beat.max_sleep())) {
                    break;
                }
                continue;
            }
            if !self.folder.poll && watcher.is_none() {
                watcher = self.watch(tx.clone());
            }

            let full = self.scan_and_process(shutdown);
            let timeout = if full {
                RETRY.min(beat.max_sleep())
            } else if let Some(next) = self.next_settle_check() {
                next
            } else if self.folder.poll || watcher.is_none() {
                self.folder.poll_interval.min(beat.max_sleep())
            } else {
                // Idle with inotify: wake only to beat (and rescan, in case the
                // kernel dropped an event).
                beat.max_sleep()
            };
            // Wait for an event that can change what the folder holds. Access events
            // (our own opendir and reads raise IN_OPEN/IN_CLOSE_NOWRITE) are not: a scan
            // on them would trigger itself forever.
            let deadline = Instant::now() + timeout;
            loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break 'outer,
                    Ok(Msg::Fs(ev)) => {
                        if self.note_event(ev) {
                            // Coalesce a burst of events into one scan.
                            while let Ok(m) = rx.try_recv() {
                                match m {
                                    Msg::Stop => break 'outer,
                                    Msg::Fs(ev) => {
                                        self.note_event(ev);
                                    }
                                }
                            }
                            break;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                }
            }
        }
        debug!("source {}: folder loop stopped", self.source.name);
    }
}

#[cfg(test)]
mod tests;
