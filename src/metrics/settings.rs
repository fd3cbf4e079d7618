//! `[metrics]`: where the endpoint listens and where the exposition is pushed, raw
//! (as written) and validated. Owned here; `config` hands the raw table in.
//!
//! Invariants: `listen = ""` turns the endpoint off (the default is on, loopback only);
//! no `push_url`, no pushing; a push interval is never shorter than a second.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{Problems, fmt_duration, ser_duration};

/// The documented default for `[metrics] listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9898";
/// The documented default for `[metrics] push_interval`.
pub const DEFAULT_PUSH_INTERVAL: Duration = Duration::from_secs(60);

/// `[metrics]` as written (and as `check-config` prints it back).
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
    pub push_url: Option<String>,
    pub push_interval: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsConfig {
    /// `None`: no endpoint.
    pub listen: Option<SocketAddr>,
    /// The Pushgateway's base URL (`http://gw:9091`); `None`: no pushing. Shown
    /// without any `user:password@` it holds.
    #[serde(serialize_with = "ser_redacted")]
    pub push_url: Option<String>,
    #[serde(serialize_with = "ser_duration")]
    pub push_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: DEFAULT_LISTEN.parse().ok(),
            push_url: None,
            push_interval: DEFAULT_PUSH_INTERVAL,
        }
    }
}

impl MetricsConfig {
    /// The settings as the file writes them, every default filled in; a push URL
    /// shows no `user:password@` it holds (as `***@`).
    pub fn raw(&self) -> RawMetrics {
        RawMetrics {
            listen: Some(self.listen.map(|a| a.to_string()).unwrap_or_default()),
            push_url: self.push_url.as_deref().map(super::push::redact),
            push_interval: Some(fmt_duration(self.push_interval)),
        }
    }
}

impl RawMetrics {
    pub fn validate(self, p: &mut Problems) -> MetricsConfig {
        let d = MetricsConfig::default();
        let listen = match self.listen.as_deref().map(str::trim) {
            None => d.listen,
            Some("") => None,
            Some(s) => s.parse().map_or_else(
                |_| {
                    p.push(
                        "metrics.listen",
                        format!(
                            "{s:?} is not an address:port like 127.0.0.1:9898 (\"\" turns it off)"
                        ),
                    );
                    None
                },
                Some,
            ),
        };
        let push_url = match self.push_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(u.trim_end_matches('/').to_string())
            }
            Some(u) => {
                p.push(
                    "metrics.push_url",
                    format!("{u:?} must be an http:// or https:// URL of a Pushgateway"),
                );
                None
            }
        };
        let push_interval = p.duration(
            "metrics.push_interval",
            self.push_interval.as_deref(),
            d.push_interval,
        );
        if push_interval < Duration::from_secs(1) {
            p.push("metrics.push_interval", "must be at least 1s");
        }
        MetricsConfig {
            listen,
            push_url,
            push_interval,
        }
    }
}

fn ser_redacted<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_some(&super::push::redact(u)),
        None => s.serialize_none(),
    }
}

/// Where `[agent] box_id` came from: the file, or the default taken when it is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxIdFrom {
    /// `box_id` is set in the file.
    File,
    /// The host name, from the kernel (`gethostname(2)`).
    HostName,
    /// No usable host name: derived from `/etc/machine-id`.
    MachineId,
    /// Neither: a fixed name, so that the agent still starts.
    Fixed,
}

impl BoxIdFrom {
    /// How the daemon's start line names the source of the id.
    pub fn describe(self) -> &'static str {
        match self {
            BoxIdFrom::File => "agent.box_id",
            BoxIdFrom::HostName => "the host name (agent.box_id is not set)",
            BoxIdFrom::MachineId => {
                "derived from /etc/machine-id (agent.box_id is not set and the host name is not usable)"
            }
            BoxIdFrom::Fixed => {
                "a fixed name: agent.box_id is not set, the host name is not usable and \
                 /etc/machine-id cannot be read; set agent.box_id"
            }
        }
    }
}

/// The id an unset `box_id` falls back to when neither a host name nor a machine id
/// is usable: the agent starts all the same (capture matters more than a label).
pub const FIXED_BOX_ID: &str = "tillrelay-box";

/// Whether `id` is a valid box id: 1 to 64 letters, digits, `.`, `_` or `-` (a
/// label value and a path segment of the push URL).
fn valid_box_id(id: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    !id.is_empty() && id.len() <= 64 && id.chars().all(ok)
}

/// `[agent] box_id`: what identifies this box in every report. A value in the file
/// must be valid; an unset one defaults to [`default_box_id`] of this machine, which
/// never fails (a start cannot fail for want of a name).
pub fn validate_box_id(p: &mut Problems, v: Option<&str>) -> (String, BoxIdFrom) {
    let Some(s) = v else {
        return default_box_id(
            host_name().as_deref(),
            std::fs::read_to_string("/etc/machine-id").ok().as_deref(),
        );
    };
    let id = s.trim().to_string();
    if !valid_box_id(&id) {
        p.push(
            "agent.box_id",
            format!("{id:?} must be 1 to 64 letters, digits, '.', '_' or '-'"),
        );
    }
    (id, BoxIdFrom::File)
}

/// The default box id: the host name when it is a usable one (a valid id, and not
/// the kernel's `(none)` or a `localhost` that every unnamed box shares); else a name
/// derived from the machine id (`machine-` and 16 hex digits of a hash of it: the
/// machine id itself must not leave the box, `machine-id(5)`, and a push URL does);
/// else [`FIXED_BOX_ID`].
pub fn default_box_id(host: Option<&str>, machine_id: Option<&str>) -> (String, BoxIdFrom) {
    if let Some(h) = host.map(str::trim) {
        let generic = matches!(
            h.to_ascii_lowercase().as_str(),
            "(none)" | "localhost" | "localhost.localdomain"
        );
        if valid_box_id(h) && !generic {
            return (h.to_string(), BoxIdFrom::HostName);
        }
    }
    // An unset machine id reads "" or "uninitialized" (systemd's first boot).
    let mid = machine_id.map(str::trim).unwrap_or_default();
    if mid.len() >= 16 && mid.chars().all(|c| c.is_ascii_hexdigit()) {
        use sha1::{Digest, Sha1};
        let digest = Sha1::new()
            .chain_update(b"tillrelay box_id\n")
            .chain_update(mid.to_ascii_lowercase().as_bytes())
            .finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        return (format!("machine-{hex}"), BoxIdFrom::MachineId);
    }
    (FIXED_BOX_ID.to_string(), BoxIdFrom::Fixed)
}

/// The host name, from the kernel call: `gethostname(2)` reads the UTS name, which
/// no sandboxing hides (the unit's `ProcSubset=pid` hides `/proc/sys/kernel/hostname`).
/// `None` if the call fails or the name is not UTF-8.
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for buf.len() bytes; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    // POSIX leaves a truncated name without its NUL: the last byte stays 0 here.
    let end = buf[..buf.len() - 1]
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(buf.len() - 1);
    String::from_utf8(buf[..end].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(listen: Option<&str>, url: Option<&str>, every: Option<&str>) -> RawMetrics {
        RawMetrics {
            listen: listen.map(str::to_string),
            push_url: url.map(str::to_string),
            push_interval: every.map(str::to_string),
        }
    }

    #[test]
    fn defaults_listen_on_loopback_and_do_not_push() {
        let mut p = Problems::new();
        let m = raw(None, None, None).validate(&mut p);
        assert!(p.is_empty());
        assert_eq!(m.listen, Some("127.0.0.1:9898".parse().unwrap()));
        assert_eq!(m.push_url, None);
        assert_eq!(m.push_interval, Duration::from_secs(60));
        let off = raw(Some(""), Some("http://gw:9091/"), Some("15s")).validate(&mut p);
        assert!(p.is_empty());
        assert_eq!(off.listen, None);
        assert_eq!(off.push_url.as_deref(), Some("http://gw:9091"));
        assert_eq!(off.push_interval, Duration::from_secs(15));
        let secret = raw(None, Some("https://u:hunter2@gw"), None).validate(&mut p);
        let shown = serde_json::to_string(&secret).unwrap();
        assert!(
            !shown.contains("hunter2") && shown.contains("***@gw"),
            "{shown}"
        );
    }

    #[test]
    fn bad_values_name_their_keys() {
        let mut p = Problems::new();
        raw(Some("localhost"), Some("gw:9091"), Some("0s")).validate(&mut p);
        let id = validate_box_id(&mut p, Some("shop 1/lane"));
        assert_eq!(id, ("shop 1/lane".to_string(), BoxIdFrom::File));
        let v = p.into_vec();
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[0].starts_with("metrics.listen: "), "{v:?}");
        assert!(v[1].starts_with("metrics.push_url: "), "{v:?}");
        assert!(v[2].starts_with("metrics.push_interval: "), "{v:?}");
        assert!(v[3].starts_with("agent.box_id: "), "{v:?}");
    }

    #[test]
    fn an_unset_box_id_is_the_host_name_else_from_the_machine_id_and_never_fails() {
        let mid = Some("3d1219c7c4c5404aaa1f6d2a48adfda4\n");
        let from = |h: Option<&str>, m: Option<&str>| default_box_id(h, m);
        assert_eq!(
            from(Some("shop12-lane1"), mid),
            ("shop12-lane1".to_string(), BoxIdFrom::HostName)
        );
        // Not usable: empty, the kernel's unset name, the name every unnamed box
        // shares, characters a label cannot carry, longer than 64.
        let long = "a".repeat(65);
        for bad in [
            "",
            "(none)",
            "localhost",
            "LOCALHOST.localdomain",
            "till 1",
            &long,
        ] {
            let (id, src) = from(Some(bad), mid);
            assert_eq!(src, BoxIdFrom::MachineId, "{bad:?}");
            assert!(id.starts_with("machine-") && id.len() == 24, "{id}");
            // Stable, valid, and not the machine id itself.
            assert_eq!(from(None, mid).0, id);
            assert!(valid_box_id(&id) && !id.contains("3d1219c7"), "{id}");
        }
        assert_ne!(
            from(None, mid).0,
            from(None, Some("00000000000000000000000000000001")).0
        );
        for no_mid in [None, Some(""), Some("uninitialized\n"), Some("x/y")] {
            assert_eq!(
                from(Some(""), no_mid),
                (FIXED_BOX_ID.to_string(), BoxIdFrom::Fixed),
                "{no_mid:?}"
            );
        }
        let mut p = Problems::new();
        let (id, src) = validate_box_id(&mut p, None);
        assert!(p.is_empty() && valid_box_id(&id), "{id:?} {src:?}");
    }

    #[test]
    fn the_host_name_comes_from_the_kernel_call() {
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: uname fills the struct it is given.
        assert_eq!(unsafe { libc::uname(&mut uts) }, 0);
        // SAFETY: nodename is NUL-terminated by the kernel.
        let node = unsafe { std::ffi::CStr::from_ptr(uts.nodename.as_ptr()) };
        assert_eq!(host_name().as_deref(), node.to_str().ok());
    }
}
