//! TLS: certificate verification is always on, and only `ca_file` changes what is
//! trusted.
//!
//! The server is real TLS on loopback: a proxy (tests/common/chaos.rs) terminating TLS
//! with a certificate from a throwaway CA (rcgen) in front of the emulators' plain
//! HTTP. The agent is the real binary (`run`, `check-config --online`).
//!
//! What is proven:
//! - With the bundled roots, a certificate from an unknown CA is refused: no request
//!   reaches the cloud, the orders stay pending (not rejected), `status` says why.
//! - With that CA in `ca_file`, the same orders go out, each once.
//! - Even with the CA trusted, a certificate for another name, or an expired one, is
//!   refused.
//! - No configuration key and no environment variable (the ones other tools honour:
//!   SSL_CERT_FILE, CURL_CA_BUNDLE, NODE_TLS_REJECT_UNAUTHORIZED=0, …) turns
//!   verification off or changes the trusted roots.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::agent::{Agent, cli, stored_orders};
use common::emu::Emu;
use common::expect_within;
use common::orders::delivery_state;
use common::till::{Layout, example_config, orders_file};
use common::tls::{TlsProxy, test_pki};
use serde_json::Value;
use tillrelay::emulator::{EmuConfig, demo_agent_config};

const WAIT: Duration = Duration::from_secs(60);

/// The box's config with both destinations at `base` (`https://127.0.0.1:PORT`),
/// trusting `ca_file` when given, and `extra` lines in both destination tables.
fn write_config(l: &Layout, base: &str, ca_file: Option<&Path>, extra: &str) {
    let mut dest = String::from("connect_timeout_secs = 3\ntimeout_secs = 5\n");
    if let Some(ca) = ca_file {
        dest.push_str(&format!("ca_file = {ca:?}\n"));
    }
    dest.push_str(extra);
    let tail = demo_agent_config(base)
        .replace("[ovopark]\n", &format!("[ovopark]\n{dest}"))
        .replace("[wdt]\n", &format!("[wdt]\n{dest}"));
    fs::write(&l.config, example_config(l, "200ms", None, &tail)).unwrap();
}

fn status(l: &Layout) -> Value {
    common::agent::cli_json(&l.config, &["status", "--json"]).unwrap_or(Value::Null)
}

fn dest_status(l: &Layout, dest: &str) -> Value {
    status(l)["destinations"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == dest).cloned())
        .unwrap_or(Value::Null)
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn an_unknown_ca_is_refused_and_the_orders_go_out_once_ca_file_trusts_it() {
    let emu = Emu::start(EmuConfig::default());
    let pki = test_pki(&["127.0.0.1", "localhost"], false);
    let proxy = TlsProxy::start(&pki, emu.addr());
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let ca = dir.path().join("test-ca.pem");
    fs::write(&ca, &pki.ca_pem).unwrap();

    // 1. The bundled Mozilla roots do not know the test CA: refused.
    write_config(&l, &proxy.base(), None, "");
    l.drop_file("tls-a.json", &orders_file("TLS-A", 3));
    let mut agent = Agent::start(&l.config, &dir.path().join("agent.log"), &[]);
    expect_within(
        WAIT,
        || {
            let o = dest_status(&l, "ovopark");
            let w = dest_status(&l, "wdt");
            o["pending"] == 3
                && w["pending"] == 3
                && o["last_error"].is_string()
                && w["last_error"].is_string()
        },
        || {
            format!(
                "both destinations should have tried and failed: {}\n{}",
                status(&l),
                agent.log_text()
            )
        },
    );
    agent.stop();
    for dest in ["ovopark", "wdt"] {
        let d = dest_status(&l, dest);
        let err = d["last_error"].as_str().unwrap().to_lowercase();
        assert!(
            err.contains("certificate") && err.contains("issuer"),
            "{dest}: the error should say the certificate's issuer is unknown: {d}"
        );
        assert_eq!(
            d["rejected"], 0,
            "{dest}: a TLS failure never rejects an order"
        );
        assert_eq!(d["delivered"], 0, "{dest}");
    }
    let c = proxy.counts_after_refusals(2);
    assert_eq!(c.handshakes, 0, "no handshake may complete: {c:?}");
    assert!(c.refused >= 2, "both clients connected and gave up: {c:?}");
    assert_eq!(emu.requests(), (0, 0), "nothing reached the clouds");
    let online = cli(&l.config, &["check-config", "--online"]);
    assert_eq!(online.status.code(), Some(1), "{}", text(&online));
    assert!(
        text(&online).to_lowercase().contains("certificate"),
        "{}",
        text(&online)
    );
    assert_eq!(emu.requests(), (0, 0));

    // 2. The same server once its CA is configured: the orders go out, each once.
    write_config(&l, &proxy.base(), Some(&ca), "");
    let online = cli(&l.config, &["check-config", "--online"]);
    assert!(online.status.success(), "{}", text(&online));
    let mut agent = Agent::start(&l.config, &dir.path().join("agent.log"), &[]);
    expect_within(
        WAIT,
        || {
            let orders = stored_orders(&l.config);
            orders.len() == 3
                && orders.iter().all(|o| {
                    delivery_state(o, "ovopark") == Some("delivered")
                        && delivery_state(o, "wdt") == Some("delivered")
                })
        },
        || format!("{:?}\n{}", stored_orders(&l.config), agent.log_text()),
    );
    assert!(agent.stop().success());
    let ovo = emu.ovopark_orders();
    let mut nos: Vec<&str> = ovo
        .iter()
        .map(|o| o["order_no"].as_str().unwrap())
        .collect();
    nos.sort();
    assert_eq!(nos, ["TLS-A-00", "TLS-A-01", "TLS-A-02"]);
    assert!(ovo.iter().all(|o| o["accepted"] == 1));
    let mut tids: Vec<String> = emu
        .wdt_trades()
        .iter()
        .map(|t| t["tid"].as_str().unwrap().to_string())
        .collect();
    tids.sort();
    assert_eq!(tids, ["TLS-A-00", "TLS-A-01", "TLS-A-02"]);
    assert!(proxy.counts().handshakes >= 2);
}

#[test]
fn a_trusted_ca_does_not_excuse_a_wrong_name_or_an_expired_certificate() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let ca = dir.path().join("ca.pem");
    for (what, names, expired, expect) in [
        (
            "a certificate for another name",
            &["localhost"][..],
            false,
            "name",
        ),
        (
            "an expired certificate",
            &["127.0.0.1"][..],
            true,
            "expired",
        ),
    ] {
        let before = emu.requests();
        let pki = test_pki(names, expired);
        let proxy = TlsProxy::start(&pki, emu.addr());
        fs::write(&ca, &pki.ca_pem).unwrap();
        write_config(&l, &proxy.base(), Some(&ca), "");
        let online = cli(&l.config, &["check-config", "--online"]);
        let out = text(&online);
        assert_eq!(online.status.code(), Some(1), "{what}: {out}");
        assert!(out.to_lowercase().contains(expect), "{what}: {out}");
        let c = proxy.counts_after_refusals(2);
        assert_eq!(c.handshakes, 0, "{what}: {c:?}");
        assert!(c.refused >= 2, "{what}: {c:?}");
        assert_eq!(emu.requests(), before, "{what}: nothing reached the clouds");

        // The control: the same kind of CA with a right certificate passes, so the
        // refusal above is about the name or the date, not about the setup.
        let good = test_pki(&["127.0.0.1"], false);
        let proxy = TlsProxy::start(&good, emu.addr());
        fs::write(&ca, &good.ca_pem).unwrap();
        write_config(&l, &proxy.base(), Some(&ca), "");
        let online = cli(&l.config, &["check-config", "--online"]);
        assert!(online.status.success(), "{what} control: {}", text(&online));
        assert!(proxy.counts().handshakes >= 2);
        let after = emu.requests();
        assert!(after.0 > before.0 && after.1 > before.1, "{what} control");
    }
}

#[test]
fn no_setting_or_environment_variable_turns_verification_off() {
    let emu = Emu::start(EmuConfig::default());
    let pki = test_pki(&["127.0.0.1"], false);
    let proxy = TlsProxy::start(&pki, emu.addr());
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let ca = dir.path().join("ca.pem");
    fs::write(&ca, &pki.ca_pem).unwrap();

    // Switches other HTTP clients have: none exists here; each is an error naming it.
    for key in [
        "insecure = true",
        "danger_accept_invalid_certs = true",
        "accept_invalid_certs = true",
        "verify = false",
        "tls_verify = false",
        "verify_tls = false",
        "skip_verify = true",
        "ssl_verify = false",
    ] {
        write_config(&l, &proxy.base(), None, &format!("{key}\n"));
        let out = cli(&l.config, &["check-config"]);
        let name = key.split(' ').next().unwrap();
        assert_eq!(out.status.code(), Some(3), "{key}: {}", text(&out));
        assert!(text(&out).contains(name), "{key}: {}", text(&out));
    }

    // Environment variables that make other tools trust a CA or skip verification.
    write_config(&l, &proxy.base(), None, "");
    let out = common::tillrelay()
        .args(["check-config", "--online", "--config"])
        .arg(&l.config)
        .env("SSL_CERT_FILE", &ca)
        .env("SSL_CERT_DIR", dir.path())
        .env("CURL_CA_BUNDLE", &ca)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0")
        .env("GIT_SSL_NO_VERIFY", "1")
        .env("PYTHONHTTPSVERIFY", "0")
        .env("TILLRELAY_INSECURE", "1")
        .env("TILLRELAY_TLS_VERIFY", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).to_lowercase().contains("certificate"),
        "{}",
        text(&out)
    );
    let c = proxy.counts_after_refusals(2);
    assert_eq!(c.handshakes, 0, "{c:?}");
    assert!(c.refused >= 2, "{c:?}");
    assert_eq!(emu.requests(), (0, 0));

    // The one way: ca_file.
    write_config(&l, &proxy.base(), Some(&ca), "");
    let out = cli(&l.config, &["check-config", "--online"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(proxy.counts().handshakes >= 2);
}
