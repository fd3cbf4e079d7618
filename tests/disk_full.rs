//! A full disk stops new acknowledgements, never the process, never drops what is
//! stored, and capture resumes by itself when space returns.
//!
//! The queue lives on a real small filesystem (a 1 MiB tmpfs) where the test may mount
//! one (root, as on this project's machines and CI); elsewhere the same SQLITE_FULL
//! path is driven by the configured size cap instead.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{tillrelay, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The agent, killed if the test fails half way (a leaked agent would hold the
/// test's pipes and a mounted filesystem).
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &Path) -> Agent {
    Agent(
        tillrelay()
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn orders_file(file: usize) -> Vec<u8> {
    let orders: Vec<Value> = (0..20)
        .map(|i| {
            let lines: Vec<Value> = (0..8)
                .map(|l| json!({"code": format!("69{file:04}{i:03}{l:02}"), "name": "可口可乐500ml 经典装",
                    "qty": "1", "price": "3.50", "amount": "3.50"}))
                .collect();
            json!({"order_no": format!("F{file:04}-{i:03}"), "order_time": "2026-11-22 09:15:02",
                "total": "28.00", "paid": "28.00", "lines": lines})
        })
        .collect();
    serde_json::to_vec(&orders).unwrap()
}

fn stored(config: &Path) -> usize {
    let out = tillrelay()
        .args(["orders", "--json", "--limit", "100000", "--config"])
        .arg(config)
        .output()
        .unwrap();
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().map(|a| a.len()))
        .unwrap_or(0)
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|d| d.filter(|e| e.as_ref().unwrap().path().is_file()).count())
        .unwrap_or(0)
}

#[test]
fn a_full_queue_stops_acknowledging_keeps_everything_and_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mount = Mount::tmpfs(&state, "1m");
    let inbox = dir.path().join("inbox");
    fs::create_dir_all(&inbox).unwrap();
    // Without a mount, the size cap takes the same path (SQLITE_FULL).
    let cap = if mount.is_some() { "256MB" } else { "1MB" };
    let config = dir.path().join("tillrelay.toml");
    fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = {state:?}\n[outbox]\nmax_size = \"{cap}\"\n\
             [[source]]\nname = \"lane1\"\nkind = \"folder\"\npath = {inbox:?}\nshop = \"D001\"\n\
             machine_id = \"NVR01-CH03\"\nsettle = \"100ms\"\n"
        ),
    )
    .unwrap();
    let mut agent = start(&config);

    // ~8 KiB of orders per file; 1 MiB fills after well under 120 files.
    let files = 120;
    for f in 0..files {
        let tmp = dir.path().join(format!("f{f:04}.json"));
        fs::write(&tmp, orders_file(f)).unwrap();
        fs::rename(&tmp, inbox.join(format!("f{f:04}.json"))).unwrap();
    }
    // The queue fills: some files done, the rest still waiting in the folder.
    let done = inbox.join("done");
    assert!(
        wait_until(WAIT, || {
            let d = count(&done);
            d > 0 && d + count(&inbox) == files && stored(&config) == d * 20 && {
                std::thread::sleep(Duration::from_millis(500));
                count(&done) == d
            }
        }),
        "done {}, waiting {}",
        count(&done),
        count(&inbox)
    );
    let acknowledged = count(&done);
    assert!(acknowledged < files, "the queue never filled");
    assert!(count(&inbox) > 0, "unacknowledged files stay in the folder");
    assert_eq!(
        count(&inbox.join("rejected")),
        0,
        "nothing is rejected for a full disk"
    );
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    assert_eq!(
        stored(&config),
        acknowledged * 20,
        "every acknowledged order is stored"
    );

    // Space returns: capture resumes by itself.
    match &mount {
        Some(m) => m.resize("64m"),
        None => {
            let text = fs::read_to_string(&config)
                .unwrap()
                .replace("\"1MB\"", "\"256MB\"");
            fs::write(&config, text).unwrap();
            drop(agent);
            agent = start(&config);
        }
    }
    assert!(
        wait_until(WAIT, || count(&done) == files),
        "done {} of {files}",
        count(&done)
    );
    assert_eq!(stored(&config), files * 20);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(agent.0.id() as i32, libc::SIGTERM);
    }
    let child = std::mem::replace(&mut agent.0, Command::new("true").spawn().unwrap());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("queue is full"), "{log}");
}
