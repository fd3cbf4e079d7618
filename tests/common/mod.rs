//! Helpers shared by the integration tests: the real binary, temp dirs, waiting.
#![allow(dead_code)]

pub mod agent;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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
