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

mod settings;
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

    fn ensure_dirs(&self) -> io::Result<()> {
        for d in [&self.folder.done_dir, &self.folder.rejected_dir] {
            fs::create_dir_all(d).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", d.display()))
            })?;
        }
        Ok(())
    }

    fn watch(&self, tx: mpsc::Sender<Msg>) -> Option<notify::RecommendedWatcher> {
        let handler = move |ev: notify::Result<notify::Event>| {
            let _ = tx.send(Msg::Fs(ev));
        };
        let mut w = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                warn!(
                    "source {}: cannot watch {} ({e}); polling every {:?} instead",
                    self.source.name,
                    self.folder.path.display(),
                    self.folder.poll_interval
                );
                return None;
            }
        };
        match w.watch(&self.folder.path, notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                warn!(
                    "source {}: cannot watch {} ({e}); polling every {:?} instead",
                    self.source.name,
                    self.folder.path.display(),
                    self.folder.poll_interval
                );
                None
            }
        }
    }

    /// Notes what an event says; returns whether it may have changed the folder's
    /// files (and so is worth a scan).
    fn note_event(&mut self, ev: notify::Result<notify::Event>) -> bool {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                warn!("source {}: watch error: {e}; rescanning", self.source.name);
                return true;
            }
        };
        use notify::event::{EventKind, ModifyKind, RenameMode};
        if matches!(ev.kind, EventKind::Access(_)) {
            return false;
        }
        let renamed_to = matches!(
            ev.kind,
            EventKind::Modify(ModifyKind::Name(RenameMode::To))
                | EventKind::Modify(ModifyKind::Name(RenameMode::Both))
        );
        if renamed_to {
            // A file renamed into the folder is complete by the POS's own protocol.
            if let Some(to) = ev.paths.last() {
                if let Ok(md) = fs::symlink_metadata(to) {
                    self.pending.insert(
                        to.clone(),
                        Seen {
                            size: md.len(),
                            mtime: md.modified().ok(),
                            since: Instant::now(),
                            renamed_in: true,
                        },
                    );
                }
            }
        }
        true
    }

    /// How long until the earliest pending file may have settled.
    fn next_settle_check(&self) -> Option<Duration> {
        let now = Instant::now();
        self.pending
            .values()
            .map(|s| {
                (s.since + self.folder.settle)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(50))
            })
            .min()
    }

    /// One pass over the folder. Returns true if the queue was full (try later).
    fn scan_and_process(&mut self, shutdown: &Shutdown) -> bool {
        let entries = match fs::read_dir(&self.folder.path) {
            Ok(e) => e,
            Err(e) => {
                warn!(
                    "source {}: cannot list {}: {e}",
                    self.source.name,
                    self.folder.path.display()
                );
                return false;
            }
        };
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut present = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                self.reject_odd_name(&entry.path());
                continue;
            };
            if !is_candidate_name(name) {
                continue;
            }
            let path = entry.path();
            // symlink_metadata: a symlink is never followed, whatever it points at.
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue;
            };
            if !md.file_type().is_file() {
                continue;
            }
            present.push(path.clone());
            let (size, mtime) = (md.len(), md.modified().ok());
            let seen = self.pending.entry(path.clone()).or_insert(Seen {
                size,
                mtime,
                since: now,
                renamed_in: false,
            });
            if seen.size != size || seen.mtime != mtime {
                *seen = Seen {
                    size,
                    mtime,
                    since: now,
                    renamed_in: false,
                };
            }
            if seen.renamed_in || now.duration_since(seen.since) >= self.folder.settle {
                ready.push(path);
            }
        }
        self.pending.retain(|p, _| present.contains(p));
        ready.sort();
        for path in ready {
            if shutdown.is_triggered() {
                break;
            }
            match self.process_file(&path) {
                Ok(FileOutcome::NotSettled) => {
                    if let Some(s) = self.pending.get_mut(&path) {
                        s.since = Instant::now();
                        s.renamed_in = false;
                    }
                }
                Ok(_) => {
                    self.pending.remove(&path);
                    self.full_logged = false;
                }
                Err(OutboxError::Full) => {
                    if !self.full_logged {
                        error!(
                            "source {}: the queue is full; {} waits in the folder until space returns",
                            self.source.name,
                            path.display()
                        );
                        self.full_logged = true;
                    }
                    return true;
                }
                Err(e) => {
                    error!(
                        "source {}: {}: {e}; will try again",
                        self.source.name,
                        path.display()
                    );
                    return true;
                }
            }
        }
        false
    }

    /// Reads, commits and moves one settled file.
    pub fn process_file(&mut self, path: &Path) -> Result<FileOutcome, OutboxError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let src = self.source.name.clone();
        let Ok(before) = fs::symlink_metadata(path) else {
            return Ok(FileOutcome::NotSettled);
        };
        if !before.file_type().is_file() {
            return Ok(FileOutcome::NotSettled);
        }
        if before.len() > self.folder.max_file_size {
            let msg = format!(
                "the file is {} bytes, over max_file_size ({} bytes)",
                before.len(),
                self.folder.max_file_size
            );
            self.outbox.count(&src, "files_seen", 1)?;
            let unit = Capture {
                source: &src,
                kind: CaptureKind::File,
                name: Some(&name),
                size: before.len(),
                hash: String::new(),
                raw: None,
                error: None,
            };
            self.outbox.record_rejected(&unit, &msg)?;
            self.reject(path, &name, &msg);
            return Ok(FileOutcome::Rejected);
        }
        let mut file = match open_regular(path) {
            Ok(f) => f,
            Err(e) => {
                debug!("source {src}: {}: {e}; trying later", path.display());
                return Ok(FileOutcome::NotSettled);
            }
        };
        let format = formats::detect(self.folder.format, &name);
        // JSON exports are streamed: identified here by a first pass that only hashes,
        // then read order by order into the transaction. The other formats are read
        // whole (CSV groups rows from anywhere in the file; receipt files are
        // journalled raw).
        let streamed = format == Some(Format::Json);
        let read = if streamed {
            hash_to_end(&mut file).map(|(size, hash)| (size, hash, Vec::new()))
        } else {
            read_to_end(&mut file).map(|bytes| {
                let hash = hex(&Sha1::digest(&bytes));
                (bytes.len() as u64, hash, bytes)
            })
        };
        let (size, hash, bytes) = match read {
            Ok(r) => r,
            Err(e) => {
                debug!("source {src}: {}: {e}; trying later", path.display());
                return Ok(FileOutcome::NotSettled);
            }
        };
        // A writer still at work shows up as a changed size or mtime: use nothing read.
        if !unchanged(path, &before, size) {
            return Ok(FileOutcome::NotSettled);
        }
        if self.outbox.file_ingested(&src, &name, size, &hash)? {
            info!("source {src}: {name} was committed before; finishing its move");
            self.finish(path, &name);
            return Ok(FileOutcome::AlreadyIngested);
        }
        self.outbox.count(&src, "files_seen", 1)?;
        let mut unit = Capture {
            source: &src,
            kind: CaptureKind::File,
            name: Some(&name),
            size,
            hash,
            raw: None,
            error: None,
        };
        if format == Some(Format::Receipt) {
            // Receipt files are journalled raw, so `reparse` can read them again after
            // a template fix.
            unit.raw = Some(&bytes);
        }
        let read = if streamed {
            self.stream_json(&unit, file, path, &before)?
        } else {
            self.ingest_whole(&unit, &bytes, &name)?
        };
        let (report, errors) = match read {
            FileRead::Committed { report, errors } => (report, errors),
            FileRead::Changed => return Ok(FileOutcome::NotSettled),
            FileRead::Invalid(msg) => {
                warn!("source {src}: rejected {name}: {msg}");
                self.outbox.record_rejected(&unit, &msg)?;
                self.reject(path, &name, &msg);
                return Ok(FileOutcome::Rejected);
            }
            FileRead::Empty => {
                let msg = "the file holds no orders".to_string();
                self.outbox.record_rejected(&unit, &msg)?;
                self.reject(path, &name, &msg);
                return Ok(FileOutcome::Rejected);
            }
        };
        crate::failpoint::hit("folder.after_commit");
        if !report.duplicates.is_empty() {
            info!(
                "source {src}: {name}: {} order(s) already stored, not stored again: {}",
                report.duplicates.len(),
                report.duplicates.join(", ")
            );
        }
        if !report.corrected.is_empty() {
            info!(
                "source {src}: {name}: {} rejected order(s) corrected, sending them again: {}",
                report.corrected.len(),
                report.corrected.join(", ")
            );
        }
        if errors.is_empty() {
            info!("source {src}: {name}: {} new order(s)", report.new);
            self.finish(path, &name);
            Ok(FileOutcome::Done {
                new: report.new,
                duplicates: report.duplicates.len(),
            })
        } else {
            let msg = format!(
                "{} order(s) of this file were stored; {} could not be read and were not:\n{}\n\
                 Fix them and drop the file again: the stored orders will not be stored twice.",
                report.new + report.duplicates.len() + report.corrected.len(),
                errors.len(),
                errors.join("\n")
            );
            warn!("source {src}: {name}: {}", msg.replace('\n', "; "));
            self.reject(path, &name, &msg);
            Ok(FileOutcome::Partial {
                new: report.new,
                bad: errors.len(),
            })
        }
    }

    /// Reads a JSON export order by order straight into one ingest transaction: the
    /// memory it takes is one order and a read buffer, whatever the file's size. The
    /// bytes read are hashed again and must be the file identified as `unit` (same
    /// size and sha1, size and mtime unchanged), or everything rolls back and the file
    /// is read again once settled; the same check comes before a file is refused as
    /// invalid, so a file caught half-written is never rejected for it.
    fn stream_json(
        &mut self,
        unit: &Capture<'_>,
        mut file: fs::File,
        path: &Path,
        before: &fs::Metadata,
    ) -> Result<FileRead, OutboxError> {
        if file.seek(io::SeekFrom::Start(0)).is_err() {
            return Ok(FileRead::Changed);
        }
        let mut src = Hashing::new(file);
        let mut ingest = self.outbox.begin_ingest(unit)?;
        let mut errors = Vec::new();
        let mut reader = formats::JsonOrders::new(&mut src);
        let invalid = loop {
            match reader.next_order() {
                Ok(Some(Ok(mut order))) => {
                    stamp(&mut order, &self.source);
                    ingest.add(&order)?;
                }
                Ok(Some(Err(e))) => errors.push(e.to_string()),
                Ok(None) => break None,
                Err(formats::StreamError::Invalid(e)) => break Some(e.to_string()),
                Err(formats::StreamError::Io(_)) => return Ok(FileRead::Changed),
            }
        };
        drop(reader);
        let Ok((size, hash)) = src.finish() else {
            return Ok(FileRead::Changed);
        };
        if size != unit.size || hash != unit.hash || !unchanged(path, before, size) {
            return Ok(FileRead::Changed);
        }
        if let Some(msg) = invalid {
            return Ok(FileRead::Invalid(msg));
        }
        if ingest.orders() == 0 && errors.is_empty() {
            return Ok(FileRead::Empty);
        }
        let error = (!errors.is_empty()).then(|| errors.join("\n"));
        let report = ingest.commit(error.as_deref())?;
        Ok(FileRead::Committed { report, errors })
    }

    /// CSV and receipt files: parsed from the bytes in hand, then stored one order at a
    /// time in one transaction.
    fn ingest_whole(
        &mut self,
        unit: &Capture<'_>,
        bytes: &[u8],
        name: &str,
    ) -> Result<FileRead, OutboxError> {
        let parsed = match formats::read(
            bytes,
            self.folder.format,
            name,
            &self.folder.csv,
            self.folder.receipt.as_ref(),
        ) {
            Ok(p) => p,
            Err(e) => return Ok(FileRead::Invalid(e.to_string())),
        };
        for w in &parsed.warnings {
            warn!("source {}: {name}: {w}", self.source.name);
        }
        if parsed.orders.is_empty() && parsed.errors.is_empty() {
            return Ok(FileRead::Empty);
        }
        let errors: Vec<String> = parsed.errors.iter().map(|e| e.to_string()).collect();
        let error = (!errors.is_empty()).then(|| errors.join("\n"));
        let mut ingest = self.outbox.begin_ingest(unit)?;
        for mut order in parsed.orders {
            stamp(&mut order, &self.source);
            ingest.add(&order)?;
        }
        let report = ingest.commit(error.as_deref())?;
        Ok(FileRead::Committed { report, errors })
    }

    /// After a successful commit: move to done, or delete.
    fn finish(&self, path: &Path, name: &str) {
        let res = match self.folder.after {
            After::Delete => fs::remove_file(path),
            After::Move => move_into(path, &self.folder.done_dir, name).map(|_| ()),
        };
        if let Err(e) = res {
            // The ledger makes this safe to retry: the next scan only finishes the move.
            error!(
                "source {}: {} is committed but could not be moved: {e}",
                self.source.name,
                path.display()
            );
        }
    }

    fn reject(&self, path: &Path, name: &str, why: &str) {
        match move_into(path, &self.folder.rejected_dir, name) {
            Ok(dest) => {
                let mut err_path = dest.into_os_string();
                err_path.push(".error.txt");
                let text = format!("file: {name}\nsource: {}\n\n{why}\n", self.source.name);
                if let Err(e) = write_synced(Path::new(&err_path), text.as_bytes()) {
                    error!(
                        "source {}: cannot write {:?}: {e}",
                        self.source.name, err_path
                    );
                }
            }
            Err(e) => error!(
                "source {}: cannot move {} to {}: {e}",
                self.source.name,
                path.display(),
                self.folder.rejected_dir.display()
            ),
        }
    }

    /// A name that is not UTF-8 cannot be reported or journalled faithfully: move the
    /// file aside with a readable name so it is neither lost nor retried forever.
    fn reject_odd_name(&self, path: &Path) {
        let Ok(md) = fs::symlink_metadata(path) else {
            return;
        };
        if !md.file_type().is_file() {
            return;
        }
        let lossy = path
            .file_name()
            .map(|n| n.to_string_lossy().replace('\u{FFFD}', "_"))
            .unwrap_or_default();
        let name = format!("odd-name-{lossy}");
        warn!(
            "source {}: file name {:?} is not UTF-8; moved to rejected as {name}",
            self.source.name,
            path.file_name().unwrap_or_default()
        );
        self.reject(
            path,
            &name,
            "the file name is not valid UTF-8; rename it and drop it again",
        );
    }
}

/// What reading a settled file came to.
enum FileRead {
    /// Its orders are committed; `errors` are the orders that could not be read.
    Committed {
        report: crate::outbox::IngestReport,
        errors: Vec<String>,
    },
    /// The file as a whole cannot be read: the reason.
    Invalid(String),
    /// Readable, but no orders in it.
    Empty,
    /// It changed or vanished while read; nothing was stored.
    Changed,
}

/// Opens a file for reading without following a symlink swapped in after the scan.
fn open_regular(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        // O_NOFOLLOW | O_NONBLOCK: a symlink or FIFO swapped in after the scan is
        // refused or does not hang the loop.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

/// Reads a file without following a symlink swapped in after the scan.
#[cfg(test)]
fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    read_to_end(&mut open_regular(path)?)
}

fn read_to_end(f: &mut fs::File) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Size and sha1 hex of what is left to read, without holding it.
fn hash_to_end(f: &mut fs::File) -> io::Result<(u64, String)> {
    Hashing::new(f).finish()
}

/// Whether the file still has the size just read and the mtime it had before.
fn unchanged(path: &Path, before: &fs::Metadata, size: u64) -> bool {
    matches!(fs::symlink_metadata(path),
        Ok(after) if after.len() == size && after.modified().ok() == before.modified().ok())
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    sha1: Sha1,
    len: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            sha1: Sha1::new(),
            len: 0,
        }
    }

    /// Reads the rest, then gives the size and sha1 hex of everything read.
    fn finish(mut self) -> io::Result<(u64, String)> {
        let mut buf = vec![0; 64 * 1024];
        while self.read(&mut buf)? > 0 {}
        Ok((self.len, hex(&self.sha1.finalize())))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => break r?,
            }
        };
        self.sha1.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Moves `path` into `dir` as `name`, or `name.1`, `name.2`… if taken. Falls back to
/// copy + fsync + remove across filesystems.
fn move_into(path: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    let mut dest = dir.join(name);
    let mut n = 1;
    while fs::symlink_metadata(&dest).is_ok() {
        dest = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    match fs::rename(path, &dest) {
        Ok(()) => Ok(dest),
        Err(e) if e.raw_os_error() == Some(18) => {
            // EXDEV: done/ is on another filesystem.
            let bytes = fs::read(path)?;
            write_synced(&dest, &bytes)?;
            fs::remove_file(path)?;
            Ok(dest)
        }
        Err(e) => Err(e),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings of the one folder source of `text` (a config file with an
    /// `[agent]` table and one `[[source]]`), validated as config validates them;
    /// `state` is made for the queue.
    fn settings(text: &str, state: &Path) -> (Identity, FolderSource, crate::outbox::OutboxConfig) {
        let file: toml::Table = toml::from_str(text).unwrap();
        let src = &file["source"][0];
        let s = |k: &str| src.get(k).and_then(|v| v.as_str()).map(String::from);
        let mut p = crate::settings::Problems::new();
        let id = crate::stamp::RawIdentity {
            name: s("name"),
            shop: s("shop"),
            machine_id: s("machine_id"),
            video: None,
        }
        .validate(&mut p, "source[0]", &crate::stamp::Video::default())
        .unwrap();
        assert_eq!(s("kind").as_deref(), Some("folder"));
        let raw = RawFolder {
            path: s("path").map(PathBuf::from),
            ..RawFolder::default()
        };
        let folder = raw.validate(&mut p, &id.key(), &|q| q, |_, _| None);
        let outbox = crate::outbox::RawOutbox::default().validate(&mut p);
        assert!(p.is_empty(), "{:?}", p.into_vec());
        fs::create_dir_all(state).unwrap();
        (id, folder, outbox)
    }

    #[test]
    fn candidate_names() {
        for ok in ["orders.json", "sales_1.csv", "a.b.c"] {
            assert!(is_candidate_name(ok), "{ok}");
        }
        for no in [
            ".hidden.json",
            "~lock.csv",
            "x.tmp",
            "x.part",
            "x.json.error.txt",
        ] {
            assert!(!is_candidate_name(no), "{no}");
        }
    }

    /// Regression: the agent's own opendir raised IN_OPEN on the watched folder, which
    /// triggered a scan, which opened the folder again: a busy loop at 100% CPU while idle.
    #[test]
    fn access_events_do_not_trigger_scans() {
        use notify::event::{AccessKind, AccessMode, CreateKind, Event, EventKind};
        let d = tempfile::tempdir().unwrap();
        let text = format!(
            "[agent]\nstate_dir = {:?}\n[[source]]\nname = \"l\"\nkind = \"folder\"\npath = {:?}\nshop = \"D\"\nmachine_id = \"M\"\n",
            d.path(),
            d.path()
        );
        let (id, f, outbox) = settings(&text, d.path());
        let ob = Outbox::open(&d.path().join("queue.db"), &outbox, &[]).unwrap();
        let mut w = FolderWatch::new(id, f, ob);
        let ev = |k| Ok(Event::new(k).add_path(d.path().to_path_buf()));
        assert!(!w.note_event(ev(EventKind::Access(AccessKind::Open(AccessMode::Any)))));
        assert!(!w.note_event(ev(EventKind::Access(AccessKind::Close(AccessMode::Read)))));
        assert!(w.note_event(ev(EventKind::Create(CreateKind::File))));
    }

    #[test]
    fn move_into_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let done = d.path().join("done");
        fs::create_dir(&done).unwrap();
        for i in 0..3 {
            let p = d.path().join("a.json");
            fs::write(&p, format!("{i}")).unwrap();
            move_into(&p, &done, "a.json").unwrap();
        }
        let mut names: Vec<_> = fs::read_dir(&done)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.json", "a.json.1", "a.json.2"]);
    }

    #[test]
    fn read_regular_refuses_symlinks_and_fifos() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("t.json");
        fs::write(&target, "[]").unwrap();
        let link = d.path().join("l.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(read_regular(&link).is_err());
        let fifo = d.path().join("f.json");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        assert!(
            read_regular(&fifo).is_err(),
            "a FIFO must not hang or be read"
        );
        assert_eq!(read_regular(&target).unwrap(), b"[]");
    }

    /// A folder source in `d` with its watcher (done/ and rejected/ made).
    fn lane(d: &Path) -> FolderWatch {
        let text = format!(
            "[agent]\nstate_dir = {:?}\n[[source]]\nname = \"l\"\nkind = \"folder\"\npath = {:?}\nshop = \"D\"\nmachine_id = \"M\"\n",
            d.join("state"),
            d.join("inbox")
        );
        let (id, f, outbox) = settings(&text, &d.join("state"));
        fs::create_dir_all(&f.path).unwrap();
        let ob = Outbox::open(&d.join("state/queue.db"), &outbox, &["wdt".to_string()]).unwrap();
        let w = FolderWatch::new(id, f, ob);
        w.ensure_dirs().unwrap();
        w
    }

    /// `n` orders as a JSON array, one element per line.
    fn export(n: usize) -> String {
        let orders: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"order_no": "N{i:05}", "order_time": "2026-11-22 10:00:00", "total": "2.00", "paid": "2.00", "lines": [{{"code": "690", "name": "水", "qty": "1", "price": "2.00", "amount": "2.00"}}]}}"#
                )
            })
            .collect();
        format!("[\n{}\n]\n", orders.join(",\n"))
    }

    fn stored(w: &FolderWatch) -> usize {
        w.outbox.orders(None, None, 100_000).unwrap().len()
    }

    #[test]
    fn a_syntax_error_after_thousands_of_streamed_orders_stores_none_of_them() {
        let d = tempfile::tempdir().unwrap();
        let mut w = lane(d.path());
        let path = w.folder.path.join("big.json");
        // 3,000 orders (several read buffers), then a trailing comma before the `]`.
        let good = export(3000);
        let bad = good.replace("}]}\n]", "}]},\n]");
        assert_ne!(good, bad);
        fs::write(&path, &bad).unwrap();
        assert_eq!(w.process_file(&path).unwrap(), FileOutcome::Rejected);
        assert_eq!(stored(&w), 0, "one transaction: nothing of a refused file");
        let why = fs::read_to_string(w.folder.rejected_dir.join("big.json.error.txt")).unwrap();
        assert!(
            why.contains("line 3002, column 1: not valid JSON: trailing comma"),
            "{why}"
        );
        let st = w.outbox.status(crate::outbox::now()).unwrap();
        assert_eq!(
            (st.sources[0].files_rejected, st.sources[0].files_ingested),
            (1, 0)
        );
        // The fixed file: all of it, once.
        fs::write(&path, &good).unwrap();
        assert_eq!(
            w.process_file(&path).unwrap(),
            FileOutcome::Done {
                new: 3000,
                duplicates: 0
            }
        );
        assert_eq!(stored(&w), 3000);
    }

    /// The orders are streamed from the file after it was identified (size, sha1): a
    /// file cut or rewritten in between is read again later, never refused or
    /// half-stored.
    #[test]
    fn a_file_cut_or_rewritten_after_it_was_identified_is_read_again_not_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut w = lane(d.path());
        let path = w.folder.path.join("a.json");
        let text = export(500);
        fs::write(&path, &text).unwrap();
        let before = fs::symlink_metadata(&path).unwrap();
        let (size, hash) = hash_to_end(&mut open_regular(&path).unwrap()).unwrap();
        let unit = Capture {
            source: "l",
            kind: CaptureKind::File,
            name: Some("a.json"),
            size,
            hash: hash.clone(),
            raw: None,
            error: None,
        };
        // Cut in the middle of an order: a syntax error, but not the file's fault.
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(size / 2)
            .unwrap();
        let r = w.stream_json(&unit, open_regular(&path).unwrap(), &path, &before);
        assert!(matches!(r, Ok(FileRead::Changed)));
        // Rewritten with other orders of the same size.
        fs::write(&path, text.replace("N00", "M00")).unwrap();
        let r = w.stream_json(&unit, open_regular(&path).unwrap(), &path, &before);
        assert!(matches!(r, Ok(FileRead::Changed)));
        assert_eq!(stored(&w), 0);
        assert!(!w.outbox.file_ingested("l", "a.json", size, &hash).unwrap());
        // Once it holds what was identified, it is read.
        fs::write(&path, &text).unwrap();
        let before = fs::symlink_metadata(&path).unwrap();
        let r = w.stream_json(&unit, open_regular(&path).unwrap(), &path, &before);
        assert!(matches!(r, Ok(FileRead::Committed { ref report, .. }) if report.new == 500));
        assert!(w.outbox.file_ingested("l", "a.json", size, &hash).unwrap());
    }
}
