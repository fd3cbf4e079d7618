//! `tillrelay run` as a child process, and the CLI run against a config.
//!
//! The agent's stderr goes to a file (appended), never to a pipe: a pipe nobody reads
//! fills up and blocks the agent's logging, stalling it in the middle of a fault. The
//! file stays readable for assertions and failure messages ([`Agent::log_text`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{signal, tillrelay, wait_until};

/// `tillrelay run` as a child; SIGKILLed and reaped on drop, so a failing test leaves
/// no agent behind.
pub struct Agent {
    child: Option<Child>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Agent {
    /// Starts `tillrelay run --config config` with `env` added, stderr appended to
    /// `log`. Does not wait for anything: see [`Agent::wait_ready`].
    pub fn start(config: &Path, log: &Path, env: &[(&str, &str)]) -> Agent {
        Agent::start_cmd(config, log, |cmd| {
            for (k, v) in env {
                cmd.env(k, v);
            }
        })
    }

    /// Like [`Agent::start`], with `adjust` applied to the command (e.g. to remove
    /// variables from the environment it inherits).
    pub fn start_cmd(config: &Path, log: &Path, adjust: impl FnOnce(&mut Command)) -> Agent {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = tillrelay();
        cmd.args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        adjust(&mut cmd);
        Agent {
            child: Some(cmd.spawn().unwrap()),
            log: log.to_path_buf(),
        }
    }

    /// Waits until the agent is ready (its pid file in `state_dir` names it) and
    /// asserts it is, with its log otherwise.
    pub fn wait_ready(&mut self, state_dir: &Path, timeout: Duration) {
        let timeout = if super::emulated() {
            timeout * 4
        } else {
            timeout
        };
        let pid = self.pid().to_string();
        let file = state_dir.join("tillrelay.pid");
        let ready = wait_until(timeout, || {
            fs::read_to_string(&file).is_ok_and(|p| p.trim() == pid) || !self.alive()
        });
        assert!(
            ready && self.alive(),
            "the agent did not start:\n{}",
            self.log_text()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process is still running (false once it exited by itself).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGKILL, as a power cut or the OOM killer would, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and the exit status (the agent must stop within 15 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_within(Duration::from_secs(15))
    }

    /// SIGTERM and the exit status; the agent must stop within `patience`.
    pub fn stop_within(&mut self, patience: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("agent already stopped");
        signal(c.id(), libc::SIGTERM);
        let deadline = Instant::now() + patience;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "the agent did not stop within {patience:?} of SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM; asserts a clean exit and returns the log.
    pub fn stop_clean(&mut self) -> String {
        let status = self.stop();
        let log = self.log_text();
        assert!(status.success(), "exit {status:?}:\n{log}");
        log
    }

    /// Waits for the agent to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the log comes to contain `text` within `timeout`.
    pub fn wait_log(&self, timeout: Duration, text: &str) -> bool {
        wait_until(timeout, || self.log_text().contains(text))
    }

    /// Everything the agent wrote to its log file so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs a command of the CLI against `config`.
pub fn cli(config: &Path, args: &[&str]) -> Output {
    tillrelay()
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A `--json` command's output; `None` when it failed (no database yet).
pub fn cli_json(config: &Path, args: &[&str]) -> Option<Value> {
    let out = cli(config, args);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Every stored order (`orders --json`, newest first), or none while there is no
/// database.
pub fn stored_orders(config: &Path) -> Vec<Value> {
    orders_where(config, &[])
}

/// Like [`stored_orders`], narrowed by `orders` options (`--state`, `--source`).
pub fn orders_where(config: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["orders", "--json", "--limit", "10000000"];
    args.extend_from_slice(extra);
    cli_json(config, &args)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// One entry of `status --json`'s `sources` or `destinations` list by name, or Null.
pub fn status_entry(config: &Path, list: &str, name: &str) -> Value {
    cli_json(config, &["status", "--json"])
        .and_then(|st| {
            st[list]
                .as_array()?
                .iter()
                .find(|d| d["name"] == name)
                .cloned()
        })
        .unwrap_or(Value::Null)
}
