//! Helpers shared by the integration tests: the real binary, temp dirs, waiting.
#![allow(dead_code)]

pub mod agent;

use std::path::Path;
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
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// `GET base+path` from an emulator, which must answer 200 with JSON.
pub fn get_json(base: &str, path: &str) -> Value {
    let mut r = http().get(format!("{base}{path}")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap()
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
