//! A hostile watched folder: FIFOs, symlinks, odd names, huge files, files deleted or
//! rewritten under the agent, the folder itself vanishing and coming back. The agent
//! must neither hang, crash, lose an order, nor read a file twice.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{fixture, tillrelay, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

struct Lane {
    dir: tempfile::TempDir,
    config: PathBuf,
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Agent {
    fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let child = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap());
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "exit {:?}: {log}", out.status);
        log
    }
}

impl Lane {
    fn new(extra: &str) -> Lane {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        fs::create_dir(&inbox).unwrap();
        let config = dir.path().join("tillrelay.toml");
        fs::write(
            &config,
            format!(
                "[agent]\nstate_dir = {:?}\n[[source]]\nname = \"lane1\"\nkind = \"folder\"\n\
                 path = {inbox:?}\nshop = \"D001\"\nmachine_id = \"M1\"\nsettle = \"300ms\"\n{extra}",
                dir.path().join("state")
            ),
        )
        .unwrap();
        Lane { dir, config }
    }

    fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }

    fn start(&self) -> Agent {
        let a = Agent(
            tillrelay()
                .args(["run", "--config"])
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        assert!(wait_until(WAIT, || self
            .dir
            .path()
            .join("state/queue.db")
            .exists()));
        a
    }

    fn orders(&self) -> usize {
        let out = tillrelay()
            .args(["orders", "--json", "--limit", "1000", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.len()))
            .unwrap_or(0)
    }

    fn names(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.inbox().join(sub))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn drop_in(&self, name: &str, bytes: &[u8]) {
        let tmp = self.dir.path().join("staging");
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.inbox().join(name)).unwrap();
    }
}

fn sample() -> Vec<u8> {
    fs::read(fixture("exports/orders-20261122-1005.json")).unwrap()
}

#[test]
fn fifos_symlinks_and_odd_names_neither_hang_nor_get_lost() {
    let lane = Lane::new("");
    let agent = lane.start();
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
    lane.drop_in("good.json", &sample());
    assert!(
        wait_until(WAIT, || lane.names("done") == ["good.json"]),
        "{:?}",
        lane.names("done")
    );
    assert_eq!(lane.orders(), 2);
    assert!(
        wait_until(WAIT, || lane
            .names("rejected")
            .iter()
            .any(|n| n.starts_with("odd-name-caf"))),
        "{:?}",
        lane.names("rejected")
    );
    let why = fs::read_to_string(lane.inbox().join("rejected").join(format!(
            "{}.error.txt",
            lane.names("rejected")
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
    agent.stop();
}

#[test]
fn files_deleted_or_rewritten_under_the_agent_are_read_once_when_settled() {
    let lane = Lane::new("");
    let agent = lane.start();
    // written in place (no rename), then deleted before it settles: nothing happens
    fs::write(lane.inbox().join("gone.json"), sample()).unwrap();
    fs::remove_file(lane.inbox().join("gone.json")).unwrap();
    // written in place, then rewritten with other content before it settles: the
    // second content is what counts, once
    fs::write(lane.inbox().join("twice.json"), b"[{\"order_no\": \"half").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    fs::write(lane.inbox().join("twice.json"), sample()).unwrap();
    assert!(
        wait_until(WAIT, || lane.names("done") == ["twice.json"]),
        "{:?}",
        lane.names("done")
    );
    assert_eq!(lane.orders(), 2);
    assert!(
        lane.names("rejected").is_empty(),
        "{:?}",
        lane.names("rejected")
    );
    agent.stop();
}

#[test]
fn a_folder_that_vanishes_and_returns_is_watched_again() {
    let lane = Lane::new("");
    let agent = lane.start();
    lane.drop_in("a.json", &sample());
    assert!(wait_until(WAIT, || lane.orders() == 2));
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
    lane.drop_in("b.json", &serde_json::to_vec(&second).unwrap());
    assert!(
        wait_until(WAIT, || lane.orders() == 4),
        "orders: {}",
        lane.orders()
    );
    assert!(wait_until(WAIT, || lane.names("done") == ["b.json"]));
    agent.stop();
}

#[test]
fn a_huge_file_is_rejected_unread_and_the_rest_goes_on() {
    let lane = Lane::new("max_file_size = \"64KB\"\n");
    let agent = lane.start();
    let big = lane.inbox().join("huge.json");
    let f = fs::File::create(&big).unwrap();
    // sparse: 8 GiB apparent size, no disk used
    f.set_len(8 << 30).unwrap();
    drop(f);
    lane.drop_in("small.json", &sample());
    assert!(wait_until(WAIT, || lane.names("done") == ["small.json"]));
    assert!(wait_until(WAIT, || lane.names("rejected")
        == ["huge.json", "huge.json.error.txt"]));
    let why = fs::read_to_string(lane.inbox().join("rejected/huge.json.error.txt")).unwrap();
    assert!(why.contains("over max_file_size"), "{why}");
    assert_eq!(lane.orders(), 2);
    agent.stop();
}
