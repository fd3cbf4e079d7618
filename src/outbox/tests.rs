//! Tests of the outbox: ingest once, the delivery state machine, corrections,
//! the size cap, retention, read-only access, dropped ingests, and what keeps the
//! pages written per order down (schema upgrade in place, counters, last success).

use super::delivery::LAST_SUCCESS_REFRESH;
use super::*;

pub(super) fn cfg(max_size: u64) -> OutboxConfig {
    OutboxConfig {
        synchronous: Synchronous::Full,
        max_size,
        retention: Duration::from_secs(3600),
        raw_retention: Duration::from_secs(7200),
        unparsed_percent: 25,
    }
}

pub(super) fn order(no: &str) -> Order {
    serde_json::from_value(serde_json::json!({
        "order_no": no, "order_time": "2026-11-22 09:15:02", "kind": "sale",
        "cashier": null, "payment": "cash", "total": "7.00", "discount": "0", "paid": "7.00",
        "lines": [{"code": "690", "name": "水", "qty": "2", "price": "3.50", "amount": "7.00"}],
        "source": "lane1", "shop": "D001", "machine_id": "M1",
        "video_start": "2026-11-22 09:14:02", "video_end": "2026-11-22 09:15:32"
    }))
    .unwrap()
}

fn unit<'a>(name: &'a str) -> Capture<'a> {
    Capture {
        source: "lane1",
        kind: CaptureKind::File,
        name: Some(name),
        size: 10,
        hash: format!("h-{name}"),
        raw: None,
        error: None,
    }
}

fn open(dir: &Path) -> Outbox {
    Outbox::open(
        &dir.join("queue.db"),
        &cfg(64 << 20),
        &["ovopark".into(), "wdt".into()],
    )
    .unwrap()
}

#[test]
fn ingest_stores_orders_once_with_a_delivery_row_per_destination() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    let r = ob
        .ingest(&unit("a.json"), &[order("1"), order("2")])
        .unwrap();
    assert_eq!((r.new, r.duplicates.len()), (2, 0));
    let r = ob
        .ingest(&unit("b.json"), &[order("2"), order("3")])
        .unwrap();
    assert_eq!(r.new, 1);
    assert_eq!(r.duplicates, vec!["2".to_string()]);
    let st = ob.status(now()).unwrap();
    assert_eq!(st.destinations.len(), 2);
    assert!(st.destinations.iter().all(|d| d.pending == 3));
    assert_eq!(st.sources[0].orders, 3);
    assert_eq!(st.sources[0].duplicates, 1);
    assert!(ob.file_ingested("lane1", "a.json", 10, "h-a.json").unwrap());
    assert!(!ob.file_ingested("lane1", "a.json", 11, "h-a.json").unwrap());
}

#[test]
fn state_machine_claim_retry_reject_retry_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.ingest(&unit("a"), &[order("1"), order("2")]).unwrap();
    let t = now();
    let due = ob.claim_due("wdt", t, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].order.order_no, "1");
    ob.mark_retry(due[0].delivery_id, t + 60, "HTTP 503")
        .unwrap();
    ob.mark_rejected(due[1].delivery_id, "bad qty").unwrap();
    assert!(ob.claim_due("wdt", t, 10).unwrap().is_empty());
    assert_eq!(ob.claim_due("wdt", t + 61, 10).unwrap().len(), 1);
    // a clock that jumped back by a day still sees the retry as due
    assert_eq!(ob.claim_due("wdt", t - 86400, 10).unwrap().len(), 1);
    assert_eq!(ob.retry_rejected(Some("wdt"), Some("2")).unwrap(), 1);
    let due = ob.claim_due("wdt", t + 61, 10).unwrap();
    assert_eq!(due.len(), 2);
    for d in &due {
        ob.mark_delivered(d.delivery_id, None).unwrap();
    }
    let st = ob.status(t).unwrap();
    let wdt = st.destinations.iter().find(|d| d.name == "wdt").unwrap();
    assert_eq!((wdt.pending, wdt.delivered, wdt.rejected), (0, 2, 0));
    let ovo = st
        .destinations
        .iter()
        .find(|d| d.name == "ovopark")
        .unwrap();
    assert_eq!(ovo.pending, 2, "destinations are independent");
}

#[test]
fn a_corrected_copy_of_a_rejected_order_replaces_it_and_requeues_only_the_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.ingest(&unit("a"), &[order("1"), order("2"), order("3")])
        .unwrap();
    let t = now();
    // "1": delivered to ovopark, rejected by wdt. "2": pending everywhere.
    // "3": rejected by both.
    let state = |ob: &Outbox, no: &str| -> Vec<(String, DeliveryState)> {
        let v = ob.orders(None, None, 10).unwrap();
        let o = v.iter().find(|o| o.order["order_no"] == no).unwrap();
        o.deliveries
            .iter()
            .map(|d| (d.dest.clone(), d.state))
            .collect()
    };
    for dest in ["ovopark", "wdt"] {
        for d in ob.claim_due(dest, t, 10).unwrap() {
            match (dest, d.order.order_no.as_str()) {
                ("ovopark", "1") => ob.mark_delivered(d.delivery_id, None).unwrap(),
                (_, "1" | "3") => ob.mark_rejected(d.delivery_id, "bad code").unwrap(),
                _ => {}
            }
        }
    }
    let fixed = |no: &str| {
        let mut o = order(no);
        o.lines[0].code = "691".into();
        o
    };
    // The same content again is a duplicate, whatever the state.
    let r = ob
        .ingest(&unit("again"), &[order("1"), order("2")])
        .unwrap();
    assert_eq!(r.duplicates, ["1", "2"]);
    assert!(r.corrected.is_empty());
    // Changed content: a correction only where a delivery was rejected.
    let r = ob
        .ingest(
            &unit("fixed"),
            &[fixed("1"), fixed("2"), fixed("3"), order("4")],
        )
        .unwrap();
    assert_eq!((r.new, r.duplicates.clone()), (1, vec!["2".to_string()]));
    assert_eq!(r.corrected, ["1", "3"]);
    use DeliveryState::*;
    let s = |d: &str, st| (d.to_string(), st);
    assert_eq!(
        state(&ob, "1"),
        [s("ovopark", Delivered), s("wdt", Pending)]
    );
    assert_eq!(state(&ob, "3"), [s("ovopark", Pending), s("wdt", Pending)]);
    // The pending one keeps its stored body; the corrected ones carry the fix.
    let body = |no: &str| {
        let v = ob.orders(None, None, 10).unwrap();
        let o = v.iter().find(|o| o.order["order_no"] == no).unwrap();
        o.order["lines"][0]["code"].as_str().unwrap().to_string()
    };
    assert_eq!(body("1"), "691");
    assert_eq!(body("2"), "690");
    assert_eq!(body("3"), "691");
    // As of now, not `t`: the corrections were queued a second later when the clock
    // ticked in between (a flaky failure once).
    let due: Vec<String> = ob
        .claim_due("wdt", now(), 10)
        .unwrap()
        .into_iter()
        .map(|d| format!("{}:{}", d.order.order_no, d.order.lines[0].code))
        .collect();
    assert_eq!(due, ["1:691", "2:690", "3:691", "4:690"]);
    let st = ob.status(now()).unwrap();
    assert_eq!(st.sources[0].corrected, 2);
    assert_eq!(st.sources[0].orders, 4, "a correction is not a new order");
}

#[test]
fn the_size_cap_refuses_new_captures_and_keeps_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob =
        Outbox::open(&dir.path().join("queue.db"), &cfg(1 << 20), &["wdt".into()]).unwrap();
    let mut stored = 0;
    let mut full = false;
    for i in 0..400 {
        let name = format!("f{i}");
        let orders: Vec<Order> = (0..20).map(|k| order(&format!("{name}-{k}"))).collect();
        match ob.ingest(&unit(&name), &orders) {
            Ok(_) => stored += 20,
            Err(OutboxError::Full) => {
                full = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(full, "a 1 MiB cap must fill with files of pending orders");
    assert!(stored > 200);
    let st = ob.status(now()).unwrap();
    assert_eq!(st.destinations[0].pending, stored);
    // a printed receipt has nowhere else to wait: it goes into its reserve
    let raw = vec![7u8; 1024];
    let mut u = unit("after");
    u.kind = CaptureKind::Receipt;
    u.raw = Some(&raw);
    ob.ingest(&u, &[order("after")]).unwrap();
}

#[test]
fn retention_deletes_only_orders_delivered_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.ingest(&unit("a"), &[order("1"), order("2")]).unwrap();
    let t = now();
    for dest in ["wdt", "ovopark"] {
        let due = ob.claim_due(dest, t, 10).unwrap();
        ob.mark_delivered(due[0].delivery_id, None).unwrap();
    }
    let c = cfg(64 << 20);
    assert_eq!(ob.prune(t + 10, &c).unwrap().0, 0, "too recent");
    assert_eq!(ob.prune(t + 3601, &c).unwrap().0, 1);
    let left = ob.orders(None, None, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].order["order_no"], "2");
}

#[test]
fn read_only_sees_what_the_writer_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    let ro = Outbox::open_read_only(&dir.path().join("queue.db")).unwrap();
    ob.ingest(&unit("a"), &[order("1")]).unwrap();
    let v = ro.orders(Some(DeliveryState::Pending), None, 10).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].deliveries.len(), 2);
    assert!(matches!(
        Outbox::open_read_only(&dir.path().join("nope.db")),
        Err(OutboxError::Missing(_))
    ));
}

#[test]
fn an_ingest_dropped_before_commit_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    let mut ing = ob.begin_ingest(&unit("a.json")).unwrap();
    ing.add(&order("1")).unwrap();
    ing.add(&order("2")).unwrap();
    assert_eq!(ing.orders(), 2);
    drop(ing);
    assert!(ob.orders(None, None, 10).unwrap().is_empty());
    assert!(
        ob.status(now()).unwrap().sources.is_empty(),
        "no journal row, no counter"
    );
    assert!(!ob.file_ingested("lane1", "a.json", 10, "h-a.json").unwrap());
    // Committed with an error: the orders it had are kept, the unit is partial.
    let mut ing = ob.begin_ingest(&unit("a.json")).unwrap();
    ing.add(&order("1")).unwrap();
    ing.add(&order("1")).unwrap();
    let r = ing.commit(Some("line 9: bad")).unwrap();
    assert_eq!((r.new, r.duplicates.clone()), (1, vec!["1".to_string()]));
    assert!(ob.file_ingested("lane1", "a.json", 10, "h-a.json").unwrap());
    let st = ob.status(now()).unwrap();
    assert_eq!(st.sources[0].last_error.as_deref(), Some("line 9: bad"));
    assert_eq!((st.sources[0].orders, st.sources[0].duplicates), (1, 1));
    // Nothing readable: unparsed, and not in the ledger.
    let ing = ob.begin_ingest(&unit("b.json")).unwrap();
    ing.commit(Some("line 1: bad")).unwrap();
    assert!(!ob.file_ingested("lane1", "b.json", 10, "h-b.json").unwrap());
    assert_eq!(ob.status(now()).unwrap().sources[0].unparsed, 1);
}

/// Issue #15 item 1: at the cap, marking deliveries still works (the reserve), and
/// the next capture deletes orders delivered everywhere, whatever their age.
#[test]
fn a_full_queue_records_deliveries_and_makes_room_from_delivered_orders() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob =
        Outbox::open(&dir.path().join("queue.db"), &cfg(1 << 20), &["wdt".into()]).unwrap();
    // Files (which wait in their folder at the cap) of 20 pending orders each,
    // then of one, until not even one fits.
    let mut stored = Vec::new();
    let mut per_file = 20;
    for i in 0..10_000 {
        let name = format!("f{i}");
        let orders: Vec<Order> = (0..per_file)
            .map(|k| order(&format!("{name}-{k}")))
            .collect();
        match ob.ingest(&unit(&name), &orders) {
            Ok(_) => stored.extend(orders.iter().map(|o| o.order_no.clone())),
            Err(OutboxError::Full) if per_file > 1 => per_file = 1,
            Err(OutboxError::Full) => break,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(
        stored.len() > 200 && stored.len() < 10_000,
        "{}",
        stored.len()
    );
    // Full: a second attempt marks the source, for status.
    let u = unit("wait");
    assert!(matches!(
        ob.ingest(&u, &[order("wait")]),
        Err(OutboxError::Full)
    ));
    assert!(ob.status(now()).unwrap().queue_full_since.is_some());
    // Every delivery can still be recorded at the cap.
    let mut delivered = 0;
    loop {
        let due = ob.claim_due("wdt", now(), 50).unwrap();
        if due.is_empty() {
            break;
        }
        let marks: Vec<_> = due
            .iter()
            .map(|d| (d.delivery_id, Mark::Delivered(Some("ok".into()))))
            .collect();
        ob.record_outcomes(&marks).unwrap();
        delivered += due.len();
    }
    assert_eq!(delivered, stored.len());
    // Retention (a week) would keep them all; the cap makes room all the same.
    ob.ingest(&u, &[order("wait")]).unwrap();
    let st = ob.status(now()).unwrap();
    assert_eq!(
        st.queue_full_since, None,
        "cleared once a capture is stored"
    );
    assert_eq!(st.destinations[0].pending, 1);
    assert!(st.destinations[0].delivered < stored.len() as i64);
}

/// Issue #15 item 2: a damaged body is quarantined, the others flow, `orders` lists it.
#[test]
fn a_damaged_body_is_quarantined_and_the_others_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.ingest(&unit("a"), &[order("1"), order("2"), order("3")])
        .unwrap();
    ob.conn
        .execute(
            "UPDATE orders SET body = replace(body, '\"lines\"', '\"li\u{1}es\"') WHERE order_no = '2'",
            [],
        )
        .unwrap();
    ob.conn
        .execute(
            "UPDATE orders SET body = CAST(x'7b22ff' AS TEXT) WHERE order_no = '3'",
            [],
        )
        .unwrap();
    let due: Vec<String> = ob
        .claim_due("wdt", now(), 10)
        .unwrap()
        .into_iter()
        .map(|d| d.order.order_no)
        .collect();
    assert_eq!(due, ["1"]);
    let st = ob.status(now()).unwrap();
    let wdt = st.destinations.iter().find(|d| d.name == "wdt").unwrap();
    assert_eq!((wdt.pending, wdt.quarantined), (1, 2));
    let list = ob
        .orders(Some(DeliveryState::Quarantined), None, 10)
        .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].order["order_no"], "3");
    assert!(
        list[0].order["damaged"]
            .as_str()
            .unwrap()
            .contains("damaged row")
    );
    assert!(
        list[1].deliveries[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("damaged row")
    );
    // Retention never deletes them.
    assert_eq!(ob.prune(now() + 86400 * 365, &cfg(64 << 20)).unwrap().0, 0);
}

/// Issue #15 item 6: a different order under a stored number is kept aside.
#[test]
fn a_conflicting_copy_is_kept_aside_and_an_identical_one_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.ingest(&unit("a"), &[order("1")]).unwrap();
    let mut other = order("1");
    other.paid = "99.00".parse().unwrap();
    let mut restamped = order("1");
    restamped.machine_id = Some("M2".into());
    let r = ob.ingest(&unit("b"), &[order("1"), restamped]).unwrap();
    assert!(r.conflicts.is_empty(), "{r:?}");
    let r = ob.ingest(&unit("c"), &[other.clone()]).unwrap();
    assert_eq!(r.conflicts, ["1"]);
    ob.ingest(&unit("d"), &[other]).unwrap();
    let st = ob.status(now()).unwrap();
    assert_eq!(st.sources[0].conflicts, 1, "once per distinct version");
    assert_eq!(st.sources[0].orders, 1);
    let v = ob.orders(None, None, 10).unwrap();
    assert_eq!(v[0].order["paid"], "7.00", "the stored order is untouched");
}

/// Issue #15 item 4: a clock that was not set never makes retention delete.
#[test]
fn retention_never_deletes_what_an_unset_clock_stamped() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    let mut u = unit("r");
    u.kind = CaptureKind::Receipt;
    u.raw = Some(b"raw receipt");
    u.error = Some("template".into());
    ob.ingest(&u, &[]).unwrap();
    ob.conn
        .execute("UPDATE capture SET captured_at = 86402", [])
        .unwrap();
    let c = cfg(64 << 20);
    assert_eq!(
        ob.prune(86402 + 10 * 86400, &c).unwrap(),
        (0, 0),
        "clock not set"
    );
    let good = now();
    assert_eq!(
        ob.prune(good, &c).unwrap(),
        (0, 0),
        "re-stamped, not deleted"
    );
    assert_eq!(ob.journal_entries(None, &[], 0, 10).unwrap().len(), 1);
    // It ages from the first good time: raw_retention (2 h) later it goes.
    assert_eq!(ob.prune(good + 7201, &c).unwrap().1, 1);
}

/// Bytes in the queue's WAL: grows by a frame for every page a commit writes (no
/// checkpoint runs in these small tests: the threshold is 4,000 pages).
fn wal_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("queue.db-wal")).unwrap().len()
}

/// Every delivery row's (id, dest), by id.
fn delivery_ids(ob: &Outbox) -> Vec<(i64, String)> {
    ob.conn
        .prepare("SELECT id, dest FROM delivery ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap()
}

#[test]
fn a_queue_of_the_previous_schema_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    // A queue as the previous release left it: 4 KiB pages, schema 2, an order with
    // one delivery pending and one delivered, both old indexes in place.
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        for (_, sql) in &MIGRATIONS[..2] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 2).unwrap();
        let body = serde_json::to_string(&order("1")).unwrap();
        let t = now() - 7200;
        c.execute_batch(&format!(
            "INSERT INTO capture (id, source, kind, name, size, hash, captured_at, status, orders)
               VALUES (1, 'lane1', 'file', 'a', 10, 'h-a', {t}, 'parsed', 1);
             INSERT INTO orders (id, source, order_no, order_time, body, capture_id, created_at)
               VALUES (1, 'lane1', '1', '2026-11-22 09:15:02', '{body}', 1, {t});
             INSERT INTO delivery (order_id, dest, state, next_at, updated_at)
               VALUES (1, 'ovopark', 'pending', {t}, {t}), (1, 'wdt', 'delivered', {t}, {t});
             INSERT INTO counter (source, name, value)
               VALUES ('lane1', 'files_seen', 6), ('lane1', 'files_ingested', 5);"
        ))
        .unwrap();
    }
    let index_names = |c: &Connection| -> Vec<String> {
        c.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    };
    // `status` before the daemon upgraded it (read-only: nothing migrated) shows the
    // totals as the previous release did.
    let ro = Outbox::open_read_only(&path).unwrap();
    let st = ro.status(now()).unwrap();
    assert_eq!(
        (st.sources[0].files_seen, st.sources[0].files_ingested),
        (6, 5)
    );
    drop(ro);
    let mut ob = open(dir.path());
    let version: i64 = ob
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let page_size: i64 = ob
        .conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    assert_eq!(page_size, 4096, "an existing queue keeps its pages");
    let autocheckpoint: i64 = ob
        .conn
        .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
        .unwrap();
    assert_eq!(autocheckpoint, 1024, "~4 MiB of its 4 KiB pages");
    // The counters were lifetime totals, the journal row included; they still are.
    let st = ob.status(now()).unwrap();
    assert_eq!(
        (st.sources[0].files_seen, st.sources[0].files_ingested),
        (6, 5)
    );
    // 0006: pauses per (destination, source), kept and shown by `status`.
    assert!(ob.source_pauses("ovopark").unwrap().is_empty());
    ob.set_source_paused("ovopark", "lane1", Some("206004 部门不存在"))
        .unwrap();
    let st = ob.status(now()).unwrap();
    let d = st
        .destinations
        .iter()
        .find(|d| d.name == "ovopark")
        .unwrap();
    assert_eq!(d.paused_sources.len(), 1);
    assert_eq!(
        (
            d.paused_sources[0].source.as_str(),
            d.paused_sources[0].pending
        ),
        ("lane1", 1)
    );
    assert_eq!(d.paused, None, "the destination itself is not paused");
    // Its rows are left out of a claim that skips it, and claimed alone for its probe.
    let skip = ["lane1".to_string()];
    let c = ob
        .claim("ovopark", now(), 10, &super::Claim::Except(&skip))
        .unwrap();
    assert!(c.is_empty());
    let c = ob
        .claim("ovopark", now(), 10, &super::Claim::Only("lane1"))
        .unwrap();
    assert_eq!(c.len(), 1);
    ob.set_source_paused("ovopark", "lane1", None).unwrap();
    assert!(ob.source_pauses("ovopark").unwrap().is_empty());
    let names = index_names(&ob.conn);
    assert!(!names.contains(&"delivery_order".to_string()), "{names:?}");
    assert!(!names.contains(&"capture_status".to_string()), "{names:?}");
    assert!(names.contains(&"delivery_due".to_string()), "{names:?}");
    assert!(names.contains(&"capture_ledger".to_string()), "{names:?}");
    let plan_of = |sql: &str| -> String {
        let mut stmt = ob
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    };
    // An order's deliveries are one rowid range (0004: id = order_id * 64 + slot).
    let plan = plan_of("SELECT dest, state FROM delivery WHERE id BETWEEN 64 AND 127");
    assert!(plan.contains("INTEGER PRIMARY KEY"), "{plan}");
    assert_eq!(
        delivery_ids(&ob),
        [(64, "ovopark".into()), (65, "wdt".into())]
    );
    // The claim and the ledger seek by their (0004) indexes; the due index holds
    // pending rows only.
    let plan = plan_of(
        "SELECT d.id FROM delivery d JOIN orders o ON o.id = d.order_id
          WHERE d.dest = 'ovopark' AND d.state = 'pending' AND (d.next_at <= 1 OR d.next_at > 2)
          ORDER BY d.next_at, d.id LIMIT 10",
    );
    assert!(plan.contains("INDEX delivery_due"), "{plan}");
    let plan = plan_of(
        "SELECT 1 FROM capture WHERE source = 'a' AND name = 'b' AND size = 1 AND hash = 'h'
           AND kind = 'file' AND status IN ('parsed', 'partial') LIMIT 1",
    );
    assert!(plan.contains("INDEX capture_ledger"), "{plan}");
    let due_sql: String = ob
        .conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'delivery_due'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(due_sql.ends_with("WHERE state = 'pending'"), "{due_sql}");
    // What was queued is all there and flows on: the ledger, the pending row, a new
    // capture, and retention deleting the order once delivered everywhere.
    assert!(ob.file_ingested("lane1", "a", 10, "h-a").unwrap());
    let due = ob.claim_due("ovopark", now(), 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].order.order_no, "1");
    ob.mark_delivered(due[0].delivery_id, None).unwrap();
    assert_eq!(ob.ingest(&unit("b"), &[order("2")]).unwrap().new, 1);
    assert_eq!(ob.prune(now() + 3601, &cfg(64 << 20)).unwrap().0, 1);
    let left = ob.orders(None, None, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].order["order_no"], "2");
    let rows: i64 = ob
        .conn
        .query_row("SELECT count(*) FROM delivery", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2, "the deleted order's deliveries went with it");
    drop(ob);
    // Opening it again applies nothing twice.
    let ob = open(dir.path());
    assert_eq!(index_names(&ob.conn), names);
}

#[test]
fn a_sources_totals_come_from_the_journal_and_outlive_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    let ro = Outbox::open_read_only(&dir.path().join("queue.db")).unwrap();
    let counts = |ro: &Outbox| {
        let st = ro.status(now()).unwrap();
        let s = &st.sources[0];
        (s.files_seen, s.files_ingested, s.files_rejected, s.orders)
    };
    let counter_rows = |ob: &Outbox| -> i64 {
        ob.conn
            .query_row("SELECT count(*) FROM counter", [], |r| r.get(0))
            .unwrap()
    };
    ob.ingest(&unit("a"), &[order("1")]).unwrap();
    ob.ingest(&unit("b"), &[order("2")]).unwrap();
    // A unit rolled back is not counted; a rejected file is.
    drop(ob.begin_ingest(&unit("c")).unwrap());
    ob.record_rejected(&unit("c"), "bad").unwrap();
    assert_eq!(counts(&ro), (3, 2, 1, 2));
    assert_eq!(counter_rows(&ob), 0, "a capture writes no counter row");
    // Retention deletes the delivered orders and then their journal rows: what they
    // counted moves into the counters, so the counts stay.
    for dest in ["ovopark", "wdt"] {
        for due in ob.claim_due(dest, now(), 10).unwrap() {
            ob.mark_delivered(due.delivery_id, None).unwrap();
        }
    }
    assert_eq!(ob.prune(now() + 7201, &cfg(64 << 20)).unwrap().0, 2);
    let journal: i64 = ob
        .conn
        .query_row("SELECT count(*) FROM capture", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, 0);
    assert_eq!(counts(&ro), (3, 2, 1, 2));
    ob.ingest(&unit("d"), &[order("3")]).unwrap();
    assert_eq!(counts(&ro), (4, 3, 1, 3));
}

#[test]
fn a_healthy_destinations_last_success_is_written_at_most_once_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    let success = |ob: &Outbox| -> Option<i64> {
        ob.conn
            .query_row(
                "SELECT last_success_at FROM dest_state WHERE dest = 'wdt'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let set = |ob: &Outbox, t: i64| {
        ob.conn
            .execute(
                "UPDATE dest_state SET last_success_at = ?1 WHERE dest = 'wdt'",
                params![t],
            )
            .unwrap();
    };
    ob.note_attempt("wdt", None).unwrap();
    let first = success(&ob).expect("the first success is written");
    assert!((first - now()).abs() <= 1);
    // Within the minute: nothing written at all.
    set(&ob, now() - (LAST_SUCCESS_REFRESH - 5));
    let wal = wal_len(dir.path());
    ob.note_attempt("wdt", None).unwrap();
    assert_eq!(wal_len(dir.path()), wal);
    // A minute later, or ahead of the clock (it went back): moved to now.
    for t in [now() - LAST_SUCCESS_REFRESH - 1, now() + 3600] {
        set(&ob, t);
        ob.note_attempt("wdt", None).unwrap();
        assert!((success(&ob).unwrap() - now()).abs() <= 1);
    }
    // An error clears it, and the next success is written at once.
    ob.note_attempt("wdt", Some("HTTP 503")).unwrap();
    assert_eq!(success(&ob), None);
    ob.note_attempt("wdt", None).unwrap();
    assert!(success(&ob).is_some());
    let st = ob.status(now()).unwrap();
    let d = st.destinations.iter().find(|d| d.name == "wdt").unwrap();
    assert_eq!(d.last_error.as_deref(), Some("HTTP 503"));
    assert!(d.last_success_at.is_some());
}

#[test]
fn a_new_queue_takes_small_pages_and_checkpoints_every_4_mib_of_wal() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    let get = |name: &str| -> i64 {
        ob.conn
            .pragma_query_value(None, name, |r| r.get(0))
            .unwrap()
    };
    assert_eq!(get("page_size"), 512);
    assert_eq!(get("wal_autocheckpoint"), 8192);
}

#[test]
fn a_destination_keeps_its_slot_in_delivery_ids_and_a_new_one_takes_the_next() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let mut ob = Outbox::open(
        &dir.path().join("queue.db"),
        &cfg(64 << 20),
        &["wdt".into(), "third".into()],
    )
    .unwrap();
    ob.ingest(&unit("a"), &[order("1")]).unwrap();
    assert_eq!(
        delivery_ids(&ob),
        [(65, "wdt".into()), (66, "third".into())]
    );
    // Deleting the order deletes its deliveries (the trigger is the cascade).
    ob.conn.execute("DELETE FROM orders", []).unwrap();
    let left: i64 = ob
        .conn
        .query_row("SELECT count(*) FROM delivery", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}
