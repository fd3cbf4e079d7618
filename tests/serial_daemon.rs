//! The serial source through the real daemon: the test is the POS and the printer
//! (the wire ends of two pseudo-terminals); the agent opens the device ends by path,
//! as it opens /dev/ttyUSB0 in a shop, with the example config's market template.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{fixture, tillrelay, wait_until};
use serde_json::Value;
use serialport::{SerialPort, TTYPort};

const WAIT: Duration = Duration::from_secs(30);

fn pty() -> (TTYPort, TTYPort, String) {
    let (mut master, slave) = TTYPort::pair().expect("openpty");
    master.set_timeout(Duration::from_millis(50)).unwrap();
    let path = slave.name().expect("pty name");
    (master, slave, path)
}

/// The example config with the market lane enabled on the given devices, and the
/// folder lane pointed at a temp dir. `template_edit` rewrites the template text.
fn config(
    dir: &Path,
    pos: &str,
    printer: &str,
    template_edit: &dyn Fn(String) -> String,
) -> PathBuf {
    let example =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tillrelay.toml"))
            .unwrap();
    let inbox = dir.join("inbox");
    fs::create_dir_all(&inbox).unwrap();
    let mut text = String::new();
    let mut in_market = false;
    for line in example.lines() {
        if line.starts_with("name = ") {
            in_market = line == "name = \"market\"";
        }
        let l = if line.starts_with("state_dir =") {
            format!("state_dir = {:?}", dir.join("state"))
        } else if line.starts_with("path =") {
            format!("path = {inbox:?}")
        } else if in_market && line.starts_with("enabled =") {
            "enabled = true".into()
        } else if in_market && line.starts_with("device =") {
            format!("device = {pos:?}")
        } else if in_market && line.starts_with("passthrough =") {
            format!("passthrough = {printer:?}")
        } else if in_market && line.starts_with("flow_control =") {
            // a pty has no RTS/CTS lines
            "flow_control = \"none\"".into()
        } else if in_market && line.starts_with("idle_timeout_ms =") {
            "idle_timeout_ms = 500".into()
        } else {
            line.to_string()
        };
        text.push_str(&l);
        text.push('\n');
    }
    let path = dir.join("tillrelay.toml");
    fs::write(&path, template_edit(text)).unwrap();
    path
}

struct Agent(Child);

impl Agent {
    fn start(config: &Path) -> Agent {
        Agent(
            tillrelay()
                .args(["run", "--config"])
                .arg(config)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let child = std::mem::replace(
            &mut self.0,
            std::process::Command::new("true").spawn().unwrap(),
        );
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "exit {:?}", out.status);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn json(config: &Path, args: &[&str]) -> Value {
    let out = tillrelay()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    if !out.status.success() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn orders(config: &Path) -> Vec<Value> {
    json(config, &["orders", "--json", "--source", "market"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn canonical(o: &Value) -> Value {
    let mut o = o.clone();
    let m = o.as_object_mut().unwrap();
    for k in [
        "source",
        "shop",
        "machine_id",
        "video_start",
        "video_end",
        "deliveries",
    ] {
        m.remove(k);
    }
    o
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by(|a, b| a["order_no"].as_str().cmp(&b["order_no"].as_str()));
    v
}

/// Writes `bytes` as the POS would (in pieces), reading the printer side meanwhile;
/// returns what reached the printer once it has all of it.
fn print(pos: &mut TTYPort, printer: &mut TTYPort, bytes: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for chunk in bytes.chunks(97) {
        pos.write_all(chunk).unwrap();
        match printer.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::TimedOut => {}
            Err(e) => panic!("printer side: {e}"),
        }
    }
    wait_until(WAIT, || {
        match printer.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::TimedOut => {}
            Err(e) => panic!("printer side: {e}"),
        }
        got.len() >= bytes.len()
    });
    got
}

#[test]
fn printed_receipts_reach_the_printer_unchanged_and_become_orders() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pos, _pos_dev, pos_path) = pty();
    let (mut printer, _prn_dev, prn_path) = pty();
    let cfg = config(dir.path(), &pos_path, &prn_path, &|t| t);
    let agent = Agent::start(&cfg);
    // the tap opens the devices asynchronously: wait for READY-equivalent (the db)
    assert!(wait_until(WAIT, || dir
        .path()
        .join("state/queue.db")
        .exists()));
    std::thread::sleep(Duration::from_millis(300));

    let bin = fs::read(fixture("receipts/market.bin")).unwrap();
    let at_printer = print(&mut pos, &mut printer, &bin);
    assert!(
        at_printer == bin,
        "the printer got {} bytes, not the {} sent, byte for byte",
        at_printer.len(),
        bin.len()
    );

    assert!(
        wait_until(WAIT, || orders(&cfg).len() == 3),
        "{:?}",
        orders(&cfg)
    );
    let expected: Vec<Value> =
        serde_json::from_slice(&fs::read(fixture("receipts/market.expected.json")).unwrap())
            .unwrap();
    let got: Vec<Value> = orders(&cfg).iter().map(canonical).collect();
    assert_eq!(sorted(got), sorted(expected));
    let o = &orders(&cfg)[0];
    assert_eq!(o["machine_id"], "NVR01-CH03");
    assert_eq!(o["source"], "market");

    // the reprint was journalled but is not an order; nothing is unparsed
    let st = json(&cfg, &["status", "--json"]);
    let market = st["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "market")
        .unwrap()
        .clone();
    assert_eq!(market["orders"], 3);
    assert_eq!(market["unparsed"], 0);
    assert!(market["receipts"].as_i64().unwrap() >= 4, "{market}");

    // printing the same receipts again (a reprint from the POS menu) adds nothing
    let again = print(&mut pos, &mut printer, &bin);
    assert_eq!(again.len(), bin.len());
    assert!(wait_until(WAIT, || {
        let st = json(&cfg, &["status", "--json"]);
        st["sources"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["name"] == "market" && s["duplicates"] == 3)
        })
    }));
    assert_eq!(orders(&cfg).len(), 3);
    let log = agent.stop();
    assert!(log.contains("reprint"), "{log}");
}

#[test]
fn receipts_a_broken_template_cannot_read_are_kept_and_reparsed_after_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pos, _pos_dev, pos_path) = pty();
    let (mut printer, _prn_dev, prn_path) = pty();
    // A template whose order number pattern does not match this POS's receipts.
    let broken = |t: String| t.replacen("order_no = '^单号:", "order_no = '^订单号:", 1);
    let cfg = config(dir.path(), &pos_path, &prn_path, &broken);
    let agent = Agent::start(&cfg);
    assert!(wait_until(WAIT, || dir
        .path()
        .join("state/queue.db")
        .exists()));
    std::thread::sleep(Duration::from_millis(300));
    let bin = fs::read(fixture("receipts/market.bin")).unwrap();
    print(&mut pos, &mut printer, &bin);
    let unparsed = || {
        json(&cfg, &["status", "--json"])["sources"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|s| s["name"] == "market")
                    .map(|s| s["unparsed"].clone())
            })
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
    };
    assert!(
        wait_until(WAIT, || unparsed() == 3),
        "unparsed: {}",
        unparsed()
    );
    assert!(orders(&cfg).is_empty());
    let human = tillrelay()
        .arg("status")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("reparse --source market"), "{human}");
    agent.stop();

    // fix the template (the example's own), reparse the journal
    let fixed = config(dir.path(), &pos_path, &prn_path, &|t| t);
    assert_eq!(fixed, cfg);
    let out = tillrelay()
        .args(["reparse", "--source", "market", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 new order(s)"), "{text}");
    let expected: Vec<Value> =
        serde_json::from_slice(&fs::read(fixture("receipts/market.expected.json")).unwrap())
            .unwrap();
    let got: Vec<Value> = orders(&cfg).iter().map(canonical).collect();
    assert_eq!(sorted(got), sorted(expected));
    assert_eq!(unparsed(), 0);
    // a second reparse finds nothing left to do
    let out = tillrelay()
        .args(["reparse", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("0 journal entries"));
}

#[test]
fn parse_gives_exactly_the_expected_orders_for_both_receipt_fixtures() {
    for name in ["market", "kiosk"] {
        let out = tillrelay()
            .args(["parse", "--json", "--source", name, "--config"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tillrelay.toml"))
            .arg(fixture(&format!("receipts/{name}.bin")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let expected: Value = serde_json::from_slice(
            &fs::read(fixture(&format!("receipts/{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(got, expected, "{name}");
    }
}
