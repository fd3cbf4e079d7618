//! A hostile watched folder: FIFOs, symlinks, odd names, huge files, files deleted or
//! rewritten under the agent, the folder itself vanishing and coming back. The agent
//! must neither hang, crash, lose an order, nor read a file twice.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::Duration;

use common::agent::Agent;
use common::till::Till;
use common::{fixture, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A till with one folder lane (`extra` keys added to it), and its agent started once
/// the queue exists.
fn lane(extra: &str) -> (Till, Agent) {
    let lane = Till::with_config(|l| {
        format!(
            "[agent]\nstate_dir = {:?}\n[[source]]\nname = \"lane1\"\nkind = \"folder\"\n\
             path = {:?}\nshop = \"D001\"\nmachine_id = \"M1\"\nsettle = \"300ms\"\n{extra}",
            l.state, l.inbox
        )
    });
    let agent = lane.spawn(&[]);
    assert!(wait_until(WAIT, || lane
        .state_dir()
        .join("queue.db")
        .exists()));
    (lane, agent)
}

fn sample() -> Vec<u8> {
    fs::read(fixture("exports/orders-20261122-1005.json")).unwrap()
}

#[test]
fn fifos_symlinks_and_odd_names_neither_hang_nor_get_lost() {
    let (lane, mut agent) = lane("");
    let fifo = lane.inbox().join("pipe.json");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("/etc/passwd", lane.inbox().join("passwd.json")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", lane.inbox().join("dangling.json")).unwrap();
    // a name that is not UTF-8 (Latin-1 "caf\xe9.json")
    let odd = lane.inbox().join(OsStr::from_bytes(b"caf\xe9.json"));
    fs::write(&odd, sample()).unwrap();
    // and a good file after all of them: the loop was not stuck on the FIFO
    lane.drop_file("good.json", &sample());
    assert!(
        wait_until(WAIT, || lane.entries("done") == ["good.json"]),
        "{:?}",
        lane.entries("done")
    );
    assert_eq!(lane.orders().len(), 2);
    assert!(
        wait_until(WAIT, || lane
            .entries("rejected")
            .iter()
            .any(|n| n.starts_with("odd-name-caf"))),
        "{:?}",
        lane.entries("rejected")
    );
    let why = fs::read_to_string(lane.inbox().join("rejected").join(format!(
            "{}.error.txt",
            lane.entries("rejected")
                .iter()
                .find(|n| !n.ends_with(".txt"))
                .unwrap()
        )))
    .unwrap();
    assert!(why.contains("not valid UTF-8"), "{why}");
    // the FIFO and the symlinks were left alone
    assert!(fifo.exists());
    assert!(
        fs::symlink_metadata(lane.inbox().join("passwd.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    agent.stop_clean();
}

#[test]
fn files_deleted_or_rewritten_under_the_agent_are_read_once_when_settled() {
    let (lane, mut agent) = lane("");
    // written in place (no rename), then deleted before it settles: nothing happens
    fs::write(lane.inbox().join("gone.json"), sample()).unwrap();
    fs::remove_file(lane.inbox().join("gone.json")).unwrap();
    // written in place, then rewritten with other content before it settles: the
    // second content is what counts, once
    fs::write(lane.inbox().join("twice.json"), b"[{\"order_no\": \"half").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    fs::write(lane.inbox().join("twice.json"), sample()).unwrap();
    assert!(
        wait_until(WAIT, || lane.entries("done") == ["twice.json"]),
        "{:?}",
        lane.entries("done")
    );
    assert_eq!(lane.orders().len(), 2);
    assert!(
        lane.entries("rejected").is_empty(),
        "{:?}",
        lane.entries("rejected")
    );
    agent.stop_clean();
}

#[test]
fn a_folder_that_vanishes_and_returns_is_watched_again() {
    let (lane, mut agent) = lane("");
    lane.drop_file("a.json", &sample());
    assert!(wait_until(WAIT, || lane.orders().len() == 2));
    // the share is unmounted (the folder vanishes at once), then it comes back empty
    fs::rename(lane.inbox(), lane.dir.path().join("unmounted")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    fs::create_dir(lane.inbox()).unwrap();
    let mut second: Vec<Value> = serde_json::from_slice(&sample()).unwrap();
    for o in second.iter_mut() {
        let no = o["order_no"].as_str().unwrap().to_string();
        o["order_no"] = Value::String(format!("{no}-B"));
    }
    // the folder may be seen again only after the agent's retry interval
    lane.drop_file("b.json", &serde_json::to_vec(&second).unwrap());
    assert!(
        wait_until(WAIT, || lane.orders().len() == 4),
        "orders: {}",
        lane.orders().len()
    );
    assert!(wait_until(WAIT, || lane.entries("done") == ["b.json"]));
    agent.stop_clean();
}

#[test]
fn a_huge_file_is_rejected_unread_and_the_rest_goes_on() {
    let (lane, mut agent) = lane("max_file_size = \"64KB\"\n");
    let big = lane.inbox().join("huge.json");
    let f = fs::File::create(&big).unwrap();
    // sparse: 8 GiB apparent size, no disk used
    f.set_len(8 << 30).unwrap();
    drop(f);
    lane.drop_file("small.json", &sample());
    assert!(wait_until(WAIT, || lane.entries("done") == ["small.json"]));
    assert!(wait_until(WAIT, || lane.entries("rejected")
        == ["huge.json", "huge.json.error.txt"]));
    let why = fs::read_to_string(lane.inbox().join("rejected/huge.json.error.txt")).unwrap();
    assert!(why.contains("over max_file_size"), "{why}");
    assert_eq!(lane.orders().len(), 2);
    agent.stop_clean();
}
