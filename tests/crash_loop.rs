//! The crash loop: the real agent is SIGKILLed at random moments, over and over, while
//! a POS prints receipts to its serial lane and exports files to its folder lane and
//! the clouds (the emulators) fail now and then; it is restarted each time. At the end
//! every acknowledged order is in both clouds exactly once, and nothing else is.
//!
//! # What "acknowledged" means, and what the test may assert
//!
//! - **A folder file is acknowledged when it is moved to `done/`.** The agent moves it
//!   only after its orders are committed (fsynced). So after every kill, with the agent
//!   dead, every file in `done/` must have all its orders in the queue (`orders --json`,
//!   read-only). A file not yet moved is not acknowledged: it is still in the folder,
//!   and a later run reads it (a file committed but not moved is recognised by its
//!   hash and moved without storing its orders twice; a failpoint kills the agent in
//!   exactly that window in some rounds). At the end every file written is in `done/`.
//!
//! - **A receipt is acknowledged when it is journalled** (committed to the queue with
//!   its raw bytes). A serial tap cannot refuse or replay bytes: to pass them on to the
//!   printer at once it must read them from the line, and what a killed agent had read
//!   but not yet committed (the receipt being assembled, or one committed a few
//!   milliseconds too late) is gone from the line. The printer still printed it. This
//!   is the serial lane's irreducible loss window; this test measures it and bounds its
//!   shape, but cannot forbid it:
//!   - Receipts are written only while the agent process is up. Bytes written while it
//!     is down would wait in the pty (the test holds the device end open), and on a
//!     real line the POS would be held by flow control until the printer path is back;
//!     neither says anything about the agent.
//!   - After every kill, what the queue showed as captured before is still there
//!     (journalled = durable), with exactly the printed content.
//!   - Every round first writes receipts and waits until the queue shows them: a
//!     receipt read by a running agent is captured within a generous bound (this is
//!     "every receipt written while the agent ran long enough after it is captured").
//!     The final round writes receipts and stops the agent only when all are captured.
//!   - What is lost is only what a kill cut off: the agent commits receipts in the
//!     order it reads them, and bytes it did not read stay in the pty for the next
//!     run, so each kill loses at most one contiguous run of receipts (in printing
//!     order). The lost receipts form at most as many runs as there were kills.
//!   - A partial receipt (head read by the killed agent, tail by the next) is
//!     journalled as unreadable, never stored as a wrong order.
//!
//! - **Delivery, exactly once as the cloud counts it**: Ovopark accepts each order
//!   number once (`accepted == 1`; a resend after a kill between the request and the
//!   commit of its outcome is answered 208003, which the agent takes as delivered), and
//!   Wangdiantong has each tid (a resend is an update of the same trade). After every
//!   kill, neither cloud has an order the queue does not have.
//!
//! # Size
//!
//! `TILLRELAY_CRASH_KILLS` random SIGKILLs (default 30; e.g. 300 for a long run), plus
//! a failpoint kill every sixth round; `TILLRELAY_CRASH_SEED` repeats a run. The
//! figures are printed at the end (`cargo test --test crash_loop -- --nocapture`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agent::{Agent, stored_orders};
use common::emu::Emu;
use common::expect_within;
use common::orders::{canonical, delivery_state};
use common::pty::{PrinterSink, Pty, clear_exclusive, market_order, market_receipt};
use common::till::{Layout, example_config, orders_file};
use serde_json::json;
use serialport::SerialPort;
use tillrelay::emulator::{EmuConfig, demo_agent_config};

/// How long a running agent may take to capture a receipt or a file (generous: it is
/// a bound for a stuck agent, not a performance figure).
const WAIT: Duration = Duration::from_secs(60);

fn receipt_no(seq: u64) -> String {
    format!("2026{seq:09}")
}

/// Files written by the POS: (file name, its order numbers), in the order written.
type Written = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// The POS's export side: drops files into the folder continuously, on its own thread,
/// whether the agent is up or not (a POS does not know about the agent).
struct FolderPos {
    stop: Arc<AtomicBool>,
    written: Written,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FolderPos {
    fn start(inbox_parent: &std::path::Path, seed: u64) -> FolderPos {
        let l = Layout::new(inbox_parent);
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (s, w) = (stop.clone(), written.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut seq = 0u32;
            while !s.load(Ordering::Relaxed) {
                seq += 1;
                let prefix = format!("F{seq:05}");
                let n = rng.usize(1..=4);
                l.drop_file(&format!("{prefix}.json"), &orders_file(&prefix, n));
                let nos = (0..n).map(|i| format!("{prefix}-{i:02}")).collect();
                w.lock().unwrap().push((format!("{prefix}.json"), nos));
                std::thread::sleep(Duration::from_millis(rng.u64(80..=300)));
            }
        });
        FolderPos {
            stop,
            written,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn written(&self) -> Vec<(String, Vec<String>)> {
        self.written.lock().unwrap().clone()
    }
}

impl Drop for FolderPos {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The POS's printer side: writes receipts to the serial line.
struct SerialPos {
    pos: serialport::TTYPort,
    next: u64,
    /// Sequence numbers written, in order.
    written: Vec<u64>,
}

impl SerialPos {
    fn print(&mut self) -> u64 {
        self.next += 1;
        let seq = self.next;
        self.pos
            .write_all(&market_receipt(&receipt_no(seq)))
            .expect("the POS side of the pty");
        self.pos.flush().unwrap();
        self.written.push(seq);
        seq
    }
}

/// What the test knows after a kill, checked against the queue and the clouds.
struct Ledger {
    /// Order numbers stored so far (must only grow).
    stored: BTreeSet<String>,
    files: BTreeMap<String, Vec<String>>,
    receipts_captured: BTreeSet<u64>,
}

impl Ledger {
    /// The checks that hold after every kill (the agent is dead: nothing moves).
    fn check(
        &mut self,
        l: &Layout,
        emu: &Emu,
        folder: &FolderPos,
        serial: &SerialPos,
        round: usize,
    ) {
        for (name, nos) in folder.written() {
            self.files.insert(name, nos);
        }
        let orders = stored_orders(&l.config);
        let mut now_stored = BTreeSet::new();
        for o in &orders {
            let no = o["order_no"].as_str().unwrap().to_string();
            assert!(
                now_stored.insert(no.clone()),
                "round {round}: {no} stored twice"
            );
            if o["source"] == "market" {
                let seq: u64 = no[4..].parse().unwrap();
                assert!(
                    serial.written.contains(&seq),
                    "round {round}: receipt order {no} was never printed"
                );
                assert_eq!(
                    canonical(o),
                    market_order(&no),
                    "round {round}: receipt order {no} is not what was printed"
                );
                self.receipts_captured.insert(seq);
            } else {
                assert_eq!(o["source"], "lane1", "{o}");
                let file = format!("{}.json", &no[..6]);
                let nos = self
                    .files
                    .get(&file)
                    .unwrap_or_else(|| panic!("round {round}: {no} is from no file written"));
                assert!(nos.contains(&no), "round {round}: {no} is not in {file}");
                assert_eq!(o["lines"].as_array().unwrap().len(), 2, "{o}");
            }
        }
        let lost: Vec<_> = self.stored.difference(&now_stored).collect();
        assert!(
            lost.is_empty(),
            "round {round}: stored orders vanished after a kill: {lost:?}"
        );
        // Acknowledged files: moved to done/ ⇒ every order of theirs is stored.
        for name in Layout::files_in(&l.done()) {
            let nos = self
                .files
                .get(&name)
                .unwrap_or_else(|| panic!("round {round}: unknown file in done/: {name}"));
            for no in nos {
                assert!(
                    now_stored.contains(no),
                    "round {round}: {name} was acknowledged (moved to done/) but its order {no} is not stored"
                );
            }
        }
        let rejected = Layout::files_in(&l.inbox.join("rejected"));
        assert!(
            rejected.is_empty(),
            "round {round}: rejected files: {rejected:?}"
        );
        // The clouds never have what the queue does not.
        for o in emu.ovopark_orders() {
            let no = o["order_no"].as_str().unwrap();
            assert!(
                now_stored.contains(no),
                "round {round}: Ovopark has {no}, never stored"
            );
            assert_eq!(o["accepted"], 1, "round {round}: {o}");
        }
        for t in emu.wdt_trades() {
            let tid = t["tid"].as_str().unwrap();
            assert!(
                now_stored.contains(tid),
                "round {round}: Wangdiantong has {tid}, never stored"
            );
        }
        self.stored = now_stored;
    }
}

/// Contiguous runs in a sorted list of sequence numbers.
fn runs(seqs: &[u64]) -> usize {
    seqs.windows(2).filter(|w| w[1] != w[0] + 1).count() + usize::from(!seqs.is_empty())
}

fn captured(l: &Layout, seqs: &[u64]) -> bool {
    let stored: BTreeSet<String> = stored_orders(&l.config)
        .iter()
        .map(|o| o["order_no"].as_str().unwrap().to_string())
        .collect();
    seqs.iter().all(|s| stored.contains(&receipt_no(*s)))
}

#[test]
fn every_acknowledged_order_reaches_both_clouds_exactly_once_across_random_kills() {
    let started = Instant::now();
    let kills: usize = std::env::var("TILLRELAY_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("TILLRELAY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash loop: {kills} kills, TILLRELAY_CRASH_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let emu = Emu::start(EmuConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let log = dir.path().join("agent.log");
    let Pty {
        master: mut pos_master,
        slave: pos_slave,
        path: pos_path,
    } = Pty::new();
    pos_master.set_timeout(Duration::from_secs(10)).unwrap();
    let Pty {
        master: printer_master,
        slave: printer_slave,
        path: printer_path,
    } = Pty::new();
    let printer = PrinterSink::start(printer_master);
    // A request timeout long enough that a loaded machine's slow answer is not taken
    // for a lost one (its resend would count against the per-kill bound); the `hang`
    // fault holds an answer 1 s only.
    let tail = demo_agent_config(&emu.base())
        .replace(
            "[ovopark]\n",
            "[ovopark]\nconnect_timeout_secs = 2\ntimeout_secs = 20\n",
        )
        .replace(
            "[wdt]\n",
            "[wdt]\nconnect_timeout_secs = 2\ntimeout_secs = 20\nrate_limit_wait_secs = 1\n",
        );
    fs::write(
        &l.config,
        example_config(&l, "200ms", Some((&pos_path, &printer_path)), &tail),
    )
    .unwrap();

    let mut folder = FolderPos::start(dir.path(), seed ^ 0x5eed);
    let mut serial = SerialPos {
        pos: pos_master,
        next: 0,
        written: Vec::new(),
    };
    let mut ledger = Ledger {
        stored: BTreeSet::new(),
        files: BTreeMap::new(),
        receipts_captured: BTreeSet::new(),
    };
    let faults = ["http500", "reset", "garbage", "hang", "rate_limit", "code"];
    // The resend bound, per kill: what the run after a kill re-sends is what that kill
    // interrupted — at most `concurrency` requests sent and not yet recorded (the
    // emulators fault a request before processing it, so nothing else re-sends).
    let in_flight = tillrelay::upload::ovopark::DEFAULT_CONCURRENCY as u64;
    let ovo_resends = |emu: &Emu| -> u64 {
        emu.ovopark()
            .values()
            .map(|o| o["duplicates"].as_u64().unwrap())
            .sum()
    };
    let (mut resends_seen, mut worst_run) = (0u64, 0u64);
    let mut per_kill = |emu: &Emu, round: usize| {
        // What the killed agent sent before it died is counted with its own run:
        // a request the emulator is still answering would otherwise land in the
        // next run's count (seen once: 5 for a bound of 4).
        assert!(
            common::wait_until(WAIT, || emu.get("/_emu/stats")["ovopark"]["in_flight"]
                .as_u64()
                .is_some_and(|n| n == 0)),
            "round {round}: the emulator is still answering the killed agent's requests"
        );
        let now = ovo_resends(emu);
        let run = now - resends_seen;
        resends_seen = now;
        worst_run = worst_run.max(run);
        assert!(
            run <= in_flight,
            "round {round}: the run after a kill re-sent {run} Ovopark orders, more than the {in_flight} a kill can interrupt"
        );
    };
    let (mut random_kills, mut failpoint_kills, mut early_kills, mut faults_set) = (0, 0, 0, 0);
    let mut round = 0;
    while random_kills < kills {
        round += 1;
        clear_exclusive(&pos_slave);
        clear_exclusive(&printer_slave);
        if rng.u8(0..4) == 0 {
            let mode = faults[rng.usize(..faults.len())];
            let target = ["ovopark", "wdt", "both"][rng.usize(..3)];
            emu.fault(
                json!({"target": target, "mode": mode, "count": rng.u32(1..=3), "hang_secs": 1}),
            );
            faults_set += 1;
        }
        if round % 6 == 0 {
            // A failpoint: the agent kills itself in the narrowest window of a lane,
            // right after a commit and before the acknowledgement (file move) or the
            // next receipt.
            let point = if round % 12 == 0 {
                "serial.after_commit"
            } else {
                "folder.after_commit"
            };
            let mut agent = Agent::start(&l.config, &log, &[("TILLRELAY_FAILPOINT", point)]);
            if point == "serial.after_commit" {
                serial.print();
            }
            let st = agent.wait_exit(WAIT).unwrap_or_else(|| {
                panic!(
                    "round {round}: the {point} failpoint never fired:\n{}",
                    common::tail(&agent.log_text(), 20)
                )
            });
            assert!(!st.success(), "round {round}: {st:?}");
            failpoint_kills += 1;
            ledger.check(&l, &emu, &folder, &serial, round);
            per_kill(&emu, round);
            continue;
        }
        let mut agent = Agent::start(&l.config, &log, &[]);
        let early = rng.u8(0..5) == 0;
        if early {
            early_kills += 1;
            // Killed early: while opening the queue, starting loops, maybe mid-receipt.
            if rng.bool() {
                serial.print();
            }
            std::thread::sleep(Duration::from_millis(rng.u64(0..400)));
        } else {
            // Receipts the agent must capture while it runs…
            let settled: Vec<u64> = (0..rng.usize(1..=2)).map(|_| serial.print()).collect();
            expect_within(
                WAIT,
                || captured(&l, &settled),
                || {
                    format!(
                        "round {round}: printed receipts {settled:?} were not captured by a running agent:\n{}",
                        common::tail(&agent.log_text(), 30)
                    )
                },
            );
            // …then more while it works, and a kill at a random moment: often
            // within milliseconds of the last receipt (while it is being read,
            // assembled or committed), otherwise up to 1.5 s later.
            for _ in 0..rng.usize(0..=3) {
                serial.print();
                std::thread::sleep(Duration::from_millis(rng.u64(0..300)));
            }
            if rng.bool() {
                serial.print();
                std::thread::sleep(Duration::from_millis(rng.u64(0..20)));
            } else {
                std::thread::sleep(Duration::from_millis(rng.u64(0..1500)));
            }
        }
        assert!(
            agent.alive(),
            "round {round}: the agent exited by itself:\n{}",
            common::tail(&agent.log_text(), 30)
        );
        agent.kill9();
        random_kills += 1;
        ledger.check(&l, &emu, &folder, &serial, round);
        per_kill(&emu, round);
    }

    // The last run: the network is fine, the POS stops exporting, prints a few more
    // receipts, and everything is captured and delivered before an orderly stop.
    emu.clear_faults();
    clear_exclusive(&pos_slave);
    clear_exclusive(&printer_slave);
    let mut agent = Agent::start(&l.config, &log, &[]);
    folder.stop();
    let last: Vec<u64> = (0..3).map(|_| serial.print()).collect();
    let files = folder.written();
    let all_files: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
    expect_within(
        WAIT * 2,
        || {
            let done: BTreeSet<String> = Layout::files_in(&l.done()).into_iter().collect();
            done == all_files && captured(&l, &last) && {
                let orders = stored_orders(&l.config);
                orders.iter().all(|o| {
                    delivery_state(o, "ovopark") == Some("delivered")
                        && delivery_state(o, "wdt") == Some("delivered")
                })
            }
        },
        || {
            format!(
                "the last run did not capture and deliver everything: {} of {} files done\n{}",
                Layout::files_in(&l.done()).len(),
                all_files.len(),
                common::tail(&agent.log_text(), 30)
            )
        },
    );
    let st = agent.stop();
    assert!(st.success(), "the orderly stop: {st:?}");
    ledger.check(&l, &emu, &folder, &serial, round + 1);

    // Everything acknowledged is stored, and only that.
    let folder_orders: BTreeSet<String> = files.iter().flat_map(|(_, n)| n.clone()).collect();
    let receipt_orders: BTreeSet<String> = ledger
        .receipts_captured
        .iter()
        .map(|s| receipt_no(*s))
        .collect();
    let expected: BTreeSet<String> = folder_orders.union(&receipt_orders).cloned().collect();
    assert_eq!(
        ledger.stored, expected,
        "the queue holds every file's orders and the captured receipts"
    );
    assert!(
        Layout::files_in(&l.inbox).is_empty(),
        "no file is left in the folder"
    );

    // Both clouds: each stored order exactly once, nothing else, the right content.
    let stored = stored_orders(&l.config);
    let lines: BTreeMap<String, usize> = stored
        .iter()
        .map(|o| {
            (
                o["order_no"].as_str().unwrap().to_string(),
                o["lines"].as_array().unwrap().len(),
            )
        })
        .collect();
    let ovo = emu.ovopark();
    let ovo_nos: BTreeSet<String> = ovo.keys().cloned().collect();
    assert_eq!(ovo_nos, expected, "Ovopark has exactly the stored orders");
    let mut resends = 0;
    for o in ovo.values() {
        assert_eq!(o["accepted"], 1, "{o}");
        resends += o["duplicates"].as_u64().unwrap();
        let no = o["order_no"].as_str().unwrap();
        assert_eq!(
            o["ipos"]["goods"].as_array().unwrap().len(),
            lines[no],
            "{o}"
        );
    }
    // Each outcome is committed as it arrives: a kill re-sends at most the requests it
    // interrupted, `concurrency` of them (the example config keeps the default).
    let all_kills = random_kills + failpoint_kills;
    per_kill(&emu, round + 1);
    assert!(
        resends <= in_flight * all_kills as u64,
        "{resends} Ovopark orders were sent again after {all_kills} kills"
    );
    let wdt = emu.wdt();
    let tids: BTreeSet<String> = wdt.keys().cloned().collect();
    assert_eq!(tids, expected, "Wangdiantong has exactly the stored orders");
    let mut updates = 0;
    for t in wdt.values() {
        updates += t["updates"].as_u64().unwrap_or(0);
        let tid = t["tid"].as_str().unwrap();
        assert_eq!(t["orders"].as_array().unwrap().len(), lines[tid], "{t}");
    }

    // The serial lane's losses: only what kills cut off, in at most one run per kill.
    let lost: Vec<u64> = serial
        .written
        .iter()
        .copied()
        .filter(|s| !ledger.receipts_captured.contains(s))
        .collect();
    assert!(
        runs(&lost) <= all_kills,
        "lost receipts {lost:?} form {} runs, more than the {all_kills} kills could cut off",
        runs(&lost)
    );
    for s in &last {
        assert!(!lost.contains(s));
    }
    let status = common::agent::cli_json(&l.config, &["status", "--json"]).unwrap();
    let market = status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "market")
        .unwrap()
        .clone();
    eprintln!(
        "crash loop figures: {random_kills} random SIGKILLs ({early_kills} early), {failpoint_kills} failpoint kills, \
         {faults_set} injected cloud faults, {} files ({} orders) all acknowledged, {} receipts printed, {} captured, \
         {} lost to kills in {} runs, {} partial receipts journalled as unreadable, {} orders checked in each cloud, \
         {resends} Ovopark resends answered 208003 (at most {worst_run} after one kill), {updates} WDT re-pushes, printer got {} bytes, {:.1} s",
        files.len(),
        folder_orders.len(),
        serial.written.len(),
        ledger.receipts_captured.len(),
        lost.len(),
        runs(&lost),
        market["unparsed"],
        expected.len(),
        printer.bytes.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}
