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
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(format!("secret file {} is empty", path.display()));
        }
        Ok(Secret(value.to_string()))
    }
}

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
}
