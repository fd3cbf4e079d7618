//! `tillrelay demo`: the whole product in one command, on loopback only. Starts both
//! cloud emulators in-process, runs the real agent (this same binary, `run`) in a temp
//! dir with the documented example configuration, drops the sample exports into its
//! folder, shows the orders flowing, and ends with what each cloud accepted.
//!
//! Invariants: nothing leaves 127.0.0.1; nothing outside the temp dir is written; the
//! temp dir is removed at the end; the sample files are built into the binary, so the
//! demo needs no checkout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::emulator::{EmuConfig, Emulator, demo_agent_config};
use crate::outbox::Outbox;

const EXAMPLE_CONFIG: &str = include_str!("../config/tillrelay.toml");
const SAMPLES: &[(&str, &[u8])] = &[
    (
        "orders-20261122-1005.json",
        include_bytes!("../examples/samples/orders-20261122-1005.json"),
    ),
    (
        "sales_20261122_1122.csv",
        include_bytes!("../examples/samples/sales_20261122_1122.csv"),
    ),
];

/// How long the demo waits for every order to reach both clouds.
const DEADLINE: Duration = Duration::from_secs(25);

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // SIGTERM first: the orderly stop is part of what is shown.
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let dir = TempDir(std::env::temp_dir().join(format!(
        "tillrelay-demo-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    )));
    let inbox = dir.0.join("inbox");
    std::fs::create_dir_all(&inbox).context("cannot create the demo's temp dir")?;

    let emu = Emulator::start("127.0.0.1:0", EmuConfig::default())
        .context("cannot start the emulators on 127.0.0.1")?;
    writeln!(
        out,
        "emulators: Ovopark {0}/cloud.api, Wangdiantong {0}/openapi",
        emu.base_url()
    )?;

    let config = dir.0.join("tillrelay.toml");
    std::fs::write(&config, agent_config(&dir.0, &inbox, &emu.base_url()))?;
    let log_path = dir.0.join("agent.log");
    let log = std::fs::File::create(&log_path)?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let agent = AgentProcess(
        Command::new(exe)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start the agent")?,
    );
    writeln!(
        out,
        "agent:     tillrelay run --config {}",
        config.display()
    )?;

    for (name, bytes) in SAMPLES {
        // Written beside the folder and renamed in, as a POS should.
        let tmp = dir.0.join(name);
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, inbox.join(name))?;
        writeln!(out, "dropped:   {name}")?;
    }

    let db = dir.0.join("state").join(crate::config::DB_FILE);
    let start = Instant::now();
    let mut last = String::new();
    let expected = 4;
    loop {
        let line = progress(&db).unwrap_or_else(|| "starting…".into());
        if line != last {
            writeln!(out, "  {:>5.1}s  {line}", start.elapsed().as_secs_f64())?;
            last = line;
        }
        if delivered_everywhere(&db) == Some(expected) {
            break;
        }
        if start.elapsed() > DEADLINE {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "not every order reached both clouds within {DEADLINE:?}; the agent's log:\n{log}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agent);

    writeln!(out, "\nOvopark accepted (order → video of camera):")?;
    let ovo = fetch(&emu.base_url(), "/_emu/ovopark/orders")?;
    for o in ovo.as_array().into_iter().flatten() {
        let ipos = &o["ipos"];
        writeln!(
            out,
            "  {:<16} {:<10} {:>3} goods  machine {}  video {} → {}",
            o["order_no"].as_str().unwrap_or(""),
            ipos["orderType"].as_str().unwrap_or(""),
            ipos["goods"].as_array().map_or(0, |g| g.len()),
            ipos["machineId"].as_str().unwrap_or(""),
            ipos["startTime"].as_str().unwrap_or(""),
            ipos["endTime"].as_str().unwrap_or("")
        )?;
    }
    writeln!(out, "\nWangdiantong accepted (raw trades):")?;
    let wdt = fetch(&emu.base_url(), "/_emu/wdt/trades")?;
    for t in wdt.as_array().into_iter().flatten() {
        let trade = &t["trade"];
        writeln!(
            out,
            "  {:<16} shop {:<6} {:>2} line(s)  receivable {:>8}  pushes {}",
            t["tid"].as_str().unwrap_or(""),
            t["shop_no"].as_str().unwrap_or(""),
            t["orders"].as_array().map_or(0, |g| g.len()),
            value_text(&trade["receivable"]),
            t["pushes"]
        )?;
    }
    writeln!(
        out,
        "\n{expected} orders captured and delivered to both clouds in {:.1}s.",
        start.elapsed().as_secs_f64()
    )?;
    Ok(())
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The example configuration with demo paths, short settle, and the emulators'
/// tenant as the destinations.
fn agent_config(dir: &Path, inbox: &Path, base_url: &str) -> String {
    let mut text = String::new();
    let mut skip_dest = false;
    for line in EXAMPLE_CONFIG.lines() {
        // The example's own destination sections (if any) are replaced by the demo's.
        if line.starts_with("[ovopark]") || line.starts_with("[wdt]") {
            skip_dest = true;
        } else if line.starts_with('[') {
            skip_dest = false;
        }
        if skip_dest {
            continue;
        }
        let l = if line.starts_with("state_dir =") {
            format!("state_dir = {:?}", dir.join("state"))
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
    text.push_str(&demo_agent_config(base_url));
    text
}

fn progress(db: &Path) -> Option<String> {
    let ob = Outbox::open_read_only(db).ok()?;
    let st = ob.status(crate::outbox::now()).ok()?;
    let captured: i64 = st.sources.iter().map(|s| s.orders).sum();
    let dests: Vec<String> = st
        .destinations
        .iter()
        .map(|d| {
            let mut s = format!(
                "{} {}/{}",
                d.name,
                d.delivered,
                d.pending + d.delivered + d.rejected
            );
            if d.rejected > 0 {
                s.push_str(&format!(" ({} rejected)", d.rejected));
            }
            s
        })
        .collect();
    Some(format!(
        "captured {captured} order(s); delivered: {}",
        if dests.is_empty() {
            "-".to_string()
        } else {
            dests.join(", ")
        }
    ))
}

/// The number of orders delivered to every destination, once both have rows.
fn delivered_everywhere(db: &Path) -> Option<i64> {
    let ob = Outbox::open_read_only(db).ok()?;
    let st = ob.status(crate::outbox::now()).ok()?;
    if st.destinations.len() < 2 {
        return None;
    }
    st.destinations.iter().map(|d| d.delivered).min()
}

fn fetch(base: &str, path: &str) -> anyhow::Result<Value> {
    let body = ureq::get(&format!("{base}{path}"))
        .call()
        .with_context(|| format!("cannot list {path} from the emulator"))?
        .into_body()
        .read_to_string()?;
    Ok(serde_json::from_str(&body)?)
}
