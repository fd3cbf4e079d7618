//! The watched folder end to end: the real binary, a real SQLite file, real files.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::orders::{by_order_no, canonical};
use common::till::Till;
use common::{fixture, tillrelay, wait_until};
use serde_json::Value;

#[test]
fn shared_export_fixtures_reach_the_outbox_exactly_as_expected() {
    let b = Till::new("");
    let mut agent = b.spawn(&[]);
    for f in ["orders-20261122-1005.json", "sales_20261122_1122.csv"] {
        // plain copy (not a rename): the settle time must cover it
        fs::copy(fixture(&format!("exports/{f}")), b.inbox().join(f)).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(20), || b.orders().len() == 4),
        "4 orders expected, got {:?}",
        b.orders()
    );
    let expected: Vec<Value> =
        serde_json::from_slice(&fs::read(fixture("exports/expected.json")).unwrap()).unwrap();
    let got: Vec<Value> = b.orders().iter().map(canonical).collect();
    assert_eq!(by_order_no(got), by_order_no(expected));

    // stamped from the source, with the video window around the order time
    let all = b.orders();
    let w1 = all
        .iter()
        .find(|o| o["order_no"] == "W20261122-0001")
        .unwrap();
    assert_eq!(w1["source"], "lane1");
    assert_eq!(w1["shop"], "D001");
    assert_eq!(w1["machine_id"], "NVR01-CH03");
    // first scan 10:00:31 − 60 s; order time 10:01:12 + 30 s
    assert_eq!(w1["video_start"], "2026-11-22 09:59:31");
    assert_eq!(w1["video_end"], "2026-11-22 10:01:42");

    // both files moved to done once committed
    assert!(wait_until(Duration::from_secs(5), || b
        .entries("done")
        .len()
        == 2));
    assert_eq!(
        b.entries("done"),
        ["orders-20261122-1005.json", "sales_20261122_1122.csv"]
    );
    assert!(b.entries("").iter().all(|f| f == "done" || f == "rejected"));

    // status while the daemon runs
    let st = b.json(&["status", "--json"]);
    let lane = &st["sources"][0];
    assert_eq!(lane["name"], "lane1");
    assert_eq!(lane["files_ingested"], 2);
    assert_eq!(lane["orders"], 4);
    let human = b.cli(&["status"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("lane1"), "{human}");
    assert!(human.contains("ingested 2"), "{human}");

    let status = agent.stop();
    let log = agent.log_text();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn a_file_dropped_twice_or_reprinted_does_not_make_second_orders() {
    let b = Till::new("");
    let mut agent = b.spawn(&[]);
    let json = fs::read(fixture("exports/orders-20261122-1005.json")).unwrap();
    b.drop_file("a.json", &json);
    assert!(wait_until(Duration::from_secs(20), || b
        .entries("done")
        .len()
        == 1));
    // the same file again, same name (lands as done/a.json.1) and another name
    b.drop_file("a.json", &json);
    b.drop_file("b.json", &json);
    // one of the orders re-exported alone (a reprint)
    let all: Vec<Value> = serde_json::from_slice(&json).unwrap();
    b.drop_file("reprint.json", &serde_json::to_vec(&all[1]).unwrap());
    assert!(
        wait_until(Duration::from_secs(20), || b.entries("done").len() == 4),
        "{:?}",
        b.entries("done")
    );
    assert_eq!(b.orders().len(), 2);
    let st = b.json(&["status", "--json"]);
    assert_eq!(st["sources"][0]["orders"], 2);
    // b.json (2) and the reprint (1); a.json again is the same file (name, size,
    // hash), which the ledger recognises before any order is looked at.
    assert_eq!(st["sources"][0]["duplicates"], 3);
    let status = agent.stop();
    assert!(status.success());
}

#[test]
fn a_file_written_slowly_in_pieces_is_read_once_whole() {
    let b = Till::new("");
    let mut agent = b.spawn(&[]);
    let json = fs::read(fixture("exports/orders-20261122-1005.json")).unwrap();
    let path = b.inbox().join("slow.json");
    let mut f = fs::File::create(&path).unwrap();
    // pieces 100 ms apart, well within the 300 ms settle time: never a half file
    for chunk in json.chunks(json.len() / 8 + 1) {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(f);
    assert!(wait_until(Duration::from_secs(20), || b.entries("done")
        == ["slow.json"]));
    assert_eq!(b.orders().len(), 2);
    assert!(
        b.entries("rejected").is_empty(),
        "{:?}",
        b.entries("rejected")
    );
    let st = b.json(&["status", "--json"]);
    assert_eq!(st["sources"][0]["files_seen"], 1);
    agent.stop();
}

#[test]
fn unreadable_files_are_rejected_with_their_reasons_and_good_orders_kept() {
    let b = Till::new("");
    let mut agent = b.spawn(&[]);
    b.drop_file(
        "broken.json",
        b"[{\"order_no\": \"X1\",\n  \"order_time\": }]",
    );
    b.drop_file("notes.xml", b"<orders/>");
    let csv = fs::read(fixture("exports/sales_20261122_1122.csv")).unwrap();
    // a second order in the same CSV with a quantity that is not a number
    let row = "S0003393,2026-11-22 11:30:00,孙七,现金,690,水,two,1.00,2.00,0\n";
    let (row_gbk, _, _) = encoding_rs::GBK.encode(row);
    let mut mixed = csv.clone();
    mixed.extend_from_slice(&row_gbk);
    b.drop_file("sales_bad.csv", &mixed);
    // ignored entirely: hidden, temporary, symlink
    fs::write(b.inbox().join(".hidden.json"), b"[]").unwrap();
    fs::write(b.inbox().join("x.json.part"), b"[").unwrap();
    std::os::unix::fs::symlink(
        fixture("exports/orders-20261122-1005.json"),
        b.inbox().join("link.json"),
    )
    .unwrap();

    assert!(
        wait_until(Duration::from_secs(20), || b.entries("rejected").len() == 6),
        "{:?}",
        b.entries("rejected")
    );
    let reason = |n: &str| {
        fs::read_to_string(b.inbox().join("rejected").join(format!("{n}.error.txt"))).unwrap()
    };
    let r = reason("broken.json");
    assert!(r.contains("line 2, column"), "{r}");
    let r = reason("notes.xml");
    assert!(r.contains("cannot tell the format"), "{r}");
    let r = reason("sales_bad.csv");
    assert!(r.contains("line 5, order \"S0003393\", field qty"), "{r}");
    assert!(r.contains("2 order(s) of this file were stored"), "{r}");
    // the good orders of the partly bad file are stored
    let nos: Vec<String> = b
        .orders()
        .iter()
        .map(|o| o["order_no"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(by_order_no(b.orders()).len(), 2, "{nos:?}");
    // ignored files were neither read nor moved
    let mut left = b.entries("");
    left.retain(|f| f != "done" && f != "rejected");
    assert_eq!(left, [".hidden.json", "link.json", "x.json.part"]);
    let st = b.json(&["status", "--json"]);
    assert_eq!(st["sources"][0]["files_rejected"], 2);
    assert!(st["sources"][0]["last_error"].as_str().is_some());
    agent.stop();
}

/// A big export is streamed into its transaction order by order: every good order is
/// stored exactly as written, and one bad order in the middle is refused alone, named
/// by its line, order and field.
#[test]
fn a_big_export_is_stored_exactly_and_a_bad_order_in_its_middle_rejects_only_itself() {
    let b = Till::new("");
    let mut agent = b.spawn(&[]);
    let n = 2500;
    let bad = 1234;
    let orders: Vec<Value> = (0..n)
        .map(|i| {
            let lines: Vec<Value> = (0..4)
                .map(|l| {
                    serde_json::json!({"code": format!("690{l:04}"), "name": "可口可乐 500ml",
                        "qty": if i == bad && l == 2 { "lots" } else { "2" },
                        "price": "3.50", "amount": "7.00"})
                })
                .collect();
            serde_json::json!({"order_no": format!("B{i:05}"), "order_time": "2026-11-22 09:15:02",
                "kind": "sale", "cashier": "张三", "payment": "wechat", "total": "28.00",
                "discount": "0.00", "paid": "28.00", "lines": lines})
        })
        .collect();
    // Pretty-printed: each order spans many lines, the file many read buffers.
    let text = serde_json::to_string_pretty(&orders).unwrap();
    assert!(text.len() > 1 << 20, "{} bytes", text.len());
    // serde_json places a wrong value at its last character.
    let (bad_line, bad_column) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find("\"lots\"").map(|c| (i + 1, c + "\"lots\"".len())))
        .unwrap();
    b.drop_file("big.json", text.as_bytes());
    assert!(
        wait_until(Duration::from_secs(60), || b.entries("rejected").len() == 2),
        "{:?}",
        b.entries("rejected")
    );
    let why = fs::read_to_string(b.inbox().join("rejected/big.json.error.txt")).unwrap();
    assert!(
        why.contains(&format!(
            "line {bad_line}, column {bad_column}, order \"B01234\", field lines[2].qty"
        )),
        "{why}"
    );
    assert!(
        why.contains("2499 order(s) of this file were stored; 1 could not be read"),
        "{why}"
    );
    let out = b.cli(&["orders", "--json", "--limit", "5000"]);
    assert!(out.status.success());
    let stored: Vec<Value> = serde_json::from_slice::<Vec<Value>>(&out.stdout)
        .unwrap()
        .iter()
        .map(canonical)
        .collect();
    // What was written, as the canonical order reads it.
    let expected: Vec<Value> = orders
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != bad)
        .map(|(_, o)| {
            let o: tillrelay::order::Order = serde_json::from_value(o.clone()).unwrap();
            serde_json::to_value(o).unwrap()
        })
        .collect();
    assert_eq!(stored.len(), n - 1);
    assert_eq!(by_order_no(stored), by_order_no(expected));
    let st = b.json(&["status", "--json"]);
    assert_eq!(st["sources"][0]["files_ingested"], 1);
    assert_eq!(st["sources"][0]["orders"], n - 1);
    agent.stop();
}

#[test]
fn oversized_files_are_rejected_unread() {
    let b = Till::new("");
    let text = fs::read_to_string(&b.config)
        .unwrap()
        .replace("max_file_size = \"16MB\"", "max_file_size = \"1KB\"");
    fs::write(&b.config, text).unwrap();
    let mut agent = b.spawn(&[]);
    b.drop_file("big.json", &vec![b' '; 4096]);
    assert!(wait_until(Duration::from_secs(20), || b
        .entries("rejected")
        .len()
        == 2));
    let r = fs::read_to_string(b.inbox().join("rejected/big.json.error.txt")).unwrap();
    assert!(r.contains("over max_file_size"), "{r}");
    agent.stop();
}

#[test]
fn sigkill_between_commit_and_move_ingests_nothing_twice() {
    let b = Till::new("");
    let json = fs::read(fixture("exports/orders-20261122-1005.json")).unwrap();
    b.drop_file("a.json", &json);
    // The agent is killed (SIGKILL) right after the commit, before the move.
    let mut agent = b.spawn(&[("TILLRELAY_FAILPOINT", "folder.after_commit")]);
    let status = agent
        .wait_exit(Duration::from_secs(60))
        .expect("the failpoint kills the agent");
    let log = agent.log_text();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "killed by the failpoint: {log}");
    assert_eq!(
        b.entries(""),
        ["a.json", "done", "rejected"],
        "not moved yet"
    );
    assert_eq!(b.orders().len(), 2, "committed before the kill");

    let mut agent = b.spawn(&[]);
    assert!(wait_until(Duration::from_secs(20), || b.entries("done") == ["a.json"]));
    assert_eq!(b.orders().len(), 2);
    let st = b.json(&["status", "--json"]);
    assert_eq!(
        st["sources"][0]["duplicates"], 0,
        "the ledger, not the duplicate check, caught it"
    );
    assert_eq!(st["sources"][0]["files_ingested"], 1);
    agent.stop();
    let log = agent.log_text();
    assert!(log.contains("committed before"), "{log}");
}

#[test]
fn a_missing_folder_is_waited_for() {
    let b = Till::new("");
    fs::remove_dir(b.inbox()).unwrap();
    let mut agent = b.spawn(&[]);
    // Create the folder only once the agent has seen it missing: a fixed sleep was
    // too short for the agent's start-up under qemu (cross/test-armv7.sh).
    let seen = agent.wait_log(Duration::from_secs(30), "does not exist");
    fs::create_dir(b.inbox()).unwrap();
    b.drop_file(
        "a.json",
        &fs::read(fixture("exports/orders-20261122-1005.json")).unwrap(),
    );
    assert!(wait_until(Duration::from_secs(30), || b.orders().len() == 2));
    let status = agent.stop();
    let log = agent.log_text();
    assert!(seen, "the missing folder was not reported:\n{log}");
    assert!(status.success(), "{log}");
}

#[test]
fn poll_mode_finds_files_without_inotify() {
    let b = Till::new("");
    let text = fs::read_to_string(&b.config)
        .unwrap()
        .replace("poll = false", "poll = true")
        .replace("poll_interval = \"5s\"", "poll_interval = \"200ms\"");
    fs::write(&b.config, text).unwrap();
    let mut agent = b.spawn(&[]);
    b.drop_file(
        "a.json",
        &fs::read(fixture("exports/orders-20261122-1005.json")).unwrap(),
    );
    assert!(wait_until(Duration::from_secs(20), || b.orders().len() == 2));
    agent.stop();
}

#[test]
fn parse_shows_orders_without_storing_and_exits_4_on_bad_input() {
    let b = Till::new("");
    let out = b.cli(&[
        "parse",
        "--source",
        "lane1",
        "--json",
        fixture("exports/sales_20261122_1122.csv").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let expected: Vec<Value> =
        serde_json::from_slice(&fs::read(fixture("exports/expected.json")).unwrap()).unwrap();
    assert_eq!(got, expected[2..].to_vec(), "the CSV's two orders, exactly");
    assert!(
        !b.dir.path().join("state/queue.db").exists(),
        "parse stores nothing"
    );

    let bad = b.dir.path().join("bad.json");
    fs::write(&bad, "[{\"order_no\": \"A\"}]").unwrap();
    let out = b.cli(&["parse", "--source", "lane1", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json: line 1"), "{err}");
    assert!(err.contains("order \"A\""), "{err}");

    let out = b.cli(&["parse", "--source", "lane9", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no source named \"lane9\""));
}

#[test]
fn config_errors_name_the_file_and_key_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    fs::write(
        &cfg,
        "[[source]]\nname = \"lane1\"\nkind = \"folder\"\npath = \"/x\"\nshop = \"D1\"\nmachine_id = \"M\"\nsettle = \"a while\"\n",
    )
    .unwrap();
    let out = tillrelay()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("source[lane1].settle"), "{err}");

    let out = tillrelay()
        .args(["run", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));

    // the env var names the config too
    let out = tillrelay()
        .arg("check-config")
        .env("TILLRELAY_CONFIG", &cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn the_example_config_passes_check_config() {
    let out = tillrelay()
        .args(["check-config", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tillrelay.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));
}

#[test]
fn examples_local_config_is_the_example_config_with_local_paths() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let keys = |p: &str| -> Vec<String> {
        fs::read_to_string(root.join(p))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter(|l| {
                !["state_dir =", "path =", "settle ="]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .map(str::to_string)
            .collect()
    };
    assert_eq!(keys("config/tillrelay.toml"), keys("examples/local.toml"));
}

/// Issue #15.10: two enabled sources on one folder would split its files between them
/// at random (half stamped with the wrong camera): `check-config` and `run` refuse it,
/// naming both sources; a symlink to the folder is the same folder.
#[test]
fn two_sources_on_one_folder_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("export")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("export"), dir.path().join("alias")).unwrap();
    let source = |name: &str, path: &str, camera: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\nkind = \"folder\"\npath = \"{path}\"\nshop = \"D1\"\nmachine_id = \"{camera}\"\n"
        )
    };
    let cfg = dir.path().join("t.toml");
    fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = \"state\"\n{}{}",
            source("lane1", "export", "CAM1"),
            source("lane2", "alias", "CAM2")
        ),
    )
    .unwrap();
    for cmd in ["check-config", "run"] {
        let out = tillrelay()
            .args([cmd, "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("source[lane2].path") && err.contains("also watched by source \"lane1\""),
            "{cmd}: {err}"
        );
    }
    // Each its own folder: fine.
    fs::create_dir(dir.path().join("export2")).unwrap();
    fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = \"state\"\n{}{}",
            source("lane1", "export", "CAM1"),
            source("lane2", "export2", "CAM2")
        ),
    )
    .unwrap();
    let out = tillrelay()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
