//! Opening the queue when the disk or the file is not what it should be: a database
//! that cannot be opened is moved aside (kept for recovery, never deleted) and a
//! fresh one started; where no database can be written, the caller waits and
//! retries ([`Opener`]), so printing and forwarding never depend on the queue.
//!
//! Invariants: a damaged file is only ever renamed (with its `-wal` and `-shm`), to
//! `queue.db.damaged-<unix time>` in the same directory; nothing here deletes a file.

use std::path::PathBuf;

use super::*;

/// What is needed to open the queue again later (a capture waiting for a database
/// that could not be opened at start).
#[derive(Clone)]
pub struct Opener {
    pub path: PathBuf,
    pub cfg: OutboxConfig,
    pub destinations: Vec<String>,
    /// Called after each capture commit of the opened queue (see [`Outbox::on_commit`]).
    pub on_commit: Option<OnCommit>,
}

impl Opener {
    pub fn open(&self) -> Result<Outbox> {
        let mut ob = Outbox::open(&self.path, &self.cfg, &self.destinations)?;
        if let Some(f) = &self.on_commit {
            ob.on_commit(f.clone());
        }
        Ok(ob)
    }
}

/// How the queue was opened at start.
pub enum Opened {
    /// As it was.
    Fine(Outbox),
    /// The file could not be opened as a queue and was moved to `aside`; a fresh one
    /// was started.
    Fresh {
        outbox: Outbox,
        aside: PathBuf,
        reason: String,
    },
}

/// The suffix of a damaged queue moved aside (`queue.db.damaged-<unix time>`).
pub const DAMAGED_SUFFIX: &str = ".damaged-";

/// Opens the queue; a file that is not a usable database (not a database, malformed,
/// truncated) is moved aside with its WAL and a fresh queue opened. Fails when no
/// database can be opened or written at all (a read-only disk, a missing directory
/// that cannot be created, a newer schema): the caller waits and retries.
pub fn open_or_set_aside(opener: &Opener) -> Result<Opened> {
    let damage = match damaged(&opener.path) {
        Some(why) => Some(why),
        None => match opener.open() {
            Ok(ob) => return Ok(Opened::Fine(ob)),
            Err(e) if is_damage(&e) => Some(e.to_string()),
            Err(e) => return Err(e),
        },
    };
    let reason = damage.unwrap_or_default();
    let aside = set_aside(&opener.path, now())?;
    let outbox = opener.open()?;
    Ok(Opened::Fresh {
        outbox,
        aside,
        reason,
    })
}

/// Whether an error opening the queue means the file itself is damaged.
fn is_damage(e: &OutboxError) -> bool {
    match e {
        OutboxError::Sqlite(e) => matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        ),
        _ => false,
    }
}

/// Cheap checks of the file's header that SQLite only notices much later: a file
/// shorter than the pages its header counts (truncated), or too short for a header.
fn damaged(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len == 0 {
        return None; // a new, empty file: SQLite starts it
    }
    let mut h = [0u8; 100];
    if f.read_exact(&mut h).is_err() {
        return Some(format!(
            "the file is {len} bytes, shorter than a database header"
        ));
    }
    if &h[..16] != b"SQLite format 3\0" {
        return Some("the file is not a SQLite database".into());
    }
    let page_size = match u16::from_be_bytes([h[16], h[17]]) {
        1 => 65536u64,
        n => u64::from(n),
    };
    let pages = u64::from(u32::from_be_bytes([h[28], h[29], h[30], h[31]]));
    // The in-header size is valid only when the two change counters agree.
    let valid = h[24..28] == h[92..96];
    if valid && pages > 0 && len < pages * page_size {
        return Some(format!(
            "the file is truncated: {len} bytes where its header counts {pages} pages of {page_size}"
        ));
    }
    None
}

/// Renames the queue and its `-wal`/`-shm` to `<name>.damaged-<at>` beside it.
fn set_aside(path: &Path, at: i64) -> Result<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "queue.db".into());
    let aside = path.with_file_name(format!("{name}{DAMAGED_SUFFIX}{at}"));
    for ext in ["", "-wal", "-shm"] {
        let from = path.with_file_name(format!("{name}{ext}"));
        if !from.exists() {
            continue;
        }
        let to = path.with_file_name(format!("{name}{DAMAGED_SUFFIX}{at}{ext}"));
        std::fs::rename(&from, &to).map_err(|e| {
            OutboxError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!(
                    "cannot move the damaged {} aside to {}: {e}",
                    from.display(),
                    to.display()
                )),
            ))
        })?;
    }
    Ok(aside)
}

/// Damaged queues moved aside in `dir` (for `status`), oldest first.
pub fn damaged_files(dir: &Path, db_name: &str) -> Vec<PathBuf> {
    let prefix = format!("{db_name}{DAMAGED_SUFFIX}");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&prefix) && !n.ends_with("-wal") && !n.ends_with("-shm")
            })
        })
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opener(dir: &Path) -> Opener {
        let mut p = crate::settings::Problems::new();
        Opener {
            path: dir.join("queue.db"),
            cfg: RawOutbox::default().validate(&mut p),
            destinations: vec!["wdt".into()],
            on_commit: None,
        }
    }

    #[test]
    fn a_truncated_or_foreign_file_is_moved_aside_and_a_fresh_queue_started() {
        let d = tempfile::tempdir().unwrap();
        let o = opener(d.path());
        drop(o.open().unwrap());
        let len = std::fs::metadata(&o.path).unwrap().len();
        assert!(len > 8192, "{len}");
        // Cut the file in half: SQLite itself opens it without complaint.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&o.path)
            .unwrap();
        f.set_len(len / 2).unwrap();
        drop(f);
        let Opened::Fresh { aside, reason, .. } = open_or_set_aside(&o).unwrap() else {
            panic!("a truncated file was used as it is");
        };
        assert!(reason.contains("truncated"), "{reason}");
        assert_eq!(std::fs::metadata(&aside).unwrap().len(), len / 2);
        assert_eq!(damaged_files(d.path(), "queue.db"), vec![aside]);
        assert!(matches!(open_or_set_aside(&o).unwrap(), Opened::Fine(_)));

        std::fs::write(&o.path, b"not a database at all, just text that is long enough to hold a header.......................").unwrap();
        assert!(matches!(
            open_or_set_aside(&o).unwrap(),
            Opened::Fresh { .. }
        ));
    }
}
