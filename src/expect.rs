//! `tillrelay parse FILE --expect EXPECTED.json`: the field-by-field
//! difference between the orders a source makes of a file and the orders the
//! integrator expects — the loop of writing a template (docs/TEMPLATES.md).
//!
//! Invariants:
//! - Orders are matched by order number, not by position: one receipt the
//!   template cannot read is one order "expected, but not made", never a
//!   difference for every later order. An order number that occurs more than
//!   once (on either side) pairs its occurrences in order. An order made but
//!   not expected is reported as such. Lines are compared line by line.
//! - Every difference is one message naming the order (by its number, with
//!   `#k` for the k-th of a repeated number), the line and the field.
//! - Amounts (`total discount paid`, a line's — or a voided item's —
//!   `qty price amount discount`) are compared as numbers: `2` equals `2.00`, and the expected file may write
//!   them as JSON numbers or strings. Everything else is compared exactly.
//! - A key the expected file leaves out must be null or empty in the order
//!   (`scan_time`, `attrs` … need not be written); a key the order does not
//!   have is a difference.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

/// Keys whose values are compared as numbers.
const AMOUNTS: [&str; 6] = ["total", "discount", "paid", "qty", "price", "amount"];

/// The differences between `got` (orders as `parse --json` prints them) and
/// `expected` (the same shape); empty when they are equal.
pub fn differences(got: &Value, expected: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(got), Some(expected)) = (got.as_array(), expected.as_array()) else {
        out.push("the expected file must hold a JSON array of orders".into());
        return out;
    };
    let number = |o: &Value| {
        o.get("order_no")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    // Each order's label: its number, and #k for the k-th of a repeated number
    // on its side (the k-th made pairs with the k-th expected).
    let keyed = |orders: &[Value]| -> Vec<(String, usize)> {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        orders
            .iter()
            .map(|o| {
                let n = number(o);
                let k = seen.entry(n.clone()).or_insert(0);
                *k += 1;
                (n, *k)
            })
            .collect()
    };
    let got_keys = keyed(got);
    let expected_keys = keyed(expected);
    let repeated = |n: &str| {
        got_keys.iter().filter(|(m, _)| m == n).count() > 1
            || expected_keys.iter().filter(|(m, _)| m == n).count() > 1
    };
    let label = |(n, k): &(String, usize)| {
        if repeated(n) {
            format!("order {n} #{k}")
        } else {
            format!("order {n}")
        }
    };
    let mut used = vec![false; got.len()];
    for (e, key) in expected.iter().zip(&expected_keys) {
        match got_keys.iter().position(|g| g == key) {
            Some(i) => {
                used[i] = true;
                object(&label(key), &got[i], e, &mut out);
            }
            None => out.push(format!("{}: expected, but not made", label(key))),
        }
    }
    for (key, used) in got_keys.iter().zip(used) {
        if !used {
            out.push(format!("{}: made, but not expected", label(key)));
        }
    }
    out
}

fn object(at: &str, got: &Value, expected: &Value, out: &mut Vec<String>) {
    let empty = Map::new();
    let g = got.as_object().unwrap_or(&empty);
    let Some(e) = expected.as_object() else {
        out.push(format!("{at}: expected is not a JSON object"));
        return;
    };
    // The order's keys in its own order, then keys only the expected file has.
    let keys = g.keys().chain(e.keys().filter(|k| !g.contains_key(*k)));
    for key in keys {
        let (gv, ev) = (g.get(key), e.get(key));
        if key == "lines" {
            lines(at, gv, ev, out);
            continue;
        }
        if key == "voided" {
            voided(at, gv, ev, out);
            continue;
        }
        if !same(key, gv, ev) {
            out.push(format!(
                "{at}: {key}: expected {}, got {}",
                show(ev),
                show(gv)
            ));
        }
    }
}

fn lines(at: &str, got: Option<&Value>, expected: Option<&Value>, out: &mut Vec<String>) {
    let none = Vec::new();
    let g = got.and_then(Value::as_array).unwrap_or(&none);
    let e = expected.and_then(Value::as_array).unwrap_or(&none);
    for j in 0..g.len().max(e.len()) {
        let line_at = |l: &Value| {
            format!(
                "{at} line {} ({})",
                j + 1,
                l.get("code").and_then(Value::as_str).unwrap_or("?")
            )
        };
        match (g.get(j), e.get(j)) {
            (Some(gl), Some(el)) => object(&line_at(el), gl, el, out),
            (None, Some(el)) => out.push(format!("{}: expected, but not made", line_at(el))),
            (Some(gl), None) => out.push(format!("{}: made, but not expected", line_at(gl))),
            (None, None) => {}
        }
    }
}

/// Items cancelled on the receipt: compared in order, each its reason and
/// its line (amounts as numbers, as in `lines`).
fn voided(at: &str, got: Option<&Value>, expected: Option<&Value>, out: &mut Vec<String>) {
    let none = Vec::new();
    let g = got.and_then(Value::as_array).unwrap_or(&none);
    let e = expected.and_then(Value::as_array).unwrap_or(&none);
    let line = |v: &Value| v.get("line").cloned().unwrap_or(Value::Null);
    for j in 0..g.len().max(e.len()) {
        let v_at = |v: &Value| {
            format!(
                "{at} voided {} ({})",
                j + 1,
                v.pointer("/line/code")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            )
        };
        match (g.get(j), e.get(j)) {
            (Some(gv), Some(ev)) => {
                if gv.get("reason") != ev.get("reason") {
                    out.push(format!(
                        "{}: reason: expected {}, got {}",
                        v_at(ev),
                        show(ev.get("reason")),
                        show(gv.get("reason"))
                    ));
                }
                object(&v_at(ev), &line(gv), &line(ev), out);
            }
            (None, Some(ev)) => out.push(format!("{}: expected, but not made", v_at(ev))),
            (Some(gv), None) => out.push(format!("{}: made, but not expected", v_at(gv))),
            (None, None) => {}
        }
    }
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn number(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

fn same(key: &str, got: Option<&Value>, expected: Option<&Value>) -> bool {
    if is_empty(expected) && is_empty(got) {
        return true;
    }
    let (Some(g), Some(e)) = (got, expected) else {
        return false;
    };
    if AMOUNTS.contains(&key) {
        if let (Some(a), Some(b)) = (number(g), number(e)) {
            return a == b;
        }
    }
    g == e
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "nothing".into(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Issue #31.3: orders pair by number, whatever their positions; one order
    /// missing is one difference, not one per later order.
    #[test]
    fn orders_pair_by_number_and_missing_or_extra_ones_are_named() {
        let a = json!({"order_no": "A", "total": "1"});
        let b = json!({"order_no": "B", "total": "2"});
        let c = json!({"order_no": "C", "total": "3"});
        assert!(differences(&json!([c, a, b]), &json!([a, b, c])).is_empty());
        assert_eq!(
            differences(&json!([b, c]), &json!([a, b, c])),
            vec!["order A: expected, but not made"]
        );
        assert_eq!(
            differences(&json!([a, b, c]), &json!([a, c])),
            vec!["order B: made, but not expected"]
        );
        // A repeated number pairs its occurrences in order.
        let b2 = json!({"order_no": "B", "total": "5"});
        assert_eq!(
            differences(&json!([b, b2]), &json!([b, b])),
            vec!["order B #2: total: expected \"2\", got \"5\""]
        );
    }

    /// Issue #31.8: voided items compare like lines (amounts as numbers).
    #[test]
    fn voided_items_compare_reason_and_line() {
        let got = json!([{"order_no": "1", "voided": [{"reason": "STORNO",
            "line": {"code": "9", "amount": "1.90", "attrs": []}}]}]);
        let same_thing = json!([{"order_no": "1", "voided": [{"reason": "STORNO",
            "line": {"code": "9", "amount": 1.9}}]}]);
        assert!(differences(&got, &same_thing).is_empty());
        assert_eq!(
            differences(&got, &json!([{"order_no": "1"}])),
            vec!["order 1 voided 1 (9): made, but not expected"]
        );
        let other = json!([{"order_no": "1", "voided": [{"reason": "VOID",
            "line": {"code": "9", "amount": "2"}}]}]);
        assert_eq!(
            differences(&got, &other),
            vec![
                "order 1 voided 1 (9): reason: expected \"VOID\", got \"STORNO\"",
                "order 1 voided 1 (9): amount: expected \"2\", got \"1.90\"",
            ]
        );
    }

    #[test]
    fn amounts_compare_as_numbers_and_each_difference_is_named() {
        let got = json!([{"order_no": "7", "total": "2.00", "cashier": null,
            "lines": [{"code": "1", "qty": "2", "name": "A", "attrs": []}]}]);
        let same_thing = json!([{"order_no": "7", "total": 2,
            "lines": [{"code": "1", "qty": "2.000", "name": "A"}]}]);
        assert!(differences(&got, &same_thing).is_empty());

        let other = json!([{"order_no": "7", "total": "2.01", "cashier": "Ann",
            "lines": [{"code": "1", "qty": "3", "name": "A"}, {"code": "2"}]},
            {"order_no": "8"}]);
        assert_eq!(
            differences(&got, &other),
            vec![
                "order 7: total: expected \"2.01\", got \"2.00\"",
                "order 7: cashier: expected \"Ann\", got null",
                "order 7 line 1 (1): qty: expected \"3\", got \"2\"",
                "order 7 line 2 (2): expected, but not made",
                "order 8: expected, but not made",
            ]
        );
        // Order numbers are text: "007" is not "7".
        assert_eq!(
            differences(&json!([{"order_no": "7"}]), &json!([{"order_no": "007"}])),
            vec![
                "order 007: expected, but not made",
                "order 7: made, but not expected"
            ]
        );
        assert_eq!(differences(&json!([]), &json!({})).len(), 1);
    }
}
