//! Files on disk: moving a file to `done/` or `rejected/` (with its
//! `.error.txt`), opening without following symlinks, hashing while reading.
//!
//! Invariants: a move never overwrites a file already there; only regular
//! files are opened; a rejected file's `.error.txt` is written beside it, synced.

use super::*;

impl FolderWatch {
    /// After a successful commit: move to done, or delete.
    pub(super) fn finish(&self, path: &Path, name: &str) {
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

    pub(super) fn reject(&self, path: &Path, name: &str, why: &str) {
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
    pub(super) fn reject_odd_name(&self, path: &Path) {
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

/// Opens a file for reading without following a symlink swapped in after the scan.
pub(super) fn open_regular(path: &Path) -> io::Result<fs::File> {
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
pub(super) fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    read_to_end(&mut open_regular(path)?)
}

pub(super) fn read_to_end(f: &mut fs::File) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Size and sha1 hex of what is left to read, without holding it.
pub(super) fn hash_to_end(f: &mut fs::File) -> io::Result<(u64, String)> {
    Hashing::new(f).finish()
}

/// Whether the file still has the size just read and the mtime it had before.
pub(super) fn unchanged(path: &Path, before: &fs::Metadata, size: u64) -> bool {
    matches!(fs::symlink_metadata(path),
        Ok(after) if after.len() == size && after.modified().ok() == before.modified().ok())
}

/// A reader that hashes and counts what passes through it.
pub(super) struct Hashing<R> {
    pub(super) inner: R,
    pub(super) sha1: Sha1,
    pub(super) len: u64,
}

impl<R: Read> Hashing<R> {
    pub(super) fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            sha1: Sha1::new(),
            len: 0,
        }
    }

    /// Reads the rest, then gives the size and sha1 hex of everything read.
    pub(super) fn finish(mut self) -> io::Result<(u64, String)> {
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
pub(super) fn move_into(path: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
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

pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
