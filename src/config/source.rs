//! The source level of the config: a `[[source]]` table as written ([`RawSource`],
//! flat, as integrators write it) and validated ([`Source`]). Each group of keys is
//! handed to the part that owns it: the identity to [`crate::stamp`], folder keys to
//! [`crate::capture::folder`], serial keys to [`crate::capture::serial`], the receipt
//! keys (encoding, segment, template) to [`crate::capture::receipt`], and the
//! per-source cloud overrides to each cloud.
//!
//! Invariants:
//! - Problems are named `source[<name>].<key>` once the name is known (`source[<i>]`
//!   before), and come out in the order of the table.
//! - Keys of the other kind (`path` on a serial source, `device` on a folder source)
//!   are errors, not silently ignored.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::capture::device::{DeviceConfig, RawDevice};
use crate::capture::folder::{FolderSource, RawFolder};
use crate::capture::formats::{Format, RawCsv};
use crate::capture::net::settings::{ListenConfig, ProxyConfig, RawNet};
use crate::capture::receipt::ReceiptRules;
use crate::capture::segment::RawSegment;
use crate::capture::serial::{RawPassthrough, RawSerial, SerialConfig};
use crate::capture::stream_source::StreamSpec;
use crate::capture::template::RawTemplate;
use crate::settings::Problems;
use crate::stamp::{Identity, RawIdentity, RawVideo, Video};
use crate::upload::ovopark::{OvoparkShop, RawOvoparkShop};
use crate::upload::wdt::{RawWdtShop, WdtShop};

/// A `[[source]]` table as written: one flat table for every kind, so that a key of
/// the wrong kind can be named (and as `check-config` prints it back).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: Option<String>,
    pub kind: Option<String>,
    /// false: validated (and usable by `parse`) but not run by the daemon.
    pub enabled: Option<bool>,
    pub shop: Option<String>,
    pub machine_id: Option<String>,
    /// Per-source overrides of `[video]`.
    pub video: Option<RawVideo>,
    /// The UTC offset of this source's till when it differs from `agent.timezone`.
    pub timezone: Option<String>,
    // folder sources
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
    // serial sources (the tap), and receipt files of folder sources
    pub device: Option<String>,
    pub baud: Option<u32>,
    pub data_bits: Option<u8>,
    pub parity: Option<String>,
    pub stop_bits: Option<u8>,
    pub flow_control: Option<String>,
    pub passthrough: Option<RawPassthrough>,
    // network sources (`tcp`: the print proxy, `listen`: pushed receipts)
    pub listen: Option<String>,
    pub printer: Option<String>,
    pub protocol: Option<String>,
    pub allow: Option<Vec<String>>,
    pub connect_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub peer_idle_timeout: Option<String>,
    /// The printer's code page (receipts).
    pub encoding: Option<String>,
    pub segment: Option<RawSegment>,
    pub template: Option<RawTemplate>,
    /// Per-source Ovopark identity (org, enterprise, shop, order number prefix).
    pub ovopark: Option<toml::Table>,
    /// Per-source Wangdiantong identity (shop_no, tid prefix, receiver).
    pub wdt: Option<toml::Table>,
}

#[derive(Debug, Clone)]
pub struct Source {
    /// Name, shop, camera and video window: what stamping adds to its orders.
    pub identity: Identity,
    /// Run by the daemon (a disabled source is still validated and parseable).
    pub enabled: bool,
    pub kind: SourceKind,
    /// Overrides of the Ovopark identity for this source's orders.
    pub ovopark: OvoparkShop,
    /// Overrides of the Wangdiantong identity for this source's orders.
    pub wdt: WdtShop,
}

impl Source {
    /// The receipt rules this source reads receipts with, if it reads receipts.
    pub fn receipt_rules(&self) -> Option<&ReceiptRules> {
        match &self.kind {
            SourceKind::Serial(t) => Some(&t.rules),
            SourceKind::Folder(f) => f.receipt.as_ref(),
            SourceKind::Tcp(n) => Some(&n.rules),
            SourceKind::Listen(n) => Some(&n.rules),
            SourceKind::Device(n) => Some(&n.rules),
        }
    }

    /// What a stream source runs (tcp, listen, device), with its receipt rules.
    pub fn stream_spec(&self) -> Option<(StreamSpec, &ReceiptRules)> {
        match &self.kind {
            SourceKind::Tcp(n) => Some((StreamSpec::Proxy(n.net.clone()), &n.rules)),
            SourceKind::Listen(n) => Some((StreamSpec::Listen(n.net.clone()), &n.rules)),
            SourceKind::Device(n) => Some((StreamSpec::Device(n.net.clone()), &n.rules)),
            _ => None,
        }
    }

    /// The address this source listens on, if it is a network source.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.kind {
            SourceKind::Tcp(n) => Some(n.net.listen),
            SourceKind::Listen(n) => Some(n.net.listen),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    Folder(FolderSource),
    Serial(SerialSource),
    /// The TCP print proxy.
    Tcp(StreamSource<ProxyConfig>),
    /// Receipts pushed over TCP or UDP.
    Listen(StreamSource<ListenConfig>),
    /// A character device stream (the USB printer gadget).
    Device(StreamSource<DeviceConfig>),
}

impl SourceKind {
    /// The `kind` key's value.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Folder(_) => "folder",
            SourceKind::Serial(_) => "serial",
            SourceKind::Tcp(_) => "tcp",
            SourceKind::Listen(_) => "listen",
            SourceKind::Device(_) => "device",
        }
    }
}

/// A network or device source: its own settings (validated by its part) and the
/// receipt rules, as for serial sources.
#[derive(Debug, Clone)]
pub struct StreamSource<T: std::fmt::Debug> {
    pub net: T,
    pub rules: ReceiptRules,
}

/// A serial tap between the POS and its receipt printer.
#[derive(Debug, Clone)]
pub struct SerialSource {
    pub serial: SerialConfig,
    pub rules: ReceiptRules,
}

/// Validates one `[[source]]` table; `key` is its place (`source[3]`). None when it
/// cannot be used at all (no usable name, an unknown kind, a serial source without
/// its device or rules); every problem is recorded either way.
pub(super) fn validate_source(
    p: &mut Problems,
    key: &str,
    raw: RawSource,
    video: &Video,
    zone: chrono::FixedOffset,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Option<Source> {
    let identity = RawIdentity {
        name: raw.name,
        shop: raw.shop,
        machine_id: raw.machine_id,
        video: raw.video,
        timezone: raw.timezone,
    }
    .validate(p, key, video, zone)?;
    let key = identity.key();
    let kind = match raw.kind.as_deref() {
        Some("folder") => {
            let folder = RawFolder {
                path: raw.path,
                format: raw.format,
                settle: raw.settle,
                poll: raw.poll,
                poll_interval: raw.poll_interval,
                max_file_size: raw.max_file_size,
                after: raw.after,
                done_dir: raw.done_dir,
                rejected_dir: raw.rejected_dir,
                csv: raw.csv,
            };
            let (encoding, segment, template) = (raw.encoding, raw.segment, raw.template);
            let serial_keys = raw.device.is_some() || raw.passthrough.is_some();
            net_keys_absent(p, &key, &raw.listen, &raw.printer, &raw.allow);
            let folder = folder.validate(p, &key, resolve, |p, format| {
                let receipt = if template.is_some() || format == Format::Receipt {
                    receipt_rules(p, &key, encoding, segment, template)
                } else {
                    None
                };
                if serial_keys {
                    p.push(
                        &format!("{key}.device"),
                        "serial keys belong to kind = \"serial\" sources",
                    );
                }
                receipt
            });
            SourceKind::Folder(folder)
        }
        Some("serial") => {
            net_keys_absent(p, &key, &raw.listen, &raw.printer, &raw.allow);
            let raw_serial = RawSerial {
                device: raw.device,
                baud: raw.baud,
                data_bits: raw.data_bits,
                parity: raw.parity,
                stop_bits: raw.stop_bits,
                flow_control: raw.flow_control,
                passthrough: raw.passthrough,
            };
            // A disabled source is never opened: it needs no device, so a
            // template can be tried with `parse` on a laptop.
            let serial = if raw.enabled == Some(false) {
                raw_serial.validate_disabled()
            } else {
                raw_serial.validate()
            };
            let serial = serial.map_err(|e| p.push(&key, e)).ok();
            let rules = receipt_rules(p, &key, raw.encoding, raw.segment, raw.template);
            if raw.path.is_some() || raw.csv.is_some() {
                p.push(
                    &format!("{key}.path"),
                    "folder keys belong to kind = \"folder\" sources",
                );
            }
            match (serial, rules) {
                (Some(serial), Some(rules)) => SourceKind::Serial(SerialSource { serial, rules }),
                _ => return None,
            }
        }
        Some(k @ ("tcp" | "listen")) => {
            if raw.device.is_some() || raw.passthrough.is_some() || raw.baud.is_some() {
                p.push(
                    &format!("{key}.device"),
                    "device keys belong to kind = \"serial\" or \"device\" sources",
                );
            }
            folder_keys_absent(p, &key, &raw.path, &raw.csv);
            let net = RawNet {
                listen: raw.listen,
                printer: raw.printer,
                protocol: raw.protocol,
                allow: raw.allow,
                connect_timeout: raw.connect_timeout,
                max_connections: raw.max_connections,
                peer_idle_timeout: raw.peer_idle_timeout,
            };
            let rules = receipt_rules(p, &key, raw.encoding, raw.segment, raw.template);
            if k == "tcp" {
                let net = net.validate_tcp().map_err(|e| push_rel(p, &key, e)).ok();
                SourceKind::Tcp(StreamSource {
                    net: net?,
                    rules: rules?,
                })
            } else {
                let net = net.validate_listen().map_err(|e| push_rel(p, &key, e)).ok();
                SourceKind::Listen(StreamSource {
                    net: net?,
                    rules: rules?,
                })
            }
        }
        Some("device") => {
            net_keys_absent(p, &key, &raw.listen, &raw.printer, &raw.allow);
            folder_keys_absent(p, &key, &raw.path, &raw.csv);
            if raw.baud.is_some() || raw.parity.is_some() || raw.flow_control.is_some() {
                p.push(
                    &format!("{key}.baud"),
                    "line settings belong to kind = \"serial\" sources",
                );
            }
            let passthrough = match raw.passthrough {
                None => None,
                Some(RawPassthrough(b)) => {
                    let device = b.device.clone();
                    if *b
                        != (RawSerial {
                            device: device.clone(),
                            ..Default::default()
                        })
                    {
                        p.push(
                            &format!("{key}.passthrough"),
                            "a device path (e.g. \"/dev/usb/lp0\"), not a table",
                        );
                    }
                    device
                }
            };
            let dev = RawDevice {
                device: raw.device,
                passthrough,
            }
            .validate()
            .map_err(|e| push_rel(p, &key, e))
            .ok();
            let rules = receipt_rules(p, &key, raw.encoding, raw.segment, raw.template);
            SourceKind::Device(StreamSource {
                net: dev?,
                rules: rules?,
            })
        }
        Some(other) => {
            p.push(
                &format!("{key}.kind"),
                format!("must be one of {KINDS}, got {other:?}"),
            );
            return None;
        }
        None => {
            p.push(&format!("{key}.kind"), format!("is required ({KINDS})"));
            return None;
        }
    };
    let ovo_key = format!("{key}.ovopark");
    let raw_ovo: RawOvoparkShop = override_table(p, &ovo_key, raw.ovopark);
    let ovopark = raw_ovo.validate_at(&ovo_key).unwrap_or_else(|e| {
        p.push_named(e);
        OvoparkShop::default()
    });
    let wdt_key = format!("{key}.wdt");
    let raw_wdt: RawWdtShop = override_table(p, &wdt_key, raw.wdt);
    let wdt = raw_wdt.validate_at(&wdt_key).unwrap_or_else(|e| {
        p.push_named(e);
        WdtShop::default()
    });
    Some(Source {
        identity,
        enabled: raw.enabled.unwrap_or(true),
        kind,
        ovopark,
        wdt,
    })
}

/// Across sources: two enabled sources listening on the same address, and a
/// print proxy whose `printer` is one of this box's own `listen` addresses (it
/// would print to itself, forever).
pub(super) fn check_addresses(p: &mut Problems, sources: &[Source]) {
    use std::net::{IpAddr, SocketAddr};
    let overlaps = |a: SocketAddr, b: SocketAddr| {
        a.port() == b.port()
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    };
    let enabled: Vec<&Source> = sources.iter().filter(|s| s.enabled).collect();
    for (i, s) in enabled.iter().enumerate() {
        let Some(a) = s.listen_addr() else { continue };
        if let Some(o) = enabled[..i]
            .iter()
            .find(|o| o.listen_addr().is_some_and(|b| overlaps(a, b)))
        {
            p.push(
                &format!("{}.listen", s.identity.key()),
                format!(
                    "{a} is also where source {:?} listens (two sources cannot share an address)",
                    o.identity.name
                ),
            );
        }
    }
    for s in &enabled {
        let SourceKind::Tcp(t) = &s.kind else {
            continue;
        };
        let Some((host, port)) = t.net.printer.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: Option<IpAddr> = if host.eq_ignore_ascii_case("localhost") {
            Some(IpAddr::from([127, 0, 0, 1]))
        } else {
            host.parse().ok()
        };
        let Some(ip) = ip else { continue };
        // 0.0.0.0 listens on every address of the box, but which those are is not
        // known here: a LAN printer address is taken as another host, loopback as this one.
        let local = |a: IpAddr| a.is_loopback() || a.is_unspecified();
        let own =
            |l: SocketAddr| l.port() == port && (l.ip() == ip || (local(ip) && local(l.ip())));
        if let Some(o) = enabled.iter().find(|o| o.listen_addr().is_some_and(own)) {
            p.push(
                &format!("{}.printer", s.identity.key()),
                format!(
                    "{:?} points back at this box's own listen of source {:?}",
                    t.net.printer, o.identity.name
                ),
            );
        }
    }
}

const KINDS: &str = "\"folder\", \"serial\", \"tcp\", \"listen\" or \"device\"";

/// Pushes a part's error `"allow[1]: msg"` as `source[NAME].allow[1]: msg`.
fn push_rel(p: &mut Problems, key: &str, e: String) {
    match e.split_once(": ") {
        Some((k, msg)) if !k.is_empty() && !k.contains(' ') => p.push(&format!("{key}.{k}"), msg),
        _ => p.push(key, e),
    }
}

fn net_keys_absent(
    p: &mut Problems,
    key: &str,
    listen: &Option<String>,
    printer: &Option<String>,
    allow: &Option<Vec<String>>,
) {
    if listen.is_some() || printer.is_some() || allow.is_some() {
        p.push(
            &format!("{key}.listen"),
            "network keys belong to kind = \"tcp\" or \"listen\" sources",
        );
    }
}

fn folder_keys_absent(p: &mut Problems, key: &str, path: &Option<PathBuf>, csv: &Option<RawCsv>) {
    if path.is_some() || csv.is_some() {
        p.push(
            &format!("{key}.path"),
            "folder keys belong to kind = \"folder\" sources",
        );
    }
}

/// The receipt rules of a source (serial, or a folder reading receipt files).
fn receipt_rules(
    p: &mut Problems,
    key: &str,
    encoding: Option<String>,
    segment: Option<RawSegment>,
    template: Option<RawTemplate>,
) -> Option<ReceiptRules> {
    ReceiptRules::from_raw(encoding.as_deref(), segment, template)
        .map_err(|e| p.push(key, e))
        .ok()
}

/// Deserialises a per-source override table, naming the key in errors.
fn override_table<T: serde::de::DeserializeOwned + Default>(
    p: &mut Problems,
    key: &str,
    table: Option<toml::Table>,
) -> T {
    match table {
        None => T::default(),
        Some(t) => T::deserialize(toml::Value::Table(t)).unwrap_or_else(|e| {
            p.push(key, e.to_string().trim());
            T::default()
        }),
    }
}
