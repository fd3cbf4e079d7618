//! Unit tests of the Ovopark client: the published signature vectors, settings,
//! classification and `iposJson`.

use super::*;
use std::collections::BTreeMap;

use crate::order::{Order, format_time};
use crate::secret::Secret;
use crate::upload::form::form_encode;
use crate::upload::http::Reply;

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Published vector 1: the vendor SDK README.
#[test]
fn vendor_readme_vector() {
    let p = params(&[
        ("_aid", "S107"),
        ("_akey", "test"),
        ("_mt", "open.demo.queryOpenAccount"),
        ("_requestMode", "post"),
        ("_sm", "md5"),
        ("_timestamp", "20171221132407"),
        ("_version", "v1"),
        ("orgid", "1"),
    ]);
    assert_eq!(
        signing_string(&p, "test"),
        "test_aidS107_akeytest_mtopen.demo.queryOpenAccount_requestModepost_smmd5_timestamp20171221132407_versionv1orgid1test"
    );
    assert_eq!(
        sign(&p, "test", SignMethod::Md5),
        "5489704B80A47394025527D6D51FB582"
    );
}

/// Published vector 2: `waywake/ovopark-sdk-ts` tests.
#[test]
fn sdk_ts_vector() {
    let p = params(&[
        ("_aid", "S107"),
        ("_akey", "S107-0000xxxx"),
        ("_requestMode", "post"),
        ("_sm", "md5"),
        ("_timestamp", "20191128141620"),
        ("_version", "v1"),
        ("_mt", "open.gateway.getBusinessOrg"),
        ("orgid", "11111"),
        ("starttime", "--------"),
        ("endtime", "-----"),
    ]);
    let secret = "x".repeat(31);
    assert_eq!(
        sign(&p, &secret, SignMethod::Md5),
        "B657F7CA341BB5C9C162603B9389DAA9"
    );
    // The sha1 form: 40 upper-case hex characters of the same signing string.
    let s = sign(&p, &secret, SignMethod::Sha1);
    assert_eq!(s.len(), 40);
    assert_eq!(s, s.to_uppercase());
}

#[test]
fn sig_is_excluded_and_empty_values_kept() {
    let mut p = params(&[("b", ""), ("a", "1")]);
    let before = signing_string(&p, "s");
    p.insert("_sig".into(), "X".into());
    assert_eq!(signing_string(&p, "s"), before);
    assert_eq!(before, "sa1bs");
}

#[test]
fn timestamp_in_zone() {
    // 2019-11-28 06:16:20 UTC = 14:16:20 at UTC+8.
    assert_eq!(format_timestamp(1574921780, 8 * 3600), "20191128141620");
    assert_eq!(format_timestamp(1574921780, 0), "20191128061620");
}

#[test]
fn utc_offsets() {
    let check = |s: &str, e: Option<i32>| assert_eq!(parse_utc_offset(s), e, "{s}");
    check("+08:00", Some(28800));
    check("-05:30", Some(-19800));
    check("Z", Some(0));
    check("8", None);
    check("+8:00", None);
}

#[test]
fn form_encoding_escapes_reserved_and_utf8() {
    let p = params(&[("iposJson", "{\"a\":\"可 乐&=+\"}"), ("_sm", "md5")]);
    assert_eq!(
        form_encode(&p),
        "_sm=md5&iposJson=%7B%22a%22%3A%22%E5%8F%AF%20%E4%B9%90%26%3D%2B%22%7D"
    );
}

fn raw_ok() -> RawOvopark {
    RawOvopark {
        akey: Some("K1".into()),
        secret: Some(Secret::new("s3cr3t")),
        org_id: Some(IdValue::Int(1)),
        enterprise_id: Some(IdValue::Text("2".into())),
        ..RawOvopark::default()
    }
}

#[test]
fn config_validation_names_the_key() {
    let v = raw_ok().validate().unwrap();
    assert_eq!(v.url, DEFAULT_URL);
    assert_eq!(v.sign_method, SignMethod::Md5);
    assert_eq!(v.zone_secs, 28800);
    assert_eq!(v.defaults.org_id.as_deref(), Some("1"));
    assert_eq!(v.concurrency, DEFAULT_CONCURRENCY);
    let check = |f: &dyn Fn(&mut RawOvopark), key: &str| {
        let mut r = raw_ok();
        f(&mut r);
        let e = r.validate().unwrap_err();
        assert!(e.starts_with(key), "{key}: {e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    };
    check(
        &|r| r.sign_method = Some("sha256".into()),
        "ovopark.sign_method",
    );
    check(&|r| r.akey = None, "ovopark.akey");
    check(&|r| r.secret = None, "ovopark.secret");
    check(
        &|r| r.secret_file = Some("/nonexistent/x".into()),
        "ovopark.secret",
    );
    check(
        &|r| r.org_id = Some(IdValue::Text("x1".into())),
        "ovopark.org_id",
    );
    check(
        &|r| r.dep_id = Some(IdValue::Int(123456789012)),
        "ovopark.dep_id",
    );
    check(&|r| r.url = Some("ftp://x".into()), "ovopark.url");
    check(&|r| r.concurrency = Some(0), "ovopark.concurrency");
    check(
        &|r| r.concurrency = Some(MAX_CONCURRENCY + 1),
        "ovopark.concurrency",
    );
    check(
        &|r| r.timestamp_utc_offset = Some("CST".into()),
        "ovopark.timestamp_utc_offset",
    );
    check(
        &|r| r.order_type_sale = Some("x".repeat(101)),
        "ovopark.order_type_sale",
    );
    let e = RawOvoparkShop {
        shop_id: Some("A".into()),
        dep_id: Some(IdValue::Int(1)),
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn toml_accepts_int_or_text_ids_and_refuses_unknown_keys() {
    let r: RawOvopark = toml::from_str(
        "akey = \"K\"\nsecret = \"s\"\norg_id = 7\nenterprise_id = \"8\"\ndep_id = 123\n",
    )
    .unwrap();
    let v = r.validate().unwrap();
    assert_eq!(v.defaults.dep_id.as_deref(), Some("123"));
    assert!(toml::from_str::<RawOvopark>("akey = \"K\"\nsecrets = \"s\"\n").is_err());
}

#[test]
fn target_precedence() {
    let mut cfg = raw_ok().validate().unwrap();
    cfg.defaults.dep_id = Some("9".into());
    let over = OvoparkShop {
        org_id: Some("5".into()),
        shop_id: Some("OV-1".into()),
        ..Default::default()
    };
    let t = cfg.target(Some(&over), Some("D001")).unwrap();
    assert_eq!((t.org_id.as_str(), t.enterprise_id.as_str()), ("5", "2"));
    assert_eq!(
        (t.shop_id.as_deref(), t.dep_id.as_deref()),
        (Some("OV-1"), None)
    );
    let t = cfg.target(None, Some("D001")).unwrap();
    assert_eq!(
        (t.shop_id.as_deref(), t.dep_id.as_deref()),
        (Some("D001"), None)
    );
    let t = cfg.target(None, None).unwrap();
    assert_eq!(
        (t.shop_id.as_deref(), t.dep_id.as_deref()),
        (None, Some("9"))
    );
    cfg.defaults.org_id = None;
    assert!(
        cfg.target(None, Some("D001"))
            .unwrap_err()
            .contains("org_id")
    );
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        date: None,
        retry_after: None,
        body: body.as_bytes().to_vec(),
    }
}

fn stat(code: &str) -> String {
    format!(
        r#"{{"stat":{{"cid":"c","code":"{code}","codename":"X","systime":"1574921780123"}},"result":"r","data":{{}}}}"#
    )
}

/// Every code row of the spec's table, plus the HTTP-level cases.
#[test]
fn classification_table() {
    let check = |status: u16, body: &str, kind: &str| {
        let c = classify(&reply(status, body));
        assert_eq!(c.outcome.kind(), kind, "{status} {body}: {:?}", c.outcome);
    };
    check(200, &stat("0"), "delivered");
    check(200, &stat("208003"), "delivered");
    check(200, &stat("16"), "retry");
    check(200, &stat("-100"), "retry");
    for code in ["-500", "-999", "206999", "999999"] {
        check(200, &stat(code), "retry");
    }
    for code in 1..=17 {
        if code != 16 {
            check(200, &stat(&code.to_string()), "misconfigured");
        }
    }
    // The key's open-platform user: the destination. A shop (206004) or an
    // enterprise/org (206003, 206005, 206006) is the identity of the order's source:
    // only that source pauses (issue #26).
    check(200, &stat("206001"), "misconfigured");
    // 12: the _aid/_akey pair; the reason says how to fix the page's fixed S107.
    let c = classify(&reply(200, &stat("12")));
    assert!(
        c.outcome.text().contains("set ovopark.aid"),
        "{:?}",
        c.outcome
    );
    for code in ["206003", "206004", "206005", "206006"] {
        check(200, &stat(code), "source misconfigured");
    }
    // Not in the spec: an order code of the 208 family is about the order's data;
    // anything else is retried, never rejected.
    check(200, &stat("208001"), "rejected");
    check(200, &stat("123456"), "retry");
    // Numeric stat.code, and a business code in data.code under a gateway success.
    check(200, r#"{"stat":{"code":0}}"#, "delivered");
    check(
        200,
        r#"{"stat":{"code":"0"},"data":{"code":"208003"}}"#,
        "delivered",
    );
    check(
        200,
        r#"{"stat":{"code":"0"},"data":{"code":206004}}"#,
        "source misconfigured",
    );
    check(
        200,
        r#"{"stat":{"code":"0"},"data":{"code":"0"}}"#,
        "delivered",
    );
    // HTTP level.
    check(500, "oops", "retry");
    check(503, "", "retry");
    check(429, "", "retry");
    check(404, "", "misconfigured");
    check(301, "", "misconfigured");
    check(200, "<html>portal</html>", "retry");
    check(200, r#"{"result":"no stat"}"#, "retry");
}

#[test]
fn timestamp_refusal_carries_systime() {
    let c = classify(&reply(200, &stat("16")));
    assert!(c.timestamp_refused);
    assert_eq!(c.systime.as_deref(), Some("1574921780123"));
    assert!(!classify(&reply(200, &stat("7"))).timestamp_refused);
}

fn target() -> Target {
    Target {
        org_id: "1".into(),
        enterprise_id: "2".into(),
        shop_id: Some("D001".into()),
        dep_id: None,
        order_no_prefix: String::new(),
    }
}

#[test]
fn order_no_prefix_keeps_lanes_apart() {
    let o = crate::upload::testutil::fixture_orders().remove(0);
    let t = Target {
        order_no_prefix: "L2-".into(),
        ..target()
    };
    let v: serde_json::Value =
        serde_json::from_str(&build_ipos(&o, &t, "销售").unwrap().json).unwrap();
    assert_eq!(v["orderNo"], format!("L2-{}", o.order_no));
}

/// Every fixture order builds an iposJson that the emulator's strict checks accept,
/// with the fields the spec maps from the order.
#[test]
fn fixture_orders_build_valid_ipos() {
    let orders = crate::upload::testutil::fixture_orders();
    assert!(orders.len() >= 9);
    for o in &orders {
        let ipos = build_ipos(o, &target(), "销售").unwrap();
        assert!(ipos.warnings.is_empty(), "{:?}", ipos.warnings);
        let v: serde_json::Value = serde_json::from_str(&ipos.json).unwrap();
        crate::emulator::ovopark::check_ipos(&v).unwrap_or_else(|e| panic!("{}: {e}", o.order_no));
        assert_eq!(v["orderNo"], o.order_no.as_str());
        assert_eq!(v["shopId"], "D001");
        assert_eq!(v["machineId"], "NVR01-CH03");
        assert_eq!(v["orderTime"], format_time(&o.order_time));
        assert_eq!(v["startTime"], format_time(&o.video_start.unwrap()));
        assert_eq!(v["endTime"], format_time(&o.video_end.unwrap()));
        assert_eq!(v["goods"].as_array().unwrap().len(), o.lines.len());
        for (g, l) in v["goods"].as_array().unwrap().iter().zip(&o.lines) {
            assert_eq!(g["goodsId"], l.code.as_str());
            assert_eq!(g["goodsName"], l.name.as_str());
            // Exact decimal text on the wire, never a float rendering.
            let price_text = g["goodsPrice"].to_string();
            let nums_text = g["goodsNums"].to_string();
            assert_eq!(
                price_text.parse::<f64>().unwrap(),
                l.price.to_string().parse::<f64>().unwrap()
            );
            assert_eq!(
                nums_text.parse::<f64>().unwrap(),
                l.qty.to_string().parse::<f64>().unwrap()
            );
            assert!(ipos.json.contains(&format!("\"goodsPrice\":{}", l.price)));
        }
    }
    let first = orders
        .iter()
        .find(|o| o.order_no == "W20261122-0001")
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&build_ipos(first, &target(), "销售").unwrap().json).unwrap();
    assert_eq!(v["userName"], "赵六");
    assert_eq!(v["orderType"], "销售");
    assert_eq!(v["goods"][0]["scanTime"], "2026-11-22 10:00:31");
    assert_eq!(v["goods"][0]["skus"][1]["skuKeyId"], 2);
    assert_eq!(v["goods"][0]["skus"][1]["skuValue"], "L");
}

#[test]
fn length_rules_reject_identifiers_and_cut_names() {
    let base = crate::upload::testutil::fixture_orders().remove(0);
    let check_reject = |f: &dyn Fn(&mut Order), needle: &str| {
        let mut o = base.clone();
        f(&mut o);
        let e = build_ipos(&o, &target(), "销售").unwrap_err();
        assert!(e.contains(needle), "{needle}: {e}");
    };
    check_reject(
        &|o| o.order_no = "9".repeat(101),
        "orderNo is 101 characters",
    );
    check_reject(&|o| o.machine_id = Some("M".repeat(101)), "machineId");
    check_reject(&|o| o.lines[0].code = "C".repeat(101), "goods[0].goodsId");
    check_reject(
        &|o| o.lines[1].batch_no = Some("B".repeat(101)),
        "goods[1].batchNo",
    );
    check_reject(
        &|o| o.lines[0].qty = "123456789.123".parse().unwrap(),
        "goods[0].goodsNums",
    );
    check_reject(&|o| o.machine_id = None, "machine_id");
    check_reject(&|o| o.video_end = None, "video_end");
    let mut long_shop = target();
    long_shop.shop_id = Some("S".repeat(101));
    assert!(
        build_ipos(&base, &long_shop, "x")
            .unwrap_err()
            .contains("shopId")
    );

    let mut o = base.clone();
    o.lines[0].name = "长".repeat(150);
    o.cashier = Some("收".repeat(101));
    let ipos = build_ipos(&o, &target(), "销售").unwrap();
    assert_eq!(ipos.warnings.len(), 2, "{:?}", ipos.warnings);
    let v: serde_json::Value = serde_json::from_str(&ipos.json).unwrap();
    assert_eq!(
        v["goods"][0]["goodsName"].as_str().unwrap(),
        "长".repeat(100)
    );
    assert_eq!(v["userName"].as_str().unwrap().chars().count(), 100);
    crate::emulator::ovopark::check_ipos(&v).unwrap();
}

#[test]
fn dep_id_goes_out_as_an_integer() {
    let o = crate::upload::testutil::fixture_orders().remove(0);
    let t = Target {
        shop_id: None,
        dep_id: Some("123".into()),
        ..target()
    };
    let json = build_ipos(&o, &t, "销售").unwrap().json;
    assert!(json.starts_with(r#"{"depId":123,"orderNo""#), "{json}");
}

/// Issue #16: `stat.code` as int or string, `stat.systime` as epoch milliseconds or
/// `yyyy-MM-dd HH:mm:ss`, and an unknown code marked as this order's alone.
#[test]
fn replies_with_numeric_or_text_codes_and_either_systime() {
    for body in [
        r#"{"stat":{"code":208003,"systime":1574921780123}}"#,
        r#"{"stat":{"code":"208003","systime":"2019-11-28 14:16:20"}}"#,
    ] {
        let c = classify(&reply(200, body));
        assert_eq!(c.outcome.kind(), "delivered", "{body}");
        assert_eq!(c.code.as_deref(), Some("208003"), "{body}");
        assert!(!c.unrecognised, "{body}");
        let t = crate::upload::parse_ovopark_systime(c.systime.as_deref().unwrap(), 8 * 3600);
        assert_eq!(t, Some(1574921780), "{body}");
    }
    for body in [
        r#"{"stat":{"code":123456}}"#,
        r#"{"stat":{"code":"123456"}}"#,
    ] {
        let c = classify(&reply(200, body));
        assert_eq!(c.outcome.kind(), "retry", "{body}");
        assert!(c.unrecognised, "{body}");
    }
    for known in ["-500", "16", "208001", "3"] {
        assert!(!classify(&reply(200, &stat(known))).unrecognised, "{known}");
    }
}

#[test]
fn nonce_is_a_uuid() {
    let n = super::sign::nonce();
    let parts: Vec<&str> = n.split('-').collect();
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    assert_eq!(lens, [8, 4, 4, 4, 12], "{n}");
    assert!(n.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{n}");
    assert!(parts[2].starts_with('4'), "{n}");
    assert_ne!(n, super::sign::nonce());
}

#[test]
fn method_and_give_up_after_are_configurable() {
    let v = raw_ok().validate().unwrap();
    assert_eq!(v.method, SEND_ORDER);
    assert_eq!(v.give_up_after, DEFAULT_GIVE_UP_AFTER);
    let mut r = raw_ok();
    r.method = Some("open.ovopark.pos.sendOrder".into());
    r.give_up_after = Some("2h".into());
    let v = r.validate().unwrap();
    assert_eq!(v.method, "open.ovopark.pos.sendOrder");
    assert_eq!(v.give_up_after.as_secs(), 7200);
    let mut r = raw_ok();
    r.method = Some("send order".into());
    assert!(r.validate().unwrap_err().contains("ovopark.method"));
    let mut r = raw_ok();
    r.give_up_after = Some("soon".into());
    assert!(r.validate().unwrap_err().contains("ovopark.give_up_after"));
}
