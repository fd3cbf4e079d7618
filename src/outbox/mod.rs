//! The SQLite outbox: the capture journal, the orders, and one delivery row per
//! enabled destination. Everything that is acknowledged lives here first.
//!
//! # On disk
//!
//! One file, `queue.db` in the state dir, in WAL mode (readers such as `status`
//! never block the daemon). The schema is in `migrations/NNNN_*.sql`, applied in order
//! and recorded in `PRAGMA user_version`. See `0001_init.sql` for the tables.
//!
//! # Invariants
//!
//! - **One captured unit, one transaction**: its journal row, its new orders and their
//!   delivery rows commit together or not at all ([`Outbox::ingest`], or order by
//!   order through [`Outbox::begin_ingest`] for units too big to hold at once; an
//!   [`Ingest`] dropped before its commit rolls back and leaves no trace). Every order
//!   is inserted by one function (`insert_order`), for captures and reparse alike.
//! - **(source, order_no) is unique**: a second copy of an order is counted in the
//!   journal row as a duplicate, never stored twice. The one exception is a
//!   *correction*: a copy with different content of an order that some destination
//!   rejected replaces the stored body, and its rejected deliveries become pending
//!   again (same transaction). Delivered and pending deliveries are left as they are.
//! - **Durable before acknowledged**: with `synchronous = full` (the default) a commit
//!   has been fsynced when `ingest` returns; `normal` trades the last commits before a
//!   power cut for speed on slow flash (documented in the example config).
//! - **Bounded**: `max_page_count` caps the file at `outbox.max_size`. At the cap an
//!   ingest fails with [`OutboxError::Full`] and rolls back; nothing stored is dropped,
//!   and the caller keeps the unit (the file stays in the folder) to try again.
//! - **Delivery state machine**: `pending → delivered | rejected`, `rejected → pending`
//!   only by an explicit `retry` or a correction (above). Attempts, next attempt time
//!   and last error are kept.
//! - Memory never grows with the queue: every query that walks the queue is bounded
//!   by a `LIMIT`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::config::{OutboxConfig, Synchronous};
use crate::order::Order;

const MIGRATIONS: &[(&str, &str)] = &[("0001_init", include_str!("migrations/0001_init.sql"))];

/// A retry scheduled further ahead than this is taken to mean that the box's clock
/// jumped back (boxes boot without an RTC) and is treated as due now.
/// Page cache per connection, negative = KiB (SQLite's default is 2 MiB). The agent
/// holds one connection per thread that writes (folder, serial, each upload worker,
/// maintenance): at the default, a drain filled each cache and the caches were most
/// of the process's memory. Every hot path reads or writes a few pages per commit,
/// and the OS page cache serves the rest.
const CACHE_KIB: i64 = -256;

pub const MAX_SCHEDULE_AHEAD: i64 = 6 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The database reached `outbox.max_size` or the disk is full. Nothing was written;
    /// try again when space returns.
    #[error("the queue database is full (size cap or disk): new captures wait until space returns")]
    Full,
    /// The database was opened read-only and does not exist yet.
    #[error("no queue database at {0} (has the daemon run yet?)")]
    Missing(String),
    #[error(
        "the queue database at {path} was written by a newer tillrelay (schema {found}, this one knows {known})"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("queue database: {0}")]
    Sqlite(rusqlite::Error),
    #[error("order {0:?} cannot be stored: {1}")]
    Encode(String, serde_json::Error),
}

impl From<rusqlite::Error> for OutboxError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => OutboxError::Full,
            _ => OutboxError::Sqlite(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, OutboxError>;

/// Seconds since the epoch by the box's clock (negative before 1970: the one wall
/// clock, [`crate::clock::unix_now`], the upload engine's too).
pub fn now() -> i64 {
    crate::clock::unix_now()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureKind {
    File,
    Receipt,
}

impl CaptureKind {
    fn as_str(self) -> &'static str {
        match self {
            CaptureKind::File => "file",
            CaptureKind::Receipt => "receipt",
        }
    }
}

/// One captured unit, as handed to [`Outbox::ingest`].
#[derive(Debug, Clone)]
pub struct Capture<'a> {
    pub source: &'a str,
    pub kind: CaptureKind,
    /// File name (folder sources).
    pub name: Option<&'a str>,
    pub size: u64,
    /// sha1 hex of the raw bytes.
    pub hash: String,
    /// Raw bytes to journal (receipts), if any.
    pub raw: Option<&'a [u8]>,
    /// Why some or all of the unit could not be parsed, if so.
    pub error: Option<String>,
}

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub capture_id: i64,
    /// Orders stored by this unit.
    pub new: usize,
    /// Orders of this unit that were already stored (reprints, files dropped twice).
    pub duplicates: Vec<String>,
    /// Orders of this unit that corrected a stored order some destination had
    /// rejected: the body was replaced and the rejected deliveries are pending again.
    pub corrected: Vec<String>,
}

/// A delivery row due for an attempt, with its order.
#[derive(Debug, Clone)]
pub struct Due {
    pub delivery_id: i64,
    pub order_id: i64,
    pub source: String,
    pub order: Order,
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Rejected,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> DeliveryState {
        match s {
            "delivered" => DeliveryState::Delivered,
            "rejected" => DeliveryState::Rejected,
            _ => DeliveryState::Pending,
        }
    }
}

/// What became of one delivery attempt, as [`Outbox::record_outcomes`] stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Delivered(Option<String>),
    Retry { next_at: i64, error: String },
    Rejected(String),
}

/// `status`: what a person checks first.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub sources: Vec<SourceStatus>,
    pub destinations: Vec<DestStatus>,
    pub db_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub files_seen: i64,
    pub files_ingested: i64,
    pub files_rejected: i64,
    pub receipts: i64,
    pub unparsed: i64,
    pub orders: i64,
    pub duplicates: i64,
    /// Rejected orders replaced by a corrected copy (and re-queued).
    pub corrected: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DestStatus {
    pub name: String,
    pub pending: i64,
    pub delivered: i64,
    pub rejected: i64,
    /// Seconds since the oldest pending order was stored.
    pub oldest_pending_age: Option<i64>,
    pub paused: Option<String>,
    pub last_error: Option<String>,
}

/// One order as `orders` lists it: the stamped canonical order plus its deliveries.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    #[serde(flatten)]
    pub order: serde_json::Value,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub dest: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub last_error: Option<String>,
}

pub struct Outbox {
    conn: Connection,
    destinations: Vec<String>,
}

/// One captured unit's open transaction (see [`Outbox::begin_ingest`]). Dropping it
/// without [`Ingest::commit`] rolls everything back.
pub struct Ingest<'a> {
    tx: rusqlite::Transaction<'a>,
    destinations: &'a [String],
    source: String,
    kind: CaptureKind,
    now: i64,
    /// Orders handed to `add`, new or not.
    seen: usize,
    report: IngestReport,
}

impl Ingest<'_> {
    /// Stores one stamped order of the unit (with a delivery row per destination), or
    /// counts it as a duplicate, or applies it as a correction of a rejected order.
    pub fn add(&mut self, order: &Order) -> Result<()> {
        let body = serde_json::to_string(order)
            .map_err(|e| OutboxError::Encode(order.order_no.clone(), e))?;
        self.seen += 1;
        let stored = insert_order(
            &self.tx,
            &self.source,
            self.report.capture_id,
            order,
            &body,
            self.destinations,
            self.now,
            Corrections::Apply,
        )?;
        match stored {
            Stored::New => self.report.new += 1,
            Stored::Duplicate => self.report.duplicates.push(order.order_no.clone()),
            Stored::Corrected => self.report.corrected.push(order.order_no.clone()),
        }
        Ok(())
    }

    /// How many orders were added so far (new, duplicate or corrections).
    pub fn orders(&self) -> usize {
        self.seen
    }

    /// Commits the unit: its journal row gets its status (`parsed`; `partial` or
    /// `unparsed` with `error`, as orders were added or not) and counts, in the same
    /// transaction as its orders.
    pub fn commit(self, error: Option<&str>) -> Result<IngestReport> {
        let status = match (error, self.seen) {
            (None, _) => "parsed",
            (Some(_), 0) => "unparsed",
            (Some(_), _) => "partial",
        };
        let report = self.report;
        if !report.corrected.is_empty() {
            bump(
                &self.tx,
                &self.source,
                "corrected",
                report.corrected.len() as i64,
            )?;
        }
        self.tx.execute(
            "UPDATE capture SET status = ?1, error = ?2, orders = ?3, duplicates = ?4 WHERE id = ?5",
            params![
                status,
                error,
                report.new as i64,
                report.duplicates.len() as i64,
                report.capture_id
            ],
        )?;
        let counter = match self.kind {
            CaptureKind::File => "files_ingested",
            CaptureKind::Receipt => "receipts",
        };
        bump(&self.tx, &self.source, counter, 1)?;
        self.tx.commit()?;
        Ok(report)
    }
}

impl Outbox {
    /// Opens (creating if needed) the queue for writing, applies migrations and the
    /// size cap. `destinations` are the ones that get a delivery row per new order.
    pub fn open(path: &Path, cfg: &OutboxConfig, destinations: &[String]) -> Result<Outbox> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                OutboxError::Sqlite(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot create {}: {e}", dir.display())),
                ))
            })?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match cfg.synchronous {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            },
        )?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", CACHE_KIB)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let max_pages = (cfg.max_size as i64 / page_size).max(64);
        // The cap is enforced by SQLite itself: an insert past it fails with SQLITE_FULL
        // and its transaction rolls back, exactly as on a full disk.
        conn.pragma_update(None, "max_page_count", max_pages)?;
        let mut ob = Outbox {
            conn,
            destinations: destinations.to_vec(),
        };
        ob.migrate(path)?;
        Ok(ob)
    }

    /// Opens an existing queue read-only (for `status` and `orders` while the daemon runs).
    pub fn open_read_only(path: &Path) -> Result<Outbox> {
        if !path.exists() {
            return Err(OutboxError::Missing(path.display().to_string()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Outbox {
            conn,
            destinations: Vec::new(),
        })
    }

    fn migrate(&mut self, path: &Path) -> Result<()> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(OutboxError::TooNew {
                path: path.display().to_string(),
                found: version,
                known,
            });
        }
        for (i, (_name, sql)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The destinations this outbox creates delivery rows for.
    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }

    /// Whether a file with this identity was already committed (the crash-safe ledger:
    /// a file whose move was interrupted is recognised here and only moved).
    pub fn file_ingested(&self, source: &str, name: &str, size: u64, hash: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM capture WHERE source = ?1 AND name = ?2 AND size = ?3 AND hash = ?4
                   AND kind = 'file' AND status IN ('parsed', 'partial') LIMIT 1",
                params![source, name, size as i64, hash],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Commits one captured unit with its orders, in one transaction. Orders must be
    /// stamped. Returns what was new and what was a duplicate.
    pub fn ingest(&mut self, unit: &Capture<'_>, orders: &[Order]) -> Result<IngestReport> {
        let mut ingest = self.begin_ingest(unit)?;
        for order in orders {
            ingest.add(order)?;
        }
        ingest.commit(unit.error.as_deref())
    }

    /// Starts the transaction of one captured unit, to be fed its orders one at a time
    /// ([`Ingest::add`]) and committed with [`Ingest::commit`]; dropped uncommitted, it
    /// rolls back and leaves no trace. So a unit of any size is one transaction without
    /// ever holding all its orders. `unit.error` is not used: the error is known only
    /// at the end, and is given to `commit`.
    pub fn begin_ingest(&mut self, unit: &Capture<'_>) -> Result<Ingest<'_>> {
        let now = now();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // The status is provisional; `commit` sets the real one with the counts.
        tx.execute(
            "INSERT INTO capture (source, kind, name, size, hash, raw, captured_at, status, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'unparsed', NULL)",
            params![
                unit.source,
                unit.kind.as_str(),
                unit.name,
                unit.size as i64,
                unit.hash,
                unit.raw,
                now,
            ],
        )?;
        let capture_id = tx.last_insert_rowid();
        Ok(Ingest {
            tx,
            destinations: &self.destinations,
            source: unit.source.to_string(),
            kind: unit.kind,
            now,
            seen: 0,
            report: IngestReport {
                capture_id,
                ..Default::default()
            },
        })
    }

    /// Journals a unit that could not be read at all (it moves to `rejected/`).
    pub fn record_rejected(&mut self, unit: &Capture<'_>, error: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO capture (source, kind, name, size, hash, raw, captured_at, status, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'rejected', ?8)",
            params![
                unit.source,
                unit.kind.as_str(),
                unit.name,
                unit.size as i64,
                unit.hash,
                unit.raw,
                now(),
                error
            ],
        )?;
        bump(&tx, unit.source, "files_rejected", 1)?;
        tx.commit()?;
        Ok(())
    }

    /// Adds to a per-source counter (e.g. `files_seen`).
    pub fn count(&mut self, source: &str, name: &str, by: i64) -> Result<()> {
        bump(&self.conn, source, name, by)
    }

    /// Up to `limit` pending deliveries to `dest` that are due at `now`, oldest first.
    /// Rows scheduled absurdly far ahead (the clock jumped back) count as due.
    pub fn claim_due(&mut self, dest: &str, now: i64, limit: usize) -> Result<Vec<Due>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.id, o.id, o.source, o.body, d.attempts FROM delivery d
               JOIN orders o ON o.id = d.order_id
              WHERE d.dest = ?1 AND d.state = 'pending' AND (d.next_at <= ?2 OR d.next_at > ?3)
              ORDER BY d.next_at, d.id LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![dest, now, now + MAX_SCHEDULE_AHEAD, limit as i64],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (delivery_id, order_id, source, body, attempts) = row?;
            let order: Order = serde_json::from_str(&body)
                .map_err(|e| OutboxError::Encode(format!("#{order_id}"), e))?;
            out.push(Due {
                delivery_id,
                order_id,
                source,
                order,
                attempts: attempts as u32,
            });
        }
        Ok(out)
    }

    /// When the next pending delivery to `dest` is due, if any.
    pub fn next_due_at(&self, dest: &str) -> Result<Option<i64>> {
        Ok(self.conn.query_row(
            "SELECT min(next_at) FROM delivery WHERE dest = ?1 AND state = 'pending'",
            params![dest],
            |r| r.get(0),
        )?)
    }

    /// Persists the outcomes of one pass in one transaction (one fsync for a batch of
    /// 100, not 100). A crash before the commit only means the batch is sent again,
    /// which the clouds deduplicate.
    pub fn record_outcomes(&mut self, marks: &[(i64, Mark)]) -> Result<()> {
        let now = now();
        let tx = self.conn.transaction()?;
        {
            let mut delivered = tx.prepare_cached(
                "UPDATE delivery SET state = 'delivered', attempts = attempts + 1, last_error = ?2,
                        updated_at = ?3 WHERE id = ?1",
            )?;
            let mut retry = tx.prepare_cached(
                "UPDATE delivery SET attempts = attempts + 1, next_at = ?2, last_error = ?3,
                        updated_at = ?4 WHERE id = ?1 AND state = 'pending'",
            )?;
            let mut rejected = tx.prepare_cached(
                "UPDATE delivery SET state = 'rejected', attempts = attempts + 1, last_error = ?2,
                        updated_at = ?3 WHERE id = ?1",
            )?;
            for (id, mark) in marks {
                match mark {
                    Mark::Delivered(note) => delivered.execute(params![id, note, now])?,
                    Mark::Retry { next_at, error } => {
                        retry.execute(params![id, next_at, error, now])?
                    }
                    Mark::Rejected(reason) => rejected.execute(params![id, reason, now])?,
                };
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn mark_delivered(&mut self, delivery_id: i64, note: Option<&str>) -> Result<()> {
        let now = now();
        self.conn.execute(
            "UPDATE delivery SET state = 'delivered', attempts = attempts + 1, last_error = ?2,
                    updated_at = ?3 WHERE id = ?1",
            params![delivery_id, note, now],
        )?;
        Ok(())
    }

    pub fn mark_retry(&mut self, delivery_id: i64, next_at: i64, error: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE delivery SET attempts = attempts + 1, next_at = ?2, last_error = ?3,
                    updated_at = ?4 WHERE id = ?1 AND state = 'pending'",
            params![delivery_id, next_at, error, now()],
        )?;
        Ok(())
    }

    pub fn mark_rejected(&mut self, delivery_id: i64, reason: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE delivery SET state = 'rejected', attempts = attempts + 1, last_error = ?2,
                    updated_at = ?3 WHERE id = ?1",
            params![delivery_id, reason, now()],
        )?;
        Ok(())
    }

    /// Pauses (`Some(reason)`) or resumes (`None`) a destination found misconfigured.
    pub fn set_paused(&mut self, dest: &str, reason: Option<&str>) -> Result<()> {
        self.conn.execute(
            "INSERT INTO dest_state (dest, paused_reason, paused_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (dest) DO UPDATE SET paused_reason = ?2,
                 paused_at = CASE WHEN ?2 IS NULL THEN NULL ELSE coalesce(paused_at, ?3) END",
            params![dest, reason, now()],
        )?;
        Ok(())
    }

    /// Records the last error or success of a destination, for `status`.
    pub fn note_attempt(&mut self, dest: &str, error: Option<&str>) -> Result<()> {
        let now = now();
        match error {
            Some(e) => self.conn.execute(
                "INSERT INTO dest_state (dest, last_error, last_error_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (dest) DO UPDATE SET last_error = ?2, last_error_at = ?3",
                params![dest, e, now],
            )?,
            None => self.conn.execute(
                "INSERT INTO dest_state (dest, last_success_at) VALUES (?1, ?2)
                 ON CONFLICT (dest) DO UPDATE SET last_success_at = ?2",
                params![dest, now],
            )?,
        };
        Ok(())
    }

    /// Puts rejected deliveries back to pending (after the data or config was fixed).
    /// `dest`/`order_no` narrow it down; returns how many rows were re-queued.
    pub fn retry_rejected(&mut self, dest: Option<&str>, order_no: Option<&str>) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE delivery SET state = 'pending', next_at = ?3, updated_at = ?3
              WHERE state = 'rejected' AND (?1 IS NULL OR dest = ?1)
                AND (?2 IS NULL OR order_id IN (SELECT id FROM orders WHERE order_no = ?2))",
            params![dest, order_no, now()],
        )?)
    }

    /// Replaces a stored order's body (a fixed order re-dropped for `retry`).
    pub fn replace_order(&mut self, source: &str, order: &Order) -> Result<bool> {
        let body = serde_json::to_string(order)
            .map_err(|e| OutboxError::Encode(order.order_no.clone(), e))?;
        Ok(self.conn.execute(
            "UPDATE orders SET body = ?3 WHERE source = ?1 AND order_no = ?2",
            params![source, order.order_no, body],
        )? > 0)
    }

    /// Applies retention: deletes orders delivered everywhere longer than `retention`
    /// ago, drops raw capture bytes older than `raw_retention`. Never touches pending
    /// or rejected orders. Returns (orders deleted, raw captures dropped).
    pub fn prune(&mut self, now: i64, cfg: &OutboxConfig) -> Result<(usize, usize)> {
        let cutoff = now - cfg.retention.as_secs() as i64;
        let raw_cutoff = now - cfg.raw_retention.as_secs() as i64;
        let tx = self.conn.transaction()?;
        let orders = tx.execute(
            "DELETE FROM orders WHERE created_at < ?1 AND NOT EXISTS (
                 SELECT 1 FROM delivery d WHERE d.order_id = orders.id
                    AND (d.state != 'delivered' OR d.updated_at >= ?1))",
            params![cutoff],
        )?;
        let raws = tx.execute(
            "UPDATE capture SET raw = NULL WHERE raw IS NOT NULL AND captured_at < ?1",
            params![raw_cutoff],
        )?;
        tx.execute(
            "DELETE FROM capture WHERE captured_at < ?1 AND captured_at < ?2
                AND NOT EXISTS (SELECT 1 FROM orders WHERE capture_id = capture.id)",
            params![cutoff, raw_cutoff],
        )?;
        tx.commit()?;
        Ok((orders, raws))
    }

    /// Everything `status` shows.
    pub fn status(&self, now: i64) -> Result<Status> {
        let mut sources: Vec<SourceStatus> = Vec::new();
        fn entry<'a>(v: &'a mut Vec<SourceStatus>, name: &str) -> &'a mut SourceStatus {
            if let Some(i) = v.iter().position(|s| s.name == name) {
                return &mut v[i];
            }
            v.push(SourceStatus {
                name: name.to_string(),
                ..Default::default()
            });
            v.last_mut().expect("just pushed")
        }
        {
            let mut stmt = self
                .conn
                .prepare("SELECT source, name, value FROM counter ORDER BY source")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (source, name, value) = row?;
                let s = entry(&mut sources, &source);
                match name.as_str() {
                    "files_seen" => s.files_seen = value,
                    "files_ingested" => s.files_ingested = value,
                    "files_rejected" => s.files_rejected = value,
                    "receipts" => s.receipts = value,
                    "corrected" => s.corrected = value,
                    _ => {}
                }
            }
            let mut stmt = self.conn.prepare(
                "SELECT source, sum(orders), sum(duplicates), sum(status = 'unparsed')
                   FROM capture GROUP BY source",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            for row in rows {
                let (source, orders, dups, unparsed) = row?;
                let s = entry(&mut sources, &source);
                s.orders = orders;
                s.duplicates = dups;
                s.unparsed = unparsed;
            }
            let mut stmt = self.conn.prepare(
                "SELECT c.error FROM capture c WHERE c.source = ?1 AND c.error IS NOT NULL
                  ORDER BY c.id DESC LIMIT 1",
            )?;
            for s in sources.iter_mut() {
                s.last_error = stmt.query_row(params![s.name], |r| r.get(0)).optional()?;
            }
        }
        let mut destinations = Vec::new();
        {
            let mut names: Vec<String> = self
                .conn
                .prepare("SELECT DISTINCT dest FROM delivery UNION SELECT dest FROM dest_state")?
                .query_map([], |r| r.get(0))?
                .collect::<std::result::Result<_, _>>()?;
            names.sort();
            let mut counts = self
                .conn
                .prepare("SELECT state, count(*) FROM delivery WHERE dest = ?1 GROUP BY state")?;
            let mut oldest = self.conn.prepare(
                "SELECT min(o.created_at) FROM delivery d JOIN orders o ON o.id = d.order_id
                  WHERE d.dest = ?1 AND d.state = 'pending'",
            )?;
            let mut state = self
                .conn
                .prepare("SELECT paused_reason, last_error FROM dest_state WHERE dest = ?1")?;
            for name in names {
                let mut d = DestStatus {
                    name: name.clone(),
                    ..Default::default()
                };
                let rows = counts.query_map(params![name], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?;
                for row in rows {
                    let (st, n) = row?;
                    match DeliveryState::parse(&st) {
                        DeliveryState::Pending => d.pending = n,
                        DeliveryState::Delivered => d.delivered = n,
                        DeliveryState::Rejected => d.rejected = n,
                    }
                }
                let oldest_at: Option<i64> = oldest.query_row(params![name], |r| r.get(0))?;
                d.oldest_pending_age = oldest_at.map(|t| (now - t).max(0));
                if let Some((paused, err)) = state
                    .query_row(params![name], |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, Option<String>>(1)?,
                        ))
                    })
                    .optional()?
                {
                    d.paused = paused;
                    d.last_error = err;
                }
                destinations.push(d);
            }
        }
        let page_count: i64 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))?;
        let page_size: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))?;
        Ok(Status {
            sources,
            destinations,
            db_bytes: (page_count * page_size) as u64,
        })
    }

    /// Stored orders, newest first, with their delivery states. `state` keeps the
    /// orders that have at least one delivery in that state.
    pub fn orders(
        &self,
        state: Option<DeliveryState>,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OrderView>> {
        let mut stmt = self.conn.prepare(
            "SELECT o.id, o.body FROM orders o
              WHERE (?1 IS NULL OR EXISTS (SELECT 1 FROM delivery d
                                             WHERE d.order_id = o.id AND d.state = ?1))
                AND (?2 IS NULL OR o.source = ?2)
              ORDER BY o.id DESC LIMIT ?3",
        )?;
        let mut deliveries = self.conn.prepare(
            "SELECT dest, state, attempts, last_error FROM delivery WHERE order_id = ?1 ORDER BY dest",
        )?;
        let rows = stmt.query_map(
            params![state.map(|s| s.as_str()), source, limit as i64],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            let order: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| OutboxError::Encode(format!("#{id}"), e))?;
            let ds = deliveries
                .query_map(params![id], |r| {
                    Ok(DeliveryView {
                        dest: r.get(0)?,
                        state: DeliveryState::parse(&r.get::<_, String>(1)?),
                        attempts: r.get(2)?,
                        last_error: r.get(3)?,
                    })
                })?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            out.push(OrderView {
                order,
                deliveries: ds,
            });
        }
        Ok(out)
    }
}

/// A journalled capture with its raw bytes, for `reparse`.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub id: i64,
    pub source: String,
    pub kind: CaptureKind,
    pub status: String,
    pub raw: Vec<u8>,
}

impl Outbox {
    /// Journal entries that still have raw bytes, in id order after `after_id`: the
    /// unparsed ones, or those named in `ids`. Bounded by `limit` (page through).
    pub fn journal_entries(
        &self,
        source: Option<&str>,
        ids: &[i64],
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>> {
        let ids_json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, source, kind, status, raw FROM capture
              WHERE raw IS NOT NULL AND id > ?1 AND (?2 IS NULL OR source = ?2)
                AND (CASE WHEN ?3 = '[]' THEN status = 'unparsed'
                          ELSE id IN (SELECT value FROM json_each(?3)) END)
              ORDER BY id LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![after_id, source, ids_json, limit as i64], |r| {
            Ok(JournalEntry {
                id: r.get(0)?,
                source: r.get(1)?,
                kind: if r.get::<_, String>(2)? == "file" {
                    CaptureKind::File
                } else {
                    CaptureKind::Receipt
                },
                status: r.get(3)?,
                raw: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Records what a fixed template made of a journal entry: new orders (stamped)
    /// with their delivery rows, and the entry's new status, in one transaction.
    pub fn reparsed(
        &mut self,
        capture_id: i64,
        source: &str,
        orders: &[Order],
        error: Option<&str>,
    ) -> Result<IngestReport> {
        let now = now();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (mut new, mut duplicates) = (0, Vec::new());
        for order in orders {
            let body = serde_json::to_string(order)
                .map_err(|e| OutboxError::Encode(order.order_no.clone(), e))?;
            // A reparse only fills in what a broken template missed: an order already
            // stored is left as it is.
            match insert_order(
                &tx,
                source,
                capture_id,
                order,
                &body,
                &self.destinations,
                now,
                Corrections::Ignore,
            )? {
                Stored::New => new += 1,
                Stored::Duplicate | Stored::Corrected => duplicates.push(order.order_no.clone()),
            }
        }
        let status = match (error, new + duplicates.len()) {
            (None, _) => "parsed",
            (Some(_), 0) => "unparsed",
            (Some(_), _) => "partial",
        };
        tx.execute(
            "UPDATE capture SET status = ?2, error = ?3, orders = orders + ?4,
                    duplicates = duplicates + ?5 WHERE id = ?1",
            params![
                capture_id,
                status,
                error,
                new as i64,
                duplicates.len() as i64
            ],
        )?;
        tx.commit()?;
        Ok(IngestReport {
            capture_id,
            new,
            duplicates,
            corrected: Vec::new(),
        })
    }
}

/// What [`insert_order`] did with one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    New,
    Duplicate,
    Corrected,
}

/// Whether a differing copy of a rejected order replaces it (captures) or not (reparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corrections {
    Apply,
    Ignore,
}

/// The one place an order is inserted: a new order with one delivery row per
/// destination, or a duplicate left alone, or (with `Corrections::Apply`) a correction
/// of a rejected one.
#[allow(clippy::too_many_arguments)]
fn insert_order(
    tx: &rusqlite::Transaction<'_>,
    source: &str,
    capture_id: i64,
    order: &Order,
    body: &str,
    destinations: &[String],
    now: i64,
    corrections: Corrections,
) -> Result<Stored> {
    let n = tx
        .prepare_cached(
            "INSERT INTO orders (source, order_no, order_time, body, capture_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (source, order_no) DO NOTHING",
        )?
        .execute(params![
            source,
            order.order_no,
            crate::order::format_time(&order.order_time),
            body,
            capture_id,
            now
        ])?;
    if n == 0 {
        if corrections == Corrections::Apply && correct_rejected(tx, source, order, body, now)? {
            return Ok(Stored::Corrected);
        }
        return Ok(Stored::Duplicate);
    }
    let order_id = tx.last_insert_rowid();
    let mut ins_delivery = tx.prepare_cached(
        "INSERT INTO delivery (order_id, dest, state, next_at, updated_at)
         VALUES (?1, ?2, 'pending', ?3, ?3)",
    )?;
    for dest in destinations {
        ins_delivery.execute(params![order_id, dest, now])?;
    }
    Ok(Stored::New)
}

/// A second copy of a stored order: if its content differs and some destination
/// rejected the stored one, the copy is the POS's correction. Replaces the body and
/// puts the rejected deliveries back to pending, due now; returns whether it did.
/// Delivered deliveries stay delivered (the cloud has the order; resending would be a
/// duplicate there) and pending ones simply go out with the new body.
fn correct_rejected(
    tx: &rusqlite::Transaction<'_>,
    source: &str,
    order: &Order,
    body: &str,
    now: i64,
) -> Result<bool> {
    let stored: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, body FROM orders WHERE source = ?1 AND order_no = ?2")?
        .query_row(params![source, order.order_no], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((order_id, old_body)) = stored else {
        return Ok(false);
    };
    if old_body == body {
        return Ok(false);
    }
    let rejected: i64 = tx
        .prepare_cached("SELECT count(*) FROM delivery WHERE order_id = ?1 AND state = 'rejected'")?
        .query_row(params![order_id], |r| r.get(0))?;
    if rejected == 0 {
        return Ok(false);
    }
    tx.execute(
        "UPDATE orders SET body = ?2, order_time = ?3 WHERE id = ?1",
        params![order_id, body, crate::order::format_time(&order.order_time)],
    )?;
    tx.execute(
        "UPDATE delivery SET state = 'pending', next_at = ?2, updated_at = ?2
          WHERE order_id = ?1 AND state = 'rejected'",
        params![order_id, now],
    )?;
    Ok(true)
}

fn bump(conn: &Connection, source: &str, name: &str, by: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO counter (source, name, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (source, name) DO UPDATE SET value = value + ?3",
        params![source, name, by],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_size: u64) -> OutboxConfig {
        OutboxConfig {
            synchronous: Synchronous::Full,
            max_size,
            retention: Duration::from_secs(3600),
            raw_retention: Duration::from_secs(7200),
        }
    }

    fn order(no: &str) -> Order {
        serde_json::from_value(serde_json::json!({
            "order_no": no, "order_time": "2026-11-22 09:15:02", "kind": "sale",
            "cashier": null, "payment": "cash", "total": "7.00", "discount": "0", "paid": "7.00",
            "lines": [{"code": "690", "name": "水", "qty": "2", "price": "3.50", "amount": "7.00"}],
            "source": "lane1", "shop": "D001", "machine_id": "M1",
            "video_start": "2026-11-22 09:14:02", "video_end": "2026-11-22 09:15:32"
        }))
        .unwrap()
    }

    fn unit<'a>(name: &'a str) -> Capture<'a> {
        Capture {
            source: "lane1",
            kind: CaptureKind::File,
            name: Some(name),
            size: 10,
            hash: format!("h-{name}"),
            raw: None,
            error: None,
        }
    }

    fn open(dir: &Path) -> Outbox {
        Outbox::open(
            &dir.join("queue.db"),
            &cfg(64 << 20),
            &["ovopark".into(), "wdt".into()],
        )
        .unwrap()
    }

    #[test]
    fn ingest_stores_orders_once_with_a_delivery_row_per_destination() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(dir.path());
        let r = ob
            .ingest(&unit("a.json"), &[order("1"), order("2")])
            .unwrap();
        assert_eq!((r.new, r.duplicates.len()), (2, 0));
        let r = ob
            .ingest(&unit("b.json"), &[order("2"), order("3")])
            .unwrap();
        assert_eq!(r.new, 1);
        assert_eq!(r.duplicates, vec!["2".to_string()]);
        let st = ob.status(now()).unwrap();
        assert_eq!(st.destinations.len(), 2);
        assert!(st.destinations.iter().all(|d| d.pending == 3));
        assert_eq!(st.sources[0].orders, 3);
        assert_eq!(st.sources[0].duplicates, 1);
        assert!(ob.file_ingested("lane1", "a.json", 10, "h-a.json").unwrap());
        assert!(!ob.file_ingested("lane1", "a.json", 11, "h-a.json").unwrap());
    }

    #[test]
    fn state_machine_claim_retry_reject_retry_deliver() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(dir.path());
        ob.ingest(&unit("a"), &[order("1"), order("2")]).unwrap();
        let t = now();
        let due = ob.claim_due("wdt", t, 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].order.order_no, "1");
        ob.mark_retry(due[0].delivery_id, t + 60, "HTTP 503")
            .unwrap();
        ob.mark_rejected(due[1].delivery_id, "bad qty").unwrap();
        assert!(ob.claim_due("wdt", t, 10).unwrap().is_empty());
        assert_eq!(ob.claim_due("wdt", t + 61, 10).unwrap().len(), 1);
        // a clock that jumped back by a day still sees the retry as due
        assert_eq!(ob.claim_due("wdt", t - 86400, 10).unwrap().len(), 1);
        assert_eq!(ob.retry_rejected(Some("wdt"), Some("2")).unwrap(), 1);
        let due = ob.claim_due("wdt", t + 61, 10).unwrap();
        assert_eq!(due.len(), 2);
        for d in &due {
            ob.mark_delivered(d.delivery_id, None).unwrap();
        }
        let st = ob.status(t).unwrap();
        let wdt = st.destinations.iter().find(|d| d.name == "wdt").unwrap();
        assert_eq!((wdt.pending, wdt.delivered, wdt.rejected), (0, 2, 0));
        let ovo = st
            .destinations
            .iter()
            .find(|d| d.name == "ovopark")
            .unwrap();
        assert_eq!(ovo.pending, 2, "destinations are independent");
    }

    #[test]
    fn a_corrected_copy_of_a_rejected_order_replaces_it_and_requeues_only_the_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(dir.path());
        ob.ingest(&unit("a"), &[order("1"), order("2"), order("3")])
            .unwrap();
        let t = now();
        // "1": delivered to ovopark, rejected by wdt. "2": pending everywhere.
        // "3": rejected by both.
        let state = |ob: &Outbox, no: &str| -> Vec<(String, DeliveryState)> {
            let v = ob.orders(None, None, 10).unwrap();
            let o = v.iter().find(|o| o.order["order_no"] == no).unwrap();
            o.deliveries
                .iter()
                .map(|d| (d.dest.clone(), d.state))
                .collect()
        };
        for dest in ["ovopark", "wdt"] {
            for d in ob.claim_due(dest, t, 10).unwrap() {
                match (dest, d.order.order_no.as_str()) {
                    ("ovopark", "1") => ob.mark_delivered(d.delivery_id, None).unwrap(),
                    (_, "1" | "3") => ob.mark_rejected(d.delivery_id, "bad code").unwrap(),
                    _ => {}
                }
            }
        }
        let fixed = |no: &str| {
            let mut o = order(no);
            o.lines[0].code = "691".into();
            o
        };
        // The same content again is a duplicate, whatever the state.
        let r = ob
            .ingest(&unit("again"), &[order("1"), order("2")])
            .unwrap();
        assert_eq!(r.duplicates, ["1", "2"]);
        assert!(r.corrected.is_empty());
        // Changed content: a correction only where a delivery was rejected.
        let r = ob
            .ingest(
                &unit("fixed"),
                &[fixed("1"), fixed("2"), fixed("3"), order("4")],
            )
            .unwrap();
        assert_eq!((r.new, r.duplicates.clone()), (1, vec!["2".to_string()]));
        assert_eq!(r.corrected, ["1", "3"]);
        use DeliveryState::*;
        let s = |d: &str, st| (d.to_string(), st);
        assert_eq!(
            state(&ob, "1"),
            [s("ovopark", Delivered), s("wdt", Pending)]
        );
        assert_eq!(state(&ob, "3"), [s("ovopark", Pending), s("wdt", Pending)]);
        // The pending one keeps its stored body; the corrected ones carry the fix.
        let body = |no: &str| {
            let v = ob.orders(None, None, 10).unwrap();
            let o = v.iter().find(|o| o.order["order_no"] == no).unwrap();
            o.order["lines"][0]["code"].as_str().unwrap().to_string()
        };
        assert_eq!(body("1"), "691");
        assert_eq!(body("2"), "690");
        assert_eq!(body("3"), "691");
        let due: Vec<String> = ob
            .claim_due("wdt", t, 10)
            .unwrap()
            .into_iter()
            .map(|d| format!("{}:{}", d.order.order_no, d.order.lines[0].code))
            .collect();
        assert_eq!(due, ["1:691", "2:690", "3:691", "4:690"]);
        let st = ob.status(now()).unwrap();
        assert_eq!(st.sources[0].corrected, 2);
        assert_eq!(st.sources[0].orders, 4, "a correction is not a new order");
    }

    #[test]
    fn the_size_cap_refuses_new_captures_and_keeps_what_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob =
            Outbox::open(&dir.path().join("queue.db"), &cfg(1 << 20), &["wdt".into()]).unwrap();
        let raw = vec![7u8; 16 * 1024];
        let mut stored = 0;
        let mut full = false;
        for i in 0..200 {
            let name = format!("r{i}");
            let mut u = unit(&name);
            u.kind = CaptureKind::Receipt;
            u.raw = Some(&raw);
            match ob.ingest(&u, &[order(&name)]) {
                Ok(_) => stored += 1,
                Err(OutboxError::Full) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(full, "a 1 MiB cap must fill with 16 KiB receipts");
        assert!(stored > 10);
        let st = ob.status(now()).unwrap();
        assert_eq!(st.destinations[0].pending, stored);
        // pruning raw bytes frees space: capture resumes
        let mut c = cfg(1 << 20);
        c.raw_retention = Duration::ZERO;
        ob.prune(now() + 1, &c).unwrap();
        let mut u = unit("after");
        u.kind = CaptureKind::Receipt;
        ob.ingest(&u, &[order("after")]).unwrap();
    }

    #[test]
    fn retention_deletes_only_orders_delivered_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(dir.path());
        ob.ingest(&unit("a"), &[order("1"), order("2")]).unwrap();
        let t = now();
        for dest in ["wdt", "ovopark"] {
            let due = ob.claim_due(dest, t, 10).unwrap();
            ob.mark_delivered(due[0].delivery_id, None).unwrap();
        }
        let c = cfg(64 << 20);
        assert_eq!(ob.prune(t + 10, &c).unwrap().0, 0, "too recent");
        assert_eq!(ob.prune(t + 3601, &c).unwrap().0, 1);
        let left = ob.orders(None, None, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].order["order_no"], "2");
    }

    #[test]
    fn read_only_sees_what_the_writer_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(dir.path());
        let ro = Outbox::open_read_only(&dir.path().join("queue.db")).unwrap();
        ob.ingest(&unit("a"), &[order("1")]).unwrap();
        let v = ro.orders(Some(DeliveryState::Pending), None, 10).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].deliveries.len(), 2);
        assert!(matches!(
            Outbox::open_read_only(&dir.path().join("nope.db")),
            Err(OutboxError::Missing(_))
        ));
    }

    #[test]
    fn an_ingest_dropped_before_commit_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = open(dir.path());
        let mut ing = ob.begin_ingest(&unit("a.json")).unwrap();
        ing.add(&order("1")).unwrap();
        ing.add(&order("2")).unwrap();
        assert_eq!(ing.orders(), 2);
        drop(ing);
        assert!(ob.orders(None, None, 10).unwrap().is_empty());
        assert!(
            ob.status(now()).unwrap().sources.is_empty(),
            "no journal row, no counter"
        );
        assert!(!ob.file_ingested("lane1", "a.json", 10, "h-a.json").unwrap());
        // Committed with an error: the orders it had are kept, the unit is partial.
        let mut ing = ob.begin_ingest(&unit("a.json")).unwrap();
        ing.add(&order("1")).unwrap();
        ing.add(&order("1")).unwrap();
        let r = ing.commit(Some("line 9: bad")).unwrap();
        assert_eq!((r.new, r.duplicates.clone()), (1, vec!["1".to_string()]));
        assert!(ob.file_ingested("lane1", "a.json", 10, "h-a.json").unwrap());
        let st = ob.status(now()).unwrap();
        assert_eq!(st.sources[0].last_error.as_deref(), Some("line 9: bad"));
        assert_eq!((st.sources[0].orders, st.sources[0].duplicates), (1, 1));
        // Nothing readable: unparsed, and not in the ledger.
        let ing = ob.begin_ingest(&unit("b.json")).unwrap();
        ing.commit(Some("line 1: bad")).unwrap();
        assert!(!ob.file_ingested("lane1", "b.json", 10, "h-b.json").unwrap());
        assert_eq!(ob.status(now()).unwrap().sources[0].unparsed, 1);
    }
}
