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

/// `[agent] box_id`: what identifies this box in every report (a label value and a
/// path segment of the push URL), so letters, digits, `.`, `_` and `-` only.
pub fn validate_box_id(p: &mut Problems, v: Option<&str>) -> String {
    let id = match v {
        Some(s) => s.trim().to_string(),
        None => host_name(),
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(ok) {
        let from = if v.is_some() { "" } else { " (the host name)" };
        p.push(
            "agent.box_id",
            format!("{id:?}{from} must be 1 to 64 letters, digits, '.', '_' or '-'"),
        );
    }
    id
}

/// The host name, as the kernel has it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
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
        assert_eq!(id, "shop 1/lane");
        let v = p.into_vec();
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[0].starts_with("metrics.listen: "), "{v:?}");
        assert!(v[1].starts_with("metrics.push_url: "), "{v:?}");
        assert!(v[2].starts_with("metrics.push_interval: "), "{v:?}");
        assert!(v[3].starts_with("agent.box_id: "), "{v:?}");
    }
}
