//! Bad input, the quick version of the fuzzing in `fuzz/`: random and mutated
//! fixture bytes thrown at the six entry points that take bytes from outside —
//! the ESC/POS decoder, the receipt chain with the example config's templates,
//! the CSV and JSON readers, and both reply classifiers — checking the same
//! properties as the fuzz targets (fuzz/src/lib.rs, included below), with a
//! seeded PRNG so a failure reproduces. Plus the half of the promise a fuzzer
//! cannot check by itself: one bad order in a file never loses the others.
//!
//! The decoder's own tests (src/capture/escpos/tests.rs) already cover random
//! and command-shaped streams; here it gets mutated fixtures, where the bytes
//! sit next to real receipts.
//!
//! Regression tests for what the fuzzers found are at the bottom, named after
//! what broke.

use std::path::Path;

use tillrelay::capture::formats::{read_csv, read_json};
use tillrelay::capture::receipt::parse_bytes;
use tillrelay::capture::template::Parsed as ReceiptParsed;
use tillrelay::order::Order;

/// The fuzz targets' properties. Only some helpers are used here.
#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod props;

use props::EXAMPLES;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 6] = [
    ("escpos_decode", props::escpos_decode),
    ("receipt_template", props::receipt_template),
    ("csv_reader", props::csv_reader),
    ("json_reader", props::json_reader),
    ("ovopark_response", props::ovopark_response),
    ("wdt_response", props::wdt_response),
];

/// The committed seed corpus of a fuzz target (fixtures and spec replies).
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .unwrap()
}

/// Values that tend to break parsers: huge and odd numbers, quoting, separators.
const TOKENS: &[&[u8]] = &[
    b"79228162514264337593543950335",
    b"-79228162514264337593543950335",
    b"0.0000000000000000000000000001",
    b"1e400",
    b"9223372036854775807",
    b"-1",
    b"\"",
    b",",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"null",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\x1dV\x41\x03",
    b"\x1b@",
    b"\x1d(k",
    b"+10000-01-01 00:00:00",
    "合计: ".as_bytes(),
];

/// One to four random edits of `input`, some spliced from `other`.
fn mutate(rng: &mut fastrand::Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(..=v.len());
        match rng.u8(..7) {
            0 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] ^= 1 << rng.u8(..8);
            }
            1 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] = rng.u8(..);
            }
            2 => v.insert(at, rng.u8(..)),
            3 => {
                let end = (at + rng.usize(0..64)).min(v.len());
                v.drain(at..end);
            }
            4 => {
                let end = (at + rng.usize(0..64)).min(v.len());
                let copy = v[at..end].to_vec();
                let to = rng.usize(..=v.len());
                v.splice(to..to, copy);
            }
            5 if !other.is_empty() => {
                let from = rng.usize(..other.len());
                let end = (from + rng.usize(1..128)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                let t = TOKENS[rng.usize(..TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
        }
    }
    v
}

#[test]
fn random_bytes_at_every_entry_point() {
    let mut rng = fastrand::Rng::with_seed(0xbad_1e7);
    for (name, check) in TARGETS {
        for i in 0..300 {
            let mut data = vec![0u8; rng.usize(0..if i % 10 == 0 { 4096 } else { 256 })];
            rng.fill(&mut data);
            if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                panic!("{name} on {data:02x?}: {e:?}");
            }
        }
    }
}

#[test]
fn mutated_fixtures_at_every_entry_point() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_f1f0);
    for (name, check) in TARGETS {
        let seeds = seeds(name);
        // The seeds themselves first: they must pass as they are.
        for s in &seeds {
            check(s);
        }
        let rounds = if name == "receipt_template" || name == "escpos_decode" {
            150
        } else {
            400
        };
        for _ in 0..rounds {
            let a = &seeds[rng.usize(..seeds.len())];
            let b = &seeds[rng.usize(..seeds.len())];
            let data = mutate(&mut rng, a, b);
            if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                panic!(
                    "{name} on a mutated seed: {e:?}\n{}",
                    String::from_utf8_lossy(&data)
                );
            }
        }
    }
}

/// What a clean file reads to, by order number.
fn by_no(orders: &[Order]) -> Vec<(String, String)> {
    orders
        .iter()
        .map(|o| (o.order_no.clone(), serde_json::to_string(o).unwrap()))
        .collect()
}

#[test]
fn json_export_with_one_corrupt_order_keeps_the_others() {
    let text = fixture("exports/orders-20261122-1005.json");
    let clean = read_json(&text).unwrap();
    assert!(clean.errors.is_empty() && clean.orders.len() >= 2);
    let clean = by_no(&clean.orders);
    let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let n = doc.as_array().unwrap().len();
    // (JSON pointer inside one order, the value it gets)
    let corruptions: &[(&str, serde_json::Value)] = &[
        ("/order_time", "yesterday".into()),
        ("/total", "12,50".into()),
        ("/total", serde_json::json!(1e300)),
        ("/lines/0/qty", "abc".into()),
        ("/lines/0/code", "".into()),
        ("/lines", serde_json::json!([])),
        ("/kind", "gift".into()),
        ("/lines/0", serde_json::json!(null)),
        ("/order_no", "".into()),
        ("/order_no", serde_json::json!(17)),
    ];
    for bad in 0..n {
        for (pointer, value) in corruptions {
            let mut doc = doc.clone();
            *doc[bad].pointer_mut(pointer).unwrap() = value.clone();
            let bytes = serde_json::to_vec_pretty(&doc).unwrap();
            let got = read_json(&bytes).unwrap();
            let mut want = clean.clone();
            want.remove(bad);
            assert_eq!(by_no(&got.orders), want, "order {bad}, {pointer} = {value}");
            assert_eq!(got.errors.len(), 1, "order {bad}, {pointer} = {value}");
            let e = &got.errors[0];
            // The error says which order (when it still has a readable number) and
            // which field.
            if doc[bad]["order_no"].as_str().is_some_and(|s| !s.is_empty()) {
                assert_eq!(e.order_no.as_deref(), Some(clean[bad].0.as_str()), "{e}");
            }
            let field = e.field.clone().unwrap_or_default();
            let top = pointer.split('/').nth(1).unwrap();
            assert!(field.contains(top), "{pointer}: error names {field:?}: {e}");
        }
    }
}

#[test]
fn csv_export_with_one_corrupt_row_keeps_the_other_orders() {
    let gbk = fixture("exports/sales_20261122_1122.csv");
    let cfg = &EXAMPLES.csv_gbk;
    let clean = read_csv(&gbk, cfg).unwrap();
    assert!(clean.errors.is_empty() && clean.orders.len() >= 2);
    let clean = by_no(&clean.orders);
    // GBK never uses ',' or '\n' inside a character, so rows and cells split on
    // the bytes. Columns: 单号,时间,收银员,支付方式,商品编码,商品名称,数量,单价,金额,优惠.
    let rows: Vec<&[u8]> = gbk.split(|&b| b == b'\n').collect();
    // (column, bad value, the field the error must name)
    let corruptions: [(usize, &[u8], &str); 5] = [
        (1, b"2026-13-22 11:20:05", "order_time"),
        (4, b"", "code"),
        (6, b"x", "qty"),
        (8, b"79228162514264337593543950336", "amount"),
        (9, b"zero", "discount"),
    ];
    for j in 1..rows.len() {
        if rows[j].iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let order_no = String::from_utf8_lossy(rows[j].split(|&b| b == b',').next().unwrap());
        for (col, value, field) in corruptions {
            let mut cells: Vec<&[u8]> = rows[j].split(|&b| b == b',').collect();
            cells[col] = value;
            let row = cells.join(&b',');
            let mut all = rows.clone();
            all[j] = &row;
            let bytes = all.join(&b'\n');
            let got = read_csv(&bytes, cfg).unwrap();
            let want: Vec<_> = clean
                .iter()
                .filter(|(no, _)| *no != order_no)
                .cloned()
                .collect();
            assert_eq!(by_no(&got.orders), want, "row {j}: {field}");
            assert_eq!(got.errors.len(), 1, "row {j}: {field}: {:?}", got.errors);
            let e = &got.errors[0];
            assert_eq!(e.order_no.as_deref(), Some(&*order_no), "{e}");
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert_eq!(e.line, Some(j + 1), "{e}");
        }
    }
}

#[test]
fn receipt_capture_with_one_corrupt_receipt_keeps_the_others() {
    let bin = fixture("receipts/market.bin");
    let rules = &EXAMPLES.market;
    let results = |bytes: &[u8]| -> Vec<Result<ReceiptParsed, String>> {
        parse_bytes(bytes, rules)
            .into_iter()
            .map(|(_, r)| r.map_err(|e| e.to_string()))
            .collect()
    };
    let clean = results(&bin);
    assert!(clean.iter().all(Result::is_ok), "{clean:?}");
    // "时间: 2026-11" in GBK: each receipt prints its time once.
    let time = [&b"\xca\xb1\xbc\xe4: 2026-"[..]].concat();
    let mut start = 0;
    for k in 0..clean.len() {
        let at = start
            + bin[start..]
                .windows(time.len())
                .position(|w| w == time)
                .unwrap();
        start = at + 1;
        let mut bytes = bin.clone();
        bytes[at + time.len()..at + time.len() + 2].copy_from_slice(b"13"); // month 13
        let got = results(&bytes);
        assert_eq!(
            got.len(),
            clean.len(),
            "receipt {k}: receipts merged or split"
        );
        for (i, (g, c)) in got.iter().zip(&clean).enumerate() {
            if i == k {
                // A reprint is recognised before its fields are read.
                if !matches!(c, Ok(ReceiptParsed::Reprint { .. })) {
                    let e = g.as_ref().expect_err("month 13 is not a time");
                    assert!(e.contains("order_time"), "receipt {k}: {e}");
                }
            } else {
                assert_eq!(g, c, "receipt {i} changed when receipt {k} was corrupted");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Regressions: inputs that crashed the agent, named after what broke.

const CSV_HEAD: &str = "单号,时间,收银员,支付方式,商品编码,商品名称,数量,单价,金额,优惠\n";
/// The largest rust_decimal, as a POS could print it.
const DEC_MAX: &str = "79228162514264337593543950335";

/// Where an error points: (order number, field).
type ErrAt = (Option<String>, Option<String>);

/// A CSV read as UTF-8 with lane1's mapping: (order numbers read, (order, field) of
/// each error).
fn csv(rows: &str) -> (Vec<String>, Vec<ErrAt>) {
    let text = format!("{CSV_HEAD}{rows}");
    let p = read_csv(text.as_bytes(), &EXAMPLES.csv_utf8).unwrap();
    for o in &p.orders {
        props::round_trip(o, "csv");
    }
    (
        p.orders.iter().map(|o| o.order_no.clone()).collect(),
        p.errors
            .iter()
            .map(|e| (e.order_no.clone(), e.field.clone()))
            .collect(),
    )
}

fn err(order: &str, field: &str) -> ErrAt {
    (Some(order.into()), Some(field.into()))
}

#[test]
fn csv_amounts_adding_up_past_the_largest_decimal_fail_that_order_only() {
    // Was: "Addition overflowed" panic summing the order's total, which took the
    // folder thread down and left the file in the folder to crash it again.
    let good = "G1,2026-11-22 11:20:05,a,现金,C1,n,1,2.00,2.00,0\n";
    let cases: &[(&str, ErrAt)] = &[
        (
            &format!(
                "B1,2026-11-22 11:20:05,a,现金,C1,n,1,1,{DEC_MAX},0\nB1,2026-11-22 11:20:05,a,现金,C2,n,1,1,{DEC_MAX},0\n"
            ),
            err("B1", "total"),
        ),
        (
            &format!(
                "B1,2026-11-22 11:20:05,a,现金,C1,n,1,1,-{DEC_MAX},0\nB1,2026-11-22 11:20:05,a,现金,C2,n,1,1,-1,0\n"
            ),
            err("B1", "total"),
        ),
        // One amount alone past what any till prints (and any cloud takes).
        (
            &format!("B1,2026-11-22 11:20:05,a,现金,C1,n,1,1,{DEC_MAX},0\n"),
            err("B1", "lines[0].amount"),
        ),
    ];
    for (rows, want) in cases {
        let (orders, errors) = csv(&format!("{good}{rows}{}", good.replace("G1", "G2")));
        assert_eq!(orders, ["G1", "G2"], "{rows}");
        assert_eq!(errors, std::slice::from_ref(want), "{rows}");
    }
}

#[test]
fn receipt_amounts_adding_up_past_the_largest_decimal_fail_that_receipt_only() {
    // Was: "Addition overflowed" panic in the template's item sum, on the serial
    // thread, for every restart (the receipt is journalled before it is parsed).
    let receipt = |no: &str, amount: &str| {
        format!(
            "单号: {no}\n时间: 2026-11-22 09:15:02\n品名\n可乐\n6901234567892 1 {amount} {amount}\n\
             雪碧\n6901234567893 1 {amount} {amount}\n--------\n\x1dVA\x03"
        )
    };
    let text = [
        receipt("1001", "3.50"),
        receipt("1002", DEC_MAX),
        receipt("1003", "2.00"),
    ]
    .concat();
    let (bytes, _, _) = encoding_rs::GB18030.encode(&text);
    let got: Vec<Result<String, String>> = parse_bytes(&bytes, &EXAMPLES.market)
        .into_iter()
        .map(|(_, r)| match r {
            Ok(ReceiptParsed::Order(o)) => {
                props::check_order(&o, "market", "market template");
                Ok(format!("{} {}", o.order_no, o.total))
            }
            Ok(other) => Ok(format!("{other:?}")),
            Err(e) => Err(e.field),
        })
        .collect();
    assert_eq!(
        got,
        [
            Ok("1001 7.00".to_string()),
            Err("total".to_string()),
            Ok("1003 4.00".to_string())
        ]
    );
}

/// Reads a JSON export and sends every order it accepts on its way (stamp, both
/// clouds' formats); returns the orders read and the fields of the errors.
fn json_on_its_way(text: &str) -> (Vec<String>, Vec<String>) {
    let p = read_json(text.as_bytes()).unwrap();
    for o in &p.orders {
        props::check_order(o, "lane1", "json");
    }
    (
        p.orders.iter().map(|o| o.order_no.clone()).collect(),
        p.errors
            .iter()
            .map(|e| e.field.clone().unwrap_or_default())
            .collect(),
    )
}

fn json_order(no: &str, time: &str, amount: &str) -> String {
    format!(
        r#"{{"order_no": "{no}", "order_time": "{time}", "total": "{amount}", "paid": "{amount}",
            "lines": [{{"code": "C1", "name": "n", "qty": "1", "price": "{amount}", "amount": "{amount}"}}]}}"#
    )
}

#[test]
fn json_amounts_no_destination_can_take_fail_that_order_only() {
    // Was: accepted by the reader, then "Multiplication overflowed" in the
    // Wangdiantong translation (spreading the discount over the lines), on the
    // upload thread, for the same order after every restart.
    let t = "2026-11-22 10:00:00";
    for (qty, amount, field) in [
        (DEC_MAX, DEC_MAX, "lines[0].qty"),
        ("1", DEC_MAX, "lines[0].price"),
        ("1", "1000000000000", "lines[0].price"),
        ("-1000000000000.00", "1", "lines[0].qty"),
    ] {
        let bad =
            json_order("B1", t, amount).replace(r#""qty": "1""#, &format!(r#""qty": "{qty}""#));
        let text = format!(
            "[{}, {bad}, {}]",
            json_order("G1", t, "1.00"),
            json_order("G2", t, "2.00")
        );
        assert_eq!(
            json_on_its_way(&text),
            (
                vec!["G1".to_string(), "G2".to_string()],
                vec![field.to_string()]
            ),
            "{amount}"
        );
    }
    // Just under the bound: read, stamped and translated.
    let text = format!("[{}]", json_order("G1", t, "999999999999.99"));
    assert_eq!(json_on_its_way(&text), (vec!["G1".to_string()], vec![]));
}

#[test]
fn order_times_at_the_ends_of_the_calendar_fail_that_order_only() {
    // Was: "`NaiveDateTime - TimeDelta` overflowed" stamping the video window of
    // an order dated at the end of chrono's calendar, on the folder thread.
    for time in [
        "+262143-12-31 23:59:59",
        "-262143-01-01 00:00:00",
        "+10000-01-01 00:00:00",
    ] {
        let text = format!(
            "[{}, {}]",
            json_order("B1", time, "1.00"),
            json_order("G1", "2026-11-22 10:00:00", "1.00")
        );
        assert_eq!(
            json_on_its_way(&text),
            (vec!["G1".to_string()], vec!["order_time".to_string()]),
            "{time}"
        );
        let (orders, errors) = csv(&format!(
            "B1,{time},a,现金,C1,n,1,1.00,1.00,0\nG1,2026-11-22 11:20:05,a,现金,C1,n,1,1.00,1.00,0\n"
        ));
        assert_eq!(
            (orders, errors),
            (vec!["G1".to_string()], vec![err("B1", "order_time")]),
            "{time}"
        );
    }
}

#[test]
fn order_of_free_lines_only_is_translated_for_wangdiantong() {
    // Was: "Division by zero" spreading the order discount over lines whose
    // amounts add up to 0 (two free gifts), on the upload thread, every restart.
    // Found by the csv_reader fuzz target.
    let csv_rows = "F1,2026-11-22 11:20:05,a,现金,G1,赠品,1,0,0,0\n\
                    F1,2026-11-22 11:20:05,a,现金,G2,赠品,2,0,0.00,0\n\
                    F1,2026-11-22 11:20:05,a,现金,G3,赠品,1,0,0,0\n";
    let text = format!("{CSV_HEAD}{csv_rows}");
    let p = read_csv(text.as_bytes(), &EXAMPLES.csv_utf8).unwrap();
    assert_eq!(p.orders.len(), 1, "{:?}", p.errors);
    let cfg = &EXAMPLES.config;
    let wdt = cfg.wdt.as_ref().unwrap();
    let shop = wdt.target(None).unwrap();
    let mut o = p.orders[0].clone();
    tillrelay::stamp::stamp(&mut o, &cfg.source("lane1").unwrap().identity);
    let trade = tillrelay::upload::wdt::build_trade(&o, &shop, wdt).unwrap();
    assert_eq!(trade.lines_json().len(), 3);
    // A discount on free lines stays refused with a reason, as before.
    o.discount = rust_decimal::Decimal::new(100, 2);
    let e = tillrelay::upload::wdt::build_trade(&o, &shop, wdt).unwrap_err();
    assert!(e.contains("add up to 0"), "{e}");
}
