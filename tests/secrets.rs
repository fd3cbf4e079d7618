//! Secrets never appear in logs, `status`, `check-config`, error messages, panics or
//! the database (promise 5), proven by search: every byte the real binary prints or
//! writes, over runs that take every error path, is searched for the secret values.
//!
//! The secrets are distinctive strings nothing else contains: the Ovopark secret
//! `S3cr3t-ovopark-XYZ`, and the Wangdiantong appsecret `wdtsecret-ABC:salt-DEF`, whose
//! two halves are searched separately.
//!
//! **The salt counts as a secret here.** The spec sends the part before `:` nowhere
//! (it only enters the md5 signature) and sends the salt as the `salt` query
//! parameter of every request: the salt is on the wire by design, to the cloud only.
//! Everything else is held to the same rule as the secret: the salt is never logged,
//! printed, stored or put in an error (the clients' invariant, and `http.rs` never
//! logs a query string). So every needle below, salt included, must appear in nothing
//! but the config files and secret files the test itself wrote.
//!
//! What is searched: the agent's stderr at `TILLRELAY_LOG=trace` over a run with
//! deliveries, every emulator fault mode, a rejected order, a rejected file, wrong
//! secrets (signature refused, destination paused) and a TLS failure; the stdout and
//! stderr of `status`, `status --json`, `orders --json`, `check-config`,
//! `check-config --online` (passing and failing), `flush`, `retry`, `parse`; every file
//! under the box's directories (queue.db and its -wal/-shm read while the agent runs
//! and after, done/, rejected/ and the error notes, the pid file); the `Debug` and JSON
//! renderings of the loaded configuration (what a panic message or a log line would
//! print); and the errors of configs broken on the secret line.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::agent::{Agent, cli, stored_orders};
use common::emu::Emu;
use common::expect_within;
use common::orders::delivery_state;
use common::till::{Layout, example_config, orders_file};
use common::tls::{TlsProxy, test_pki};
use serde_json::{Value, json};
use tillrelay::emulator::{EmuConfig, demo_agent_config};

const WAIT: Duration = Duration::from_secs(60);

const OVO_SECRET: &str = "S3cr3t-ovopark-XYZ";
const WDT_SECRET: &str = "wdtsecret-ABC";
const WDT_SALT: &str = "salt-DEF";
/// Wrong secrets used on purpose (secrets all the same).
const OVO_WRONG: &str = "S3cr3t-ovopark-WRONG";
const WDT_WRONG: &str = "wdtsecret-WRONG:salt-WRONG";
/// A secret written without quotes (a TOML integer).
const NUMERIC_SECRET: &str = "8675309112358";

const NEEDLES: &[&str] = &[
    OVO_SECRET,
    WDT_SECRET,
    WDT_SALT,
    OVO_WRONG,
    "wdtsecret-WRONG",
    "salt-WRONG",
    NUMERIC_SECRET,
    "wdtsecretABCsaltDEF",
];

/// Everything searched, with where it came from; findings are reported all at once.
#[derive(Default)]
struct Haystack {
    items: Vec<(String, Vec<u8>)>,
}

impl Haystack {
    fn add(&mut self, label: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.items.push((label.into(), bytes.into()));
    }

    fn output(&mut self, label: &str, o: &Output) {
        self.add(format!("{label} (stdout)"), o.stdout.clone());
        self.add(format!("{label} (stderr)"), o.stderr.clone());
    }

    /// Every file under `dir` but the ones the test wrote holding secrets on purpose.
    fn files(&mut self, label: &str, dir: &Path, skip: &[PathBuf]) {
        for path in walk(dir) {
            if skip.contains(&path) {
                continue;
            }
            if let Ok(bytes) = fs::read(&path) {
                self.add(format!("{label}: {}", path.display()), bytes);
            }
        }
    }

    fn leaks(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (label, bytes) in &self.items {
            for n in NEEDLES {
                if let Some(at) = find(bytes, n.as_bytes()) {
                    let from = at.saturating_sub(120);
                    let to = (at + n.len() + 60).min(bytes.len());
                    out.push(format!(
                        "{n:?} in {label}: …{}…",
                        String::from_utf8_lossy(&bytes[from..to])
                    ));
                }
            }
        }
        out
    }

    fn assert_clean(&self) {
        let leaks = self.leaks();
        let bytes: usize = self.items.iter().map(|(_, b)| b.len()).sum();
        eprintln!(
            "searched {} outputs and files ({bytes} bytes) for {} secret values",
            self.items.len(),
            NEEDLES.len()
        );
        assert!(
            leaks.is_empty(),
            "{} leak(s) among {} outputs and files searched:\n{}",
            leaks.len(),
            self.items.len(),
            leaks.join("\n\n")
        );
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

/// The destinations for the emulators at `base`, with the given secret lines.
fn destinations(base: &str, ovo_secret_line: &str, wdt_secret_line: &str) -> String {
    let c = EmuConfig::default();
    demo_agent_config(base)
        .replace(
            &format!("secret = \"{}\"\n", c.ovopark.secret),
            &format!("{ovo_secret_line}\nconnect_timeout_secs = 2\ntimeout_secs = 3\n"),
        )
        .replace(
            &format!("secret = \"{}:{}\"\n", c.wdt.secret, c.wdt.salt),
            &format!(
                "{wdt_secret_line}\nconnect_timeout_secs = 2\ntimeout_secs = 3\nrate_limit_wait_secs = 1\n"
            ),
        )
}

/// Writes the example config with [`destinations`] at `base`; returns its text.
fn write_config(l: &Layout, base: &str, ovo_secret_line: &str, wdt_secret_line: &str) -> String {
    let text = example_config(
        l,
        "200ms",
        None,
        &destinations(base, ovo_secret_line, wdt_secret_line),
    );
    fs::write(&l.config, &text).unwrap();
    text
}

fn emu_with_secrets() -> Emu {
    let mut cfg = EmuConfig::default();
    cfg.ovopark.secret = OVO_SECRET.into();
    cfg.wdt.secret = WDT_SECRET.into();
    cfg.wdt.salt = WDT_SALT.into();
    Emu::start(cfg)
}

fn dest(l: &Layout, name: &str) -> Value {
    common::agent::status_entry(&l.config, "destinations", name)
}

/// Waits until the `n` stored orders are settled everywhere, asking the agent to flush
/// meanwhile; fails with `what` and the agent's log.
fn expect_settled(l: &Layout, n: usize, agent: &Agent, what: &str) {
    expect_within(
        WAIT,
        || {
            if !all_settled(l, n) {
                cli(&l.config, &["flush"]);
                std::thread::sleep(Duration::from_millis(300));
                return false;
            }
            true
        },
        || format!("{what}: {}", agent.log_text()),
    );
}

fn all_settled(l: &Layout, n: usize) -> bool {
    let orders = stored_orders(&l.config);
    orders.len() == n
        && orders.iter().all(|o| {
            ["ovopark", "wdt"]
                .iter()
                .all(|d| matches!(delivery_state(o, d), Some("delivered" | "rejected")))
        })
}

fn no_fault_left(emu: &Emu) -> bool {
    let s = emu.get("/_emu/stats");
    s["ovopark"]["fault"].is_null() && s["wdt"]["fault"].is_null()
}

#[test]
fn a_full_run_through_every_failure_leaves_no_secret_in_any_output_or_file() {
    let emu = emu_with_secrets();
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let log = dir.path().join("agent.log");
    let wdt_file = dir.path().join("wdt.secret");
    fs::write(&wdt_file, format!("{WDT_SECRET}:{WDT_SALT}\n")).unwrap();
    let ovo_wrong_file = dir.path().join("ovopark-wrong.secret");
    fs::write(&ovo_wrong_file, format!("{OVO_WRONG}\n")).unwrap();
    let mut hay = Haystack::default();
    let trace = [("TILLRELAY_LOG", "trace")];

    // ── 1. Good secrets (Ovopark inline, WDT from a file): deliveries and faults.
    let good = write_config(
        &l,
        &emu.base(),
        &format!("secret = \"{OVO_SECRET}\""),
        &format!("secret_file = {wdt_file:?}"),
    );
    // The control: the search finds what is there (the config holds the secrets).
    let mut control = Haystack::default();
    control.add("config", good.clone());
    control.add("wdt secret file", fs::read(&wdt_file).unwrap());
    assert_eq!(
        control.leaks().len(),
        3,
        "the search finds the three secrets where they are"
    );

    let mut agent = Agent::start(&l.config, &log, &trace);
    l.drop_file("s-0.json", &orders_file("SEC-0", 3));
    let mut expected = 3;
    expect_within(WAIT, || all_settled(&l, expected), || agent.log_text());
    // every fault mode, one per destination per round
    let rounds = [
        ("http500", "garbage"),
        ("garbage", "http500"),
        ("code", "code"),
        ("rate_limit", "rate_limit"),
        ("reset", "reset"),
        ("hang", "hang"),
    ];
    for (i, (ovo_mode, wdt_mode)) in rounds.iter().enumerate() {
        emu.fault(
            json!({"target": "ovopark", "mode": ovo_mode, "count": 1, "hang_secs": 1,
                         "message": "服务器内部错误 (injected)"}),
        );
        emu.fault(
            json!({"target": "wdt", "mode": wdt_mode, "count": 1, "hang_secs": 1,
                         "message": "系统繁忙 (injected)"}),
        );
        l.drop_file(
            &format!("s-{}.json", i + 1),
            &orders_file(&format!("SEC-{}", i + 1), 2),
        );
        expected += 2;
        expect_within(WAIT, || no_fault_left(&emu), || agent.log_text());
        // the retry is minutes away by the backoff: ask for it now
        hay.output("flush", &cli(&l.config, &["flush"]));
        expect_settled(
            &l,
            expected,
            &agent,
            &format!("round {ovo_mode}/{wdt_mode}"),
        );
    }
    // A server (or a gateway in front of it) that echoes the request's secret values
    // in its error text: what the agent logs and stores of it must not carry them.
    emu.fault(
        json!({"target": "ovopark", "mode": "code", "count": 1, "code": "-500",
                     "message": format!("internal error; request had _secret={OVO_SECRET}")}),
    );
    emu.fault(json!({"target": "wdt", "mode": "code", "count": 1, "code": "99",
                     "message": format!("签名错误 salt={WDT_SALT} appsecret={WDT_SECRET}:{WDT_SALT}")}));
    l.drop_file("s-echo.json", &orders_file("SEC-ECHO", 2));
    expected += 2;
    expect_within(WAIT, || no_fault_left(&emu), || agent.log_text());
    expect_settled(&l, expected, &agent, "echo round");
    // An order the cloud cannot take (a goods code over Ovopark's 100 characters)
    // is rejected; a file that is not JSON is moved to rejected/ with a note.
    let mut bad: Value = serde_json::from_slice(&orders_file("SEC-BAD", 1)).unwrap();
    bad[0]["lines"][0]["code"] = Value::String("9".repeat(120));
    l.drop_file("s-bad.json", &serde_json::to_vec(&bad).unwrap());
    l.drop_file("s-broken.json", b"[{\"order_no\": \"SEC-BROKEN\", ");
    expected += 1;
    expect_within(WAIT, || all_settled(&l, expected), || agent.log_text());
    assert_eq!(
        dest(&l, "ovopark")["rejected"],
        1,
        "the long code is rejected"
    );
    assert!(
        Layout::files_in(&l.inbox.join("rejected"))
            .iter()
            .any(|f| f.starts_with("s-broken")),
        "the broken file is rejected"
    );
    // the database while the agent runs (the WAL holds the recent writes)
    hay.files("state dir while running", &l.state, &[]);
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["orders", "--json", "--limit", "1000"],
        &["orders", "--state", "rejected"],
        &["check-config"],
        &["check-config", "--online"],
        &["retry", "--dest", "ovopark", "--order", "SEC-BAD-00"],
    ] {
        let o = cli(&l.config, args);
        hay.output(&args.join(" "), &o);
    }
    let online = cli(&l.config, &["check-config", "--online"]);
    assert!(
        online.status.success(),
        "{}",
        String::from_utf8_lossy(&online.stdout)
    );
    let p = cli(
        &l.config,
        &[
            "parse",
            "--json",
            "--source",
            "lane1",
            &l.inbox.join("rejected/s-broken.json").to_string_lossy(),
        ],
    );
    assert_eq!(
        p.status.code(),
        Some(4),
        "parse reports the unreadable file"
    );
    hay.output("parse", &p);
    assert!(agent.stop().success());

    // The panic and log renderings of the loaded configuration.
    let cfg = tillrelay::config::Config::load(&l.config).unwrap();
    hay.add("Config {:?}", format!("{cfg:?}"));
    hay.add("Config {:#?}", format!("{cfg:#?}"));
    hay.add("Config as TOML", cfg.to_toml().unwrap());
    hay.add("Config as JSON", cfg.to_json().unwrap().to_string());

    // ── 2. Wrong secrets (Ovopark from a file, WDT inline): refused, paused.
    write_config(
        &l,
        &emu.base(),
        &format!("secret_file = {ovo_wrong_file:?}"),
        &format!("secret = \"{WDT_WRONG}\""),
    );
    let mut agent = Agent::start(&l.config, &log, &trace);
    l.drop_file("s-wrong.json", &orders_file("SEC-W", 2));
    expect_within(
        WAIT,
        || dest(&l, "ovopark")["paused"].is_string() && dest(&l, "wdt")["paused"].is_string(),
        || {
            format!(
                "both destinations pause on a refused signature: {}",
                agent.log_text()
            )
        },
    );
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["orders", "--json"],
    ] {
        hay.output(
            &format!("wrong secrets: {}", args.join(" ")),
            &cli(&l.config, args),
        );
    }
    let online = cli(&l.config, &["check-config", "--online"]);
    assert_eq!(online.status.code(), Some(1));
    hay.output("wrong secrets: check-config --online", &online);
    assert!(agent.stop().success());

    // ── 3. TLS failure: a server whose certificate nobody trusts.
    let pki = test_pki(&["127.0.0.1"], false);
    let proxy = TlsProxy::start(&pki, emu.addr());
    write_config(
        &l,
        &proxy.base(),
        &format!("secret = \"{OVO_SECRET}\""),
        &format!("secret_file = {wdt_file:?}"),
    );
    let mut agent = Agent::start(&l.config, &log, &trace);
    l.drop_file("s-tls.json", &orders_file("SEC-T", 1));
    expect_within(
        WAIT,
        || {
            ["ovopark", "wdt"].iter().all(|d| {
                dest(&l, d)["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("certificate"))
            })
        },
        || agent.log_text(),
    );
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["orders", "--json"],
    ] {
        hay.output(&format!("tls: {}", args.join(" ")), &cli(&l.config, args));
    }
    hay.output(
        "tls: check-config --online",
        &cli(&l.config, &["check-config", "--online"]),
    );
    hay.files("state dir while running (tls)", &l.state, &[]);
    assert!(agent.stop().success());

    // ── 4. Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    write_config(
        &l,
        &closed_base,
        &format!("secret = \"{OVO_SECRET}\""),
        &format!("secret = \"{WDT_SECRET}:{WDT_SALT}\""),
    );
    let o = cli(&l.config, &["check-config", "--online"]);
    assert_eq!(o.status.code(), Some(1));
    hay.output("unreachable: check-config --online", &o);

    // Every file the agent and the commands wrote, after the runs.
    let skip = [l.config.clone(), wdt_file.clone(), ovo_wrong_file.clone()];
    // Every path above was really taken (the log says so), at trace level.
    let log_text = fs::read_to_string(&log).unwrap();
    for evidence in [
        "[DEBUG]",
        "HTTP 500",
        "not JSON",
        "(injected)",
        "HTTP 429",
        "rate limited",
        "reset",
        "Peer disconnected",
        "internal error; request had",
        "签名错误",
        "rejected: order SEC-BAD-00",
        "rejected s-broken.json",
        "SIGN_WRONG",
        "验证失败",
        "UnknownIssuer",
    ] {
        assert!(log_text.contains(evidence), "the log shows no {evidence:?}");
    }
    hay.files("box", dir.path(), &skip);
    assert!(
        hay.items
            .iter()
            .any(|(label, _)| label.ends_with("agent.log")),
        "the agent's log is searched"
    );
    assert!(
        hay.items
            .iter()
            .any(|(label, _)| label.contains("queue.db")),
        "the database is searched"
    );
    hay.assert_clean();
}

/// Config files broken on or around the secret line: `check-config`, `run` and
/// `status` all refuse them (exit 3) with a message naming the line or key, and none
/// quotes the secret.
#[test]
fn config_errors_never_quote_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let base = "http://127.0.0.1:9";
    let missing = dir.path().join("no-such.secret");
    let a_dir = dir.path().join("a-dir");
    fs::create_dir(&a_dir).unwrap();
    let nosalt = dir.path().join("nosalt.secret");
    fs::write(&nosalt, "wdtsecretABCsaltDEF\n").unwrap();
    // A FIFO with no writer hung every command at open; /dev/zero read until memory ran out.
    let fifo = dir.path().join("secret.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let huge = dir.path().join("huge.secret");
    fs::write(&huge, vec![b'x'; 200 * 1024]).unwrap();
    let wdt_ok = format!("secret = \"{WDT_SECRET}:{WDT_SALT}\"");
    let ovo_ok = format!("secret = \"{OVO_SECRET}\"");
    // (what, ovopark secret line, wdt secret line, a word the error must contain)
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "unterminated string",
            format!("secret = \"{OVO_SECRET}"),
            wdt_ok.clone(),
            "line",
        ),
        (
            "unterminated literal",
            format!("secret = '{OVO_SECRET}"),
            wdt_ok.clone(),
            "line",
        ),
        (
            "text after the value",
            format!("secret = \"{OVO_SECRET}\" x"),
            wdt_ok.clone(),
            "line",
        ),
        (
            "no quotes",
            format!("secret = {OVO_SECRET}"),
            wdt_ok.clone(),
            "line",
        ),
        (
            "quoted key, no quotes",
            format!("\"secret\" = {OVO_SECRET}"),
            wdt_ok.clone(),
            "line",
        ),
        (
            "bad escape",
            format!("secret = \"{OVO_SECRET}\\q\""),
            wdt_ok.clone(),
            "line",
        ),
        (
            "unterminated multi-line",
            format!("secret = \"\"\"{OVO_SECRET}"),
            wdt_ok.clone(),
            "line",
        ),
        (
            "an integer",
            format!("secret = {NUMERIC_SECRET}"),
            wdt_ok.clone(),
            "secret",
        ),
        (
            "an array",
            format!("secret = [\"{OVO_SECRET}\"]"),
            wdt_ok.clone(),
            "secret",
        ),
        (
            "a table",
            format!("secret = {{ value = \"{OVO_SECRET}\" }}"),
            wdt_ok.clone(),
            "secret",
        ),
        (
            "a misspelt key",
            format!("secrte = \"{OVO_SECRET}\""),
            wdt_ok.clone(),
            "secrte",
        ),
        (
            "both secret and secret_file",
            format!("{ovo_ok}\nsecret_file = {missing:?}"),
            wdt_ok.clone(),
            "not both",
        ),
        (
            "a missing secret_file",
            format!("secret_file = {missing:?}"),
            wdt_ok.clone(),
            "no-such.secret",
        ),
        (
            "a secret_file that is a directory",
            format!("secret_file = {a_dir:?}"),
            wdt_ok.clone(),
            "secret_file",
        ),
        (
            "a secret_file that is a FIFO",
            format!("secret_file = {fifo:?}"),
            wdt_ok.clone(),
            "secret.fifo is a FIFO",
        ),
        (
            "a secret_file that is /dev/zero",
            "secret_file = \"/dev/zero\"".to_string(),
            wdt_ok.clone(),
            "/dev/zero is a device",
        ),
        (
            "a secret_file of 200 KiB",
            format!("secret_file = {huge:?}"),
            wdt_ok.clone(),
            "at most 65536",
        ),
        (
            "wdt: a secret_file that is a FIFO",
            ovo_ok.clone(),
            format!("secret_file = {fifo:?}"),
            "wdt.secret_file",
        ),
        (
            "wdt: unterminated string",
            ovo_ok.clone(),
            format!("secret = \"{WDT_SECRET}:{WDT_SALT}"),
            "line",
        ),
        (
            "wdt: an integer",
            ovo_ok.clone(),
            format!("secret = {NUMERIC_SECRET}"),
            "secret",
        ),
        (
            "wdt: no salt",
            ovo_ok.clone(),
            "secret = \"wdtsecretABCsaltDEF\"".to_string(),
            "secret:salt",
        ),
        (
            "wdt: a secret_file with no salt",
            ovo_ok.clone(),
            format!("secret_file = {nosalt:?}"),
            "secret:salt",
        ),
        (
            "wdt: an empty salt",
            ovo_ok.clone(),
            format!("secret = \"{WDT_SECRET}:\""),
            "secret",
        ),
    ];
    let mut hay = Haystack::default();
    let mut wrong = Vec::new();
    for (what, ovo, wdt, word) in &cases {
        let text = example_config(&l, "200ms", None, &destinations(base, ovo, wdt));
        fs::write(&l.config, &text).unwrap();
        let mut control = Haystack::default();
        control.add("config", text);
        assert!(
            !control.leaks().is_empty(),
            "{what}: the search finds the config's secret"
        );
        for cmd in [
            &["check-config"][..],
            &["run"],
            &["status"],
            &["check-config", "--online"],
        ] {
            let o = cli(&l.config, cmd);
            let label = format!("{what}: {}", cmd.join(" "));
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            if o.status.code() != Some(3) || !err.contains(word) {
                wrong.push(format!(
                    "{label}: exit {:?}, expected 3 and {word:?} in: {err}",
                    o.status.code()
                ));
            }
            hay.output(&label, &o);
        }
        // the library's error value, as a panic or a log line would print it
        match tillrelay::config::Config::load(&l.config) {
            Ok(_) => wrong.push(format!("{what}: the library accepted it")),
            Err(e) => {
                hay.add(format!("{what}: ConfigError Display"), e.to_string());
                hay.add(format!("{what}: ConfigError Debug"), format!("{e:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    hay.files("state dir", &l.state, &[]);
    hay.assert_clean();
}
