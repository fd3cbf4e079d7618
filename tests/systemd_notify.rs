//! The daemon as systemd sees it: the real binary with `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` pointing at a datagram socket of the test's own, the way
//! `Type=notify` + `WatchdogSec=` in systemd/tillrelay.service run it.
//! Checks READY=1, WATCHDOG=1 pings after it (also after real work), STOPPING=1 on
//! SIGTERM and a clean exit; and that a watchdog meant for another process is ignored.

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use common::agent::Agent;
use common::till::Till;
use common::{fixture, wait_until};

/// Generous: only so a broken daemon fails the test instead of hanging it (qemu is slow).
const PATIENCE: Duration = Duration::from_secs(60);

/// A till with a config (one folder source), and the service manager's socket.
struct Manager {
    till: Till,
    socket_path: PathBuf,
    messages: Receiver<String>,
}

impl Manager {
    fn new() -> Manager {
        let till = Till::with_config(|l| {
            format!(
                "[agent]\nstate_dir = {state:?}\n\n\
                 [[source]]\nname = \"lane1\"\nkind = \"folder\"\npath = {inbox:?}\n\
                 shop = \"D001\"\nmachine_id = \"NVR01-CH03\"\nsettle = \"300ms\"\n",
                state = l.state,
                inbox = l.inbox,
            )
        });

        let socket_path = till.dir.path().join("notify");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        // Every assignment of every datagram, in order, as systemd would parse them.
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    if tx.send(line.to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        Manager {
            till,
            socket_path,
            messages,
        }
    }

    /// The agent under this manager (`NOTIFY_SOCKET` set unless `notify` is false),
    /// with no watchdog variables but those in `env`.
    fn start(&self, notify: bool, env: &[(&str, &str)]) -> Agent {
        Agent::start_cmd(&self.till.config, &self.log_path(), |cmd| {
            cmd.env_remove("NOTIFY_SOCKET")
                .env_remove("WATCHDOG_USEC")
                .env_remove("WATCHDOG_PID");
            if notify {
                cmd.env("NOTIFY_SOCKET", &self.socket_path);
            }
            for (k, v) in env {
                cmd.env(k, v);
            }
        })
    }

    fn log_path(&self) -> PathBuf {
        self.till.dir.path().join("agent.log")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Reads messages until `wanted` arrives; returns the ones before it.
    fn until(&self, wanted: &str) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            match self.messages.recv_timeout(PATIENCE) {
                Ok(m) if m == wanted => return before,
                Ok(m) => before.push(m),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no {wanted} within {PATIENCE:?}; got {before:?}\nlog:\n{}",
                    self.log()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!("notify socket closed"),
            }
        }
    }

    /// Everything the agent sent and the test did not read yet. Call it once the agent
    /// has exited: a datagram socket is FIFO, so every message it sent comes before
    /// the end marker the test sends itself.
    fn rest(&self) -> Vec<String> {
        UnixDatagram::unbound()
            .unwrap()
            .send_to(b"X_TEST_END=1", &self.socket_path)
            .unwrap();
        self.until("X_TEST_END=1")
    }

    fn drop_export(&self) {
        self.till.drop_file(
            "a.json",
            &fs::read(fixture("exports/orders-20261122-1005.json")).unwrap(),
        );
    }

    fn done_files(&self) -> usize {
        self.till.entries("done").len()
    }
}

/// SIGTERM; the exit status (a broken daemon fails the test instead of hanging it).
fn sigterm_and_wait(agent: &mut Agent) -> ExitStatus {
    agent.stop_within(PATIENCE)
}

fn count(messages: &[String], wanted: &str) -> usize {
    messages.iter().filter(|m| *m == wanted).count()
}

#[test]
fn ready_then_watchdog_pings_then_stopping_on_sigterm() {
    let m = Manager::new();
    let mut agent = m.start(true, &[("WATCHDOG_USEC", "500000")]);

    let before_ready = m.until("READY=1");
    assert_eq!(count(&before_ready, "WATCHDOG=1"), 0, "{before_ready:?}");

    // Pings while idle.
    m.until("WATCHDOG=1");
    m.until("WATCHDOG=1");

    // And still after the pipeline did real work.
    m.drop_export();
    assert!(
        wait_until(PATIENCE, || m.done_files() == 1),
        "the export was not ingested\n{}",
        agent.log_text()
    );
    m.until("WATCHDOG=1");
    m.until("WATCHDOG=1");

    let status = sigterm_and_wait(&mut agent);
    m.until("STOPPING=1");
    assert!(status.success(), "exit {status:?}\n{}", agent.log_text());
    assert_eq!(count(&m.rest(), "READY=1"), 0, "READY twice");
}

#[test]
fn a_watchdog_for_another_process_is_not_pinged() {
    let m = Manager::new();
    // systemd sets WATCHDOG_PID when the variables may reach a child: only that
    // process owes the pings. pid 1 is never the agent.
    let mut agent = m.start(true, &[("WATCHDOG_USEC", "500000"), ("WATCHDOG_PID", "1")]);
    let before_ready = m.until("READY=1");
    let status = sigterm_and_wait(&mut agent);
    assert!(status.success(), "exit {status:?}\n{}", agent.log_text());
    let after_ready = m.rest();
    assert!(
        after_ready.iter().any(|x| x == "STOPPING=1"),
        "{after_ready:?}"
    );
    let all: Vec<_> = before_ready.iter().chain(&after_ready).collect();
    assert!(!all.iter().any(|x| *x == "WATCHDOG=1"), "{all:?}");
}

#[test]
fn without_notify_socket_the_daemon_runs_and_stops_the_same() {
    let m = Manager::new();
    let mut agent = m.start(false, &[]);
    m.drop_export();
    assert!(
        wait_until(PATIENCE, || m.done_files() == 1),
        "the export was not ingested\n{}",
        agent.log_text()
    );
    let status = sigterm_and_wait(&mut agent);
    assert!(status.success(), "exit {status:?}\n{}", agent.log_text());
    let sent = m.rest();
    assert!(sent.is_empty(), "sent without NOTIFY_SOCKET: {sent:?}");
}

/// The watchdog's reason to exist: a loop that hangs (the failpoint
/// `folder.after_commit:hang`: a file's orders committed, the file not moved yet)
/// stops the pings, and the status line says which loop, so that systemd kills and
/// restarts the agent. The agent restarted with the same environment
/// (`TILLRELAY_FAILPOINT_ONCE`: the hang happens once) moves the file without storing
/// its orders again, and pings again.
#[test]
fn a_hung_loop_stops_the_watchdog_pings_and_a_restart_carries_on() {
    let m = Manager::new();
    let once = m.till.dir.path().join("hung-once");
    let once = once.to_str().unwrap();
    let env = [
        ("WATCHDOG_USEC", "1000000"),
        ("TILLRELAY_FAILPOINT", "folder.after_commit:hang"),
        ("TILLRELAY_FAILPOINT_ONCE", once),
    ];
    let mut agent = m.start(true, &env);
    m.until("READY=1");
    m.until("WATCHDOG=1");
    m.drop_export();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match m.messages.recv_timeout(left) {
            // (Another loop late on a loaded machine may be named first, and recover.)
            Ok(s) if s.starts_with("STATUS=watchdog: not pinging") && s.contains("lane1") => {
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("no stuck status within {PATIENCE:?} ({e:?})\n{}", m.log()),
        }
    }
    let stored = common::agent::stored_orders(&m.till.config).len();
    assert!(stored > 0, "the hang comes after the commit\n{}", m.log());
    assert_eq!(m.done_files(), 0, "the hang comes before the move");

    // Stopped here by SIGTERM (systemd would SIGABRT it): the hung loop is left
    // behind after the drain deadline. Not one ping after the stuck status.
    sigterm_and_wait(&mut agent);
    let after = m.rest();
    assert_eq!(count(&after, "WATCHDOG=1"), 0, "{after:?}");

    let mut again = m.start(true, &env);
    m.until("READY=1");
    assert!(
        wait_until(PATIENCE, || m.done_files() == 1),
        "the file was not moved after the restart\n{}",
        again.log_text()
    );
    assert_eq!(common::agent::stored_orders(&m.till.config).len(), stored);
    m.until("WATCHDOG=1");
    let status = sigterm_and_wait(&mut again);
    assert!(status.success(), "exit {status:?}\n{}", again.log_text());
}
