//! An order's stored body: the stamped canonical order as JSON, without the fields
//! that say nothing (a null, a line's empty `attrs`).
//!
//! Flash wear (issue #14): a line's four optional fields are `null`/`[]` on nearly
//! every receipt, ~50 bytes a line, a quarter of a 10-line order's body. Every byte
//! of a body is written twice (the WAL, then the checkpoint into the database
//! file), so they are left out. The body stays plain JSON a person can read with
//! `sqlite3` (docs/INSTALL.md's recovery of a damaged queue reads it so).
//!
//! Invariants: [`encode`] and the `Order` it came from read back equal (a missing
//! field is its default); what the agent shows of a body ([`canonical`]) and what it
//! compares ([`same_content`]) do not depend on whether a body was stored with the
//! nulls (before 0004) or without.

use serde_json::Value;

use crate::order::Order;

/// The text stored for an order (its fields in the canonical order, `order_no`
/// first).
pub(super) fn encode(order: &Order) -> super::Result<String> {
    crate::order::to_stored_json(order)
        .map_err(|e| super::OutboxError::Encode(order.order_no.clone(), e))
}

/// Removes from a parsed body what [`encode`] leaves out (null fields of the order
/// and of its lines, a line's empty `attrs`), so bodies stored before 0004 compare
/// equal to the same order stored now.
fn compact(v: &mut Value) {
    let Some(order) = v.as_object_mut() else {
        return;
    };
    order.retain(|_, x| !x.is_null());
    if let Some(Value::Array(lines)) = order.get_mut("lines") {
        for line in lines.iter_mut().filter_map(Value::as_object_mut) {
            line.retain(|k, x| {
                !(x.is_null() || (k == "attrs" && x.as_array().is_some_and(Vec::is_empty)))
            });
        }
    }
}

/// A stored body as the canonical order shows it (every field, nulls included), or
/// as it is when it does not read as an order.
pub(super) fn canonical(v: Value) -> Value {
    match serde_json::from_value::<Order>(v.clone()) {
        Ok(order) => serde_json::to_value(&order).unwrap_or(v),
        Err(_) => v,
    }
}

/// The stamp fields, filled from the config at capture: not the POS's content.
const STAMP_FIELDS: [&str; 5] = ["source", "shop", "machine_id", "video_start", "video_end"];

/// Whether two stored bodies say the same order, the stamp aside (a re-export after a
/// camera or shop change is still the same order), however each was stored.
pub(super) fn same_content(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let parse = |s: &str| -> Option<Value> {
        let mut v: Value = serde_json::from_str(s).ok()?;
        compact(&mut v);
        let map = v.as_object_mut()?;
        for k in STAMP_FIELDS {
            map.remove(k);
        }
        Some(v)
    };
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Order {
        let text = include_str!("../../tests/fixtures/receipts/market.expected.json");
        let v: Value = serde_json::from_str(text).unwrap();
        let first = if v.is_array() { v[0].clone() } else { v };
        serde_json::from_value(first).unwrap()
    }

    #[test]
    fn a_body_leaves_out_what_says_nothing_and_reads_back_the_same() {
        let o = order();
        let full = serde_json::to_string(&o).unwrap();
        let body = encode(&o).unwrap();
        assert!(full.contains("\"scan_time\":null"), "{full}");
        assert!(
            !body.contains("null") && !body.contains("\"attrs\":[]"),
            "{body}"
        );
        assert!(body.starts_with("{\"order_no\":"), "{body}");
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            full,
            "only the stored form omits"
        );
        assert!(body.len() < full.len());
        assert_eq!(serde_json::from_str::<Order>(&body).unwrap(), o);
        assert_eq!(
            canonical(serde_json::from_str(&body).unwrap()),
            serde_json::to_value(&o).unwrap()
        );
        // A body stored with the nulls (before 0004) is the same order.
        assert!(same_content(&full, &body));
        let mut other = o.clone();
        other.lines[0].qty += rust_decimal::Decimal::ONE;
        assert!(!same_content(&full, &encode(&other).unwrap()));
        // A line's attributes are kept when it has some.
        let mut v = serde_json::json!({"cashier": null, "lines": [
            {"attrs": [{"key_id": 2, "value": "Sports"}], "batch_no": null}, {"attrs": []}]});
        compact(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"lines": [{"attrs": [{"key_id": 2, "value": "Sports"}]}, {}]})
        );
        assert_eq!(
            canonical(serde_json::json!({"not": "an order"}))["not"],
            "an order"
        );
    }
}
