//! Both clouds' emulators and their control and listing routes (`/_emu/...`), and the
//! clients' settings for them.
//!
//! [`Emu::start`] runs them in this process (fast; a test may configure the tenant);
//! [`Emu::process`] runs `tillrelay emulate` as a child, the whole product as
//! processes, as an integrator would. Either way the test talks to them over HTTP.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tillrelay::emulator::{EmuConfig, Emulator, demo_agent_config};
use tillrelay::upload::ovopark::{Ovopark, RawOvopark};
use tillrelay::upload::wdt::{RawWdt, Wdt};

use super::{get_json, http, post_json, signal, tillrelay, wait_until};

enum Backend {
    // held for its Drop, which stops the servers
    InProcess(Emulator),
    Process(Child),
}

/// The emulators of both clouds on a free loopback port.
pub struct Emu {
    backend: Backend,
    base: String,
}

impl Emu {
    /// The emulators in this process, with `cfg`'s tenant and limits.
    pub fn start(cfg: EmuConfig) -> Emu {
        let emu = Emulator::start("127.0.0.1:0", cfg).unwrap();
        Emu {
            base: emu.base_url(),
            backend: Backend::InProcess(emu),
        }
    }

    /// `tillrelay emulate` with the default (demo) tenant on `127.0.0.1:0`; the bound
    /// address is read from the first line of its output.
    pub fn process() -> Emu {
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
        Emu {
            backend: Backend::Process(child),
            base,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        self.base.clone()
    }

    /// The plain HTTP address (what a TLS proxy forwards to).
    pub fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    pub fn get(&self, path: &str) -> Value {
        get_json(&self.base, path)
    }

    pub fn post(&self, path: &str, body: Value) {
        post_json(&self.base, path, body)
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
        assert_eq!(r.status().as_u16(), 200, "DELETE /_emu/fault");
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

    /// API requests each cloud received (faulted ones included).
    pub fn requests(&self) -> (u64, u64) {
        let s = self.stats();
        (
            s["ovopark"]["requests"].as_u64().unwrap(),
            s["wdt"]["requests"].as_u64().unwrap(),
        )
    }

    /// Ovopark's accepted orders: `[{order_no, accepted, duplicates, ipos, …}]`.
    pub fn ovopark_orders(&self) -> Vec<Value> {
        self.get("/_emu/ovopark/orders")
            .as_array()
            .cloned()
            .unwrap()
    }

    /// Wangdiantong's raw trades: `[{tid, pushes, updates, trade, orders, …}]`.
    pub fn wdt_trades(&self) -> Vec<Value> {
        self.get("/_emu/wdt/trades").as_array().cloned().unwrap()
    }

    /// How many orders each cloud holds (Ovopark orders, Wangdiantong trades).
    pub fn held(&self) -> (usize, usize) {
        (self.ovopark_orders().len(), self.wdt_trades().len())
    }

    /// Ovopark's accepted orders by orderNo.
    pub fn ovopark(&self) -> BTreeMap<String, Value> {
        keyed(self.ovopark_orders(), "order_no")
    }

    /// Wangdiantong's raw trades by tid.
    pub fn wdt(&self) -> BTreeMap<String, Value> {
        keyed(self.wdt_trades(), "tid")
    }

    /// Order number → (accepted, duplicates) on Ovopark.
    pub fn ovopark_counts(&self) -> BTreeMap<String, (u64, u64)> {
        counts(self.ovopark(), "accepted", "duplicates")
    }

    /// tid → (pushes, updates) on Wangdiantong.
    pub fn wdt_counts(&self) -> BTreeMap<String, (u64, u64)> {
        counts(self.wdt(), "pushes", "updates")
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

    /// Every order either cloud holds reached it in exactly one request (whichever
    /// orders those are).
    pub fn assert_each_sent_once(&self) {
        for (no, c) in self.ovopark_counts() {
            assert_eq!(c, (1, 0), "Ovopark {no}");
        }
        for (tid, (pushes, _)) in self.wdt_counts() {
            assert_eq!(pushes, 1, "Wangdiantong {tid}");
        }
    }

    /// [`dest_config`] for this emulator.
    pub fn dest_config(&self, ovo_extra: &str, wdt_extra: &str) -> String {
        dest_config(&self.base, ovo_extra, wdt_extra)
    }

    /// [`dest_settings`] for this emulator.
    pub fn dest_settings(
        &self,
        ovo_extra: &str,
        wdt_extra: &str,
        edit: impl FnOnce(String) -> String,
    ) -> (Ovopark, Wdt) {
        dest_settings(&self.base, ovo_extra, wdt_extra, edit)
    }
}

/// The `[ovopark]`/`[wdt]` sections of an agent config for the emulators' default
/// tenant at `base`, with `ovo_extra` / `wdt_extra` keys added to each section.
pub fn dest_config(base: &str, ovo_extra: &str, wdt_extra: &str) -> String {
    demo_agent_config(base)
        .replace("[ovopark]\n", &format!("[ovopark]\n{ovo_extra}\n"))
        .replace("[wdt]\n", &format!("[wdt]\n{wdt_extra}\n"))
}

/// Both clients' validated settings, read from [`dest_config`]'s text with `edit`
/// applied, the way the agent's config reads them.
pub fn dest_settings(
    base: &str,
    ovo_extra: &str,
    wdt_extra: &str,
    edit: impl FnOnce(String) -> String,
) -> (Ovopark, Wdt) {
    #[derive(Deserialize)]
    struct Both {
        ovopark: RawOvopark,
        wdt: RawWdt,
    }
    let text = edit(dest_config(base, ovo_extra, wdt_extra));
    let both: Both = toml::from_str(&text).unwrap();
    (
        both.ovopark.validate().unwrap(),
        both.wdt.validate().unwrap(),
    )
}

impl Drop for Emu {
    fn drop(&mut self) {
        if let Backend::Process(child) = &mut self.backend {
            signal(child.id(), libc::SIGTERM);
            let stopped = wait_until(Duration::from_secs(10), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn keyed(list: Vec<Value>, key: &str) -> BTreeMap<String, Value> {
    list.into_iter()
        .map(|v| (v[key].as_str().unwrap().to_string(), v))
        .collect()
}

fn counts(map: BTreeMap<String, Value>, a: &str, b: &str) -> BTreeMap<String, (u64, u64)> {
    map.into_iter()
        .map(|(k, v)| {
            let n = |f: &str| v[f].as_u64().unwrap();
            (k, (n(a), n(b)))
        })
        .collect()
}
