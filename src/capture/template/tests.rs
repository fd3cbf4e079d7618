//! Template tests: the two fixtures against their expected orders (templates
//! loaded from config/tillrelay.toml so the documentation cannot drift),
//! then one `check` table per rule.

use super::*;
use crate::capture::receipt::{self, Pipeline, ReceiptRules};
use crate::capture::segment::RawSegment;
use std::path::Path;

fn root(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The receipt rules of source `name` in config/tillrelay.toml.
fn doc_rules(name: &str) -> ReceiptRules {
    let text = std::fs::read_to_string(root("config/tillrelay.toml")).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let sources = doc["source"].as_array().unwrap();
    let src = sources
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no source {name}"));
    let segment: Option<RawSegment> = src.get("segment").map(|v| v.clone().try_into().unwrap());
    let template: Option<RawTemplate> = src.get("template").map(|v| {
        v.clone()
            .try_into()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    });
    ReceiptRules::from_raw(
        src.get("encoding").and_then(|v| v.as_str()),
        segment,
        template,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expected(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root(&format!(
        "tests/fixtures/receipts/{name}.expected.json"
    )))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Parses a fixture and returns (orders as JSON, the other outcomes rendered).
fn parse_fixture(name: &str) -> (serde_json::Value, Vec<String>) {
    let rules = doc_rules(name);
    let bytes = std::fs::read(root(&format!("tests/fixtures/receipts/{name}.bin"))).unwrap();
    let mut orders = Vec::new();
    let mut others = Vec::new();
    for (r, parsed) in receipt::parse_bytes(&bytes, &rules) {
        match parsed {
            Ok(Parsed::Order(o)) => orders.push(serde_json::to_value(&o).unwrap()),
            Ok(other) => others.push(format!("{other:?}")),
            Err(e) => panic!("{name}: {e}\n{}", r.render()),
        }
    }
    (serde_json::Value::Array(orders), others)
}

#[test]
fn market_fixture_gives_exactly_its_expected_orders() {
    let (orders, others) = parse_fixture("market");
    assert_eq!(orders, expected("market"));
    // The reprint of 2026112200013 is recognised, and is not an order.
    assert_eq!(others, [r#"Reprint { order_no: Some("2026112200013") }"#]);
}

#[test]
fn kiosk_fixture_gives_exactly_its_expected_orders() {
    let (orders, others) = parse_fixture("kiosk");
    assert_eq!(orders, expected("kiosk"));
    assert!(others.is_empty(), "{others:?}");
}

#[test]
fn fixtures_parse_the_same_when_bytes_trickle_in() {
    // As from a serial line: random chunks, a clock that never reaches the idle
    // timeout, then end of input.
    let mut rng = fastrand::Rng::with_seed(7);
    for name in ["market", "kiosk"] {
        let rules = doc_rules(name);
        let bytes = std::fs::read(root(&format!("tests/fixtures/receipts/{name}.bin"))).unwrap();
        let whole = receipt::split_bytes(&bytes, &rules);
        for _ in 0..20 {
            let mut p = Pipeline::new(&rules);
            let mut out = Vec::new();
            let now = std::time::Instant::now();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = rng.usize(1..=rest.len().min(40));
                p.feed(&rest[..n], Some(now), &mut out);
                p.tick(now, &mut out);
                rest = &rest[n..];
            }
            p.finish(&mut out);
            let strip = |v: &[Receipt]| -> Vec<(Vec<u8>, Vec<String>)> {
                v.iter().map(|r| (r.raw.clone(), r.lines.clone())).collect()
            };
            assert_eq!(strip(&out), strip(&whole), "{name}");
        }
    }
}

const BASE: &str = r#"
reprint = ['REPRINT']
refund = ['^REFUND$']
void = ['^VOID$']
ignore = ['^X-REPORT']
[fields]
order_no = '^No\.\s*(\S+)$'
order_time = '^Time:\s*(.+)$'
cashier = '^Cashier:\s*(\S+)'
total = '^Total\s+(-?[\d.,]+)$'
discount = '^Discount\s+(-?[\d.,]+)$'
paid = '^Paid\s+(-?[\d.,]+)$'
[payment]
cash = ['^Cash\s']
card = ['^Card']
[items]
start = '^Item'
end = '^----'
lines = ['^(?P<code>\d+)\s+(?P<name>.+?)\s+(?P<qty>-?[\d.]+)\s*x\s*(?P<price>[\d.]+)\s+(?P<amount>-?[\d.]+)$']
skip = ['^\s*\*']
"#;

fn rules_with(toml_text: &str) -> ReceiptRules {
    let raw: RawTemplate = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
    ReceiptRules::from_raw(Some("utf-8"), None, Some(raw)).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses receipt text (one receipt) with `template`; renders the outcome as
/// compact JSON for orders, the Debug form otherwise, or `error: …`.
fn outcome(template: &str, text: &str) -> String {
    let rules = rules_with(template);
    let mut bytes = text.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n\x1dV\x00");
    let mut results = receipt::parse_bytes(&bytes, &rules);
    assert_eq!(results.len(), 1, "one receipt expected");
    match results.remove(0).1 {
        Ok(Parsed::Order(o)) => serde_json::to_string(&o).unwrap(),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("error: {e}"),
    }
}

#[track_caller]
fn check(template: &str, text: &str, expected: &str) {
    let got = outcome(template, text);
    assert!(
        got.contains(expected),
        "expected {expected:?}\n     in {got}\nreceipt:\n{text}"
    );
}

const SALE: &str = "SHOP\nNo. 1001\nTime: 2026-11-22 10:00:00\nCashier: Ann\nItem  Qty Price Amount\n\
                    111 Cola 500ml 2 x 3.50 7.00\n  * promo\n222 Bread 1 x 2.00 2.00\n----\n\
                    Total 9.00\nDiscount 0.50\nPaid 8.50\nCash 10.00\n";

#[test]
fn a_sale_with_every_field() {
    check(
        BASE,
        SALE,
        r#"{"order_no":"1001","order_time":"2026-11-22 10:00:00","kind":"sale","cashier":"Ann","payment":"cash","total":"9.00","discount":"0.50","paid":"8.50","lines":[{"code":"111","name":"Cola 500ml","qty":"2","price":"3.50","amount":"7.00","discount":"0","scan_time":null,"batch_no":null,"box_no":null,"attrs":[]},{"code":"222","name":"Bread","qty":"1","price":"2.00","amount":"2.00","discount":"0","scan_time":null,"batch_no":null,"box_no":null,"attrs":[]}]}"#,
    );
}

#[test]
fn markers_decide_what_a_receipt_is() {
    check(
        BASE,
        &SALE.replace("SHOP", "SHOP\n*** REPRINT ***"),
        r#"Reprint { order_no: Some("1001") }"#,
    );
    check(
        BASE,
        "X-REPORT shift 3\nTotal 100.00",
        "NotAnOrder { reason: \"line 1 \\\"X-REPORT shift 3\\\" matches template.ignore\" }",
    );
    check(BASE, &SALE.replace("SHOP", "VOID"), r#""kind":"void""#);
    check(
        BASE,
        &SALE
            .replace("SHOP", "REFUND")
            .replace("2 x 3.50 7.00", "-2 x 3.50 -7.00")
            .replace("1 x 2.00 2.00", "-1 x 2.00 -2.00")
            .replace("Total 9.00", "Total -9.00")
            .replace("Paid 8.50", "Paid -8.50"),
        r#""kind":"refund","cashier":"Ann","payment":"cash","total":"-9.00","discount":"0.50","paid":"-8.50""#,
    );
}

#[test]
fn refund_sign_negative_for_pos_that_print_refunds_positive() {
    let t = format!("refund_sign = \"negative\"\n{BASE}");
    let text = SALE.replace("SHOP", "REFUND");
    check(
        &t,
        &text,
        r#""kind":"refund","cashier":"Ann","payment":"cash","total":"-9.00","discount":"0.50","paid":"-8.50""#,
    );
    check(&t, &text, r#""qty":"-2","price":"3.50","amount":"-7.00""#);
    // As printed (the default), the same receipt keeps its positive numbers.
    check(
        BASE,
        &text,
        r#""kind":"refund","cashier":"Ann","payment":"cash","total":"9.00""#,
    );
    // A sale is never negated.
    check(&t, SALE, r#""total":"9.00""#);
}

#[test]
fn missing_amounts_are_derived_with_the_printed_scale() {
    let text = SALE
        .replace("Discount 0.50\n", "")
        .replace("Total 9.00\n", "");
    check(
        BASE,
        &text,
        r#""total":"9.00","discount":"0.50","paid":"8.50""#,
    );
    let text = SALE
        .replace("Discount 0.50\n", "")
        .replace("Paid 8.50\n", "");
    check(
        BASE,
        &text,
        r#""total":"9.00","discount":"0.00","paid":"9.00""#,
    );
    // Quantity defaults to 1, amount to qty × price.
    let t = BASE.replace(
        r"(?P<qty>-?[\d.]+)\s*x\s*(?P<price>[\d.]+)\s+(?P<amount>-?[\d.]+)$",
        r"(?P<price>[\d.]+)$",
    );
    let text = "No. 7\nTime: 2026-11-22 10:00:00\nItem\n111 Cola 3.50\n----\nTotal 3.50";
    check(&t, text, r#""qty":"1","price":"3.50","amount":"3.50""#);
    // Issue #31.2: a computed amount is after the line's own discount
    // (2 × 18.50 with 3.00 off is 34.00), and a computed price undoes it.
    let t = BASE.replace(
        r"(?P<price>[\d.]+)\s+(?P<amount>-?[\d.]+)$",
        r"(?P<price>[\d.]+)\s+-(?P<discount>[\d.]+)$",
    );
    let text =
        "No. 7\nTime: 2026-11-22 10:00:00\nItem\n111 Fish 2 x 18.50 -3.00\n----\nTotal 34.00";
    check(
        &t,
        text,
        r#""qty":"2","price":"18.50","amount":"34.00","discount":"3.00""#,
    );
    // Issue #31.4: when a computed amount is behind a totals mismatch, the
    // message names it rather than only an unmatched item line.
    check(
        &t,
        &text.replace("Total 34.00", "Total 37.00"),
        "error: line 6 \"Total 37.00\": total: 37.00 is not the sum of the 1 item amounts (34.00), \
         of which 1 computed (not printed, or changed by items.optional lines): line 4: 2 × 18.50 − 3.00 = 34.00;",
    );
    let t = BASE.replace(
        r"(?P<price>[\d.]+)\s+(?P<amount>-?[\d.]+)$",
        r"-(?P<discount>[\d.]+)\s+(?P<amount>-?[\d.]+)$",
    );
    let text =
        "No. 7\nTime: 2026-11-22 10:00:00\nItem\n111 Fish 2 x -3.00 34.00\n----\nTotal 34.00";
    check(
        &t,
        text,
        r#""qty":"2","price":"18.50","amount":"34.00","discount":"3.00""#,
    );
}

#[test]
fn multi_line_items_and_unanchored_layouts() {
    let t = BASE.replace(
        r"lines = ['^(?P<code>\d+)\s+(?P<name>.+?)\s+(?P<qty>-?[\d.]+)\s*x\s*(?P<price>[\d.]+)\s+(?P<amount>-?[\d.]+)$']",
        r"lines = ['^(?P<name>\D.*)$', '^(?P<code>\d+)$', '^(?P<qty>[\d.]+)\s*x\s*(?P<price>[\d.]+)\s*=\s*(?P<amount>[\d.]+)$']",
    );
    let text =
        "No. 8\nTime: 2026-11-22 10:00:00\nItem\nCola\n111\n2 x 3.50 = 7.00\n----\nTotal 7.00";
    check(
        &t,
        text,
        r#""code":"111","name":"Cola","qty":"2","price":"3.50","amount":"7.00""#,
    );
    // Without start/end the layout is looked for anywhere, and non-items pass.
    let t = BASE.replace("start = '^Item'\nend = '^----'\n", "");
    check(&t, &SALE.replace("----", "~~~~"), r#""total":"9.00""#);
}

#[test]
fn codes_can_be_fields() {
    let t = BASE.replace(
        r"order_no = '^No\.\s*(\S+)$'",
        r#"order_no = { regex = '^(\d+)$', from = "code128" }"#,
    );
    let rules = rules_with(&t);
    let mut bytes = SALE.replace("No. 1001\n", "").into_bytes();
    bytes.extend_from_slice(b"\x1dkI\x06{B5555\x1dV\x00");
    let results = receipt::parse_bytes(&bytes, &rules);
    let Ok(Parsed::Order(o)) = &results[0].1 else {
        panic!("{:?}", results[0].1)
    };
    assert_eq!(o.order_no, "5555");
}

/// Issue #31.7: a receipt's amounts are read with the template's number
/// format; an amount that does not fit it fails the receipt naming the line
/// (never 100× too big). Rows: (decimal, grouping, printed price, the price
/// read or the error's start).
#[test]
fn amounts_follow_the_number_format_and_never_guess() {
    // A one-line item whose price is printed as given; qty 2.
    let template = |keys: &str| {
        BASE.replace(
            r"\s*x\s*(?P<price>[\d.]+)\s+(?P<amount>-?[\d.]+)$",
            r"\s*x\s*(?P<price>.+)$",
        )
        .replace(
            "reprint = ['REPRINT']",
            &format!("reprint = ['REPRINT']\n{keys}"),
        )
    };
    let receipt = |price: &str| {
        format!("No. 1001\nTime: 2026-11-22 10:00:00\nItem\n111 Cola 1 x {price}\n----\n")
    };
    let rows: &[(&str, &str, Option<&str>)] = &[
        // The default: decimal point, "," grouping.
        ("", "17.50", Some("17.50")),
        ("", "1,234.50", Some("1234.50")),
        ("", "17,50", None),
        ("", "17,5", None),
        ("", "1.234,50", None),
        ("", "1,2", None),
        ("", "-3,00", None),
        // Decimal comma ("." grouping by default).
        ("decimal = ','", "17,50", Some("17.50")),
        ("decimal = ','", "17,5", Some("17.5")),
        ("decimal = ','", "1.234,50", Some("1234.50")),
        ("decimal = ','", "1,2", Some("1.2")),
        ("decimal = ','", "-3,00", Some("-3.00")),
        ("decimal = ','", "1,234.50", None),
        ("decimal = ','", "17.50", None),
        // Decimal comma grouped by spaces; a point with no grouping at all.
        ("decimal = ','\ngrouping = ' '", "1 234,50", Some("1234.50")),
        ("decimal = ','\ngrouping = ' '", "1.234,50", None),
        ("grouping = ''", "1234.50", Some("1234.50")),
        ("grouping = ''", "1,234.50", None),
    ];
    for (keys, price, want) in rows {
        let got = outcome(&template(keys), &receipt(price));
        match want {
            Some(w) => assert!(
                got.contains(&format!(r#""price":"{w}","amount":"{w}""#)),
                "{keys:?} {price:?}: {got}"
            ),
            None => assert!(
                got.starts_with(&format!(
                    "error: line 4 \"111 Cola 1 x {price}\": items.price: \"{price}\" does not fit the number format"
                )),
                "{keys:?} {price:?}: {got}"
            ),
        }
    }
    // A field (total) is read with the same format.
    let t = template("decimal = ','");
    let text = receipt("17,50") + "Total 17,50\n";
    check(&t, &text, r#""total":"17.50""#);
    check(
        &template(""),
        &(receipt("17.50") + "Total 17,50\n"),
        "error: line 6 \"Total 17,50\": total: \"17,50\" does not fit the number format",
    );
}

/// Issue #31.8: a line void (`items.void_line`) cancels the item just before
/// it: out of the lines and the totals, kept in `voided` with its reason; one
/// with no item before it fails the receipt naming the line.
#[test]
fn a_line_void_removes_the_item_it_follows() {
    let t = BASE.replace(
        "skip = ['^\\s*\\*']",
        "skip = ['^\\s*\\*']\nvoid_line = ['^STORNO', '^作废']",
    );
    assert!(t.contains("void_line"), "{t}");
    let text = SALE
        .replace("  * promo\n", "  * promo\n作废 顾客不要\n")
        .replace("Total 9.00", "Total 2.00")
        .replace("Discount 0.50", "Discount 0.00")
        .replace("Paid 8.50", "Paid 2.00");
    let got = outcome(&t, &text);
    let o: serde_json::Value = serde_json::from_str(&got).unwrap_or_else(|_| panic!("{got}"));
    assert_eq!(o["lines"].as_array().unwrap().len(), 1, "{got}");
    assert_eq!(o["lines"][0]["code"], "222");
    assert_eq!(o["total"], "2.00");
    assert_eq!(o["voided"][0]["reason"], "作废 顾客不要");
    assert_eq!(o["voided"][0]["line"]["code"], "111");
    assert_eq!(o["voided"][0]["line"]["amount"], "7.00");
    check(
        &t,
        &SALE.replace(
            "Item  Qty Price Amount\n",
            "Item  Qty Price Amount\nSTORNO\n",
        ),
        "error: line 6 \"STORNO\": items.void_line: cancels an item, but no item comes before it",
    );
    // Without void_line, the same receipt fails naming the line (never an
    // item silently dropped or kept).
    check(
        BASE,
        &text,
        "error: line 8 \"作废 顾客不要\": items: is in the item region but matches neither",
    );
}

#[test]
fn errors_name_the_line_and_the_field() {
    check(
        BASE,
        &SALE.replace("No. 1001", "Nr 1001"),
        "error: order_no: no line matches",
    );
    check(
        BASE,
        &SALE.replace("2026-11-22 10:00:00", "22/11/2026 10:00"),
        r#"error: line 3 "Time: 22/11/2026 10:00": order_time: "22/11/2026 10:00" does not fit format"#,
    );
    check(
        BASE,
        &SALE.replace("Discount 0.50", "Discount 0.5.0"),
        "error: line 11 \"Discount 0.5.0\": discount: \"0.5.0\" does not fit the number format",
    );
    check(
        BASE,
        &SALE.replace("222 Bread 1 x 2.00 2.00", "222 Bread 1 pc 2.00"),
        "error: line 8 \"222 Bread 1 pc 2.00\": items: is in the item region but matches neither items.lines[0] nor items.skip",
    );
    check(
        BASE,
        &SALE.replace("Total 9.00", "Total 19.00"),
        "error: line 10 \"Total 19.00\": total: 19.00 is not the sum of the 2 item amounts (9.00)",
    );
    check(
        BASE,
        &SALE.replace("Paid 8.50", "Paid 8.00"),
        "error: line 12 \"Paid 8.00\": paid: 8.00 is not total 9.00 minus discount 0.50",
    );
    // check_totals = false lets such a receipt through as printed.
    check(
        &format!("check_totals = false\n{BASE}"),
        &SALE.replace("Paid 8.50", "Paid 8.00"),
        r#""paid":"8.00""#,
    );
    check(
        BASE,
        &SALE.replace("Item  Qty Price Amount", "Goods"),
        "error: items.start: no line matches",
    );
    let t = BASE.replace(
        r"lines = ['^(?P<code>\d+)\s+(?P<name>.+?)\s+(?P<qty>-?[\d.]+)\s*x\s*(?P<price>[\d.]+)\s+(?P<amount>-?[\d.]+)$']",
        r"lines = ['^(?P<name>\D.*)$', '^(?P<code>\d+)\s+(?P<amount>[\d.]+)$']",
    );
    check(
        &t,
        "No. 9\nTime: 2026-11-22 10:00:00\nItem\nCola\n----\nTotal 1.00",
        "error: line 4 \"Cola\": items: the item starting at line 4 is cut off",
    );
}

#[test]
fn nothing_printed_is_not_an_order() {
    let rules = rules_with(BASE);
    let results = receipt::parse_bytes(b"\x1bp\x00\x19\xfa\x1dV\x00", &rules);
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].1,
        Ok(Parsed::NotAnOrder {
            reason: "drawer opened, nothing printed".into()
        })
    );
}

#[test]
fn card_numbers_are_masked_before_the_receipt_leaves_the_pipeline() {
    let text = SALE.replace("Cash 10.00", "Card 4111 1111 1111 1111\nCash 10.00");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\x1dV\x00");
    let results = receipt::parse_bytes(&bytes, &rules_with(BASE));
    let (r, parsed) = &results[0];
    assert!(
        r.lines.contains(&"Card 4111 11** **** 1111".to_string()),
        "{:?}",
        r.lines
    );
    assert!(!String::from_utf8_lossy(&r.raw).contains("1111 1111 1111 1111"));
    assert_eq!(r.masked, 1);
    // The first line that names a payment decides it.
    let Ok(Parsed::Order(o)) = parsed else {
        panic!("{parsed:?}")
    };
    assert_eq!(o.payment, Some(Payment::Card));
    // An order number that looks like a card is refused loudly, not mangled.
    let text = SALE.replace("No. 1001", "No. 4111111111111111");
    assert!(outcome(BASE, &text).contains("order_no: was masked as a card number"));
}

#[test]
fn reparse_with_a_fixed_template_turns_a_failure_into_an_order() {
    // Journalled raw bytes of one receipt, which a first template got wrong.
    let mut raw = SALE.replace("Total 9.00", "TOTAL: 9.00").into_bytes();
    raw.extend_from_slice(b"\x1dV\x00");
    let broken = rules_with(&BASE.replace(
        r"order_no = '^No\.\s*(\S+)$'",
        r"order_no = '^Order\s*(\S+)$'",
    ));
    let (_, first) = receipt::parse_one(&raw, &broken);
    assert_eq!(first.unwrap_err().field, "order_no");
    let fixed = rules_with(&BASE.replace(
        r"total = '^Total\s+(-?[\d.,]+)$'",
        r"total = '^TOTAL:\s+(-?[\d.,]+)$'",
    ));
    let (r, second) = receipt::parse_one(&raw, &fixed);
    let Ok(Parsed::Order(o)) = second else {
        panic!("{second:?}")
    };
    assert_eq!(o.order_no, "1001");
    assert_eq!(o.total.to_string(), "9.00");
    assert_eq!(r.raw, raw, "parse_one keeps the journalled bytes");
}

#[test]
fn parse_one_decodes_a_journal_entry_whole() {
    // A journal entry holding two cuts is still one receipt to parse_one.
    let rules = doc_rules("market");
    let bytes = std::fs::read(root("tests/fixtures/receipts/market.bin")).unwrap();
    let receipts = receipt::split_bytes(&bytes, &rules);
    for r in &receipts {
        let (again, _) = receipt::parse_one(&r.raw, &rules);
        assert_eq!(again.lines, r.lines);
    }
}

#[test]
fn bad_templates_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r"order_no = '^No\.\s*(\S+)$'",
            r"order_no = '^No\.\s*(\S+$'",
            "template.fields.order_no.regex: ",
        ),
        (
            "order_time = '^Time:\\s*(.+)$'",
            "order_time = { regex = '(.+)', format = '%H:%M' }",
            "template.fields.order_time.format: \"%H:%M\" does not give a full date and time",
        ),
        (
            "order_time = '^Time:\\s*(.+)$'",
            "order_time = { regex = '(.+)', format = '%Q' }",
            "template.fields.order_time.format: \"%Q\" is not a valid chrono format",
        ),
        (
            "cash = ['^Cash\\s']",
            "cheque = ['^Cheque']",
            "template.payment.cheque: not a payment; use one of cash, wechat, alipay, card, other",
        ),
        (
            "(?P<qty>",
            "(?P<quantity>",
            "template.items.lines[0]: unknown group \"quantity\"",
        ),
        (
            "(?P<code>",
            "(?P<sku>",
            "template.items.lines[0]: unknown group \"sku\"",
        ),
        (
            "skip = ['^\\s*\\*']",
            "skip = ['^\\s*\\*']\nstart2 = 1",
            "unknown field `start2`",
        ),
        (
            "cashier = '^Cashier:\\s*(\\S+)'",
            "cashier = { regex = 'x', from = \"receipt\" }",
            "template.fields.cashier.from: must be lines, codes or one of",
        ),
        (
            "cashier = '^Cashier:\\s*(\\S+)'",
            "cashier = { regex = 'x', format = '%Y' }",
            "template.fields.cashier.format: only order_time has a format",
        ),
        (
            "cashier = '^Cashier:\\s*(\\S+)'",
            "cashier = { regex = 'x', column = 3 }",
            "unknown field `column`, expected one of `regex`, `from`, `format`",
        ),
        (
            "reprint = ['REPRINT']",
            "reprint = ['(']",
            "template.reprint[0]: ",
        ),
        (
            "reprint = ['REPRINT']",
            "refund_sign = 'minus'",
            "template.refund_sign: must be printed or negative, got \"minus\"",
        ),
        (
            "reprint = ['REPRINT']",
            "decimal = ';'",
            "template.decimal: must be \".\" or \",\", got \";\"",
        ),
        (
            "reprint = ['REPRINT']",
            "decimal = ','\ngrouping = ','",
            "template.grouping: ',' is the decimal mark",
        ),
    ];
    for (from, to, want) in cases {
        assert!(BASE.contains(from), "{from}");
        let text = BASE.replace(from, to);
        let e = match toml::from_str::<RawTemplate>(&text) {
            Err(e) => e.to_string(),
            Ok(raw) => raw.validate().map(|_| ()).unwrap_err(),
        };
        assert!(e.contains(want), "expected {want:?} in {e:?}");
    }
    let e = ReceiptRules::from_raw(Some("ebcdic"), None, None).unwrap_err();
    assert!(
        e.starts_with("encoding: unknown \"ebcdic\"; use one of gb18030"),
        "{e}"
    );
}

#[test]
fn a_whole_capture_can_be_masked_before_it_is_written() {
    let rules = doc_rules("market");
    let market = std::fs::read(root("tests/fixtures/receipts/market.bin")).unwrap();
    let (same, n) = receipt::mask_stream(&market, &rules);
    assert_eq!(
        (same == market, n),
        (true, 0),
        "no card in the fixture, nothing changes"
    );
    let mut capture = market.clone();
    let (card, _, _) = encoding_rs::GB18030.encode("银行卡: 6222 0212 3456 7890 128\n");
    capture.extend_from_slice(&card);
    capture.extend_from_slice(&market);
    let (masked, n) = receipt::mask_stream(&capture, &rules);
    assert_eq!(n, 1);
    assert_eq!(masked.len(), capture.len());
    let text = encoding_rs::GB18030.decode(&masked).0.into_owned();
    let at = text.find("银行卡").unwrap();
    assert_eq!(
        text[at..].lines().next(),
        Some("银行卡: 6222 02** **** ***0 128")
    );
}

#[test]
fn the_regex_set_and_ascii_variants_are_only_shortcuts() {
    // Every line regex is searched through one RegexSet, and captures on
    // ASCII lines use the pattern compiled without Unicode; without them (a
    // template too big for one set, a pattern that needs Unicode) each regex
    // runs alone. Both must give the same outcome, error messages included,
    // on receipts that exercise every rule.
    let mut cases: Vec<(ReceiptRules, Vec<u8>)> = Vec::new();
    for name in ["market", "kiosk"] {
        let bytes = std::fs::read(root(&format!("tests/fixtures/receipts/{name}.bin"))).unwrap();
        cases.push((doc_rules(name), bytes));
    }
    let variants = [
        SALE.to_string(),
        SALE.replace("SHOP", "SHOP\n*** REPRINT ***"),
        SALE.replace("SHOP", "VOID"),
        SALE.replace("SHOP", "REFUND"),
        SALE.replace("SHOP", "X-REPORT 1"),
        SALE.replace("No. 1001", "Nr 1001"),
        SALE.replace("Discount 0.50", "Discount 0.5.0"),
        SALE.replace("222 Bread 1 x 2.00 2.00", "222 Bread 1 pc 2.00"),
        SALE.replace("Total 9.00", "Total 19.00"),
        SALE.replace("Item  Qty Price Amount", "Goods"),
        SALE.replace("----", "~~~~"),
        SALE.replace("Cash 10.00", "Card 10.00\nCash 1.00"),
    ];
    for text in &variants {
        let mut bytes = text.as_bytes().to_vec();
        bytes.extend_from_slice(b"\n\x1dV\x00");
        cases.push((rules_with(BASE), bytes));
    }
    let mut compared = 0;
    for (rules, bytes) in &cases {
        let t = rules.template.as_ref().unwrap();
        assert!(t.regexes.set.is_some(), "the set is built");
        assert!(
            t.regexes.ascii.iter().all(Option::is_some),
            "ASCII variants built"
        );
        // Neither shortcut: no set, no ASCII variants.
        let mut alone = rules.clone();
        let slow = alone.template.as_mut().unwrap();
        slow.regexes.set = None;
        slow.regexes.ascii.iter_mut().for_each(|a| *a = None);
        for r in receipt::split_bytes(bytes, rules) {
            assert_eq!(rules.parse(&r), alone.parse(&r), "{}", r.render());
            compared += 1;
        }
    }
    // market.bin holds 4 receipts, kiosk.bin 2.
    assert_eq!(compared, 4 + 2 + variants.len());
}

#[test]
fn ascii_variants_capture_exactly_as_the_unicode_regex_on_ascii_lines() {
    // The constructs whose meaning differs between Unicode and ASCII mode,
    // tried on random ASCII lines: the spans of every group must agree.
    let patterns = [
        r"^(?P<code>\d{8,14})\s+(?P<qty>-?[\d.]+)\s+(?P<price>-?[\d.,]+)\s+(?P<amount>-?[\d.,]+)$",
        r"^(?P<name>.+?)\s+\[(?P<code>[0-9A-Za-z]+)\]\s+x(?P<qty>-?[\d.]+)",
        r"(?i)total\s*(\S+)",
        r"\b(\w+)\b\W+(\D+)",
        r"(?i)^k(.)s([^a-z]*)$",
        r"单号:\s*(\d+)|No\.\s*(.*)",
        r"[\x00-\xFF]{3}(.)",
        r"(\s*)(\S*)(\s*)$",
        r"^$",
    ];
    // Lines made of receipt-like tokens, so that every pattern matches often.
    let tokens = [
        " ", "  ", "\t", "-", ".", ",", "x", "[", "]", "_", ":", "*", "k", "K", "s", "S", "total",
        "TOTAL", "No.", "Cola", "a1", "9", "0.5", "12.90", "-3", "1,234.50",
    ];
    let mut rng = fastrand::Rng::with_seed(0xa5c11);
    let line_for = |rng: &mut fastrand::Rng| -> String {
        let pick = |rng: &mut fastrand::Rng, from: std::ops::Range<usize>| tokens[rng.usize(from)];
        match rng.u8(..6) {
            0 => {
                return format!(
                    "{}{}[{}{}]{}x{}",
                    pick(rng, 17..20),
                    pick(rng, 0..3),
                    pick(rng, 19..22),
                    pick(rng, 21..23),
                    pick(rng, 0..3),
                    pick(rng, 21..26)
                );
            }
            1 => {
                return format!(
                    "{}{}{}{}",
                    pick(rng, 12..14),
                    pick(rng, 0..tokens.len()),
                    pick(rng, 14..16),
                    pick(rng, 0..tokens.len())
                );
            }
            _ => {}
        }
        if rng.u8(..3) == 0 {
            let digits: String = (0..rng.usize(6..16))
                .map(|_| char::from(b'0' + rng.u8(..10)))
                .collect();
            format!(
                "{digits}{}{}   {}  {}",
                " ".repeat(rng.usize(0..4)),
                tokens[rng.usize(21..26)],
                tokens[rng.usize(21..26)],
                tokens[rng.usize(21..26)]
            )
        } else {
            (0..rng.usize(0..12))
                .map(|_| tokens[rng.usize(..tokens.len())])
                .collect()
        }
    };
    for p in patterns {
        let unicode = Regex::new(p).unwrap();
        let ascii = regex::bytes::RegexBuilder::new(p)
            .unicode(false)
            .build()
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        let mut ul = unicode.capture_locations();
        let mut al = ascii.capture_locations();
        let mut matched = 0;
        for _ in 0..3000 {
            let line = line_for(&mut rng);
            let um = unicode.captures_read(&mut ul, &line).map(|m| m.range());
            let am = ascii
                .captures_read(&mut al, line.as_bytes())
                .map(|m| m.range());
            assert_eq!(um, am, "{p} on {line:?}");
            matched += um.is_some() as usize;
            for g in 0..ul.len() {
                assert_eq!(ul.get(g), al.get(g), "{p} group {g} on {line:?}");
            }
        }
        assert!(matched >= 30, "{p} matched only {matched} lines");
    }
}
