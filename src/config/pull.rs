//! `[agent] config_url` and its companions: where the box pulls its configuration
//! from, how often, the key its signature must verify with, and the roots its
//! HTTPS is checked against (the pull itself is `crate::pull`).
//!
//! Invariants:
//! - Only `https://` is accepted: a configuration steers the till, so it never
//!   travels in clear; certificates are checked like the clouds' (`ca_file` or the
//!   bundled roots, never skipped).
//! - A `config_url` without a valid `config_key` (an ed25519 public key, 64 hex
//!   digits) is refused: an unsigned pull cannot be configured.
//! - These keys are the bootstrap: they are read from the local file only (a pulled
//!   file that sets them is refused, see `crate::pull`).

use std::path::PathBuf;
use std::time::Duration;

use crate::settings::{Problems, fmt_duration};
use crate::upload::http::HttpConfig;

/// The documented default for `[agent] config_poll`.
pub const DEFAULT_POLL: Duration = Duration::from_secs(300);

/// The `[agent]` keys only the local file may set.
pub const BOOTSTRAP_KEYS: &[&str] = &[
    "config_url",
    "config_poll",
    "config_key",
    "config_ca_file",
    "state_dir",
];

/// Validated pull settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSettings {
    pub url: String,
    /// Between two polls (each one jittered by ±20 %).
    pub poll: Duration,
    /// The ed25519 public key the pulled file's signature must verify with.
    pub key: [u8; 32],
    /// Timeouts and roots, as the clouds' (`config_ca_file` as their `ca_file`).
    pub http: HttpConfig,
}

impl PullSettings {
    /// The key as written in the file.
    pub fn key_hex(&self) -> String {
        hex(&self.key)
    }

    /// The raw keys, as `check-config` prints them.
    pub fn raw(&self) -> (String, String, String, Option<PathBuf>) {
        (
            self.url.clone(),
            fmt_duration(self.poll),
            self.key_hex(),
            self.http.ca_file.clone(),
        )
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `N` bytes from hex digits (either case), or `None`.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Validates the four keys; `None` when `config_url` is absent (the others alone
/// are a problem then: they would do nothing).
pub fn validate(
    p: &mut Problems,
    url: Option<&str>,
    poll: Option<&str>,
    key: Option<&str>,
    ca_file: Option<PathBuf>,
) -> Option<PullSettings> {
    let Some(url) = url else {
        for (name, set) in [
            ("config_poll", poll.is_some()),
            ("config_key", key.is_some()),
            ("config_ca_file", ca_file.is_some()),
        ] {
            if set {
                p.push(&format!("agent.{name}"), "is set without agent.config_url");
            }
        }
        return None;
    };
    let mut ok = true;
    if !url.starts_with("https://") || url.len() <= "https://".len() {
        p.push(
            "agent.config_url",
            format!(
                "must be an https:// URL (a configuration never travels in clear), got {url:?}"
            ),
        );
        ok = false;
    }
    let poll = p.duration("agent.config_poll", poll, DEFAULT_POLL);
    if poll < Duration::from_secs(1) {
        p.push("agent.config_poll", "must be at least 1s");
        ok = false;
    }
    let key = match key {
        None => {
            p.push(
                "agent.config_key",
                "is required with agent.config_url: the ed25519 public key the pulled file is signed with (tillrelay config keygen prints one)",
            );
            None
        }
        Some(k) => unhex::<32>(k).or_else(|| {
            p.push(
                "agent.config_key",
                format!("must be an ed25519 public key as 64 hex digits, got {k:?}"),
            );
            None
        }),
    };
    let http = HttpConfig::from_raw("agent.config", None, None, ca_file)
        .map_err(|e| p.push_named(e.replacen("agent.config.ca_file", "agent.config_ca_file", 1)))
        .ok();
    match (ok, key, http) {
        (true, Some(key), Some(http)) => Some(PullSettings {
            url: url.to_string(),
            poll,
            key,
            http,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn check(url: Option<&str>, poll: Option<&str>, key: Option<&str>) -> Vec<String> {
        let mut p = Problems::new();
        validate(&mut p, url, poll, key, None);
        p.into_vec()
    }

    #[test]
    fn a_pull_needs_https_and_a_key_and_its_keys_need_a_url() {
        let mut p = Problems::new();
        let s = validate(&mut p, Some("https://c.test/f.json"), None, Some(KEY), None).unwrap();
        assert!(p.is_empty());
        assert_eq!(s.poll, DEFAULT_POLL);
        assert_eq!(s.key_hex(), KEY);
        let plain = check(Some("http://c.test/f.json"), None, Some(KEY));
        assert!(plain[0].contains("https://"), "{plain:?}");
        let nokey = check(Some("https://c.test/f.json"), None, None);
        assert!(nokey[0].contains("agent.config_key"), "{nokey:?}");
        let short = check(Some("https://c.test/f.json"), None, Some("abcd"));
        assert!(short[0].contains("64 hex digits"), "{short:?}");
        let fast = check(Some("https://c.test/f.json"), Some("100ms"), Some(KEY));
        assert!(fast[0].contains("at least 1s"), "{fast:?}");
        let alone = check(None, Some("1m"), Some(KEY));
        assert_eq!(alone.len(), 2, "{alone:?}");
        assert!(alone[0].contains("without agent.config_url"), "{alone:?}");
        assert!(check(None, None, None).is_empty());
    }
}
