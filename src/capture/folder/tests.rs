//! Tests of the folder loop: names, events, moves, and streamed files that fail
//! late or change under the agent.

use super::files::{hash_to_end, move_into, open_regular, read_regular};
use super::ingest::FileRead;
use super::*;

/// The settings of the one folder source of `text` (a config file with an
/// `[agent]` table and one `[[source]]`), validated as config validates them;
/// `state` is made for the queue.
fn settings(text: &str, state: &Path) -> (Identity, FolderSource, crate::outbox::OutboxConfig) {
    let file: toml::Table = toml::from_str(text).unwrap();
    let src = &file["source"][0];
    let s = |k: &str| src.get(k).and_then(|v| v.as_str()).map(String::from);
    let mut p = crate::settings::Problems::new();
    let id = crate::stamp::RawIdentity {
        name: s("name"),
        shop: s("shop"),
        machine_id: s("machine_id"),
        video: None,
        timezone: None,
    }
    .validate(
        &mut p,
        "source[0]",
        &crate::stamp::Video::default(),
        crate::stamp::default_zone(),
    )
    .unwrap();
    assert_eq!(s("kind").as_deref(), Some("folder"));
    let raw = RawFolder {
        path: s("path").map(PathBuf::from),
        ..RawFolder::default()
    };
    let folder = raw.validate(&mut p, &id.key(), &|q| q, |_, _| None);
    let outbox = crate::outbox::RawOutbox::default().validate(&mut p);
    assert!(p.is_empty(), "{:?}", p.into_vec());
    fs::create_dir_all(state).unwrap();
    (id, folder, outbox)
}

#[test]
fn candidate_names() {
    for ok in ["orders.json", "sales_1.csv", "a.b.c"] {
        assert!(is_candidate_name(ok), "{ok}");
    }
    for no in [
        ".hidden.json",
        "~lock.csv",
        "x.tmp",
        "x.part",
        "x.json.error.txt",
    ] {
        assert!(!is_candidate_name(no), "{no}");
    }
}

/// Regression: the agent's own opendir raised IN_OPEN on the watched folder, which
/// triggered a scan, which opened the folder again: a busy loop at 100% CPU while idle.
#[test]
fn access_events_do_not_trigger_scans() {
    use notify::event::{AccessKind, AccessMode, CreateKind, Event, EventKind};
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "[agent]\nstate_dir = {:?}\n[[source]]\nname = \"l\"\nkind = \"folder\"\npath = {:?}\nshop = \"D\"\nmachine_id = \"M\"\n",
        d.path(),
        d.path()
    );
    let (id, f, outbox) = settings(&text, d.path());
    let ob = Outbox::open(&d.path().join("queue.db"), &outbox, &[]).unwrap();
    let mut w = FolderWatch::new(id, f, ob);
    let ev = |k| Ok(Event::new(k).add_path(d.path().to_path_buf()));
    assert!(!w.note_event(ev(EventKind::Access(AccessKind::Open(AccessMode::Any)))));
    assert!(!w.note_event(ev(EventKind::Access(AccessKind::Close(AccessMode::Read)))));
    assert!(w.note_event(ev(EventKind::Create(CreateKind::File))));
}

#[test]
fn move_into_never_overwrites() {
    let d = tempfile::tempdir().unwrap();
    let done = d.path().join("done");
    fs::create_dir(&done).unwrap();
    for i in 0..3 {
        let p = d.path().join("a.json");
        fs::write(&p, format!("{i}")).unwrap();
        move_into(&p, &done, "a.json").unwrap();
    }
    let mut names: Vec<_> = fs::read_dir(&done)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.json", "a.json.1", "a.json.2"]);
}

#[test]
fn read_regular_refuses_symlinks_and_fifos() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("t.json");
    fs::write(&target, "[]").unwrap();
    let link = d.path().join("l.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(read_regular(&link).is_err());
    let fifo = d.path().join("f.json");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        read_regular(&fifo).is_err(),
        "a FIFO must not hang or be read"
    );
    assert_eq!(read_regular(&target).unwrap(), b"[]");
}

/// A folder source in `d` with its watcher (done/ and rejected/ made).
fn lane(d: &Path) -> FolderWatch {
    let text = format!(
        "[agent]\nstate_dir = {:?}\n[[source]]\nname = \"l\"\nkind = \"folder\"\npath = {:?}\nshop = \"D\"\nmachine_id = \"M\"\n",
        d.join("state"),
        d.join("inbox")
    );
    let (id, f, outbox) = settings(&text, &d.join("state"));
    fs::create_dir_all(&f.path).unwrap();
    let ob = Outbox::open(&d.join("state/queue.db"), &outbox, &["wdt".to_string()]).unwrap();
    let w = FolderWatch::new(id, f, ob);
    w.ensure_dirs().unwrap();
    w
}

/// `n` orders as a JSON array, one element per line.
fn export(n: usize) -> String {
    let orders: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"order_no": "N{i:05}", "order_time": "2026-11-22 10:00:00", "total": "2.00", "paid": "2.00", "lines": [{{"code": "690", "name": "水", "qty": "1", "price": "2.00", "amount": "2.00"}}]}}"#
            )
        })
        .collect();
    format!("[\n{}\n]\n", orders.join(",\n"))
}

fn stored(w: &FolderWatch) -> usize {
    w.outbox.orders(None, None, 100_000).unwrap().len()
}

#[test]
fn a_syntax_error_after_thousands_of_streamed_orders_stores_none_of_them() {
    let d = tempfile::tempdir().unwrap();
    let mut w = lane(d.path());
    let path = w.folder.path.join("big.json");
    // 3,000 orders (several read buffers), then a trailing comma before the `]`.
    let good = export(3000);
    let bad = good.replace("}]}\n]", "}]},\n]");
    assert_ne!(good, bad);
    fs::write(&path, &bad).unwrap();
    assert_eq!(w.process_file(&path).unwrap(), FileOutcome::Rejected);
    assert_eq!(stored(&w), 0, "one transaction: nothing of a refused file");
    let why = fs::read_to_string(w.folder.rejected_dir.join("big.json.error.txt")).unwrap();
    assert!(
        why.contains("line 3002, column 1: not valid JSON: trailing comma"),
        "{why}"
    );
    let st = w.outbox.status(crate::outbox::now()).unwrap();
    assert_eq!(
        (st.sources[0].files_rejected, st.sources[0].files_ingested),
        (1, 0)
    );
    // The fixed file: all of it, once.
    fs::write(&path, &good).unwrap();
    assert_eq!(
        w.process_file(&path).unwrap(),
        FileOutcome::Done {
            new: 3000,
            duplicates: 0
        }
    );
    assert_eq!(stored(&w), 3000);
}

/// The orders are streamed from the file after it was identified (size, sha1): a
/// file cut or rewritten in between is read again later, never refused or
/// half-stored.
#[test]
fn a_file_cut_or_rewritten_after_it_was_identified_is_read_again_not_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut w = lane(d.path());
    let path = w.folder.path.join("a.json");
    let text = export(500);
    fs::write(&path, &text).unwrap();
    let before = fs::symlink_metadata(&path).unwrap();
    let (size, hash) = hash_to_end(&mut open_regular(&path).unwrap()).unwrap();
    let unit = Capture {
        source: "l",
        kind: CaptureKind::File,
        name: Some("a.json"),
        size,
        hash: hash.clone(),
        raw: None,
        error: None,
    };
    // Cut in the middle of an order: a syntax error, but not the file's fault.
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size / 2)
        .unwrap();
    let r = w.stream_json(&unit, open_regular(&path).unwrap(), &path, &before);
    assert!(matches!(r, Ok(FileRead::Changed)));
    // Rewritten with other orders of the same size.
    fs::write(&path, text.replace("N00", "M00")).unwrap();
    let r = w.stream_json(&unit, open_regular(&path).unwrap(), &path, &before);
    assert!(matches!(r, Ok(FileRead::Changed)));
    assert_eq!(stored(&w), 0);
    assert!(!w.outbox.file_ingested("l", "a.json", size, &hash).unwrap());
    // Once it holds what was identified, it is read.
    fs::write(&path, &text).unwrap();
    let before = fs::symlink_metadata(&path).unwrap();
    let r = w.stream_json(&unit, open_regular(&path).unwrap(), &path, &before);
    assert!(matches!(r, Ok(FileRead::Committed { ref report, .. }) if report.new == 500));
    assert!(w.outbox.file_ingested("l", "a.json", size, &hash).unwrap());
}
