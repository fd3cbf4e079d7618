//! Metrics and health with the real parts an integrator runs: the agent's live
//! `/metrics` checked by `promtool check metrics`; a real Prometheus on loopback that
//! scrapes a running agent and evaluates the shipped alert rules (a destination
//! paused on a bad secret raises `TillrelayDestinationPaused`); a real Pushgateway
//! that receives the pushes, also after it was down; and the shipped rules checked
//! and unit-tested by `promtool`.
//!
//! Needs Debian's `prometheus` and `prometheus-pushgateway` packages (CI installs
//! them, README: set-up). Missing binaries fail the tests with that message; nothing
//! is skipped.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::emu::Emu;
use common::poll;
use common::till::Till;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const INSTALL: &str = "install Debian's prometheus and prometheus-pushgateway packages \
     (apt-get install -y prometheus prometheus-pushgateway; .ci/run does it)";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A binary of the Prometheus packages, or a failure saying how to install it.
fn tool(name: &str) -> Command {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join(name).is_file());
    assert!(found, "{name} is not installed: {INSTALL}");
    Command::new(name)
}

/// `GET path` over plain HTTP/1.1: (status, body). Errors (nothing listening yet)
/// are `None`.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    // Prometheus and the gateway may answer chunked; the agent never does.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A till on the emulators with the shipped config's `[metrics]` edited by `edit`
/// (the shipped `listen` moved to a free port), and `box_id` set.
fn till(emu: &Emu, secret_from: &str, secret_to: &str, edit: &str) -> (Till, String) {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let t = Till::new(&emu.dest_config("", "").replace(secret_from, secret_to));
    t.edit_config(|c| {
        assert!(
            c.contains("listen = \"127.0.0.1:9898\""),
            "the shipped [metrics]"
        );
        c.replace(
            "listen = \"127.0.0.1:9898\"",
            &format!("listen = \"{addr}\"{edit}"),
        )
        .replacen("[agent]\n", "[agent]\nbox_id = \"test-box\"\n", 1)
    });
    (t, addr)
}

/// A child process killed and reaped on drop.
struct Proc(Child, PathBuf);

impl Proc {
    fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let f = fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}; {INSTALL}"));
        Proc(child, log.to_path_buf())
    }

    fn log(&self) -> String {
        common::tail(&fs::read_to_string(&self.1).unwrap_or_default(), 30)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_live_scrape_passes_promtool_and_shows_what_was_captured_and_sent() {
    let emu = Emu::process();
    let (mut t, addr) = till(&emu, "", "", "");
    t.start();
    t.drop_fixtures();
    assert!(
        t.wait_delivered(&["ovopark", "wdt"], 4, WAIT, false),
        "{}",
        t.explain()
    );
    let (status, health) = get(&addr, "/health").expect("the endpoint answers");
    assert_eq!((status, health.trim()), (200, "{\"status\":\"ok\"}"));
    // The outbox read is cached for a second: wait for one that shows everything.
    let mut text = String::new();
    let seen = poll(WAIT, || {
        text = get(&addr, "/metrics").map(|r| r.1).unwrap_or_default();
        text.contains("tillrelay_destination_delivered_total{destination=\"wdt\"} 4\n")
            && text.contains("tillrelay_destination_delivered_total{destination=\"ovopark\"} 4\n")
    });
    assert!(seen, "{text}\n{}", t.log());

    let mut check = tool("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let version = env!("CARGO_PKG_VERSION");
    let revision = env!("TILLRELAY_COMMIT");
    for line in [
        format!(
            "tillrelay_build_info{{version=\"{version}\",revision=\"{revision}\",box_id=\"test-box\"}} 1"
        ),
        "tillrelay_box_info{box_id=\"test-box\"} 1".to_string(),
        "tillrelay_outbox_up 1".into(),
        "tillrelay_outbox_max_size_bytes 268435456".into(),
        "tillrelay_source_files_total{source=\"lane1\"} 2".into(),
        "tillrelay_source_orders_total{source=\"lane1\"} 4".into(),
        "tillrelay_source_duplicates_total{source=\"lane1\"} 0".into(),
        "tillrelay_source_rejected_files_total{source=\"lane1\"} 0".into(),
        "tillrelay_destination_pending_orders{destination=\"ovopark\"} 0".into(),
        "tillrelay_destination_oldest_pending_age_seconds{destination=\"wdt\"} 0".into(),
        "tillrelay_destination_paused{destination=\"ovopark\",reason=\"\"} 0".into(),
        "tillrelay_destination_rejected_total{destination=\"wdt\"} 0".into(),
        "tillrelay_destination_requests_total{destination=\"ovopark\",outcome=\"delivered\"} 4"
            .into(),
        "tillrelay_destination_request_duration_seconds_count{destination=\"ovopark\"} 4".into(),
        "tillrelay_destination_server_clock_offset_seconds{destination=\"wdt\"} 0".into(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
    for family in [
        "\nprocess_resident_memory_bytes ",
        "\nprocess_cpu_seconds_total ",
        "\nprocess_open_fds ",
        "\nprocess_max_fds ",
        "\nprocess_start_time_seconds ",
        "tillrelay_outbox_size_bytes ",
        "tillrelay_outbox_disk_available_bytes ",
        "tillrelay_outbox_full 0",
        "tillrelay_source_last_capture_timestamp_seconds{source=\"lane1\"} ",
    ] {
        assert!(text.contains(family), "no {family:?} in:\n{text}");
    }
    let (status, _) = get(&addr, "/nothing").unwrap();
    assert_eq!(status, 404);
    t.stop();
}

#[test]
fn prometheus_scrapes_the_agent_and_fires_the_paused_destination_alert() {
    const GOOD: &str = "demo-ovopark-secret";
    let emu = Emu::process();
    let (mut t, addr) = till(&emu, GOOD, "WRONG-metrics-secret", "");
    t.start();
    t.drop_fixtures();
    assert!(
        poll(WAIT, || t.dest("ovopark")["paused"].is_string()),
        "{}",
        t.explain()
    );

    // The shipped scrape config and rules, scraping every second, with this agent as
    // its one target (and the gateway's target somewhere nothing listens).
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let shipped = root().join("examples/prometheus");
    let config = fs::read_to_string(shipped.join("prometheus.yml"))
        .unwrap()
        .replace("scrape_interval: 60s", "scrape_interval: 1s")
        .replace("evaluation_interval: 60s", "evaluation_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s")
        .replace(
            "127.0.0.1:9091",
            &format!("127.0.0.1:{}", common::free_port()),
        );
    fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    fs::copy(shipped.join("alerts.yml"), dir.path().join("alerts.yml")).unwrap();
    fs::create_dir(dir.path().join("targets")).unwrap();
    fs::write(
        dir.path().join("targets/test.yml"),
        format!("- targets: [\"{addr}\"]\n  labels: {{box_id: test-box}}\n"),
    )
    .unwrap();
    let mut cmd = tool("prometheus");
    cmd.arg(format!(
        "--config.file={}",
        dir.path().join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.path().join("data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let prom = Proc::spawn(cmd, &dir.path().join("prometheus.log"));
    let api = format!("127.0.0.1:{port}");

    // The rule has `for: 5m`: evaluated and true, the alert is pending at once (and
    // firing five minutes later, as alerts.test.yml proves without waiting).
    let mut alerts = Value::Null;
    let raised = poll(WAIT, || {
        alerts = get(&api, "/api/v1/alerts")
            .and_then(|(_, b)| serde_json::from_str(&b).ok())
            .unwrap_or(Value::Null);
        alerts["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["labels"]["alertname"] == "TillrelayDestinationPaused"
                    && x["labels"]["destination"] == "ovopark"
                    && x["labels"]["box_id"] == "test-box"
                    && matches!(x["state"].as_str(), Some("pending" | "firing"))
            })
        })
    });
    assert!(raised, "alerts: {alerts}\nprometheus:\n{}", prom.log());
    let a = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["labels"]["alertname"] == "TillrelayDestinationPaused")
        .unwrap();
    let reason = a["labels"]["reason"].as_str().unwrap();
    assert!(
        ["auth", "signature", "shop", "permission", "other"].contains(&reason),
        "{a}"
    );
    // Only ovopark is paused; wdt delivered and raises nothing.
    assert!(
        !alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["labels"]["destination"] == "wdt"),
        "{alerts}"
    );
    let (status, health) = get(&addr, "/health").unwrap();
    assert_eq!(
        status, 200,
        "a paused destination is not a capture fault: {health}"
    );

    // The box's own box_id and the target file's are one label, not box_id beside
    // exported_box_id (honor_labels in the shipped config).
    let mut info = Value::Null;
    let seen = poll(WAIT, || {
        info = get(&api, "/api/v1/query?query=tillrelay_build_info")
            .and_then(|(_, b)| serde_json::from_str(&b).ok())
            .unwrap_or(Value::Null);
        info["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    assert!(seen, "{info}");
    let labels = &info["data"]["result"][0]["metric"];
    assert_eq!(labels["box_id"], "test-box", "{info}");
    assert!(labels.get("exported_box_id").is_none(), "{info}");
    assert_eq!(labels["job"], "tillrelay", "{info}");

    // Every dashboard query is one the real Prometheus accepts.
    let http = common::http();
    for q in dashboard_queries() {
        let mut r = http
            .get(format!("http://{api}/api/v1/query"))
            .query("query", &q)
            .call()
            .unwrap();
        let body = r.body_mut().read_to_string().unwrap();
        assert!(body.contains("\"status\":\"success\""), "{q}: {body}");
    }

    // A dead box does not clear its alerts silently: once it stops answering,
    // TillrelayBoxDown stands for it (pending at once, firing after its `for`).
    t.stop();
    let down = poll(WAIT, || {
        alerts = get(&api, "/api/v1/alerts")
            .and_then(|(_, b)| serde_json::from_str(&b).ok())
            .unwrap_or(Value::Null);
        alerts["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["labels"]["alertname"] == "TillrelayBoxDown"
                    && x["labels"]["box_id"] == "test-box"
                    && x["labels"]["instance"] == addr.as_str()
            })
        })
    });
    assert!(down, "alerts: {alerts}\nprometheus:\n{}", prom.log());
}

#[test]
fn a_pushgateway_receives_the_pushes_and_a_failed_push_changes_nothing() {
    let emu = Emu::process();
    let port = common::free_port();
    let gw = format!("127.0.0.1:{port}");
    let (mut t, _) = till(
        &emu,
        "",
        "",
        &format!("\npush_url = \"http://{gw}\"\npush_interval = \"1s\"\n"),
    );
    t.edit_config(|c| c.replace("push_interval = \"60s\"\n", ""));
    // The gateway is not up yet: pushes fail, capture and upload go on.
    t.start();
    t.drop_fixtures();
    assert!(
        t.wait_delivered(&["ovopark", "wdt"], 4, WAIT, false),
        "{}",
        t.explain()
    );
    assert!(
        poll(WAIT, || t.log().contains("metrics: push to")),
        "{}",
        t.log()
    );

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tool("prometheus-pushgateway");
    cmd.arg(format!("--web.listen-address={gw}"));
    let pg = Proc::spawn(cmd, &dir.path().join("pushgateway.log"));
    let mut text = String::new();
    let version = env!("CARGO_PKG_VERSION");
    let pushed = poll(WAIT, || {
        text = get(&gw, "/metrics").map(|r| r.1).unwrap_or_default();
        text.lines().any(|l| {
            l.starts_with("tillrelay_build_info{")
                && l.contains("box_id=\"test-box\"")
                && l.contains("job=\"tillrelay\"")
                && l.contains(&format!("version=\"{version}\""))
        }) && text.lines().any(|l| {
            l.starts_with("tillrelay_destination_delivered_total{")
                && l.contains("destination=\"wdt\"")
                && l.contains("job=\"tillrelay\"")
                && l.ends_with(" 4")
        })
    });
    assert!(
        pushed,
        "{text}\ngateway:\n{}\nagent:\n{}",
        pg.log(),
        t.log()
    );
    assert!(
        poll(WAIT, || t.log().contains("works again")),
        "{}",
        t.log()
    );
    // Debian's gateway (1.5) reads the gzipped pushes: no fallback to plain text.
    assert!(
        !t.log().contains("does not take gzipped pushes"),
        "{}",
        t.log()
    );
    t.stop();
}

#[test]
fn the_shipped_rules_and_config_pass_promtool_check_and_their_unit_tests() {
    let dir = root().join("examples/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["check", "config", "prometheus.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let out = tool("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The dashboard is JSON with panels over the families the agent exposes.
    let dash: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let exprs = dash.to_string();
    for f in [
        "tillrelay_destination_pending_orders",
        "tillrelay_destination_paused",
        "tillrelay_source_last_capture_timestamp_seconds",
        "tillrelay_outbox_size_bytes",
        "tillrelay_config_info",
        "tillrelay_config_pull_successful",
    ] {
        assert!(exprs.contains(f), "the dashboard does not show {f}");
    }
    // At 500 boxes: "All" is one regex, not 500 names; tables ask for one instant
    // each; the oldest backlogs are the top few; the boxes that are down are named.
    let var = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "box_id")
        .expect("a box variable");
    assert_eq!(var["multi"], true, "{var}");
    assert_eq!(var["includeAll"], true, "{var}");
    assert_eq!(var["allValue"], ".*", "{var}");
    let panels = dash["panels"].as_array().unwrap();
    for p in panels.iter().filter(|p| p["type"] == "table") {
        for t in p["targets"].as_array().unwrap() {
            assert!(
                t["instant"] == true && t["format"] == "table",
                "table {} asks for a range: {t}",
                p["title"]
            );
        }
    }
    let expr_of = |needle: &str| {
        panels
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .any(|t| t["expr"].as_str().is_some_and(|e| e.contains(needle)))
    };
    assert!(expr_of(
        "topk(20, max by (box_id, destination) (tillrelay_destination_oldest_pending_age_seconds)"
    ));
    assert!(expr_of("up{job=\"tillrelay\"} == 0"));
}

/// Every query of the shipped dashboard, as Grafana sends it with "All" chosen.
fn dashboard_queries() -> Vec<String> {
    let dash: Value = serde_json::from_str(
        &fs::read_to_string(root().join("examples/prometheus/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(|e| e.replace("$box_id", ".*")))
        .collect()
}

/// Reads what the server sends until it closes: (head, body bytes).
fn exchange(addr: &str, request: &[u8]) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let at = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    (
        String::from_utf8_lossy(&out[..at]).to_string(),
        out[at + 4..].to_vec(),
    )
}

/// The head of an answer to `GET /metrics`, or "reset" when the server reset the
/// connection (a timeout fails).
fn refused_or_answered(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => String::from_utf8_lossy(&out).to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset".into(),
        Err(e) => panic!("no answer: {e}"),
    }
}

#[test]
fn a_slow_client_does_not_hold_back_scrapes_and_head_sends_the_head_alone() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let emu = Emu::process();
    let (mut t, addr) = till(&emu, "", "", "");
    t.start();
    assert!(
        poll(WAIT, || get(&addr, "/health").is_some()),
        "{}",
        t.log()
    );

    // One client sends its request a byte every 2 s (its head would take a minute).
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let started = Arc::new(AtomicBool::new(false));
    let (a, go) = (addr.clone(), started.clone());
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&a).unwrap();
        for (i, b) in request.iter().enumerate() {
            if s.write_all(&[*b]).is_err() {
                return i; // the server closed it: bytes it had sent
            }
            go.store(true, Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs(2));
        }
        request.len()
    });
    assert!(poll(WAIT, || started.load(Ordering::Relaxed)));
    // Meanwhile a scrape is answered (get's own timeout is 10 s).
    let (status, body) = get(&addr, "/metrics").expect("a scrape answered beside a slow client");
    assert_eq!(status, 200);
    assert!(body.contains("tillrelay_outbox_up 1\n"), "{body}");
    // And the slow client is dropped at its request's deadline, long before its head
    // is complete.
    let sent = slow.join().unwrap();
    assert!(
        sent < request.len(),
        "the slow client was served to the end"
    );

    // Connections are bounded: with the maximum held open, one more is told "busy"
    // at once instead of waiting; once they are dropped, scrapes are answered again.
    let held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"G").unwrap();
            s
        })
        .collect();
    let mut busy = String::new();
    assert!(
        poll(WAIT, || {
            // "busy", or the connection reset when the request came after the answer:
            // either way at once, where a server serving one at a time keeps it waiting.
            busy = refused_or_answered(&addr);
            busy.starts_with("HTTP/1.1 503 ") || busy == "reset"
        }),
        "{busy}"
    );
    let mut held = held;
    for s in &mut held {
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // The server ends each at its deadline (EOF or a reset, never an answer).
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
    assert!(poll(WAIT, || get(&addr, "/metrics").is_some_and(|r| r.0 == 200)));

    // HEAD: the head (with the body's length), no body.
    let (head, body) = exchange(&addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a length")
        .parse()
        .unwrap();
    assert!(len > 1000, "{head}");
    assert!(body.is_empty(), "{}", String::from_utf8_lossy(&body));
    let (head, body) = exchange(&addr, b"HEAD /health HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(body.is_empty());
    t.stop();
}

#[test]
fn a_quiet_print_proxy_lane_reports_no_printer_state_until_a_pos_tries_it() {
    // A printer that listens (and takes a job), and an address where nothing listens.
    let printer = TcpListener::bind("127.0.0.1:0").unwrap();
    let paddr = printer.local_addr().unwrap();
    let dead = common::free_port();
    let (quiet_port, dark_port) = (common::free_port(), common::free_port());
    let emu = Emu::process();
    let (mut t, addr) = till(&emu, "", "", "");
    t.edit_config(|c| {
        let lane = |name: &str, port: u16, printer: &str| {
            format!(
                "\n[[source]]\nname = \"{name}\"\nkind = \"tcp\"\nshop = \"D001\"\n\
                 machine_id = \"NVR01-CH04\"\nlisten = \"127.0.0.1:{port}\"\n\
                 printer = \"{printer}\"\nallow = [\"127.0.0.1\"]\n"
            )
        };
        format!(
            "{c}{}{}",
            lane("quiet", quiet_port, &paddr.to_string()),
            lane("dark", dark_port, &format!("127.0.0.1:{dead}"))
        )
    });
    t.start();
    // Both lanes run (their connected gauge is there) and no POS has printed: the
    // printers' state is unknown, so nothing says "unreachable" (a critical alert
    // 5 minutes later, before).
    let mut text = String::new();
    let up = poll(WAIT, || {
        text = get(&addr, "/metrics").map(|r| r.1).unwrap_or_default();
        text.contains("tillrelay_source_connected{source=\"quiet\"} 0\n")
            && text.contains("tillrelay_source_connected{source=\"dark\"} 0\n")
    });
    assert!(up, "{text}\n{}", t.log());
    assert!(
        !text.contains("tillrelay_source_printer_reachable{source=\"quiet\"}")
            && !text.contains("tillrelay_source_printer_reachable{source=\"dark\"}"),
        "{text}"
    );
    // A lane that never captured has its capture series at 0 from the start.
    assert!(
        text.contains("tillrelay_source_last_capture_timestamp_seconds{source=\"quiet\"} 0\n"),
        "{text}"
    );
    // A POS prints on each: the printer that listens is reachable, the other not.
    for port in [quiet_port, dark_port] {
        let mut pos = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = pos.write_all(b"\x1b@hello\n");
    }
    let seen = poll(WAIT, || {
        text = get(&addr, "/metrics").map(|r| r.1).unwrap_or_default();
        text.contains("tillrelay_source_printer_reachable{source=\"quiet\"} 1\n")
            && text.contains("tillrelay_source_printer_reachable{source=\"dark\"} 0\n")
    });
    assert!(seen, "{text}\n{}", t.log());
    drop(printer);
    t.stop();
}

#[test]
fn scrapes_are_gzipped_when_asked_and_pushes_fall_back_to_plain_text_for_an_old_gateway() {
    use std::sync::{Arc, Mutex};

    // A gateway older than 1.5: a gzipped body is "invalid metric name" (400).
    let gw = TcpListener::bind("127.0.0.1:0").unwrap();
    let gw_addr = gw.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<(bool, String)>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for c in gw.incoming() {
            let Ok(mut c) = c else { continue };
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // The head, then Content-Length bytes of body.
            let (head, len) = loop {
                let Ok(n) = c.read(&mut chunk) else {
                    break (String::new(), 0);
                };
                if n == 0 {
                    break (String::new(), 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..at]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    buf.drain(..at + 4);
                    break (head, len);
                }
            };
            while buf.len() < len {
                match c.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            let zipped = head.contains("content-encoding: gzip");
            log.lock()
                .unwrap()
                .push((zipped, String::from_utf8_lossy(&buf).to_string()));
            let answer: &[u8] = if zipped {
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = c.write_all(answer);
        }
    });

    let emu = Emu::process();
    let (mut t, addr) = till(
        &emu,
        "",
        "",
        &format!("\npush_url = \"http://{gw_addr}\"\npush_interval = \"1s\"\n"),
    );
    t.edit_config(|c| c.replace("push_interval = \"60s\"\n", ""));
    t.start();
    // Tried gzipped first, then plain text, which it keeps to.
    let plain = poll(WAIT, || {
        let s = seen.lock().unwrap();
        s.first().is_some_and(|p| p.0)
            && s.iter().filter(|p| !p.0).count() >= 2
            && s.iter().skip(1).all(|p| !p.0)
    });
    assert!(
        plain,
        "{:?}\n{}",
        seen.lock().unwrap().iter().map(|p| p.0).collect::<Vec<_>>(),
        t.log()
    );
    assert!(
        seen.lock().unwrap()[1]
            .1
            .contains("tillrelay_outbox_up 1\n"),
        "the plain push is the exposition"
    );
    assert!(
        t.log().contains("does not take gzipped pushes"),
        "{}",
        t.log()
    );

    // A scrape asking for gzip gets it, and it reads as the exposition.
    let (head, body) = exchange(
        &addr,
        b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
    );
    assert!(head.contains("\r\nContent-Encoding: gzip\r\n"), "{head}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("tillrelay_outbox_up 1\n"), "{text}");
    assert!(
        text.contains("tillrelay_push_failures_total 0\n"),
        "a push that fell back is not a failure: {text}"
    );
    assert!(
        body.len() * 3 < text.len(),
        "{} of {}",
        body.len(),
        text.len()
    );
    // Without it: plain text.
    let (head, body) = exchange(&addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(!head.contains("Content-Encoding"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("tillrelay_outbox_up 1\n"));
    t.stop();
}
