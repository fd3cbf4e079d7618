//! The configuration pull (`[agent] config_url`): every `config_poll` (±20 %) the
//! agent fetches a signed envelope ([`envelope`]) over HTTPS with `If-None-Match`,
//! refuses what it must not run, and hands the rest to the daemon's thread, which
//! checks it as `check-config` does and applies it through the reload path.
//!
//! Precedence (the local file is the bootstrap, the pulled file the fleet's part):
//! the effective configuration is the local file with each top-level table or
//! array the pulled file has replacing the local one (`[[source]]` as a whole),
//! and `[agent]` merged key by key. The trust anchor and where the state lives
//! (`config_url`, `config_key`, `config_poll`, `config_ca_file`, `state_dir`) are
//! the local file's only: a pulled file cannot move the box off its server or key,
//! so a mistake on the server cannot cut a box off for good. Secrets stay local
//! too: the pulled file names `secret_file`s, never a value.
//!
//! Invariants:
//! - Refused, and the running configuration stays: a server down or answering an
//!   error, a file unsigned or badly signed, a serial not above the applied one (a
//!   replay or a stale copy), a secret inline (`secret = …`, a push URL with a
//!   password), a bootstrap key, an invalid configuration. Each refusal is logged,
//!   written to `<state_dir>/pull.json` for `status`, and counted in `/metrics`.
//!   That file is rewritten when the outcome changes, else at most hourly (flash
//!   wear), so its `checked_at` may be up to an hour old; `/metrics` is live.
//! - The last applied envelope is kept, signature and all, in
//!   `<state_dir>/pulled-config.json` (written atomically after it is applied), and
//!   checked again at start: a box that boots offline runs it; one whose copy does
//!   not verify runs its local file and says so.
//! - Nothing here logs the configuration's text.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{error, info, warn};
use serde::{Deserialize, Serialize};

use crate::config::pull::{BOOTSTRAP_KEYS, PullSettings};
use crate::config::{Config, ConfigError, Origin};
use crate::lifecycle::Shutdown;
use crate::metrics::{PullState, SharedRegistry};
use crate::upload::http::Http;

pub mod envelope;

pub use envelope::Envelope;

/// The last applied envelope, in the state dir.
pub const STORED: &str = "pulled-config.json";
/// The pull's last outcome, in the state dir, for `status`.
pub const STATE_FILE: &str = "pull.json";

/// How long an unchanged outcome goes without `pull.json` being rewritten: a check
/// every few minutes must not rewrite a file on the box's flash each time.
const REWRITE_UNCHANGED: i64 = 3600;

/// How long the pull thread waits for the daemon to apply a file.
const APPLY_WITHIN: Duration = Duration::from_secs(120);

/// A verified envelope handed to the daemon's thread, with where to answer.
pub struct Offer {
    pub envelope: Envelope,
    pub answer: std::sync::mpsc::Sender<Result<String, String>>,
}

/// The content checks a pulled file passes before it is merged: TOML, no bootstrap
/// key, no secret value.
pub fn check_content(text: &str) -> Result<toml::Table, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(l) => format!(
                "the configuration is not TOML: line {l}: {}",
                e.message().trim()
            ),
            None => format!("the configuration is not TOML: {}", e.message().trim()),
        }
    })?;
    let mut why = Vec::new();
    if let Some(agent) = table.get("agent").and_then(|a| a.as_table()) {
        for k in BOOTSTRAP_KEYS {
            if agent.contains_key(*k) {
                why.push(format!("agent.{k} is the local file's only"));
            }
        }
    }
    secrets(&toml::Value::Table(table.clone()), "", &mut why);
    if why.is_empty() {
        Ok(table)
    } else {
        Err(format!(
            "the pulled configuration sets what it must not: {} (secrets stay on the box: use secret_file)",
            why.join("; ")
        ))
    }
}

/// Keys holding a secret value, named by path (never the value).
fn secrets(v: &toml::Value, at: &str, why: &mut Vec<String>) {
    let name = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                if k == "secret" || k == "salt" || k == "password" {
                    why.push(format!("{} holds a secret value", name(k)));
                } else if k == "push_url" && v.as_str().is_some_and(has_password) {
                    why.push(format!("{} holds a password", name(k)));
                } else {
                    secrets(v, &name(k), why);
                }
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                secrets(v, &format!("{at}[{i}]"), why);
            }
        }
        _ => {}
    }
}

fn has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
        .is_some_and(|authority| authority.contains('@'))
}

/// The local file's table with the pulled one over it (see the module's doc).
pub fn merge(mut local: toml::Table, pulled: toml::Table) -> toml::Table {
    for (k, v) in pulled {
        match (k.as_str(), v) {
            ("agent", toml::Value::Table(a)) => {
                let mine = local
                    .entry("agent")
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let Some(mine) = mine.as_table_mut() {
                    mine.extend(a);
                }
            }
            (_, v) => {
                local.insert(k, v);
            }
        }
    }
    local
}

/// The configuration `envelope` makes of the local file at `path`, validated as
/// `check-config` validates (relative paths resolve from the local file's folder).
pub fn candidate(path: &Path, env: &Envelope) -> Result<Config, String> {
    let pulled = check_content(&env.config)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let local: toml::Table = toml::from_str(&text)
        .map_err(|_| format!("config file {} is not valid TOML", path.display()))?;
    let merged = toml::to_string(&merge(local, pulled))
        .map_err(|e| format!("cannot merge the pulled configuration: {e}"))?;
    let mut cfg = Config::from_toml(&merged, path).map_err(|e| {
        format!(
            "the pulled configuration (serial {}) over the local file: {e}",
            env.serial
        )
    })?;
    cfg.origin = Origin {
        serial: env.serial,
        hash: crate::config::short_hash(env.config.as_bytes()),
    };
    Ok(cfg)
}

/// The kept envelope, verified with the local key; `Ok(None)` when there is none.
pub fn stored(state_dir: &Path, key: &[u8; 32]) -> Result<Option<Envelope>, String> {
    let p = state_dir.join(STORED);
    match std::fs::read(&p) {
        Ok(bytes) => Envelope::open(&bytes, key)
            .map(Some)
            .map_err(|e| format!("{}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", p.display())),
    }
}

/// Keeps `env` as the last applied one (temporary file + rename).
pub fn keep(state_dir: &Path, env: &Envelope) -> std::io::Result<()> {
    let tmp = state_dir.join(format!(".{STORED}.tmp"));
    std::fs::write(&tmp, env.to_json())?;
    std::fs::rename(&tmp, state_dir.join(STORED))
}

/// The configuration the agent runs: the local file, with the kept pulled one over
/// it when the box pulls. The local file must be valid alone (it is what runs before
/// the first pull); a kept file that no longer verifies or fits is set aside with
/// the returned note, and the local file runs.
pub fn load_with_note(path: &Path) -> Result<(Config, Option<String>), ConfigError> {
    let local = Config::load(path)?;
    let Some(pull) = local.agent.pull.clone() else {
        return Ok((local, None));
    };
    let kept = stored(&local.agent.state_dir, &pull.key)
        .and_then(|e| e.map(|e| candidate(path, &e)).transpose());
    match kept {
        Ok(Some(cfg)) => Ok((cfg, None)),
        Ok(None) => Ok((local, None)),
        Err(why) => Ok((
            local,
            Some(format!(
                "the kept pulled configuration is not used ({why}): running the local file until the next pull"
            )),
        )),
    }
}

/// [`load_with_note`], the note logged.
pub fn load_effective(path: &Path) -> Result<Config, ConfigError> {
    let (cfg, note) = load_with_note(path)?;
    if let Some(n) = note {
        warn!("config pull: {n}");
    }
    Ok(cfg)
}

/// What `status` reads: the pull's last outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub pid: u32,
    pub url: String,
    /// Unix seconds of the last check, and of the last one that ended well.
    pub checked_at: i64,
    pub last_success_at: i64,
    pub ok: bool,
    pub message: String,
    /// The applied pulled file (0: none).
    pub serial: u64,
}

/// The record of the running agent (`running`: its pid), if it wrote one.
pub fn read_live(state_dir: &Path, running: Option<u32>) -> Option<Record> {
    let r: Record =
        serde_json::from_slice(&std::fs::read(state_dir.join(STATE_FILE)).ok()?).ok()?;
    (running == Some(r.pid)).then_some(r)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pull thread's reporter: the log, the registry, the record file.
struct Reporter {
    url: String,
    state_dir: PathBuf,
    registry: SharedRegistry,
    applied: Arc<Mutex<Origin>>,
    /// The last record written.
    written: Mutex<Option<Record>>,
}

impl Reporter {
    fn report(&self, outcome: &Result<String, String>) {
        let now = crate::outbox::now();
        match outcome {
            Ok(m) => info!("config pull: {m}"),
            Err(m) => error!("config pull refused, the running configuration stays: {m}"),
        }
        let mut reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let st = reg.pull.get_or_insert_with(PullState::default);
        st.checks += 1;
        st.last_check_at = now;
        st.last_ok = outcome.is_ok();
        if outcome.is_ok() {
            st.last_success_at = now;
        } else {
            st.failures += 1;
        }
        let rec = Record {
            pid: std::process::id(),
            url: crate::upload::http::url_without_query(&self.url),
            checked_at: now,
            last_success_at: st.last_success_at,
            ok: outcome.is_ok(),
            message: match outcome {
                Ok(m) | Err(m) => m.clone(),
            },
            serial: lock(&self.applied).serial,
        };
        drop(reg);
        let mut written = lock(&self.written);
        if written.as_ref().is_some_and(|w| {
            (w.ok, &w.message, w.serial) == (rec.ok, &rec.message, rec.serial)
                && now - w.checked_at < REWRITE_UNCHANGED
        }) {
            return;
        }
        *written = Some(rec.clone());
        drop(written);
        let tmp = self.state_dir.join(format!(".{STATE_FILE}.tmp"));
        let written = serde_json::to_vec_pretty(&rec)
            .map_err(std::io::Error::other)
            .and_then(|t| std::fs::write(&tmp, t))
            .and_then(|_| std::fs::rename(&tmp, self.state_dir.join(STATE_FILE)));
        if let Err(e) = written {
            warn!("config pull: cannot write {STATE_FILE} (status will not show the pull): {e}");
        }
    }
}

/// Starts the pull thread; `applied` is what runs now (serial 0: the local file),
/// changed by the daemon when it applies a pulled file. Each verified newer file goes to `offers`.
pub fn start(
    settings: PullSettings,
    state_dir: PathBuf,
    registry: SharedRegistry,
    applied: Arc<Mutex<Origin>>,
    offers: tokio::sync::mpsc::UnboundedSender<Offer>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    {
        let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.pull = Some(PullState::default());
    }
    std::thread::Builder::new()
        .name("config-pull".into())
        .spawn(move || {
            let rep = Reporter {
                url: settings.url.clone(),
                state_dir,
                registry,
                applied,
                written: Mutex::new(None),
            };
            let http = match Http::new(&settings.http, &settings.url) {
                Ok(h) => h,
                Err(e) => {
                    rep.report(&Err(format!(
                        "cannot set up HTTPS for agent.config_url: {e}"
                    )));
                    return;
                }
            };
            // The ETag of the last file answered, and how that check ended: a 304
            // repeats it (a refused file stays refused until the server changes it).
            let mut last: Option<(String, Result<String, String>)> = None;
            loop {
                let outcome = check(&settings, &http, &rep.applied, &offers, &mut last);
                rep.report(&outcome);
                let wait = settings.poll.mul_f64(0.8 + 0.4 * fastrand::f64());
                if shutdown.wait(wait) {
                    break;
                }
            }
        })
        .map(|_| ())
}

/// One check of the URL.
fn check(
    s: &PullSettings,
    http: &Http,
    applied: &Mutex<Origin>,
    offers: &tokio::sync::mpsc::UnboundedSender<Offer>,
    last: &mut Option<(String, Result<String, String>)>,
) -> Result<String, String> {
    let target = crate::upload::http::url_without_query(&s.url);
    let etag = last.as_ref().map(|(t, _)| t.as_str());
    let (reply, tag) = http
        .get(&s.url, etag)
        .map_err(|e| format!("cannot fetch {target}: {e}"))?;
    if reply.status == 304 {
        if let Some((_, outcome)) = last.as_ref() {
            return match outcome {
                Ok(_) => Ok(format!(
                    "{target} unchanged; serial {} runs",
                    lock(applied).serial
                )),
                Err(e) => Err(format!("{target} unchanged, still refused: {e}")),
            };
        }
    }
    if reply.status != 200 {
        return Err(format!("{target} answered HTTP {}", reply.status));
    }
    let outcome = offer(&reply.body, s, applied, offers);
    *last = tag.map(|t| (t, outcome.clone()));
    outcome
}

/// A 200's body: verified, checked, and handed to the daemon to apply.
fn offer(
    body: &[u8],
    s: &PullSettings,
    applied: &Mutex<Origin>,
    offers: &tokio::sync::mpsc::UnboundedSender<Offer>,
) -> Result<String, String> {
    let env = Envelope::open(body, &s.key).map_err(|e| e.to_string())?;
    let running = lock(applied).clone();
    let hash = crate::config::short_hash(env.config.as_bytes());
    if env.serial == running.serial && hash == running.hash {
        return Ok(format!("serial {} runs already", running.serial));
    }
    if env.serial <= running.serial {
        return Err(format!(
            "serial {} is not above the applied {}: a replayed or stale file",
            env.serial, running.serial
        ));
    }
    check_content(&env.config)?;
    let (tx, rx) = std::sync::mpsc::channel();
    offers
        .send(Offer {
            envelope: env,
            answer: tx,
        })
        .map_err(|_| "the agent is stopping".to_string())?;
    rx.recv_timeout(APPLY_WITHIN)
        .map_err(|_| "the agent did not answer in time".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pulled_file_with_a_secret_or_a_bootstrap_key_is_refused_naming_the_key_only() {
        let e = check_content("[wdt]\nsecret = \"k:s-hunter2\"\n").unwrap_err();
        assert!(e.contains("wdt.secret holds a secret value"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = check_content("[metrics]\npush_url = \"https://u:pw@gw/\"\n").unwrap_err();
        assert!(e.contains("metrics.push_url"), "{e}");
        let e = check_content("[agent]\nconfig_key = \"00\"\n").unwrap_err();
        assert!(e.contains("agent.config_key"), "{e}");
        let e = check_content("[wdt\nsecret = \"hunter2\"").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(check_content("[wdt]\nsecret_file = \"/run/x\"\n").is_ok());
    }

    #[test]
    fn the_pulled_tables_replace_the_local_ones_and_agent_merges_by_key() {
        let local: toml::Table = toml::from_str(
            "[agent]\nstate_dir = \"/s\"\nbox_id = \"a\"\n[[source]]\nname = \"x\"\n[wdt]\nurl = \"u\"\n",
        )
        .unwrap();
        let pulled: toml::Table =
            toml::from_str("[agent]\nlog_level = \"debug\"\n[[source]]\nname = \"y\"\n").unwrap();
        let m = merge(local, pulled);
        let agent = m["agent"].as_table().unwrap();
        assert_eq!(agent["state_dir"].as_str(), Some("/s"));
        assert_eq!(agent["box_id"].as_str(), Some("a"));
        assert_eq!(agent["log_level"].as_str(), Some("debug"));
        let sources = m["source"].as_array().unwrap();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0]["name"].as_str(), Some("y"));
        assert_eq!(m["wdt"]["url"].as_str(), Some("u"));
    }
}
