//! The vendors' real replies end to end (issue #16), through the real binary against
//! `tillrelay emulate`: one refused trade never holds back the others, and each
//! message lands in its class (configuration pauses, a trade time ahead of the server
//! waits for its clock, a refused re-push of a trade the ERP holds is delivered).
//!
//! `check-config --online` answers per source (a shop unknown to the ERP, a key
//! without a method's permission), and Ovopark's `stat` is read in both forms.
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
            // -1: `status` has no figures for the destination yet, which is "not yet".
            assert!(rejected <= 0, "{}", till.explain());
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

/// stdout and stderr of a command, for assertions on what the user reads.
fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The key lacks the permission of the methods it calls, on both clouds: each
/// destination is paused with a reason naming the permission and the method (shown by
/// `status`), and `check-config --online` names the permission its own calls lack
/// rather than calling the cloud unreachable. Granted again, everything goes out.
fn key_without_method_permission() {
    let emu = Emu::process();
    for (target, method) in [
        ("wdt", "sales.RawTrade.pushSelf2"),
        ("wdt", "setting.Shop.queryShop"),
        ("ovopark", "open.ovopark.storehouse.sendOrder"),
        ("ovopark", "open.gateway.getBusinessOrg"),
    ] {
        emu.post("/_emu/deny", json!({"target": target, "method": method}));
    }
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start();
    till.drop_fixtures();
    let paused = |dest: &str, text: &str| {
        till.dest(dest)["paused"]
            .as_str()
            .is_some_and(|p| p.contains(text))
    };
    assert!(
        poll(WAIT, || paused(
            "wdt",
            "permission 权限不足 for method sales.RawTrade.pushSelf2"
        ) && paused(
            "ovopark",
            "the key may not call method open.ovopark.storehouse.sendOrder"
        )),
        "{}",
        till.explain()
    );
    assert_eq!(till.counts("wdt"), (4, 0, 0));
    assert_eq!(till.counts("ovopark"), (4, 0, 0));
    let status = output_text(&till.cli(&["status"]));
    assert!(
        status.contains("permission 权限不足 for method sales.RawTrade.pushSelf2"),
        "{status}"
    );
    let online = till.cli(&["check-config", "--online"]);
    let text = output_text(&online);
    assert_eq!(online.status.code(), Some(1), "{text}");
    assert!(
        text.contains("permission 权限不足 for method setting.Shop.queryShop"),
        "{text}"
    );
    assert!(
        text.contains("the key may not call method open.gateway.getBusinessOrg"),
        "{text}"
    );
    assert!(!text.contains("unreachable"), "{text}");
    // Granted: the paused destinations go on (a flush ends the slow probing).
    delete(&emu, "/_emu/deny");
    assert!(
        till.wait_delivered(&["ovopark", "wdt"], 4, WAIT, true),
        "{}",
        till.explain()
    );
    let online = till.cli(&["check-config", "--online"]);
    assert!(online.status.success(), "{}", output_text(&online));
    till.stop();
}

/// `check-config --online` answers per source: a lane whose shop_no the ERP does
/// not know, and one whose shop is another platform's (not self-operated), are each
/// named with the plain problem; the lane on a good shop is ok; exit 1.
fn shop_unknown_to_the_erp() {
    let emu = Emu::process();
    let dest = emu.dest_config("", "");
    let till = Till::with_config(|l| {
        let lane = |name: &str, shop_no: &str| {
            let path = l.inbox.parent().unwrap().join(format!("inbox-{name}"));
            format!(
                "\n[[source]]\nname = \"{name}\"\nkind = \"folder\"\npath = {path:?}\nshop = \"D001\"\nmachine_id = \"NVR01-CH09\"\n[source.wdt]\nshop_no = \"{shop_no}\"\n"
            )
        };
        let tail = format!(
            "{dest}{}{}",
            lane("lane2", "NOSUCH"),
            lane("lane3", "TMALL1")
        );
        common::till::example_config(l, "300ms", None, &tail)
    });
    let online = till.cli(&["check-config", "--online"]);
    let text = output_text(&online);
    assert_eq!(online.status.code(), Some(1), "{text}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in {text}"))
            .to_string()
    };
    let l2 = line("wdt / source lane2:");
    assert!(
        l2.contains("FAILED") && l2.contains("shop_no NOSUCH is unknown to the ERP"),
        "{l2}"
    );
    let l3 = line("wdt / source lane3:");
    assert!(
        l3.contains("FAILED") && l3.contains("not a self-operated"),
        "{l3}"
    );
    let l1 = line("wdt / source lane1:");
    assert!(
        l1.contains("ok") && l1.contains("shop_no SHOP1") && l1.contains("self-operated"),
        "{l1}"
    );
    assert!(line("wdt:").contains("ok"), "{text}");
    assert!(line("ovopark / source lane2:").contains("ok"), "{text}");
    assert!(
        text.contains("online check failed for wdt / source lane2, wdt / source lane3"),
        "{text}"
    );
}

/// Ovopark's `stat` as the gateway SDKs type it: `code` a number or text, `systime`
/// epoch milliseconds (a number) or `yyyy-MM-dd HH:mm:ss`. The server's clock is two
/// hours off and its answers carry no `Date`, so `stat.systime` is the only way to
/// learn it: every order is refused (code 16) until the reply is read right.
fn ovopark_stat_forms(form: Value) {
    let emu = Emu::process();
    emu.post("/_emu/ovopark/reply", form.clone());
    emu.skew("ovopark", 2 * 3600);
    let mut till = Till::new(&emu.dest_config("", ""));
    till.start();
    till.drop_fixtures();
    assert!(
        till.wait_delivered(&["ovopark", "wdt"], 4, WAIT, true),
        "{form}: {}",
        till.explain()
    );
    assert!(
        emu.answers("ovopark", "16") >= 1,
        "{form}: the clock was off"
    );
    let online = till.cli(&["check-config", "--online"]);
    assert!(online.status.success(), "{form}: {}", output_text(&online));
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
        ("method permission", Box::new(key_without_method_permission)),
        ("unknown shop", Box::new(shop_unknown_to_the_erp)),
        (
            "stat as numbers",
            Box::new(|| {
                ovopark_stat_forms(
                    json!({"numeric_code": true, "systime": "millis", "date_header": false}),
                )
            }),
        ),
        (
            "stat as text",
            Box::new(|| {
                ovopark_stat_forms(
                    json!({"numeric_code": false, "systime": "datetime", "date_header": false}),
                )
            }),
        ),
    ]);
}
