//! The whole product as processes: the cloud emulators (`tillrelay emulate`) and an
//! agent (`tillrelay run`) in a temp dir with the example config, driven through its
//! folder and its command line, as an integrator would.
//!
//! Output of the processes goes to files, not pipes: an agent that logs a lot during a
//! fault must never block on a full pipe nobody reads.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{fixture, http, tillrelay, wait_until};

/// Like [`wait_until`], for conditions that run a command (`status`, `orders`): polls
/// every 200 ms, so a few tests in parallel do not saturate a small machine.
pub fn poll(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    wait_until(timeout, || {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(175));
        false
    })
}

/// Sends `sig` to `pid` (a process this test started).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Stops a child: SIGTERM, then SIGKILL if it has not exited within 10 s.
fn stop_child(child: &mut Child) -> Option<ExitStatus> {
    signal(child.id(), libc::SIGTERM);
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// `tillrelay emulate` on a free loopback port.
pub struct Emu {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Emu {
    /// Starts the emulators with the default (demo) tenant on `127.0.0.1:0` and reads
    /// the bound address from the first line of its output.
    pub fn start() -> Emu {
        let mut child = tillrelay()
            .args(["emulate", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tillrelay emulate");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        // "Ovopark emulator:      POST http://127.0.0.1:PORT/cloud.api"
        let base = first
            .split_whitespace()
            .find_map(|w| w.strip_suffix("/cloud.api"))
            .unwrap_or_else(|| panic!("no address in the emulator's first line: {first:?}"))
            .to_string();
        assert!(
            base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"),
            "{base}"
        );
        // The rest (the agent config it prints) is read and dropped, so the emulator
        // never blocks on stdout.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Emu { child, base }
    }

    pub fn get(&self, path: &str) -> Value {
        super::get_json(&self.base, path)
    }

    pub fn post(&self, path: &str, body: Value) {
        super::post_json(&self.base, path, body)
    }

    /// Injects a fault (`POST /_emu/fault`).
    pub fn fault(&self, spec: Value) {
        self.post("/_emu/fault", spec);
    }

    pub fn clear_faults(&self) {
        let r = http()
            .delete(format!("{}/_emu/fault", self.base))
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    /// Runs a cloud's clock `skew_secs` off.
    pub fn skew(&self, target: &str, skew_secs: i64) {
        self.post(
            "/_emu/clock",
            serde_json::json!({"target": target, "skew_secs": skew_secs}),
        );
    }

    pub fn stats(&self) -> Value {
        self.get("/_emu/stats")
    }

    /// How often `cloud` answered `answer` (a code, or `fault:<mode>`).
    pub fn answers(&self, cloud: &str, answer: &str) -> u64 {
        self.stats()[cloud]["answers"][answer].as_u64().unwrap_or(0)
    }

    /// Ovopark's accepted orders by orderNo.
    pub fn ovopark(&self) -> BTreeMap<String, Value> {
        self.get("/_emu/ovopark/orders")
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["order_no"].as_str().unwrap().to_string(), o.clone()))
            .collect()
    }

    /// Wangdiantong's raw trades by tid.
    pub fn wdt(&self) -> BTreeMap<String, Value> {
        self.get("/_emu/wdt/trades")
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["tid"].as_str().unwrap().to_string(), t.clone()))
            .collect()
    }

    /// Order number → (accepted, duplicates) on Ovopark.
    pub fn ovopark_counts(&self) -> BTreeMap<String, (u64, u64)> {
        self.ovopark()
            .into_iter()
            .map(|(k, o)| {
                let n = |f: &str| o[f].as_u64().unwrap();
                (k, (n("accepted"), n("duplicates")))
            })
            .collect()
    }

    /// tid → (pushes, updates) on Wangdiantong.
    pub fn wdt_counts(&self) -> BTreeMap<String, (u64, u64)> {
        self.wdt()
            .into_iter()
            .map(|(k, t)| {
                let n = |f: &str| t[f].as_u64().unwrap();
                (k, (n("pushes"), n("updates")))
            })
            .collect()
    }

    /// Asserts each of `orders` is held exactly once by both clouds as the clouds count
    /// it, and nothing else: Ovopark accepted it once (a resend is answered 208003 and
    /// counted as a duplicate), Wangdiantong created its tid once (a resend updates it).
    /// A resend happens legitimately when a request the cloud processed timed out on
    /// the agent's side (slow machines, qemu): at-least-once, deduplicated by the cloud.
    pub fn assert_exactly_once(&self, orders: &[&str]) {
        let want: BTreeMap<String, u64> = orders.iter().map(|o| (o.to_string(), 1)).collect();
        let ovo: BTreeMap<String, u64> = self
            .ovopark_counts()
            .into_iter()
            .map(|(k, (accepted, _))| (k, accepted))
            .collect();
        assert_eq!(ovo, want, "Ovopark accepted");
        let wdt: BTreeMap<String, u64> = self
            .wdt_counts()
            .into_iter()
            .map(|(k, (pushes, updates))| (k, pushes - updates))
            .collect();
        assert_eq!(wdt, want, "Wangdiantong created");
    }

    /// Stricter: each order reached each cloud in exactly one request (no resend at
    /// all). Holds when no request can time out after the cloud processed it.
    pub fn assert_sent_once(&self, orders: &[&str]) {
        let want = |v: (u64, u64)| -> BTreeMap<String, (u64, u64)> {
            orders.iter().map(|o| (o.to_string(), v)).collect()
        };
        assert_eq!(self.ovopark_counts(), want((1, 0)), "Ovopark");
        assert_eq!(self.wdt_counts(), want((1, 0)), "Wangdiantong");
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// The order numbers of the shared export fixtures.
pub const FIXTURE_ORDERS: [&str; 4] = ["S0003391", "S0003392", "W20261122-0001", "W20261122-0002"];

/// A till: a temp dir with an inbox, a state dir, and a config made of the example
/// config (so its CSV mapping is what is tested) plus destination sections.
pub struct Till {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    agent: Option<Child>,
    runs: usize,
}

impl Till {
    /// `destinations`: the `[ovopark]` / `[wdt]` TOML (see [`dest_config`]).
    pub fn new(destinations: &str) -> Till {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        fs::create_dir(&inbox).unwrap();
        let example =
            fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tillrelay.toml"))
                .unwrap();
        let mut text = String::new();
        for line in example.lines() {
            let l = if line.starts_with("state_dir =") {
                format!("state_dir = {:?}", dir.path().join("state"))
            } else if line.starts_with("path =") {
                format!("path = {inbox:?}")
            } else if line.starts_with("settle =") {
                "settle = \"300ms\"".to_string()
            } else {
                line.to_string()
            };
            text.push_str(&l);
            text.push('\n');
        }
        text.push('\n');
        text.push_str(destinations);
        let config = dir.path().join("tillrelay.toml");
        fs::write(&config, text).unwrap();
        Till {
            dir,
            config,
            agent: None,
            runs: 0,
        }
    }

    pub fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Rewrites the config (e.g. to fix a secret before a restart).
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = fs::read_to_string(&self.config).unwrap();
        fs::write(&self.config, f(text)).unwrap();
    }

    /// Starts `tillrelay run` (stderr to `agent-N.log`) and waits until it is ready
    /// (its pid file exists).
    pub fn start(&mut self) {
        self.start_env(&[]);
    }

    pub fn start_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.agent.is_none(), "the agent already runs");
        self.runs += 1;
        let log = fs::File::create(self.log_path(self.runs)).unwrap();
        let mut cmd = tillrelay();
        cmd.args(["run", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let pid = self.state_dir().join("tillrelay.pid");
        let ready = wait_until(Duration::from_secs(20), || {
            fs::read_to_string(&pid).is_ok_and(|p| p.trim() == child.id().to_string())
                || child.try_wait().unwrap().is_some()
        });
        assert!(
            ready && child.try_wait().unwrap().is_none(),
            "the agent did not start:\n{}",
            self.log()
        );
        self.agent = Some(child);
    }

    /// SIGTERM; asserts a clean exit.
    pub fn stop(&mut self) {
        let mut child = self.agent.take().expect("the agent runs");
        let status = stop_child(&mut child);
        assert!(
            status.is_some_and(|s| s.success()),
            "the agent did not stop cleanly ({status:?}):\n{}",
            self.log()
        );
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("agent-{run}.log"))
    }

    /// Everything every run of the agent wrote to stderr.
    pub fn log(&self) -> String {
        (1..=self.runs)
            .map(|r| fs::read_to_string(self.log_path(r)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs a command of the CLI against this till's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        tillrelay()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// A command's stdout as JSON; asserts success.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// One destination's line of `status --json`, or Null before it has one.
    pub fn dest(&self, name: &str) -> Value {
        let out = self.cli(&["status", "--json"]);
        if !out.status.success() {
            return Value::Null;
        }
        let st: Value = serde_json::from_slice(&out.stdout).unwrap();
        st["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// (pending, delivered, rejected) of a destination.
    pub fn counts(&self, name: &str) -> (i64, i64, i64) {
        let d = self.dest(name);
        let n = |k: &str| d[k].as_i64().unwrap_or(-1);
        (n("pending"), n("delivered"), n("rejected"))
    }

    /// Stored orders (newest first) with their deliveries; `state` narrows as the CLI does.
    pub fn orders(&self, state: Option<&str>) -> Vec<Value> {
        let mut args = vec!["orders", "--json", "--limit", "1000"];
        if let Some(s) = state {
            args.extend(["--state", s]);
        }
        let out = self.cli(&args);
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Drops a file the way most POS do: written beside the folder, renamed in.
    pub fn drop_file(&self, name: &str, bytes: &[u8]) {
        let tmp = self.dir.path().join(format!("{name}.staging"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.inbox().join(name)).unwrap();
    }

    /// Drops the shared export fixtures (2 orders in JSON, 2 in GBK CSV).
    pub fn drop_fixtures(&self) {
        for f in ["orders-20261122-1005.json", "sales_20261122_1122.csv"] {
            self.drop_file(f, &fs::read(fixture(&format!("exports/{f}"))).unwrap());
        }
    }

    /// `tillrelay flush`; whether it reached a running agent.
    pub fn flush(&self) -> bool {
        let out = self.cli(&["flush"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("asked the agent")
    }

    /// Waits until every destination in `dests` has `n` delivered and nothing pending
    /// or rejected; with `flush`, sends `tillrelay flush` every second meanwhile (so
    /// the agent's backoff does not make the test wait).
    pub fn wait_delivered(&self, dests: &[&str], n: i64, timeout: Duration, flush: bool) -> bool {
        let mut last_flush = std::time::Instant::now();
        poll(timeout, || {
            if dests.iter().all(|d| self.counts(d) == (0, n, 0)) {
                return true;
            }
            if flush && last_flush.elapsed() >= Duration::from_secs(1) {
                self.flush();
                last_flush = std::time::Instant::now();
            }
            false
        })
    }

    /// A description for assertion messages: both destinations and the agent's log.
    pub fn explain(&self) -> String {
        format!(
            "ovopark {}\nwdt {}\nagent log:\n{}",
            self.dest("ovopark"),
            self.dest("wdt"),
            self.log()
        )
    }
}

impl Drop for Till {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            stop_child(&mut c);
        }
    }
}

/// The `[ovopark]`/`[wdt]` sections for the emulator's default tenant at `emu`, with
/// `ovo_extra` / `wdt_extra` keys added to each section.
pub fn dest_config(emu: &Emu, ovo_extra: &str, wdt_extra: &str) -> String {
    tillrelay::emulator::demo_agent_config(&emu.base)
        .replace("[ovopark]\n", &format!("[ovopark]\n{ovo_extra}\n"))
        .replace("[wdt]\n", &format!("[wdt]\n{wdt_extra}\n"))
}
