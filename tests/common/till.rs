//! A till in a temp dir: an inbox (the watched export folder), a state dir and a config
//! made from the shipped example config (so its CSV mapping and templates are what is
//! tested), the agent started and stopped against it, files dropped the way a POS
//! drops them, and the CLI's views of what it stored and delivered.

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::agent::{self, Agent};
use super::{fixture, poll};

/// The order numbers of the shared export fixtures.
pub const FIXTURE_ORDERS: [&str; 4] = ["S0003391", "S0003392", "W20261122-0001", "W20261122-0002"];

/// Where a test's box keeps things.
pub struct Layout {
    pub state: PathBuf,
    pub inbox: PathBuf,
    pub config: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        let l = Layout {
            state: dir.join("state"),
            inbox: dir.join("inbox"),
            config: dir.join("tillrelay.toml"),
        };
        fs::create_dir_all(&l.inbox).unwrap();
        l
    }

    pub fn done(&self) -> PathBuf {
        self.inbox.join("done")
    }

    /// Writes `name` beside the folder and renames it in, as a POS should.
    pub fn drop_file(&self, name: &str, bytes: &[u8]) {
        let tmp = self.inbox.parent().unwrap().join(format!(".{name}.tmp"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.inbox.join(name)).unwrap();
    }

    /// Names of the regular files directly in `dir`.
    pub fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// The example config (config/tillrelay.toml) for this box: its folder lane on
/// `inbox` with a short `settle` time, the market serial lane on the given pty devices
/// (`(pos, printer)`) when asked, and then `tail` (typically the destinations from
/// `demo_agent_config`). What is tested is the shipped config, not a test-only one.
pub fn example_config(
    l: &Layout,
    settle: &str,
    serial: Option<(&str, &str)>,
    tail: &str,
) -> String {
    let example =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tillrelay.toml"))
            .unwrap();
    let mut text = String::new();
    let mut in_market = false;
    for line in example.lines() {
        if line.starts_with("name = ") {
            in_market = line == "name = \"market\"";
        }
        let l = if line.starts_with("state_dir =") {
            format!("state_dir = {:?}", l.state)
        } else if line.starts_with("path =") {
            format!("path = {:?}", l.inbox)
        } else if line.starts_with("settle =") {
            format!("settle = {settle:?}")
        } else if let (true, Some((pos, printer))) = (in_market, serial) {
            if line.starts_with("enabled =") {
                "enabled = true".into()
            } else if line.starts_with("device =") {
                format!("device = {pos:?}")
            } else if line.starts_with("passthrough =") {
                format!("passthrough = {printer:?}")
            } else if line.starts_with("flow_control =") {
                // a pty has no RTS/CTS lines
                "flow_control = \"none\"".into()
            } else {
                line.to_string()
            }
        } else {
            line.to_string()
        };
        text.push_str(&l);
        text.push('\n');
    }
    text.push('\n');
    text.push_str(tail);
    text
}

/// A JSON export file of the folder lane: `n` orders numbered `{prefix}-{i}`, each
/// with two lines, in the shape docs/ and the fixtures use.
pub fn orders_file(prefix: &str, n: usize) -> Vec<u8> {
    let orders: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "order_no": format!("{prefix}-{i:02}"),
                "order_time": "2026-11-22 09:15:02",
                "cashier": "张三",
                "payment": "cash",
                "total": "9.00",
                "paid": "9.00",
                "lines": [
                    {"code": "6901234567892", "name": "可口可乐500ml", "qty": "2", "price": "3.50", "amount": "7.00"},
                    {"code": format!("69{:011}", i), "name": "农夫山泉550ml", "qty": "1", "price": "2.00", "amount": "2.00"}
                ]
            })
        })
        .collect();
    serde_json::to_vec_pretty(&orders).unwrap()
}

/// A till: a temp dir laid out as [`Layout`] with a config written into it, and the
/// agent runs against it (each run logging to its own `agent-N.log`).
pub struct Till {
    pub dir: tempfile::TempDir,
    pub layout: Layout,
    pub config: PathBuf,
    /// The agent [`Till::start`] started and the till stops.
    agent: Option<Agent>,
    runs: Cell<usize>,
}

impl Till {
    /// The example config (settle 300 ms) followed by `tail` (e.g. the destinations
    /// of [`super::emu::Emu::dest_config`], or more sections).
    pub fn new(tail: &str) -> Till {
        Till::with_config(|l| example_config(l, "300ms", None, &format!("{tail}\n")))
    }

    /// A till whose config is `make(layout)`.
    pub fn with_config(make: impl FnOnce(&Layout) -> String) -> Till {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        fs::write(&layout.config, make(&layout)).unwrap();
        Till {
            config: layout.config.clone(),
            dir,
            layout,
            agent: None,
            runs: Cell::new(0),
        }
    }

    pub fn inbox(&self) -> PathBuf {
        self.layout.inbox.clone()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.layout.state.clone()
    }

    /// Rewrites the config (e.g. to fix a secret before a restart).
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = fs::read_to_string(&self.config).unwrap();
        fs::write(&self.config, f(text)).unwrap();
    }

    /// Starts an agent on this till with `env` added, logging to a fresh
    /// `agent-N.log`; the caller owns it.
    pub fn spawn(&self, env: &[(&str, &str)]) -> Agent {
        self.runs.set(self.runs.get() + 1);
        Agent::start(&self.config, &self.log_path(self.runs.get()), env)
    }

    /// Starts the till's own agent and waits until it is ready (its pid file).
    pub fn start(&mut self) {
        self.start_env(&[]);
    }

    pub fn start_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.agent.is_none(), "the agent already runs");
        let mut agent = self.spawn(env);
        agent.wait_ready(&self.layout.state, Duration::from_secs(20));
        self.agent = Some(agent);
    }

    /// Stops the till's own agent with SIGTERM; asserts a clean exit.
    pub fn stop(&mut self) {
        let mut agent = self.agent.take().expect("the agent runs");
        agent.stop_clean();
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("agent-{run}.log"))
    }

    /// Everything every run of the agent wrote to stderr.
    pub fn log(&self) -> String {
        (1..=self.runs.get())
            .map(|r| fs::read_to_string(self.log_path(r)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs a command of the CLI against this till's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        agent::cli(&self.config, args)
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
        agent::status_entry(&self.config, "destinations", name)
    }

    /// (pending, delivered, rejected) of a destination.
    pub fn counts(&self, name: &str) -> (i64, i64, i64) {
        let d = self.dest(name);
        let n = |k: &str| d[k].as_i64().unwrap_or(-1);
        (n("pending"), n("delivered"), n("rejected"))
    }

    /// Stored orders (newest first) with their deliveries, or none while there is no
    /// database yet.
    pub fn orders(&self) -> Vec<Value> {
        agent::stored_orders(&self.config)
    }

    /// Stored orders whose delivery is in `state`, as `orders --state` narrows.
    pub fn orders_in(&self, state: &str) -> Vec<Value> {
        agent::orders_where(&self.config, &["--state", state])
    }

    /// Names of everything in the inbox's `sub` folder ("" for the inbox itself).
    pub fn entries(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.inbox().join(sub))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Drops a file the way most POS do: written beside the folder, renamed in.
    pub fn drop_file(&self, name: &str, bytes: &[u8]) {
        self.layout.drop_file(name, bytes);
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
        let mut last_flush = Instant::now();
        poll(timeout, || {
            if dests.iter().all(|d| self.counts(d) == (0, n, 0)) {
                return true;
            }
            if flush && last_flush.elapsed() >= Duration::from_secs(1) {
                self.flush();
                last_flush = Instant::now();
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

/// The example config with its market lane turned into a source of `kind` with
/// `keys` in place of the serial keys, enabled, with a short quiet time; `tail`
/// appended (destinations): the lane every network and device test drives.
pub fn market_as(kind: &str, keys: &str, tail: &str) -> Till {
    let (kind, keys, tail) = (kind.to_string(), keys.to_string(), tail.to_string());
    Till::with_config(move |l| {
        let text = example_config(l, "300ms", None, &tail);
        let mut out = String::new();
        let mut in_market = false;
        for line in text.lines() {
            if line.starts_with("name = ") {
                in_market = line == "name = \"market\"";
            }
            let serial_key = [
                "device =",
                "baud =",
                "data_bits =",
                "parity =",
                "stop_bits =",
                "flow_control =",
                "passthrough =",
            ]
            .iter()
            .any(|k| line.starts_with(k));
            if in_market && serial_key {
                continue;
            }
            if in_market && line == "kind = \"serial\"" {
                out.push_str(&format!("kind = \"{kind}\"\n{keys}\n"));
                continue;
            }
            if in_market && line.starts_with("enabled =") {
                out.push_str("enabled = true\n");
                continue;
            }
            if in_market && line.starts_with("idle_timeout_ms = 5000") {
                out.push_str("idle_timeout_ms = 500\n");
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    })
}
