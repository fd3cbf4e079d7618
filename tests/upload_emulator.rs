//! The clients against the emulators over real loopback HTTP: every rule of the specs
//! answers its documented code, the fixtures reach both clouds exactly once, and each
//! fault mode ends in delivery without loss or rejection.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::emu::{Emu, dest_settings};
use serde_json::{Value, json};
use tillrelay::emulator::EmuConfig;
use tillrelay::order::Order;
use tillrelay::upload::ovopark::{self, OvoparkClient, OvoparkShop};
use tillrelay::upload::wdt::{self, WdtClient};
use tillrelay::upload::{Destination, Outcome};

fn configs(emu: &Emu, extra_ovo: &str, extra_wdt: &str) -> (ovopark::Ovopark, wdt::Wdt) {
    emu.dest_settings(
        &format!("timeout_secs = 2\n{extra_ovo}"),
        &format!("timeout_secs = 2\nrate_limit_wait_secs = 1\n{extra_wdt}"),
        |t| t,
    )
}

fn clients(emu: &Emu) -> (OvoparkClient, WdtClient) {
    let (o, w) = configs(emu, "", "");
    (
        OvoparkClient::new(o, HashMap::new()).unwrap(),
        WdtClient::new(w, HashMap::new()).unwrap(),
    )
}

fn start() -> Emu {
    Emu::start(EmuConfig::default())
}

fn delivered(o: &Outcome) -> bool {
    matches!(o, Outcome::Delivered { .. })
}

#[test]
fn fixtures_reach_both_clouds_exactly_once_and_resends_are_idempotent() {
    let emu = start();
    let (ovo, wdt) = clients(&emu);
    let orders = common::fixture_orders();
    for o in &orders {
        let out = ovo.send(o);
        assert!(delivered(&out), "{}: {out:?}", o.order_no);
    }
    let refs: Vec<&Order> = orders.iter().collect();
    for (o, out) in orders.iter().zip(wdt.send_batch(&refs)) {
        assert!(delivered(&out), "{}: {out:?}", o.order_no);
    }
    let ovo_seen = emu.ovopark_counts();
    let wdt_seen = emu.wdt_counts();
    assert_eq!(ovo_seen.len(), orders.len());
    assert_eq!(wdt_seen.len(), orders.len());
    assert!(ovo_seen.values().all(|c| *c == (1, 0)), "{ovo_seen:?}");
    assert!(wdt_seen.values().all(|c| *c == (1, 0)), "{wdt_seen:?}");

    // A retry of an accepted order: Ovopark's 208003 counts as delivered, WDT updates.
    let again = ovo.send(&orders[0]);
    assert!(again.text().contains("208003"), "{again:?}");
    assert!(delivered(&again));
    assert!(delivered(&wdt.send_batch(&[&orders[0]])[0]));
    assert_eq!(emu.ovopark_counts()[&orders[0].order_no], (1, 1));
    assert_eq!(emu.wdt_counts()[&orders[0].order_no], (2, 1));

    // The stored trade is the order's, with its lines.
    let trades = emu.get("/_emu/wdt/trades");
    let t = trades
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tid"] == "S0003391")
        .unwrap();
    assert_eq!(t["shop_no"], "SHOP1");
    assert_eq!(t["orders"].as_array().unwrap().len(), 2);
    let receivable: rust_decimal::Decimal =
        t["trade"]["receivable"].as_str().unwrap().parse().unwrap();
    assert_eq!(receivable, rust_decimal::Decimal::from(70));
}

#[test]
fn batches_respect_batch_size() {
    let emu = start();
    let (_, w) = configs(&emu, "", "batch_size = 3");
    let wdt = WdtClient::new(w, HashMap::new()).unwrap();
    let orders = common::fixture_orders();
    let refs: Vec<&Order> = orders.iter().collect();
    assert!(wdt.send_batch(&refs).iter().all(delivered));
    let stats = emu.get("/_emu/stats");
    let expected = orders.len().div_ceil(3) as u64;
    assert_eq!(stats["wdt"]["requests"], expected);
}

/// A signed, valid sendOrder form for the default tenant, then mutated by `f`; `resign`
/// recomputes `_sig` after the mutation so that only the mutated rule can fail.
fn ovo_code(
    emu: &Emu,
    client: &OvoparkClient,
    f: &dyn Fn(&mut BTreeMap<String, String>),
    resign: bool,
) -> String {
    let o = &common::fixture_orders()[0];
    let target = client.target_for(o).unwrap();
    let ipos = ovopark::build_ipos(o, &target, "销售").unwrap();
    let mut p = client.params(&target, &ipos.json, tillrelay::upload::local_unix());
    p.insert(
        "_sig".into(),
        ovopark::sign(&p, "demo-ovopark-secret", ovopark::SignMethod::Md5),
    );
    f(&mut p);
    if resign {
        let sm = ovopark::SignMethod::parse(p.get("_sm").map(String::as_str).unwrap_or("md5"))
            .unwrap_or(ovopark::SignMethod::Md5);
        p.remove("_sig");
        p.insert("_sig".into(), ovopark::sign(&p, "demo-ovopark-secret", sm));
    }
    let mut r = common::http()
        .post(format!("{}/cloud.api", emu.base()))
        .header("Content-Type", ovopark::CONTENT_TYPE)
        .send(ovopark::form_encode(&p).as_bytes())
        .unwrap();
    let v: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    v["stat"]["code"].as_str().unwrap().to_string()
}

#[test]
fn ovopark_emulator_answers_each_rule_with_its_documented_code() {
    let emu = start();
    let (client, _) = clients(&emu);
    type Mutate = fn(&mut BTreeMap<String, String>);
    let cases: Vec<(&str, Mutate, bool, &str)> = vec![
        (
            "no _akey",
            |p| {
                p.remove("_akey");
            },
            true,
            "1",
        ),
        (
            "unknown _akey",
            |p| {
                p.insert("_akey".into(), "other".into());
            },
            true,
            "2",
        ),
        (
            "no _sm",
            |p| {
                p.remove("_sm");
            },
            true,
            "4",
        ),
        (
            "_sm sha256",
            |p| {
                p.insert("_sm".into(), "sha256".into());
            },
            true,
            "5",
        ),
        (
            "no _sig",
            |p| {
                p.remove("_sig");
            },
            false,
            "6",
        ),
        (
            "wrong _sig",
            |p| {
                p.insert("_sig".into(), "0".repeat(32));
            },
            false,
            "7",
        ),
        (
            "tampered after signing",
            |p| {
                p.insert("orgId".into(), "1002".into());
            },
            false,
            "7",
        ),
        (
            "no _mt",
            |p| {
                p.remove("_mt");
            },
            true,
            "8",
        ),
        (
            "unknown _mt",
            |p| {
                p.insert("_mt".into(), "open.x.y".into());
            },
            true,
            "9",
        ),
        (
            "wrong _version",
            |p| {
                p.insert("_version".into(), "v1".into());
            },
            true,
            "9",
        ),
        (
            "no _requestMode",
            |p| {
                p.remove("_requestMode");
            },
            true,
            "10",
        ),
        (
            "no _aid",
            |p| {
                p.remove("_aid");
            },
            true,
            "11",
        ),
        (
            "other _aid",
            |p| {
                p.insert("_aid".into(), "S999".into());
            },
            true,
            "12",
        ),
        (
            "no _version",
            |p| {
                p.remove("_version");
            },
            true,
            "13",
        ),
        (
            "no _timestamp",
            |p| {
                p.remove("_timestamp");
            },
            true,
            "14",
        ),
        (
            "bad _timestamp",
            |p| {
                p.insert("_timestamp".into(), "2019-11-28".into());
            },
            true,
            "15",
        ),
        (
            "stale _timestamp",
            |p| {
                p.insert("_timestamp".into(), "20191128141620".into());
            },
            true,
            "16",
        ),
        (
            "_format csv",
            |p| {
                p.insert("_format".into(), "csv".into());
            },
            true,
            "17",
        ),
        (
            "unknown orgId",
            |p| {
                p.insert("orgId".into(), "9999".into());
            },
            true,
            "206001",
        ),
        (
            "enterpriseId of another org",
            |p| {
                p.insert("enterpriseId".into(), "2002".into());
            },
            true,
            "206005",
        ),
        (
            "org the key may not act for",
            |p| {
                p.insert("orgId".into(), "1002".into());
                p.insert("enterpriseId".into(), "2002".into());
            },
            true,
            "206006",
        ),
        (
            "unknown shop",
            |p| {
                let v = p["iposJson"].replace("\"shopId\":\"D001\"", "\"shopId\":\"NOPE\"");
                p.insert("iposJson".into(), v);
            },
            true,
            "206004",
        ),
        (
            "missing machineId",
            |p| {
                let v = p["iposJson"].replace("\"machineId\":\"NVR01-CH03\",", "");
                p.insert("iposJson".into(), v);
            },
            true,
            "208001",
        ),
        (
            "orderNo over 100",
            |p| {
                let v = p["iposJson"].replace("W20261122-0001", &"9".repeat(101));
                p.insert("iposJson".into(), v);
            },
            true,
            "208001",
        ),
        (
            "bad time format",
            |p| {
                let v = p["iposJson"].replace(
                    "\"orderTime\":\"2026-11-22 10:01:12\"",
                    "\"orderTime\":\"2026/11/22 10:01\"",
                );
                p.insert("iposJson".into(), v);
            },
            true,
            "208001",
        ),
        (
            "goodsPrice as text",
            |p| {
                let v = p["iposJson"].replace("\"goodsPrice\":99.00", "\"goodsPrice\":\"99.00\"");
                p.insert("iposJson".into(), v);
            },
            true,
            "208001",
        ),
        (
            "iposJson not JSON",
            |p| {
                p.insert("iposJson".into(), "{".into());
            },
            true,
            "208001",
        ),
    ];
    for (what, f, resign, code) in cases {
        assert_eq!(ovo_code(&emu, &client, &f, resign), code, "{what}");
    }
    assert!(
        emu.ovopark_counts().is_empty(),
        "nothing refused was stored"
    );
    // A correct request is accepted; the same orderNo again is 208003; sha1 works too.
    assert_eq!(ovo_code(&emu, &client, &|_| {}, false), "0");
    assert_eq!(
        ovo_code(
            &emu,
            &client,
            &|p| {
                p.insert("_sm".into(), "sha1".into());
            },
            true
        ),
        "208003"
    );
}

#[test]
fn ovopark_replayed_request_is_api_call_repeat() {
    let emu = start();
    let (client, _) = clients(&emu);
    let o = &common::fixture_orders()[0];
    let target = client.target_for(o).unwrap();
    let ipos = ovopark::build_ipos(o, &target, "销售").unwrap();
    let mut p = client.params(&target, &ipos.json, tillrelay::upload::local_unix());
    p.insert(
        "_sig".into(),
        ovopark::sign(&p, "demo-ovopark-secret", ovopark::SignMethod::Md5),
    );
    let body = ovopark::form_encode(&p);
    let send = || {
        let mut r = common::http()
            .post(format!("{}/cloud.api", emu.base()))
            .header("Content-Type", ovopark::CONTENT_TYPE)
            .send(body.as_bytes())
            .unwrap();
        let v: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
        v["stat"]["code"].as_str().unwrap().to_string()
    };
    assert_eq!(send(), "0");
    assert_eq!(send(), "-100");
}

/// Changes a WDT request: query pairs, body, content type.
type WdtMutation = dyn Fn(&mut Vec<(String, String)>, &mut String, &mut String);

/// A valid push for the default tenant, mutated by `f` (query pairs, body), then
/// re-signed unless `resign` is false. Returns the JSON answer.
fn wdt_answer(emu: &Emu, client: &WdtClient, f: &WdtMutation, resign: bool) -> Value {
    let orders = common::fixture_orders();
    let t = client.build(&orders[0]).unwrap();
    let mut body = wdt::build_body("SHOP1", &[&t]);
    let url = client.signed_url(wdt::PUSH_SELF2, &body, tillrelay::upload::local_unix());
    let query = url.split_once('?').unwrap().1;
    let mut q: Vec<(String, String)> = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let mut ctype = "application/json".to_string();
    f(&mut q, &mut body, &mut ctype);
    if resign {
        let mut p: BTreeMap<String, String> = q
            .iter()
            .filter(|(k, _)| k != "sign")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        p.insert("body".into(), body.clone());
        let s = wdt::sign(&p, "demo-wdt-secret");
        q.retain(|(k, _)| k != "sign");
        q.push(("sign".into(), s));
    }
    let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut r = common::http()
        .post(format!("{}/openapi?{}", emu.base(), qs.join("&")))
        .header("Content-Type", &ctype)
        .send(body.as_bytes())
        .unwrap();
    serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap()
}

fn set_q(q: &mut [(String, String)], k: &str, v: &str) {
    for (kk, vv) in q.iter_mut() {
        if kk == k {
            *vv = v.to_string();
        }
    }
}

#[test]
fn wdt_emulator_answers_each_rule_with_its_documented_status() {
    let emu = start();
    let (_, client) = clients(&emu);
    type Mutate = fn(&mut Vec<(String, String)>, &mut String, &mut String);
    let cases: Vec<(&str, Mutate, bool, i64, &str)> = vec![
        (
            "unknown parameter",
            |q, _, _| q.push(("page".into(), "1".into())),
            true,
            2,
            "unknown parameter",
        ),
        (
            "missing method",
            |q, _, _| q.retain(|(k, _)| k != "method"),
            true,
            1,
            "参数错误",
        ),
        (
            "unknown sid",
            |q, _, _| set_q(q, "sid", "nobody"),
            true,
            1,
            "sid is not exists",
        ),
        (
            "wrong key",
            |q, _, _| set_q(q, "key", "other"),
            true,
            1,
            "app auth fail",
        ),
        ("version", |q, _, _| set_q(q, "v", "2.0"), true, 8, ""),
        (
            "form body",
            |_, _, c| *c = "application/x-www-form-urlencoded".into(),
            true,
            1,
            "Content-Type",
        ),
        (
            "wrong salt",
            |q, _, _| set_q(q, "salt", "other"),
            true,
            1,
            "验证失败",
        ),
        (
            "wrong sign",
            |q, _, _| set_q(q, "sign", "00"),
            false,
            1,
            "验证失败",
        ),
        (
            "body changed after signing",
            |_, b, _| *b = b.replace("SHOP1", "SHOP2"),
            false,
            1,
            "验证失败",
        ),
        (
            "unknown method",
            |q, _, _| set_q(q, "method", "sales.Nope"),
            true,
            1,
            "参数错误",
        ),
        (
            "unknown shop",
            |_, b, _| *b = b.replace("\"SHOP1\"", "\"NOPE\""),
            true,
            100,
            "店铺编号不存在或已停用",
        ),
        (
            "body not an array",
            |_, b, _| *b = "{}".into(),
            true,
            1,
            "参数错误",
        ),
    ];
    for (what, f, resign, status, needle) in cases {
        let v = wdt_answer(&emu, &client, &f, resign);
        assert_eq!(v["status"], status, "{what}: {v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(needle),
            "{what}: {v}"
        );
    }
    let stale = wdt_answer(&emu, &client, &|q, _, _| set_q(q, "timestamp", "100"), true);
    assert_eq!(stale["status"], 7, "{stale}");
    assert!(emu.wdt_counts().is_empty(), "nothing refused was stored");

    // Per-trade rules come back in error_list (pushSelf2), naming the trade.
    let trade_cases: Vec<(&str, Mutate, &str)> = vec![
        (
            "required field missing",
            |_, b, _| *b = b.replace("\"buyer_nick\":\"门店顾客\",", ""),
            "字段缺失",
        ),
        (
            "too long",
            |_, b, _| {
                *b = b.replace(
                    "\"receiver_name\":\"演示门店\"",
                    &format!("\"receiver_name\":\"{}\"", "名".repeat(101)),
                )
            },
            "Data truncation",
        ),
        (
            "five decimals",
            |_, b, _| *b = b.replace("\"post_amount\":\"0\"", "\"post_amount\":\"0.00001\""),
            "Data truncation",
        ),
        (
            "control character",
            |_, b, _| *b = b.replacen("运动T恤", "运动\\u0007T恤", 1),
            "非法字符",
        ),
        (
            "future trade_time",
            |_, b, _| {
                *b = b.replace(
                    "\"trade_time\":\"2026-11-22 10:01:12\"",
                    "\"trade_time\":\"2099-01-01 00:00:00\"",
                )
            },
            "下单时间非法",
        ),
        (
            "bad time format",
            |_, b, _| {
                *b = b.replace(
                    "\"trade_time\":\"2026-11-22 10:01:12\"",
                    "\"trade_time\":\"2026/11/22\"",
                )
            },
            "下单时间非法",
        ),
        (
            "status code outside its set",
            |_, b, _| *b = b.replace("\"pay_status\":2", "\"pay_status\":7"),
            "不合法",
        ),
        (
            "goods_count",
            |_, b, _| *b = b.replace("\"goods_count\":\"2\"", "\"goods_count\":\"3\""),
            "数量不合法",
        ),
        (
            "order_count",
            |_, b, _| *b = b.replace("\"order_count\":2", "\"order_count\":1"),
            "数量不合法",
        ),
        (
            "receivable",
            |_, b, _| *b = b.replace("\"receivable\":\"120.0000\"", "\"receivable\":\"128.0000\""),
            "金额不合法",
        ),
        (
            "line total",
            |_, b, _| {
                *b = b.replacen(
                    "\"total_amount\":\"99.00\"",
                    "\"total_amount\":\"98.00\"",
                    1,
                )
            },
            "金额不合法",
        ),
        (
            "num zero",
            |_, b, _| *b = b.replacen("\"num\":\"1\"", "\"num\":\"0\"", 1),
            "数量不合法",
        ),
        (
            "cod_amount",
            |_, b, _| *b = b.replace("\"cod_amount\":\"0\"", "\"cod_amount\":\"5\""),
            "金额不合法",
        ),
        (
            "integer as text",
            |_, b, _| *b = b.replace("\"process_status\":10", "\"process_status\":\"10\""),
            "字段缺失",
        ),
        (
            "auto wms without warehouse",
            |_, b, _| *b = b.replace("\"is_auto_wms\":false", "\"is_auto_wms\":true"),
            "warehouse_no",
        ),
    ];
    for (what, f, needle) in trade_cases {
        let v = wdt_answer(&emu, &client, &f, true);
        assert_eq!(v["status"], 0, "{what}: {v}");
        let errs = v["data"]["error_list"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {v}"));
        assert_eq!(errs.len(), 1, "{what}: {v}");
        assert_eq!(errs[0]["no"], "W20261122-0001", "{what}");
        assert!(
            errs[0]["error"].as_str().unwrap().contains(needle),
            "{what}: {v}"
        );
        assert_eq!(v["data"]["new_count"], 0, "{what}");
    }
    assert!(emu.wdt_counts().is_empty());
    let ok = wdt_answer(&emu, &client, &|_, _, _| {}, true);
    assert_eq!(
        ok,
        json!({"status": 0, "data": {"chg_count": 0, "new_count": 1}})
    );

    // A tid twice in one request: the first is taken (an update now), the repeat is
    // refused naming it.
    let dup = wdt_answer(
        &emu,
        &client,
        &|_, b, _| {
            let mut v: Value = serde_json::from_str(b).unwrap();
            let t = v[1][0].clone();
            v[1].as_array_mut().unwrap().push(t);
            *b = v.to_string();
        },
        true,
    );
    assert_eq!(dup["data"]["chg_count"], 1, "{dup}");
    assert_eq!(dup["data"]["new_count"], 0, "{dup}");
    let errs = dup["data"]["error_list"].as_array().unwrap();
    assert_eq!(errs.len(), 1, "{dup}");
    assert_eq!(errs[0]["no"], "W20261122-0001");
    assert!(errs[0]["error"].as_str().unwrap().contains("重复"), "{dup}");

    // Another trade claiming lines (oids) the stored one owns is refused; the stored
    // trade keeps them.
    let stolen = wdt_answer(
        &emu,
        &client,
        &|_, b, _| {
            let mut v: Value = serde_json::from_str(b).unwrap();
            v[1][0]["tid"] = json!("W-OTHER");
            for l in v[2].as_array_mut().unwrap() {
                l["tid"] = json!("W-OTHER");
            }
            *b = v.to_string();
        },
        true,
    );
    let errs = stolen["data"]["error_list"].as_array().unwrap();
    assert_eq!(errs.len(), 1, "{stolen}");
    assert_eq!(errs[0]["no"], "W-OTHER");
    assert!(
        errs[0]["error"]
            .as_str()
            .unwrap()
            .contains("oid W20261122-0001-1"),
        "{stolen}"
    );
    assert_eq!(
        emu.wdt_counts().keys().collect::<Vec<_>>(),
        ["W20261122-0001"]
    );
}

#[test]
fn one_bad_trade_is_rejected_alone_with_push_self2_and_push_self() {
    for method in ["pushSelf2", "pushSelf"] {
        let emu = start();
        let (_, w) = configs(&emu, "", &format!("method = \"{method}\""));
        let wdt = WdtClient::new(w, HashMap::new()).unwrap();
        let mut orders = common::fixture_orders();
        // An order stamped with a POS clock in the future: the ERP refuses its trade_time.
        orders[2].order_time = chrono::NaiveDate::from_ymd_opt(2099, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let refs: Vec<&Order> = orders.iter().collect();
        let out = wdt.send_batch(&refs);
        for (i, (o, r)) in orders.iter().zip(&out).enumerate() {
            if i == 2 {
                assert!(matches!(r, Outcome::Rejected { .. }), "{method}: {r:?}");
                assert!(r.text().contains("下单时间非法"), "{method}: {r:?}");
            } else {
                assert!(delivered(r), "{method} {}: {r:?}", o.order_no);
            }
        }
        // Fixed and re-sent (`tillrelay retry`): delivered.
        orders[2].order_time = chrono::NaiveDate::from_ymd_opt(2026, 11, 22)
            .unwrap()
            .and_hms_opt(11, 20, 5)
            .unwrap();
        assert!(delivered(&wdt.send_batch(&[&orders[2]])[0]), "{method}");
        let counts = emu.wdt_counts();
        assert_eq!(counts.len(), orders.len());
        assert!(
            counts.values().all(|c| *c == (1, 0)),
            "{method}: {counts:?}"
        );
    }
}

#[test]
fn wrong_data_is_rejected_with_its_reason_and_delivered_once_fixed() {
    let emu = start();
    let (ovo, _) = clients(&emu);
    let mut o = common::fixture_orders().remove(0);
    o.lines[0].code = "X".repeat(101);
    let r = ovo.send(&o);
    assert!(matches!(r, Outcome::Rejected { .. }), "{r:?}");
    assert!(
        r.text().contains("goods[0].goodsId") && r.text().contains("W20261122-0001"),
        "{r:?}"
    );
    o.lines[0].code = "SKU-10001".into();
    assert!(delivered(&ovo.send(&o)));
    assert_eq!(emu.ovopark_counts()["W20261122-0001"], (1, 0));
}

/// Sends until delivered (at most 5 attempts); returns the outcomes in order.
fn attempts(mut send: impl FnMut() -> Outcome) -> Vec<Outcome> {
    let mut out = Vec::new();
    for _ in 0..5 {
        let o = send();
        let done = delivered(&o);
        out.push(o);
        if done {
            break;
        }
    }
    out
}

#[test]
fn every_fault_mode_ends_in_exactly_one_delivery_and_no_rejection() {
    let modes = [
        json!({"mode": "http500", "count": 2}),
        json!({"mode": "hang", "count": 1, "hang_secs": 30}),
        json!({"mode": "reset", "count": 2}),
        json!({"mode": "garbage", "count": 2}),
        json!({"mode": "code", "count": 2}),
        json!({"mode": "rate_limit", "count": 1}),
    ];
    let emu = start();
    let (ovo, wdt) = clients(&emu);
    let orders = common::fixture_orders();
    for (i, m) in modes.iter().enumerate() {
        let o = &orders[i];
        let mut spec = m.clone();
        spec["target"] = json!("both");
        emu.fault(spec);
        let ovo_tries = attempts(|| ovo.send(o));
        let wdt_tries = attempts(|| wdt.send_batch(&[o]).remove(0));
        for tries in [&ovo_tries, &wdt_tries] {
            assert!(tries.len() >= 2, "{m}: the fault was seen: {tries:?}");
            assert!(delivered(tries.last().unwrap()), "{m}: {tries:?}");
            assert!(
                tries[..tries.len() - 1]
                    .iter()
                    .all(|t| matches!(t, Outcome::Retry { .. })),
                "{m}: only retries before delivery: {tries:?}"
            );
        }
        if m["mode"] == "rate_limit" {
            let Outcome::Retry { after, .. } = &wdt_tries[0] else {
                unreachable!()
            };
            assert!(
                after.is_some(),
                "the vendor's wait is advised: {wdt_tries:?}"
            );
            let Outcome::Retry { after, .. } = &ovo_tries[0] else {
                unreachable!()
            };
            assert_eq!(after.map(|d| d.as_secs()), Some(1), "Retry-After honoured");
        }
    }
    let ovo_seen = emu.ovopark_counts();
    let wdt_seen = emu.wdt_counts();
    assert_eq!(ovo_seen.len(), modes.len());
    assert!(ovo_seen.values().all(|c| *c == (1, 0)), "{ovo_seen:?}");
    assert!(wdt_seen.values().all(|c| *c == (1, 0)), "{wdt_seen:?}");
}

#[test]
fn timestamp_refusal_costs_one_extra_attempt_only() {
    let emu = start();
    let (ovo, wdt) = clients(&emu);
    let orders = common::fixture_orders();
    emu.fault(json!({"target": "ovopark", "mode": "code", "code": "16", "count": 1}));
    emu.fault(json!({"target": "wdt", "mode": "code", "code": 7, "count": 1}));
    assert!(delivered(&ovo.send(&orders[0])));
    assert!(delivered(&wdt.send_batch(&[&orders[0]])[0]));
    // Twice in a row: no endless loop, a retry-later.
    emu.fault(json!({"target": "both", "mode": "code", "code": "16", "count": 2}));
    assert!(matches!(ovo.send(&orders[1]), Outcome::Retry { .. }));
    let stats = emu.get("/_emu/stats");
    assert_eq!(stats["ovopark"]["requests"], 4, "{stats}");
}

#[test]
fn skewed_server_clock_is_learned_and_orders_flow() {
    let emu = start();
    emu.post(
        "/_emu/clock",
        json!({"target": "ovopark", "skew_secs": 3 * 3600}),
    );
    emu.post("/_emu/clock", json!({"target": "wdt", "skew_secs": -900}));
    let (ovo, wdt) = clients(&emu);
    let orders = common::fixture_orders();
    for o in &orders[..3] {
        assert!(delivered(&ovo.send(o)));
    }
    let refs: Vec<&Order> = orders[..3].iter().collect();
    assert!(wdt.send_batch(&refs).iter().all(delivered));
    assert!(
        (ovo.server_offset().offset() - 3 * 3600).abs() <= 2,
        "{}",
        ovo.server_offset().offset()
    );
    assert!(
        (wdt.server_offset().offset() + 900).abs() <= 2,
        "{}",
        wdt.server_offset().offset()
    );
    // One refusal per cloud, then none: the offset is applied to later requests.
    let stats = emu.get("/_emu/stats");
    assert_eq!(stats["ovopark"]["answers"]["16"], 1, "{stats}");
    assert_eq!(stats["wdt"]["answers"]["7"], 1, "{stats}");
    assert_eq!(emu.ovopark_counts().len(), 3);
    assert_eq!(emu.wdt_counts().len(), 3);
}

#[test]
fn bad_secret_is_misconfiguration_and_stores_nothing() {
    let emu = start();
    let (ovo, wdt) = emu.dest_settings("", "", |t| {
        t.replace(
            "secret = \"demo-ovopark-secret\"",
            "secret = \"wrong-secret\"",
        )
        .replace(
            "secret = \"demo-wdt-secret:demo-salt\"",
            "secret = \"wrong-secret:demo-salt\"",
        )
    });
    let ovo = OvoparkClient::new(ovo, HashMap::new()).unwrap();
    let wdt = WdtClient::new(wdt, HashMap::new()).unwrap();
    let o = &common::fixture_orders()[0];
    let r = ovo.send(o);
    assert!(matches!(r, Outcome::Misconfigured { .. }), "{r:?}");
    assert!(
        r.text().contains("code 7") && !r.text().contains("wrong-secret"),
        "{r:?}"
    );
    let r = wdt.send_batch(&[o]).remove(0);
    assert!(matches!(r, Outcome::Misconfigured { .. }), "{r:?}");
    assert!(!r.text().contains("wrong-secret"), "{r:?}");
    assert!(ovo.check_online().unwrap_err().contains("refused"));
    assert!(wdt.check_online().unwrap_err().contains("refused"));
    assert!(emu.ovopark_counts().is_empty() && emu.wdt_counts().is_empty());
}

#[test]
fn check_online_tells_what_is_wrong() {
    let emu = start();
    let (ovo, wdt) = clients(&emu);
    let ok = ovo.check_online().unwrap();
    assert!(ok.contains("orgId 1001"), "{ok}");
    assert!(wdt.check_online().unwrap().contains("accepted"));

    // An agent key that may not act for the enterprise of one source.
    let (o, _) = configs(&emu, "", "");
    let mut sources = HashMap::new();
    sources.insert(
        "lane2".to_string(),
        OvoparkShop {
            org_id: Some("1002".into()),
            enterprise_id: Some("2002".into()),
            ..Default::default()
        },
    );
    let routes = resolve_ovopark(&o, sources);
    let agent = OvoparkClient::new(o, routes).unwrap();
    let e = agent.check_online().unwrap_err();
    assert!(e.contains("may not act for orgId 1002"), "{e}");

    // Nothing listens: unreachable, said plainly.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (_, w) = dest_settings(&format!("http://{dead}"), "", "", |t| t);
    let w = WdtClient::new(w, HashMap::new()).unwrap();
    let e = w.check_online().unwrap_err();
    assert!(e.contains("unreachable"), "{e}");
    assert!(
        !e.contains("salt") && !e.contains("sign="),
        "no query in errors: {e}"
    );
}

/// Each source's overrides resolved over `[ovopark]`, as the config does.
fn resolve_ovopark(
    o: &tillrelay::upload::ovopark::Ovopark,
    sources: HashMap<String, OvoparkShop>,
) -> HashMap<String, Result<ovopark::Route, String>> {
    sources
        .into_iter()
        .map(|(name, shop)| {
            let r = o.resolve(Some(&shop), None).map_err(|e| e.reason);
            (name, r)
        })
        .collect()
}

#[test]
fn per_source_identity_reaches_the_right_tenant_and_shop() {
    let emu = start();
    let (o, w) = configs(&emu, "", "");
    let mut ovo_sources = HashMap::new();
    ovo_sources.insert(
        "lane2".to_string(),
        OvoparkShop {
            dep_id: Some("123".into()),
            ..Default::default()
        },
    );
    let mut wdt_sources = HashMap::new();
    wdt_sources.insert(
        "lane2".to_string(),
        wdt::WdtShop {
            shop_no: Some("SHOP2".into()),
            tid_prefix: Some("L2-".into()),
            ..Default::default()
        },
    );
    let ovo_routes = resolve_ovopark(&o, ovo_sources);
    let wdt_routes = wdt_sources
        .into_iter()
        .map(|(name, shop)| (name, w.target(Some(&shop))))
        .collect();
    let ovo = OvoparkClient::new(o, ovo_routes).unwrap();
    let wdt = WdtClient::new(w, wdt_routes).unwrap();
    let mut a = common::fixture_orders().remove(0);
    let mut b = a.clone();
    b.source = Some("lane2".into());
    a.source = Some("lane1".into());
    assert!(delivered(&ovo.send(&b)));
    // Same order number on another lane: the WDT tid prefix keeps them apart.
    let out = wdt.send_batch(&[&a, &b]);
    assert!(out.iter().all(delivered), "{out:?}");
    let orders = emu.get("/_emu/ovopark/orders");
    assert_eq!(orders[0]["ipos"]["depId"], 123);
    let trades = emu.wdt_counts();
    assert_eq!(
        trades.keys().cloned().collect::<Vec<_>>(),
        ["L2-W20261122-0001", "W20261122-0001"]
    );
    let listing = emu.get("/_emu/wdt/trades");
    assert_eq!(listing[0]["shop_no"], "SHOP2");
    assert_eq!(listing[1]["shop_no"], "SHOP1");
}

/// `check-config --online`'s Wangdiantong checks through the client, per source:
/// queryShop finds each source's shop_no (or not, or another platform's), a key
/// without queryShop's permission is named as such, and the emulator refuses pushes
/// to another platform's shop as the ERP does (configuration: the destination pauses).
#[test]
fn wdt_online_checks_each_sources_shop() {
    let emu = start();
    let (_, w) = configs(&emu, "", "");
    let shop = |no: &str| wdt::WdtShop {
        shop_no: Some(no.into()),
        ..Default::default()
    };
    let routes: HashMap<String, Result<wdt::ShopTarget, String>> =
        [("lane1", "SHOP1"), ("lane2", "NOSUCH"), ("lane3", "TMALL1")]
            .into_iter()
            .map(|(name, no)| (name.to_string(), w.target(Some(&shop(no)))))
            .collect();
    let client = WdtClient::new(w, routes).unwrap();
    let checks = client.online_checks();
    let of = |src: Option<&str>| {
        checks
            .iter()
            .find(|c| c.source.as_deref() == src)
            .unwrap_or_else(|| panic!("no check for {src:?}: {checks:?}"))
            .result
            .clone()
    };
    assert_eq!(checks.len(), 4, "{checks:?}");
    assert!(of(None).unwrap().contains("accepted"));
    assert!(of(Some("lane1")).unwrap().contains("self-operated"));
    let e = of(Some("lane2")).unwrap_err();
    assert!(e.contains("shop_no NOSUCH is unknown to the ERP"), "{e}");
    let e = of(Some("lane3")).unwrap_err();
    assert!(
        e.contains("not a self-operated") && e.contains("platform 1"),
        "{e}"
    );
    // Three sources, two shops asked about (one call each) after the account's call.
    assert_eq!(emu.requests().1, 4);
    let e = client.check_online().unwrap_err();
    assert!(
        e.contains("source lane2") && e.contains("source lane3"),
        "{e}"
    );

    // The ERP refuses pushes to another platform's shop: configuration, not data.
    let o = &common::fixture_orders()[0];
    let mut lane3 = o.clone();
    lane3.source = Some("lane3".into());
    // It is that source's shop: the source pauses, not the destination (issue #26).
    let r = client.send_batch(&[&lane3]).remove(0);
    assert!(matches!(r, Outcome::SourceMisconfigured { .. }), "{r:?}");
    assert!(r.text().contains("店铺平台不是自有平台"), "{r:?}");

    // queryShop without its permission: each source says so, no "unreachable".
    emu.post(
        "/_emu/deny",
        json!({"target": "wdt", "method": "setting.Shop.queryShop"}),
    );
    let checks = client.online_checks();
    let e = checks[1].result.clone().unwrap_err();
    assert!(
        e.contains("permission 权限不足 for method setting.Shop.queryShop"),
        "{e}"
    );
    assert!(!e.contains("unreachable"), "{e}");
    // A query method without its pager is refused, as the vendor's are.
    let r = common::http()
        .delete(format!("{}/_emu/deny", emu.base()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = r#"[{"shop_no":"SHOP1"}]"#;
    let url = client.signed_url(wdt::QUERY_SHOP, body, tillrelay::clock::unix_now());
    let text = common::http()
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    let v: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(v["status"], 100, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("此方法仅支持分页查询"),
        "{v}"
    );
}

// ---------------------------------------------------------------------------
// Issue #26: the vendors' own pages, not our reading of them.
// ---------------------------------------------------------------------------

/// `n` orders of the fixtures' first, numbered `{prefix}-{i}`, closed `days_ago` days
/// before now at the till's zone `zone` (`+08:00`).
fn orders_closed(prefix: &str, n: usize, days_ago: i64, zone: &str) -> Vec<Order> {
    let z: chrono::FixedOffset = zone.parse().unwrap();
    let wall =
        chrono::Utc::now().with_timezone(&z).naive_local() - chrono::TimeDelta::days(days_ago);
    let wall = wall - chrono::TimeDelta::seconds(5);
    let base = common::fixture_orders().remove(0);
    (1..=n)
        .map(|i| {
            let mut o = base.clone();
            o.order_no = format!("{prefix}-{i}");
            o.order_time = chrono::NaiveDateTime::parse_from_str(
                &wall.format("%Y-%m-%d %H:%M:%S").to_string(),
                "%Y-%m-%d %H:%M:%S",
            )
            .unwrap();
            o.zone = Some(zone.to_string());
            o.video_start = Some(o.order_time - chrono::TimeDelta::seconds(60));
            o.video_end = Some(o.order_time + chrono::TimeDelta::seconds(30));
            o
        })
        .collect()
}

/// Item 1: searchSelfOrder's `start_time`/`end_time` are the *modification* time (its
/// page). A trade pushed three days after the sale, then re-pushed after a crash and
/// refused as already held, is confirmed by query and delivered; the emulator finds
/// it by when it was pushed, not by its trade time, and keeps the 30-day limit.
/// Fails on the old client (it searched the trade time ± 1 day).
#[test]
fn a_backlog_pushed_days_after_the_sale_is_confirmed_by_modification_time() {
    let emu = start();
    let (_, wdt) = clients(&emu);
    let orders = orders_closed("OLD", 3, 3, "+08:00");
    let refs: Vec<&Order> = orders.iter().collect();
    assert!(wdt.send_batch(&refs).iter().all(delivered));
    // The crash: the outcome was not kept; the ERP now refuses a re-push of held trades.
    emu.post("/_emu/wdt/held", json!({}));
    let out = wdt.send_batch(&refs);
    for o in &out {
        assert!(delivered(o), "{o:?}");
        assert!(o.text().contains("searchSelfOrder"), "{o:?}");
    }
    // The emulator, asked as the page defines: by modification time.
    let ask = |body: Value| -> Value {
        let body = body.to_string();
        let pager = [("page_size", "10"), ("page_no", "0"), ("calc_total", "1")];
        let url = wdt.signed_url_with(
            wdt::SEARCH_SELF_ORDER,
            &body,
            tillrelay::clock::unix_now(),
            &pager,
        );
        let text = common::http()
            .post(url)
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        serde_json::from_slice(&text).unwrap()
    };
    let at = |days: i64| {
        (chrono::Utc::now() + chrono::TimeDelta::hours(8) + chrono::TimeDelta::days(days))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let tid = wdt.build(&orders[0]).unwrap().tid;
    let trade_time_window = ask(json!([{"tid": tid, "start_time": at(-4), "end_time": at(-2)}]));
    assert_eq!(trade_time_window["status"], 0, "{trade_time_window}");
    assert_eq!(
        trade_time_window["data"]["order"],
        json!([]),
        "the trade time is not searched"
    );
    let pushed = ask(json!([{"tid": tid, "start_time": at(-1), "end_time": at(0) }]));
    let pushed_list = pushed["data"]["order"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(pushed_list.len(), 1, "{pushed}");
    let by_tid = ask(json!([{"tid": tid}]));
    assert_eq!(by_tid["data"]["order"][0]["tid"], tid.as_str(), "{by_tid}");
    let too_wide = ask(json!([{"tid": tid, "start_time": at(-31), "end_time": at(0)}]));
    assert_eq!(too_wide["status"], 1, "{too_wide}");
}

/// Item 3: an `error_list` entry is free text (pushSelf2 page): 系统繁忙，请稍后重试 for
/// one trade is retried, as the same message for a whole call is; a shop message
/// pauses its source; only the trade's own data rejects it. Fails on the old client
/// (every entry was a rejection).
#[test]
fn error_list_entries_are_classified_like_whole_call_messages() {
    let emu = start();
    let (_, wdt) = clients(&emu);
    let orders = orders_closed("EL", 4, 0, "+08:00");
    let refs: Vec<&Order> = orders.iter().collect();
    let tid = |i: usize| wdt.build(&orders[i]).unwrap().tid;
    for (i, message) in [(1, "系统繁忙，请稍后重试"), (2, "商品名称含有非法字符")]
    {
        emu.post(
            "/_emu/wdt/refuse",
            json!({"tid": tid(i), "message": message, "whole_call": false, "names_tid": false}),
        );
    }
    let out = wdt.send_batch(&refs);
    assert!(delivered(&out[0]) && delivered(&out[3]), "{out:?}");
    assert!(matches!(out[1], Outcome::Retry { .. }), "{:?}", out[1]);
    assert!(out[1].text().contains("系统繁忙"), "{:?}", out[1]);
    assert!(matches!(out[2], Outcome::Rejected { .. }), "{:?}", out[2]);
    assert!(out[2].text().contains("非法字符"), "{:?}", out[2]);
}

/// Item 6: an `error_list` entry that cannot be matched by `no` (no id at all) is
/// not dropped: every other trade of the batch is confirmed by searchSelfOrder, and
/// the refused one, which the ERP does not hold, is sent again, never counted
/// delivered. An entry naming a line (`oid`) is matched to its trade. Fails on the
/// old client (the entry was dropped and its trade counted delivered).
#[test]
fn error_list_entries_that_name_no_trade_are_confirmed_by_query() {
    let emu = start();
    let (_, wdt) = clients(&emu);
    let orders = orders_closed("UM", 3, 3, "+08:00");
    let refs: Vec<&Order> = orders.iter().collect();
    let refused = wdt.build(&orders[1]).unwrap().tid;
    emu.post(
        "/_emu/wdt/refuse",
        json!({"tid": refused, "message": "订单异常", "whole_call": false, "names_tid": false, "entry_key": ""}),
    );
    let out = wdt.send_batch(&refs);
    assert!(matches!(out[1], Outcome::Retry { .. }), "{:?}", out[1]);
    assert!(out[1].text().contains("searchSelfOrder"), "{:?}", out[1]);
    for i in [0, 2] {
        assert!(delivered(&out[i]), "{:?}", out[i]);
        assert!(out[i].text().contains("confirmed by"), "{:?}", out[i]);
    }
    assert!(!emu.wdt().contains_key(&refused));
    // A line id instead of the tid: matched to its trade, whose text is classified.
    let orders = orders_closed("OI", 2, 0, "+08:00");
    let refs: Vec<&Order> = orders.iter().collect();
    let refused = wdt.build(&orders[0]).unwrap().tid;
    emu.post(
        "/_emu/wdt/refuse",
        json!({"tid": refused, "message": "商品名称含有非法字符", "whole_call": false, "names_tid": false, "entry_key": "oid"}),
    );
    let out = wdt.send_batch(&refs);
    assert!(matches!(out[0], Outcome::Rejected { .. }), "{:?}", out[0]);
    assert!(delivered(&out[1]), "{:?}", out[1]);
}

/// Item 4: trade times go out as 东八区 wall time whatever the till's zone, and an
/// order just closed is not held back as "ahead of the server" (the emulator checks
/// trade_time against its own UTC+8 clock). Fails on the old client: +09:00 was held
/// back an hour, −05:00 and +00:00 went out 13 and 8 hours early.
#[test]
fn trade_times_go_out_in_the_servers_zone_from_any_till() {
    let emu = start();
    let (_, wdt) = clients(&emu);
    for (i, zone) in ["-05:00", "+00:00", "+08:00", "+09:00"].iter().enumerate() {
        let o = orders_closed(&format!("Z{i}"), 1, 0, zone).remove(0);
        let r = wdt.send_batch(&[&o]).remove(0);
        assert!(delivered(&r), "{zone}: {r:?}");
        let tid = wdt.build(&o).unwrap().tid;
        let trade = &emu.wdt()[&tid]["trade"];
        let sent = chrono::NaiveDateTime::parse_from_str(
            trade["trade_time"].as_str().unwrap(),
            "%Y-%m-%d %H:%M:%S",
        )
        .unwrap();
        let east8 = (chrono::Utc::now() + chrono::TimeDelta::hours(8)).naive_utc();
        let off = (east8 - sent).num_seconds();
        assert!(
            (0..=60).contains(&off),
            "{zone}: trade_time {sent} is {off} s before 东八区 now"
        );
        assert_eq!(trade["pay_time"], trade["trade_time"], "{zone}");
    }
}

/// Item 9: a gateway whose clock (`stat.systime`, the `_timestamp` window) is two
/// hours off behind a front server whose `Date` is right: the client follows
/// `stat.systime` alone, so one refused request teaches it the offset and the next
/// orders go through. The old client fell back to `Date` whenever systime showed no
/// change, so the offset alternated and every other order was refused (code 16).
#[test]
fn a_skewed_systime_is_followed_even_when_date_disagrees() {
    let emu = start();
    emu.skew("ovopark", 2 * 3600);
    emu.post("/_emu/ovopark/reply", json!({"front_date": true}));
    let (ovo, _) = clients(&emu);
    let mut orders = common::fixture_orders();
    orders.truncate(4);
    for o in &orders {
        let r = ovo.send(o);
        assert!(delivered(&r), "{r:?}");
    }
    assert_eq!(
        emu.answers("ovopark", "16"),
        1,
        "one refused request, then the offset holds"
    );
    assert!(ovo.server_offset().offset().abs_diff(2 * 3600) <= 2);
}

/// Item 2 for Ovopark: 206004 (部门不存在) names the shopId. When it is the source's
/// (its `shop`), the source's orders pause (`SourceMisconfigured`); when an order
/// carries a shop of its own (an export with each order's shop), only that order is
/// refused. On the old client both paused the whole destination.
#[test]
fn ovopark_206004_pauses_the_source_whose_shop_it_is_or_refuses_the_order() {
    let emu = start();
    let (o, _) = configs(&emu, "", "");
    let routes = [("lane1", "D001"), ("lane2", "NOSUCH")]
        .into_iter()
        .map(|(name, shop)| {
            let r = o
                .resolve(Some(&OvoparkShop::default()), Some(shop))
                .map_err(|e| e.reason);
            (name.to_string(), r)
        })
        .collect();
    let ovo = OvoparkClient::new(o, routes).unwrap();
    let base = common::fixture_orders().remove(0);
    let mut lane2 = base.clone();
    lane2.source = Some("lane2".into());
    lane2.shop = Some("NOSUCH".into());
    let r = ovo.send(&lane2);
    assert!(matches!(r, Outcome::SourceMisconfigured { .. }), "{r:?}");
    assert!(r.text().contains("206004"), "{r:?}");
    let mut own = base.clone();
    own.order_no = "OWN-SHOP".into();
    own.shop = Some("ELSEWHERE".into());
    let r = ovo.send(&own);
    assert!(matches!(r, Outcome::Rejected { .. }), "{r:?}");
    assert!(r.text().contains("this order's own shop"), "{r:?}");
    assert!(delivered(&ovo.send(&base)));
}

/// Item 6, the counts: an answer whose `new_count + chg_count` is short of the batch,
/// with no `error_list`, does not add up; each trade is confirmed by searchSelfOrder,
/// and the one the ERP does not hold is sent again, not counted delivered. Fails on
/// the old client (counts were ignored).
#[test]
fn counts_short_of_the_batch_are_confirmed_by_query() {
    let emu = start();
    let (_, wdt) = clients(&emu);
    let orders = orders_closed("CS", 3, 0, "+08:00");
    let refs: Vec<&Order> = orders.iter().collect();
    let lost = wdt.build(&orders[2]).unwrap().tid;
    emu.post("/_emu/wdt/drop", json!({ "tid": lost }));
    let before = emu.requests().1;
    let out = wdt.send_batch(&refs);
    // The push, one query of what it modified, one by tid for the trade it does not list.
    assert_eq!(emu.requests().1 - before, 3);
    assert!(delivered(&out[0]) && delivered(&out[1]), "{out:?}");
    assert!(
        out[0].text().contains("new_count 2 + chg_count 0"),
        "{:?}",
        out[0]
    );
    assert!(matches!(out[2], Outcome::Retry { .. }), "{:?}", out[2]);
    let r = common::http()
        .delete(format!("{}/_emu/wdt/refuse", emu.base()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(delivered(&wdt.send_batch(&[&orders[2]])[0]));
}
