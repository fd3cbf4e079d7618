//! Configuration, in two stages: the raw TOML shape ([`RawConfig`], serde only, no I/O,
//! no checks) and the validated runtime [`Config`] that the rest of the agent receives
//! explicitly (there are no globals).
//!
//! Invariants:
//! - Every problem found is reported with the file and the key (`source[1].csv.columns`),
//!   and all problems are reported at once, not one per run.
//! - Unknown keys are errors: a misspelt key must not silently fall back to a default.
//! - Secrets are [`crate::secret::Secret`]s from the moment they are read; the effective
//!   config printed by `check-config` shows them as `***`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::FixedOffset;
use serde::{Deserialize, Serialize};

use crate::capture::receipt::ReceiptRules;
use crate::capture::segment::RawSegment;
use crate::capture::serial::{RawPassthrough, RawSerial, SerialConfig};
use crate::capture::template::RawTemplate;
use crate::upload::Routes;
use crate::upload::ovopark::{Ovopark, OvoparkShop, RawOvopark, RawOvoparkShop};
use crate::upload::wdt::{RawWdt, RawWdtShop, Wdt, WdtShop};

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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub state_dir: Option<PathBuf>,
    pub timezone: Option<String>,
    pub log_level: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    pub synchronous: Option<String>,
    pub max_size: Option<String>,
    pub retention: Option<String>,
    pub raw_retention: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawVideo {
    pub pre_roll: Option<String>,
    pub post_roll: Option<String>,
    pub clock_offset: Option<String>,
}

#[derive(Debug, Deserialize)]
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
    /// The printer's code page (receipts).
    pub encoding: Option<String>,
    pub segment: Option<RawSegment>,
    pub template: Option<RawTemplate>,
    /// Per-source Ovopark identity (org, enterprise, shop, order number prefix).
    pub ovopark: Option<toml::Table>,
    /// Per-source Wangdiantong identity (shop_no, tid prefix, receiver).
    pub wdt: Option<toml::Table>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    pub encoding: Option<String>,
    pub delimiter: Option<String>,
    pub time_format: Option<String>,
    /// canonical field → header name in the file.
    pub columns: Option<BTreeMap<String, String>>,
    /// label printed by the POS → canonical payment (`cash`, `wechat`, …).
    pub payment: Option<BTreeMap<String, String>>,
    /// label printed by the POS → canonical kind (`sale`, `refund`, `void`).
    pub kind: Option<BTreeMap<String, String>>,
}

// ---------------------------------------------------------------------------
// Stage 2: the validated runtime configuration.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file this came from (for messages).
    pub path: PathBuf,
    pub agent: Agent,
    pub outbox: OutboxConfig,
    pub sources: Vec<Source>,
    /// Destinations that get a delivery row for every new order, in a fixed order.
    pub destinations: Vec<String>,
    /// `[ovopark]`, when enabled.
    pub ovopark: Option<Ovopark>,
    /// `[wdt]`, when enabled.
    pub wdt: Option<Wdt>,
    /// Each source's identity per enabled destination, resolved over the defaults.
    #[serde(skip)]
    pub routes: Routes,
}

#[derive(Debug, Clone, Serialize)]
pub struct Agent {
    pub state_dir: PathBuf,
    #[serde(serialize_with = "ser_display")]
    pub timezone: FixedOffset,
    #[serde(serialize_with = "ser_display")]
    pub log_level: log::LevelFilter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged order survives power loss.
    Full,
    /// fsync at WAL checkpoints only: faster on slow flash, but the last commits
    /// before a power cut can be lost (never corrupted).
    Normal,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxConfig {
    pub synchronous: Synchronous,
    /// Cap on the database file; at the cap new captures wait, nothing stored is dropped.
    pub max_size: u64,
    /// Delivered orders are deleted this long after their last delivery.
    #[serde(serialize_with = "ser_duration")]
    pub retention: Duration,
    /// Raw capture bytes (the journal) are kept this long.
    #[serde(serialize_with = "ser_duration")]
    pub raw_retention: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Video {
    #[serde(serialize_with = "ser_duration")]
    pub pre_roll: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub post_roll: Duration,
    /// NVR clock minus POS clock, in seconds (may be negative).
    pub clock_offset_secs: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub name: String,
    /// Run by the daemon (a disabled source is still validated and parseable).
    pub enabled: bool,
    pub shop: String,
    pub machine_id: String,
    pub video: Video,
    pub kind: SourceKind,
    /// Overrides of the Ovopark identity for this source's orders.
    pub ovopark: OvoparkShop,
    /// Overrides of the Wangdiantong identity for this source's orders.
    pub wdt: WdtShop,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceKind {
    Folder(FolderSource),
    Serial(SerialSource),
}

/// A serial tap between the POS and its receipt printer.
#[derive(Debug, Clone, Serialize)]
pub struct SerialSource {
    #[serde(serialize_with = "ser_debug")]
    pub serial: SerialConfig,
    #[serde(serialize_with = "ser_debug")]
    pub rules: ReceiptRules,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// By file extension: `.json` → json, `.csv` → csv.
    Auto,
    Json,
    Csv,
    /// ESC/POS or plain receipt text, as a POS "printing to file" writes it; read with
    /// the source's `encoding`, `[source.segment]` and `[source.template]`.
    Receipt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum After {
    /// Move an ingested file into `done_dir`.
    Move,
    /// Delete an ingested file.
    Delete,
}

#[derive(Debug, Clone, Serialize)]
pub struct FolderSource {
    pub path: PathBuf,
    pub format: Format,
    #[serde(serialize_with = "ser_duration")]
    pub settle: Duration,
    pub poll: bool,
    #[serde(serialize_with = "ser_duration")]
    pub poll_interval: Duration,
    pub max_file_size: u64,
    pub after: After,
    pub done_dir: PathBuf,
    pub rejected_dir: PathBuf,
    pub csv: CsvConfig,
    /// Receipt rules, for `format = "receipt"` (and `auto` on .prn/.bin/.escpos files).
    #[serde(serialize_with = "ser_debug")]
    pub receipt: Option<ReceiptRules>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8, with or without a byte-order mark.
    Utf8,
    /// GBK and its superset GB18030 (one decoder serves both).
    Gb18030,
}

#[derive(Debug, Clone, Serialize)]
pub struct CsvConfig {
    pub encoding: Encoding,
    pub delimiter: u8,
    pub time_format: String,
    pub columns: BTreeMap<String, String>,
    pub payment: BTreeMap<String, crate::order::Payment>,
    pub kind: BTreeMap<String, crate::order::Kind>,
}

/// Canonical fields a CSV column may be mapped to.
pub const CSV_ORDER_FIELDS: &[&str] = &[
    "order_no",
    "order_time",
    "kind",
    "cashier",
    "payment",
    "total",
    "order_discount",
    "paid",
    "shop",
    "machine_id",
];
pub const CSV_LINE_FIELDS: &[&str] = &[
    "code",
    "name",
    "qty",
    "price",
    "amount",
    "discount",
    "scan_time",
    "batch_no",
    "box_no",
];
const CSV_REQUIRED: &[&str] = &[
    "order_no",
    "order_time",
    "code",
    "name",
    "qty",
    "price",
    "amount",
];

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
        raw.validate(path)
    }

    pub fn db_path(&self) -> PathBuf {
        self.agent.state_dir.join(DB_FILE)
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Things that are valid but probably wrong; shown by `check-config` and logged by
    /// `run`.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
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
                            a.name, b.name
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
                            a.name, b.name
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

/// Collects problems so that one run reports all of them.
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, key: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{key}: {msg}"));
    }

    fn duration(&mut self, key: &str, v: Option<&str>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(s).unwrap_or_else(|e| {
                self.push(key, e);
                default
            }),
        }
    }

    fn size(&mut self, key: &str, v: Option<&str>, default: u64) -> u64 {
        match v {
            None => default,
            Some(s) => parse_size(s).unwrap_or_else(|e| {
                self.push(key, e);
                default
            }),
        }
    }
}

impl RawConfig {
    pub fn validate(self, path: &Path) -> Result<Config, ConfigError> {
        let mut p = Problems(Vec::new());
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
        let agent = Agent {
            state_dir: resolve(
                self.agent
                    .state_dir
                    .unwrap_or_else(|| PathBuf::from("/var/lib/tillrelay")),
            ),
            timezone,
            log_level,
        };

        let synchronous = match self.outbox.synchronous.as_deref() {
            None | Some("full") => Synchronous::Full,
            Some("normal") => Synchronous::Normal,
            Some(s) => {
                p.push(
                    "outbox.synchronous",
                    format!("must be full or normal, got {s:?}"),
                );
                Synchronous::Full
            }
        };
        let outbox = OutboxConfig {
            synchronous,
            max_size: p.size(
                "outbox.max_size",
                self.outbox.max_size.as_deref(),
                256 << 20,
            ),
            retention: p.duration(
                "outbox.retention",
                self.outbox.retention.as_deref(),
                Duration::from_secs(7 * 86400),
            ),
            raw_retention: p.duration(
                "outbox.raw_retention",
                self.outbox.raw_retention.as_deref(),
                Duration::from_secs(30 * 86400),
            ),
        };
        if outbox.max_size < 1 << 20 {
            p.push("outbox.max_size", "must be at least 1MiB");
        }

        let video = validate_video(&mut p, "video", &self.video, None);

        let mut sources = Vec::new();
        for (i, raw) in self.source.into_iter().enumerate() {
            let key = format!("source[{i}]");
            if let Some(s) = validate_source(&mut p, &key, raw, &video, &resolve) {
                if sources.iter().any(|o: &Source| o.name == s.name) {
                    p.push(
                        &format!("{key}.name"),
                        format!("{:?} is used by another source", s.name),
                    );
                }
                sources.push(s);
            }
        }

        let mut destinations = Vec::new();
        let ovopark = enabled(&mut p, "ovopark", self.ovopark)
            .and_then(|t| RawOvopark::from_table(t).map_err(|e| p.0.push(e)).ok());
        let wdt = enabled(&mut p, "wdt", self.wdt)
            .and_then(|t| RawWdt::from_table(t).map_err(|e| p.0.push(e)).ok());
        // Each source's overrides over the destination defaults, once, here: an
        // enabled source that cannot be resolved fails the config (a disabled one's
        // leftover orders wait, misconfigured).
        let mut routes = Routes::default();
        for s in &sources {
            let key = format!("source[{}]", s.name);
            if let Some(o) = &ovopark {
                let r = o.resolve(Some(&s.ovopark), Some(&s.shop));
                if let (true, Err(e)) = (s.enabled, &r) {
                    p.push(&format!("{key}.ovopark.{}", e.key), &e.reason);
                }
                routes
                    .ovopark
                    .insert(s.name.clone(), r.map_err(|e| e.reason));
            }
            if let Some(w) = &wdt {
                let r = w.resolve(Some(&s.wdt));
                if let (true, Err(e)) = (s.enabled, &r) {
                    p.push(&format!("{key}.wdt.{}", e.key), &e.reason);
                }
                routes.wdt.insert(s.name.clone(), r.map_err(|e| e.reason));
            }
        }
        if ovopark.is_some() {
            destinations.push("ovopark".to_string());
        }
        if wdt.is_some() {
            destinations.push("wdt".to_string());
        }

        if p.0.is_empty() {
            Ok(Config {
                path: path.to_path_buf(),
                agent,
                outbox,
                sources,
                destinations,
                ovopark,
                wdt,
                routes,
            })
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: p.0,
            })
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

/// The largest pre/post roll or NVR clock offset accepted. Beyond it the value is a
/// typo (a window of days finds no order's video) and, unbounded, the date arithmetic
/// of stamping could overflow.
const MAX_VIDEO_SHIFT: Duration = Duration::from_secs(24 * 3600);

fn validate_video(p: &mut Problems, key: &str, raw: &RawVideo, base: Option<&Video>) -> Video {
    let d = base.cloned().unwrap_or(Video {
        pre_roll: Duration::from_secs(60),
        post_roll: Duration::from_secs(30),
        clock_offset_secs: 0,
    });
    let clock_offset_secs = match raw.clock_offset.as_deref() {
        None => d.clock_offset_secs,
        Some(s) => {
            let (neg, body) = match s.trim().strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s.trim().trim_start_matches('+')),
            };
            match parse_duration(body) {
                Ok(v) => {
                    let secs = v.as_secs() as i64;
                    if neg { -secs } else { secs }
                }
                Err(e) => {
                    p.push(&format!("{key}.clock_offset"), e);
                    0
                }
            }
        }
    };
    let pre_roll = p.duration(
        &format!("{key}.pre_roll"),
        raw.pre_roll.as_deref(),
        d.pre_roll,
    );
    let post_roll = p.duration(
        &format!("{key}.post_roll"),
        raw.post_roll.as_deref(),
        d.post_roll,
    );
    let mut bounded = |name: &str, v: Duration, default: Duration| {
        if v > MAX_VIDEO_SHIFT {
            p.push(
                &format!("{key}.{name}"),
                "must be at most 24h (a video window is minutes around one order)",
            );
            default
        } else {
            v
        }
    };
    let pre_roll = bounded("pre_roll", pre_roll, d.pre_roll);
    let post_roll = bounded("post_roll", post_roll, d.post_roll);
    let clock_offset_secs = if clock_offset_secs.unsigned_abs() > MAX_VIDEO_SHIFT.as_secs() {
        p.push(
            &format!("{key}.clock_offset"),
            "must be within ±24h (set the NVR's clock if it is off by more)",
        );
        d.clock_offset_secs
    } else {
        clock_offset_secs
    };
    Video {
        pre_roll,
        post_roll,
        clock_offset_secs,
    }
}

fn validate_source(
    p: &mut Problems,
    key: &str,
    raw: RawSource,
    video: &Video,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Option<Source> {
    let name = match raw.name {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            p.push(
                &format!("{key}.name"),
                format!("{n:?} must be 1-64 letters, digits, '-', '_' or '.'"),
            );
            return None;
        }
        None => {
            p.push(&format!("{key}.name"), "is required");
            return None;
        }
    };
    let key = format!("source[{}]", name);
    let shop = raw.shop.unwrap_or_default();
    if shop.trim().is_empty() {
        p.push(
            &format!("{key}.shop"),
            "is required (the shop this lane belongs to)",
        );
    }
    let machine_id = raw.machine_id.unwrap_or_default();
    if machine_id.trim().is_empty() {
        p.push(
            &format!("{key}.machine_id"),
            "is required (the camera/NVR device id used for video traceback)",
        );
    }
    let video = match &raw.video {
        Some(v) => validate_video(p, &format!("{key}.video"), v, Some(video)),
        None => video.clone(),
    };
    let kind = match raw.kind.as_deref() {
        Some("folder") => {
            let path = match raw.path {
                Some(path) => resolve(path),
                None => {
                    p.push(&format!("{key}.path"), "is required for a folder source");
                    PathBuf::new()
                }
            };
            let format = match raw.format.as_deref() {
                None | Some("auto") => Format::Auto,
                Some("json") => Format::Json,
                Some("csv") => Format::Csv,
                Some("receipt") => Format::Receipt,
                Some(f) => {
                    p.push(
                        &format!("{key}.format"),
                        format!("must be auto, json, csv or receipt, got {f:?}"),
                    );
                    Format::Auto
                }
            };
            let after = match raw.after.as_deref() {
                None | Some("move") => After::Move,
                Some("delete") => After::Delete,
                Some(a) => {
                    p.push(
                        &format!("{key}.after"),
                        format!("must be move or delete, got {a:?}"),
                    );
                    After::Move
                }
            };
            let csv = validate_csv(p, &format!("{key}.csv"), raw.csv.unwrap_or_default());
            let receipt = if raw.template.is_some() || format == Format::Receipt {
                receipt_rules(p, &key, raw.encoding, raw.segment, raw.template)
            } else {
                None
            };
            if raw.device.is_some() || raw.passthrough.is_some() {
                p.push(
                    &format!("{key}.device"),
                    "serial keys belong to kind = \"serial\" sources",
                );
            }
            let folder = FolderSource {
                done_dir: raw
                    .done_dir
                    .map(resolve)
                    .unwrap_or_else(|| path.join("done")),
                rejected_dir: raw
                    .rejected_dir
                    .map(resolve)
                    .unwrap_or_else(|| path.join("rejected")),
                path,
                format,
                settle: p.duration(
                    &format!("{key}.settle"),
                    raw.settle.as_deref(),
                    Duration::from_secs(2),
                ),
                poll: raw.poll.unwrap_or(false),
                poll_interval: p.duration(
                    &format!("{key}.poll_interval"),
                    raw.poll_interval.as_deref(),
                    Duration::from_secs(5),
                ),
                max_file_size: p.size(
                    &format!("{key}.max_file_size"),
                    raw.max_file_size.as_deref(),
                    16 << 20,
                ),
                after,
                csv,
                receipt,
            };
            if folder.poll_interval < Duration::from_millis(100) {
                p.push(&format!("{key}.poll_interval"), "must be at least 100ms");
            }
            SourceKind::Folder(folder)
        }
        Some("serial") => {
            let raw_serial = RawSerial {
                device: raw.device,
                baud: raw.baud,
                data_bits: raw.data_bits,
                parity: raw.parity,
                stop_bits: raw.stop_bits,
                flow_control: raw.flow_control,
                passthrough: raw.passthrough,
            };
            let serial = raw_serial.validate().map_err(|e| p.push(&key, e)).ok();
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
        Some(other) => {
            p.push(
                &format!("{key}.kind"),
                format!("must be \"folder\" or \"serial\", got {other:?}"),
            );
            return None;
        }
        None => {
            p.push(
                &format!("{key}.kind"),
                "is required (\"folder\" or \"serial\")",
            );
            return None;
        }
    };
    let ovo_key = format!("{key}.ovopark");
    let raw_ovo: RawOvoparkShop = override_table(p, &ovo_key, raw.ovopark);
    let ovopark = raw_ovo.validate_at(&ovo_key).unwrap_or_else(|e| {
        p.0.push(e);
        OvoparkShop::default()
    });
    let wdt_key = format!("{key}.wdt");
    let raw_wdt: RawWdtShop = override_table(p, &wdt_key, raw.wdt);
    let wdt = raw_wdt.validate_at(&wdt_key).unwrap_or_else(|e| {
        p.0.push(e);
        WdtShop::default()
    });
    Some(Source {
        name,
        enabled: raw.enabled.unwrap_or(true),
        shop,
        machine_id,
        video,
        kind,
        ovopark,
        wdt,
    })
}

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

fn validate_csv(p: &mut Problems, key: &str, raw: RawCsv) -> CsvConfig {
    let encoding = match raw
        .encoding
        .as_deref()
        .map(|s| s.to_ascii_lowercase().replace('_', "-"))
        .as_deref()
    {
        None | Some("utf-8") | Some("utf8") => Encoding::Utf8,
        Some("gbk") | Some("gb2312") | Some("gb18030") => Encoding::Gb18030,
        Some(e) => {
            p.push(
                &format!("{key}.encoding"),
                format!("must be utf-8, gbk or gb18030, got {e:?}"),
            );
            Encoding::Utf8
        }
    };
    let delimiter = match raw.delimiter.as_deref() {
        None => b',',
        Some("\\t") | Some("\t") => b'\t',
        Some(d) if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
        Some(d) => {
            p.push(
                &format!("{key}.delimiter"),
                format!("must be one ASCII character, got {d:?}"),
            );
            b','
        }
    };
    let time_format = raw
        .time_format
        .unwrap_or_else(|| crate::order::TIME_FORMAT.to_string());
    if chrono::format::StrftimeItems::new(&time_format)
        .parse()
        .is_err()
    {
        p.push(
            &format!("{key}.time_format"),
            format!("{time_format:?} is not a valid strftime format"),
        );
    }
    let mut columns = BTreeMap::new();
    for field in CSV_ORDER_FIELDS.iter().chain(CSV_LINE_FIELDS) {
        columns.insert(field.to_string(), field.to_string());
    }
    for (field, header) in raw.columns.unwrap_or_default() {
        if !CSV_ORDER_FIELDS.contains(&field.as_str()) && !CSV_LINE_FIELDS.contains(&field.as_str())
        {
            p.push(
                &format!("{key}.columns.{field}"),
                format!(
                    "unknown field; known: {}",
                    CSV_ORDER_FIELDS
                        .iter()
                        .chain(CSV_LINE_FIELDS)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        columns.insert(field, header);
    }
    for req in CSV_REQUIRED {
        if columns.get(*req).is_none_or(|h| h.is_empty()) {
            p.push(&format!("{key}.columns.{req}"), "must name a column");
        }
    }
    let mut payment = BTreeMap::new();
    for (label, canon) in raw.payment.unwrap_or_default() {
        match crate::order::Payment::parse(&canon) {
            Some(v) => {
                payment.insert(label, v);
            }
            None => p.push(
                &format!("{key}.payment.{label}"),
                format!("must be cash, wechat, alipay, card or other, got {canon:?}"),
            ),
        }
    }
    let mut kind = BTreeMap::new();
    for (label, canon) in raw.kind.unwrap_or_default() {
        let v = match canon.as_str() {
            "sale" => crate::order::Kind::Sale,
            "refund" => crate::order::Kind::Refund,
            "void" => crate::order::Kind::Void,
            _ => {
                p.push(
                    &format!("{key}.kind.{label}"),
                    format!("must be sale, refund or void, got {canon:?}"),
                );
                continue;
            }
        };
        kind.insert(label, v);
    }
    CsvConfig {
        encoding,
        delimiter,
        time_format,
        columns,
        payment,
        kind,
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `"90s"`, `"5m"`, `"1h 30m"`, `"7d"`, `"500ms"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like 30s, 5m, 2h or 7d ({e})"))
}

/// `"16MB"`, `"256MiB"`, `"1G"`, `"4096"` (bytes). MB and MiB both mean 2^20 here:
/// the cap is a rough bound, and integrators write either.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 16MB or 1GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?} has an unknown unit (use B, KB, MB or GB)")),
    };
    Ok((n * mult as f64) as u64)
}

/// `"+08:00"`, `"-05:30"`, `"UTC"`, `"Z"`.
pub fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return FixedOffset::east_opt(0).ok_or_else(|| "unreachable".into());
    }
    let bad = || format!("{s:?} is not a UTC offset like +08:00");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if h > 14 || m > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

fn ser_debug<S: serde::Serializer, T: std::fmt::Debug>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:?}"))
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/tillrelay/test.toml"))
    }

    const MINIMAL: &str = r#"
        [[source]]
        name = "lane1"
        kind = "folder"
        path = "export"
        shop = "D001"
        machine_id = "NVR01-CH03"
    "#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.agent.state_dir, PathBuf::from("/var/lib/tillrelay"));
        assert_eq!(c.agent.timezone.local_minus_utc(), 8 * 3600);
        assert_eq!(c.outbox.synchronous, Synchronous::Full);
        let s = &c.sources[0];
        assert_eq!(s.video.pre_roll, Duration::from_secs(60));
        let SourceKind::Folder(f) = &s.kind else {
            panic!("a folder source")
        };
        // relative paths resolve against the config file's folder
        assert_eq!(f.path, PathBuf::from("/etc/tillrelay/export"));
        assert_eq!(f.done_dir, PathBuf::from("/etc/tillrelay/export/done"));
        assert!(c.destinations.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
            [agent]
            timezone = "Asia/Nowhere"
            [outbox]
            synchronous = "sometimes"
            [[source]]
            name = "lane 1"
            kind = "folder"
            [[source]]
            name = "lane2"
            kind = "folder"
            path = "/x"
            shop = "D1"
            machine_id = "M"
            settle = "soon"
            [source.csv]
            encoding = "latin9"
            [source.csv.columns]
            colour = "颜色"
        "#;
        let e = load(text).unwrap_err().to_string();
        for needle in [
            "/etc/tillrelay/test.toml",
            "agent.timezone",
            "outbox.synchronous",
            "source[0].name",
            "source[lane2].settle",
            "source[lane2].csv.encoding",
            "source[lane2].csv.columns.colour",
        ] {
            assert!(e.contains(needle), "missing {needle} in:\n{e}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_with_their_name() {
        let e = load("[agent]\nstate_dri = \"/tmp\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("state_dri"), "{e}");
    }

    #[test]
    fn duplicate_source_names_are_refused() {
        let e = load(&format!("{MINIMAL}\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("used by another source"), "{e}");
    }

    #[test]
    fn absurd_video_durations_are_refused_with_their_key() {
        // Unbounded, these overflowed the date arithmetic of stamping (a panic).
        for (extra, key) in [
            ("[video]\npre_roll = \"400000000000d\"", "video.pre_roll"),
            ("[video]\npost_roll = \"25h\"", "video.post_roll"),
            (
                "[video]\nclock_offset = \"-300000000000d\"",
                "video.clock_offset",
            ),
        ] {
            let e = load(&format!("{extra}\n{MINIMAL}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let e = load(&format!("{MINIMAL}[source.video]\nclock_offset = \"2d\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("source[lane1].video.clock_offset"), "{e}");
        let c = load(&format!(
            "[video]\npre_roll = \"24h\"\nclock_offset = \"-24h\"\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(c.sources[0].video.clock_offset_secs, -86400);
    }

    #[test]
    fn sizes_offsets_and_negative_clock_offsets_parse() {
        assert_eq!(parse_size("16MB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_offset("-05:30").unwrap().local_minus_utc(), -19800);
        assert!(parse_offset("+25:00").is_err());
        let c = load(&format!("[video]\nclock_offset = \"-1m 5s\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.sources[0].video.clock_offset_secs, -65);
    }

    #[test]
    fn destinations_follow_sections_and_enabled() {
        let dests = crate::emulator::demo_agent_config("http://127.0.0.1:1");
        let c = load(&format!("{MINIMAL}\n{dests}")).unwrap();
        assert_eq!(c.destinations, ["ovopark", "wdt"]);
        let off = dests.replace("[wdt]", "[wdt]\nenabled = false");
        let c = load(&format!("{MINIMAL}\n{off}")).unwrap();
        assert_eq!(c.destinations, ["ovopark"]);
        // a disabled destination is not validated: it may be half filled in
        let c = load(&format!("{MINIMAL}\n[wdt]\nenabled = false\nsid = 1\n")).unwrap();
        assert!(c.destinations.is_empty());
    }

    /// A source's identity is resolved over the destination's defaults when the
    /// config is read: an enabled source that has no WDT shop fails the config with
    /// its key (it used to pause the worker at the first push); a disabled one does not.
    #[test]
    fn an_enabled_source_without_a_wdt_shop_fails_the_config() {
        let dests = crate::emulator::demo_agent_config("http://127.0.0.1:1");
        let no_shop: String = dests
            .lines()
            .filter(|l| !l.starts_with("shop_no"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(no_shop, dests, "the demo config sets wdt.shop_no");
        let e = load(&format!("{MINIMAL}\n{no_shop}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("source[lane1].wdt.shop_no: no wdt shop_no"),
            "{e}"
        );
        // Set for the source alone, it resolves.
        let with = MINIMAL.to_string() + "[source.wdt]\nshop_no = \"SHOP9\"\n";
        let c = load(&format!("{with}\n{no_shop}")).unwrap();
        let route = c.routes.wdt["lane1"].as_ref().unwrap();
        assert_eq!(route.shop_no, "SHOP9");
        // A disabled source's leftover orders wait instead (the worker is told why).
        let off = MINIMAL.replace("kind = \"folder\"", "kind = \"folder\"\nenabled = false");
        let c = load(&format!("{off}\n{no_shop}")).unwrap();
        assert!(
            c.routes.wdt["lane1"]
                .as_ref()
                .unwrap_err()
                .contains("no wdt shop_no")
        );
    }

    #[test]
    fn secrets_never_appear_in_config_errors() {
        let dests = crate::emulator::demo_agent_config("http://127.0.0.1:1");
        for bad in [
            dests.replace(
                "secret = \"demo-ovopark-secret\"",
                "secret = \"demo-ovopark-secret",
            ),
            dests.replace("secret = \"demo-ovopark-secret\"", "secret = 4242424242"),
        ] {
            let e = load(&format!("{MINIMAL}\n{bad}")).unwrap_err().to_string();
            assert!(!e.contains("demo-ovopark-secret"), "{e}");
            assert!(!e.contains("4242424242"), "{e}");
            assert!(e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn lanes_sharing_a_tenant_without_prefixes_are_warned_about() {
        let dests = crate::emulator::demo_agent_config("http://127.0.0.1:1");
        let two = format!("{MINIMAL}\n{}\n{dests}", MINIMAL.replace("lane1", "lane2"));
        let c = load(&two).unwrap();
        assert_eq!(c.warnings().len(), 2, "{:?}", c.warnings());
        let fixed = two.replacen(
            "machine_id = \"NVR01-CH03\"",
            "machine_id = \"NVR01-CH03\"\n[source.ovopark]\norder_no_prefix = \"L1-\"\n[source.wdt]\ntid_prefix = \"L1-\"",
            1,
        );
        assert!(load(&fixed).unwrap().warnings().is_empty());
    }
}
