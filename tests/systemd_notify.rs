//! The daemon as systemd sees it: the real binary with `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` pointing at a datagram socket of the test's own, the way
//! `Type=notify` + `WatchdogSec=` in systemd/tillrelay.service run it.
//! Checks READY=1, WATCHDOG=1 pings after it (also after real work), STOPPING=1 on
//! SIGTERM and a clean exit; and that a watchdog meant for another process is ignored.

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use common::{fixture, tillrelay, wait_until};

/// Generous: only so a broken daemon fails the test instead of hanging it (qemu is slow).
const PATIENCE: Duration = Duration::from_secs(60);

/// A temp dir with a config (one folder source), and the service manager's socket.
struct Manager {
    dir: tempfile::TempDir,
    socket_path: PathBuf,
    messages: Receiver<String>,
}

impl Manager {
    fn new() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("inbox")).unwrap();
        let config = format!(
            "[agent]\nstate_dir = {state:?}\n\n\
             [[source]]\nname = \"lane1\"\nkind = \"folder\"\npath = {inbox:?}\n\
             shop = \"D001\"\nmachine_id = \"NVR01-CH03\"\nsettle = \"300ms\"\n",
            state = dir.path().join("state"),
            inbox = dir.path().join("inbox"),
        );
        fs::write(dir.path().join("tillrelay.toml"), config).unwrap();

        let socket_path = dir.path().join("notify");
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
            dir,
            socket_path,
            messages,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    fn start(&self, env: &[(&str, &str)]) -> Child {
        let mut cmd = tillrelay();
        cmd.args(["run", "--config"])
            .arg(self.dir.path().join("tillrelay.toml"))
            .env("NOTIFY_SOCKET", &self.socket_path)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.log_path()).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
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
        let tmp = self.dir.path().join("a.json.staging");
        fs::copy(fixture("exports/orders-20261122-1005.json"), &tmp).unwrap();
        fs::rename(&tmp, self.dir.path().join("inbox/a.json")).unwrap();
    }

    fn done_files(&self) -> usize {
        fs::read_dir(self.dir.path().join("inbox/done"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }
}

fn sigterm_and_wait(child: &mut Child, log: impl Fn() -> String) -> ExitStatus {
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let exited = wait_until(PATIENCE, || child.try_wait().unwrap().is_some());
    assert!(exited, "no exit within {PATIENCE:?} of SIGTERM\n{}", log());
    child.wait().unwrap()
}

fn count(messages: &[String], wanted: &str) -> usize {
    messages.iter().filter(|m| *m == wanted).count()
}

#[test]
fn ready_then_watchdog_pings_then_stopping_on_sigterm() {
    let m = Manager::new();
    let mut agent = m.start(&[("WATCHDOG_USEC", "500000")]);

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
        m.log()
    );
    m.until("WATCHDOG=1");
    m.until("WATCHDOG=1");

    let status = sigterm_and_wait(&mut agent, || m.log());
    m.until("STOPPING=1");
    assert!(status.success(), "exit {status:?}\n{}", m.log());
    assert_eq!(count(&m.rest(), "READY=1"), 0, "READY twice");
}

#[test]
fn a_watchdog_for_another_process_is_not_pinged() {
    let m = Manager::new();
    // systemd sets WATCHDOG_PID when the variables may reach a child: only that
    // process owes the pings. pid 1 is never the agent.
    let mut agent = m.start(&[("WATCHDOG_USEC", "500000"), ("WATCHDOG_PID", "1")]);
    let before_ready = m.until("READY=1");
    let status = sigterm_and_wait(&mut agent, || m.log());
    assert!(status.success(), "exit {status:?}\n{}", m.log());
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
    let mut cmd = tillrelay();
    cmd.args(["run", "--config"])
        .arg(m.dir.path().join("tillrelay.toml"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(fs::File::create(m.log_path()).unwrap());
    let mut agent = cmd.spawn().unwrap();
    m.drop_export();
    assert!(
        wait_until(PATIENCE, || m.done_files() == 1),
        "the export was not ingested\n{}",
        m.log()
    );
    let status = sigterm_and_wait(&mut agent, || m.log());
    assert!(status.success(), "exit {status:?}\n{}", m.log());
    let sent = m.rest();
    assert!(sent.is_empty(), "sent without NOTIFY_SOCKET: {sent:?}");
}
