//! The configuration pull (issue #27, "Steering") end to end: the real binary, its
//! own `config keygen` / `config sign`, and a loopback HTTPS server with a throwaway
//! CA serving the signed file with ETags. A new file is applied within a poll; a bad
//! signature, a broken file, an invalid configuration, a replayed older file and a
//! server that is down are refused while the box keeps capturing and says why
//! (`status`, `/metrics`, the log); a box restarted offline runs the last file it
//! applied.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::till::{Till, orders_file};
use common::tls::{TlsProxy, test_pki};
use common::{poll, tillrelay};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// What the loopback server serves at /fleet.json, and what it saw.
#[derive(Default)]
struct Served {
    /// The body and its ETag (`None`: 404).
    file: Option<(Vec<u8>, String)>,
    /// Requests answered 304 (the agent sent the current ETag back).
    not_modified: u64,
    requests: u64,
}

/// A plain HTTP/1.1 server on 127.0.0.1 (the TLS proxy sits in front): one request
/// per connection, `If-None-Match` honoured.
fn serve(state: Arc<Mutex<Served>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let state = state.clone();
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
                let inm = head
                    .lines()
                    .find_map(|l| l.strip_prefix("if-none-match:"))
                    .map(|v| v.trim().to_string());
                let mut s = state.lock().unwrap();
                s.requests += 1;
                let file = s.file.clone();
                let reply = match &file {
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                    Some((_, tag)) if inm.as_deref() == Some(tag.to_ascii_lowercase().as_str()) => {
                        s.not_modified += 1;
                        format!(
                            "HTTP/1.1 304 Not Modified\r\nETag: {tag}\r\nConnection: close\r\n\r\n"
                        )
                        .into_bytes()
                    }
                    Some((body, tag)) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: {tag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                };
                drop(s);
                let _ = conn.write_all(&reply);
            });
        }
    });
    addr
}

fn publish(state: &Mutex<Served>, body: &[u8]) {
    let mut s = state.lock().unwrap();
    let n = s.requests;
    s.file = Some((body.to_vec(), format!("\"v{}-{n}\"", body.len())));
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `tillrelay config sign --key key --serial serial file`: the envelope.
fn sign(dir: &Path, key: &Path, serial: u64, config: &str) -> Vec<u8> {
    let file = dir.join(format!("fleet-{serial}.toml"));
    std::fs::write(&file, config).unwrap();
    let out = tillrelay()
        .args(["config", "sign", "--key"])
        .arg(key)
        .args(["--serial", &serial.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "sign: {}", text(&out));
    out.stdout
}

/// An envelope signed by hand (ring, as the agent verifies): what `config sign`
/// would refuse to make, e.g. a file with a secret inline.
fn sign_raw(key: &Path, serial: u64, config: &str) -> Vec<u8> {
    let hex = std::fs::read_to_string(key).unwrap();
    let seed: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex.trim()[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let sig = pair.sign(format!("tillrelay-config-v1\n{serial}\n{config}").as_bytes());
    let sig: String = sig.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    serde_json::to_vec(&serde_json::json!({"serial": serial, "config": config, "signature": sig}))
        .unwrap()
}

/// `tillrelay config keygen --out path`: the public key it prints.
fn keygen(path: &Path) -> String {
    let out = tillrelay()
        .args(["config", "keygen", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "keygen: {}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("config_key = "))
        .unwrap_or_else(|| panic!("no config_key line in {stdout}"));
    line.trim_start_matches("config_key = ")
        .trim_matches('"')
        .to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics`; `None` while nothing answers.
fn scrape(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_string())
}

fn status(till: &Till) -> Value {
    till.json(&["status", "--json"])
}

/// The fleet's part of the configuration: a second lane (`machine`) and a log level.
fn fleet(inbox2: &Path, machine: &str) -> String {
    format!(
        "[agent]\nlog_level = \"debug\"\n\n[[source]]\nname = \"lane1\"\nkind = \"folder\"\npath = \"inbox\"\n\
         format = \"json\"\nsettle = \"300ms\"\nshop = \"D001\"\nmachine_id = \"CAM1\"\n\n\
         [[source]]\nname = \"lane2\"\nkind = \"folder\"\npath = {inbox2:?}\nformat = \"json\"\n\
         settle = \"300ms\"\nshop = \"D001\"\nmachine_id = {machine:?}\n"
    )
}

#[test]
fn a_box_applies_a_signed_file_within_a_poll_and_refuses_every_other_keeping_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki(&["127.0.0.1"], false);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let key = dir.path().join("fleet.key");
    let public = keygen(&key);
    let other_key = dir.path().join("other.key");
    keygen(&other_key);
    let served = Arc::new(Mutex::new(Served::default()));
    let upstream = serve(served.clone());
    let proxy = TlsProxy::start(&pki, upstream);
    let url = format!("{}/fleet.json", proxy.base());
    let metrics = format!("127.0.0.1:{}", free_port());

    let mut till = Till::with_config(|l| {
        format!(
            "[agent]\nstate_dir = {:?}\nbox_id = \"box1\"\nconfig_url = {url:?}\nconfig_poll = \"1s\"\n\
             config_key = {public:?}\nconfig_ca_file = {ca:?}\n\n[metrics]\nlisten = {metrics:?}\n\n\
             [[source]]\nname = \"lane1\"\nkind = \"folder\"\npath = {:?}\nformat = \"json\"\n\
             settle = \"300ms\"\nshop = \"D001\"\nmachine_id = \"CAM1\"\n",
            l.state, l.inbox
        )
    });
    let inbox2 = till.dir.path().join("inbox2");
    std::fs::create_dir_all(&inbox2).unwrap();
    let pulled = |st: &Value| st["config"]["serial"].as_u64().unwrap_or(0);
    let pull_msg = |st: &Value| st["pull"]["message"].as_str().unwrap_or("").to_string();

    // Serial 1: lane2 joins; then serial 2 moves its camera. Each applied within a
    // poll or two, and kept on disk.
    publish(&served, &sign(dir.path(), &key, 1, &fleet(&inbox2, "CAM2")));
    till.start();
    assert!(
        poll(WAIT, || pulled(&status(&till)) == 1),
        "serial 1 not applied: {}\n{}",
        status(&till),
        till.log()
    );
    let st = status(&till);
    assert!(
        st["reload"]["changes"]
            .to_string()
            .contains("source lane2 added"),
        "{st}"
    );
    assert_eq!(st["config"]["origin"], "pulled", "{st}");
    publish(&served, &sign(dir.path(), &key, 2, &fleet(&inbox2, "CAM9")));
    assert!(
        poll(WAIT, || pulled(&status(&till)) == 2),
        "serial 2 not applied: {}\n{}",
        status(&till),
        till.log()
    );
    let st = status(&till);
    assert_eq!(st["pull"]["ok"], true, "{st}");
    let hash = st["config"]["hash"].as_str().unwrap().to_string();
    let kept = std::fs::read_to_string(till.state_dir().join("pulled-config.json")).unwrap();
    assert!(kept.contains("\"serial\": 2"), "{kept}");
    // Unchanged: the server answers 304 to the ETag the agent sends back.
    assert!(
        poll(WAIT, || served.lock().unwrap().not_modified >= 1),
        "no If-None-Match seen"
    );
    // What runs, in /metrics.
    assert!(
        poll(WAIT, || scrape(&metrics)
            .is_some_and(|m| m.contains("tillrelay_config_serial 2")
                && m.contains(&format!("hash=\"{hash}\""))
                && m.contains("tillrelay_config_pull_successful 1"))),
        "{:?}",
        scrape(&metrics)
    );

    // Each refusal: said in status, the serial and lanes stay, capture goes on.
    let mut dropped = 0;
    let mut refused = |body: Vec<u8>, why: &str| {
        publish(&served, &body);
        assert!(
            poll(WAIT, || {
                let st = status(&till);
                st["pull"]["ok"] == false && pull_msg(&st).contains(why)
            }),
            "not refused with {why:?}: {}\n{}",
            status(&till),
            till.log()
        );
        assert_eq!(pulled(&status(&till)), 2);
        // lane2, as serial 2 set it, still captures.
        dropped += 1;
        let name = format!("r{dropped}");
        std::fs::write(inbox2.join(format!("{name}.json")), orders_file(&name, 1)).unwrap();
        let want = dropped;
        assert!(
            poll(WAIT, || {
                let o = till.orders();
                o.len() == want && o.iter().all(|o| o.to_string().contains("CAM9"))
            }),
            "capture stopped after the refusal ({why}): {}",
            till.log()
        );
        assert!(
            scrape(&metrics).is_some_and(|m| m.contains("tillrelay_config_pull_successful 0")
                && m.contains("tillrelay_config_serial 2")),
            "{:?}",
            scrape(&metrics)
        );
    };
    refused(
        sign(dir.path(), &other_key, 3, &fleet(&inbox2, "CAMX")),
        "does not verify",
    );
    refused(
        b"<html>captive portal</html>".to_vec(),
        "not a signed configuration",
    );
    refused(
        sign(
            dir.path(),
            &key,
            4,
            "[[source]]\nname = \"lane1\"\nkind = \"folder\"\nbogus = 1\n",
        ),
        "bogus",
    );
    refused(
        sign_raw(
            &key,
            5,
            &format!(
                "{}\n[wdt]\nsecret = \"appsecret:s3cret-salt\"\n",
                fleet(&inbox2, "CAM9")
            ),
        ),
        "wdt.secret holds a secret value",
    );
    refused(
        sign(dir.path(), &key, 1, &fleet(&inbox2, "CAM2")),
        "not above the applied 2",
    );
    refused(
        sign(dir.path(), &key, 2, &fleet(&inbox2, "CAMZ")),
        "not above the applied 2",
    );
    assert!(till.log().contains("config pull refused"), "{}", till.log());
    assert!(!till.log().contains("s3cret"), "{}", till.log());

    // The server goes down: refused as unreachable, nothing else changes.
    drop(proxy);
    assert!(
        poll(WAIT, || pull_msg(&status(&till)).contains("cannot fetch")),
        "{}",
        status(&till)
    );
    assert_eq!(pulled(&status(&till)), 2);

    // Restarted offline: it runs the file it applied last, not its local one.
    till.stop();
    till.start();
    let st = status(&till);
    assert_eq!(pulled(&st), 2, "{st}");
    std::fs::write(inbox2.join("offline.json"), orders_file("offline", 1)).unwrap();
    assert!(
        poll(WAIT, || till.orders().len() == dropped + 1),
        "lane2 does not run after an offline start: {}",
        till.log()
    );
    assert!(
        poll(WAIT, || scrape(&metrics)
            .is_some_and(|m| m.contains("tillrelay_config_serial 2"))),
        "{:?}",
        scrape(&metrics)
    );
    till.stop();

    // A kept copy altered on disk does not verify: the local file runs, and the log
    // says why.
    let kept_path = till.state_dir().join("pulled-config.json");
    let altered = std::fs::read_to_string(&kept_path)
        .unwrap()
        .replace("\"serial\": 2", "\"serial\": 99");
    std::fs::write(&kept_path, altered).unwrap();
    till.start();
    let st = status(&till);
    assert_eq!(pulled(&st), 0, "{st}");
    assert_eq!(st["config"]["origin"], "local", "{st}");
    assert!(
        till.log()
            .contains("the kept pulled configuration is not used"),
        "{}",
        till.log()
    );
    till.stop();
}

/// `config sign` refuses what every box would: a secret inline, a local-only key.
#[test]
fn sign_refuses_a_file_with_a_secret_or_a_bootstrap_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    keygen(&key);
    for (body, what) in [
        ("[wdt]\nsecret = \"appsecret:salt-s3cret\"\n", "wdt.secret"),
        (
            "[agent]\nconfig_url = \"https://elsewhere/\"\n",
            "agent.config_url",
        ),
    ] {
        let file = dir.path().join("c.toml");
        std::fs::write(&file, body).unwrap();
        let out = tillrelay()
            .args(["config", "sign", "--key"])
            .arg(&key)
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(text(&out).contains(what), "{}", text(&out));
        assert!(!text(&out).contains("s3cret"), "{}", text(&out));
        assert!(out.stdout.is_empty());
    }
    // The key file is the owner's only and never overwritten.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    let out = tillrelay()
        .args(["config", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
