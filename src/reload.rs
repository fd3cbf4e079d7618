//! Reloading the configuration without a restart (`SIGHUP`, `tillrelay reload`,
//! systemd's `ExecReload=`): what changed between two configurations, and the
//! outcome the daemon keeps for `status` and `reload` to read.
//!
//! The daemon applies a reload in `supervisor`; this module holds what both sides
//! share:
//! - the comparison: a source is compared by its settings as `check-config` prints
//!   them (a canonical serialisation, complete: no source key is skipped), a
//!   destination by its settings, its secrets and each source's identity resolved for
//!   it (`Routes`); settings that cannot change live ([`fixed_changes`]) are named.
//! - `tillrelay reload` ([`command`]): the signal and the wait for the answer.
//! - the outcome file `<state_dir>/reload.json` ([`Record`]), rewritten atomically
//!   after each reload, with the daemon's pid, so that `status` (another
//!   process) shows a refusal and `reload` waits for the answer to its signal.
//!
//! Invariants:
//! - A refused reload changes nothing in the running daemon; its message is the one
//!   `check-config` prints for the same file.
//! - No secret reaches the file or a log line: secrets are only hashed in memory.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::CliError;
use crate::config::{Config, Source};

/// The outcome file in the state dir.
pub const FILE: &str = "reload.json";

/// How long `tillrelay reload` waits for the daemon's answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// The last configuration load of the running daemon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The daemon that wrote it.
    pub pid: u32,
    /// Reloads asked since the daemon started (the first is 1).
    pub seq: u64,
    /// Unix seconds of this load.
    pub at: i64,
    /// Applied (true) or refused (false: the running configuration stayed).
    pub ok: bool,
    /// The file read.
    pub config: PathBuf,
    /// Why it was refused (the same text as `check-config`), or a summary.
    pub message: String,
    /// What the reload changed (sources, destinations started, stopped, restarted).
    #[serde(default)]
    pub changes: Vec<String>,
    /// Settings changed in the file that only a restart applies (the running
    /// values stay).
    #[serde(default)]
    pub needs_restart: Vec<String>,
    /// Unix seconds of the last applied load: the configuration running now.
    pub running_since: i64,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Writes the record atomically (temporary file + rename); a failure is only logged
/// by the caller: the reload itself is done.
pub fn write(state_dir: &Path, r: &Record) -> std::io::Result<()> {
    let tmp = state_dir.join(format!(".{FILE}.tmp"));
    let text = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path(state_dir))
}

/// The record of the daemon running now, if it wrote one (a record left by a
/// stopped daemon is not shown: it no longer describes anything running).
pub fn read_live(state_dir: &Path) -> Option<Record> {
    let r: Record = serde_json::from_slice(&std::fs::read(path(state_dir)).ok()?).ok()?;
    (running_pid(state_dir) == Some(r.pid)).then_some(r)
}

/// The running agent's pid: the process holding `<state_dir>/tillrelay.pid`'s lock
/// (crate::pidfile), never merely the pid the file names.
pub fn running_pid(state_dir: &Path) -> Option<u32> {
    crate::pidfile::running_pid(state_dir).map(|p| p as u32)
}

/// `agent.state_dir` of a file that may not be valid (a refused reload is shown
/// precisely when it is not): read as plain TOML, resolved as the config resolves it.
/// `None` when the file is not even TOML.
pub fn state_dir_of(config: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(config).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let dir = table
        .get("agent")
        .and_then(|a| a.get("state_dir"))
        .and_then(|d| d.as_str())
        .unwrap_or("/var/lib/tillrelay");
    let dir = PathBuf::from(dir);
    Some(if dir.is_absolute() {
        dir
    } else {
        config.parent().unwrap_or(Path::new(".")).join(dir)
    })
}

fn hash_str(parts: &[&str]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// A source's settings, compared across a reload (its loop restarts when this
/// changes).
pub fn source_fingerprint(cfg: &Config, s: &Source) -> u64 {
    hash_str(&[&cfg.source_settings_text(s)])
}

/// A destination's settings, secrets and routes, compared across a reload (its
/// worker restarts when this changes); `None` when it is not enabled.
pub fn dest_fingerprint(cfg: &Config, name: &str) -> Option<u64> {
    fn sorted<T: std::fmt::Debug>(m: &std::collections::HashMap<String, T>) -> String {
        format!("{:?}", m.iter().collect::<BTreeMap<_, _>>())
    }
    // Secrets serialise as `***`: they are hashed on their own.
    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    match name {
        "ovopark" => cfg
            .ovopark
            .as_ref()
            .map(|o| hash_str(&[&json(o), o.secret.expose(), &sorted(&cfg.routes.ovopark)])),
        "wdt" => cfg.wdt.as_ref().map(|w| {
            hash_str(&[
                &json(w),
                w.secret.expose(),
                w.salt.expose(),
                &sorted(&cfg.routes.wdt),
            ])
        }),
        _ => None,
    }
}

/// The settings the running daemon cannot change (its queue file, the outbox's
/// settings every connection was opened with, the metrics endpoint and the box's
/// id), named by key when `new` changes them: they take effect at the next restart.
pub fn fixed_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.agent.state_dir != new.agent.state_dir {
        out.push("agent.state_dir".to_string());
    }
    if old.agent.box_id != new.agent.box_id {
        out.push("agent.box_id".to_string());
    }
    if format!("{:?}", old.outbox) != format!("{:?}", new.outbox) {
        out.push("[outbox]".to_string());
    }
    if format!("{:?}", old.metrics) != format!("{:?}", new.metrics) {
        out.push("[metrics]".to_string());
    }
    // The pull runs with the settings read at start: its own thread, its trust.
    if old.agent.pull != new.agent.pull {
        out.push("agent.config_url, config_key, config_poll or config_ca_file".to_string());
    }
    out
}

/// `new` with the settings of [`fixed_changes`] put back to the running ones.
pub fn keep_fixed(old: &Config, mut new: Config) -> Config {
    new.agent.state_dir = old.agent.state_dir.clone();
    new.agent.box_id = old.agent.box_id.clone();
    new.agent.box_id_from = old.agent.box_id_from;
    new.outbox = old.outbox.clone();
    new.metrics = old.metrics.clone();
    new.agent.pull = old.agent.pull.clone();
    new
}

/// The human lines `status` prints about the running configuration: nothing while
/// it is the one read at start, else when it was reloaded, and a refusal loudly.
/// `age` renders seconds as `status` does.
pub fn status_lines(r: &Record, now: i64, age: impl Fn(i64) -> String) -> Vec<String> {
    let ago = |t: i64| age((now - t).max(0));
    let mut out = Vec::new();
    if r.seq == 0 {
        return out;
    }
    if r.ok {
        out.push(format!(
            "config: reloaded {} ago from {}",
            ago(r.at),
            r.config.display()
        ));
    } else {
        out.push(format!(
            "config: RELOAD REFUSED {} ago; the agent runs on the configuration loaded {} ago. {}",
            ago(r.at),
            ago(r.running_since),
            r.message.replace('\n', "\n    ")
        ));
    }
    for k in &r.needs_restart {
        out.push(format!(
            "  {k} changed in the file: needs a restart (the running value stays)"
        ));
    }
    out
}

/// `tillrelay reload`: SIGHUP to the running agent, then its answer (the record it
/// writes after each reload). The file is also checked here, by check-config's
/// code: an invalid one fails with its messages (exit 3) once the agent, signalled
/// all the same so its log, status and metrics show the refusal, has answered.
pub fn command(path: &Path) -> Result<(), CliError> {
    let checked = Config::load(path);
    let state_dir = match &checked {
        Ok(cfg) => cfg.agent.state_dir.clone(),
        Err(_) => match state_dir_of(path) {
            Some(d) => d,
            None => return checked.map(|_| ()).map_err(CliError::from),
        },
    };
    let pid_file = state_dir.join(crate::pidfile::FILE);
    let pid = match crate::pidfile::holder(&pid_file) {
        Ok(crate::pidfile::Holder::Running(pid)) => pid as u32,
        found => {
            checked?;
            let why = match found {
                Ok(crate::pidfile::Holder::Stale(_)) => {
                    "is left from an agent that is no longer running".to_string()
                }
                Err(e) => format!("cannot be read: {e}"),
                _ => "is missing".to_string(),
            };
            return Err(CliError::Other(anyhow::anyhow!(
                "no running agent ({} {why})",
                pid_file.display()
            )));
        }
    };
    let before = read_live(&state_dir).map_or(0, |rec| rec.seq);
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid as i32, libc::SIGHUP) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(CliError::Other(anyhow::anyhow!(
            "cannot signal the agent (pid {pid}): {e}"
        )));
    }
    let deadline = std::time::Instant::now() + ANSWER_WITHIN;
    let rec = loop {
        match read_live(&state_dir) {
            Some(rec) if rec.seq > before => break rec,
            _ if std::time::Instant::now() >= deadline => {
                return Err(CliError::Other(anyhow::anyhow!(
                    "the agent (pid {pid}) did not answer within {}s: see its log",
                    ANSWER_WITHIN.as_secs()
                )));
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    if !rec.ok {
        checked?;
        return Err(CliError::Other(anyhow::anyhow!(
            "the agent (pid {pid}) refused the reload, its configuration stays: {}",
            rec.message
        )));
    }
    println!(
        "the agent (pid {pid}) reloaded {}: {}",
        rec.config.display(),
        rec.message
    );
    for c in &rec.changes {
        println!("  {c}");
    }
    for k in &rec.needs_restart {
        println!("  {k} changed in the file: needs a restart (the running value stays)");
    }
    Ok(())
}

/// `status` with a config file that does not load: what the running agent made of
/// it, when it was asked to reload it (before the file's own error).
pub fn refused_note(path: &Path, age: impl Fn(i64) -> String) {
    let Some(dir) = state_dir_of(path) else {
        return;
    };
    if let Some(rec) = read_live(&dir) {
        for line in status_lines(&rec, crate::outbox::now(), age) {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        Config::from_toml(text, &p).unwrap_or_else(|e| panic!("{e}"))
    }

    const SOURCES: &str = r#"
[agent]
state_dir = "/tmp/s"
[[source]]
name = "lane1"
kind = "folder"
path = "/tmp/in1"
shop = "D001"
machine_id = "NVR01-CH03"
[[source]]
name = "lane2"
kind = "folder"
path = "/tmp/in2"
shop = "D001"
machine_id = "NVR01-CH04"
"#;

    fn with_dests(sources: &str) -> Config {
        cfg(&format!(
            "{sources}\n{}",
            crate::emulator::demo_agent_config("http://127.0.0.1:1")
        ))
    }

    #[test]
    fn a_source_changes_only_with_its_own_settings() {
        let a = with_dests(SOURCES);
        let b = with_dests(&SOURCES.replace("/tmp/in2", "/tmp/in3"));
        let fp = |c: &Config, n: &str| source_fingerprint(c, c.source(n).unwrap());
        assert_eq!(fp(&a, "lane1"), fp(&b, "lane1"));
        assert_ne!(fp(&a, "lane2"), fp(&b, "lane2"));
        assert_eq!(dest_fingerprint(&a, "wdt"), dest_fingerprint(&b, "wdt"));
        assert_eq!(
            dest_fingerprint(&a, "ovopark"),
            dest_fingerprint(&b, "ovopark")
        );
    }

    #[test]
    fn a_destination_changes_with_its_secret_its_url_and_its_routes() {
        let a = with_dests(SOURCES);
        let dests = crate::emulator::demo_agent_config("http://127.0.0.1:1");
        let fp = |c: &Config| dest_fingerprint(c, "wdt").unwrap();
        let secret = dests
            .lines()
            .find(|l| l.starts_with("secret") && l.contains(':'))
            .expect("the demo config has a Wangdiantong secret:salt")
            .to_string();
        let other = cfg(&format!(
            "{SOURCES}\n{}",
            dests.replace(&secret, "secret = \"another:one\"")
        ));
        assert_ne!(fp(&a), fp(&other), "a new secret");
        let moved = cfg(&format!(
            "{SOURCES}\n{}",
            crate::emulator::demo_agent_config("http://127.0.0.1:2")
        ));
        assert_ne!(fp(&a), fp(&moved), "a new url");
        let more = with_dests(&format!(
            "{SOURCES}[[source]]\nname = \"lane3\"\nkind = \"folder\"\npath = \"/tmp/in3\"\nshop = \"D001\"\nmachine_id = \"X\"\n"
        ));
        assert_ne!(fp(&a), fp(&more), "a new source's route");
        let none = cfg(SOURCES);
        assert_eq!(dest_fingerprint(&none, "wdt"), None);
    }

    #[test]
    fn settings_that_need_a_restart_are_named_and_kept() {
        let a = cfg(SOURCES);
        let b = cfg(&SOURCES.replace("/tmp/s", "/tmp/t"));
        assert_eq!(fixed_changes(&a, &b), vec!["agent.state_dir"]);
        let kept = keep_fixed(&a, b);
        assert_eq!(kept.agent.state_dir, PathBuf::from("/tmp/s"));
        assert!(fixed_changes(&a, &kept).is_empty());
    }

    #[test]
    fn the_state_dir_is_found_in_an_invalid_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "[agent]\nstate_dir = \"st\"\nbogus = 1\n").unwrap();
        assert_eq!(state_dir_of(&p), Some(dir.path().join("st")));
        std::fs::write(&p, "[agent\n").unwrap();
        assert_eq!(state_dir_of(&p), None);
    }
}
