//! The daemon's running loops, kept in a table by source and destination name with
//! the settings each was started with, so that a reload (`SIGHUP`) can stop, start
//! and restart one without touching the others.
//!
//! Every loop runs on its own thread with its own stop handle, a child of the
//! process's [`Shutdown`]: stopping the process stops them all, a reload stops only
//! the ones it replaces. A reload ([`Supervisor::reload`]):
//! 1. reads and validates the file as `check-config` does; an invalid file is refused
//!    and nothing changes;
//! 2. builds the clients of the destinations it starts (one that cannot be built
//!    refuses the reload, before anything stopped);
//! 3. stops the sources removed or changed (when the set of enabled destinations
//!    changes, every source but the network and device ones: each source's queue
//!    connection creates one delivery row per enabled destination), then the destinations removed or changed, each
//!    finishing the unit in hand as at shutdown (a transaction is never cut; a file
//!    not acknowledged stays in the folder; bytes not read stay in the device or the
//!    kernel), joined within [`DRAIN_DEADLINE`];
//! 4. starts the destinations added or changed, hands the running network and
//!    device sources a queue for the destinations enabled now (their connections
//!    stay open; one that does not take it within [`DRAIN_DEADLINE`] is
//!    restarted), then starts the sources added or changed.
//!
//! Invariants:
//! - A loop whose settings did not change keeps running untouched (a print proxy's
//!   POS connections stay open while another source changes).
//! - A source and its replacement never run at once (unless the old one is stuck
//!   past the deadline: then the ledger and `(source, order_no)` still keep every
//!   order once).
//! - Settings the running daemon cannot change (`reload::fixed_changes`) keep their
//!   running values and are named in the log: they need a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{error, info, warn};

use crate::capture::folder::FolderWatch;
use crate::capture::live::{Queue, REOPEN_EVERY, SerialWatch};
use crate::capture::stream::SourceStats;
use crate::capture::stream_source::{Requeue, StreamWatch};
use crate::config::{Config, Source, SourceKind};
use crate::daemon::DRAIN_DEADLINE;
use crate::lifecycle::{Heartbeat, Heartbeats, Shutdown};
use crate::metrics::SharedRegistry;
use crate::outbox::{self, OnCommit, Opener, Outbox, Synchronous};
use crate::reload;
use crate::upload::Destination;
use crate::upload::engine::{EngineConfig, Wake, Worker};

/// How often retention runs: hourly, or a tenth of `retention` (at least every second)
/// when that is shorter, so an order is deleted within ~10 % past its retention
/// whatever the setting (a short retention is how `bench/flow.py` keeps a queue in
/// the steady state a box reaches after its first week: as many orders deleted as
/// captured).
fn prune_every(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// One loop on its thread.
struct Running {
    thread: String,
    /// Its settings when started (`reload::source_fingerprint`, `dest_fingerprint`).
    fingerprint: u64,
    stop: Shutdown,
    beat: Heartbeat,
    handle: JoinHandle<()>,
    /// A stream source's handle for a new queue (destinations changed).
    requeue: Option<Arc<Requeue>>,
}

/// What an applied reload did.
#[derive(Debug, Default)]
pub struct Applied {
    pub changes: Vec<String>,
    pub needs_restart: Vec<String>,
}

pub struct Supervisor {
    /// The configuration running now.
    cfg: Config,
    shutdown: Shutdown,
    beats: Heartbeats,
    /// The queue as every loop opens it (`destinations`: the enabled ones now).
    opener: Opener,
    /// Whether the queue could be opened at start (else loops wait for it at once).
    queue_ok: bool,
    /// Each destination's wake handle, woken by every capture commit.
    wakes: Arc<Mutex<BTreeMap<String, Wake>>>,
    registry: SharedRegistry,
    stream_stats: crate::source_stats::Live,
    engine: EngineConfig,
    sources: BTreeMap<String, Running>,
    dests: BTreeMap<String, Running>,
    /// Maintenance and the stats writer: they run until the process stops.
    others: Vec<Running>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Supervisor {
    pub fn new(
        cfg: Config,
        shutdown: Shutdown,
        beats: Heartbeats,
        opener: Opener,
        queue_ok: bool,
        registry: SharedRegistry,
        engine: EngineConfig,
    ) -> Supervisor {
        Supervisor {
            cfg,
            shutdown,
            beats,
            opener,
            queue_ok,
            wakes: Arc::default(),
            registry,
            stream_stats: Arc::default(),
            engine,
            sources: BTreeMap::new(),
            dests: BTreeMap::new(),
            others: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Starts every loop of the configuration; `main_ob` is the queue opened at start
    /// (maintenance keeps it).
    pub fn start(&mut self, main_ob: Option<Outbox>) -> anyhow::Result<()> {
        let clients = build_clients(&self.cfg)?;
        for (name, client) in clients {
            self.start_dest(name, client)?;
        }
        for source in self.cfg.sources.clone() {
            if !source.enabled {
                info!(
                    "source {}: disabled in the config; not run",
                    source.identity.name
                );
                continue;
            }
            self.start_source(&source)?;
        }
        self.start_maintenance(main_ob)?;
        let (state_dir, live) = (self.cfg.agent.state_dir.clone(), self.stream_stats.clone());
        let r = self.spawn("source-stats".into(), 0, move |sd, beat| {
            crate::source_stats::run(&state_dir, &live, sd, beat)
        })?;
        self.others.push(r);
        Ok(())
    }

    /// Wakes every upload worker (SIGUSR1).
    pub fn wake_all(&self) {
        for w in lock(&self.wakes).values() {
            w.wake();
        }
    }

    /// The queue as capture opens it: each commit wakes the workers running then.
    fn capture_opener(&self) -> Opener {
        let wakes = self.wakes.clone();
        let on_commit: OnCommit = Arc::new(move || {
            for w in lock(&wakes).values() {
                w.new_orders();
            }
        });
        Opener {
            on_commit: Some(on_commit),
            ..self.opener.clone()
        }
    }

    fn spawn(
        &self,
        name: String,
        fingerprint: u64,
        work: impl FnOnce(&Shutdown, &Heartbeat) + Send + 'static,
    ) -> anyhow::Result<Running> {
        let stop = self.shutdown.child();
        let beat = self.beats.register(&name);
        let (sd, b) = (stop.clone(), beat.clone());
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || work(&sd, &b))
            .context("cannot start a thread")?;
        Ok(Running {
            thread: name,
            fingerprint,
            stop,
            beat,
            handle,
            requeue: None,
        })
    }

    fn start_source(&mut self, source: &Source) -> anyhow::Result<()> {
        let opener = self.capture_opener();
        let ob = self.queue_ok.then(|| opener.open());
        let name = source.identity.name.clone();
        let fp = reload::source_fingerprint(&self.cfg, source);
        let metrics = lock(&self.registry).source(&name);
        let running = match &source.kind {
            SourceKind::Folder(folder) => {
                let (identity, folder) = (source.identity.clone(), folder.clone());
                self.spawn(format!("folder:{name}"), fp, move |s, b| {
                    // Files wait in the folder until the queue can be opened.
                    let ob = match ob {
                        Some(Ok(ob)) => ob,
                        _ => match wait_for_queue(&opener, s, b) {
                            Some(ob) => ob,
                            None => return,
                        },
                    };
                    FolderWatch::new(identity, folder, ob).run(s, b)
                })?
            }
            SourceKind::Serial(t) => {
                let queue = live_queue(ob, &opener);
                let w = SerialWatch::new(
                    source.identity.clone(),
                    t.serial.clone(),
                    t.rules.clone(),
                    queue,
                )
                .with_metrics(metrics);
                self.spawn(format!("serial:{name}"), fp, move |s, b| w.run(s, b))?
            }
            SourceKind::Tcp(_) | SourceKind::Listen(_) | SourceKind::Device(_) => {
                let Some((spec, rules)) = source.stream_spec() else {
                    return Ok(());
                };
                let stats = Arc::new(SourceStats::default());
                {
                    let mut live = lock(&self.stream_stats);
                    live.retain(|(n, _)| *n != name);
                    live.push((name.clone(), stats.clone()));
                }
                metrics.attach_stream(stats.clone());
                let queue = live_queue(ob, &opener);
                let w =
                    StreamWatch::new(source.identity.clone(), spec, rules.clone(), queue, stats);
                let requeue = w.requeue();
                let mut r = self.spawn(format!("stream:{name}"), fp, move |s, b| w.run(s, b))?;
                r.requeue = Some(requeue);
                r
            }
        };
        self.sources.insert(name, running);
        Ok(())
    }

    fn start_dest(
        &mut self,
        dest: &'static str,
        client: Box<dyn Destination>,
    ) -> anyhow::Result<()> {
        let name = format!("upload:{dest}");
        let fp = reload::dest_fingerprint(&self.cfg, dest).unwrap_or_default();
        let ob = self.opener.open();
        let (opener, engine) = (self.opener.clone(), self.engine.clone());
        let metrics = lock(&self.registry).dest(dest);
        let wake = lock(&self.wakes)
            .entry(dest.to_string())
            .or_default()
            .clone();
        let tname = name.clone();
        let running = self.spawn(name, fp, move |sd, beat| {
            let ob = match ob {
                Ok(ob) => Some(ob),
                Err(_) => wait_for_queue(&opener, sd, beat),
            };
            if let Some(mut ob) = ob {
                // A delivery outcome is committed without its own fsync: lost in a
                // power cut, it only re-sends orders the clouds deduplicate
                // (docs/GUARANTEES.md). On flash this halves what each order costs
                // the card (docs/BENCHMARKS.md).
                if let Err(e) = ob.set_synchronous(Synchronous::Normal) {
                    warn!("{tname}: cannot relax the queue's sync (kept FULL): {e}");
                }
                Worker::new(client, ob, engine, wake)
                    .with_metrics(metrics)
                    .run(sd, beat);
            }
        })?;
        self.dests.insert(dest.to_string(), running);
        Ok(())
    }

    fn start_maintenance(&mut self, main_ob: Option<Outbox>) -> anyhow::Result<()> {
        let outbox_cfg = self.cfg.outbox.clone();
        let opener = self.opener.clone();
        let r = self.spawn("maintenance".into(), 0, move |sd, beat| {
            let mut main_ob = match main_ob {
                Some(ob) => ob,
                None => match wait_for_queue(&opener, sd, beat) {
                    Some(ob) => ob,
                    None => return,
                },
            };
            let every = prune_every(outbox_cfg.retention.min(outbox_cfg.raw_retention));
            let mut last_prune: Option<Instant> = None;
            loop {
                beat.beat();
                if last_prune.is_none_or(|t| t.elapsed() >= every) {
                    match main_ob.prune(outbox::now(), &outbox_cfg) {
                        Ok((0, 0)) => {}
                        Ok((orders, raws)) => info!(
                            "retention: deleted {orders} delivered order(s), dropped {raws} raw capture(s)"
                        ),
                        Err(e) => warn!("retention failed (will retry): {e}"),
                    }
                    last_prune = Some(Instant::now());
                }
                if sd.wait(beat.max_sleep().min(every)) {
                    break;
                }
            }
        })?;
        self.others.push(r);
        Ok(())
    }

    /// Re-reads the configuration file and applies what changed; `Err` is the
    /// refusal (the running configuration stays), worded as `check-config` words it.
    pub fn reload(&mut self) -> Result<Applied, String> {
        let new = crate::pull::load_effective(&self.cfg.path).map_err(|e| e.to_string())?;
        self.apply(new)
    }

    /// Applies `new` (validated already: the file re-read, or a pulled one merged
    /// over it) as [`Supervisor::reload`] does.
    pub fn apply(&mut self, new: Config) -> Result<Applied, String> {
        let mut applied = Applied {
            needs_restart: reload::fixed_changes(&self.cfg, &new),
            ..Applied::default()
        };
        let new = reload::keep_fixed(&self.cfg, new);

        // Destinations first: their clients are built before anything stops.
        let mut dest_names: Vec<String> = self.dests.keys().cloned().collect();
        dest_names.extend(new.destinations.iter().cloned());
        dest_names.sort();
        dest_names.dedup();
        let mut dest_stop = Vec::new();
        let mut dest_start = Vec::new();
        for d in &dest_names {
            let now = reload::dest_fingerprint(&new, d);
            match (self.dests.get(d).map(|r| r.fingerprint), now) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), Some(_)) => {
                    applied
                        .changes
                        .push(format!("destination {d} changed: restarted"));
                    dest_stop.push(d.clone());
                    dest_start.push(d.clone());
                }
                (Some(_), None) => {
                    applied
                        .changes
                        .push(format!("destination {d} disabled: stopped"));
                    dest_stop.push(d.clone());
                }
                (None, Some(_)) => {
                    applied
                        .changes
                        .push(format!("destination {d} enabled: started"));
                    dest_start.push(d.clone());
                }
                (None, None) => {}
            }
        }
        let mut clients = Vec::new();
        for (name, c) in crate::upload::clients(new.ovopark.as_ref(), new.wdt.as_ref(), &new.routes)
        {
            if dest_start.iter().any(|d| d == name) {
                clients.push((name, c.map_err(|e| format!("destination {name}: {e}"))?));
            }
        }

        // Sources: all restart when the set of destinations changes (each one's
        // queue connection creates a delivery row per enabled destination).
        let dests_changed = self.cfg.destinations != new.destinations;
        let mut source_stop = Vec::new();
        let mut source_start = Vec::new();
        let mut source_requeue = Vec::new();
        for (name, r) in &self.sources {
            match new.source(name).filter(|s| s.enabled) {
                None => {
                    let how = if new.source(name).is_some() {
                        "disabled"
                    } else {
                        "removed"
                    };
                    applied
                        .changes
                        .push(format!("source {name} {how}: stopped"));
                    source_stop.push(name.clone());
                }
                Some(s) if reload::source_fingerprint(&new, s) != r.fingerprint => {
                    applied
                        .changes
                        .push(format!("source {name} changed: restarted"));
                    source_stop.push(name.clone());
                }
                // A stream source is handed its new queue below: its
                // connections stay open.
                Some(_) if dests_changed && r.requeue.is_some() => {
                    source_requeue.push(name.clone());
                }
                Some(_) if dests_changed => {
                    applied.changes.push(format!(
                        "source {name} restarted: the enabled destinations changed"
                    ));
                    source_stop.push(name.clone());
                }
                Some(_) => {}
            }
        }
        for s in new.sources.iter().filter(|s| s.enabled) {
            let name = &s.identity.name;
            if !self.sources.contains_key(name) {
                applied
                    .changes
                    .push(format!("source {name} added: started"));
            }
            if !self.sources.contains_key(name) || source_stop.contains(name) {
                source_start.push(s.clone());
            }
        }

        let stopping: Vec<Running> = source_stop
            .iter()
            .filter_map(|n| self.sources.remove(n))
            .collect();
        self.stop_some(stopping);
        {
            let mut live = lock(&self.stream_stats);
            live.retain(|(n, _)| !source_stop.contains(n));
        }
        let stopping: Vec<Running> = dest_stop
            .iter()
            .filter_map(|n| self.dests.remove(n))
            .collect();
        self.stop_some(stopping);
        {
            let mut wakes = lock(&self.wakes);
            wakes.retain(|n, _| new.destinations.contains(n));
        }

        log::set_max_level(new.agent.log_level);
        self.opener.destinations = new.destinations.clone();
        self.cfg = new;
        let mut failed = Vec::new();
        for (name, client) in clients {
            if let Err(e) = self.start_dest(name, client) {
                failed.push(format!("destination {name}: {e:#}"));
            }
        }
        // Stream sources journal for the destinations enabled now, without a
        // restart; one that does not take its new queue in time is restarted.
        for name in &source_requeue {
            let Some(requeue) = self.sources.get(name).and_then(|r| r.requeue.clone()) else {
                continue;
            };
            if requeue.hand(self.capture_opener(), DRAIN_DEADLINE) {
                applied.changes.push(format!(
                    "source {name} kept running (connections open): journals for the \
                     destinations enabled now"
                ));
                continue;
            }
            applied.changes.push(format!(
                "source {name} restarted: the enabled destinations changed"
            ));
            if let Some(r) = self.sources.remove(name) {
                self.stop_some(vec![r]);
            }
            if let Some(s) = self.cfg.source(name).cloned() {
                source_start.push(s);
            }
        }
        for s in &source_start {
            if let Err(e) = self.start_source(s) {
                failed.push(format!("source {}: {e:#}", s.identity.name));
            }
        }
        for f in failed {
            error!("reload: could not start {f}");
            applied.changes.push(format!("FAILED to start {f}"));
        }
        Ok(applied)
    }

    /// Stops these loops, each finishing the unit in hand, and waits for them up to
    /// [`DRAIN_DEADLINE`]; a loop still busy then is left to finish alone.
    fn stop_some(&self, loops: Vec<Running>) {
        for r in &loops {
            r.stop.trigger();
        }
        let stuck = join_within(loops, &self.beats);
        if !stuck.is_empty() {
            error!(
                "reload: {} did not stop within {:?}; its replacement starts anyway",
                stuck.join(", "),
                DRAIN_DEADLINE
            );
        }
    }

    /// Stops every loop (the process is stopping) and waits up to the drain
    /// deadline; returns the names of the loops still busy then.
    pub fn stop_all(mut self) -> Vec<String> {
        self.shutdown.trigger();
        let mut all: Vec<Running> = std::mem::take(&mut self.others);
        all.extend(std::mem::take(&mut self.sources).into_values());
        all.extend(std::mem::take(&mut self.dests).into_values());
        join_within(all, &self.beats)
    }
}

/// Joins the loops that finish within [`DRAIN_DEADLINE`] (forgetting their
/// heartbeats); returns the names of the others, which are abandoned.
fn join_within(loops: Vec<Running>, beats: &Heartbeats) -> Vec<String> {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let mut left = loops;
    loop {
        let (done, busy): (Vec<_>, Vec<_>) = left.into_iter().partition(|r| r.handle.is_finished());
        for r in done {
            beats.unregister(&r.beat);
            let _ = r.handle.join();
        }
        left = busy;
        if left.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for r in &left {
        beats.unregister(&r.beat);
    }
    left.into_iter().map(|r| r.thread).collect()
}

/// One client per enabled destination (built as `check-config --online` builds them).
fn build_clients(cfg: &Config) -> anyhow::Result<Vec<(&'static str, Box<dyn Destination>)>> {
    crate::upload::clients(cfg.ovopark.as_ref(), cfg.wdt.as_ref(), &cfg.routes)
        .into_iter()
        .map(|(name, c)| c.map(|c| (name, c)).map_err(anyhow::Error::msg))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_runs_hourly_or_at_a_tenth_of_a_short_retention() {
        let s = Duration::from_secs;
        assert_eq!(prune_every(s(7 * 86400)), s(3600));
        assert_eq!(prune_every(s(36000)), s(3600));
        assert_eq!(prune_every(s(600)), s(60));
        assert_eq!(prune_every(s(20)), s(2));
        assert_eq!(prune_every(s(0)), s(1));
    }
}
