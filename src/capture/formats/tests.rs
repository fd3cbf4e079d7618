//! Tests of the export readers: CSV grouping and errors, and the streamed JSON
//! reader against whole-file parsing.

use super::*;
use serde_json::value::RawValue;
use std::path::Path;

/// The CSV settings of a source whose table ends with `extra` (`[source.csv]…`
/// or nothing), validated as config validates them.
fn csv_cfg(extra: &str) -> CsvConfig {
    let file: toml::Table = toml::from_str(extra).unwrap();
    let raw: RawCsv = match file.get("source").and_then(|s| s.get("csv")) {
        Some(t) => t.clone().try_into().unwrap(),
        None => RawCsv::default(),
    };
    let mut p = crate::settings::Problems::new();
    let csv = raw.validate(&mut p, "source[l].csv");
    assert!(p.is_empty(), "{:?}", p.into_vec());
    csv
}

/// Data-driven: (input, expected orders by order_no, expected error texts).
fn check_csv(cfg: &CsvConfig, input: &str, orders: &[&str], errors: &[&str]) {
    let p = read_csv(input.as_bytes(), cfg).unwrap();
    let got: Vec<_> = p.orders.iter().map(|o| o.order_no.as_str()).collect();
    assert_eq!(got, orders, "orders of {input:?}");
    let errs: Vec<_> = p.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), errors.len(), "errors of {input:?}: {errs:?}");
    for (e, want) in errs.iter().zip(errors) {
        assert!(e.contains(want), "{e:?} lacks {want:?}");
    }
}

const HEAD: &str = "order_no,order_time,code,name,qty,price,amount\n";

#[test]
fn csv_rows_group_and_bad_rows_reject_only_their_order() {
    let cfg = csv_cfg("");
    check_csv(
        &cfg,
        &format!("{HEAD}A,2026-11-22 10:00:00,1,x,1,2.00,2.00\n"),
        &["A"],
        &[],
    );
    check_csv(
        &cfg,
        &format!(
            "{HEAD}A,2026-11-22 10:00:00,1,x,1,2.00,2.00\nB,2026-11-22 10:01:00,1,x,one,2.00,2.00\nA,2026-11-22 10:00:00,2,y,1,1,1\n"
        ),
        &["A"],
        &["line 3, order \"B\", field qty: \"one\" does not fit the number format"],
    );
    check_csv(
        &cfg,
        &format!("{HEAD}A,22/11/2026,1,x,1,2,2\n"),
        &[],
        &["line 2, order \"A\", field order_time"],
    );
    check_csv(
        &cfg,
        &format!("{HEAD}A,2026-11-22 10:00:00,1,x,1,2,2\nA,2026-11-22 10:09:00,2,y,1,2,2\n"),
        &[],
        &["line 3, order \"A\", field order_time: differs from the order's first row (line 2)"],
    );
    check_csv(
        &cfg,
        &format!("{HEAD},2026-11-22 10:00:00,1,x,1,2,2\n"),
        &[],
        &["field order_no: is empty"],
    );
}

#[test]
fn crlf_files_report_true_line_numbers() {
    let cfg = csv_cfg("");
    let input = "order_no,order_time,code,name,qty,price,amount\r\nA,2026-11-22 10:00:00,1,x,1,2,2\r\nB,2026-11-22 10:00:00,1,x,z,2,2\r\n";
    check_csv(&cfg, input, &["A"], &["line 3, order \"B\""]);
}

/// Issue #31.7: amounts follow the source's number format; one that does not fit
/// it rejects its order naming the line, never read 100× too big.
#[test]
fn csv_amounts_follow_the_number_format_and_never_guess() {
    let head = "order_no;order_time;code;name;qty;price;amount\n";
    let comma = csv_cfg("[source.csv]\ndelimiter = \";\"\ndecimal = \",\"\n");
    assert_eq!(comma.number.grouping, Some('.'));
    let p = read_csv(
        format!("{head}A;2026-11-22 10:00:00;1;x;2;17,50;35,00\nA;2026-11-22 10:00:00;2;y;1;1.234,5;1.234,5\nB;2026-11-22 10:00:00;1;x;1;17.50;17.50\n").as_bytes(),
        &comma,
    )
    .unwrap();
    let a = &p.orders[0];
    assert_eq!(
        a.lines
            .iter()
            .map(|l| (l.price.to_string(), l.amount.to_string()))
            .collect::<Vec<_>>(),
        [
            ("17.50".into(), "35.00".into()),
            ("1234.5".into(), "1234.5".into())
        ]
    );
    assert_eq!(a.total.to_string(), "1269.50");
    let errs: Vec<_> = p.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0]
            .contains("line 4, order \"B\", field price: \"17.50\" does not fit the number format"),
        "{errs:?}"
    );
    // Under the default (decimal point, no grouping) a decimal comma is an
    // error naming the line, and grouping can be allowed.
    let point = csv_cfg("[source.csv]\ndelimiter = \";\"\n");
    let p = read_csv(
        format!("{head}A;2026-11-22 10:00:00;1;x;1;17,50;17,50\n").as_bytes(),
        &point,
    )
    .unwrap();
    assert!(p.orders.is_empty());
    assert!(
        p.errors[0]
            .to_string()
            .contains("line 2, order \"A\", field price"),
        "{}",
        p.errors[0]
    );
    let grouped = csv_cfg("[source.csv]\ndelimiter = \";\"\ngrouping = \",\"\n");
    let p = read_csv(format!("{head}A;2026-11-22 10:00:00;1;x;1;1,234.50;1,234.50\nB;2026-11-22 10:00:00;1;x;1;17,50;17,50\n").as_bytes(), &grouped).unwrap();
    assert_eq!(p.orders[0].total.to_string(), "1234.50");
    assert!(
        p.errors[0]
            .to_string()
            .contains("line 3, order \"B\", field price"),
        "{}",
        p.errors[0]
    );
}

#[test]
fn csv_totals_are_computed_with_the_inputs_scale() {
    let cfg = csv_cfg("");
    let p = read_csv(
        format!("{HEAD}A,2026-11-22 10:00:00,1,x,1,65.00,65.00\nA,2026-11-22 10:00:00,2,y,2,3.00,5.00\nR,2026-11-22 10:00:00,2,y,-1,3.00,-3.00\n").as_bytes(),
        &cfg,
    )
    .unwrap();
    let a = &p.orders[0];
    assert_eq!(
        (
            a.total.to_string(),
            a.discount.to_string(),
            a.paid.to_string()
        ),
        ("70.00".into(), "0.00".into(), "70.00".into())
    );
    assert_eq!(a.kind, Kind::Sale);
    assert_eq!(
        p.orders[1].kind,
        Kind::Refund,
        "a negative total is a refund"
    );
}

/// Issue #15.5: an order whose own numbers disagree (total vs its lines, paid vs
/// total less discount) is rejected with the reason naming order and field; the
/// others in the file are kept.
#[test]
fn orders_whose_numbers_disagree_are_rejected_alone_naming_the_field() {
    let cfg = csv_cfg("");
    let head = "order_no,order_time,code,name,qty,price,amount,total,order_discount,paid\n";
    check_csv(
        &cfg,
        &format!(
            "{head}A,2026-11-22 10:00:00,1,x,1,3.00,3.00,100.00,0,100.00\n\
             B,2026-11-22 10:01:00,1,x,1,10.00,10.00,9.50,0,9.50\n\
             B,2026-11-22 10:01:00,2,deposit,-1,0.50,-0.50,9.50,0,9.50\n\
             C,2026-11-22 10:02:00,1,x,1,5.00,5.00,5.00,1.00,5.00\n"
        ),
        &["B"],
        &[
            "line 2, order \"A\", field total: is 100.00, but the 1 line amount(s) add up to 3.00",
            "line 5, order \"C\", field paid: is 5.00, but total 5.00 less discount 1.00 is 4.00",
        ],
    );
    let bad_total = ORDER.replace(
        "\"total\": \"1\", \"paid\": \"1\"",
        "\"total\": \"100.00\", \"paid\": \"100.00\"",
    );
    check_json(
        format!("[{ORDER},\n{}]", bad_total.replace("\"A\"", "\"B\"")).as_bytes(),
        Ok((
            1,
            &["line 3, order \"B\", field total: is 100.00, but the 1 line amount(s) add up to 1"],
        )),
    );
}

#[test]
fn missing_columns_fail_the_file_naming_them() {
    let cfg = csv_cfg("[source.csv.columns]\norder_no = \"单号\"");
    let e = read_csv(HEAD.as_bytes(), &cfg).unwrap_err().to_string();
    assert!(e.contains("\"单号\" (order_no)"), "{e}");
    assert!(e.starts_with("line 1"), "{e}");
}

#[test]
fn gbk_errors_name_the_line() {
    let cfg = csv_cfg("[source.csv]\nencoding = \"gbk\"");
    let mut bytes = HEAD.as_bytes().to_vec();
    bytes.extend_from_slice(b"A,2026-11-22 10:00:00,1,\x81\x20,1,1,1\n");
    let e = read_csv(&bytes, &cfg).unwrap_err().to_string();
    assert!(e.starts_with("line 2"), "{e}");
}

#[test]
fn json_errors_locate_line_order_and_field() {
    let input = r#"[
  {"order_no": "A", "order_time": "2026-11-22 10:00:00", "total": "1", "paid": "1",
   "lines": [{"code": "1", "name": "x", "qty": "1", "price": "1", "amount": "1"}]},
  {"order_no": "B", "order_time": "2026-11-22 10:00:00", "total": "1", "paid": "1",
   "lines": [{"code": "1", "name": "x", "qty": "lots", "price": "1", "amount": "1"}]},
  {"order_no": "C", "order_time": "2026-11-22 10:00:00", "total": "1", "paid": "1", "lines": []}
]"#;
    let p = read_json(input.as_bytes()).unwrap();
    assert_eq!(p.orders.len(), 1);
    let errs: Vec<_> = p.errors.iter().map(|e| e.to_string()).collect();
    assert!(errs[0].starts_with("line 5, column"), "{errs:?}");
    assert!(
        errs[0].contains("order \"B\", field lines[0].qty"),
        "{errs:?}"
    );
    assert!(
        errs[1].contains("line 6, order \"C\", field lines"),
        "{errs:?}"
    );
    let e = read_json(b"[{\"order_no\": ").unwrap_err().to_string();
    assert!(e.starts_with("line 1, column"), "{e}");
    let e = read_json(b"\xff\xfe").unwrap_err().to_string();
    assert!(e.contains("not UTF-8"), "{e}");
}

/// A reader that hands out one byte per read: every chunk boundary falls
/// everywhere once.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((b, rest)), Some(out)) => {
                *out = *b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// Orders and error texts, or the file's error text.
fn json_outcome(r: impl std::io::Read) -> Result<(Vec<String>, Vec<String>), String> {
    let mut reader = JsonOrders::new(r);
    let (mut orders, mut errors) = (Vec::new(), Vec::new());
    loop {
        match reader.next_order() {
            Ok(Some(Ok(o))) => orders.push(serde_json::to_string(&o).unwrap()),
            Ok(Some(Err(e))) => errors.push(e.to_string()),
            Ok(None) => return Ok((orders, errors)),
            Err(StreamError::Invalid(e)) => return Err(e.to_string()),
            Err(StreamError::Io(e)) => panic!("{e}"),
        }
    }
}

/// Data-driven: (input, Ok(orders, error texts) or Err(text the file's error holds)).
fn check_json(input: &[u8], expected: Result<(usize, &[&str]), &str>) {
    let got = json_outcome(input);
    // One byte at a time reads the same.
    assert_eq!(json_outcome(Trickle(input)), got, "{input:?} byte by byte");
    let input = String::from_utf8_lossy(input);
    match (&got, expected) {
        (Ok((orders, errors)), Ok((n, want))) => {
            assert_eq!(orders.len(), n, "orders of {input:?}");
            assert_eq!(errors.len(), want.len(), "{input:?}: {errors:?}");
            for (e, w) in errors.iter().zip(want) {
                assert!(e.contains(w), "{input:?}: {e:?} lacks {w:?}");
            }
        }
        (Err(e), Err(want)) => assert!(e.contains(want), "{input:?}: {e:?} lacks {want:?}"),
        _ => panic!("{input:?}: got {got:?}, expected {expected:?}"),
    }
}

const ORDER: &str = r#"{"order_no": "A", "order_time": "2026-11-22 10:00:00", "total": "1", "paid": "1",
   "lines": [{"code": "1", "name": "x]}\"[{", "qty": "1", "price": "1", "amount": "1"}]}"#;

#[test]
fn json_files_are_split_into_orders_and_checked_whole() {
    let two = format!("[{ORDER},\n {}]", ORDER.replace("\"A\"", "\"B\""));
    check_json(two.as_bytes(), Ok((2, &[])));
    check_json(ORDER.as_bytes(), Ok((1, &[])));
    check_json(format!("\u{FEFF}  {two}\n\n").as_bytes(), Ok((2, &[])));
    check_json(b"[]", Ok((0, &[])));
    check_json(b" [ ] ", Ok((0, &[])));
    // Elements that are JSON but not orders fail alone.
    check_json(
        b"[{}]",
        Ok((0, &["line 1, column 3: missing field `order_no`"])),
    );
    check_json(
        format!("[1, \"]\", {ORDER}, null]").as_bytes(),
        Ok((
            1,
            &["line 1, column 2", "line 1, column 7", "line 2, column 94"],
        )),
    );
    // The file as a whole.
    check_json(b"", Err("line 1, column 1: not valid JSON: EOF"));
    check_json(
        b"[",
        Err("line 1, column 2: not valid JSON: EOF while parsing a list"),
    );
    check_json(
        b"[,]",
        Err("line 1, column 2: not valid JSON: expected value"),
    );
    check_json(
        b"[{},]",
        Err("line 1, column 5: not valid JSON: trailing comma"),
    );
    check_json(
        b"[{} {}]",
        Err("line 1, column 5: not valid JSON: expected `,` or `]`"),
    );
    check_json(
        b"[{}]\n x",
        Err("line 2, column 2: not valid JSON: trailing characters"),
    );
    check_json(
        b"{} {}",
        Err("line 1, column 4: not valid JSON: trailing characters"),
    );
    check_json(
        format!("[{ORDER},\n{{\"order_no\": ").as_bytes(),
        Err("line 3, column 13: not valid JSON: EOF while parsing a value"),
    );
    // An element whose first wrong value is data, but which is not JSON after it.
    check_json(
        b"[{}, {\"order_no\": 5,\n \"lines\": [}]",
        Err("line 2, column 12: not valid JSON"),
    );
    // Not UTF-8, inside an element or between them; a stray character that is
    // UTF-8 is a syntax error.
    check_json(
        b"[{\"order_no\": \"\xff\"}]",
        Err("line 1, column 16: the file is not UTF-8"),
    );
    check_json(
        b"[{}\n\xfe]",
        Err("line 2, column 1: the file is not UTF-8"),
    );
    check_json(b"\xff\xfe", Err("line 1, column 1: the file is not UTF-8"));
    check_json(
        "[{} 中]".as_bytes(),
        Err("line 1, column 5: not valid JSON: expected `,`"),
    );
}

/// The streaming reader accepts exactly the files that are UTF-8 JSON, as parsing
/// the whole file at once would: checked on random mutations of a small export.
#[test]
fn json_files_read_in_a_stream_are_valid_exactly_when_the_whole_file_is() {
    let base = format!("[{ORDER},\n {ORDER}, [1, {{}}], \"s\"]").into_bytes();
    let alphabet = b"[]{},:\" \\\n0aeE-.\xff\xc3";
    let mut rng = fastrand::Rng::with_seed(6);
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..4000 {
        let mut input = base.clone();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..=input.len());
            match rng.u8(..3) {
                0 if at < input.len() => {
                    input.remove(at);
                }
                1 if at < input.len() => input[at] = alphabet[rng.usize(..alphabet.len())],
                _ => input.insert(at, alphabet[rng.usize(..alphabet.len())]),
            }
        }
        let whole = std::str::from_utf8(&input)
            .ok()
            .filter(|t| serde_json::from_str::<&RawValue>(t).is_ok());
        let got = json_outcome(&input[..]);
        assert_eq!(json_outcome(Trickle(&input)), got, "byte by byte");
        assert_eq!(
            got.is_ok(),
            whole.is_some(),
            "{:?}: {got:?}",
            String::from_utf8_lossy(&input)
        );
        if whole.is_some() {
            valid += 1
        } else {
            invalid += 1
        }
    }
    assert!(
        valid > 100 && invalid > 100,
        "{valid} valid, {invalid} invalid"
    );
}

/// The shared export, read one byte at a time, gives the orders the fixtures say.
#[test]
fn the_shared_json_export_streamed_gives_the_expected_orders() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exports");
    let bytes = std::fs::read(dir.join("orders-20261122-1005.json")).unwrap();
    let expected: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let (orders, errors) = json_outcome(Trickle(&bytes)).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!orders.is_empty());
    for o in orders {
        let o: serde_json::Value = serde_json::from_str(&o).unwrap();
        assert!(expected.contains(&o), "{o} is not in expected.json");
    }
}
