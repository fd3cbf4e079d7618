//! The upload engine over a real SQLite outbox and the emulators on loopback: faults end
//! in exactly-once delivery, a bad secret pauses one destination without touching the
//! other or losing orders, a rejected order is delivered after a fix and `retry`, and a
//! backlog drains at once when the network returns.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::emu::Emu;
use serde_json::json;
use tillrelay::clock::{Clock, ManualClock};
use tillrelay::emulator::EmuConfig;
use tillrelay::lifecycle::{Heartbeats, Shutdown};
use tillrelay::order::Order;
use tillrelay::outbox::{Capture, CaptureKind, DeliveryState, Outbox};
use tillrelay::outbox::{OutboxConfig, Synchronous};
use tillrelay::upload::engine::{EngineConfig, Wake, Worker};
use tillrelay::upload::ovopark::OvoparkClient;
use tillrelay::upload::wdt::WdtClient;
use tillrelay::upload::{Destination, Outcome};

/// A destination as the daemon holds it.
type Client = Box<dyn Destination>;

const DESTS: [&str; 2] = ["ovopark", "wdt"];

fn fast() -> EngineConfig {
    EngineConfig {
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(2),
        probe_interval: Duration::from_secs(1),
        recheck: Duration::from_secs(1),
        poll: Duration::from_millis(100),
    }
}

fn outbox_cfg() -> OutboxConfig {
    OutboxConfig {
        synchronous: Synchronous::Normal,
        max_size: 64 << 20,
        retention: Duration::from_secs(86400),
        raw_retention: Duration::from_secs(86400),
        unparsed_percent: 25,
    }
}

fn open(dir: &Path) -> Outbox {
    let dests: Vec<String> = DESTS.iter().map(|d| d.to_string()).collect();
    Outbox::open(&dir.join("queue.db"), &outbox_cfg(), &dests).unwrap()
}

fn ingest(ob: &mut Outbox, name: &str, orders: &[Order]) {
    let unit = Capture {
        source: "lane1",
        kind: CaptureKind::File,
        name: Some(name),
        size: 1,
        hash: format!("hash-{name}"),
        raw: None,
        error: None,
    };
    let r = ob.ingest(&unit, orders).unwrap();
    assert_eq!(r.new, orders.len());
}

fn clients(emu: &Emu, ovo_secret: Option<&str>) -> (Client, Client) {
    let (o, w) = emu.dest_settings(
        "timeout_secs = 2",
        "timeout_secs = 2\nrate_limit_wait_secs = 1",
        |text| match ovo_secret {
            Some(s) => text.replace(
                "secret = \"demo-ovopark-secret\"",
                &format!("secret = \"{s}\""),
            ),
            None => text,
        },
    );
    (
        Box::new(OvoparkClient::new(o, HashMap::new()).unwrap()) as Client,
        Box::new(WdtClient::new(w, HashMap::new()).unwrap()) as Client,
    )
}

/// Running workers; dropping stops and joins them.
struct Running {
    shutdown: Shutdown,
    wakes: Vec<Wake>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

fn run(dir: &Path, clients: Vec<(&str, Client)>, cfg: EngineConfig) -> Running {
    let shutdown = Shutdown::new();
    let beats = Heartbeats::new(Duration::from_secs(1));
    let mut wakes = Vec::new();
    let mut threads = Vec::new();
    for (dest, client) in clients {
        let wake = Wake::new();
        wakes.push(wake.clone());
        let worker = Worker::new(client, open(dir), cfg.clone(), wake);
        let (sd, beat) = (shutdown.clone(), beats.register(dest));
        threads.push(std::thread::spawn(move || worker.run(&sd, &beat)));
    }
    Running {
        shutdown,
        wakes,
        threads,
    }
}

fn accepted(emu: &Emu) -> (usize, usize) {
    emu.held()
}

/// (pending, delivered, rejected, paused) per destination, from the outbox.
fn dest_status(dir: &Path) -> HashMap<String, (i64, i64, i64, Option<String>)> {
    let ob = Outbox::open_read_only(&dir.join("queue.db")).unwrap();
    ob.status(tillrelay::outbox::now())
        .unwrap()
        .destinations
        .into_iter()
        .map(|d| (d.name, (d.pending, d.delivered, d.rejected, d.paused)))
        .collect()
}

fn exactly_once(emu: &Emu) {
    emu.assert_each_sent_once();
}

#[test]
fn faults_end_in_exactly_once_delivery_with_nothing_rejected() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let orders = common::fixture_orders();
    ingest(&mut open(dir.path()), "a.json", &orders);
    for mode in ["http500", "reset", "garbage"] {
        emu.fault(json!({"target": "both", "mode": mode, "count": 1}));
    }
    // The last fault set wins per cloud: make it several in a row.
    emu.fault(json!({"target": "both", "mode": "reset", "count": 3}));
    let (ovo, wdt) = clients(&emu, None);
    let running = run(dir.path(), vec![("ovopark", ovo), ("wdt", wdt)], fast());
    let n = orders.len();
    assert!(
        common::wait_until(Duration::from_secs(60), || accepted(&emu) == (n, n)),
        "{:?}",
        accepted(&emu)
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            let s = dest_status(dir.path());
            DESTS.iter().all(|d| s[*d] == (0, n as i64, 0, None))
        }),
        "{:?}",
        dest_status(dir.path())
    );
    drop(running);
    exactly_once(&emu);
    let stats = emu.get("/_emu/stats");
    assert!(
        stats["wdt"]["answers"]["fault:reset"].as_u64() == Some(3),
        "{stats}"
    );
}

#[test]
fn bad_secret_pauses_one_destination_loses_nothing_and_resumes_after_the_fix() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let orders = common::fixture_orders();
    let n = orders.len();
    ingest(&mut open(dir.path()), "a.json", &orders);
    let (ovo, wdt) = clients(&emu, Some("wrong-secret"));
    let running = run(dir.path(), vec![("ovopark", ovo), ("wdt", wdt)], fast());
    // Wangdiantong is not held up by Ovopark's misconfiguration.
    assert!(common::wait_until(Duration::from_secs(30), || accepted(
        &emu
    )
    .1 == n));
    assert!(common::wait_until(Duration::from_secs(10), || {
        dest_status(dir.path())["ovopark"].3.is_some()
    }));
    let s = dest_status(dir.path());
    let (pending, delivered, rejected, paused) = s["ovopark"].clone();
    assert_eq!((pending, delivered, rejected), (n as i64, 0, 0));
    let paused = paused.unwrap();
    assert!(paused.contains("code 7"), "{paused}");
    assert!(!paused.contains("wrong-secret"), "{paused}");
    assert_eq!(accepted(&emu).0, 0);
    drop(running);

    // The config is fixed and the agent restarted: everything goes out.
    let (ovo, _) = clients(&emu, None);
    let running = run(dir.path(), vec![("ovopark", ovo)], fast());
    assert!(common::wait_until(Duration::from_secs(30), || accepted(
        &emu
    )
    .0 == n));
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            dest_status(dir.path())["ovopark"] == (0, n as i64, 0, None)
        }),
        "{:?}",
        dest_status(dir.path())
    );
    drop(running);
    exactly_once(&emu);
}

#[test]
fn rejected_order_keeps_its_reason_and_goes_out_after_fix_and_retry() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let mut orders = common::fixture_orders();
    orders[1].lines[0].code = "X".repeat(101);
    let n = orders.len();
    ingest(&mut open(dir.path()), "a.json", &orders);
    let (ovo, wdt) = clients(&emu, None);
    let running = run(dir.path(), vec![("ovopark", ovo), ("wdt", wdt)], fast());
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let s = dest_status(dir.path());
            DESTS.iter().all(|d| s[*d] == (0, n as i64 - 1, 1, None))
        }),
        "{:?}",
        dest_status(dir.path())
    );
    let rejected = Outbox::open_read_only(&dir.path().join("queue.db"))
        .unwrap()
        .orders(Some(DeliveryState::Rejected), None, 100)
        .unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].order["order_no"], orders[1].order_no.as_str());
    for d in &rejected[0].deliveries {
        let reason = d.last_error.as_deref().unwrap_or_default();
        assert!(reason.contains("101 characters"), "{}: {reason}", d.dest);
    }

    // Fixed and re-queued (what `tillrelay retry` does): delivered, once.
    orders[1].lines[0].code = "SKU-20417".into();
    let mut ob = open(dir.path());
    assert!(ob.replace_order("lane1", &orders[1]).unwrap());
    assert_eq!(
        ob.retry_rejected(None, Some(&orders[1].order_no)).unwrap(),
        2
    );
    for w in &running.wakes {
        w.wake();
    }
    assert!(common::wait_until(Duration::from_secs(30), || accepted(
        &emu
    ) == (n, n)));
    assert!(common::wait_until(Duration::from_secs(10), || {
        let s = dest_status(dir.path());
        DESTS.iter().all(|d| s[*d] == (0, n as i64, 0, None))
    }));
    drop(running);
    exactly_once(&emu);
}

#[test]
fn backlog_drains_at_once_when_the_network_returns() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let orders = common::fixture_orders();
    let mut ob = open(dir.path());
    ingest(&mut ob, "a.json", &orders[..6]);
    emu.fault(json!({"target": "wdt", "mode": "reset", "count": 1000}));
    // Backoff far longer than this test may take: only draining can deliver in time.
    let slow = EngineConfig {
        retry_base: Duration::from_secs(3600),
        retry_max: Duration::from_secs(3600),
        ..fast()
    };
    let (_, wdt) = clients(&emu, None);
    let mut worker = Worker::new(wdt, open(dir.path()), slow, Wake::new());
    let p = worker.pass().unwrap();
    assert_eq!((p.claimed, p.retry, p.delivered), (6, 6, 0));
    // Still offline: the rows wait for their schedule.
    assert_eq!(worker.pass().unwrap().claimed, 0);

    // The network is back; a new order comes in and goes through...
    emu.fault(json!({"target": "wdt", "mode": "reset", "count": 0}));
    emu.clear_faults();
    ingest(&mut ob, "b.json", &orders[6..7]);
    let p = worker.pass().unwrap();
    assert_eq!((p.claimed, p.delivered), (1, 1));
    // ...and that success sends the backlog now, not in an hour.
    let p = worker.pass().unwrap();
    assert_eq!((p.claimed, p.delivered), (6, 6));
    assert_eq!(worker.pass().unwrap().claimed, 0);
    exactly_once(&emu);
}

#[test]
fn wake_sends_the_backlog_without_waiting_for_backoff() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let orders = common::fixture_orders();
    ingest(&mut open(dir.path()), "a.json", &orders);
    emu.fault(json!({"target": "both", "mode": "http500", "count": 1000}));
    let slow = EngineConfig {
        retry_base: Duration::from_secs(3600),
        retry_max: Duration::from_secs(3600),
        ..fast()
    };
    let (ovo, wdt) = clients(&emu, None);
    let running = run(dir.path(), vec![("ovopark", ovo), ("wdt", wdt)], slow);
    assert!(common::wait_until(Duration::from_secs(10), || {
        let s = emu.get("/_emu/stats");
        s["ovopark"]["requests"].as_u64() >= Some(1) && s["wdt"]["requests"].as_u64() >= Some(1)
    }));
    emu.clear_faults();
    // `tillrelay flush` / SIGUSR1.
    for w in &running.wakes {
        w.wake();
    }
    let n = orders.len();
    assert!(
        common::wait_until(Duration::from_secs(30), || accepted(&emu) == (n, n)),
        "{:?}",
        accepted(&emu)
    );
    drop(running);
    exactly_once(&emu);
}

/// An Ovopark client like [`clients`]' with `concurrency` requests in flight and the
/// given secret.
fn ovopark_with(emu: &Emu, concurrency: usize, secret: &str) -> Client {
    let (o, _) = emu.dest_settings(
        &format!("timeout_secs = 5\nconcurrency = {concurrency}"),
        "",
        |text| {
            text.replace(
                "secret = \"demo-ovopark-secret\"",
                &format!("secret = \"{secret}\""),
            )
        },
    );
    Box::new(OvoparkClient::new(o, HashMap::new()).unwrap()) as Client
}

/// Ingests `orders` into a fresh outbox and runs `client`'s worker for `dest` until
/// it has delivered them all.
fn deliver_all(dest: &str, client: Client, orders: &[Order]) {
    let dir = tempfile::tempdir().unwrap();
    ingest(&mut open(dir.path()), "a.json", orders);
    let running = run(dir.path(), vec![(dest, client)], fast());
    assert!(
        common::wait_until(Duration::from_secs(60), || {
            dest_status(dir.path())[dest] == (0, orders.len() as i64, 0, None)
        }),
        "{:?}",
        dest_status(dir.path())
    );
    drop(running);
}

/// `n` distinct orders made from the fixtures.
fn many_orders(n: usize) -> Vec<Order> {
    let base = common::fixture_orders();
    (0..n)
        .map(|i| {
            let mut o = base[i % base.len()].clone();
            o.order_no = format!("{}-{i}", o.order_no);
            o
        })
        .collect()
}

#[test]
fn ovopark_requests_overlap_up_to_the_configured_concurrency_and_arrive_once() {
    for concurrency in [1, 3] {
        let emu = Emu::start(EmuConfig::default());
        // A WAN round trip: without overlap, each order costs one.
        emu.post("/_emu/latency", json!({"target": "ovopark", "ms": 100}));
        let dir = tempfile::tempdir().unwrap();
        let orders = many_orders(24);
        ingest(&mut open(dir.path()), "a.json", &orders);
        let running = run(
            dir.path(),
            vec![(
                "ovopark",
                ovopark_with(&emu, concurrency, "demo-ovopark-secret"),
            )],
            fast(),
        );
        assert!(
            common::wait_until(Duration::from_secs(60), || {
                dest_status(dir.path())["ovopark"].1 == orders.len() as i64
            }),
            "{:?}",
            dest_status(dir.path())
        );
        drop(running);
        assert_eq!(accepted(&emu).0, orders.len());
        exactly_once(&emu);
        let seen = emu.get("/_emu/stats")["ovopark"]["max_in_flight"]
            .as_u64()
            .unwrap();
        if concurrency == 1 {
            assert_eq!(seen, 1);
        } else {
            // Never more than configured; and the senders did overlap (each request
            // is held 100 ms, so three senders cannot miss each other).
            assert!((2..=concurrency as u64).contains(&seen), "{seen}");
        }
    }
}

#[test]
fn a_fault_under_concurrency_stops_new_requests_and_loses_nothing() {
    let emu = Emu::start(EmuConfig::default());
    emu.post("/_emu/latency", json!({"target": "ovopark", "ms": 20}));
    emu.fault(json!({"target": "ovopark", "mode": "http500", "count": 2}));
    let orders = many_orders(40);
    deliver_all(
        "ovopark",
        ovopark_with(&emu, 4, "demo-ovopark-secret"),
        &orders,
    );
    assert_eq!(accepted(&emu).0, orders.len());
    exactly_once(&emu);
    let stats = emu.get("/_emu/stats");
    assert_eq!(stats["ovopark"]["answers"]["fault:http500"], 2, "{stats}");
}

#[test]
fn under_concurrency_a_misconfigured_destination_gets_no_new_requests() {
    let emu = Emu::start(EmuConfig::default());
    emu.post("/_emu/latency", json!({"target": "ovopark", "ms": 50}));
    let dir = tempfile::tempdir().unwrap();
    let orders = many_orders(40);
    ingest(&mut open(dir.path()), "a.json", &orders);
    let client = ovopark_with(&emu, 4, "wrong");
    let cfg = EngineConfig {
        probe_interval: Duration::from_secs(3600),
        ..fast()
    };
    // One pass, driven here: it returns once every request in flight is answered (no
    // sleeping for them to settle).
    let mut worker = Worker::new(client, open(dir.path()), cfg, Wake::new());
    let p = worker.pass().unwrap();
    assert!(p.misconfigured.is_some(), "{p:?}");
    assert!(
        dest_status(dir.path())["ovopark"].3.is_some(),
        "{:?}",
        dest_status(dir.path())
    );
    // The first refusal stopped the pass: only the requests already in flight went
    // out, not the 20 claimed; every order still waits, none rejected.
    let requests = emu.get("/_emu/stats")["ovopark"]["requests"]
        .as_u64()
        .unwrap();
    assert!((1..=4).contains(&requests), "{requests}");
    assert_eq!(dest_status(dir.path())["ovopark"].0, orders.len() as i64);
    assert_eq!(accepted(&emu).0, 0);
    // Paused, the next pass is a probe: one order, one request.
    let p = worker.pass().unwrap();
    assert_eq!(p.claimed, 1, "{p:?}");
    let after = emu.get("/_emu/stats")["ovopark"]["requests"]
        .as_u64()
        .unwrap();
    assert_eq!(after, requests + 1);
    assert_eq!(worker.paused().map(|r| r.contains("code")), Some(true));
}

/// Backoff and the clock-jump rule on simulated time: the worker reads the engine's
/// clock, so an hour of backoff passes in no time and nothing sleeps.
#[test]
fn retries_wait_for_their_backoff_on_the_engine_clock() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let orders = common::fixture_orders();
    ingest(&mut open(dir.path()), "a.json", &orders[..6]);
    emu.fault(json!({"target": "wdt", "mode": "http500", "count": 1000}));
    // Backoff of the first retry: jittered in [1800, 3600] s.
    let hour = EngineConfig {
        retry_base: Duration::from_secs(3600),
        retry_max: Duration::from_secs(3600),
        ..fast()
    };
    let clock = Arc::new(ManualClock::new(tillrelay::clock::unix_now()));
    let (_, wdt) = clients(&emu, None);
    let mut worker =
        Worker::new(wdt, open(dir.path()), hour, Wake::new()).with_clock(clock.clone());
    let p = worker.pass().unwrap();
    assert_eq!((p.claimed, p.retry), (6, 6));
    emu.clear_faults();
    // Within the backoff, nothing is due...
    clock.advance(Duration::from_secs(1799));
    assert_eq!(worker.pass().unwrap().claimed, 0);
    // ...after it, everything is.
    clock.advance(Duration::from_secs(1802));
    let p = worker.pass().unwrap();
    assert_eq!((p.claimed, p.delivered), (6, 6));
    exactly_once(&emu);

    // A wall clock set back three hours makes every schedule look hours ahead: the
    // jump alone (the monotonic clock did not move) switches the worker to draining.
    ingest(&mut open(dir.path()), "b.json", &orders[6..9]);
    emu.fault(json!({"target": "wdt", "mode": "http500", "count": 1000}));
    let p = worker.pass().unwrap();
    assert_eq!((p.claimed, p.retry), (3, 3));
    emu.clear_faults();
    assert_eq!(worker.pass().unwrap().claimed, 0, "not due yet");
    clock.jump(-3 * 3600);
    let p = worker.pass().unwrap();
    assert_eq!((p.claimed, p.delivered), (3, 3));
    exactly_once(&emu);
}

#[test]
fn wangdiantong_batches_overlap_up_to_the_configured_concurrency_and_arrive_once() {
    for concurrency in [1, 2] {
        let emu = Emu::start(EmuConfig::default());
        // Long enough that the two senders, built at once, are surely both in flight.
        emu.post("/_emu/latency", json!({"target": "wdt", "ms": 300}));
        let orders = many_orders(230);
        let (_, w) = emu.dest_settings(
            "",
            &format!("timeout_secs = 5\nbatch_size = 50\nconcurrency = {concurrency}"),
            |t| t,
        );
        let client = Box::new(WdtClient::new(w, HashMap::new()).unwrap()) as Client;
        deliver_all("wdt", client, &orders);
        assert_eq!(accepted(&emu).1, orders.len());
        exactly_once(&emu);
        let stats = emu.get("/_emu/stats");
        // 230 orders in batches of 50: five requests, whatever the overlap.
        assert_eq!(stats["wdt"]["requests"], 5, "{stats}");
        let seen = stats["wdt"]["max_in_flight"].as_u64().unwrap();
        assert_eq!(seen, concurrency as u64, "{stats}");
    }
}

/// Rows back off for an hour; a failing worker holds off `recheck` (30 s).
fn hour_backoff() -> EngineConfig {
    EngineConfig {
        retry_base: Duration::from_secs(3600),
        retry_max: Duration::from_secs(3600),
        recheck: Duration::from_secs(30),
        ..fast()
    }
}

/// When Wangdiantong's next row is due, as `status` reads the queue in `dir` at `now`.
fn wdt_next_due(dir: &std::path::Path, now: i64) -> i64 {
    open(dir)
        .status(now)
        .unwrap()
        .destinations
        .iter()
        .find(|d| d.name == "wdt")
        .and_then(|d| d.next_due_at)
        .unwrap()
}

/// Issue #15.7 on simulated time: rows backed off for an hour do not leave the backlog
/// idle once the cloud answers again. After a pass that got nothing through the worker
/// holds off at most `recheck`, then sends one order as a probe (an outage costs one
/// request per hold); the probe's success brings every row forward and drains them.
#[test]
fn a_backlog_backed_off_for_an_hour_drains_within_recheck_of_the_clouds_return() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let orders = common::fixture_orders();
    ingest(&mut open(dir.path()), "a.json", &orders[..6]);
    emu.fault(json!({"target": "wdt", "mode": "http500", "count": 1000}));
    let cfg = hour_backoff();
    let clock = Arc::new(ManualClock::new(tillrelay::clock::unix_now()));
    let (_, wdt) = clients(&emu, None);
    let mut worker = Worker::new(wdt, open(dir.path()), cfg, Wake::new()).with_clock(clock.clone());
    let requests = || emu.get("/_emu/stats")["wdt"]["requests"].as_u64().unwrap();
    let next_due = || wdt_next_due(dir.path(), clock.now_unix());
    // The first pass fails: every row is scheduled 30-60 minutes ahead, but the worker
    // holds off only `recheck` (the old engine held the backoff: 30-60 minutes).
    assert_eq!(worker.step(), Some(Duration::from_secs(30)));
    assert_eq!(requests(), 1);
    assert!(next_due() >= clock.now_unix() + 1800);
    // While the outage lasts: one probe (one order, one request) per hold.
    for i in 0..3 {
        clock.advance(Duration::from_secs(30));
        assert_eq!(worker.step(), Some(Duration::from_secs(30)), "probe {i}");
        assert_eq!(requests(), 2 + i);
    }
    assert_eq!(accepted(&emu).1, 0);
    // The cloud is back; the next probe gets through and brings the backlog forward...
    emu.clear_faults();
    clock.advance(Duration::from_secs(30));
    assert_eq!(worker.step(), None, "a delivery: go on at once");
    assert_eq!(accepted(&emu).1, 1);
    assert!(next_due() <= clock.now_unix(), "the backlog is due now");
    // ...and the next pass, at the same instant, sends all of it.
    assert_eq!(worker.step(), None);
    assert_eq!(accepted(&emu).1, 6);
    exactly_once(&emu);
}

/// Issue #15.9: the resend bound. A kill re-sends what was sent but not yet recorded;
/// with a slow commit (an SD card's fsync), Ovopark's senders used to go on sending
/// while the engine's thread committed, so up to a whole batch (20) plus the requests in
/// flight were answered and not yet recorded (25 resends measured in a single kill).
/// Each sender now waits until its previous outcome is recorded: at every moment at
/// most `concurrency` requests are sent and not yet recorded.
#[test]
fn a_slow_commit_holds_new_requests_back_so_a_kill_resends_at_most_concurrency() {
    let emu = Emu::start(EmuConfig::default());
    let orders = many_orders(20);
    let refs: Vec<&Order> = orders.iter().collect();
    let client = ovopark_with(&emu, 4, "demo-ovopark-secret");
    let requests = || {
        emu.get("/_emu/stats")["ovopark"]["requests"]
            .as_u64()
            .unwrap()
    };
    let (mut recorded, mut worst) = (0u64, 0u64);
    client.send(&refs, &|| {}, &mut |_, outcome, _| {
        assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
        // Sent and not yet recorded, this one included: what a kill now re-sends.
        worst = worst.max(requests() - recorded);
        // A slow commit.
        std::thread::sleep(Duration::from_millis(60));
        recorded += 1;
        std::ops::ControlFlow::Continue(())
    });
    assert_eq!(recorded, 20);
    assert_eq!(requests(), 20);
    assert!(
        worst <= 4,
        "{worst} requests were answered or in flight and not yet recorded"
    );
}

/// Issue #15 (a leftover): the one-order probe after an outage answered with a
/// refusal of that order alone (the cloud answers again; it only refuses this one's
/// data) counts as the cloud's return, as a delivery does: the backlog is brought
/// forward and drained at once, not left to its hour of backoff.
#[test]
fn a_probe_answered_with_a_rejection_brings_the_backlog_forward() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let orders = common::fixture_orders();
    ingest(&mut open(dir.path()), "a.json", &orders[..6]);
    emu.fault(json!({"target": "wdt", "mode": "http500", "count": 1000}));
    let cfg = hour_backoff();
    let clock = Arc::new(ManualClock::new(tillrelay::clock::unix_now()));
    let (_, wdt) = clients(&emu, None);
    let mut worker = Worker::new(wdt, open(dir.path()), cfg, Wake::new()).with_clock(clock.clone());
    let next_due = || wdt_next_due(dir.path(), clock.now_unix());
    assert_eq!(worker.step(), Some(Duration::from_secs(30)));
    assert!(next_due() >= clock.now_unix() + 1800);
    // The cloud is back, but refuses whichever order the probe carries (an
    // `error_list` entry about that order's own data, the others are fine; an entry
    // nobody recognises would be retried, issue #26).
    emu.clear_faults();
    for o in &orders[..6] {
        emu.post(
            "/_emu/wdt/refuse",
            json!({"tid": o.order_no, "message": "商品名称含有非法字符", "whole_call": false}),
        );
    }
    clock.advance(Duration::from_secs(30));
    assert_eq!(worker.step(), None, "an answer: go on at once");
    let st = dest_status(dir.path());
    assert_eq!(st["wdt"].2, 1, "the probe's order is rejected: {st:?}");
    assert_eq!(accepted(&emu).1, 0);
    let r = common::http()
        .delete(format!("{}/_emu/wdt/refuse", emu.base()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        next_due() <= clock.now_unix(),
        "the backlog is due now, not in an hour"
    );
    // The next pass, at the same instant, sends the other five.
    assert_eq!(worker.step(), None);
    assert_eq!(accepted(&emu).1, 5);
    exactly_once(&emu);
}

/// A cloud that asks for a wait (Wangdiantong's rate limit, `rate_limit_wait_secs`) is
/// not probed before that wait is over: the `recheck` probe is for outages, not for a
/// cloud that said "later".
#[test]
fn a_rate_limit_holds_the_destination_for_the_wait_asked_not_for_recheck() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let orders = common::fixture_orders();
    ingest(&mut open(dir.path()), "a.json", &orders[..2]);
    emu.fault(json!({"target": "wdt", "mode": "rate_limit", "count": 1}));
    let cfg = EngineConfig {
        recheck: Duration::from_secs(30),
        ..fast()
    };
    let clock = Arc::new(ManualClock::new(tillrelay::clock::unix_now()));
    let (_, w) = emu.dest_settings(
        "timeout_secs = 2",
        "timeout_secs = 2\nrate_limit_wait_secs = 3600",
        |text| text,
    );
    let wdt = Box::new(WdtClient::new(w, HashMap::new()).unwrap()) as Client;
    let mut worker = Worker::new(wdt, open(dir.path()), cfg, Wake::new()).with_clock(clock.clone());
    let hold = worker.step().expect("refused: hold off");
    assert!(
        hold > Duration::from_secs(30),
        "held {hold:?}: the rate limit's wait, not recheck"
    );
    assert_eq!(accepted(&emu).1, 0);
}

/// Issue #26.2: the scope of a pause is what is wrong. lane2's shop_no is unknown to
/// the ERP (店铺编号不存在或已停用): lane2 alone pauses for Wangdiantong, lane1's
/// orders are all delivered, the row that caused the pause is not claimed again by
/// every pass (only its probe, every `probe_interval`), the destination itself is
/// not paused, and the outbox says which source and why. On the old engine the whole
/// destination paused and every probe claimed lane2's row again: lane1 never left.
#[test]
fn a_sources_bad_shop_pauses_that_source_alone_and_the_others_flow() {
    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let fixtures = common::fixture_orders();
    let numbered = |prefix: &str, n: usize| -> Vec<Order> {
        (0..n)
            .map(|i| {
                let mut o = fixtures[0].clone();
                o.order_no = format!("{prefix}{i}");
                // The source is the row's (the capture's), as a capture stamps it.
                o.source = None;
                o
            })
            .collect()
    };
    let mut ob = open(dir.path());
    // lane2's orders first: the oldest rows are the bad source's.
    for (source, name, orders) in [
        ("lane2", "b.json", numbered("B", 3)),
        ("lane1", "a.json", numbered("A", 5)),
    ] {
        let unit = Capture {
            source,
            kind: CaptureKind::File,
            name: Some(name),
            size: 1,
            hash: format!("hash-{name}"),
            raw: None,
            error: None,
        };
        assert_eq!(ob.ingest(&unit, &orders).unwrap().new, orders.len());
    }
    let (_, w) = emu.dest_settings("", "timeout_secs = 2", |t| t);
    let shop = |no: &str| tillrelay::upload::wdt::WdtShop {
        shop_no: Some(no.into()),
        ..Default::default()
    };
    let routes = [("lane1", "SHOP1"), ("lane2", "NOSUCH")]
        .into_iter()
        .map(|(s, no)| (s.to_string(), w.target(Some(&shop(no)))))
        .collect();
    let wdt: Client = Box::new(WdtClient::new(w, routes).unwrap());
    let cfg = EngineConfig {
        probe_interval: Duration::from_secs(600),
        ..fast()
    };
    let clock = Arc::new(ManualClock::new(tillrelay::clock::unix_now()));
    let mut worker = Worker::new(wdt, open(dir.path()), cfg, Wake::new()).with_clock(clock.clone());
    let requests = || emu.get("/_emu/stats")["wdt"]["requests"].as_u64().unwrap();
    for _ in 0..6 {
        worker.step();
    }
    assert_eq!(accepted(&emu).1, 5, "lane1's orders are all delivered");
    assert_eq!(worker.paused(), None, "the destination is not paused");
    let paused = worker.paused_sources();
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0].0, "lane2");
    assert!(paused[0].1.contains("店铺编号不存在或已停用"), "{paused:?}");
    let st = open(dir.path()).status(clock.now_unix()).unwrap();
    let d = st.destinations.iter().find(|d| d.name == "wdt").unwrap();
    assert_eq!(d.paused, None);
    assert_eq!(d.paused_sources.len(), 1, "{d:?}");
    assert_eq!(
        (
            d.paused_sources[0].source.as_str(),
            d.paused_sources[0].pending
        ),
        ("lane2", 3)
    );
    // More passes: the paused source's rows are not claimed again before its probe.
    let before = requests();
    for _ in 0..5 {
        worker.step();
    }
    assert_eq!(requests(), before, "no request for the paused source");
    // New orders of the good source still leave at once.
    let unit = Capture {
        source: "lane1",
        kind: CaptureKind::File,
        name: Some("c.json"),
        size: 1,
        hash: "hash-c".into(),
        raw: None,
        error: None,
    };
    ob.ingest(&unit, &numbered("C", 2)).unwrap();
    // A capture is due at the wall clock's now; on a loaded machine that can be a
    // second or more past the simulated clock, which would leave the rows not yet due.
    let behind = tillrelay::clock::unix_now() - clock.now_unix();
    if behind > 0 {
        clock.jump(behind);
    }
    worker.step();
    assert_eq!(accepted(&emu).1, 7);
    assert_eq!(requests(), before + 1, "one batch, lane1's only");
    // After probe_interval: one probe of lane2 (one trade, one request), still paused.
    clock.advance(Duration::from_secs(600));
    worker.step();
    assert_eq!(requests(), before + 2);
    assert_eq!(worker.paused_sources().len(), 1);
    let st = open(dir.path()).status(clock.now_unix()).unwrap();
    let d = st.destinations.iter().find(|d| d.name == "wdt").unwrap();
    assert_eq!(d.pending, 3, "lane2's orders wait, none rejected");
    assert_eq!(d.rejected, 0);
}
