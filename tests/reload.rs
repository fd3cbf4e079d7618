//! Reload without restart (issue #13), with the real binary, real folders and the
//! emulators of both clouds: `tillrelay reload` (SIGHUP) adds and removes sources
//! while orders flow and every order reaches the clouds once; an invalid file is
//! refused with check-config's messages, the running sources keep capturing, and
//! the refusal shows in the log, `status` and `/metrics`; a destination enabled or
//! moved takes effect.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::emu::Emu;
use common::poll;
use common::till::{Layout, Till, orders_file};

const WAIT: Duration = Duration::from_secs(90);

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `tillrelay reload`, asserted to succeed; its output.
fn reload_ok(till: &Till) -> String {
    let out = till.cli(&["reload"]);
    assert!(
        out.status.success(),
        "reload failed: {}\n{}",
        text(&out),
        till.explain()
    );
    text(&out)
}

/// A folder source's table, as an integrator adds one.
fn folder_source(name: &str, path: &Path) -> String {
    format!(
        "\n[[source]]\nname = \"{name}\"\nkind = \"folder\"\npath = {path:?}\nformat = \"json\"\n\
         settle = \"300ms\"\nshop = \"D001\"\nmachine_id = \"NVR01-CH04\"\n"
    )
}

/// Drops one-order files into `dir` (as a POS does: written beside, renamed in)
/// until `stop`; returns the order numbers it dropped.
fn writer(
    dir: PathBuf,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let layout_dir = dir.parent().unwrap().to_path_buf();
        let mut dropped = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let p = format!("{prefix}{i}");
            let tmp = layout_dir.join(format!(".{p}.tmp"));
            std::fs::write(&tmp, orders_file(&p, 1)).unwrap();
            std::fs::rename(&tmp, dir.join(format!("{p}.json"))).unwrap();
            dropped.push(format!("{p}-00"));
            i += 1;
            std::thread::sleep(Duration::from_millis(60));
        }
        dropped
    })
}

/// How many of `orders` Ovopark holds.
fn held(emu: &Emu, orders: impl Fn(&str) -> bool) -> usize {
    emu.ovopark_counts().keys().filter(|k| orders(k)).count()
}

/// The config text without its first `[[source]]` (the example's lane1), up to the
/// next one.
fn without_lane1(config: &str) -> String {
    let name = config.find("name = \"lane1\"").expect("lane1");
    let start = config[..name].rfind("[[source]]").expect("lane1's table");
    let end = name + config[name..].find("[[source]]").expect("a next source");
    format!("{}{}", &config[..start], &config[end..])
}

/// A source added and another removed while both lanes keep printing: the added one
/// captures what waited in its folder and what comes after; the removed one stops,
/// leaving the files it had not taken in its folder; re-added, it takes them. Every
/// order reaches both clouds exactly once, none is lost.
#[test]
fn sources_added_and_removed_while_orders_flow_deliver_every_order_once() {
    let emu = Emu::process();
    let mut till = Till::new(&emu.dest_config("", ""));
    let inbox2 = till.dir.path().join("inbox2");
    std::fs::create_dir_all(&inbox2).unwrap();
    till.start();
    let original = std::fs::read_to_string(&till.config).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let w1 = writer(till.inbox(), "ONE", stop.clone());
    let w2 = writer(inbox2.clone(), "TWO", stop.clone());
    let lane1 = |k: &str| k.starts_with("ONE");
    let lane2 = |k: &str| k.starts_with("TWO");

    assert!(poll(WAIT, || held(&emu, lane1) >= 3), "{}", till.explain());
    assert_eq!(held(&emu, lane2), 0, "lane2 is not a source yet");

    till.edit_config(|c| format!("{c}{}", folder_source("lane2", &inbox2)));
    let out = reload_ok(&till);
    assert!(out.contains("source lane2 added"), "{out}");
    assert!(!out.contains("lane1"), "lane1 is untouched: {out}");
    let before = held(&emu, lane2);
    assert!(
        poll(WAIT, || held(&emu, lane2) >= before + 3),
        "{}",
        till.explain()
    );

    till.edit_config(|c| without_lane1(&c));
    let out = reload_ok(&till);
    assert!(out.contains("source lane1 removed"), "{out}");
    // Both lanes keep printing a while: lane2's orders go on arriving.
    let later = held(&emu, lane2);
    assert!(
        poll(WAIT, || held(&emu, lane2) >= later + 3),
        "{}",
        till.explain()
    );
    // lane1's files after its removal wait in its folder.
    assert!(
        poll(WAIT, || Layout::files_in(&till.inbox()).len() >= 3),
        "{}",
        till.explain()
    );
    stop.store(true, Ordering::SeqCst);
    let (one, two) = (w1.join().unwrap(), w2.join().unwrap());
    assert!(poll(WAIT, || Layout::files_in(&inbox2).is_empty()));
    let waiting = Layout::files_in(&till.inbox());
    let sent = emu.ovopark_counts();
    for f in &waiting {
        let no = format!("{}-00", f.trim_end_matches(".json"));
        assert!(
            !sent.contains_key(&no),
            "{no} was sent from a removed source"
        );
    }
    let status = text(&till.cli(&["status"]));
    assert!(status.contains("lane1 (no longer configured)"), "{status}");

    // Re-added, lane1 takes what waited: every order of both lanes, once.
    till.edit_config(|_| format!("{original}{}", folder_source("lane2", &inbox2)));
    let out = reload_ok(&till);
    assert!(out.contains("source lane1 added"), "{out}");
    let all: Vec<&str> = one.iter().chain(two.iter()).map(String::as_str).collect();
    assert!(
        till.wait_delivered(&["ovopark", "wdt"], all.len() as i64, WAIT, true),
        "{}",
        till.explain()
    );
    emu.assert_exactly_once(&all);
    assert!(Layout::files_in(&till.inbox()).is_empty());
    till.stop();
}

/// `GET /metrics` over plain HTTP/1.1; `None` while nothing answers.
fn scrape(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_string())
}

fn has_sample(body: &str, line: &str) -> bool {
    body.lines().any(|l| l == line)
}

/// An invalid file is refused with check-config's own messages; the running
/// configuration stays (lane1 keeps capturing and delivering); the refusal is in the
/// log, in `status` (human and JSON) and in `/metrics`, until a valid file is
/// reloaded.
#[test]
fn an_invalid_config_is_refused_and_the_running_one_keeps_capturing() {
    let emu = Emu::process();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut till = Till::new(&emu.dest_config("", ""));
    till.edit_config(|c| {
        c.replace(
            "listen = \"127.0.0.1:9898\"",
            &format!("listen = \"{addr}\""),
        )
    });
    till.start();
    till.drop_file("first.json", &orders_file("FIRST", 1));
    assert!(
        till.wait_delivered(&["ovopark", "wdt"], 1, WAIT, false),
        "{}",
        till.explain()
    );
    let m = poll(WAIT, || scrape(&addr).is_some());
    assert!(m, "no /metrics at {addr}");
    let body = scrape(&addr).unwrap();
    assert!(
        has_sample(&body, "tillrelay_config_last_reload_successful 1"),
        "{body}"
    );
    assert!(
        has_sample(&body, "tillrelay_config_reload_failures_total 0"),
        "{body}"
    );

    let valid = std::fs::read_to_string(&till.config).unwrap();
    till.edit_config(|c| c.replacen("settle = \"300ms\"", "settle = \"soon\"", 1));
    let check = till.cli(&["check-config"]);
    assert_eq!(check.status.code(), Some(3), "{}", text(&check));
    let problems = String::from_utf8_lossy(&check.stderr).trim().to_string();
    assert!(problems.contains("settle"), "{problems}");

    let out = till.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&problems),
        "reload's message is check-config's:\n{}\nvs\n{problems}",
        text(&out)
    );
    assert!(
        till.log()
            .contains("reload refused, the running configuration stays")
    );
    assert!(till.log().contains("settle"), "{}", till.log());

    // The running configuration stays: lane1 still captures and delivers (seen at
    // the clouds: the CLI itself refuses the invalid file).
    till.drop_file("second.json", &orders_file("SECOND", 1));
    assert!(
        poll(WAIT, || emu.ovopark_counts().contains_key("SECOND-00")
            && emu.wdt_counts().contains_key("SECOND-00")),
        "{}",
        till.log()
    );
    let body = scrape(&addr).unwrap();
    for line in [
        "tillrelay_config_last_reload_successful 0",
        "tillrelay_config_reload_failures_total 1",
        "tillrelay_config_reloads_total 1",
    ] {
        assert!(has_sample(&body, line), "no {line:?} in\n{body}");
    }
    // `status` on the invalid file: its own error, after the agent's refusal.
    let st = till.cli(&["status"]);
    assert_eq!(st.status.code(), Some(3));
    assert!(text(&st).contains("RELOAD REFUSED"), "{}", text(&st));

    // The file put back but not reloaded: status shows the refusal, human and JSON.
    till.edit_config(|_| valid.clone());
    let st = text(&till.cli(&["status"]));
    assert!(st.contains("config: RELOAD REFUSED"), "{st}");
    assert!(st.contains("settle"), "{st}");
    let j = till.json(&["status", "--json"]);
    assert_eq!(j["reload"]["ok"], false, "{j}");
    assert!(
        j["reload"]["message"].as_str().unwrap().contains("settle"),
        "{j}"
    );

    let out = reload_ok(&till);
    assert!(out.contains("no source or destination changed"), "{out}");
    let body = scrape(&addr).unwrap();
    for line in [
        "tillrelay_config_last_reload_successful 1",
        "tillrelay_config_reload_failures_total 1",
        "tillrelay_config_reloads_total 2",
    ] {
        assert!(has_sample(&body, line), "no {line:?} in\n{body}");
    }
    let j = till.json(&["status", "--json"]);
    assert_eq!(j["reload"]["ok"], true, "{j}");
    assert!(!text(&till.cli(&["status"])).contains("REFUSED"));
    emu.assert_exactly_once(&["FIRST-00", "SECOND-00"]);
    till.stop();
}

/// A destination enabled by a reload gets the orders captured after it; one whose
/// url changed sends to the new place (here: nowhere, then back).
#[test]
fn a_destination_enabled_or_moved_by_a_reload_takes_effect() {
    let emu = Emu::process();
    let dests = emu.dest_config("", "");
    let mut till = Till::new(&dests.replace("[wdt]\n", "[wdt]\nenabled = false\n"));
    till.start();
    till.drop_file("before.json", &orders_file("BEFORE", 1));
    assert!(
        till.wait_delivered(&["ovopark"], 1, WAIT, false),
        "{}",
        till.explain()
    );
    assert!(emu.wdt_counts().is_empty());

    till.edit_config(|c| c.replace("[wdt]\nenabled = false\n", "[wdt]\n"));
    let out = reload_ok(&till);
    assert!(out.contains("destination wdt enabled"), "{out}");
    till.drop_file("after.json", &orders_file("AFTER", 1));
    assert!(
        poll(WAIT, || emu.wdt_counts().contains_key("AFTER-00")
            && emu.ovopark_counts().contains_key("AFTER-00")),
        "{}",
        till.explain()
    );
    assert!(
        !emu.wdt_counts().contains_key("BEFORE-00"),
        "an order captured before wdt was enabled has no delivery for it"
    );

    // Ovopark moved to a closed port: the next order waits, with the error.
    let closed = format!("127.0.0.1:{}", common::free_port());
    let base = emu.base();
    let host = base.trim_start_matches("http://").to_string();
    till.edit_config(|c| c.replace(&format!("{host}/cloud.api"), &format!("{closed}/cloud.api")));
    let out = reload_ok(&till);
    assert!(out.contains("destination ovopark changed"), "{out}");
    assert!(!out.contains("destination wdt"), "wdt is untouched: {out}");
    till.drop_file("moved.json", &orders_file("MOVED", 1));
    assert!(
        poll(WAIT, || emu.wdt_counts().contains_key("MOVED-00")
            && till.dest("ovopark")["pending"] == 1
            && !till.dest("ovopark")["last_error"].is_null()),
        "{}",
        till.explain()
    );
    assert!(!emu.ovopark_counts().contains_key("MOVED-00"));

    // Back: the waiting order goes out.
    till.edit_config(|c| c.replace(&format!("{closed}/cloud.api"), &format!("{host}/cloud.api")));
    let out = reload_ok(&till);
    assert!(out.contains("destination ovopark changed"), "{out}");
    assert!(
        till.wait_delivered(&["ovopark"], 3, WAIT, true),
        "{}",
        till.explain()
    );
    emu.assert_each_sent_once();
    let ovo: Vec<String> = emu.ovopark_counts().into_keys().collect();
    assert_eq!(ovo, ["AFTER-00", "BEFORE-00", "MOVED-00"]);
    let wdt: Vec<String> = emu.wdt_counts().into_keys().collect();
    assert_eq!(wdt, ["AFTER-00", "MOVED-00"]);
    till.stop();
}

/// The example's `front` print proxy, enabled on loopback in front of `printer`.
fn with_front(config: &str, listen: &str, printer: &str) -> String {
    let at = config
        .find("name = \"front\"")
        .expect("the example's front lane");
    let (head, tail) = config.split_at(at);
    let tail = tail
        .replacen("enabled = false", "enabled = true", 1)
        .replacen(
            "listen = \"0.0.0.0:9100\"",
            &format!("listen = \"{listen}\""),
            1,
        )
        .replacen(
            "printer = \"192.168.1.50:9100\"",
            &format!("printer = \"{printer}\""),
            1,
        )
        .replacen("allow = [\"192.168.1.20\"]", "allow = [\"127.0.0.1\"]", 1);
    format!("{head}{tail}")
}

/// A source changed by a reload restarts alone: a POS printing through the print
/// proxy keeps its connection (and the proxy its one printer connection) while the
/// folder lane beside it is restarted, and both go on capturing.
#[test]
fn a_print_proxy_keeps_its_connections_while_another_source_is_reloaded() {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    let emu = Emu::process();
    let printer = TcpListener::bind("127.0.0.1:0").unwrap();
    let paddr = printer.local_addr().unwrap().to_string();
    let got: Arc<Mutex<Vec<u8>>> = Arc::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    {
        let (got, accepted) = (got.clone(), accepted.clone());
        std::thread::spawn(move || {
            for c in printer.incoming() {
                let Ok(mut c) = c else { break };
                accepted.fetch_add(1, Ordering::SeqCst);
                let got = got.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        got.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
    }
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut till = Till::new(&emu.dest_config("", ""));
    till.edit_config(|c| with_front(&c, &listen, &paddr));
    till.start();

    let mut pos = None;
    assert!(
        poll(WAIT, || {
            pos = TcpStream::connect(&listen).ok();
            pos.is_some()
        }),
        "the proxy does not listen: {}",
        till.log()
    );
    let mut pos = pos.unwrap();
    let printed = |what: &[u8]| {
        let got = got.clone();
        let what = what.to_vec();
        move || got.lock().unwrap().windows(what.len()).any(|w| w == what)
    };
    pos.write_all(b"FIRST LINE\n").unwrap();
    assert!(poll(WAIT, printed(b"FIRST LINE\n")), "{}", till.log());

    till.edit_config(|c| c.replacen("settle = \"300ms\"", "settle = \"400ms\"", 1));
    let out = reload_ok(&till);
    assert!(out.contains("source lane1 changed: restarted"), "{out}");
    assert!(!out.contains("front"), "the proxy is untouched: {out}");

    // The same POS connection still prints, through the same printer connection.
    pos.write_all(b"SECOND LINE\n").unwrap();
    assert!(poll(WAIT, printed(b"SECOND LINE\n")), "{}", till.log());
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one printer connection");
    // And the restarted folder lane captures.
    till.drop_file("after.json", &orders_file("AFTER", 1));
    assert!(
        poll(WAIT, || emu.ovopark_counts().contains_key("AFTER-00")),
        "{}",
        till.explain()
    );
    drop(pos);
    till.stop();
}

/// Adding a destination, then removing it (issue #24): every order captured from
/// then on gets a delivery row per destination enabled, yet a print proxy is not
/// restarted for that: a POS printing through it keeps its connection, and the
/// proxy its one printer connection, across both reloads; what it prints is
/// journalled.
#[test]
fn a_print_proxy_keeps_its_connections_when_a_destination_is_added() {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    let emu = Emu::process();
    let printer = TcpListener::bind("127.0.0.1:0").unwrap();
    let paddr = printer.local_addr().unwrap().to_string();
    let got: Arc<Mutex<Vec<u8>>> = Arc::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    {
        let (got, accepted) = (got.clone(), accepted.clone());
        std::thread::spawn(move || {
            for c in printer.incoming() {
                let Ok(mut c) = c else { break };
                accepted.fetch_add(1, Ordering::SeqCst);
                let got = got.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        got.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
    }
    let listen = format!("127.0.0.1:{}", common::free_port());
    let dests = emu.dest_config("", "");
    let mut till = Till::new(&dests.replace("[wdt]\n", "[wdt]\nenabled = false\n"));
    till.edit_config(|c| with_front(&c, &listen, &paddr));
    till.start();

    let mut pos = None;
    assert!(
        poll(WAIT, || {
            pos = TcpStream::connect(&listen).ok();
            pos.is_some()
        }),
        "the proxy does not listen: {}",
        till.log()
    );
    let mut pos = pos.unwrap();
    let printed = |what: &[u8]| {
        let got = got.clone();
        let what = what.to_vec();
        move || got.lock().unwrap().windows(what.len()).any(|w| w == what)
    };
    pos.write_all(b"FIRST LINE\n").unwrap();
    assert!(poll(WAIT, printed(b"FIRST LINE\n")), "{}", till.log());

    till.edit_config(|c| c.replace("[wdt]\nenabled = false\n", "[wdt]\n"));
    let out = reload_ok(&till);
    assert!(out.contains("destination wdt enabled"), "{out}");
    assert!(
        !out.contains("source front restarted") && !out.contains("source front changed"),
        "the proxy is not restarted: {out}"
    );

    // The same POS connection still prints, through the same printer connection.
    pos.write_all(b"SECOND LINE\n").unwrap();
    assert!(poll(WAIT, printed(b"SECOND LINE\n")), "{}", till.log());
    // And removing it again.
    till.edit_config(|c| c.replacen("\n[wdt]\n", "\n[wdt]\nenabled = false\n", 1));
    let out = reload_ok(&till);
    assert!(out.contains("destination wdt disabled"), "{out}");
    assert!(!out.contains("source front restarted"), "{out}");
    pos.write_all(b"THIRD LINE\n").unwrap();
    assert!(poll(WAIT, printed(b"THIRD LINE\n")), "{}", till.log());
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one printer connection");
    // The POS done, its receipt (all lines) is journalled.
    drop(pos);
    assert!(
        poll(WAIT, || {
            let st = till.json(&["status", "--json"]);
            st["sources"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|s| s["name"] == "front" && s["receipts"].as_i64() >= Some(1))
            })
        }),
        "{}",
        till.explain()
    );
    till.stop();
}

/// After a crash the pid file stays behind, and its pid can be reused by any process,
/// whose default action for SIGUSR1 (`flush`) and SIGHUP (`reload`) is to die. Only a
/// process holding the file's lock is an agent: here the file of a SIGKILLed agent
/// names a live `sleep` of the test's own, and neither command signals it.
#[test]
fn a_pid_file_left_by_a_dead_agent_is_not_signalled() {
    let till = Till::new("");
    let mut agent = till.spawn(&[]);
    agent.wait_ready(&till.state_dir(), WAIT);
    // The running agent is found through its lock.
    let out = till.cli(&["flush"]);
    assert!(
        out.status.success() && text(&out).contains(&format!("(pid {})", agent.pid())),
        "{}",
        text(&out)
    );
    agent.kill9();
    let pid_file = till.state_dir().join("tillrelay.pid");
    assert!(pid_file.exists(), "SIGKILL leaves the pid file");

    let mut other = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, format!("{}\n", other.id())).unwrap();
    let stale = "no running agent";
    let flush = till.cli(&["flush"]);
    // As with no pid file at all: flush exits 0, reload 1.
    assert_eq!(flush.status.code(), Some(0), "{}", text(&flush));
    assert!(
        text(&flush).contains(stale) && text(&flush).contains("no longer running"),
        "{}",
        text(&flush)
    );
    let reload = till.cli(&["reload"]);
    assert_eq!(reload.status.code(), Some(1), "{}", text(&reload));
    assert!(text(&reload).contains(stale), "{}", text(&reload));

    // Not signalled: killed now, it dies of this SIGKILL. Had it been sent SIGUSR1 or
    // SIGHUP, it would have died of that (the kernel keeps the first fatal signal).
    common::signal(other.id(), libc::SIGKILL);
    let status = other.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
}
