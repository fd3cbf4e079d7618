//! Settings of the network sources, as written (`RawNet`) and validated
//! ([`ProxyConfig`] for `kind = "tcp"`, [`ListenConfig`] for `kind = "listen"`).
//!
//! Invariants: validation errors name the key relative to the source
//! (`allow[1]: …`, `printer: …`); the config loader prefixes `source[N].`.
//! A validated config is complete: every default is filled in here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::allow::AllowList;

/// The network keys of a `tcp` or `listen` source, as written in the config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawNet {
    /// `"0.0.0.0:9100"`: where the POS connects (or pushes datagrams).
    pub listen: Option<String>,
    /// `kind = "tcp"` only: the real printer, `"192.168.1.50:9100"` or `"host:port"`.
    pub printer: Option<String>,
    /// `kind = "listen"` only: `"tcp"` (default) or `"udp"`.
    pub protocol: Option<String>,
    /// Who may connect; required.
    pub allow: Option<Vec<String>>,
    /// `kind = "tcp"`: how long to try reaching the printer before the POS
    /// connection is closed. Default `2s`.
    pub connect_timeout: Option<String>,
    /// POS connections served at once; more wait in the listen backlog (or an
    /// idle one gives way). Default 16.
    pub max_connections: Option<usize>,
    /// A connection (UDP: a sender) silent this long both ways is closed (its
    /// receipt ends). Default `5m`.
    pub peer_idle_timeout: Option<String>,
}

/// `kind = "listen"` transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A validated `kind = "tcp"` print proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// `host:port`, resolved at each connection (a printer's DHCP name may move).
    pub printer: String,
    pub allow: AllowList,
    pub connect_timeout: Duration,
    pub max_connections: usize,
    pub peer_idle_timeout: Duration,
}

/// A validated `kind = "listen"` source.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenConfig {
    pub listen: SocketAddr,
    pub protocol: Protocol,
    pub allow: AllowList,
    pub max_connections: usize,
    pub peer_idle_timeout: Duration,
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// Long enough for any POS between two lines of one job, short enough that a
/// POS that lost power gives its slot back within minutes (keepalive ends a dead
/// peer sooner, idle or not).
const DEFAULT_PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

fn allow_raw(a: &AllowList) -> Option<Vec<String>> {
    Some(a.nets().iter().map(|n| n.written()).collect())
}

impl ProxyConfig {
    /// The keys as the file writes them, every default filled in.
    pub fn raw(&self) -> RawNet {
        RawNet {
            listen: Some(self.listen.to_string()),
            printer: Some(self.printer.clone()),
            protocol: None,
            allow: allow_raw(&self.allow),
            connect_timeout: Some(crate::settings::fmt_duration(self.connect_timeout)),
            max_connections: Some(self.max_connections),
            peer_idle_timeout: Some(crate::settings::fmt_duration(self.peer_idle_timeout)),
        }
    }
}

impl ListenConfig {
    /// The keys as the file writes them, every default filled in.
    pub fn raw(&self) -> RawNet {
        RawNet {
            listen: Some(self.listen.to_string()),
            printer: None,
            protocol: Some(
                match self.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                }
                .into(),
            ),
            allow: allow_raw(&self.allow),
            connect_timeout: None,
            max_connections: Some(self.max_connections),
            peer_idle_timeout: Some(crate::settings::fmt_duration(self.peer_idle_timeout)),
        }
    }
}

impl RawNet {
    /// Validates a `kind = "tcp"` source.
    pub fn validate_tcp(self) -> Result<ProxyConfig, String> {
        if self.protocol.is_some() {
            return Err("protocol: only for kind = \"listen\" (the print proxy is TCP)".into());
        }
        let listen = listen_addr(self.listen.as_deref())?;
        let printer = printer_addr(self.printer.as_deref(), listen)?;
        let connect_timeout = match self.connect_timeout.as_deref() {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) if d >= Duration::from_millis(10) && d <= Duration::from_secs(60) => d,
                Ok(_) => return Err(format!("connect_timeout: must be 10ms to 60s, got {s:?}")),
                Err(e) => return Err(format!("connect_timeout: {s:?}: {e}")),
            },
        };
        Ok(ProxyConfig {
            listen,
            printer,
            allow: allow(self.allow.as_deref())?,
            connect_timeout,
            max_connections: max_connections(self.max_connections)?,
            peer_idle_timeout: peer_idle_timeout(self.peer_idle_timeout.as_deref())?,
        })
    }

    /// Validates a `kind = "listen"` source.
    pub fn validate_listen(self) -> Result<ListenConfig, String> {
        if self.printer.is_some() {
            return Err(
                "printer: a listen source has no printer behind it (use kind = \"tcp\")".into(),
            );
        }
        if self.connect_timeout.is_some() {
            return Err("connect_timeout: only for kind = \"tcp\"".into());
        }
        let protocol = match self.protocol.as_deref().map(str::trim) {
            None | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some(other) => return Err(format!("protocol: must be tcp or udp, got {other:?}")),
        };
        Ok(ListenConfig {
            listen: listen_addr(self.listen.as_deref())?,
            protocol,
            allow: allow(self.allow.as_deref())?,
            max_connections: max_connections(self.max_connections)?,
            peer_idle_timeout: peer_idle_timeout(self.peer_idle_timeout.as_deref())?,
        })
    }
}

fn listen_addr(s: Option<&str>) -> Result<SocketAddr, String> {
    let s = s
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("listen: is required (e.g. \"0.0.0.0:9100\")")?;
    s.parse()
        .map_err(|_| format!("listen: {s:?} is not an IP address and port (e.g. \"0.0.0.0:9100\")"))
}

/// `host:port` with a real port; refuses an address that is this source's
/// own `listen` (the proxy would connect to itself, forever).
fn printer_addr(s: Option<&str>, listen: SocketAddr) -> Result<String, String> {
    let s = s
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("printer: is required (the real printer, e.g. \"192.168.1.50:9100\")")?;
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("printer: {s:?} has no port (e.g. \"192.168.1.50:9100\")"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("printer: {s:?}: the port must be 1 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("printer: {s:?} has no host"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        let own = ip == listen.ip() || ip.is_loopback() || ip.is_unspecified();
        if own && port == listen.port() {
            return Err(format!(
                "printer: {s:?} points back at this source's own listen {listen}"
            ));
        }
    }
    Ok(s.to_string())
}

fn allow(entries: Option<&[String]>) -> Result<AllowList, String> {
    match entries {
        None => Err(
            "allow: is required: the POS addresses or networks that may send \
                     (e.g. allow = [\"192.168.1.20\", \"10.0.0.0/24\"])"
                .into(),
        ),
        Some(e) => AllowList::parse(e),
    }
}

fn max_connections(n: Option<usize>) -> Result<usize, String> {
    match n {
        None => Ok(DEFAULT_MAX_CONNECTIONS),
        Some(n) if (1..=256).contains(&n) => Ok(n),
        Some(n) => Err(format!("max_connections: must be 1 to 256, got {n}")),
    }
}

/// 100ms to a day: shorter would close a POS between two lines of a job.
fn peer_idle_timeout(s: Option<&str>) -> Result<Duration, String> {
    match s {
        None => Ok(DEFAULT_PEER_IDLE_TIMEOUT),
        Some(s) => match humantime::parse_duration(s.trim()) {
            Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(86_400) => Ok(d),
            Ok(_) => Err(format!("peer_idle_timeout: must be 100ms to 1d, got {s:?}")),
            Err(e) => Err(format!("peer_idle_timeout: {s:?}: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml_text: &str) -> RawNet {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_proxy_gets_its_defaults() {
        let c = raw(r#"listen = "0.0.0.0:9100"
            printer = "192.168.1.50:9100"
            allow = ["192.168.1.20", "10.0.0.0/24"]"#)
        .validate_tcp()
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:9100".parse().unwrap());
        assert_eq!(c.printer, "192.168.1.50:9100");
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.max_connections, 16);
        assert_eq!(c.peer_idle_timeout, Duration::from_secs(300));
        assert!(c.allow.allows("10.0.0.9".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_key() {
        let base = r#"listen = "0.0.0.0:9100"
            allow = ["10.0.0.0/24"]"#;
        let e = raw(base).validate_tcp().unwrap_err();
        assert!(e.starts_with("printer: is required"), "{e}");
        let e = raw(&format!("{base}\nprinter = \"127.0.0.1:9100\""))
            .validate_tcp()
            .unwrap_err();
        assert!(e.contains("points back"), "{e}");
        let e = raw(&format!("{base}\nprinter = \"10.0.0.5\""))
            .validate_tcp()
            .unwrap_err();
        assert!(e.starts_with("printer:") && e.contains("no port"), "{e}");
        let e = raw(r#"listen = "0.0.0.0:9100"
            printer = "10.0.0.5:9100"
            allow = ["10.0.0.1", "10.0.0.x"]"#)
        .validate_tcp()
        .unwrap_err();
        assert!(e.starts_with("allow[1]:"), "{e}");
        let e = raw(r#"listen = "0.0.0.0:9100"
            printer = "10.0.0.5:9100""#)
        .validate_tcp()
        .unwrap_err();
        assert!(e.starts_with("allow: is required"), "{e}");
        let e = raw(r#"listen = "9100"
            allow = ["10.0.0.1"]"#)
        .validate_listen()
        .unwrap_err();
        assert!(e.starts_with("listen:"), "{e}");
        let e = raw(r#"listen = "0.0.0.0:7001"
            protocol = "multicast"
            allow = ["10.0.0.1"]"#)
        .validate_listen()
        .unwrap_err();
        assert!(e.starts_with("protocol:"), "{e}");
        let e = raw(r#"listen = "0.0.0.0:7001"
            peer_idle_timeout = "10ms"
            allow = ["10.0.0.1"]"#)
        .validate_listen()
        .unwrap_err();
        assert!(e.starts_with("peer_idle_timeout: must be"), "{e}");
        assert!(toml::from_str::<RawNet>("lisen = \"x\"").is_err());
    }

    #[test]
    fn a_listen_source_is_tcp_unless_told() {
        let c = raw(r#"listen = "[::]:7001"
            allow = ["fd00::/8"]"#)
        .validate_listen()
        .unwrap();
        assert_eq!(c.protocol, Protocol::Tcp);
        let c = raw(r#"listen = "0.0.0.0:7001"
            protocol = "udp"
            allow = ["10.0.0.1"]"#)
        .validate_listen()
        .unwrap();
        assert_eq!(c.protocol, Protocol::Udp);
    }
}
