//! Configuration, in two stages: the raw TOML shape ([`RawConfig`], serde only, no I/O,
//! no checks) and the validated runtime [`Config`] that the rest of the agent receives
//! explicitly (there are no globals).
//!
//! Settings flow down: each part owns its settings and their validation (the outbox
//! [`crate::outbox::OutboxConfig`], stamping [`crate::stamp::Identity`] and
//! [`crate::stamp::Video`], the folder [`crate::capture::folder::FolderSource`], the
//! readers [`crate::capture::formats::CsvConfig`], the serial tap, segmenter and
//! templates, each cloud its own). This module reads the file, hands each part its
//! raw settings, and assembles [`Config`]; the file level lives here, the source
//! level in `source`. No part below imports this module.
//!
//! Invariants:
//! - Every problem found is reported with the file and the key (`source[1].csv.columns`),
//!   and all problems are reported at once, not one per run.
//! - Unknown keys are errors: a misspelt key must not silently fall back to a default.
//! - Secrets are [`crate::secret::Secret`]s from the moment they are read; the effective
//!   config printed by `check-config` shows them as `***`.

use std::path::{Path, PathBuf};

use chrono::FixedOffset;
use serde::{Deserialize, Serialize};

use crate::metrics::{MetricsConfig, RawMetrics};
use crate::outbox::{OutboxConfig, RawOutbox};
use crate::settings::Problems;
use crate::stamp::{RawVideo, Video};
use crate::upload::Routes;
use crate::upload::ovopark::{Ovopark, RawOvopark};
use crate::upload::wdt::{RawWdt, Wdt};

pub mod pull;
mod render;
mod source;
#[cfg(test)]
mod tests;

pub use source::{RawSource, SerialSource, Source, SourceKind};

// The settings types a `Config` is made of, owned by their parts, re-exported so that
// the whole shape can be named from here.
pub use crate::capture::folder::{After, FolderSource};
pub use crate::capture::formats::{CsvConfig, Encoding, Format};
pub use crate::outbox::Synchronous;
pub use crate::stamp::Identity;

/// Where the daemon looks when neither `--config` nor `TILLRELAY_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/tillrelay/tillrelay.toml";

/// The database file inside `agent.state_dir`.
pub const DB_FILE: &str = "queue.db";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path} is not valid:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

// ---------------------------------------------------------------------------
// Stage 1: the raw shape of the file.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub agent: RawAgent,
    #[serde(default)]
    pub outbox: RawOutbox,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub video: RawVideo,
    #[serde(default)]
    pub source: Vec<RawSource>,
    /// Destination sections; their shape belongs to the uploaders
    /// ([`crate::upload::ovopark::RawOvopark`], [`crate::upload::wdt::RawWdt`]), which
    /// validate them and name their keys in errors.
    #[serde(default)]
    pub ovopark: Option<toml::Table>,
    #[serde(default)]
    pub wdt: Option<toml::Table>,
}

#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub state_dir: Option<PathBuf>,
    pub timezone: Option<String>,
    pub log_level: Option<String>,
    pub box_id: Option<String>,
    /// The configuration pull ([`pull`]): an https:// URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_poll: Option<String>,
    /// The ed25519 public key (64 hex digits) the pulled file is signed with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_ca_file: Option<PathBuf>,
}

// ---------------------------------------------------------------------------
// Stage 2: the validated runtime configuration.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages).
    pub path: PathBuf,
    pub agent: Agent,
    pub outbox: OutboxConfig,
    /// `[metrics]`: the endpoint and the push.
    pub metrics: MetricsConfig,
    /// `[video]`: the window of every source that sets none of its own.
    pub video: Video,
    pub sources: Vec<Source>,
    /// Destinations that get a delivery row for every new order, in a fixed order.
    pub destinations: Vec<String>,
    /// `[ovopark]`, when enabled.
    pub ovopark: Option<Ovopark>,
    /// `[wdt]`, when enabled.
    pub wdt: Option<Wdt>,
    /// Destination sections present with `enabled = false` (not validated; shown by
    /// `check-config` as such).
    pub disabled: Vec<String>,
    /// Each source's identity per enabled destination, resolved over the defaults.
    pub routes: Routes,
    /// What this configuration is: the pulled file's serial and hash, or the local
    /// file's hash (serial 0). Shown by `status` and `/metrics`.
    pub origin: Origin,
}

/// Which configuration a box runs, comparable across a fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The pulled file's serial; 0 for a local file.
    pub serial: u64,
    /// SHA-256 of the file's text (the pulled file's, or the local file's), hex,
    /// first 16 digits.
    pub hash: String,
}

impl Origin {
    /// The origin of a local file's `text`.
    pub fn local(text: &str) -> Origin {
        Origin {
            serial: 0,
            hash: short_hash(text.as_bytes()),
        }
    }

    /// "pulled" or "local".
    pub fn kind(&self) -> &'static str {
        if self.serial > 0 { "pulled" } else { "local" }
    }
}

/// The first 16 hex digits of the SHA-256 of `bytes`.
pub fn short_hash(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    pull::hex(&d.as_ref()[..8])
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub state_dir: PathBuf,
    pub timezone: FixedOffset,
    pub log_level: log::LevelFilter,
    /// What identifies this box in every report (default: the host name).
    pub box_id: String,
    /// Where `box_id` came from (the file or which default), for the start's log.
    pub box_id_from: crate::metrics::settings::BoxIdFrom,
    /// `config_url` and its companions, when the box pulls its configuration.
    pub pull: Option<pull::PullSettings>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates config text; `path` is used for messages and to resolve
    /// relative paths (relative to the file's folder, so an example config works
    /// from wherever it is run).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: syntax_message(text, &e),
        })?;
        let mut cfg = raw.validate(path)?;
        cfg.origin = Origin::local(text);
        Ok(cfg)
    }

    pub fn db_path(&self) -> PathBuf {
        self.agent.state_dir.join(DB_FILE)
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.identity.name == name)
    }

    /// Things that are valid but probably wrong; shown by `check-config` and logged by
    /// `run`.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        // A plain http:// URL to a remote host: key, salt and orders in clear, and a
        // proxy would be asked to tunnel to port 80 (issue #26).
        let urls = [
            ("ovopark.url", self.ovopark.as_ref().map(|o| o.url.as_str())),
            ("wdt.url", self.wdt.as_ref().map(|d| d.url.as_str())),
        ];
        // The POS API (open.ovopark.pos.sendOrder v2) has a payload of its own
        // (iposJson with a ticket id, cashier id and name, the machineId its receipt
        // overlay needs): this agent builds the storehouse payload only, and under
        // the POS name it is wrong data at the vendor (issue #26, item 10, open).
        if let Some(o) = self.ovopark.as_ref().filter(|o| o.method == POS_SEND_ORDER) {
            w.push(format!(
                "ovopark.method = {:?} sends the storehouse payload under the POS API's name; the POS API takes its own payload (ticket, cashier, machineId), which this version does not build: use {:?}",
                o.method,
                crate::upload::ovopark::SEND_ORDER
            ));
        }
        for (key, url) in urls {
            if let Some(url) = url.filter(|u| crate::upload::http::cleartext_remote(u)) {
                w.push(format!(
                    "{key} = {url:?} is plain http to a remote host: the key, signature and orders cross the network in clear, and behind an HTTP proxy the tunnel goes to port 80, which proxies commonly refuse; use https://"
                ));
            }
        }
        // A template that does not check totals stores an order whose numbers do not
        // add up (noted per order at capture); the clouds refuse it (issue #31.4).
        for src in &self.sources {
            let unchecked = src
                .receipt_rules()
                .and_then(|r| r.template.as_ref())
                .is_some_and(|t| t.raw().check_totals == Some(false));
            if unchecked {
                w.push(format!(
                    "source[{}].template.check_totals = false: an order whose item amounts do not add up to its total, or whose paid is not total − discount, is stored as printed (a warning per order in the log) and refused by the clouds; fix the template instead (docs/TEMPLATES.md §8)",
                    src.identity.name
                ));
            }
        }
        // Order numbers are unique per Ovopark enterprise and per Wangdiantong seller:
        // two lanes whose POSes both count from 1 would collide, and the second order
        // would be taken for a repeat of the first.
        let active: Vec<&Source> = self.sources.iter().filter(|s| s.enabled).collect();
        for (i, &a) in active.iter().enumerate() {
            for &b in &active[i + 1..] {
                if let Some(o) = &self.ovopark {
                    let ent = |s: &Source| {
                        s.ovopark
                            .enterprise_id
                            .clone()
                            .or_else(|| o.defaults.enterprise_id.clone())
                    };
                    let prefix = |s: &Source| {
                        s.ovopark
                            .order_no_prefix
                            .clone()
                            .or_else(|| o.defaults.order_no_prefix.clone())
                    };
                    if ent(a) == ent(b) && prefix(a) == prefix(b) {
                        w.push(format!(
                            "sources {} and {} send to the same Ovopark enterprise with the same order_no_prefix: if their POSes number orders alike, set [source.ovopark] order_no_prefix",
                            a.identity.name, b.identity.name
                        ));
                    }
                }
                if let Some(d) = &self.wdt {
                    let prefix = |s: &Source| {
                        s.wdt
                            .tid_prefix
                            .clone()
                            .or_else(|| d.defaults.tid_prefix.clone())
                    };
                    if prefix(a) == prefix(b) {
                        w.push(format!(
                            "sources {} and {} send to the same Wangdiantong seller with the same tid_prefix: if their POSes number orders alike, set [source.wdt] tid_prefix",
                            a.identity.name, b.identity.name
                        ));
                    }
                }
            }
        }
        w
    }
}

/// A TOML syntax error without the file's text: toml's own message quotes the
/// offending line, which may hold a secret.
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let mut msg = e.message().trim().to_string();
    if let Some(span) = e.span() {
        let start = span.start.min(text.len());
        let line_no = text[..start].bytes().filter(|&b| b == b'\n').count() + 1;
        let line = text.lines().nth(line_no - 1).unwrap_or("");
        // A value error on a secret line may quote the value itself.
        if line.trim_start().starts_with("secret") {
            msg = "invalid value (not shown: this line holds a secret)".to_string();
        }
        let key = line.split('=').next().unwrap_or("").trim();
        if key.is_empty() || key.starts_with('[') {
            return format!("line {line_no}: {msg}");
        }
        return format!("line {line_no} ({key}): {msg}");
    }
    msg
}

impl RawConfig {
    pub fn validate(self, path: &Path) -> Result<Config, ConfigError> {
        let mut p = Problems::new();
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |q: PathBuf| if q.is_absolute() { q } else { base.join(q) };

        let timezone = match self.agent.timezone.as_deref() {
            None => FixedOffset::east_opt(8 * 3600).expect("UTC+8 is in range"),
            Some(s) => parse_offset(s).unwrap_or_else(|e| {
                p.push("agent.timezone", e);
                FixedOffset::east_opt(0).expect("UTC is in range")
            }),
        };
        let log_level = match self.agent.log_level.as_deref() {
            None => log::LevelFilter::Info,
            Some(s) => s.parse().unwrap_or_else(|_| {
                p.push(
                    "agent.log_level",
                    format!("must be off, error, warn, info, debug or trace, got {s:?}"),
                );
                log::LevelFilter::Info
            }),
        };
        let (box_id, box_id_from) =
            crate::metrics::settings::validate_box_id(&mut p, self.agent.box_id.as_deref());
        let agent = Agent {
            state_dir: resolve(
                self.agent
                    .state_dir
                    .unwrap_or_else(|| PathBuf::from("/var/lib/tillrelay")),
            ),
            timezone,
            log_level,
            box_id,
            box_id_from,
            pull: pull::validate(
                &mut p,
                self.agent.config_url.as_deref(),
                self.agent.config_poll.as_deref(),
                self.agent.config_key.as_deref(),
                self.agent.config_ca_file.map(&resolve),
            ),
        };

        let outbox = self.outbox.validate(&mut p);
        let metrics = self.metrics.validate(&mut p);

        let video = self.video.validate(&mut p, "video", &Video::default());

        let mut sources = Vec::new();
        for (i, raw) in self.source.into_iter().enumerate() {
            let key = format!("source[{i}]");
            if let Some(s) =
                source::validate_source(&mut p, &key, raw, &video, agent.timezone, &resolve)
            {
                if sources
                    .iter()
                    .any(|o: &Source| o.identity.name == s.identity.name)
                {
                    p.push(
                        &format!("{key}.name"),
                        format!("{:?} is used by another source", s.identity.name),
                    );
                }
                sources.push(s);
            }
        }

        same_folder(&mut p, &sources);
        source::check_addresses(&mut p, &sources);

        let mut destinations = Vec::new();
        let off = |t: &Option<toml::Table>| {
            t.as_ref()
                .is_some_and(|t| t.get("enabled") == Some(&toml::Value::Boolean(false)))
        };
        let disabled: Vec<String> = [("ovopark", off(&self.ovopark)), ("wdt", off(&self.wdt))]
            .into_iter()
            .filter(|(_, off)| *off)
            .map(|(name, _)| name.to_string())
            .collect();
        let ovopark = enabled(&mut p, "ovopark", self.ovopark)
            .and_then(|t| RawOvopark::from_table(t).map_err(|e| p.push_named(e)).ok());
        let wdt = enabled(&mut p, "wdt", self.wdt)
            .and_then(|t| RawWdt::from_table(t).map_err(|e| p.push_named(e)).ok());
        // Each source's overrides over the destination defaults, once, here: an
        // enabled source that cannot be resolved fails the config (a disabled one's
        // leftover orders wait, misconfigured).
        let mut routes = Routes::default();
        for s in &sources {
            let name = &s.identity.name;
            let key = format!("source[{name}]");
            if let Some(o) = &ovopark {
                let r = o.resolve(Some(&s.ovopark), Some(&s.identity.shop));
                if let (true, Err(e)) = (s.enabled, &r) {
                    p.push(&format!("{key}.ovopark.{}", e.key), &e.reason);
                }
                routes.ovopark.insert(name.clone(), r.map_err(|e| e.reason));
            }
            if let Some(w) = &wdt {
                let r = w.resolve(Some(&s.wdt));
                if let (true, Err(e)) = (s.enabled, &r) {
                    p.push(&format!("{key}.wdt.{}", e.key), &e.reason);
                }
                routes.wdt.insert(name.clone(), r.map_err(|e| e.reason));
            }
        }
        if ovopark.is_some() {
            destinations.push("ovopark".to_string());
        }
        if wdt.is_some() {
            destinations.push("wdt".to_string());
        }

        if p.is_empty() {
            Ok(Config {
                path: path.to_path_buf(),
                agent,
                outbox,
                metrics,
                video,
                sources,
                destinations,
                ovopark,
                wdt,
                disabled,
                routes,
                origin: Origin::default(),
            })
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: p.into_vec(),
            })
        }
    }
}

/// Two enabled folder sources watching one folder would split its files between
/// them at random, half stamped with the wrong shop and camera: refused, naming both.
/// Paths are compared canonicalized (symlinks, `..`) where the folder exists, as
/// written (`.` and trailing slashes aside) where it does not yet.
fn same_folder(p: &mut Problems, sources: &[Source]) {
    let mut seen: Vec<(PathBuf, &str)> = Vec::new();
    for s in sources.iter().filter(|s| s.enabled) {
        let SourceKind::Folder(f) = &s.kind else {
            continue;
        };
        let path = std::fs::canonicalize(&f.path)
            .unwrap_or_else(|_| f.path.components().collect::<PathBuf>());
        let name = s.identity.name.as_str();
        match seen.iter().find(|(q, _)| *q == path) {
            Some((_, other)) => p.push(
                &format!("source[{name}].path"),
                format!(
                    "{} is also watched by source {other:?}: two sources cannot share a folder (their files would be split between them at random)",
                    f.path.display()
                ),
            ),
            None => seen.push((path, name)),
        }
    }
}

/// A destination table, unless absent or `enabled = false` (then it is not
/// validated: a disabled destination may be half filled in).
fn enabled(p: &mut Problems, name: &str, table: Option<toml::Table>) -> Option<toml::Table> {
    let t = table?;
    // A secret of the wrong type would be quoted by the deserialiser's message.
    if t.get("secret").is_some_and(|v| !v.is_str()) {
        p.push(
            &format!("{name}.secret"),
            "must be a string (value not shown)",
        );
        return None;
    }
    match t.get("enabled") {
        None | Some(toml::Value::Boolean(true)) => Some(t),
        Some(toml::Value::Boolean(false)) => None,
        Some(v) => {
            p.push(
                &format!("{name}.enabled"),
                format!("must be true or false, got {v}"),
            );
            None
        }
    }
}

pub use crate::settings::parse_offset;

/// Ovopark's POS API method (see [`Config::warnings`]).
const POS_SEND_ORDER: &str = "open.ovopark.pos.sendOrder";
