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
//! - **Bounded, never deadlocked**: captures stop at `outbox.max_size`; SQLite's
//!   `max_page_count` is the cap plus a reserve that only delivery bookkeeping can
//!   use, so a delivery can always be recorded. At the cap an ingest first deletes
//!   orders delivered everywhere, oldest first, whatever their retention age
//!   (`room.rs`); if that frees nothing it fails with [`OutboxError::Full`] and rolls
//!   back, the source is marked "queue full" for `status`, and the caller keeps the
//!   unit to try again. Nothing pending, rejected or quarantined is ever dropped.
//! - **Junk never starves orders** (issue #24, `junk.rs`): the raw bytes of unparsed
//!   receipts take at most `outbox.unparsed_percent` of the cap; past it, and first
//!   whenever room is needed, the oldest are dropped (their journal rows go, counted
//!   as `unparsed_dropped`, the totals kept). A printed receipt at the cap goes into
//!   a reserve of its own past it rather than waiting in memory.
//! - **A damaged row never stops the others**: a delivery whose order cannot be read
//!   is quarantined (kept, with the reason) and the claim goes on with the next rows.
//! - **A conflict is kept aside**: a second copy of an order whose content differs is
//!   stored in `conflict` with the stored order untouched, and reported.
//! - **Delivery state machine**: `pending → delivered | rejected`, `rejected → pending`
//!   only by an explicit `retry` or a correction (above). Attempts, next attempt time
//!   and last error are kept.
//! - Memory never grows with the queue: every query that walks the queue is bounded
//!   by a `LIMIT`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::order::Order;

mod body;
mod delivery;
mod ingest;
mod journal;
mod junk;
mod recover;
mod retention;
mod room;
mod settings;
mod views;

pub use delivery::{Claim, DeliveryState, Due, Mark, SourcePause};
pub use ingest::{Capture, CaptureKind, Ingest, IngestReport, MALFORMED_COMMANDS};
pub use journal::JournalEntry;
pub use junk::UNPARSED_DROPPED;
pub use recover::{DAMAGED_SUFFIX, Opened, Opener, damaged_files, open_or_set_aside};
pub use settings::{OutboxConfig, RawOutbox, Synchronous};
pub use views::{DeliveryView, DestStatus, OrderView, SourceStatus, Status};

const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("migrations/0001_init.sql")),
    ("0002_faults", include_str!("migrations/0002_faults.sql")),
    ("0003_wear", include_str!("migrations/0003_wear.sql")),
    ("0004_lean", include_str!("migrations/0004_lean.sql")),
    ("0005_junk", include_str!("migrations/0005_junk.sql")),
    (
        "0006_source_pause",
        include_str!("migrations/0006_source_pause.sql"),
    ),
];

/// Pages SQLite may use beyond `outbox.max_size`, for delivery bookkeeping only: the
/// cap is checked by captures ([`Outbox::begin_ingest`] and [`Ingest::commit`]),
/// while `max_page_count` is the cap plus this reserve. So recording that an order
/// was delivered, and deleting delivered orders to make room, always has pages, and
/// a full queue can never deadlock (issue #15). An eighth of the cap, at least 64
/// pages.
fn reserve_pages(cap_pages: i64) -> i64 {
    (cap_pages / 8).max(64)
}

/// Pages printed receipts may use past the cap (issue #24): a receipt the POS has
/// printed has no other copy (a file waits in its folder), so at the cap, when
/// nothing can be deleted to make room, it is journalled into this reserve rather
/// than held in memory. A sixteenth of the cap, at least 64 pages; delivery
/// bookkeeping's own reserve ([`reserve_pages`]) lies beyond it.
fn receipt_reserve_pages(cap_pages: i64) -> i64 {
    (cap_pages / 16).max(64)
}

/// A retry scheduled further ahead than this is taken to mean that the box's clock
/// jumped back (boxes boot without an RTC) and is treated as due now.
/// Page cache per connection, negative = KiB (SQLite's default is 2 MiB). The agent
/// holds one connection per thread that writes (folder, serial, each upload worker,
/// maintenance): at the default, a drain filled each cache and the caches were most
/// of the process's memory. Every hot path reads or writes a few pages per commit,
/// and the OS page cache serves the rest.
const CACHE_KIB: i64 = -256;

pub const MAX_SCHEDULE_AHEAD: i64 = 6 * 3600;

/// Page size of a new queue: SQLite's smallest. Flash wear (docs/BENCHMARKS.md):
/// every commit appends each page it changed to the WAL, whole, and one order's
/// capture changes ~13 pages (its row and body, its journal row, its delivery rows,
/// three indexes, the header) and each destination's outcome two more. Most of those
/// changes are a few dozen bytes, so the page size sets the bytes written: at 1 KiB
/// an order cost 22.6 KB written, at 512 bytes 15.9 KB (before migration 0004; the
/// steady-state figures are in BENCHMARKS.md). An order's body takes about its own
/// size in pages either way (a leaf and overflow pages), and the measured capture and
/// drain rates did not move. An existing queue keeps its page size
/// (SQLite cannot change it in WAL mode without a VACUUM).
const PAGE_SIZE: i64 = 512;

/// WAL bytes between automatic checkpoints (SQLite's default is 1000 pages). A
/// checkpoint copies every page changed since the last one into the database file
/// once, however often it changed: the index and counter pages every order touches
/// are copied once per checkpoint, so rarer checkpoints copy fewer pages per order.
/// ~4 MiB of WAL whatever the page size (8192 pages of 512 bytes; 1024 of an older
/// queue's 4 KiB).
const WAL_AUTOCHECKPOINT_BYTES: i64 = 4 << 20;

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

impl Synchronous {
    /// The value of SQLite's `PRAGMA synchronous`.
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Seconds since the epoch by the box's clock (negative before 1970: the one wall
/// clock, [`crate::clock::unix_now`], the upload engine's too).
pub fn now() -> i64 {
    crate::clock::unix_now()
}

/// Called after a capture committed new orders (see [`Outbox::on_commit`]).
pub type OnCommit = std::sync::Arc<dyn Fn() + Send + Sync>;

pub struct Outbox {
    conn: Connection,
    destinations: Vec<String>,
    /// Pages captures may fill (`outbox.max_size`); 0 for a read-only outbox.
    cap_pages: i64,
    /// Pages past the cap printed receipts may fill ([`receipt_reserve_pages`]).
    receipt_reserve: i64,
    /// Bytes unparsed receipts' raw bytes may take (`outbox.unparsed_percent`
    /// of the cap); 0 for a read-only outbox.
    unparsed_max: i64,
    /// Set when a capture's commit found the cap: the next one makes room first.
    room_wanted: std::cell::Cell<bool>,
    on_commit: Option<OnCommit>,
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
        // Only a new database takes it (before WAL mode writes the header); an older
        // queue keeps its 4 KiB pages.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", cfg.synchronous.pragma())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", CACHE_KIB)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            WAL_AUTOCHECKPOINT_BYTES / page_size,
        )?;
        let cap_pages = (cfg.max_size as i64 / page_size).max(64);
        // SQLite itself enforces the hard limit (cap + reserve): an insert past it fails
        // with SQLITE_FULL and its transaction rolls back, exactly as on a full disk.
        // Captures stop at the cap itself (see `reserve_pages`).
        let receipt_reserve = receipt_reserve_pages(cap_pages);
        conn.pragma_update(
            None,
            "max_page_count",
            cap_pages + receipt_reserve + reserve_pages(cap_pages),
        )?;
        // Keeps the WAL file from staying large after a checkpoint (a WAL as big as a
        // small disk stopped everything, issue #15). Minimal on purpose: checkpoint
        // tuning for flash wear is issue #14's.
        conn.pragma_update(None, "journal_size_limit", 4i64 << 20)?;
        let mut ob = Outbox {
            conn,
            destinations: destinations.to_vec(),
            cap_pages,
            receipt_reserve,
            unparsed_max: cfg.unparsed_max_bytes() as i64,
            room_wanted: Default::default(),
            on_commit: None,
        };
        ob.migrate(path)?;
        // Every destination has its slot in delivery ids (migration 0004); a new one
        // takes the next free slot, once.
        for dest in destinations {
            ob.conn.execute(
                "INSERT INTO dest_slot (dest, slot)
                 SELECT ?1, coalesce((SELECT max(slot) + 1 FROM dest_slot), 0)
                  WHERE NOT EXISTS (SELECT 1 FROM dest_slot WHERE dest = ?1)",
                params![dest],
            )?;
        }
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
            cap_pages: 0,
            receipt_reserve: 0,
            unparsed_max: 0,
            room_wanted: Default::default(),
            on_commit: None,
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

    /// Calls `f` after every ingest that committed new (or corrected) orders, once the
    /// commit returned: the daemon wakes the upload workers with it, so an order leaves
    /// in milliseconds. Capture knows nothing of upload; this is its only signal.
    pub fn on_commit(&mut self, f: OnCommit) {
        self.on_commit = Some(f);
    }

    /// Sets this connection's `synchronous` (the daemon runs the upload workers'
    /// connections at `normal`: a delivery outcome is not fsynced on its own, see
    /// docs/GUARANTEES.md).
    pub fn set_synchronous(&mut self, s: Synchronous) -> Result<()> {
        self.conn.pragma_update(None, "synchronous", s.pragma())?;
        Ok(())
    }

    /// The queue's file, if it is one (not in memory).
    pub fn path(&self) -> Option<std::path::PathBuf> {
        self.conn
            .path()
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
    }

    /// The destinations this outbox creates delivery rows for.
    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }
}

#[cfg(test)]
mod tests;
