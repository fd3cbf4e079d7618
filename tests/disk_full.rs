//! A full disk stops new acknowledgements, never the process, never drops what is
//! stored, and capture resumes by itself when space returns.
//!
//! The queue lives on a real small filesystem (a 1 MiB tmpfs) where the test may mount
//! one (root, as on this project's machines and CI); elsewhere the same SQLITE_FULL
//! path is driven by the configured size cap instead.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::agent::{Agent, stored_orders};
use common::till::Layout;
use common::wait_until;
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

/// The agent, with its own log per run (killed by its Drop if the test fails half way:
/// a leaked agent would hold a mounted filesystem).
fn start(config: &Path, run: usize) -> Agent {
    Agent::start(
        config,
        &config.with_file_name(format!("agent-{run}.log")),
        &[],
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
    stored_orders(config).len()
}

fn count(dir: &Path) -> usize {
    Layout::files_in(dir).len()
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
    let mut agent = start(&config, 1);

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
            d > 0
                && d + count(&inbox) == files
                && stored(&config) + made_room(&config) == d * 20
                && {
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
    assert!(agent.alive(), "the agent keeps running");
    assert_eq!(
        stored(&config) + made_room(&config),
        acknowledged * 20,
        "every acknowledged order is stored (or was delivered and made room)"
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
            agent = start(&config, 2);
        }
    }
    assert!(
        wait_until(WAIT, || count(&done) == files),
        "done {} of {files}",
        count(&done)
    );
    let log = agent.stop_clean();
    assert!(log.contains("queue is full"), "{log}");
    assert_eq!(stored(&config) + made_room(&config), files * 20);
}

/// Orders the agent's runs deleted at the cap to make room, as their logs say: an
/// order delivered everywhere (here, with no destinations, at once) may go, and
/// nothing is lost when every order is stored or counted here.
fn made_room(config: &Path) -> usize {
    (1..=2)
        .filter_map(|run| {
            fs::read_to_string(config.with_file_name(format!("agent-{run}.log"))).ok()
        })
        .flat_map(|log| {
            log.lines()
                .filter(|l| l.contains("to make room"))
                .filter_map(|l| l.split("deleted ").nth(1)?.split(' ').next()?.parse().ok())
                .collect::<Vec<usize>>()
        })
        .sum()
}
