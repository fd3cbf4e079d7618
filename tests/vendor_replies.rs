//! The vendors' real replies end to end (issue #16), through the real binary against
//! `tillrelay emulate`: one refused trade never holds back the others, and each
//! message lands in its class (configuration pauses, a trade time ahead of the server
//! waits for its clock, a refused re-push of a trade the ERP holds is delivered).
//!
//! Scenarios run on threads inside one test (each with its own emulator and agent).

mod common;

use std::time::Duration;

use common::emu::Emu;
use common::orders::delivery_state;
use common::poll;
use common::till::{Till, orders_file};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// A named scenario that runs on its own thread.
type Scenario = (&'static str, Box<dyn FnOnce() + Send>);

/// Runs named scenarios in parallel threads; fails naming every scenario that failed.
fn in_parallel(scenarios: Vec<Scenario>) {
    let handles: Vec<_> = scenarios
        .into_iter()
        .map(|(name, f)| {
            let h = std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .unwrap();
            (name, h)
        })
        .collect();
    let failed: Vec<&str> = handles
        .into_iter()
        .filter_map(|(name, h)| h.join().is_err().then_some(name))
        .collect();
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}

fn wdt_delivery(order: &Value) -> &Value {
    order["deliveries"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["dest"] == "wdt"))
        .unwrap_or(&Value::Null)
}

fn find_order<'a>(orders: &'a [Value], no: &str) -> &'a Value {
    orders
        .iter()
        .find(|o| o["order_no"] == no)
        .unwrap_or_else(|| panic!("{no} not stored"))
}

fn delete(emu: &Emu, path: &str) {
    let r = common::http()
        .delete(format!("{}{path}", emu.base()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "DELETE {path}");
}

/// 300 orders, the ERP refuses one for the whole call: the other 299 are delivered,
/// the refused one waits alone with the vendor's exact message; after
/// `wdt.give_up_after` it is rejected (kept, shown), `retry` re-sends it, and once the
/// ERP takes it, it is delivered.
fn one_refused_among_300(names_tid: bool) {
    let emu = Emu::process();
    let message = "商家编码和货品编号不匹配";
    emu.post(
        "/_emu/wdt/refuse",
        json!({"tid": "R-150", "message": message, "names_tid": names_tid}),
    );
    let mut till = Till::new(&emu.dest_config("", "give_up_after = \"3s\""));
    till.start();
    till.drop_file("many.json", &orders_file("R", 300));
    assert!(
        poll(WAIT, || till.counts("wdt").1 == 299),
        "{}",
        till.explain()
    );
    let trades = emu.wdt();
    assert_eq!(trades.len(), 299);
    assert!(!trades.contains_key("R-150"));
    // Not delivered, waiting or given up, with the vendor's own words.
    let expected = if names_tid {
        format!("{message},原始单号为：R-150")
    } else {
        message.to_string()
    };
    let orders = till.orders();
    let d = wdt_delivery(find_order(&orders, "R-150"));
    assert_ne!(d["state"], "delivered", "{d}");
    let err = d["last_error"].as_str().unwrap_or_default();
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("R-150"), "{err}");
    // After give_up_after (3 s here) the next refusal rejects it, and only it.
    let mut polls = 0;
    assert!(
        poll(WAIT, || {
            polls += 1;
            if polls % 5 == 0 {
                till.flush();
            }
            till.counts("wdt") == (0, 299, 1)
        }),
        "{}",
        till.explain()
    );
    let rejected = till.orders_in("rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["order_no"], "R-150");
    let err = wdt_delivery(&rejected[0])["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains(&expected) && err.contains("give_up_after"),
        "{err}"
    );
    // The ERP is fixed; `retry` re-sends it.
    delete(&emu, "/_emu/wdt/refuse");
    let out = till.cli(&["retry", "--order", "R-150"]);
    assert!(out.status.success());
    assert!(
        till.wait_delivered(&["ovopark", "wdt"], 300, WAIT, true),
        "{}",
        till.explain()
    );
    emu.assert_each_sent_once();
    till.stop();
}

/// A POS clock 30 s ahead of the server: the trade waits for the server's clock and
/// is delivered, never rejected.
fn pos_clock_30s_ahead() {
    let emu = Emu::process();
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start();
    let ahead = (chrono::Utc::now() + chrono::Duration::hours(8) + chrono::Duration::seconds(30))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let order = json!([{
        "order_no": "AHEAD-1", "order_time": ahead, "kind": "sale", "cashier": "周八",
        "payment": "cash", "total": "7.00", "discount": "0", "paid": "7.00",
        "lines": [{"code": "690001", "name": "矿泉水", "qty": "2", "price": "3.50",
                   "amount": "7.00", "discount": "0"}]
    }]);
    till.drop_file("ahead.json", &serde_json::to_vec(&order).unwrap());
    assert!(
        poll(Duration::from_secs(120), || {
            let (pending, delivered, rejected) = till.counts("wdt");
            assert_eq!(rejected, 0, "{}", till.explain());
            pending == 0 && delivered == 1
        }),
        "{}",
        till.explain()
    );
    assert_eq!(emu.wdt_counts()["AHEAD-1"], (1, 0));
    till.stop();
}

/// A key without the push permission: paused with the vendor's reason, nothing
/// rejected; once the permission is granted, everything goes out.
fn key_without_permission() {
    let emu = Emu::process();
    emu.fault(json!({"target": "wdt", "mode": "code", "code": 100,
                     "message": "权限不足", "count": 100000}));
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start();
    till.drop_fixtures();
    assert!(
        poll(WAIT, || till.dest("wdt")["paused"]
            .as_str()
            .is_some_and(|p| p.contains("权限不足"))),
        "{}",
        till.explain()
    );
    assert_eq!(till.counts("wdt"), (4, 0, 0));
    emu.clear_faults();
    assert!(
        till.wait_delivered(&["ovopark", "wdt"], 4, WAIT, true),
        "{}",
        till.explain()
    );
    assert!(till.dest("wdt")["paused"].is_null());
    till.stop();
}

/// The agent dies after Wangdiantong took a batch, before it kept the outcome; the
/// ERP refuses the re-push of trades it holds. `searchSelfOrder` confirms them: each
/// is delivered once, none rejected.
fn crash_between_push_and_reply() {
    let emu = Emu::process();
    emu.post("/_emu/wdt/held", json!({}));
    let till = Till::new(&emu.dest_config("", ""));
    let mut agent = till.spawn(&[("TILLRELAY_FAILPOINT", "wdt.after_push")]);
    till.drop_fixtures();
    assert!(
        agent.wait_exit(WAIT).is_some(),
        "the agent did not die at the failpoint: {}",
        till.explain()
    );
    assert!(emu.held().1 >= 1, "the ERP took a batch before the crash");
    let mut agent = till.spawn(&[]);
    agent.wait_ready(&till.state_dir(), Duration::from_secs(20));
    assert!(
        till.wait_delivered(&["wdt"], 4, WAIT, true),
        "{}",
        till.explain()
    );
    for (tid, (pushes, updates)) in emu.wdt_counts() {
        assert_eq!((pushes, updates), (1, 0), "{tid} stored once");
    }
    let orders = till.orders();
    for o in &orders {
        assert_eq!(delivery_state(o, "wdt"), Some("delivered"), "{o}");
    }
    assert!(till.log().contains("searchSelfOrder"), "{}", till.log());
    agent.stop_clean();
}

#[test]
fn vendor_replies_end_to_end() {
    in_parallel(vec![
        ("named", Box::new(|| one_refused_among_300(true))),
        ("unnamed", Box::new(|| one_refused_among_300(false))),
        ("ahead", Box::new(pos_clock_30s_ahead)),
        ("permission", Box::new(key_without_permission)),
        ("crash", Box::new(crash_between_push_and_reply)),
    ]);
}
