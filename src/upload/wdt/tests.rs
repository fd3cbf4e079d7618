//! Unit tests of the Wangdiantong client: the published signature vector, settings,
//! classification and trades.

use super::*;
use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::order::{Order, Payment};
use crate::secret::Secret;
use crate::upload::Outcome;
use crate::upload::http::Reply;

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The published vector (`waywake/wdt-sdk-go` `sign_test.go`).
#[test]
fn published_vector() {
    let p = params(&[
        ("body", "[]"),
        ("key", "wdt_test"),
        ("method", "system.Core.now"),
        ("salt", "dd"),
        ("sid", "wdtapi3"),
        ("timestamp", "100"),
        ("v", "1.0"),
    ]);
    assert_eq!(
        signing_string(&p, "aa"),
        "aabody[]keywdt_testmethodsystem.Core.nowsaltddsidwdtapi3timestamp100v1.0aa"
    );
    assert_eq!(sign(&p, "aa"), "b5745bf1f4721a0d16e9a68cb7513032");
}

#[test]
fn sign_is_not_signed_but_the_pager_is() {
    let mut p = params(&[("a", "1")]);
    let base = signing_string(&p, "s");
    p.insert("sign".into(), "9".into());
    assert_eq!(signing_string(&p, "s"), base);
    // As every vendor SDK does (issue #16): the pager is signed like the rest.
    for k in ["page_size", "page_no", "calc_total"] {
        let mut q = p.clone();
        q.insert(k.into(), "9".into());
        assert_eq!(signing_string(&q, "s"), format!("sa1{k}9s"), "{k}");
    }
}

#[test]
fn timestamp_counts_from_2012() {
    assert_eq!(timestamp(1325347200), 0);
    assert_eq!(timestamp(1325347300), 100);
}

pub(crate) fn raw_ok() -> RawWdt {
    RawWdt {
        sid: Some("wdtapi3".into()),
        key: Some("wdt_test".into()),
        secret: Some(Secret::new("aa:dd")),
        shop_no: Some("SHOP1".into()),
        receiver_name: Some("一号店".into()),
        receiver_area: Some("上海 上海市 徐汇区".into()),
        receiver_address: Some("漕溪北路1号".into()),
        receiver_mobile: Some("13800000000".into()),
        ..RawWdt::default()
    }
}

#[test]
fn config_splits_appsecret_and_names_keys() {
    let v = raw_ok().validate().unwrap();
    assert_eq!((v.secret.expose(), v.salt.expose()), ("aa", "dd"));
    assert_eq!(v.method, PushMethod::PushSelf2);
    assert_eq!(v.batch_size, 100);
    assert_eq!(v.statuses, [DEFAULT_SALE, DEFAULT_REFUND, DEFAULT_VOID]);
    let check = |f: &dyn Fn(&mut RawWdt), key: &str| {
        let mut r = raw_ok();
        f(&mut r);
        let e = r.validate().unwrap_err();
        assert!(e.starts_with(key), "{key}: {e}");
        assert!(!e.contains("aa:dd"), "{e}");
    };
    check(&|r| r.secret = Some(Secret::new("nosalt")), "wdt.secret");
    check(&|r| r.secret = Some(Secret::new("aa:")), "wdt.secret");
    check(&|r| r.sid = None, "wdt.sid");
    check(&|r| r.method = Some("push".into()), "wdt.method");
    check(&|r| r.batch_size = Some(101), "wdt.batch_size");
    check(&|r| r.batch_size = Some(0), "wdt.batch_size");
    check(&|r| r.concurrency = Some(0), "wdt.concurrency");
    check(
        &|r| r.concurrency = Some(MAX_CONCURRENCY + 1),
        "wdt.concurrency",
    );
    check(&|r| r.delivery_term = Some(3), "wdt.delivery_term");
    check(&|r| r.is_auto_wms = Some(true), "wdt.warehouse_no");
    check(&|r| r.shop_no = Some("x".repeat(41)), "wdt.shop_no");
    check(
        &|r| {
            r.status = Some(RawStatuses {
                refund: Some(RawKindStatus {
                    trade_status: Some(15),
                    ..Default::default()
                }),
                ..Default::default()
            })
        },
        "wdt.status.refund.trade_status",
    );
    check(
        &|r| {
            r.pay_method = Some(RawPayMethods {
                card: Some(9),
                ..Default::default()
            })
        },
        "wdt.pay_method.card",
    );
}

#[test]
fn from_table_accepts_enabled_and_names_unknown_keys() {
    let t: toml::Table =
        toml::from_str("enabled = true\nsid = \"s\"\nkey = \"k\"\nsecret = \"a:b\"\n").unwrap();
    assert_eq!(RawWdt::from_table(t).unwrap().sid, "s");
    let t: toml::Table = toml::from_str("sid = \"s\"\nshopno = \"x\"\n").unwrap();
    let e = RawWdt::from_table(t).unwrap_err();
    assert!(e.starts_with("wdt:") && e.contains("shopno"), "{e}");
    let t: toml::Table =
        toml::from_str("enabled = false\nakey = \"k\"\nsecret = \"s\"\norg_id = 1\n").unwrap();
    assert_eq!(
        crate::upload::ovopark::RawOvopark::from_table(t)
            .unwrap()
            .akey,
        "k"
    );
}

#[test]
fn toml_tables() {
    let r: RawWdt = toml::from_str(
        r#"
        sid = "s"
        key = "k"
        secret = "a:b"
        method = "pushSelf"
        batch_size = 20
        [status.sale]
        process_status = 20
        [pay_method]
        cash = 3
        "#,
    )
    .unwrap();
    let v = r.validate().unwrap();
    assert_eq!(v.method, PushMethod::PushSelf);
    assert_eq!(v.statuses[0].process_status, 20);
    assert_eq!(v.statuses[0].trade_status, DEFAULT_SALE.trade_status);
    assert_eq!(v.pay_methods.of(Some(Payment::Cash)), 3);
    assert_eq!(v.pay_methods.of(Some(Payment::Wechat)), 8);
    assert!(toml::from_str::<RawWdt>("sid = \"s\"\nshopno = \"x\"").is_err());
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        date: None,
        retry_after: None,
        body: body.as_bytes().to_vec(),
    }
}

fn kind_of(c: &Classified) -> String {
    match c {
        Classified::Accepted { failed, .. } => format!("accepted/{}", failed.len()),
        Classified::DataError(_) => "data".into(),
        Classified::TimestampRefused(_) => "timestamp".into(),
        Classified::Unrecognised(_) => "unrecognised".into(),
        Classified::All(o) => o.kind().into(),
    }
}

/// Every status row of the spec's table and each status-100 message it names.
#[test]
fn classification_table() {
    let check = |status: u16, body: &str, expected: &str| {
        let c = classify(&reply(status, body));
        assert_eq!(kind_of(&c), expected, "{status} {body}: {c:?}");
    };
    check(
        200,
        r#"{"status":0,"data":{"chg_count":0,"new_count":1}}"#,
        "accepted/0",
    );
    check(
        200,
        r#"{"status":0,"data":{"chg_count":0,"new_count":1,"error_list":[{"no":"T2","error":"x"}]}}"#,
        "accepted/1",
    );
    for (status, expected) in [
        (1, "misconfigured"),
        (2, "misconfigured"),
        (3, "misconfigured"),
        (4, "retry"),
        (5, "retry"),
        (6, "misconfigured"),
        (7, "timestamp"),
        (8, "misconfigured"),
        (99, "retry"),
        (42, "retry"),
    ] {
        check(
            200,
            &format!(r#"{{"status":{status},"message":"m"}}"#),
            expected,
        );
    }
    let msg = |m: &str| format!(r#"{{"status":100,"message":"{m}"}}"#);
    for m in RATE_LIMIT_MESSAGES {
        check(200, &msg(m), "retry");
    }
    for m in CONFIG_MESSAGES {
        check(200, &msg(m), "misconfigured");
    }
    // A shop of the request: the sources whose orders carry it (issue #26).
    for m in SOURCE_MESSAGES {
        check(200, &msg(m), "source misconfigured");
    }
    // Item 7: fields the config supplies, in the vendor's words.
    for m in [
        "收件人姓名包含非法字符或为空",
        "买家昵称包含非法字符或为空",
        "电话号码不能包含*",
    ] {
        check(200, &msg(m), "source misconfigured");
    }
    for m in [
        "商品名称含有非法字符",
        "数量不合法",
        "下单时间非法",
        "Data truncation: tid",
    ] {
        check(200, &msg(m), "data");
    }
    check(200, &msg("系统繁忙"), "retry");
    for m in [
        "权限不足",
        "无仓库访问权限",
        "新建订单权限不足",
        "仓库编号不可为空",
        "pay_method must be less than or equal to 7",
    ] {
        check(200, &msg(m), "misconfigured");
    }
    for m in [
        "商家编码和货品编号不匹配,原始单号为：K0150",
        "Unparseable date: \\\"x\\\"",
    ] {
        check(200, &msg(m), "unrecognised");
    }
    check(
        200,
        r#"{"status":"1","message":"验证失败"}"#,
        "misconfigured",
    );
    check(502, "", "retry");
    check(403, "", "misconfigured");
    check(200, "garbage", "retry");
    check(200, r#"{"data":{}}"#, "retry");
}

#[test]
fn rate_limit_waits_five_to_ten_minutes() {
    let c = classify(&reply(
        200,
        r#"{"status":100,"message":"超过每分钟最大调用频率限制"}"#,
    ));
    let Classified::All(Outcome::Retry { after: Some(d), .. }) = c else {
        panic!("{c:?}")
    };
    assert!((300..=600).contains(&d.as_secs()), "{d:?}");
}

fn cfg() -> Wdt {
    raw_ok().validate().unwrap()
}

fn shop() -> ShopTarget {
    cfg().target(None).unwrap()
}

fn future() -> chrono::NaiveDateTime {
    crate::order::parse_time("2099-01-01 00:00:00").unwrap()
}

fn parts(t: &BuiltTrade) -> (serde_json::Value, Vec<serde_json::Value>) {
    (
        serde_json::from_str(&t.trade_json()).unwrap(),
        t.lines_json()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

fn d(v: &serde_json::Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// Every fixture order becomes a trade that the emulator's strict checks accept.
#[test]
fn fixture_orders_build_valid_trades() {
    let cfg = cfg();
    for o in crate::upload::testutil::fixture_orders() {
        let t = build_trade(&o, &shop(), &cfg).unwrap();
        let (trade, lines) = parts(&t);
        let refs: Vec<&serde_json::Value> = lines.iter().collect();
        crate::emulator::wdt::check_trade(&trade, &refs, future())
            .unwrap_or_else(|e| panic!("{}: {e}", o.order_no));
        assert_eq!(trade["tid"], o.order_no.as_str());
        assert_eq!(d(&trade["receivable"]), o.paid.abs(), "{}", o.order_no);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["oid"], format!("{}-{}", o.order_no, i + 1));
            assert_eq!(d(&l["total_amount"]), o.lines[i].amount.abs());
            for k in [
                "num",
                "price",
                "total_amount",
                "share_discount",
                "adjust_amount",
            ] {
                assert!(d(&l[k]).scale() <= 4, "{k}");
            }
        }
    }
}

#[test]
fn amounts_follow_the_spec_relations() {
    let orders = crate::upload::testutil::fixture_orders();
    let market = orders
        .iter()
        .find(|o| o.order_no == "2026112200013")
        .unwrap();
    let t = build_trade(market, &shop(), &cfg()).unwrap();
    let (trade, lines) = parts(&t);
    // 0.96 spread over 7.00, 2.00, 10.96 (of 19.96); the last line takes the rest.
    let shares: Vec<String> = lines
        .iter()
        .map(|l| l["share_discount"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(shares, ["0.3367", "0.0962", "0.5271"]);
    // 0.856 kg × 12.80 = 10.9568, printed 10.96: the rounding goes to adjust_amount.
    assert_eq!(lines[2]["adjust_amount"], "0.0032");
    assert_eq!(trade["goods_count"], "3.856");
    assert_eq!(trade["order_count"], 3);
    assert_eq!(trade["receivable"], "19.0000");
    assert_eq!(trade["pay_method"], 8);
    assert_eq!(trade["trade_status"], DEFAULT_SALE.trade_status);
    assert_eq!(trade["cod_amount"], "0");

    let refund = orders
        .iter()
        .find(|o| o.order_no == "2026112200015")
        .unwrap();
    let (trade, lines) = parts(&build_trade(refund, &shop(), &cfg()).unwrap());
    assert_eq!(trade["trade_status"], DEFAULT_REFUND.trade_status);
    assert_eq!(trade["refund_status"], DEFAULT_REFUND.refund_status);
    assert_eq!(lines[0]["num"], "1");
    assert_eq!(lines[0]["total_amount"], "59.90");
    assert_eq!(lines[0]["refund_amount"], "59.90");
    assert_eq!(lines[0]["refund_status"], DEFAULT_REFUND.line_refund_status);
    assert_eq!(trade["receiver_name"], "一号店");
    assert_eq!(trade["is_auto_wms"], false);
    assert_eq!(trade["warehouse_no"], "");
}

#[test]
fn cash_on_delivery_term_sets_cod_amount() {
    let mut c = cfg();
    c.delivery_term = 2;
    let o = &crate::upload::testutil::fixture_orders()[0];
    let (trade, lines) = parts(&build_trade(o, &shop(), &c).unwrap());
    assert_eq!(trade["cod_amount"], trade["receivable"]);
    let refs: Vec<&serde_json::Value> = lines.iter().collect();
    crate::emulator::wdt::check_trade(&trade, &refs, future()).unwrap();
}

#[test]
fn length_rules_reject_identifiers_and_cut_names() {
    let base = crate::upload::testutil::fixture_orders().remove(0);
    let check_reject = |f: &dyn Fn(&mut Order), needle: &str| {
        let mut o = base.clone();
        f(&mut o);
        let e = build_trade(&o, &shop(), &cfg()).unwrap_err();
        assert!(e.contains(needle), "{needle}: {e}");
    };
    check_reject(&|o| o.order_no = "9".repeat(41), "tid");
    // tid fits but tid-N does not.
    check_reject(&|o| o.order_no = "9".repeat(39), "oid");
    check_reject(&|o| o.lines[0].code = "C".repeat(41), "lines[0].code");
    check_reject(&|o| o.lines[0].qty = Decimal::ZERO, "lines[0].qty");
    check_reject(&|o| o.lines.clear(), "at least one line");
    let mut o = base.clone();
    o.lines[0].name = "长".repeat(300);
    let t = build_trade(&o, &shop(), &cfg()).unwrap();
    assert_eq!(t.warnings.len(), 1);
    let (trade, lines) = parts(&t);
    assert_eq!(
        lines[0]["goods_name"].as_str().unwrap().chars().count(),
        255
    );
    let refs: Vec<&serde_json::Value> = lines.iter().collect();
    crate::emulator::wdt::check_trade(&trade, &refs, future()).unwrap();
}

#[test]
fn per_source_shop_and_tid_prefix() {
    let c = cfg();
    let over = WdtShop {
        shop_no: Some("SHOP2".into()),
        tid_prefix: Some("L2-".into()),
        ..Default::default()
    };
    let s = c.target(Some(&over)).unwrap();
    assert_eq!(
        (s.shop_no.as_str(), s.tid_prefix.as_str()),
        ("SHOP2", "L2-")
    );
    assert_eq!(s.receiver_name, "一号店", "falls back to [wdt]");
    let o = &crate::upload::testutil::fixture_orders()[0];
    let t = build_trade(o, &s, &c).unwrap();
    assert_eq!(t.tid, format!("L2-{}", o.order_no));
    let mut c2 = c.clone();
    c2.defaults.receiver_mobile = None;
    assert!(c2.target(None).unwrap_err().contains("receiver_mobile"));
}

#[test]
fn body_is_a_positional_array() {
    let o = &crate::upload::testutil::fixture_orders()[0];
    let t = build_trade(o, &shop(), &cfg()).unwrap();
    let body = build_body("SHOP1", &[&t, &t]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[0], "SHOP1");
    assert_eq!(v[1].as_array().unwrap().len(), 2);
    assert_eq!(v[2].as_array().unwrap().len(), 2 * o.lines.len());
}

/// A sale as JSON lines `(code, qty, price, amount)`, its total, discount and paid.
fn sale(
    kind: &str,
    lines: &[(&str, &str, &str, &str)],
    total: &str,
    discount: &str,
    paid: &str,
) -> Order {
    let lines: Vec<serde_json::Value> = lines
        .iter()
        .map(|(code, qty, price, amount)| {
            serde_json::json!({"code": code, "name": code, "qty": qty, "price": price, "amount": amount})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "order_no": "D1", "order_time": "2026-11-22 10:00:00", "kind": kind,
        "total": total, "discount": discount, "paid": paid, "lines": lines,
    }))
    .unwrap()
}

/// Builds the trade and runs the emulator's own checks of the spec's relations on it.
fn built(o: &Order) -> Result<(serde_json::Value, Vec<serde_json::Value>), String> {
    let t = build_trade(o, &shop(), &cfg())?;
    let (trade, lines) = parts(&t);
    let refs: Vec<&serde_json::Value> = lines.iter().collect();
    crate::emulator::wdt::check_trade(&trade, &refs, future())
        .unwrap_or_else(|e| panic!("the emulator refuses it: {e}\n{trade}\n{lines:?}"));
    Ok((trade, lines))
}

/// Issue #15.5: amounts reach Wangdiantong as the POS printed them, never made
/// positive by `abs()`; what cannot be said truthfully is refused with the reason.
#[test]
fn amounts_say_what_the_pos_said_or_the_order_is_refused() {
    // A deposit return: +10.00 and −1 × 0.50, paid 9.50.
    let deposit = sale(
        "sale",
        &[
            ("BEER", "1", "10.00", "10.00"),
            ("DEPOSIT", "-1", "0.50", "-0.50"),
        ],
        "9.50",
        "0",
        "9.50",
    );
    let (trade, lines) = built(&deposit).unwrap();
    assert_eq!(d(&trade["receivable"]), "9.50".parse().unwrap());
    assert_eq!(lines[1]["num"], "1", "Wangdiantong's num is positive");
    assert_eq!(lines[1]["price"], "-0.50", "the sign travels in the price");
    assert_eq!(lines[1]["total_amount"], "-0.50");
    assert_eq!(d(&lines[1]["share_discount"]), Decimal::ZERO);
    assert_eq!(trade["goods_count"], "2");

    // With an order discount: the returned deposit takes no share of it.
    let mut disc = deposit.clone();
    disc.discount = "1.00".parse().unwrap();
    disc.paid = "8.50".parse().unwrap();
    let (trade, lines) = built(&disc).unwrap();
    assert_eq!(d(&trade["receivable"]), "8.50".parse().unwrap());
    assert_eq!(d(&lines[0]["share_discount"]), "1.00".parse().unwrap());

    // A sale whose only line is negative is not a positive sale: refused.
    let back = sale(
        "sale",
        &[("BEER", "-1", "10.00", "-10.00")],
        "-10.00",
        "0",
        "-10.00",
    );
    let e = built(&back).unwrap_err();
    assert!(
        e.contains("a sale of -10.00") && e.contains("kind = \"refund\""),
        "{e}"
    );

    // A total that is not its lines' sum: refused, not sent as the lines' 3.00.
    let lying = sale(
        "sale",
        &[("A", "1", "3.00", "3.00")],
        "100.00",
        "0",
        "100.00",
    );
    let e = built(&lying).unwrap_err();
    assert!(e.contains("total: is 100.00") && e.contains("3.00"), "{e}");

    // A refund printed negative goes out positive under the refund status, with its
    // discount lowering what is paid back; one printed positive is sent as it is.
    let refund = sale(
        "refund",
        &[("A", "-2", "3.50", "-7.00"), ("B", "-1", "2.00", "-2.00")],
        "-9.00",
        "0.50",
        "-8.50",
    );
    let (trade, lines) = built(&refund).unwrap();
    assert_eq!(d(&trade["receivable"]), "8.50".parse().unwrap());
    assert_eq!(lines[0]["num"], "2");
    assert_eq!(lines[0]["price"], "3.50");
    assert_eq!(
        d(&lines[0]["refund_amount"]) + d(&lines[1]["refund_amount"]),
        "8.50".parse().unwrap()
    );
    let positive = sale("refund", &[("A", "2", "3.50", "7.00")], "7.00", "0", "7.00");
    let (trade, _) = built(&positive).unwrap();
    assert_eq!(d(&trade["receivable"]), "7.00".parse().unwrap());
    // A refund that also hands out a bag (a positive line among negative ones).
    let mixed = sale(
        "refund",
        &[("A", "-2", "3.50", "-7.00"), ("BAG", "1", "0.20", "0.20")],
        "-6.80",
        "0",
        "-6.80",
    );
    let (trade, lines) = built(&mixed).unwrap();
    assert_eq!(d(&trade["receivable"]), "6.80".parse().unwrap());
    assert_eq!(lines[1]["price"], "-0.20");
}

/// Issue #16: the configured WDT strings are held to pushSelf2's lengths, and
/// `give_up_after` is read as a duration.
#[test]
fn receiver_area_and_give_up_after() {
    let mut r = raw_ok();
    r.receiver_area = Some("省".repeat(41));
    let e = r.validate().unwrap_err();
    assert!(e.contains("wdt.receiver_area") && e.contains("40"), "{e}");
    let mut r = raw_ok();
    r.receiver_area = Some("省".repeat(40));
    assert!(r.validate().is_ok());
    assert_eq!(cfg().give_up_after, DEFAULT_GIVE_UP_AFTER);
    let mut r = raw_ok();
    r.give_up_after = Some("90m".into());
    assert_eq!(r.validate().unwrap().give_up_after.as_secs(), 5400);
    let mut r = raw_ok();
    r.give_up_after = Some("never".into());
    assert!(r.validate().unwrap_err().contains("wdt.give_up_after"));
}
