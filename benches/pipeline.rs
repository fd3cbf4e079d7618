//! In-process benchmarks of the capture → durable path (`cargo bench --bench pipeline`).
//!
//! Each figure is the median of several runs. Figures that depend on the disk are also
//! given as a ratio to a baseline measured in the same run (raw SQLite single-row
//! commits), so they compare across machines. Nothing here asserts: the figures and
//! their targets are in docs/BENCHMARKS.md.

use std::path::Path;
use std::time::{Duration, Instant};

use tillrelay::config::{Config, SourceKind};
use tillrelay::outbox::{Capture, CaptureKind, Outbox};

const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn config(dir: &Path) -> Config {
    let text = format!(
        "[agent]\nstate_dir = {:?}\n[[source]]\nname = \"lane1\"\nkind = \"folder\"\npath = {:?}\nshop = \"D001\"\nmachine_id = \"NVR01-CH03\"\n{}",
        dir.join("state"),
        dir.join("inbox"),
        // Both destinations, so each order gets its two delivery rows as on a box
        // (nothing listens there: this bench never uploads).
        tillrelay::emulator::demo_agent_config("http://127.0.0.1:9")
    );
    Config::from_toml(&text, &dir.join("t.toml")).unwrap()
}

fn order_json(i: usize) -> serde_json::Value {
    let lines: Vec<_> = (0..10)
        .map(|l| {
            serde_json::json!({"code": format!("69012345{l:05}"), "name": "可口可乐500ml",
            "qty": "2", "price": "3.50", "amount": "7.00", "discount": "0"})
        })
        .collect();
    serde_json::json!({"order_no": format!("B{i:08}"), "order_time": "2026-11-22 09:15:02",
        "kind": "sale", "cashier": "张三", "payment": "wechat", "total": "70.00",
        "discount": "0.00", "paid": "70.00", "lines": lines})
}

/// Baseline: one-row INSERT commits on a WAL database with synchronous=FULL.
fn raw_sqlite_commits(dir: &Path, n: usize) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
        .unwrap();
    let body = vec![b'x'; 600];
    let t = Instant::now();
    for _ in 0..n {
        conn.execute("INSERT INTO t (body) VALUES (?1)", [&body])
            .unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// One receipt (raw bytes + one order + two delivery rows) per commit.
fn capture_commits(dir: &Path, n: usize) -> f64 {
    let cfg = config(dir);
    let mut ob = Outbox::open(&cfg.db_path(), &cfg.outbox, &cfg.destinations).unwrap();
    let raw = vec![b'x'; 600];
    let mut orders = Vec::new();
    for i in 0..n {
        let mut o: tillrelay::order::Order = serde_json::from_value(order_json(i)).unwrap();
        tillrelay::stamp::stamp(&mut o, &cfg.sources[0].identity);
        orders.push(o);
    }
    let t = Instant::now();
    for (i, o) in orders.iter().enumerate() {
        let unit = Capture {
            source: "lane1",
            kind: CaptureKind::Receipt,
            name: None,
            size: raw.len() as u64,
            hash: format!("{i:040}"),
            raw: Some(&raw),
            error: None,
        };
        ob.ingest(&unit, std::slice::from_ref(o)).unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// A folder file of `n` orders: read, parse, stamp, commit, move.
fn folder_file(dir: &Path, n: usize) -> f64 {
    let cfg = config(dir);
    let SourceKind::Folder(folder) = &cfg.sources[0].kind else {
        panic!("a folder source")
    };
    std::fs::create_dir_all(&folder.path).unwrap();
    std::fs::create_dir_all(&folder.done_dir).unwrap();
    let all: Vec<_> = (0..n).map(order_json).collect();
    let path = folder.path.join("big.json");
    std::fs::write(&path, serde_json::to_vec(&all).unwrap()).unwrap();
    let ob = Outbox::open(&cfg.db_path(), &cfg.outbox, &cfg.destinations).unwrap();
    let mut watch = tillrelay::capture::folder::FolderWatch::new(
        cfg.sources[0].identity.clone(),
        folder.clone(),
        ob,
    );
    let t = Instant::now();
    let out = watch.process_file(&path).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(matches!(out, tillrelay::capture::folder::FileOutcome::Done { new, .. } if new == n));
    n as f64 / secs
}

fn run(name: &str, unit: &str, f: impl Fn(&Path) -> f64) -> f64 {
    let v: Vec<f64> = (0..RUNS)
        .map(|_| {
            let d = tempfile::tempdir().unwrap();
            f(d.path())
        })
        .collect();
    let m = median(v);
    println!("{name:<48} {m:>12.0} {unit}");
    m
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported (few figures).
    let _ = Duration::ZERO;
    println!("{:<48} {:>12}", "figure (median of 5)", "value");
    let raw = run("raw SQLite single-row commit (FULL)", "commits/s", |d| {
        raw_sqlite_commits(d, 300)
    });
    let cap = run(
        "capture → durable (1 receipt/commit)",
        "receipts/s",
        |d| capture_commits(d, 300),
    );
    println!(
        "{:<48} {:>12.0} %",
        "  ratio to raw SQLite commits",
        cap / raw * 100.0
    );
    run(
        "folder file of 10,000 orders → committed",
        "orders/s",
        |d| folder_file(d, 10_000),
    );
}
