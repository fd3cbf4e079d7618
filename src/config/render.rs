//! The effective configuration written back, as `check-config` prints it: TOML with
//! the file's own keys ([`Config::to_toml`]), and a machine form of the same tree
//! ([`Config::to_json`], its schema in docs/CLI.md).
//!
//! Each part renders its validated settings back into its raw (serde) shape; this
//! module only assembles the tree, in the order of config/tillrelay.toml.
//!
//! Invariants:
//! - Round trip: the TOML read back (with the secrets put back where it shows
//!   `***`) gives the same effective configuration. Defaults are filled in,
//!   durations and sizes are written as the file writes them (`"30s"`, `"256MB"`),
//!   code pages by name, a delimiter as a character.
//! - A secret is printed as `***`, or as the `secret_file` it was read from; a push
//!   URL's `user:password@` as `***@`. No Rust debug text.
//! - The JSON form is the same tree with durations as `<key>_ms` integers and sizes
//!   as `<key>_bytes` integers (only at the keys named in [`DURATIONS`] and
//!   [`SIZES`], at the levels where the file has them).

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Config, RawAgent, RawSource, SourceKind};
use crate::capture::serial::RawPassthrough;
use crate::metrics::RawMetrics;
use crate::outbox::RawOutbox;
use crate::settings::{parse_duration, parse_size};
use crate::stamp::RawVideo;
use crate::upload::ovopark::RawOvopark;
use crate::upload::wdt::RawWdt;

/// Keys whose values are durations (`"30s"`), in the sections and sources.
pub const DURATIONS: &[&str] = &[
    "retention",
    "raw_retention",
    "push_interval",
    "pre_roll",
    "post_roll",
    "clock_offset",
    "settle",
    "poll_interval",
    "connect_timeout",
    "peer_idle_timeout",
    "give_up_after",
    "config_poll",
];

/// Keys whose values are sizes (`"256MB"`), in the sections and sources.
pub const SIZES: &[&str] = &["max_size", "max_file_size"];

/// The whole file, in the order config/tillrelay.toml has it.
#[derive(Serialize)]
struct Printed {
    agent: RawAgent,
    outbox: RawOutbox,
    metrics: RawMetrics,
    video: RawVideo,
    ovopark: Option<RawOvopark>,
    wdt: Option<RawWdt>,
    source: Vec<RawSource>,
}

impl Config {
    /// The effective configuration as TOML the config file could hold.
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string(&self.printed()).map_err(|e| format!("cannot print the config: {e}"))
    }

    /// The machine form: the TOML's tree, durations in ms and sizes in bytes.
    pub fn to_json(&self) -> Result<Value, String> {
        let v = serde_json::to_value(self.printed())
            .map_err(|e| format!("cannot print the config: {e}"))?;
        let Value::Object(mut top) = strip_nulls(v) else {
            return Err("cannot print the config: not a table".into());
        };
        for (name, section) in top.iter_mut() {
            match (name.as_str(), section) {
                ("source", Value::Array(sources)) => {
                    for s in sources.iter_mut().filter_map(Value::as_object_mut) {
                        if let Some(Value::Object(v)) = s.get_mut("video") {
                            units(v)?;
                        }
                        units(s)?;
                    }
                }
                (_, Value::Object(t)) => units(t)?,
                _ => {}
            }
        }
        Ok(Value::Object(top))
    }

    fn printed(&self) -> Printed {
        let a = &self.agent;
        Printed {
            agent: RawAgent {
                state_dir: Some(a.state_dir.clone()),
                timezone: Some(a.timezone.to_string()),
                log_level: Some(a.log_level.to_string().to_ascii_lowercase()),
                box_id: Some(a.box_id.clone()),
                config_url: a.pull.as_ref().map(|p| p.url.clone()),
                config_poll: a.pull.as_ref().map(|p| p.raw().1),
                config_key: a.pull.as_ref().map(|p| p.key_hex()),
                config_ca_file: a.pull.as_ref().and_then(|p| p.http.ca_file.clone()),
            },
            outbox: self.outbox.raw(),
            metrics: self.metrics.raw(),
            video: self.video.raw(),
            // A disabled section is shown as such, its other keys (never validated) not.
            ovopark: self.ovopark.as_ref().map(|o| o.raw()).or_else(|| {
                self.off("ovopark").then(|| RawOvopark {
                    enabled: Some(false),
                    ..Default::default()
                })
            }),
            wdt: self.wdt.as_ref().map(|w| w.raw()).or_else(|| {
                self.off("wdt").then(|| RawWdt {
                    enabled: Some(false),
                    ..Default::default()
                })
            }),
            source: self.sources.iter().map(|s| self.source_raw(s)).collect(),
        }
    }

    /// A source's effective settings as one line of text (its table as printed, with
    /// its video always written out, since a change of `[video]` changes it too):
    /// what a reload compares to decide whether the source's loop restarts.
    pub fn source_settings_text(&self, s: &super::Source) -> String {
        let mut r = self.source_raw(s);
        r.video = Some(s.identity.video.raw());
        // Likewise its zone: a change of agent.timezone restarts the loop with it.
        r.timezone = Some(s.identity.zone.to_string());
        serde_json::to_string(&r).unwrap_or_default()
    }

    fn off(&self, name: &str) -> bool {
        self.disabled.iter().any(|d| d == name)
    }

    /// One `[[source]]` table, flat as it is written; its video only where it
    /// differs from `[video]`.
    fn source_raw(&self, s: &super::Source) -> RawSource {
        let id = &s.identity;
        let table = |v: Option<Result<toml::Table, toml::ser::Error>>| v.and_then(Result::ok);
        let mut r = RawSource {
            name: Some(id.name.clone()),
            kind: Some(s.kind.name().into()),
            enabled: Some(s.enabled),
            shop: Some(id.shop.clone()),
            machine_id: Some(id.machine_id.clone()),
            video: (id.video != self.video).then(|| id.video.raw()),
            timezone: (id.zone != self.agent.timezone).then(|| id.zone.to_string()),
            path: None,
            format: None,
            settle: None,
            poll: None,
            poll_interval: None,
            max_file_size: None,
            after: None,
            done_dir: None,
            rejected_dir: None,
            csv: None,
            device: None,
            baud: None,
            data_bits: None,
            parity: None,
            stop_bits: None,
            flow_control: None,
            passthrough: None,
            listen: None,
            printer: None,
            protocol: None,
            allow: None,
            connect_timeout: None,
            max_connections: None,
            peer_idle_timeout: None,
            encoding: None,
            segment: None,
            template: None,
            ovopark: table(s.ovopark.raw().map(toml::Table::try_from)),
            wdt: table(s.wdt.raw().map(toml::Table::try_from)),
        };
        match &s.kind {
            SourceKind::Folder(f) => {
                let k = f.raw();
                r.path = k.path;
                r.format = k.format;
                r.settle = k.settle;
                r.poll = k.poll;
                r.poll_interval = k.poll_interval;
                r.max_file_size = k.max_file_size;
                r.after = k.after;
                r.done_dir = k.done_dir;
                r.rejected_dir = k.rejected_dir;
                r.csv = k.csv;
            }
            SourceKind::Serial(t) => {
                let k = t.serial.raw();
                r.device = k.device;
                r.baud = k.baud;
                r.data_bits = k.data_bits;
                r.parity = k.parity;
                r.stop_bits = k.stop_bits;
                r.flow_control = k.flow_control;
                r.passthrough = k.passthrough;
            }
            SourceKind::Tcp(n) => net(&mut r, n.net.raw()),
            SourceKind::Listen(n) => net(&mut r, n.net.raw()),
            SourceKind::Device(n) => {
                let k = n.net.raw();
                r.device = k.device;
                // A device's passthrough is a plain path.
                r.passthrough = k.passthrough.map(|p| {
                    RawPassthrough(Box::new(crate::capture::serial::RawSerial {
                        device: Some(p),
                        ..Default::default()
                    }))
                });
            }
        }
        if let Some(rules) = s.receipt_rules() {
            let k = rules.raw();
            r.encoding = Some(k.encoding);
            r.segment = Some(k.segment);
            r.template = k.template;
        }
        r
    }
}

fn net(r: &mut RawSource, k: crate::capture::net::settings::RawNet) {
    r.listen = k.listen;
    r.printer = k.printer;
    r.protocol = k.protocol;
    r.allow = k.allow;
    r.connect_timeout = k.connect_timeout;
    r.max_connections = k.max_connections;
    r.peer_idle_timeout = k.peer_idle_timeout;
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        v => v,
    }
}

/// Durations as `<key>_ms`, sizes as `<key>_bytes`, in one table, in place.
fn units(t: &mut Map<String, Value>) -> Result<(), String> {
    let keys: Vec<String> = t.keys().cloned().collect();
    let mut out = Map::new();
    for k in keys {
        let v = t.remove(&k).unwrap_or(Value::Null);
        let text = v.as_str();
        if let (true, Some(s)) = (DURATIONS.contains(&k.as_str()), text) {
            let (neg, body) = s.strip_prefix('-').map_or((false, s), |b| (true, b));
            let ms = parse_duration(body)
                .map_err(|e| format!("{k}: {e}"))?
                .as_millis() as i64;
            out.insert(format!("{k}_ms"), Value::from(if neg { -ms } else { ms }));
        } else if let (true, Some(s)) = (SIZES.contains(&k.as_str()), text) {
            out.insert(format!("{k}_bytes"), Value::from(parse_size(s)?));
        } else {
            out.insert(k, v);
        }
    }
    *t = out;
    Ok(())
}
