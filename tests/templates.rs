//! The receipt layouts docs/TEMPLATES.md lists, each a fixture of the
//! project's own making under tests/fixtures/receipts/layouts/<layout>/
//! (`receipt.txt` or `receipt.bin`, the source's `source.toml`, and
//! `expected.json`), read by the real binary as a folder source with
//! `format = "receipt"` — the way TEMPLATES.md teaches to try a template —
//! and checked with `parse --expect`, the loop TEMPLATES.md teaches.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::{Local, NaiveDateTime, TimeZone};
use common::tillrelay;

const LAYOUTS: [&str; 7] = [
    "one-line",
    "two-line-weighed",
    "three-line-no-year",
    "member-discount",
    "escpos-cp858",
    "line-void",
    "optional-lines",
];

fn layout_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/receipts/layouts")
        .join(name)
}

/// A config with the layout as a folder source, and a copy of its receipt
/// whose modification time (its capture time in `parse`) is `captured`.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    receipt: PathBuf,
    expected: PathBuf,
}

fn setup(name: &str, captured: &str) -> Setup {
    let src = layout_dir(name);
    let dir = tempfile::tempdir().unwrap();
    let source_toml = std::fs::read_to_string(src.join("source.toml")).unwrap();
    let config = dir.path().join("tillrelay.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{state}\"\n\n[[source]]\nname = \"{name}\"\nkind = \"folder\"\n\
             path = \"{inbox}\"\nformat = \"receipt\"\nshop = \"S1\"\nmachine_id = \"M1\"\n{source_toml}",
            state = dir.path().join("state").display(),
            inbox = dir.path().join("in").display(),
        ),
    )
    .unwrap();
    let file = ["receipt.txt", "receipt.bin"]
        .iter()
        .map(|f| src.join(f))
        .find(|p| p.exists())
        .expect("a receipt file");
    let receipt = dir.path().join(file.file_name().unwrap());
    std::fs::copy(&file, &receipt).unwrap();
    set_captured(&receipt, captured);
    let expected = dir.path().join("expected.json");
    std::fs::copy(src.join("expected.json"), &expected).unwrap();
    Setup {
        _dir: dir,
        config,
        receipt,
        expected,
    }
}

/// Sets the file's modification time (its capture time in `parse`).
fn set_captured(file: &Path, captured: &str) {
    let at = NaiveDateTime::parse_from_str(captured, "%Y-%m-%d %H:%M:%S").unwrap();
    let at = Local.from_local_datetime(&at).earliest().unwrap();
    std::fs::File::options()
        .write(true)
        .open(file)
        .unwrap()
        .set_modified(at.into())
        .unwrap();
}

fn parse(s: &Setup, name: &str, extra: &[&str]) -> Output {
    tillrelay()
        .arg("--config")
        .arg(&s.config)
        .arg("parse")
        .arg(&s.receipt)
        .args(["--source", name])
        .args(extra)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_layout_gives_exactly_its_expected_orders() {
    for name in LAYOUTS {
        let s = setup(name, "2026-11-23 10:00:00");
        let expect = s.expected.to_str().unwrap().to_string();
        let out = parse(&s, name, &["--expect", &expect]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("every order as expected"),
            "{name}: {}",
            text(&out.stderr)
        );
        // And --json prints what the expected file says, amounts as printed.
        let out = parse(&s, name, &["--json"]);
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let want: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&s.expected).unwrap()).unwrap();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn expect_names_each_difference_and_exits_5() {
    let s = setup("one-line", "2026-11-23 10:00:00");
    let mut want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&s.expected).unwrap()).unwrap();
    // Amounts compare as numbers: another scale is no difference …
    want[0]["total"] = serde_json::json!(11.8);
    want[0]["lines"][0]["qty"] = serde_json::json!("2.000");
    std::fs::write(&s.expected, want.to_string()).unwrap();
    let expect = s.expected.to_str().unwrap().to_string();
    let out = parse(&s, "one-line", &["--expect", &expect]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // … another value is, named by order, line and field.
    want[0]["lines"][1]["discount"] = serde_json::json!("0.60");
    want[0]["payment"] = serde_json::json!("cash");
    std::fs::write(&s.expected, want.to_string()).unwrap();
    let out = parse(&s, "one-line", &["--expect", &expect]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("order R-0415: payment: expected \"cash\", got \"card\""),
        "{err}"
    );
    assert!(
        err.contains("order R-0415 line 2 (1002): discount: expected \"0.60\", got \"0.70\""),
        "{err}"
    );
    assert!(err.contains("2 difference(s)"), "{err}");
}

#[test]
fn a_date_without_its_year_takes_the_year_nearest_before_the_capture() {
    let order_times = |captured: &str| -> Vec<String> {
        let s = setup("three-line-no-year", captured);
        let out = parse(&s, "three-line-no-year", &["--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        got.as_array()
            .unwrap()
            .iter()
            .map(|o| o["order_time"].as_str().unwrap().to_string())
            .collect()
    };
    // Re-parsed in the next January: still last year's November.
    assert_eq!(order_times("2027-01-05 08:00:00")[0], "2026-11-22 12:04:00");
    // Captured in June 2026: November is still to come, so the last one.
    assert_eq!(order_times("2026-06-01 08:00:00")[0], "2025-11-22 12:04:00");
}

/// Issue #31.3: `--expect` pairs orders by number. A receipt missing from the
/// capture (or one the template cannot read) is one order "expected, but not
/// made"; the orders after it are compared with their own expected orders, so
/// they make no differences.
#[test]
fn expect_pairs_orders_by_number_so_a_missing_receipt_is_one_difference() {
    let name = "three-line-no-year";
    let s = setup(name, "2026-11-23 10:00:00");
    let expect = s.expected.to_str().unwrap().to_string();
    let whole = std::fs::read_to_string(&s.receipt).unwrap();
    // Drop the first receipt (the sale 000123): the capture starts later.
    let end = "*** END ***\n";
    let first_end = whole.find(end).unwrap() + end.len();
    std::fs::write(&s.receipt, &whole[first_end..]).unwrap();
    set_captured(&s.receipt, "2026-11-23 10:00:00");
    let out = parse(&s, name, &["--expect", &expect]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    let diffs: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(expect.as_str()))
        .collect();
    assert_eq!(
        diffs,
        [format!("{expect}: order 000123: expected, but not made")],
        "{err}"
    );
    assert!(err.contains("1 difference(s)"), "{err}");

    // The first receipt unreadable (an amount the item layout does not
    // match): exit 4, and still only that order is missing.
    let broken = whole.replacen("= 3.20", "= 3,20", 1);
    std::fs::write(&s.receipt, &broken).unwrap();
    set_captured(&s.receipt, "2026-11-23 10:00:00");
    let out = parse(&s, name, &["--expect", &expect]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let diffs: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(expect.as_str()))
        .collect();
    assert_eq!(
        diffs,
        [format!("{expect}: order 000123: expected, but not made")],
        "{err}"
    );

    // An order made that the file does not list is named as such.
    let mut want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&s.expected).unwrap()).unwrap();
    want.as_array_mut().unwrap().remove(1);
    std::fs::write(&s.expected, want.to_string()).unwrap();
    std::fs::write(&s.receipt, &whole).unwrap();
    set_captured(&s.receipt, "2026-11-23 10:00:00");
    let out = parse(&s, name, &["--expect", &expect]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("{expect}: order 000124: made, but not expected")),
        "{err}"
    );
    assert!(err.contains("1 difference(s)"), "{err}");
}

/// Issue #31.5: `parse --text` writes the text to stdout (so `> out.txt`
/// saves it), before the orders; it is refused with `--json`.
#[test]
fn parse_text_writes_the_receipts_text_to_stdout() {
    let name = "member-discount";
    let s = setup(name, "2026-11-23 10:00:00");
    let out = parse(&s, name, &["--text"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let first = stdout.find("── receipt 1 ").expect(&stdout);
    let second = stdout.find("── receipt 2 ").expect(&stdout);
    let line = stdout.find("流水号: 8801").expect(&stdout);
    let orders = stdout.find("2 order(s)").expect(&stdout);
    assert!(first < line && line < second && second < orders, "{stdout}");
    assert!(
        !text(&out.stderr).contains("── receipt"),
        "{}",
        text(&out.stderr)
    );
    let out = parse(&s, name, &["--text", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

/// Issue #31.4: with `check_totals = false` an order whose numbers do not add
/// up is still made as printed, but said plainly: a warning naming the order
/// and the field.
#[test]
fn unchecked_totals_are_noted_per_order() {
    let name = "one-line";
    let s = setup(name, "2026-11-23 10:00:00");
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str("\n[source.template]\ncheck_totals = false\n");
    std::fs::write(&s.config, config).unwrap();
    let receipt = std::fs::read_to_string(&s.receipt).unwrap();
    std::fs::write(&s.receipt, receipt.replace("Total 11.80", "Total 12.80")).unwrap();
    let out = parse(&s, name, &["--json"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got[0]["total"], "12.80", "stored as printed");
    assert!(
        err.contains("warning: receipt 1: order R-0415: total: ")
            && err.contains("stored as printed because template.check_totals = false"),
        "{err}"
    );
    // The receipt as printed (its numbers agree): no note.
    std::fs::write(&s.receipt, receipt).unwrap();
    let out = parse(&s, name, &["--json"]);
    assert!(
        !text(&out.stderr).contains("check_totals"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue #31.6: `parse --captured-at` sets the capture time that places a date
/// printed without its year (the default stays the file's modification time).
#[test]
fn parse_captured_at_places_a_date_without_its_year() {
    let name = "three-line-no-year";
    // Modified in June 2026: by default the November before, 2025.
    let s = setup(name, "2026-06-01 08:00:00");
    let first_time = |extra: &[&str]| {
        let out = parse(&s, name, &[&["--json"], extra].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        got[0]["order_time"].as_str().unwrap().to_string()
    };
    assert_eq!(first_time(&[]), "2025-11-22 12:04:00");
    assert_eq!(
        first_time(&["--captured-at", "2027-01-05 08:00:00"]),
        "2026-11-22 12:04:00"
    );
    let out = parse(&s, name, &["--captured-at", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("\"yesterday\" is not a local time as YYYY-MM-DD HH:MM:SS"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue #31.1: `items.optional` groups are checked: an unknown one is an
/// error naming the key and the groups there are.
#[test]
fn optional_item_lines_name_a_bad_group() {
    let name = "optional-lines";
    let s = setup(name, "2026-11-23 10:00:00");
    let config = std::fs::read_to_string(&s.config).unwrap();
    let bad = config.replace("(?P<batch_no>\\S+)", "(?P<serial>\\S+)");
    assert_ne!(bad, config);
    std::fs::write(&s.config, bad).unwrap();
    let out = tillrelay()
        .arg("check-config")
        .arg("--config")
        .arg(&s.config)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("template.items.optional[3]: unknown group \"serial\"; groups are name, modifier, add, discount, batch_no, box_no"),
        "{err}"
    );
}

/// Issue #31.4 with #31.1: a totals mismatch on items whose amounts were
/// computed or changed by optional lines lists how each came about.
#[test]
fn a_totals_mismatch_lists_amounts_the_template_computed() {
    let name = "optional-lines";
    let s = setup(name, "2026-11-23 10:00:00");
    let receipt = std::fs::read_to_string(&s.receipt).unwrap();
    std::fs::write(&s.receipt, receipt.replace("TOTAL 26.40", "TOTAL 27.40")).unwrap();
    let out = parse(&s, name, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(
            "total: 27.40 is not the sum of the 4 item amounts (26.40), of which 3 computed \
             (not printed, or changed by items.optional lines): line 5: 1 × 4.80 = 4.80, \
             line 10: 2 × 4.50 − 1.00 = 8.00, line 13: 1 × 12.00 − 2.00 = 10.00;"
        ),
        "{err}"
    );
}
