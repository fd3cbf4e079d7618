//! The serial source through the real daemon: the test is the POS and the printer
//! (the wire ends of two pseudo-terminals); the agent opens the device ends by path,
//! as it opens /dev/ttyUSB0 in a shop, with the example config's market template.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::agent::{Agent, cli_json, orders_where};
use common::orders::{by_order_no, canonical};
use common::pty::Pty;
use common::till::{Layout, example_config};
use common::{fixture, tillrelay, wait_until};
use serde_json::Value;
use serialport::TTYPort;

const WAIT: Duration = Duration::from_secs(30);

fn pty() -> (TTYPort, TTYPort, String) {
    Pty::new().into_parts()
}

/// The example config with the market lane enabled on the given devices (a short
/// quiet time ending a receipt), and the folder lane pointed at a temp dir.
/// `template_edit` rewrites the config text.
fn config(
    dir: &Path,
    pos: &str,
    printer: &str,
    template_edit: &dyn Fn(String) -> String,
) -> PathBuf {
    let l = Layout::new(dir);
    let text = example_config(&l, "2s", Some((pos, printer)), "");
    // the market lane's quiet time (the kiosk's is 3000)
    assert!(text.contains("idle_timeout_ms = 5000"));
    let text = text.replacen("idle_timeout_ms = 5000", "idle_timeout_ms = 500", 1);
    fs::write(&l.config, template_edit(text)).unwrap();
    l.config
}

fn start(config: &Path) -> Agent {
    Agent::start(config, &config.with_file_name("agent.log"), &[])
}

fn json(config: &Path, args: &[&str]) -> Value {
    cli_json(config, args).unwrap_or(Value::Null)
}

fn orders(config: &Path) -> Vec<Value> {
    orders_where(config, &["--source", "market"])
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
    let mut agent = start(&cfg);
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
    assert_eq!(by_order_no(got), by_order_no(expected));
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
    let log = agent.stop_clean();
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
    let mut agent = start(&cfg);
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
    agent.stop_clean();

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
    assert_eq!(by_order_no(got), by_order_no(expected));
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
