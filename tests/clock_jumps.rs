//! The box's clock jumps back and forward by hours while a backlog waits and while it
//! drains: every order still reaches both clouds, once, without waiting for the clock
//! to catch up.
//!
//! Boxes boot without an RTC; NTP then moves the clock by hours, either way. The agent
//! runs under libfaketime (`LD_PRELOAD`, Debian's `faketime` package) with its offset
//! read from a file the test rewrites (`FAKETIME_TIMESTAMP_FILE`, re-read every
//! second); the monotonic clock is left alone, as a real clock change leaves it. The
//! emulators run in the test process on the real clock, as the clouds do. Nothing
//! outside the agent process sees the fake time.
//!
//! Each phase proves the jump really happened inside the agent before relying on it:
//! the agent's log lines carry its wall-clock time, and a probe (a file the folder lane
//! rejects, so no order and no upload is involved) makes it log a line on demand.
//!
//! - Phase 1, a jump back of 3 h while a backlog waits behind a cloud outage: every
//!   pending row was scheduled by the old clock and now looks 3 h ahead. The outbox
//!   treats rows over 6 h ahead as due (`outbox::MAX_SCHEDULE_AHEAD`); 3 h is under
//!   that, so before the engine learned to notice jumps this backlog sat for 3 h.
//! - Phase 2, forward 8 h (a new backlog is written at that time), then back 7 h
//!   while it waits: rows 7 h ahead.
//! - Phase 3, the clock flipping between -3 h and +4 h every few hundred ms while a
//!   backlog drains.
//!
//! Exactly once: Ovopark accepted each order number once, Wangdiantong has every tid,
//! and nothing else arrived. The clouds refusing the agent's timestamps (Ovopark code
//! 16, WDT status 7) and the agent following the servers' clocks is part of the run.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::agent::{Agent, stored_orders};
use common::emu::Emu;
use common::expect_within;
use common::orders::delivery_state;
use common::till::{Layout, example_config, orders_file};
use serde_json::{Value, json};
use tillrelay::emulator::{EmuConfig, demo_agent_config};

const WAIT: Duration = Duration::from_secs(120);

fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The agent's clock offset as its log shows it: the time on the log line that
/// mentions `marker`, minus the real time now (the line is at most seconds old).
fn logged_offset(log: &Path, marker: &str) -> Option<i64> {
    let text = fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| l.contains(marker))?;
    let stamp = line.split_whitespace().next()?;
    let t = chrono::DateTime::parse_from_rfc3339(stamp).ok()?;
    Some(t.timestamp() - real_now())
}

struct Clock {
    file: PathBuf,
    log: PathBuf,
    probes: usize,
}

impl Clock {
    /// Sets the agent's clock to real time + `offset` (libfaketime syntax: "+0",
    /// "-3h", "+5h") and waits until the agent's own log shows it, by probes.
    fn set(&mut self, l: &Layout, offset: &str, within: std::ops::RangeInclusive<i64>) {
        fs::write(&self.file, format!("{offset}\n")).unwrap();
        let mut seen = None;
        let ok = common::wait_until(Duration::from_secs(30), || {
            self.probes += 1;
            let name = format!("clock-probe-{:03}.json", self.probes);
            l.drop_file(&name, b"this is not an export");
            let got = common::wait_until(Duration::from_secs(3), || {
                logged_offset(&self.log, &name).is_some()
            });
            seen = logged_offset(&self.log, &name);
            let moved = got && seen.is_some_and(|s| within.contains(&s));
            if !moved {
                // libfaketime re-reads the file every second
                std::thread::sleep(Duration::from_millis(400));
            }
            moved
        });
        assert!(
            ok,
            "the agent's clock did not move to {offset} (its log shows an offset of {seen:?} s)"
        );
    }
}

/// Flips the agent's clock between offsets on a thread until dropped.
struct Flipper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Flipper {
    fn start(file: PathBuf, offsets: &'static [&'static str]) -> Flipper {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut flips = 0;
            while !s.load(Ordering::Relaxed) {
                fs::write(&file, format!("{}\n", offsets[flips % offsets.len()])).unwrap();
                flips += 1;
                std::thread::sleep(Duration::from_millis(300 + fastrand::u64(0..500)));
            }
            flips
        });
        Flipper {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Flipper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn dest(l: &Layout, name: &str) -> Value {
    common::agent::status_entry(&l.config, "destinations", name)
}

/// Waits until the `n` orders are delivered everywhere, failing with `what`, the
/// Ovopark destination's status and the agent's last log lines.
fn expect_drained(l: &Layout, n: usize, agent: &Agent, what: &str) {
    expect_within(
        WAIT,
        || delivered_everywhere(l, n),
        || {
            format!(
                "{what}: {}\n{}",
                dest(l, "ovopark"),
                common::tail(&agent.log_text(), 30)
            )
        },
    );
}

fn delivered_everywhere(l: &Layout, n: usize) -> bool {
    let orders = stored_orders(&l.config);
    orders.len() == n
        && orders.iter().all(|o| {
            delivery_state(o, "ovopark") == Some("delivered")
                && delivery_state(o, "wdt") == Some("delivered")
        })
}

/// Drops `files` export files of 5 orders each, numbered from `first`; their order
/// numbers are added to `all`.
fn drop_orders(l: &Layout, tag: &str, first: usize, files: usize, all: &mut BTreeSet<String>) {
    for f in first..first + files {
        let prefix = format!("{tag}{f:03}");
        l.drop_file(&format!("{prefix}.json"), &orders_file(&prefix, 5));
        for i in 0..5 {
            all.insert(format!("{prefix}-{i:02}"));
        }
    }
}

/// A backlog behind an outage: both clouds fail every request until the faults are
/// cleared, and the test waits until both destinations have tried and failed.
fn backlog_behind_outage(l: &Layout, n: usize, agent: &Agent) {
    expect_within(
        WAIT,
        || {
            stored_orders(&l.config).len() == n
                && ["ovopark", "wdt"].iter().all(|d| {
                    let d = dest(l, d);
                    d["pending"].as_u64() == Some(n as u64 - d["delivered"].as_u64().unwrap_or(0))
                        && d["last_error"].as_str().is_some_and(|e| e.contains("500"))
                })
        },
        || format!("backlog of {n}: {}", agent.log_text()),
    );
}

#[test]
fn backlogs_drain_exactly_once_while_the_clock_jumps_by_hours() {
    let lib = common::libfaketime();
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let log = dir.path().join("agent.log");
    let time_file = dir.path().join("faketime");
    fs::write(&time_file, "+0\n").unwrap();
    let tail = demo_agent_config(&emu.base())
        .replace("[ovopark]\n", "[ovopark]\ntimeout_secs = 5\n")
        .replace("[wdt]\n", "[wdt]\ntimeout_secs = 5\n");
    fs::write(&l.config, example_config(&l, "200ms", None, &tail)).unwrap();
    let lib_s = lib.to_string_lossy().into_owned();
    let time_s = time_file.to_string_lossy().into_owned();
    let env = [
        ("LD_PRELOAD", lib_s.as_str()),
        ("FAKETIME_TIMESTAMP_FILE", time_s.as_str()),
        ("FAKETIME_CACHE_DURATION", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let mut clock = Clock {
        file: time_file.clone(),
        log: log.clone(),
        probes: 0,
    };
    let outage = || {
        emu.fault(json!({"target": "both", "mode": "http500", "count": 1_000_000}));
    };
    let mut all = BTreeSet::new();
    let agent = Agent::start(&l.config, &log, &env);

    // Phase 1: a backlog waits behind an outage; the clock jumps back 3 h; the
    // outage ends. Nothing else happens: no new order, no flush.
    outage();
    drop_orders(&l, "P1-", 0, 30, &mut all);
    backlog_behind_outage(&l, all.len(), &agent);
    clock.set(&l, "-3h", -3 * 3600 - 120..=-3 * 3600 + 120);
    emu.clear_faults();
    expect_drained(
        &l,
        all.len(),
        &agent,
        "phase 1: the backlog did not drain after the clock jumped back 3 h",
    );

    // Phase 2: forward 8 h (to real + 5 h), a new backlog behind an outage, then back
    // 7 h (to real - 2 h): its rows look 7 h ahead.
    clock.set(&l, "+5h", 5 * 3600 - 120..=5 * 3600 + 120);
    outage();
    drop_orders(&l, "P2-", 0, 20, &mut all);
    backlog_behind_outage(&l, all.len(), &agent);
    clock.set(&l, "-2h", -2 * 3600 - 120..=-2 * 3600 + 120);
    emu.clear_faults();
    expect_drained(&l, all.len(), &agent, "phase 2");

    // Phase 3: a backlog drains while the clock keeps jumping by hours.
    outage();
    drop_orders(&l, "P3-", 0, 30, &mut all);
    backlog_behind_outage(&l, all.len(), &agent);
    let flipper = Flipper::start(time_file.clone(), &["-3h", "+4h", "+0", "-1h", "+2h"]);
    emu.clear_faults();
    expect_within(
        WAIT,
        || delivered_everywhere(&l, all.len()),
        || format!("phase 3: {}", common::tail(&agent.log_text(), 30)),
    );
    let flips = flipper.stop();
    assert!(
        flips >= 2,
        "the clock flipped {flips} times during the drain"
    );
    drop(agent);

    // Exactly once, and nothing else.
    let ovo = emu.ovopark_orders();
    let ovo_nos: BTreeSet<String> = ovo
        .iter()
        .map(|o| o["order_no"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ovo_nos, all, "Ovopark has exactly the captured orders");
    assert_eq!(ovo.len(), all.len());
    for o in &ovo {
        assert_eq!(o["accepted"], 1, "{o}");
    }
    let tids: BTreeSet<String> = emu
        .wdt_trades()
        .iter()
        .map(|t| t["tid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tids, all, "Wangdiantong has exactly the captured orders");
    // The clouds did see the agent's clock jump (and the agent followed theirs).
    let stats = emu.get("/_emu/stats");
    let answers = |cloud: &str, code: &str| stats[cloud]["answers"][code].as_u64().unwrap_or(0);
    assert!(
        answers("ovopark", "16") >= 2,
        "Ovopark refused stale timestamps after the jumps: {stats}"
    );
    assert!(
        answers("wdt", "7") >= 1,
        "Wangdiantong refused stale timestamps after the jumps: {stats}"
    );
    let log_text = fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("the clock jumped by"),
        "the engine noticed the jumps"
    );
    eprintln!(
        "clock jumps: {} orders, {} probes, {flips} flips during the last drain, Ovopark 16×{}, WDT 7×{}",
        all.len(),
        clock.probes,
        answers("ovopark", "16"),
        answers("wdt", "7")
    );
}
