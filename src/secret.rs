//! Secret values (API secrets, keys): a type that cannot leak by accident.
//!
//! Invariant: the only way to the bytes of a [`Secret`] is [`Secret::expose`], called
//! where a signature is computed. `Debug`, `Display` and `Serialize` all print `***`,
//! so a secret inside a config struct, an error or a log line shows as `***`.

use std::fmt;
use std::path::Path;

/// What a redacted secret prints as.
pub const REDACTED: &str = "***";

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself: for computing signatures only, never for output.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads a secret from a file (e.g. a systemd credential under
    /// `$CREDENTIALS_DIRECTORY`), trimming the trailing newline editors add.
    /// The error names the file, never its content.
    ///
    /// Only a regular file of at most [`MAX_SECRET_FILE`] bytes is read: the file is
    /// opened non-blocking (a FIFO with no writer would otherwise hang `run`,
    /// `status` and `check-config` at open) and its type is checked on the open
    /// descriptor, after symlinks were followed (a link to a file in `/etc` is fine;
    /// what it finally names must be a regular file). The read is capped as well, so
    /// a file that grows meanwhile cannot make it read without end.
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        use std::io::Read;
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let cannot =
            |e: &dyn fmt::Display| format!("cannot read secret file {}: {e}", path.display());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| cannot(&e))?;
        let meta = file.metadata().map_err(|e| cannot(&e))?;
        let ft = meta.file_type();
        if !ft.is_file() {
            let what = if ft.is_dir() {
                "a directory"
            } else if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_char_device() || ft.is_block_device() {
                "a device"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            };
            return Err(format!(
                "secret file {} is {what}, not a regular file",
                path.display()
            ));
        }
        if meta.len() > MAX_SECRET_FILE {
            return Err(format!(
                "secret file {} is {} bytes, at most {MAX_SECRET_FILE} are allowed",
                path.display(),
                meta.len()
            ));
        }
        let mut bytes = Vec::new();
        file.take(MAX_SECRET_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| cannot(&e))?;
        if bytes.len() as u64 > MAX_SECRET_FILE {
            return Err(format!(
                "secret file {} is over {MAX_SECRET_FILE} bytes",
                path.display()
            ));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("secret file {} is not UTF-8 text", path.display()))?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(format!("secret file {} is empty", path.display()));
        }
        Ok(Secret(value.to_string()))
    }
}

/// The largest secret file read (64 KiB): a secret is a few dozen bytes; anything
/// much larger is the wrong file.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendering_is_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn file_secret_is_trimmed_and_errors_do_not_show_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "abc:salt\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "abc:salt");
        std::fs::write(&p, "\n").unwrap();
        let e = Secret::from_file(&p).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn only_small_regular_files_are_read_and_never_block() {
        let dir = tempfile::tempdir().unwrap();
        let fine = dir.path().join("fine");
        std::fs::write(&fine, "k:salt\n").unwrap();
        // A symlink to a regular file is followed (a credential linked from /etc).
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&fine, &link).unwrap();
        assert_eq!(Secret::from_file(&link).unwrap().expose(), "k:salt");

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = Secret::from_file(&fifo).unwrap_err();
        assert!(e.contains("a FIFO") && e.contains("fifo"), "{e}");

        let e = Secret::from_file(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("/dev/zero is a device"), "{e}");

        let e = Secret::from_file(dir.path()).unwrap_err();
        assert!(e.contains("a directory"), "{e}");

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_SECRET_FILE as usize + 1]).unwrap();
        let e = Secret::from_file(&big).unwrap_err();
        assert!(e.contains("65537 bytes") && !e.contains("aaaa"), "{e}");
        std::fs::write(&big, vec![b'a'; MAX_SECRET_FILE as usize]).unwrap();
        assert_eq!(Secret::from_file(&big).unwrap().expose().len(), 65536);
    }
}
