//! The daemon (`tillrelay run`): opens the outbox, starts one loop per source and
//! destination and the maintenance loop (kept by `supervisor`), tells systemd it is
//! ready, reloads the configuration on SIGHUP, and stops cleanly on SIGTERM/SIGINT.
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
//! - Reload (SIGHUP): an invalid file is refused and changes nothing; the outcome is
//!   logged, written to `<state_dir>/reload.json` for `status`, and counted in
//!   `/metrics` (`tillrelay_config_*`).
//! - A pulled configuration (`crate::pull`) is applied on this same thread, through
//!   the same path: one reload at a time, whatever asked for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use log::{error, info, warn};

use crate::capture::live::REOPEN_EVERY;
use crate::config::Config;
use crate::lifecycle::{Heartbeats, Shutdown};
use crate::metrics;
use crate::outbox::{self, Opened, Opener, Outbox};
use crate::pidfile::PidFile;
use crate::supervisor::Supervisor;
use crate::systemd::Notifier;
use crate::upload::engine::EngineConfig;

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

    let from = cfg.agent.box_id_from;
    let line = format!("box id {:?}: {}", cfg.agent.box_id, from.describe());
    if from == metrics::settings::BoxIdFrom::Fixed {
        warn!("{line}");
    } else {
        info!("{line}");
    }

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
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
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
    // The live counters the loops report into and `/metrics` reads.
    let registry = metrics::Registry {
        reload: metrics::ReloadState::started(outbox::now()),
        running: running(&cfg),
        ..metrics::Registry::default()
    }
    .shared();
    let queue_ok = main_ob.is_some();
    let mut loops = Supervisor::new(
        cfg.clone(),
        shutdown.clone(),
        beats.clone(),
        opener,
        queue_ok,
        registry.clone(),
        engine_config(),
    );
    loops.start(main_ob)?;
    start_metrics(&cfg, registry.clone(), &beats, &shutdown);

    // Locked for the process's life: `flush`, `reload` and `status` signal or
    // trust only the pid the kernel says holds it (crate::pidfile).
    let pid_file = match PidFile::acquire(&cfg.agent.state_dir.join(crate::pidfile::FILE)) {
        Ok(f) => Some(f),
        Err(e) => {
            warn!("{e} (tillrelay flush and reload will not find this process)");
            None
        }
    };

    // The configuration pull: its offers arrive on this thread (the sender is kept
    // here too, so the channel never closes while the loop below runs).
    let applied = Arc::new(Mutex::new(cfg.origin.clone()));
    let (offer_tx, offers) = tokio::sync::mpsc::unbounded_channel();
    if let Some(p) = cfg.agent.pull.clone() {
        info!(
            "config pull: from {} every {}",
            crate::upload::http::url_without_query(&p.url),
            crate::settings::fmt_duration(p.poll)
        );
        let r = crate::pull::start(
            p,
            cfg.agent.state_dir.clone(),
            registry.clone(),
            applied.clone(),
            offer_tx.clone(),
            shutdown.clone(),
        );
        if let Err(e) = r {
            error!("config pull: cannot start: {e}");
        }
    }

    let mut reloads = Reloads {
        registry,
        seq: 0,
        running_since: outbox::now(),
        applied,
        offers,
    };
    // No record at start: the file exists only once a reload was asked (on a
    // nearly full disk, not even its one block is taken before it is needed).

    notifier.ready();
    notifier.status(&status_line(loops.config()));
    info!("ready");

    wait_for_signal(
        &rt,
        signals,
        &beats,
        &notifier,
        watchdog,
        &mut loops,
        &mut reloads,
    );
    drop(pid_file);
    drop(offer_tx);

    info!("stopping: finishing the work in hand");
    notifier.stopping();
    notifier.status("stopping: finishing the work in hand");
    let stuck = loops.stop_all();
    if stuck.is_empty() {
        info!("stopped");
    } else {
        error!(
            "stopping: {} did not finish within {:?}; exiting anyway (open transactions roll back)",
            stuck.join(", "),
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
    registry: metrics::SharedRegistry,
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
    hup: tokio::signal::unix::Signal,
}

/// Blocks until SIGTERM or SIGINT, pinging the systemd watchdog meanwhile; SIGUSR1
/// wakes the upload workers (`tillrelay flush`); SIGHUP reloads the configuration
/// (`tillrelay reload`).
fn wait_for_signal(
    rt: &tokio::runtime::Runtime,
    mut sig: Signals,
    beats: &Heartbeats,
    notifier: &Notifier,
    watchdog: Option<Duration>,
    loops: &mut Supervisor,
    reloads: &mut Reloads,
) {
    rt.block_on(async {
        let mut tick = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |w| w / 4));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // The stuck loops last told to systemd (its status line names them until
        // they beat again or the watchdog kills the process).
        let mut told_stuck: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                _ = sig.term.recv() => { info!("SIGTERM received"); break; }
                _ = sig.int.recv() => { info!("SIGINT received"); break; }
                _ = sig.usr1.recv() => {
                    info!("SIGUSR1: sending what is pending now");
                    loops.wake_all();
                }
                _ = sig.hup.recv() => {
                    info!("SIGHUP: reloading the configuration from {}", loops.config().path.display());
                    let outcome = loops.reload();
                    reload(loops, reloads, notifier, outcome);
                }
                Some(offer) = reloads.offers.recv() => {
                    apply_pulled(loops, reloads, notifier, offer);
                }
                _ = tick.tick() => {
                    if let Some(w) = watchdog {
                        // A WDT request may take two timeouts (one timestamp retry):
                        // a loop counts as stuck only well past that.
                        let stale = beats.stale(w * 3 / 4);
                        if stale.is_empty() {
                            if !told_stuck.is_empty() {
                                told_stuck.clear();
                                notifier.status(&status_line(loops.config()));
                            }
                            notifier.watchdog_ping();
                        } else {
                            let line = format!("watchdog: not pinging, stuck loop(s): {}", stale.join(", "));
                            error!("{line}");
                            if stale != told_stuck {
                                notifier.status(&line);
                                told_stuck = stale;
                            }
                        }
                    }
                }
            }
        }
    });
}

/// The STATUS line systemd shows.
fn status_line(cfg: &Config) -> String {
    format!(
        "capturing from {} source(s); destinations: {}",
        cfg.sources.iter().filter(|s| s.enabled).count(),
        if cfg.destinations.is_empty() {
            "none".to_string()
        } else {
            cfg.destinations.join(", ")
        }
    )
}

/// The outcome of each load of the configuration, where `status` (the record file)
/// and `/metrics` (the registry) read it.
struct Reloads {
    registry: metrics::SharedRegistry,
    seq: u64,
    running_since: i64,
    /// What runs now, as the pull compares a served file to it.
    applied: Arc<Mutex<crate::config::Origin>>,
    offers: tokio::sync::mpsc::UnboundedReceiver<crate::pull::Offer>,
}

/// What `/metrics` shows of the running configuration.
fn running(cfg: &Config) -> metrics::Running {
    metrics::Running {
        serial: cfg.origin.serial,
        hash: cfg.origin.hash.clone(),
        origin: cfg.origin.kind(),
    }
}

/// A verified pulled file: merged over the local one, checked and applied as a
/// reload is; kept on disk once applied. The pull thread gets the outcome.
fn apply_pulled(
    loops: &mut Supervisor,
    reloads: &mut Reloads,
    notifier: &Notifier,
    offer: crate::pull::Offer,
) {
    let env = offer.envelope;
    info!("config pull: applying serial {}", env.serial);
    let outcome = crate::pull::candidate(&loops.config().path, &env).and_then(|c| loops.apply(c));
    let answer = match &outcome {
        Ok(a) => {
            if let Err(e) = crate::pull::keep(&loops.config().agent.state_dir, &env) {
                warn!(
                    "config pull: serial {} applied but not kept ({e}): a restart runs the one kept before",
                    env.serial
                );
            }
            Ok(format!(
                "serial {} applied ({} change(s))",
                env.serial,
                a.changes.len()
            ))
        }
        Err(why) => Err(why.clone()),
    };
    reload(loops, reloads, notifier, outcome);
    let _ = offer.answer.send(answer);
}

impl Reloads {
    fn write(
        &self,
        cfg: &Config,
        ok: bool,
        message: String,
        changes: &[String],
        needs_restart: &[String],
    ) {
        let r = crate::reload::Record {
            pid: std::process::id(),
            seq: self.seq,
            at: outbox::now(),
            ok,
            config: cfg.path.clone(),
            message,
            changes: changes.to_vec(),
            needs_restart: needs_restart.to_vec(),
            running_since: self.running_since,
        };
        if let Err(e) = crate::reload::write(&cfg.agent.state_dir, &r) {
            warn!(
                "cannot write {} (status will not show the last reload): {e}",
                crate::reload::path(&cfg.agent.state_dir).display()
            );
        }
    }
}

/// SIGHUP: the file read again and applied, or refused with the running
/// configuration kept; either way logged, recorded for `status` and counted.
fn reload(
    loops: &mut Supervisor,
    reloads: &mut Reloads,
    notifier: &Notifier,
    outcome: Result<crate::supervisor::Applied, String>,
) {
    reloads.seq += 1;
    let now = outbox::now();
    match outcome {
        Ok(applied) => {
            reloads.running_since = now;
            *lock(&reloads.applied) = loops.config().origin.clone();
            lock(&reloads.registry).running = running(loops.config());
            for c in &applied.changes {
                info!("reload: {c}");
            }
            for k in &applied.needs_restart {
                warn!("reload: {k} changed in the file: needs a restart (the running value stays)");
            }
            for w in loops.config().warnings() {
                warn!("config: {w}");
            }
            let message = if applied.changes.is_empty() {
                "applied: no source or destination changed".to_string()
            } else {
                format!("applied: {} change(s)", applied.changes.len())
            };
            info!("reload {message}");
            lock(&reloads.registry).reload.record(true, now);
            reloads.write(
                loops.config(),
                true,
                message,
                &applied.changes,
                &applied.needs_restart,
            );
            notifier.status(&status_line(loops.config()));
        }
        Err(why) => {
            error!("reload refused, the running configuration stays: {why}");
            lock(&reloads.registry).reload.record(false, now);
            reloads.write(loops.config(), false, why, &[], &[]);
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
