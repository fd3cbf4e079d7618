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
//! - READY=1 is sent only once the database is open and every source loop is running.
//! - WATCHDOG=1 is sent only while every loop's heartbeat is fresh.
//! - No input, network or device error ends the process; only a database that
//!   cannot be opened at start does (systemd restarts it).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{error, info, warn};

use crate::capture::folder::FolderWatch;
use crate::capture::live::SerialWatch;
use crate::config::{Config, SourceKind};
use crate::lifecycle::{Heartbeat, Heartbeats, Shutdown};
use crate::metrics;
use crate::outbox::{self, Outbox};
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

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub fn run(cfg: Config) -> anyhow::Result<()> {
    one_malloc_arena();
    let db = cfg.db_path();
    // Opening once here applies migrations and fails fast on an unusable database.
    let mut main_ob = Outbox::open(&db, &cfg.outbox, &cfg.destinations)
        .with_context(|| format!("cannot open the queue at {}", db.display()))?;
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
    // The live counters the loops report into and `/metrics` reads.
    let mut registry = metrics::Registry::default();

    for source in &cfg.sources {
        if !source.enabled {
            info!(
                "source {}: disabled in the config; not run",
                source.identity.name
            );
            continue;
        }
        let ob = Outbox::open(&db, &cfg.outbox, &cfg.destinations)
            .with_context(|| format!("cannot open the queue at {}", db.display()))?;
        let (name, work): (String, SourceLoop) = match &source.kind {
            SourceKind::Folder(folder) => {
                registry.source(&source.identity.name);
                let w = FolderWatch::new(source.identity.clone(), folder.clone(), ob);
                (
                    format!("folder:{}", source.identity.name),
                    Box::new(move |s, b| w.run(s, b)),
                )
            }
            SourceKind::Serial(t) => {
                let w = SerialWatch::new(
                    source.identity.clone(),
                    t.serial.clone(),
                    t.rules.clone(),
                    ob,
                )
                .with_metrics(registry.source(&source.identity.name));
                (
                    format!("serial:{}", source.identity.name),
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
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
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
    let mut wakes = Vec::new();
    for (dest, client) in clients(&cfg)? {
        let name = format!("upload:{dest}");
        let ob = Outbox::open(&db, &cfg.outbox, &cfg.destinations)
            .with_context(|| format!("cannot open the queue at {}", db.display()))?;
        let wake = Wake::new();
        wakes.push(wake.clone());
        let worker = Worker::new(client, ob, EngineConfig::default(), wake)
            .with_metrics(registry.dest(dest));
        let (sd, beat, done) = (shutdown.clone(), beats.register(&name), done_tx.clone());
        let tname = name.clone();
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                worker.run(&sd, &beat);
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
    info!("ready");

    wait_for_signal(&rt, signals, &beats, &notifier, watchdog, &wakes);
    let _ = std::fs::remove_file(&pid_file);

    info!("stopping: finishing the work in hand");
    notifier.stopping();
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
