//! The daemon (`tillrelay run`): opens the outbox, starts one loop per source and the
//! maintenance loop, tells systemd it is ready, and stops cleanly on SIGTERM/SIGINT.
//!
//! Threads, not tasks: every loop here does blocking work (SQLite, file reads, serial
//! ports, ureq), so each runs on its own OS thread; tokio only waits for signals and
//! drives the watchdog tick.
//!
//! Invariants:
//! - Shutdown: signal → [`Shutdown::trigger`] → each loop finishes the unit in hand
//!   (a transaction is never cut) and returns → joined within [`DRAIN_DEADLINE`]. A loop
//!   still busy at the deadline is abandoned; SQLite rolls its open transaction back.
//! - READY=1 is sent once every source loop is running (with or without a database).
//! - WATCHDOG=1 is sent only while every loop's heartbeat is fresh.
//! - No input, network, device or database error ends the process. **Printing never
//!   depends on the queue**: a queue file that cannot be opened is moved aside and a
//!   fresh one started; where none can be written (a read-only disk), serial taps
//!   forward all the same and every loop that needs the queue waits for it, trying
//!   to open it every [`REOPEN_EVERY`] (no restart loop).

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{error, info, warn};

use crate::capture::folder::FolderWatch;
use crate::capture::live::{Queue, REOPEN_EVERY, SerialWatch};
use crate::capture::stream::SourceStats;
use crate::capture::stream_source::StreamWatch;
use crate::config::{Config, SourceKind};
use crate::lifecycle::{Heartbeat, Heartbeats, Shutdown};
use crate::metrics;
use crate::outbox::{self, OnCommit, Opened, Opener, Outbox, Synchronous};
use crate::systemd::Notifier;
use crate::upload::Destination;
use crate::upload::engine::{EngineConfig, Wake, Worker};

/// A source's loop, ready to run on its own thread.
type SourceLoop = Box<dyn FnOnce(&Shutdown, &Heartbeat) + Send>;

/// The daemon's pid, in the state dir, for `tillrelay flush` (SIGUSR1).
pub const PID_FILE: &str = "tillrelay.pid";

/// How long stopping may take before loops are abandoned.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The longest an idle loop sleeps (without a watchdog; with one, a quarter of
/// its period if shorter).
const IDLE_WAKE: Duration = Duration::from_secs(20);

/// glibc gives each new thread its own malloc arena (up to 8 per core), and each
/// arena keeps what its thread freed. This daemon's threads mostly wait on I/O, so
/// they never contend for one arena, while a drain of both destinations (with
/// Ovopark's senders) left five partly empty arenas: peak RSS 18.5 MB with them,
/// 15.3 MB with one. Set before any thread starts.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter (glibc locks around it); no
    // memory is passed.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Test and bench hook: the upload workers' idle `poll` in milliseconds (default
/// 2 s). The tests set it to an hour, so only a capture's wake can deliver an order.
pub const POLL_ENV: &str = "TILLRELAY_UPLOAD_POLL_MS";

fn engine_config() -> EngineConfig {
    let mut cfg = EngineConfig::default();
    if let Some(ms) = std::env::var(POLL_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        cfg.poll = Duration::from_millis(ms);
    }
    cfg
}

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub fn run(cfg: Config) -> anyhow::Result<()> {
    one_malloc_arena();
    let db = cfg.db_path();
    let opener = Opener {
        path: db.clone(),
        cfg: cfg.outbox.clone(),
        destinations: cfg.destinations.clone(),
        on_commit: None,
    };
    // Opening once here applies migrations and sets a damaged file aside; a queue that
    // cannot be opened at all stops capture and uploads, never the process.
    let main_ob: Option<Outbox> = match outbox::open_or_set_aside(&opener) {
        Ok(Opened::Fine(ob)) => Some(ob),
        Ok(Opened::Fresh {
            outbox,
            aside,
            reason,
        }) => {
            error!(
                "the queue at {} could not be used ({reason}): it was moved aside to {} (kept, \
                 see docs/INSTALL.md to recover its orders) and a fresh queue started",
                db.display(),
                aside.display()
            );
            Some(outbox)
        }
        Err(e) => {
            error!(
                "cannot open the queue at {}: {e}. Printing goes on; capture and uploads wait \
                 and the queue is tried again every {}s",
                db.display(),
                REOPEN_EVERY.as_secs()
            );
            None
        }
    };
    info!(
        "tillrelay {} started: queue {}, {} source(s), destinations: {}",
        env!("CARGO_PKG_VERSION"),
        db.display(),
        cfg.sources.len(),
        if cfg.destinations.is_empty() {
            "none".to_string()
        } else {
            cfg.destinations.join(", ")
        }
    );

    // Signal handlers go in before READY, so a SIGTERM at any moment after start
    // takes the orderly path instead of the default (immediate death).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        let _guard = rt.enter();
        Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            usr1: signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?,
        }
    };

    let notifier = Notifier::from_env();
    // The watchdog timeout systemd set (twice the advised ping interval).
    let watchdog = notifier.watchdog_interval().map(|i| i * 2);
    for w in cfg.warnings() {
        warn!("config: {w}");
    }
    let shutdown = Shutdown::new();
    let beats = Heartbeats::new(watchdog.map_or(IDLE_WAKE, |w| (w / 4).min(IDLE_WAKE)));
    let (done_tx, done_rx) = mpsc::channel::<String>();
    let mut threads: Vec<(String, JoinHandle<()>)> = Vec::new();
    // One set of counters per network/device source, kept here for the stats
    // file `status` reads (and for metrics).
    let mut stream_stats: Vec<(String, Arc<SourceStats>)> = Vec::new();
    // The live counters the loops report into and `/metrics` reads.
    let mut registry = metrics::Registry::default();

    // The workers' wake handles exist before the sources start, so every capture
    // commit can wake them (capture knows nothing of upload: it gets a callback).
    let clients = clients(&cfg)?;
    let wakes: Vec<Wake> = clients.iter().map(|_| Wake::new()).collect();
    let on_commit: OnCommit = {
        let wakes = wakes.clone();
        Arc::new(move || {
            for w in &wakes {
                w.new_orders();
            }
        })
    };

    // Captures' queues (opened now or later) wake the workers on each commit.
    let capture_opener = Opener {
        on_commit: Some(on_commit),
        ..opener.clone()
    };
    for source in &cfg.sources {
        if !source.enabled {
            info!(
                "source {}: disabled in the config; not run",
                source.identity.name
            );
            continue;
        }
        let ob = main_ob.as_ref().map(|_| capture_opener.open());
        let (name, work): (String, SourceLoop) = match &source.kind {
            SourceKind::Folder(folder) => {
                registry.source(&source.identity.name);
                let (identity, folder, opener) = (
                    source.identity.clone(),
                    folder.clone(),
                    capture_opener.clone(),
                );
                (
                    format!("folder:{}", source.identity.name),
                    Box::new(move |s, b| {
                        // Files wait in the folder until the queue can be opened.
                        let ob = match ob {
                            Some(Ok(ob)) => ob,
                            _ => match wait_for_queue(&opener, s, b) {
                                Some(ob) => ob,
                                None => return,
                            },
                        };
                        FolderWatch::new(identity, folder, ob).run(s, b)
                    }),
                )
            }
            SourceKind::Serial(t) => {
                let queue = live_queue(ob, &capture_opener);
                let w = SerialWatch::new(
                    source.identity.clone(),
                    t.serial.clone(),
                    t.rules.clone(),
                    queue,
                )
                .with_metrics(registry.source(&source.identity.name));
                (
                    format!("serial:{}", source.identity.name),
                    Box::new(move |s, b| w.run(s, b)),
                )
            }
            SourceKind::Tcp(_) | SourceKind::Listen(_) | SourceKind::Device(_) => {
                let Some((spec, rules)) = source.stream_spec() else {
                    continue;
                };
                let stats = Arc::new(SourceStats::default());
                stream_stats.push((source.identity.name.clone(), stats.clone()));
                registry
                    .source(&source.identity.name)
                    .attach_stream(stats.clone());
                let queue = live_queue(ob, &capture_opener);
                let w =
                    StreamWatch::new(source.identity.clone(), spec, rules.clone(), queue, stats);
                (
                    format!("stream:{}", source.identity.name),
                    Box::new(move |s, b| w.run(s, b)),
                )
            }
        };
        let (sd, beat, done) = (shutdown.clone(), beats.register(&name), done_tx.clone());
        let tname = name.clone();
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                work(&sd, &beat);
                let _ = done.send(tname);
            })
            .context("cannot start a thread")?;
        threads.push((name, h));
    }

    {
        let name = "maintenance".to_string();
        let (sd, beat, done) = (shutdown.clone(), beats.register(&name), done_tx.clone());
        let outbox_cfg = cfg.outbox.clone();
        let tname = name.clone();
        let opener = opener.clone();
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let mut main_ob = match main_ob {
                    Some(ob) => ob,
                    None => match wait_for_queue(&opener, &sd, &beat) {
                        Some(ob) => ob,
                        None => {
                            let _ = done.send(tname);
                            return;
                        }
                    },
                };
                let mut last_prune: Option<Instant> = None;
                loop {
                    beat.beat();
                    if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                        match main_ob.prune(outbox::now(), &outbox_cfg) {
                            Ok((0, 0)) => {}
                            Ok((orders, raws)) => info!(
                                "retention: deleted {orders} delivered order(s), dropped {raws} raw capture(s)"
                            ),
                            Err(e) => warn!("retention failed (will retry): {e}"),
                        }
                        last_prune = Some(Instant::now());
                    }
                    if sd.wait(beat.max_sleep()) {
                        break;
                    }
                }
                let _ = done.send(tname);
            })
            .context("cannot start a thread")?;
        threads.push((name, h));
    }
    if !stream_stats.is_empty() {
        let name = "source-stats".to_string();
        let (sd, beat, done) = (shutdown.clone(), beats.register(&name), done_tx.clone());
        let state_dir = cfg.agent.state_dir.clone();
        let tname = name.clone();
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                crate::source_stats::run(&state_dir, &stream_stats, &sd, &beat);
                let _ = done.send(tname);
            })
            .context("cannot start a thread")?;
        threads.push((name, h));
    }
    let engine = engine_config();
    for ((dest, client), wake) in clients.into_iter().zip(wakes.iter().cloned()) {
        let name = format!("upload:{dest}");
        let ob = opener.open();
        let (sd, beat, done) = (shutdown.clone(), beats.register(&name), done_tx.clone());
        let tname = name.clone();
        let (opener, engine) = (opener.clone(), engine.clone());
        let metrics = registry.dest(dest);
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let ob = match ob {
                    Ok(ob) => Some(ob),
                    Err(_) => wait_for_queue(&opener, &sd, &beat),
                };
                if let Some(mut ob) = ob {
                    // A delivery outcome is committed without its own fsync: lost in a
                    // power cut, it only re-sends orders the clouds deduplicate
                    // (docs/GUARANTEES.md). On flash this halves what each order costs
                    // the card (docs/BENCHMARKS.md).
                    if let Err(e) = ob.set_synchronous(Synchronous::Normal) {
                        warn!("upload:{tname}: cannot relax the queue's sync (kept FULL): {e}");
                    }
                    Worker::new(client, ob, engine, wake)
                        .with_metrics(metrics)
                        .run(&sd, &beat);
                }
                let _ = done.send(tname);
            })
            .context("cannot start a thread")?;
        threads.push((name, h));
    }
    drop(done_tx);
    start_metrics(&cfg, registry, &beats, &shutdown);

    let pid_file = cfg.agent.state_dir.join(PID_FILE);
    if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
        warn!(
            "cannot write {}: {e} (tillrelay flush will not find this process)",
            pid_file.display()
        );
    }

    notifier.ready();
    notifier.status(&format!(
        "capturing from {} source(s); destinations: {}",
        cfg.sources.iter().filter(|s| s.enabled).count(),
        if cfg.destinations.is_empty() {
            "none".to_string()
        } else {
            cfg.destinations.join(", ")
        }
    ));
    info!("ready");

    wait_for_signal(&rt, signals, &beats, &notifier, watchdog, &wakes);
    let _ = std::fs::remove_file(&pid_file);

    info!("stopping: finishing the work in hand");
    notifier.stopping();
    notifier.status("stopping: finishing the work in hand");
    shutdown.trigger();
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let mut finished: Vec<String> = Vec::new();
    while finished.len() < threads.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(name) => finished.push(name),
            Err(_) => break,
        }
    }
    let (done, stuck): (Vec<_>, Vec<_>) = threads
        .into_iter()
        .partition(|(name, _)| finished.contains(name));
    // A loop that reported done has left its work; joining only waits for its return.
    for (_, h) in done {
        let _ = h.join();
    }
    if stuck.is_empty() {
        info!("stopped");
    } else {
        let names: Vec<_> = stuck.iter().map(|(n, _)| n.as_str()).collect();
        error!(
            "stopping: {} did not finish within {:?}; exiting anyway (open transactions roll back)",
            names.join(", "),
            DRAIN_DEADLINE
        );
    }
    Ok(())
}

/// A receipt source's queue: open, or to be opened again while printing goes on.
fn live_queue(ob: Option<outbox::Result<Outbox>>, opener: &Opener) -> Queue {
    match ob {
        Some(Ok(ob)) => Queue::Open(ob),
        Some(Err(e)) => Queue::waiting(opener.clone(), e.to_string()),
        None => Queue::waiting(opener.clone(), "not opened at start".into()),
    }
}

/// Opens the queue for a loop that cannot work without it, trying every
/// [`REOPEN_EVERY`] and beating meanwhile; `None` once shutdown was asked.
fn wait_for_queue(opener: &Opener, sd: &Shutdown, beat: &Heartbeat) -> Option<Outbox> {
    let mut last_error = String::new();
    loop {
        beat.beat();
        match opener.open() {
            Ok(ob) => {
                info!(
                    "the queue at {} is open: {}",
                    opener.path.display(),
                    "resuming"
                );
                return Some(ob);
            }
            Err(e) => {
                let e = e.to_string();
                if e != last_error {
                    warn!("waiting for the queue at {}: {e}", opener.path.display());
                    last_error = e;
                }
            }
        }
        if sd.wait(REOPEN_EVERY.min(beat.max_sleep())) {
            return None;
        }
    }
}

/// The metrics endpoint and the pusher, when configured. Neither is joined at
/// stop (neither holds work in hand) and neither can fail the start: a problem is
/// logged and the agent runs without it.
fn start_metrics(
    cfg: &Config,
    registry: metrics::Registry,
    beats: &Heartbeats,
    shutdown: &Shutdown,
) {
    let m = &cfg.metrics;
    if m.listen.is_none() && m.push_url.is_none() {
        return;
    }
    let shared = metrics::Metrics::new(
        cfg.agent.box_id.clone(),
        cfg.db_path(),
        cfg.outbox.max_size,
        registry,
        Some(beats.clone()),
    );
    if let Some(addr) = m.listen {
        if let Err(e) = metrics::server::start(addr, shared.clone(), shutdown.clone()) {
            error!("metrics: cannot start the endpoint: {e}");
        }
    }
    if let Some(url) = &m.push_url {
        let r = metrics::push::start(url.clone(), m.push_interval, shared, shutdown.clone());
        if let Err(e) = r {
            error!("metrics: cannot start pushing: {e}");
        }
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

/// One client per enabled destination (built as `check-config --online` builds them).
fn clients(cfg: &Config) -> anyhow::Result<Vec<(&'static str, Box<dyn Destination>)>> {
    crate::upload::clients(cfg.ovopark.as_ref(), cfg.wdt.as_ref(), &cfg.routes)
        .into_iter()
        .map(|(name, c)| c.map(|c| (name, c)).map_err(anyhow::Error::msg))
        .collect()
}

/// Blocks until SIGTERM or SIGINT, pinging the systemd watchdog meanwhile; SIGUSR1
/// wakes the upload workers (`tillrelay flush`).
fn wait_for_signal(
    rt: &tokio::runtime::Runtime,
    mut sig: Signals,
    beats: &Heartbeats,
    notifier: &Notifier,
    watchdog: Option<Duration>,
    wakes: &[Wake],
) {
    rt.block_on(async {
        let mut tick = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |w| w / 4));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = sig.term.recv() => { info!("SIGTERM received"); break; }
                _ = sig.int.recv() => { info!("SIGINT received"); break; }
                _ = sig.usr1.recv() => {
                    info!("SIGUSR1: sending what is pending now");
                    for w in wakes {
                        w.wake();
                    }
                }
                _ = tick.tick() => {
                    if let Some(w) = watchdog {
                        // A WDT request may take two timeouts (one timestamp retry):
                        // a loop counts as stuck only well past that.
                        let stale = beats.stale(w * 3 / 4);
                        if stale.is_empty() {
                            notifier.watchdog_ping();
                        } else {
                            error!("watchdog: not pinging, stuck loop(s): {}", stale.join(", "));
                        }
                    }
                }
            }
        }
    });
}
