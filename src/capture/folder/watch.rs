//! Noticing and settling: the `done/`/`rejected/` folders, the inotify watch,
//! which events count, when the next settle check is due, and the scan that
//! hands settled files to [`FolderWatch::process_file`].
//!
//! Invariant: a file is processed only once settled (renamed in, or size and
//! mtime unchanged for `settle`); access events never trigger a scan.

use super::*;

impl FolderWatch {
    pub(super) fn ensure_dirs(&self) -> io::Result<()> {
        for d in [&self.folder.done_dir, &self.folder.rejected_dir] {
            fs::create_dir_all(d).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", d.display()))
            })?;
        }
        Ok(())
    }

    pub(super) fn watch(&self, tx: mpsc::Sender<Msg>) -> Option<notify::RecommendedWatcher> {
        let handler = move |ev: notify::Result<notify::Event>| {
            let _ = tx.send(Msg::Fs(ev));
        };
        let watching = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&self.folder.path, notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        });
        match watching {
            Ok(w) => Some(w),
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
    pub(super) fn note_event(&mut self, ev: notify::Result<notify::Event>) -> bool {
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
    pub(super) fn next_settle_check(&self) -> Option<Duration> {
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
    pub(super) fn scan_and_process(&mut self, shutdown: &Shutdown) -> bool {
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
                    // For `status` ("queue full"); best effort on a full disk.
                    let _ = self
                        .outbox
                        .note_full(&self.source.name, crate::outbox::now());
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
}
