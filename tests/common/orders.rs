//! Comparing stored orders (`orders --json`) with expected ones.

use serde_json::Value;

/// The canonical fields of a stored order (stamp and delivery states removed), as the
/// fixtures' `*.expected.json` hold them.
pub fn canonical(o: &Value) -> Value {
    let mut o = o.clone();
    let m = o.as_object_mut().unwrap();
    for k in [
        "source",
        "shop",
        "machine_id",
        "video_start",
        "video_end",
        "zone",
        "deliveries",
    ] {
        m.remove(k);
    }
    o
}

/// Orders sorted by order number, for comparisons that ignore arrival order.
pub fn by_order_no(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by(|a, b| a["order_no"].as_str().cmp(&b["order_no"].as_str()));
    v
}

/// The state of `dest`'s delivery of a stored order (`pending`, `delivered`, …).
pub fn delivery_state<'a>(order: &'a Value, dest: &str) -> Option<&'a str> {
    order["deliveries"]
        .as_array()?
        .iter()
        .find(|d| d["dest"] == dest)?["state"]
        .as_str()
}
