//! `tillrelay parse FILE --expect EXPECTED.json`: the field-by-field
//! difference between the orders a source makes of a file and the orders the
//! integrator expects — the loop of writing a template (docs/TEMPLATES.md).
//!
//! Invariants:
//! - Orders are compared in order (order 1 with order 1 …), and their lines
//!   line by line; every difference is one message naming the order (its
//!   position and number), the line and the field.
//! - Amounts (`total discount paid`, a line's `qty price amount discount`) are
//!   compared as numbers: `2` equals `2.00`, and the expected file may write
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
    for i in 0..got.len().max(expected.len()) {
        let label = |o: &Value| {
            format!(
                "order {} ({})",
                i + 1,
                o.get("order_no").and_then(Value::as_str).unwrap_or("?")
            )
        };
        match (got.get(i), expected.get(i)) {
            (Some(g), Some(e)) => object(&label(e), g, e, &mut out),
            (None, Some(e)) => out.push(format!("{}: expected, but not made", label(e))),
            (Some(g), None) => out.push(format!("{}: made, but not expected", label(g))),
            (None, None) => {}
        }
    }
    if got.len() != expected.len() {
        out.push(format!(
            "{} order(s) made, {} expected",
            got.len(),
            expected.len()
        ));
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
                "order 1 (7): total: expected \"2.01\", got \"2.00\"",
                "order 1 (7): cashier: expected \"Ann\", got null",
                "order 1 (7) line 1 (1): qty: expected \"3\", got \"2\"",
                "order 1 (7) line 2 (2): expected, but not made",
                "order 2 (8): expected, but not made",
                "1 order(s) made, 2 expected",
            ]
        );
        // Order numbers are text: "007" is not "7".
        assert_eq!(
            differences(&json!([{"order_no": "7"}]), &json!([{"order_no": "007"}])),
            vec!["order 1 (007): order_no: expected \"007\", got \"7\""]
        );
        assert_eq!(differences(&json!([]), &json!({})).len(), 1);
    }
}
