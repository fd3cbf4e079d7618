//! One settled file: identify it (size and sha1), look it up in the ledger,
//! read it (JSON streamed, CSV and receipt files whole) into one ingest
//! transaction, commit, then move it.
//!
//! Invariants: the ledger row is committed with the orders, so a file is
//! ingested once; a file that changed while read, or one with a whole-file
//! problem, rolls the transaction back and stores nothing.

use super::files::{Hashing, hash_to_end, hex, open_regular, read_to_end, unchanged};
use super::*;

impl FolderWatch {
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
        let same: Vec<&String> = report
            .duplicates
            .iter()
            .filter(|n| !report.conflicts.contains(n))
            .collect();
        if !same.is_empty() {
            info!(
                "source {src}: {name}: {} order(s) already stored, not stored again: {}",
                same.len(),
                same.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !report.corrected.is_empty() {
            info!(
                "source {src}: {name}: {} rejected order(s) corrected, sending them again: {}",
                report.corrected.len(),
                report.corrected.join(", ")
            );
        }
        if !report.conflicts.is_empty() {
            warn!(
                "source {src}: {name}: {} order number(s) already stored with other content \
                 (a conflict: the stored order is kept as it was, this version is kept aside, \
                 see `tillrelay status`): {}",
                report.conflicts.len(),
                report.conflicts.join(", ")
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
    pub(super) fn stream_json(
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
    pub(super) fn ingest_whole(
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
}

/// What reading a settled file came to.
pub(super) enum FileRead {
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
