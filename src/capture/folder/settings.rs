//! A folder source's settings: the watched folder, how a file is judged complete
//! (`settle`, `poll`), the size cap, and where a file goes after it was read, raw
//! and validated, with their validation.
//!
//! Invariants:
//! - Relative paths are resolved by the caller's `resolve` (config resolves them
//!   against the config file's folder), so a validated [`FolderSource`] holds only
//!   the paths the watcher will use.
//! - `done_dir` and `rejected_dir` default to `done/` and `rejected/` inside the
//!   watched folder.

use std::path::PathBuf;
use std::time::Duration;

use crate::capture::formats::{CsvConfig, Format, RawCsv};
use crate::capture::receipt::ReceiptRules;
use crate::settings::{Problems, fmt_duration, fmt_size};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Move an ingested file into `done_dir`.
    Move,
    /// Delete an ingested file.
    Delete,
}

#[derive(Debug, Clone)]
pub struct FolderSource {
    pub path: PathBuf,
    pub format: Format,
    pub settle: Duration,
    pub poll: bool,
    pub poll_interval: Duration,
    pub max_file_size: u64,
    pub after: After,
    pub done_dir: PathBuf,
    pub rejected_dir: PathBuf,
    pub csv: CsvConfig,
    /// Receipt rules, for `format = "receipt"` (and `auto` on .prn/.bin/.escpos files).
    pub receipt: Option<ReceiptRules>,
}

/// The folder keys of a `kind = "folder"` source's table.
#[derive(Debug, Default)]
pub struct RawFolder {
    pub path: Option<PathBuf>,
    pub format: Option<String>,
    pub settle: Option<String>,
    pub poll: Option<bool>,
    pub poll_interval: Option<String>,
    pub max_file_size: Option<String>,
    pub after: Option<String>,
    pub done_dir: Option<PathBuf>,
    pub rejected_dir: Option<PathBuf>,
    pub csv: Option<RawCsv>,
}

impl FolderSource {
    /// The folder keys as the file writes them, every default filled in (the
    /// receipt rules are the source's, printed by the caller).
    pub fn raw(&self) -> RawFolder {
        RawFolder {
            path: Some(self.path.clone()),
            format: Some(self.format.as_str().into()),
            settle: Some(fmt_duration(self.settle)),
            poll: Some(self.poll),
            poll_interval: Some(fmt_duration(self.poll_interval)),
            max_file_size: Some(fmt_size(self.max_file_size)),
            after: Some(
                match self.after {
                    After::Move => "move",
                    After::Delete => "delete",
                }
                .into(),
            ),
            done_dir: Some(self.done_dir.clone()),
            rejected_dir: Some(self.rejected_dir.clone()),
            csv: Some(self.csv.raw()),
        }
    }
}

impl RawFolder {
    /// Validates a folder source's keys, naming `key` (`source[lane1]`) in problems.
    ///
    /// `receipt` reads the source's receipt rules once the format is known: the
    /// rules (encoding, segment, template) are the source's, shared with serial
    /// sources, so the caller makes them. It is called before the timing keys are
    /// checked so that problems come out in the order of the table.
    pub fn validate(
        self,
        p: &mut Problems,
        key: &str,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
        receipt: impl FnOnce(&mut Problems, Format) -> Option<ReceiptRules>,
    ) -> FolderSource {
        let raw = self;
        let path = match raw.path {
            Some(path) => resolve(path),
            None => {
                p.push(&format!("{key}.path"), "is required for a folder source");
                PathBuf::new()
            }
        };
        let format = Format::validate(p, &format!("{key}.format"), raw.format.as_deref());
        let after = match raw.after.as_deref() {
            None | Some("move") => After::Move,
            Some("delete") => After::Delete,
            Some(a) => {
                p.push(
                    &format!("{key}.after"),
                    format!("must be move or delete, got {a:?}"),
                );
                After::Move
            }
        };
        let csv = raw
            .csv
            .unwrap_or_default()
            .validate(p, &format!("{key}.csv"));
        let receipt = receipt(p, format);
        let folder = FolderSource {
            done_dir: raw
                .done_dir
                .map(resolve)
                .unwrap_or_else(|| path.join("done")),
            rejected_dir: raw
                .rejected_dir
                .map(resolve)
                .unwrap_or_else(|| path.join("rejected")),
            path,
            format,
            settle: p.duration(
                &format!("{key}.settle"),
                raw.settle.as_deref(),
                Duration::from_secs(2),
            ),
            poll: raw.poll.unwrap_or(false),
            poll_interval: p.duration(
                &format!("{key}.poll_interval"),
                raw.poll_interval.as_deref(),
                Duration::from_secs(5),
            ),
            max_file_size: p.size(
                &format!("{key}.max_file_size"),
                raw.max_file_size.as_deref(),
                16 << 20,
            ),
            after,
            csv,
            receipt,
        };
        if folder.poll_interval < Duration::from_millis(100) {
            p.push(&format!("{key}.poll_interval"), "must be at least 100ms");
        }
        folder
    }
}
