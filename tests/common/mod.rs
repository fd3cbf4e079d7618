//! The one test harness of the integration tests: every test binary compiles it as
//! `mod common;` and takes what it needs.
//!
//! - this module: the built binary (run through `TILLRELAY_TEST_RUNNER` when
//!   cross-testing under qemu), waiting ([`wait_until`], [`poll`], [`expect_within`]),
//!   fixtures, an HTTP client for the emulators' routes, signals, log tails;
//! - [`agent`]: `tillrelay run` as a child ([`agent::Agent`]) whose stderr goes to a
//!   file (never a pipe nobody reads), and the CLI against a config;
//! - [`till`]: a till in a temp dir ([`till::Till`]): inbox, state dir, a config made
//!   from the shipped example config, files dropped the way a POS drops them;
//! - [`emu`]: both clouds' emulators, in this process or as `tillrelay emulate`, and
//!   their control and listing routes ([`emu::Emu`]); the clients' settings for them;
//! - [`orders`]: order comparison (canonical fields, sorting, delivery states);
//! - [`pty`]: pseudo-terminal pairs, a reading printer, receipts to print;
//! - [`tls`]: a throwaway CA and a TLS-terminating proxy in front of the emulators.
//!
//! Invariants: nothing leaves 127.0.0.1; every child process and thread started here is
//! stopped by a `Drop`, so a failing test leaves no agent behind holding ptys or ports.
// Each test binary compiles this module and uses only some of its helpers; the rest
// is dead code in that binary. Only that lint is allowed: unused imports, variables
// and results, and every clippy lint, still fail `clippy --all-targets -D warnings`.
#![allow(dead_code)]

pub mod agent;
pub mod emu;
pub mod orders;
pub mod pty;
pub mod till;
pub mod tls;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tillrelay::order::Order;

/// The built `tillrelay` binary as a Command. Under `cross/test-armv7.sh` the tests
/// are ARM binaries run by qemu, and so must the agent be: `TILLRELAY_TEST_RUNNER`
/// names the runner (e.g. `qemu-arm-static -L /usr/arm-linux-gnueabihf`).
pub fn tillrelay() -> Command {
    let bin = env!("CARGO_BIN_EXE_tillrelay");
    match std::env::var("TILLRELAY_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut cmd = Command::new(parts.next().unwrap());
            cmd.args(parts).arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

/// libfaketime's multi-threaded build (the clock tests preload it into the agent).
/// `TILLRELAY_LIBFAKETIME` names it where Debian's paths do not apply.
pub fn libfaketime() -> PathBuf {
    if let Ok(p) = std::env::var("TILLRELAY_LIBFAKETIME") {
        return PathBuf::from(p);
    }
    let mut candidates = vec![
        PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1"),
        PathBuf::from("/usr/local/lib/faketime/libfaketimeMT.so.1"),
    ];
    if let Ok(rd) = fs::read_dir("/usr/lib") {
        for e in rd.flatten() {
            candidates.push(e.path().join("faketime/libfaketimeMT.so.1"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .expect("libfaketime is not installed: `apt-get install faketime` (the CI script does)")
}

/// Whether the agent runs under an emulator (`TILLRELAY_TEST_RUNNER`): several
/// times slower to start, so waits for a start are stretched (never an assertion on
/// speed, only how long a test waits before it gives up).
pub fn emulated() -> bool {
    std::env::var("TILLRELAY_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty())
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
/// Tests wait for effects this way instead of sleeping a fixed time.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

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

/// Waits until `cond` holds, panicking with `what()` if it does not within `timeout`.
pub fn expect_within(timeout: Duration, cond: impl FnMut() -> bool, what: impl FnOnce() -> String) {
    if !wait_until(timeout, cond) {
        panic!("{}", what());
    }
}

/// Sends `sig` to `pid` (a process this test started).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// The last `n` lines of a log, for failure messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The project's own copy of a fixture file.
pub fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// An HTTP client for the emulators' control and listing routes: no proxy (loopback),
/// statuses returned rather than raised, a timeout so a stuck emulator fails the test.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `GET base+path` from an emulator, which must answer 200 with JSON.
pub fn get_json(base: &str, path: &str) -> Value {
    let mut r = http().get(format!("{base}{path}")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    // A long crash loop's listings pass ureq's default 10 MB cap.
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// `POST base+path` with a JSON body to an emulator, which must answer 200.
pub fn post_json(base: &str, path: &str, body: Value) {
    let r = http()
        .post(format!("{base}{path}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "POST {path} {body}");
}

/// Stamps an order as lane1 of the example config would (shop D001, NVR01-CH03, the
/// default video window).
pub fn stamp_lane1(mut o: Order) -> Order {
    o.source = Some("lane1".into());
    o.shop = Some("D001".into());
    o.machine_id = Some("NVR01-CH03".into());
    o.video_start = Some(o.order_time - chrono::Duration::seconds(60));
    o.video_end = Some(o.order_time + chrono::Duration::seconds(30));
    o
}

/// Every order the fixtures hold (the export and both receipt captures), stamped.
pub fn fixture_orders() -> Vec<Order> {
    let mut out = Vec::new();
    for rel in [
        "exports/expected.json",
        "receipts/market.expected.json",
        "receipts/kiosk.expected.json",
    ] {
        let text = std::fs::read_to_string(fixture(rel)).unwrap();
        let orders: Vec<Order> = serde_json::from_str(&text).unwrap();
        out.extend(orders.into_iter().map(stamp_lane1));
    }
    out
}

/// A port free on 127.0.0.1 now, for a config that names its port before the agent
/// binds it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
