//! Unparsed receipts' share of the queue, room at the cap taken from junk first,
//! the printed-receipt reserve, and the pages a parsed receipt writes.

use super::super::tests::{cfg, order};
use super::*;

fn open(dir: &std::path::Path, max_size: u64) -> Outbox {
    Outbox::open(
        &dir.join("queue.db"),
        &cfg(max_size),
        &["ovopark".into(), "wdt".into()],
    )
    .unwrap()
}

/// A printed receipt of `raw`, unparsed (`error`) or not.
fn receipt<'a>(raw: &'a [u8], hash: String, error: Option<&str>) -> Capture<'a> {
    Capture {
        source: "lane1",
        kind: CaptureKind::Receipt,
        name: None,
        size: raw.len() as u64,
        hash,
        raw: Some(raw),
        error: error.map(str::to_string),
    }
}

fn junk(ob: &mut Outbox, i: usize, len: usize) -> Result<IngestReport> {
    let raw = vec![b'J'; len];
    let unit = receipt(&raw, format!("junk-{i}"), Some("no order number"));
    ob.ingest(&unit, &[])
}

fn lane1(ob: &Outbox) -> SourceStatus {
    ob.status(now())
        .unwrap()
        .sources
        .into_iter()
        .find(|s| s.name == "lane1")
        .unwrap()
}

#[test]
fn unparsed_receipts_stay_within_their_share_oldest_dropped_first_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB: the share is 25%, 1 MiB
    let mut ob = open(dir.path(), 4 << 20);
    let share = 1 << 20;
    for i in 0..12 {
        junk(&mut ob, i, 200_000).unwrap();
        assert!(ob.unparsed_bytes().unwrap() <= share, "after {i}");
    }
    // 5 of 200 kB fit in 1 MiB: the 7 oldest went, the 5 newest are kept
    let kept: Vec<String> = ob
        .conn
        .prepare("SELECT hash FROM capture WHERE status = 'unparsed' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap();
    assert_eq!(kept, ["junk-7", "junk-8", "junk-9", "junk-10", "junk-11"]);
    let s = lane1(&ob);
    assert_eq!(s.unparsed_dropped, 7);
    assert_eq!(s.unparsed, 5);
    assert_eq!(s.receipts, 12, "the totals never count down");
    // one bigger than the whole share is journalled without its raw bytes
    junk(&mut ob, 99, share as usize + 1).unwrap();
    let s = lane1(&ob);
    assert_eq!((s.unparsed_dropped, s.receipts, s.unparsed), (8, 13, 6));
    assert_eq!(ob.unparsed_bytes().unwrap(), 5 * 200_000);
    let why: String = ob
        .conn
        .query_row(
            "SELECT error FROM capture WHERE hash = 'junk-99'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(why.contains("raw bytes not kept"), "{why}");
}

#[test]
fn at_the_cap_junk_goes_first_then_printed_receipts_use_their_reserve_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path(), 1 << 20);
    // junk within its share (256 KiB), then pending orders up to the cap
    for i in 0..5 {
        junk(&mut ob, i, 50_000).unwrap();
    }
    let mut n = 0;
    loop {
        let name = format!("f{n}.json");
        let unit = Capture {
            source: "lane1",
            kind: CaptureKind::File,
            name: Some(&name),
            size: 10,
            hash: format!("f-{n}"),
            raw: None,
            error: None,
        };
        let orders: Vec<Order> = (0..20).map(|k| order(&format!("F{n}-{k}"))).collect();
        match ob.ingest(&unit, &orders) {
            Ok(_) => {}
            // the next try makes room from junk first
            Err(OutboxError::Full) if ob.unparsed_bytes().unwrap() > 0 => {}
            Err(OutboxError::Full) => break,
            Err(e) => panic!("{e}"),
        }
        n += 1;
        assert!(n < 20_000, "the cap never came");
    }
    // files wait at the cap: the junk was dropped to make room for them first
    assert_eq!(ob.unparsed_bytes().unwrap(), 0);
    assert_eq!(lane1(&ob).unparsed_dropped, 5);
    assert!(ob.status(now()).unwrap().queue_full_since.is_some());
    // nothing is delivered, nothing left to drop: a printed receipt still goes in
    let raw = vec![b'R'; 1500];
    for i in 0..20 {
        let unit = receipt(&raw, format!("r-{i}"), None);
        let r = ob.ingest(&unit, &[order(&format!("R{i}"))]).unwrap();
        assert_eq!(r.new, 1, "receipt {i}");
    }
    // and junk at the true limit keeps its journal row, not its bytes
    junk(&mut ob, 50, 50_000).unwrap();
    assert_eq!(ob.unparsed_bytes().unwrap(), 0);
    assert_eq!(lane1(&ob).unparsed_dropped, 6);
    // a file still waits: the reserve is for printed receipts
    let unit = Capture {
        source: "lane1",
        kind: CaptureKind::File,
        name: Some("late.json"),
        size: 10,
        hash: "late".into(),
        raw: None,
        error: None,
    };
    assert!(matches!(
        ob.ingest(&unit, &[order("L1")]),
        Err(OutboxError::Full)
    ));
}

/// Flash wear (docs/BENCHMARKS.md): the index that sizes the share must cost a
/// parsed receipt nothing. The same receipt is journalled into two queues, one
/// without the index: the WAL grows by the same frames.
#[test]
fn a_parsed_receipt_writes_no_page_more_for_the_unparsed_index() {
    let grow = |drop_index: bool| -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(dir.path(), 64 << 20);
        if drop_index {
            ob.conn.execute("DROP INDEX capture_unparsed", []).unwrap();
        }
        let raw = vec![b'R'; 1500];
        // a first receipt settles the pages every commit touches
        ob.ingest(&receipt(&raw, "r-0".into(), None), &[order("R0")])
            .unwrap();
        let wal = dir.path().join("queue.db-wal");
        let before = std::fs::metadata(&wal).unwrap().len();
        ob.ingest(&receipt(&raw, "r-1".into(), None), &[order("R1")])
            .unwrap();
        std::fs::metadata(&wal).unwrap().len() - before
    };
    assert_eq!(grow(false), grow(true));
}
