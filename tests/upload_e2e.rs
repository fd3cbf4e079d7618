//! Uploads end to end through the real binary: `tillrelay emulate` serves both clouds on
//! loopback, `tillrelay run` watches a folder with the example config, and the tests
//! drop export files, inject faults in the emulators, and check with `status`,
//! `orders`, `retry` and `flush` — then count, on the emulators' side, that every order
//! arrived exactly once.
//!
//! Scenarios that are independent run on threads inside one test (each with its own
//! emulator and agent), so the file's wall time does not depend on how many test
//! threads cargo uses.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::emu::Emu;
use common::poll;
use common::till::{FIXTURE_ORDERS, Till, orders_file};
use common::tillrelay;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(40);
const DESTS: [&str; 2] = ["ovopark", "wdt"];

/// A named scenario that runs on its own thread.
type Scenario = (&'static str, Box<dyn FnOnce() + Send>);

/// Runs named scenarios in parallel threads; fails naming every scenario that failed.
fn in_parallel(scenarios: Vec<Scenario>) {
    let handles: Vec<_> = scenarios
        .into_iter()
        .map(|(name, f)| {
            (
                name,
                std::thread::Builder::new()
                    .name(name.to_string())
                    .spawn(f)
                    .unwrap(),
            )
        })
        .collect();
    let failed: Vec<&str> = handles
        .into_iter()
        .filter_map(|(name, h)| h.join().is_err().then_some(name))
        .collect();
    assert!(
        failed.is_empty(),
        "failed scenarios (their panics are above): {failed:?}"
    );
}

/// A JSON number or decimal string as a decimal (the clouds' money fields).
fn dec(v: &Value) -> rust_decimal::Decimal {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.parse::<rust_decimal::Decimal>()
        .unwrap_or_else(|e| panic!("{v} is not a decimal: {e}"))
        .normalize()
}

/// The field of a stored order's delivery to `dest`.
fn delivery_field(order: &Value, dest: &str, field: &str) -> Value {
    order["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dest"] == dest)
        .map(|d| d[field].clone())
        .unwrap_or(Value::Null)
}

/// A till on `emu` whose running agent has delivered the shared fixtures to both
/// clouds.
fn fixtures_delivered(emu: &Emu) -> Till {
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start();
    till.drop_fixtures();
    // No flush: a healthy agent sends by itself.
    assert!(
        till.wait_delivered(&DESTS, 4, WAIT, false),
        "{}",
        till.explain()
    );
    till
}

/// A capture's commit wakes the upload workers (issue #14): with their idle look for
/// new rows set to once an hour, only that wake can send a new order, and it goes to
/// both clouds. The first file may leave with the workers' start-up pass; the second
/// is committed while both workers sit in their hour-long idle wait.
#[test]
fn a_committed_capture_wakes_the_uploaders_without_waiting_for_their_poll() {
    let emu = Emu::process();
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start_env(&[("TILLRELAY_UPLOAD_POLL_MS", "3600000")]);
    till.drop_file("first.json", &orders_file("WAKE1", 1));
    assert!(
        till.wait_delivered(&DESTS, 1, WAIT, false),
        "{}",
        till.explain()
    );
    till.drop_file("second.json", &orders_file("WAKE2", 1));
    assert!(
        till.wait_delivered(&DESTS, 2, WAIT, false),
        "the second order waited for the hour-long poll: {}",
        till.explain()
    );
    emu.assert_sent_once(&["WAKE1-00", "WAKE2-00"]);
    till.stop();
}

#[test]
fn shared_fixtures_reach_both_clouds_exactly_once_with_their_stamp() {
    let emu = Emu::process();
    let mut till = fixtures_delivered(&emu);
    emu.assert_sent_once(&FIXTURE_ORDERS);
    assert!(till.orders_in("rejected").is_empty());

    let st = till.json(&["status", "--json"]);
    for d in st["destinations"].as_array().unwrap() {
        assert_eq!(
            (&d["pending"], &d["delivered"], &d["rejected"], &d["paused"]),
            (&json!(0), &json!(4), &json!(0), &Value::Null),
            "{d}"
        );
    }
    assert_eq!(st["sources"][0]["orders"], 4);
    let human = String::from_utf8(till.cli(&["status"]).stdout).unwrap();
    assert!(
        human.contains("ovopark: pending 0, delivered 4, rejected 0"),
        "{human}"
    );
    assert!(
        human.contains("wdt: pending 0, delivered 4, rejected 0"),
        "{human}"
    );

    // Ovopark: the camera, the video window around the order, the shop and tenant.
    let ovo = emu.ovopark();
    let w1 = &ovo["W20261122-0001"];
    assert_eq!(
        (&w1["org_id"], &w1["enterprise_id"]),
        (&json!("1001"), &json!("2001"))
    );
    let ipos = &w1["ipos"];
    assert_eq!(ipos["shopId"], "D001");
    assert_eq!(ipos["machineId"], "NVR01-CH03");
    assert_eq!(ipos["orderTime"], "2026-11-22 10:01:12");
    // first scan 10:00:31 − 60 s pre-roll; order time + 30 s post-roll
    assert_eq!(ipos["startTime"], "2026-11-22 09:59:31");
    assert_eq!(ipos["endTime"], "2026-11-22 10:01:42");
    assert_eq!(ipos["userName"], "赵六");
    let goods = ipos["goods"].as_array().unwrap();
    let ids: Vec<&str> = goods
        .iter()
        .map(|g| g["goodsId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["SKU-10001", "SKU-20417"]);
    assert_eq!(ovo["W20261122-0002"]["ipos"]["orderType"], "退货");
    // The CSV order has no scan times: the window starts at the order time − 60 s.
    let s1 = &ovo["S0003391"]["ipos"];
    assert_eq!(s1["machineId"], "NVR01-CH03");
    assert_eq!(s1["orderType"], "销售");
    assert_eq!(s1["startTime"], "2026-11-22 11:19:05");
    assert_eq!(s1["endTime"], "2026-11-22 11:20:35");
    assert_eq!(s1["goods"].as_array().unwrap().len(), 2);

    // Wangdiantong: the shop, one line per item, what the customer paid.
    let wdt = emu.wdt();
    for (tid, lines, receivable) in [
        ("W20261122-0001", 2, "120"),
        ("W20261122-0002", 1, "29"),
        ("S0003391", 2, "70"),
        ("S0003392", 1, "130"),
    ] {
        let t = &wdt[tid];
        assert_eq!(t["shop_no"], "SHOP1", "{tid}");
        assert_eq!(t["orders"].as_array().unwrap().len(), lines, "{tid}");
        assert_eq!(
            dec(&t["trade"]["receivable"]),
            dec(&json!(receivable)),
            "{tid} receivable"
        );
    }
    // The refund is sent as refunded (trade_status 80, refund_status 3).
    let refund = &wdt["W20261122-0002"]["trade"];
    assert_eq!(
        (&refund["trade_status"], &refund["refund_status"]),
        (&json!(80), &json!(3))
    );
    till.stop();
}

/// One fault mode: injected before any order arrives; the agent fails, the fault runs
/// out, and every order ends up delivered exactly once with nothing rejected.
struct FaultCase {
    name: &'static str,
    /// Fault specs to POST (one per target when the targets differ).
    faults: Vec<Value>,
    /// Requests each cloud fails.
    count: u64,
    /// `fault:<mode>` as the emulator's stats name it.
    answer: &'static str,
    ovo_extra: &'static str,
    wdt_extra: &'static str,
    /// What the agent must have recorded as the destination's last error.
    ovo_error: &'static str,
    wdt_error: &'static str,
    /// Drive recovery with `tillrelay flush` (else: the agent's own backoff).
    flush: bool,
}

fn run_fault_case(c: FaultCase) {
    let emu = Emu::process();
    for f in &c.faults {
        emu.fault(f.clone());
    }
    let mut till = Till::new(&emu.dest_config(c.ovo_extra, c.wdt_extra));
    till.start();
    till.drop_fixtures();
    assert!(
        till.wait_delivered(&DESTS, 4, WAIT, c.flush),
        "{}: not delivered\n{}\nemulator: {}",
        c.name,
        till.explain(),
        emu.stats()
    );
    // The fault really happened, as often as injected, on both clouds.
    assert_eq!(emu.answers("ovopark", c.answer), c.count, "{}", c.name);
    assert_eq!(emu.answers("wdt", c.answer), c.count, "{}", c.name);
    emu.assert_exactly_once(&FIXTURE_ORDERS);
    assert!(till.orders_in("rejected").is_empty(), "{}", c.name);
    for (dest, want) in [("ovopark", c.ovo_error), ("wdt", c.wdt_error)] {
        let d = till.dest(dest);
        let err = d["last_error"].as_str().unwrap_or_default();
        assert!(err.contains(want), "{}: {dest} last error {err:?}", c.name);
        assert!(d["paused"].is_null(), "{}: {d}", c.name);
    }
    till.stop();
}

#[test]
fn each_fault_mode_ends_in_exactly_once_delivery_with_nothing_rejected() {
    let both =
        |mode: &str, count: u64| vec![json!({"target": "both", "mode": mode, "count": count})];
    let cases = vec![
        FaultCase {
            name: "http500",
            faults: both("http500", 2),
            count: 2,
            answer: "fault:http500",
            ovo_extra: "",
            wdt_extra: "",
            ovo_error: "HTTP 500",
            wdt_error: "HTTP 500",
            flush: true,
        },
        FaultCase {
            name: "hang",
            faults: both("hang", 1),
            count: 1,
            answer: "fault:hang",
            ovo_extra: "timeout_secs = 2",
            wdt_extra: "timeout_secs = 2",
            ovo_error: "timed out",
            wdt_error: "timed out",
            flush: true,
        },
        FaultCase {
            name: "reset",
            faults: both("reset", 2),
            count: 2,
            answer: "fault:reset",
            ovo_extra: "",
            wdt_extra: "",
            ovo_error: "network error",
            wdt_error: "network error",
            flush: true,
        },
        FaultCase {
            name: "garbage",
            faults: both("garbage", 2),
            count: 2,
            answer: "fault:garbage",
            ovo_extra: "",
            wdt_extra: "",
            ovo_error: "not JSON",
            wdt_error: "not JSON",
            flush: true,
        },
        FaultCase {
            name: "code",
            faults: vec![
                json!({"target": "ovopark", "mode": "code", "code": "-500", "count": 2,
                       "message": "service busy"}),
                json!({"target": "wdt", "mode": "code", "code": 5, "count": 2,
                       "message": "服务器内部错误"}),
            ],
            count: 2,
            answer: "fault:code",
            ovo_extra: "",
            wdt_extra: "",
            ovo_error: "Ovopark code -500",
            wdt_error: "Wangdiantong status 5",
            flush: true,
        },
        // No flush: the agent waits out the vendor's advice and its own backoff.
        FaultCase {
            name: "rate_limit",
            faults: both("rate_limit", 1),
            count: 1,
            answer: "fault:ratelimit",
            ovo_extra: "",
            wdt_extra: "rate_limit_wait_secs = 1",
            ovo_error: "HTTP 429",
            wdt_error: "rate limited",
            flush: false,
        },
    ];
    in_parallel(
        cases
            .into_iter()
            .map(|c| {
                (
                    c.name,
                    Box::new(move || run_fault_case(c)) as Box<dyn FnOnce() + Send>,
                )
            })
            .collect(),
    );
}

/// Both clouds down for as long as it takes: the agent keeps every order pending,
/// rejects nothing, and once the clouds are back `flush` sends the backlog.
fn run_outage_then_flush() {
    let emu = Emu::process();
    emu.fault(json!({"target": "both", "mode": "http500", "count": 1_000_000}));
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start();
    till.drop_fixtures();
    assert!(
        poll(WAIT, || DESTS.iter().all(|d| till.counts(d) == (4, 0, 0)
            && till.dest(d)["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("HTTP 500")))),
        "outage: {}",
        till.explain()
    );
    emu.clear_faults();
    assert!(till.flush(), "flush found no agent");
    assert!(
        till.wait_delivered(&DESTS, 4, WAIT, false),
        "outage: {}",
        till.explain()
    );
    assert!(emu.answers("ovopark", "fault:http500") >= 1);
    assert!(emu.answers("wdt", "fault:http500") >= 1);
    emu.assert_exactly_once(&FIXTURE_ORDERS);
    assert!(till.orders_in("rejected").is_empty());
    till.stop();
}

/// Wangdiantong asks to wait (rate limit) for an hour: the orders are scheduled that
/// far ahead, and only `tillrelay flush` sends them now.
fn run_long_rate_limit_then_flush() {
    let emu = Emu::process();
    emu.fault(json!({"target": "wdt", "mode": "rate_limit", "count": 1}));
    let mut till = Till::new(&emu.dest_config("", "rate_limit_wait_secs = 3600"));
    till.start();
    // One file, one transaction: both orders are in the first (refused) request.
    let name = "orders-20261122-1005.json";
    till.drop_file(
        name,
        &fs::read(common::fixture(&format!("exports/{name}"))).unwrap(),
    );
    let json_orders = ["W20261122-0001", "W20261122-0002"];
    assert!(
        poll(WAIT, || till.counts("ovopark") == (0, 2, 0)
            && emu.answers("wdt", "fault:ratelimit") == 1
            && till.dest("wdt")["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("rate limited"))),
        "rate limit: {}",
        till.explain()
    );
    assert_eq!(till.counts("wdt"), (2, 0, 0));
    assert!(till.flush(), "flush found no agent");
    // One flush, no more: an hour's wait is cut short by it alone.
    assert!(
        till.wait_delivered(&DESTS, 2, WAIT, false),
        "rate limit: {}",
        till.explain()
    );
    emu.assert_exactly_once(&json_orders);
    till.stop();
}

#[test]
fn flush_sends_the_backlog_at_once_after_an_outage_or_a_long_wait() {
    in_parallel(vec![
        ("outage", Box::new(run_outage_then_flush)),
        ("long rate limit", Box::new(run_long_rate_limit_then_flush)),
    ]);
}

/// The offsets the agent logged having learned for `cloud`.
fn learned_offsets(log: &str, cloud: &str) -> Vec<i64> {
    let re = regex::Regex::new(&format!(
        r"{cloud}: server clock differs from ours by (-?\d+) s"
    ))
    .unwrap();
    re.captures_iter(log)
        .map(|c| c[1].parse().unwrap())
        .collect()
}

fn run_skew_case(ovo_skew: i64, wdt_skew: i64) {
    let emu = Emu::process();
    emu.skew("ovopark", ovo_skew);
    emu.skew("wdt", wdt_skew);
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start();
    till.drop_fixtures();
    // No flush: learning the clock is part of one attempt, not a retry.
    assert!(
        till.wait_delivered(&DESTS, 4, WAIT, false),
        "skew {ovo_skew}/{wdt_skew}: {}",
        till.explain()
    );
    emu.assert_exactly_once(&FIXTURE_ORDERS);
    // One refused request per cloud, then the agent follows the server's clock.
    assert_eq!(emu.answers("ovopark", "16"), 1, "{}", emu.stats());
    assert_eq!(emu.answers("wdt", "7"), 1, "{}", emu.stats());
    for o in till.orders() {
        for dest in DESTS {
            assert_eq!(
                delivery_field(&o, dest, "attempts"),
                1,
                "{dest} {}: the clock is learned within the first attempt",
                o["order_no"]
            );
        }
    }
    let log = till.log();
    for (cloud, skew) in [("ovopark", ovo_skew), ("wdt", wdt_skew)] {
        let learned = learned_offsets(&log, cloud);
        assert_eq!(learned.len(), 1, "{cloud}: {learned:?}\n{log}");
        assert!((learned[0] - skew).abs() <= 2, "{cloud}: {learned:?}");
    }
    till.stop();
}

#[test]
fn skewed_server_clocks_are_learned_with_one_refused_request() {
    in_parallel(vec![
        ("ahead/behind", Box::new(|| run_skew_case(3600, -3600))),
        ("behind/ahead", Box::new(|| run_skew_case(-3600, 3600))),
    ]);
}

#[test]
fn an_order_ovopark_already_has_208003_counts_as_delivered() {
    let emu = Emu::process();
    let mut till = fixtures_delivered(&emu);
    till.stop();

    // The box loses its queue (a new SD card) and the POS exports the same files again.
    fs::remove_dir_all(till.state_dir()).unwrap();
    till.start();
    till.drop_fixtures();
    assert!(
        till.wait_delivered(&DESTS, 4, WAIT, false),
        "{}",
        till.explain()
    );
    assert!(till.orders_in("rejected").is_empty());
    assert_eq!(emu.answers("ovopark", "208003"), 4);
    // Ovopark holds each order once and refused the second copy; Wangdiantong took the
    // second push as an update of the same trade.
    let once: Vec<(String, (u64, u64))> = FIXTURE_ORDERS
        .iter()
        .map(|o| (o.to_string(), (1, 1)))
        .collect();
    assert_eq!(emu.ovopark_counts().into_iter().collect::<Vec<_>>(), once);
    let pushed: Vec<(String, (u64, u64))> = FIXTURE_ORDERS
        .iter()
        .map(|o| (o.to_string(), (2, 1)))
        .collect();
    assert_eq!(emu.wdt_counts().into_iter().collect::<Vec<_>>(), pushed);
    for o in till.orders() {
        assert_eq!(delivery_field(&o, "ovopark", "state"), "delivered");
        let note = delivery_field(&o, "ovopark", "last_error");
        assert!(note.as_str().unwrap_or_default().contains("208003"), "{o}");
    }
    till.stop();
}

/// Every place a secret could leak to: the agent's logs, the queue's files, the
/// output of the commands a person runs.
fn assert_no_secret_anywhere(till: &Till, secrets: &[&str], outputs: &[String]) {
    let mut places: Vec<(String, Vec<u8>)> = vec![("agent log".into(), till.log().into_bytes())];
    for (i, o) in outputs.iter().enumerate() {
        places.push((format!("output #{i}"), o.clone().into_bytes()));
    }
    for entry in fs::read_dir(till.state_dir()).unwrap() {
        let p = entry.unwrap().path();
        places.push((p.display().to_string(), fs::read(&p).unwrap()));
    }
    assert!(
        places.iter().any(|(n, _)| n.ends_with("queue.db")),
        "the queue exists"
    );
    for (name, bytes) in &places {
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "secret {s:?} found in {name}"
            );
        }
    }
}

/// Runs a command and returns its stdout and stderr as one text.
fn all_output(till: &Till, args: &[&str]) -> String {
    let out = till.cli(args);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_bad_secret_pauses_ovopark_loses_nothing_and_leaks_nowhere() {
    const WRONG: &str = "WRONG-e2e-ovopark-secret-9f1c";
    const GOOD: &str = "demo-ovopark-secret";
    let emu = Emu::process();
    let good_cfg = emu.dest_config("", "");
    assert!(good_cfg.contains(&format!("secret = \"{GOOD}\"")));
    let mut till = Till::new(&good_cfg.replace(GOOD, WRONG));
    // Debug logging: not even the most verbose log may carry a secret.
    let debug = [("TILLRELAY_LOG", "debug")];
    till.start_env(&debug);
    till.drop_fixtures();
    assert!(
        poll(WAIT, || till.counts("wdt") == (0, 4, 0)
            && till.dest("ovopark")["paused"].is_string()),
        "{}",
        till.explain()
    );
    // Paused with the reason; every order waits; nothing is rejected.
    let ovo = till.dest("ovopark");
    assert_eq!(till.counts("ovopark"), (4, 0, 0), "{ovo}");
    let reason = ovo["paused"].as_str().unwrap();
    assert!(reason.contains("Ovopark code 7"), "{reason}");
    assert!(emu.ovopark().is_empty());
    assert!(emu.answers("ovopark", "7") >= 1);
    let human = all_output(&till, &["status"]);
    assert!(human.contains("PAUSED"), "{human}");
    let online = till.cli(&["check-config", "--online"]);
    assert!(!online.status.success());
    let online = format!(
        "{}{}",
        String::from_utf8_lossy(&online.stdout),
        String::from_utf8_lossy(&online.stderr)
    );
    assert!(online.contains("ovopark: FAILED"), "{online}");
    let mut outputs = vec![
        human,
        online,
        all_output(&till, &["status", "--json"]),
        all_output(&till, &["orders"]),
        all_output(&till, &["orders", "--json"]),
        all_output(&till, &["check-config"]),
    ];
    till.stop();

    // Fixed in the config, restarted: everything goes out, once.
    till.edit_config(|t| t.replace(WRONG, GOOD));
    till.start_env(&debug);
    assert!(
        till.wait_delivered(&DESTS, 4, WAIT, false),
        "{}",
        till.explain()
    );
    assert!(till.dest("ovopark")["paused"].is_null());
    emu.assert_exactly_once(&FIXTURE_ORDERS);
    outputs.push(all_output(&till, &["status", "--json"]));
    outputs.push(all_output(&till, &["orders", "--json"]));
    till.stop();
    assert_no_secret_anywhere(
        &till,
        &[WRONG, GOOD, "demo-wdt-secret", "demo-salt"],
        &outputs,
    );
}

/// An export order (the JSON reader's shape) with one line.
fn export_order(no: &str, time: &str, code: &str) -> Value {
    json!({
        "order_no": no, "order_time": time, "kind": "sale", "cashier": "周八",
        "payment": "cash", "total": "7.00", "discount": "0", "paid": "7.00",
        "lines": [{"code": code, "name": "矿泉水", "qty": "2", "price": "3.50",
                   "amount": "7.00", "discount": "0"}]
    })
}

#[test]
fn wrong_data_is_rejected_with_its_reason_and_delivered_once_fixed() {
    let emu = Emu::process();
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start();
    let long_code = "C".repeat(120);
    let ok_time = "2026-11-22 12:00:00";
    // Two days ahead of any clock in UTC+8: a POS whose clock is wrong.
    let future = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let file = |long: &str, time: &str| {
        serde_json::to_vec(&json!([
            export_order("E-GOOD", ok_time, "690001"),
            export_order("E-LONG", ok_time, long),
            export_order("E-FUTURE", time, "690002"),
        ]))
        .unwrap()
    };
    till.drop_file("bad.json", &file(&long_code, &future));
    // E-LONG breaks both clouds' max length (the clients refuse it before sending);
    // E-FUTURE is refused by Wangdiantong's server (trade_time in the future), and
    // Ovopark takes it.
    assert!(
        poll(WAIT, || till.counts("ovopark") == (0, 2, 1)
            && till.counts("wdt") == (0, 1, 2)),
        "{}",
        till.explain()
    );
    let rejected = till.orders_in("rejected");
    let reason = |no: &str, dest: &str| -> String {
        let o = rejected
            .iter()
            .find(|o| o["order_no"] == no)
            .unwrap_or_else(|| panic!("{no} not listed as rejected: {rejected:?}"));
        assert_eq!(delivery_field(o, dest, "state"), "rejected", "{no} {dest}");
        delivery_field(o, dest, "last_error")
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    let r = reason("E-LONG", "ovopark");
    assert!(
        r.contains("goodsId is 120 characters, Ovopark allows at most 100"),
        "{r}"
    );
    let r = reason("E-LONG", "wdt");
    assert!(
        r.contains("is 120 characters, Wangdiantong allows at most 40"),
        "{r}"
    );
    let r = reason("E-FUTURE", "wdt");
    assert!(r.contains("下单时间非法"), "{r}");
    assert!(r.contains("E-FUTURE"), "{r}");
    let human = all_output(&till, &["orders", "--state", "rejected"]);
    assert!(
        human.contains("E-LONG") && human.contains("wdt rejected ("),
        "{human}"
    );
    assert!(!emu.ovopark().contains_key("E-LONG"));
    assert!(!emu.wdt().contains_key("E-LONG") && !emu.wdt().contains_key("E-FUTURE"));

    // The POS exports the corrected orders again: the rejected deliveries go out with
    // the fix; E-GOOD is a plain duplicate, and E-FUTURE is not sent to Ovopark twice.
    till.drop_file("bad-fixed.json", &file("690003", "2026-11-22 12:05:00"));
    assert!(
        till.wait_delivered(&DESTS, 3, WAIT, false),
        "{}",
        till.explain()
    );
    emu.assert_exactly_once(&["E-FUTURE", "E-GOOD", "E-LONG"]);
    assert_eq!(
        emu.ovopark()["E-LONG"]["ipos"]["goods"][0]["goodsId"],
        "690003"
    );
    assert_eq!(
        emu.wdt()["E-FUTURE"]["trade"]["trade_time"],
        "2026-11-22 12:05:00"
    );
    let st = till.json(&["status", "--json"]);
    assert_eq!(st["sources"][0]["corrected"], 2, "{st}");
    assert_eq!(st["sources"][0]["duplicates"], 1, "{st}");
    assert!(
        till.log().contains("rejected order(s) corrected"),
        "{}",
        till.log()
    );

    // A refusal that no fix to the file cures (the cloud's own check at the time):
    // `retry` puts it back and wakes the agent.
    emu.fault(
        json!({"target": "ovopark", "mode": "code", "code": "208001",
                     "message": "iposJson: goods invalid"}),
    );
    emu.fault(json!({"target": "wdt", "mode": "code", "code": 100,
                     "message": "数量不合法: num"}));
    till.drop_file(
        "later.json",
        &serde_json::to_vec(&json!([export_order("E-LATER", ok_time, "690004")])).unwrap(),
    );
    assert!(
        poll(WAIT, || till.counts("ovopark") == (0, 3, 1)
            && till.counts("wdt") == (0, 3, 1)),
        "{}",
        till.explain()
    );
    let rejected = till.orders_in("rejected");
    assert_eq!(rejected.len(), 1);
    let r = delivery_field(&rejected[0], "ovopark", "last_error");
    assert!(r.as_str().unwrap().contains("Ovopark code 208001"), "{r}");
    let r = delivery_field(&rejected[0], "wdt", "last_error");
    assert!(r.as_str().unwrap().contains("数量不合法"), "{r}");
    let out = till.cli(&["retry", "--order", "E-LATER"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 rejected deliveries put back"), "{text}");
    assert!(text.contains("asked the agent"), "{text}");
    assert!(
        till.wait_delivered(&DESTS, 4, WAIT, false),
        "{}",
        till.explain()
    );
    emu.assert_exactly_once(&["E-FUTURE", "E-GOOD", "E-LATER", "E-LONG"]);
    till.stop();
}

#[test]
fn demo_runs_the_whole_product_and_shows_both_clouds() {
    let out = tillrelay()
        .arg("demo")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ovo = text
        .split("Ovopark accepted")
        .nth(1)
        .and_then(|t| t.split("Wangdiantong accepted").next())
        .unwrap_or_else(|| panic!("no Ovopark table:\n{text}"));
    let wdt = text
        .split("Wangdiantong accepted")
        .nth(1)
        .unwrap_or_else(|| panic!("no Wangdiantong table:\n{text}"));
    for no in FIXTURE_ORDERS {
        let row = ovo
            .lines()
            .find(|l| l.trim_start().starts_with(no))
            .unwrap_or_else(|| panic!("{no} missing from the Ovopark table:\n{text}"));
        assert!(row.contains("machine NVR01-CH03"), "{row}");
        let row = wdt
            .lines()
            .find(|l| l.trim_start().starts_with(no))
            .unwrap_or_else(|| panic!("{no} missing from the Wangdiantong table:\n{text}"));
        assert!(
            row.contains("shop SHOP1") && row.contains("pushes 1"),
            "{row}"
        );
    }
    let w1 = ovo.lines().find(|l| l.contains("W20261122-0001")).unwrap();
    assert!(
        w1.contains("video 2026-11-22 09:59:31 → 2026-11-22 10:01:42"),
        "{w1}"
    );
    // every capture path at once: the exports' 4, the serial tap's 3 (market lane),
    // the print proxy's 2 (kiosk lane), and both stand-in printers got every byte
    for (no, machine) in [
        ("2026112200013", "NVR01-CH03"),
        ("2026112200015", "NVR01-CH03"),
        ("A10240000123", "NVR02-CH01"),
        ("A10240000124", "NVR02-CH01"),
    ] {
        let row = ovo
            .lines()
            .find(|l| l.trim_start().starts_with(no))
            .unwrap_or_else(|| panic!("{no} missing from the Ovopark table:\n{text}"));
        assert!(row.contains(&format!("machine {machine}")), "{row}");
        assert!(
            wdt.lines().any(|l| l.trim_start().starts_with(no)),
            "{text}"
        );
    }
    for path in ["serial tap (pty)", "print proxy (tcp)"] {
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with(path))
            .unwrap_or_else(|| panic!("no {path} row:\n{text}"));
        assert!(row.trim_end().ends_with("yes"), "{row}");
    }
    assert!(
        text.contains("9 orders captured and delivered to both clouds"),
        "{text}"
    );
}

/// A source's WDT identity is resolved when the config is read: an enabled source
/// with no `shop_no` (neither its own nor `[wdt]`'s) fails `check-config` with exit
/// code 3 (docs/CLI.md) and the source's key, instead of pausing the worker at the
/// first push.
#[test]
fn check_config_refuses_an_enabled_wdt_source_without_shop_no() {
    let dir = tempfile::tempdir().unwrap();
    let dests: String = tillrelay::emulator::demo_agent_config("http://127.0.0.1:1")
        .lines()
        .filter(|l| !l.starts_with("shop_no"))
        .map(|l| format!("{l}\n"))
        .collect();
    let source = "[[source]]\nname = \"lane1\"\nkind = \"folder\"\npath = \"/x\"\nshop = \"D1\"\nmachine_id = \"M\"\n";
    let cfg = dir.path().join("noshop.toml");
    fs::write(&cfg, format!("{source}\n{dests}")).unwrap();
    let out = tillrelay()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("source[lane1].wdt.shop_no"), "{err}");

    // The source's own shop_no is enough.
    let fixed = source.to_string() + "[source.wdt]\nshop_no = \"SHOP1\"\n";
    fs::write(&cfg, format!("{fixed}\n{dests}")).unwrap();
    let out = tillrelay()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lines `status` prints under one destination (its own line and the indented
/// ones after it).
fn status_block(till: &Till, dest: &str) -> Vec<String> {
    let out = till.cli(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut block = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with(&format!("  {dest}: pending")) {
            inside = true;
        } else if inside && !line.starts_with("    ") {
            break;
        }
        if inside {
            block.push(line.to_string());
        }
    }
    assert!(!block.is_empty(), "no {dest} in status:\n{text}");
    block
}

/// Issue #15.7 and #15.10 through the real binary, both clouds down: the log and
/// `status` give the real next attempt (a probe within `recheck`, 30 s, however long
/// the rows' own backoff), `status` shows when the last error happened, the backlog
/// drains without a flush once the clouds answer, and the error is no longer shown once
/// they deliver again (`status --json` keeps it, with its time, as history).
#[test]
fn an_outage_shows_the_real_next_attempt_and_its_error_clears_after_recovery() {
    let emu = Emu::process();
    emu.fault(json!({"target": "both", "mode": "reset", "count": 100_000}));
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start();
    till.drop_fixtures();
    assert!(
        common::wait_until(WAIT, || {
            let (o, w) = emu.requests();
            o >= 2 && w >= 2
        }),
        "two failed attempts per cloud\n{}",
        till.explain()
    );
    for dest in DESTS {
        let block = status_block(&till, dest);
        let next = block
            .iter()
            .find_map(|l| l.trim().strip_prefix("next attempt: "))
            .unwrap_or_else(|| panic!("{dest}: no next attempt in {block:?}"));
        let secs: u64 = match next {
            "now" => 0,
            n => n
                .strip_prefix("in ")
                .and_then(|n| n.strip_suffix('s'))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{dest}: next attempt {next:?}")),
        };
        assert!(secs <= 30, "{dest}: next attempt in {secs}s: {block:?}");
        assert!(
            block
                .iter()
                .any(|l| l.contains("last error (") && l.contains(" ago): ")),
            "{dest}: {block:?}"
        );
        let d = till.dest(dest);
        assert!(d["last_success_at"].is_null(), "{d}");
        assert!(d["next_attempt_at"].as_i64().is_some(), "{d}");
    }
    // The log names each next attempt, a probe within 30 s, never "retrying within".
    let log = till.log();
    let waits: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("next attempt (one order) in ").nth(1))
        .filter_map(|t| t.trim_end_matches('s').parse().ok())
        .collect();
    assert!(waits.len() >= 4, "{log}");
    assert!(waits.iter().all(|&s| s <= 30), "{waits:?}");
    assert!(!log.contains("retrying within"), "{log}");

    // The clouds return: no flush, the probe finds them and the backlog drains.
    emu.clear_faults();
    assert!(
        till.wait_delivered(&DESTS, 4, WAIT, false),
        "{}\nemulator: {}",
        till.explain(),
        emu.stats()
    );
    emu.assert_exactly_once(&FIXTURE_ORDERS);
    for dest in DESTS {
        let block = status_block(&till, dest);
        assert!(
            !block
                .iter()
                .any(|l| l.contains("last error") || l.contains("next attempt")),
            "{dest}: healthy, nothing pending: {block:?}"
        );
        let d = till.dest(dest);
        assert!(d["last_error"].as_str().is_some(), "history kept: {d}");
        assert!(d["last_success_at"].as_i64().is_some(), "{d}");
    }
    till.stop();
}

/// Issue #15.5 through the real binary: a deposit return reaches Wangdiantong as the
/// POS printed it (receivable 9.50, the returned deposit 1 × −0.50), a "sale" whose
/// only line is negative is refused for Wangdiantong with the reason instead of
/// going out as a positive sale (Ovopark, which carries goods and not amounts, takes
/// it as printed), and an order whose total (100.00) is not its lines' sum (3.00) is
/// refused at capture, named in the file's error note, while the file's other orders
/// are stored.
#[test]
fn amounts_reach_the_clouds_as_printed_and_self_contradicting_orders_are_refused() {
    let emu = Emu::process();
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start();
    let order = |no: &str, lines: Value, total: &str, paid: &str| {
        json!({"order_no": no, "order_time": "2026-11-22 10:00:00", "kind": "sale",
               "total": total, "discount": "0", "paid": paid, "lines": lines})
    };
    let line = |code: &str, qty: &str, price: &str, amount: &str| json!({"code": code, "name": code, "qty": qty, "price": price, "amount": amount});
    let export = json!([
        order(
            "DEP-1",
            json!([
                line("BEER", "1", "10.00", "10.00"),
                line("DEPOSIT", "-1", "0.50", "-0.50")
            ]),
            "9.50",
            "9.50"
        ),
        order(
            "NEG-1",
            json!([line("BEER", "-1", "10.00", "-10.00")]),
            "-10.00",
            "-10.00"
        ),
        order(
            "LIE-1",
            json!([line("A", "1", "3.00", "3.00")]),
            "100.00",
            "100.00"
        ),
    ]);
    till.drop_file("amounts.json", export.to_string().as_bytes());
    assert!(
        poll(WAIT, || {
            till.counts("ovopark") == (0, 2, 0) && till.counts("wdt") == (0, 1, 1)
        }),
        "{}\nemulator: {}",
        till.explain(),
        emu.stats()
    );
    let wdt = emu.wdt();
    let dep = &wdt["DEP-1"];
    assert_eq!(
        dec(&dep["trade"]["receivable"]),
        dec(&json!("9.50")),
        "{dep}"
    );
    let deposit_line = &dep["orders"][1];
    assert_eq!(dec(&deposit_line["num"]), dec(&json!("1")), "{dep}");
    assert_eq!(dec(&deposit_line["price"]), dec(&json!("-0.50")), "{dep}");
    assert_eq!(
        dec(&deposit_line["total_amount"]),
        dec(&json!("-0.50")),
        "{dep}"
    );
    assert!(!wdt.contains_key("NEG-1"), "{wdt:?}");
    assert!(!wdt.contains_key("LIE-1"), "{wdt:?}");
    let rejected = till.orders_in("rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["order_no"], "NEG-1");
    let why = rejected[0]["deliveries"].to_string();
    assert!(why.contains("kind = \\\"refund\\\""), "{why}");
    // Ovopark holds the goods as printed; the self-contradicting order is nowhere.
    let ovo = emu.ovopark();
    assert!(
        ovo.contains_key("DEP-1") && ovo.contains_key("NEG-1"),
        "{ovo:?}"
    );
    assert!(!ovo.contains_key("LIE-1"));
    assert!(till.orders().iter().all(|o| o["order_no"] != "LIE-1"));
    let note = fs::read_to_string(till.inbox().join("rejected/amounts.json.error.txt")).unwrap();
    assert!(
        note.contains(
            "order \"LIE-1\", field total: is 100.00, but the 1 line amount(s) add up to 3.00"
        ),
        "{note}"
    );
    till.stop();
}
