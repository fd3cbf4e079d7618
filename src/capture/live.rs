//! The serial source loop: the tap's raw chunks → receipts → journal + orders;
//! and [`Journal`], the receipt → journal + orders step every receipt source shares.
//!
//! Invariants:
//! - **A receipt counts as captured once its raw bytes are committed**: each receipt
//!   is committed as one capture unit (its masked raw bytes, and its order if the
//!   template read one) in one transaction. A receipt the template cannot read is
//!   committed all the same, as `unparsed` with the reason, for `reparse`.
//! - Printing never waits for any of this: the tap forwards to the printer on its own
//!   threads; this loop only consumes the capture channel.
//! - A full queue (size cap or disk) keeps receipts in memory, bounded by
//!   [`MAX_HELD_BYTES`], and retries; the loop never exits because of the device,
//!   the input or the database. That happens only at the queue's true limit: at
//!   the cap a printed receipt first goes into its reserve (`outbox`, issue #24).
//!   What is still held at the stop is written to `unjournalled/` beside the queue,
//!   one file per receipt, so it outlives the process.
//! - **Printing never depends on the queue**: the loop starts (and so does the tap)
//!   even when no database can be opened (a read-only or damaged disk); receipts are
//!   then held the same way while the queue is opened again every [`REOPEN_EVERY`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use sha1::{Digest, Sha1};

use super::counters::SourceMetrics;
use crate::capture::receipt::{Pipeline, ReceiptRules};
use crate::capture::segment::Receipt;
use crate::capture::serial::{SerialConfig, Tap, TapOptions};
use crate::capture::template::Parsed;
use crate::lifecycle::{Heartbeat, Shutdown};
use crate::outbox::{Capture, CaptureKind, MALFORMED_COMMANDS, Opener, Outbox, OutboxError};
use crate::stamp::{Identity, stamp};

/// Receipts held in memory while the queue is full, at most this many bytes; past
/// it the oldest held receipt is dropped and counted (a full disk for hours).
pub const MAX_HELD_BYTES: usize = 8 << 20;

const RETRY_FULL: Duration = Duration::from_secs(5);

/// How often a loop without a database tries to open it again.
pub const REOPEN_EVERY: Duration = Duration::from_secs(10);

/// The queue of a capture loop: open, or to be opened again (issue #15: a database
/// that cannot be opened must not stop the printer).
pub enum Queue {
    Open(Outbox),
    Waiting {
        opener: Opener,
        next_try: Instant,
        why: String,
    },
}

impl Queue {
    /// A queue that could not be opened at start, for `why`.
    pub fn waiting(opener: Opener, why: String) -> Queue {
        Queue::Waiting {
            opener,
            next_try: Instant::now() + REOPEN_EVERY,
            why,
        }
    }

    /// The open queue, trying to open it when due; `None` while none can be opened.
    pub fn get(&mut self, source: &str) -> Option<&mut Outbox> {
        if let Queue::Waiting {
            opener,
            next_try,
            why,
        } = self
        {
            if Instant::now() < *next_try {
                return None;
            }
            match opener.open() {
                Ok(ob) => {
                    info!("source {source}: the queue could be opened again; capture resumes");
                    *self = Queue::Open(ob);
                }
                Err(e) => {
                    let e = e.to_string();
                    if e != *why {
                        error!("source {source}: the queue still cannot be opened: {e}");
                        *why = e;
                    }
                    *next_try = Instant::now() + REOPEN_EVERY;
                    return None;
                }
            }
        }
        match self {
            Queue::Open(ob) => Some(ob),
            Queue::Waiting { .. } => None,
        }
    }

    /// The directory of the queue's file (open or still to be opened).
    pub fn dir(&self) -> Option<std::path::PathBuf> {
        let path = match self {
            Queue::Open(ob) => ob.path()?,
            Queue::Waiting { opener, .. } => opener.path.clone(),
        };
        path.parent().map(|p| p.to_path_buf())
    }
}

pub struct SerialWatch {
    serial: SerialConfig,
    journal: Journal,
    /// Where the tap's counters are shown (`/metrics`), if anywhere.
    metrics: Option<Arc<SourceMetrics>>,
}

impl SerialWatch {
    /// A loop for the serial source `source` (its identity stamps its orders),
    /// tapping `serial` and reading receipts by `rules`, into `outbox` (or waiting
    /// for one: the tap forwards all the same).
    pub fn new(
        source: Identity,
        serial: SerialConfig,
        rules: ReceiptRules,
        outbox: Queue,
    ) -> SerialWatch {
        SerialWatch {
            serial,
            journal: Journal::new(source, rules, outbox),
            metrics: None,
        }
    }

    /// The loop showing its tap's counters through `m` (the daemon's registry).
    pub fn with_metrics(mut self, m: Arc<SourceMetrics>) -> SerialWatch {
        self.metrics = Some(m);
        self
    }

    /// Runs until shutdown: the tap, receipt assembly, and commits.
    pub fn run(mut self, shutdown: &Shutdown, beat: &Heartbeat) {
        let stop = Arc::new(AtomicBool::new(false));
        let (tap, mut rx) = match Tap::start(
            &self.journal.source.name,
            &self.serial,
            TapOptions::default(),
            stop.clone(),
        ) {
            Ok(t) => t,
            Err(e) => {
                // Tap::start only fails to spawn threads; devices are (re)opened inside.
                error!(
                    "source {}: cannot start the serial tap: {e}",
                    self.journal.source.name
                );
                return;
            }
        };
        if let Some(m) = &self.metrics {
            m.attach_tap(tap.stats());
        }
        let notify = Arc::new(tokio::sync::Notify::new());
        {
            let (stop, notify) = (stop.clone(), notify.clone());
            shutdown.on_trigger(move || {
                stop.store(true, Ordering::SeqCst);
                notify.notify_one();
            });
        }
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                error!("source {}: {e}", self.journal.source.name);
                stop.store(true, Ordering::SeqCst);
                tap.join();
                return;
            }
        };
        let mut pipeline = Pipeline::new(&self.journal.rules);
        let mut out = Vec::new();
        rt.block_on(async {
            loop {
                beat.beat();
                let now = Instant::now();
                let wake = pipeline
                    .deadline()
                    .unwrap_or(now + beat.max_sleep())
                    .min(now + beat.max_sleep());
                let wake = self.journal.retry_at(now).map_or(wake, |r| wake.min(r));
                tokio::select! {
                    chunk = rx.recv() => match chunk {
                        Some(c) => pipeline.feed(&c.bytes, Some(c.at), &mut out),
                        None => break, // the tap stopped (shutdown)
                    },
                    _ = tokio::time::sleep_until(wake.into()) => {
                        pipeline.tick(Instant::now(), &mut out);
                    }
                    _ = notify.notified() => {}
                }
                self.note_malformed(&mut pipeline);
                for r in out.drain(..) {
                    self.journal.hold(r);
                }
                self.journal.commit_held();
                if shutdown.is_triggered() {
                    // Drain what the tap already handed over, then stop.
                    while let Ok(c) = rx.try_recv() {
                        pipeline.feed(&c.bytes, Some(c.at), &mut out);
                    }
                    break;
                }
            }
        });
        pipeline.finish(&mut out);
        self.note_malformed(&mut pipeline);
        for r in out.drain(..) {
            self.journal.hold(r);
        }
        self.journal.commit_held();
        self.journal.report_left();
        stop.store(true, Ordering::SeqCst);
        tap.join();
        debug!("source {}: serial loop stopped", self.journal.source.name);
    }
}

impl SerialWatch {
    /// Logs the first command the tap's decoder could not follow, once (each
    /// is counted with its receipt: `malformed_commands` in `status`).
    fn note_malformed(&self, pipeline: &mut Pipeline) {
        if let Some(note) = pipeline.malformed_note() {
            warn!(
                "source {}: a command the decoder cannot follow: {note} (said once; counted \
                 as malformed_commands in status)",
                self.journal.source.name
            );
        }
    }
}

/// Receipts on their way into the journal, shared by every receipt source
/// (the serial tap here, network and device streams in
/// [`super::stream_source`]): holds them while the queue is full (bounded by
/// [`MAX_HELD_BYTES`]) and while there is no queue, and commits each with its order
/// in one transaction.
pub struct Journal {
    pub source: Identity,
    pub rules: ReceiptRules,
    outbox: Queue,
    held: VecDeque<Receipt>,
    held_bytes: usize,
    dropped: u64,
}

impl Journal {
    pub fn new(source: Identity, rules: ReceiptRules, outbox: Queue) -> Journal {
        Journal {
            source,
            rules,
            outbox,
            held: VecDeque::new(),
            held_bytes: 0,
            dropped: 0,
        }
    }

    /// Journals into `outbox` from now on (a reload changed the enabled
    /// destinations: the source goes on, its queue connection is replaced).
    /// Receipts held stay held, for the new queue.
    pub fn set_queue(&mut self, outbox: Queue) {
        self.outbox = outbox;
    }

    /// When the loop should wake to retry held receipts, if any are held.
    pub fn retry_at(&self, now: Instant) -> Option<Instant> {
        (!self.held.is_empty()).then_some(now + RETRY_FULL)
    }

    /// At the end of a loop: what could not be journalled (the queue's true
    /// limit: its receipt reserve full of pending orders, a full disk, or no
    /// queue at all) is written beside the queue, one file per receipt, in
    /// `unjournalled/` (a folder source with `format = "receipt"`, or `tillrelay
    /// parse`, reads them), so that it outlives the process; and said.
    pub fn report_left(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let n = self.held.len();
        let name = self.source.name.clone();
        match self.spill() {
            Ok(dir) => error!(
                "source {name}: stopping with {n} receipt(s) not journalled (the queue is full \
                 or cannot be written); their raw bytes are kept in {} (one file per receipt: \
                 a folder source with format = \"receipt\" or `tillrelay parse` reads them)",
                dir.display()
            ),
            Err(e) => error!(
                "source {name}: stopping with {n} receipt(s) not journalled (the queue is full \
                 or cannot be written), and they could not be kept in a file either: {e}"
            ),
        }
    }

    /// Writes every held receipt's raw bytes to its own file in `unjournalled/`
    /// beside the queue (fsynced); returns the directory.
    fn spill(&mut self) -> std::io::Result<std::path::PathBuf> {
        use std::io::Write;
        let dir = self
            .outbox
            .dir()
            .ok_or_else(|| std::io::Error::other("the queue's directory is unknown"))?
            .join("unjournalled");
        std::fs::create_dir_all(&dir)?;
        let stem: String = self
            .source
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let at = crate::clock::unix_now();
        for (i, r) in self.held.iter().enumerate() {
            let path = dir.join(format!("{stem}-{at}-{i:03}.bin"));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            f.write_all(&r.raw)?;
            f.sync_all()?;
        }
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        self.held.clear();
        self.held_bytes = 0;
        Ok(dir)
    }

    /// Holds `r` until [`Journal::commit_held`] gets it into the queue.
    pub fn hold(&mut self, r: Receipt) {
        self.held_bytes += r.raw.len();
        self.held.push_back(r);
        while self.held_bytes > MAX_HELD_BYTES && self.held.len() > 1 {
            if let Some(old) = self.held.pop_front() {
                self.held_bytes -= old.raw.len();
                self.dropped += 1;
                error!(
                    "source {}: the queue has been full too long: dropped a held receipt ({} dropped so far)",
                    self.source.name, self.dropped
                );
            }
        }
    }

    /// Commits held receipts in order until the queue refuses one (or while there is
    /// no queue: they stay held).
    pub fn commit_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let Some(outbox) = self.outbox.get(&self.source.name) else {
            debug!(
                "source {}: no queue database; {} receipt(s) held in memory (printing goes on)",
                self.source.name,
                self.held.len()
            );
            return;
        };
        while let Some(r) = self.held.front() {
            match commit_receipt(outbox, &self.source, &self.rules, r) {
                Ok(()) => {
                    if let Some(r) = self.held.pop_front() {
                        self.held_bytes -= r.raw.len();
                    }
                }
                Err(OutboxError::Full) => {
                    warn!(
                        "source {}: the queue is full; {} receipt(s) held in memory until space returns",
                        self.source.name,
                        self.held.len()
                    );
                    return;
                }
                Err(e) => {
                    error!(
                        "source {}: cannot journal a receipt (will retry): {e}",
                        self.source.name
                    );
                    return;
                }
            }
        }
    }
}

/// Journals one receipt with what its template made of it, in one transaction.
pub fn commit_receipt(
    outbox: &mut Outbox,
    source: &Identity,
    rules: &ReceiptRules,
    r: &Receipt,
) -> Result<(), OutboxError> {
    let hash: String = Sha1::digest(&r.raw)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut unit = Capture {
        source: &source.name,
        kind: CaptureKind::Receipt,
        name: None,
        size: r.raw.len() as u64,
        hash,
        raw: Some(&r.raw),
        error: None,
    };
    let mut orders = Vec::new();
    match rules.parse(r) {
        Ok(Parsed::Order(o)) => {
            if let Some(note) = rules.unchecked_totals(&o) {
                warn!("source {}: {note}", source.name);
            }
            let mut o = *o;
            stamp(&mut o, source);
            orders.push(o);
        }
        Ok(Parsed::Reprint { order_no }) => {
            info!(
                "source {}: a reprint{}: not a new order",
                source.name,
                order_no.map(|n| format!(" of {n}")).unwrap_or_default()
            );
        }
        Ok(Parsed::NotAnOrder { reason }) => {
            debug!("source {}: not an order: {reason}", source.name);
        }
        Err(e) => {
            warn!(
                "source {}: a receipt the template cannot read is kept for reparse: {e}",
                source.name
            );
            unit.error = Some(e.to_string());
        }
    }
    let counts = [(MALFORMED_COMMANDS, r.malformed as i64)];
    let report = outbox.ingest_counting(&unit, &orders, &counts)?;
    crate::failpoint::hit("serial.after_commit");
    if report.new > 0 {
        info!(
            "source {}: order {} captured",
            source.name,
            orders
                .first()
                .map(|o| o.order_no.as_str())
                .unwrap_or_default()
        );
    } else if !report.conflicts.is_empty() {
        warn!(
            "source {}: order {} was already stored with other content: a conflict, kept aside \
             (the stored order is unchanged; see `tillrelay status`)",
            source.name,
            report.conflicts.join(", ")
        );
    } else if !report.duplicates.is_empty() {
        info!(
            "source {}: order {} was already stored (reprinted?), not stored again",
            source.name,
            report.duplicates.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::escpos::CodePage;
    use crate::capture::receipt::split_bytes;
    use crate::outbox::RawOutbox;

    /// A receipt still held when the loop stops (here: no queue can be opened, as
    /// at the queue's true limit) is kept in a file beside the queue, byte for
    /// byte, not lost with the process.
    #[test]
    fn receipts_held_at_the_stop_are_kept_in_files_beside_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        // a directory where the queue's file should be: it cannot be opened
        std::fs::create_dir(&path).unwrap();
        let opener = Opener {
            path,
            cfg: RawOutbox::default().validate(&mut crate::settings::Problems::new()),
            destinations: Vec::new(),
            on_commit: None,
        };
        let source = Identity {
            name: "lane 1".into(),
            shop: "D001".into(),
            machine_id: "M1".into(),
            video: Default::default(),
            zone: crate::stamp::default_zone(),
        };
        let rules = ReceiptRules::plain(CodePage::Gb18030);
        let bytes = b"SALE 1\nTOTAL 1.00\n\x1dV\x00SALE 2\nTOTAL 2.00\n\x1dV\x00";
        let receipts = split_bytes(bytes, &rules);
        assert_eq!(receipts.len(), 2);
        let mut j = Journal::new(source, rules, Queue::waiting(opener, "test".into()));
        for r in receipts.iter().cloned() {
            j.hold(r);
        }
        j.commit_held();
        j.report_left();
        let kept = dir.path().join("unjournalled");
        let mut files: Vec<_> = std::fs::read_dir(&kept)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2);
        for (f, r) in files.iter().zip(&receipts) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with("lane_1-") && name.ends_with(".bin"),
                "{name}"
            );
            assert_eq!(std::fs::read(f).unwrap(), r.raw);
        }
        // said once, then nothing left
        j.report_left();
        assert_eq!(std::fs::read_dir(&kept).unwrap().count(), 2);
    }
}
