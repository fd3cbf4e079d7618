//! Ingest: a captured unit (file, receipt) and its orders go into one
//! transaction — the journal row, new orders with a delivery row per
//! destination, duplicates counted, corrections of rejected orders applied —
//! plus the file ledger. How many files and receipts a source had is read from
//! the journal itself (`status`), so a capture writes no counter row.
//!
//! Invariants: every order is inserted by [`insert_order`] (captures and
//! reparse alike); `(source, order_no)` is never stored twice; an [`Ingest`]
//! dropped before its commit rolls back and leaves no trace.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureKind {
    File,
    Receipt,
}

impl CaptureKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            CaptureKind::File => "file",
            CaptureKind::Receipt => "receipt",
        }
    }
}

/// The per-source counter of commands a receipt decoder could not follow
/// (`status`: `malformed_commands`).
pub const MALFORMED_COMMANDS: &str = "malformed_commands";

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
    /// Those of `duplicates` whose number was already stored with other content: the
    /// stored order is untouched and this version is kept in `conflict`.
    pub conflicts: Vec<String>,
}

/// One captured unit's open transaction (see [`Outbox::begin_ingest`]). Dropping it
/// without [`Ingest::commit`] rolls everything back.
pub struct Ingest<'a> {
    tx: rusqlite::Transaction<'a>,
    cap_pages: i64,
    /// Pages this unit may fill up to: the cap, or for a printed receipt the cap
    /// plus the receipt reserve.
    limit_pages: i64,
    room_wanted: &'a std::cell::Cell<bool>,
    destinations: &'a [String],
    on_commit: Option<&'a OnCommit>,
    source: String,
    now: i64,
    /// Orders handed to `add`, new or not.
    seen: usize,
    report: IngestReport,
}

impl Ingest<'_> {
    /// Stores one stamped order of the unit (with a delivery row per destination), or
    /// counts it as a duplicate, or applies it as a correction of a rejected order.
    pub fn add(&mut self, order: &Order) -> Result<()> {
        let body = super::body::encode(order)?;
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
        )
        .inspect_err(|e| {
            // A full disk (or the hard limit): the next capture makes room first.
            if matches!(e, OutboxError::Full) {
                self.room_wanted.set(true);
            }
        })?;
        match stored {
            Stored::New => self.report.new += 1,
            Stored::Duplicate => self.report.duplicates.push(order.order_no.clone()),
            Stored::Corrected => self.report.corrected.push(order.order_no.clone()),
            Stored::Conflict => {
                self.report.duplicates.push(order.order_no.clone());
                self.report.conflicts.push(order.order_no.clone());
            }
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
        // Captures stop at the cap; the pages past it are the delivery reserve. Dropping
        // the transaction rolls the unit back.
        let used = if self.cap_pages > 0 {
            used_pages(&self.tx)?
        } else {
            0
        };
        if self.cap_pages > 0 && used > self.limit_pages {
            self.room_wanted.set(true);
            return Err(OutboxError::Full);
        }
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
        if used <= self.cap_pages {
            // Below the cap again: no longer "queue full". (In the receipt reserve
            // the mark stays: `status` says the queue is full.)
            self.tx.execute(
                "DELETE FROM counter WHERE source = ?1 AND name = ?2",
                params![self.source, super::room::FULL_SINCE],
            )?;
        }
        let room_wanted = self.room_wanted;
        if let Err(e) = self.tx.commit() {
            let e = OutboxError::from(e);
            room_wanted.set(matches!(e, OutboxError::Full));
            return Err(e);
        }
        room_wanted.set(false);
        if report.new > 0 || !report.corrected.is_empty() {
            if let Some(f) = self.on_commit {
                f();
            }
        }
        Ok(report)
    }
}

impl Outbox {
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
        self.ingest_counting(unit, orders, &[])
    }

    /// [`Outbox::ingest`], adding `counts` (name, n) to the source's counters in
    /// the same transaction (e.g. [`MALFORMED_COMMANDS`] met in a receipt); a
    /// count of 0 writes nothing, so the usual capture writes no counter row.
    pub fn ingest_counting(
        &mut self,
        unit: &Capture<'_>,
        orders: &[Order],
        counts: &[(&str, i64)],
    ) -> Result<IngestReport> {
        // An unparsed receipt (junk, until a template reads it) first makes room
        // within its share; one bigger than the whole share keeps no raw bytes.
        let junk = unit.kind == CaptureKind::Receipt
            && unit.raw.is_some()
            && unit.error.is_some()
            && orders.is_empty();
        let mut bare = None;
        if junk && !self.keep_unparsed_within_share(unit.raw.map_or(0, <[u8]>::len) as i64)? {
            bare = Some(super::junk::without_raw(
                unit,
                "larger than unparsed receipts' share",
            ));
        }
        let mut result = self.ingest_once(bare.as_ref().unwrap_or(unit), orders, counts);
        if junk && bare.is_none() && matches!(result, Err(OutboxError::Full)) {
            // The true limit, and nothing left to drop: the unparsed receipt is
            // journalled without its raw bytes (counted), never held in memory.
            let bare = super::junk::without_raw(unit, "the queue was full");
            result = self.ingest_once(&bare, orders, counts);
        }
        if let Err(OutboxError::Full) = result {
            // Best effort: the mark lives in the reserve, but a full disk may refuse it.
            let _ = self.note_full(unit.source, now());
        }
        result
    }

    /// One try at [`Outbox::ingest_counting`]'s transaction. A unit without its raw
    /// bytes (see `junk::without_raw`) counts one [`super::junk::UNPARSED_DROPPED`].
    fn ingest_once(
        &mut self,
        unit: &Capture<'_>,
        orders: &[Order],
        counts: &[(&str, i64)],
    ) -> Result<IngestReport> {
        let mut ingest = self.begin_ingest(unit)?;
        for order in orders {
            ingest.add(order)?;
        }
        for &(name, n) in counts {
            if n > 0 {
                bump(&ingest.tx, unit.source, name, n)?;
            }
        }
        if unit.kind == CaptureKind::Receipt && unit.raw.is_none() {
            bump(&ingest.tx, unit.source, super::junk::UNPARSED_DROPPED, 1)?;
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
        // A printed receipt may fill the receipt reserve past the cap; a file waits,
        // and so do an unparsed receipt's raw bytes (`ingest_counting` journals it
        // without them then).
        let junk = unit.raw.is_some() && unit.error.is_some();
        let limit_pages = match unit.kind {
            CaptureKind::Receipt if !junk => self.cap_pages + self.receipt_reserve,
            _ => self.cap_pages,
        };
        if self.room_wanted.get() || self.at_cap()? {
            // At the cap: unparsed junk, then delivered orders (whatever their
            // retention age), then parsed receipts' raw bytes go (`room.rs`), so
            // capture resumes as soon as deliveries go out.
            let freed = self.make_room()?;
            self.room_wanted.set(freed == 0);
            if self.at_cap()? {
                self.note_full(unit.source, now)?;
                if self.used_pages()? >= limit_pages {
                    return Err(OutboxError::Full);
                }
                log::warn!(
                    "source {}: the queue is at its size cap: a printed receipt is journalled \
                     into the receipt reserve ({} of {} pages left)",
                    unit.source,
                    limit_pages - self.used_pages()?,
                    self.receipt_reserve
                );
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // The status is provisional; `commit` sets the real one with the counts.
        // 'parsed', so that a parsed receipt never touches the unparsed index
        // (migration 0005): no extra page written per order.
        let capture_id = insert_capture(&tx, unit, now, "parsed", None)?;
        Ok(Ingest {
            tx,
            cap_pages: self.cap_pages,
            limit_pages,
            room_wanted: &self.room_wanted,
            destinations: &self.destinations,
            on_commit: self.on_commit.as_ref(),
            source: unit.source.to_string(),
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
        insert_capture(&tx, unit, now(), "rejected", Some(error))?;
        tx.commit()?;
        Ok(())
    }
}

/// The unit's journal row; returns its id.
fn insert_capture(
    tx: &rusqlite::Transaction<'_>,
    unit: &Capture<'_>,
    now: i64,
    status: &str,
    error: Option<&str>,
) -> Result<i64> {
    tx.execute(
        "INSERT INTO capture (source, kind, name, size, hash, raw, captured_at, status, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            unit.source,
            unit.kind.as_str(),
            unit.name,
            unit.size as i64,
            unit.hash,
            unit.raw,
            now,
            status,
            error
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// What [`insert_order`] did with one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stored {
    New,
    Duplicate,
    Corrected,
    Conflict,
}

/// Whether a differing copy of a rejected order replaces it (captures) or not (reparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Corrections {
    Apply,
    Ignore,
}

/// The one place an order is inserted: a new order with one delivery row per
/// destination, or a duplicate left alone, or (with `Corrections::Apply`) a correction
/// of a rejected one.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_order(
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
        return second_copy(tx, source, capture_id, order, body, now, corrections);
    }
    let order_id = tx.last_insert_rowid();
    // The row's id says its order and destination (migration 0004): `open` gave
    // every destination its slot.
    let mut ins_delivery = tx.prepare_cached(
        "INSERT INTO delivery (id, order_id, dest, state, next_at, updated_at)
         SELECT ?1 * 64 + slot, ?1, ?2, 'pending', ?3, ?3 FROM dest_slot WHERE dest = ?2",
    )?;
    for dest in destinations {
        if ins_delivery.execute(params![order_id, dest, now])? != 1 {
            return Err(OutboxError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
                Some(format!("destination {dest:?} has no slot in dest_slot")),
            )));
        }
    }
    Ok(Stored::New)
}

/// A second copy of a stored order. The same body is a quiet duplicate. A different
/// body is either the POS's correction of an order some destination rejected, or
/// the repair of a quarantined (damaged) one (with
/// `Corrections::Apply`: the body is replaced and the rejected deliveries are
/// pending again, due now; delivered ones stay delivered, pending ones go out with
/// the new body), or the same content under another stamp (a config change: a quiet
/// duplicate), or a real conflict: the stored order is left alone and this version
/// is kept in `conflict` (once per distinct body).
fn second_copy(
    tx: &rusqlite::Transaction<'_>,
    source: &str,
    capture_id: i64,
    order: &Order,
    body: &str,
    now: i64,
    corrections: Corrections,
) -> Result<Stored> {
    let stored: Option<(i64, Option<String>)> = tx
        .prepare_cached(
            "SELECT id, CAST(body AS TEXT) FROM orders WHERE source = ?1 AND order_no = ?2",
        )?
        .query_row(params![source, order.order_no], |r| {
            // A damaged body (not UTF-8) reads as None: it differs from any copy.
            Ok((r.get(0)?, r.get::<_, String>(1).ok()))
        })
        .optional()?;
    let Some((order_id, old_body)) = stored else {
        return Ok(Stored::Duplicate);
    };
    if old_body.as_deref() == Some(body) {
        return Ok(Stored::Duplicate);
    }
    if corrections == Corrections::Apply {
        let rejected: i64 = tx
            .prepare_cached(
                "SELECT count(*) FROM delivery WHERE id BETWEEN ?1 * 64 AND ?1 * 64 + 63
                    AND state IN ('rejected', 'quarantined')",
            )?
            .query_row(params![order_id], |r| r.get(0))?;
        if rejected > 0 {
            tx.execute(
                "UPDATE orders SET body = ?2, order_time = ?3 WHERE id = ?1",
                params![order_id, body, crate::order::format_time(&order.order_time)],
            )?;
            tx.execute(
                "UPDATE delivery SET state = 'pending', next_at = ?2, updated_at = ?2
                  WHERE id BETWEEN ?1 * 64 AND ?1 * 64 + 63 AND state IN ('rejected', 'quarantined')",
                params![order_id, now],
            )?;
            return Ok(Stored::Corrected);
        }
    }
    if old_body
        .as_deref()
        .is_some_and(|old| super::body::same_content(old, body))
    {
        return Ok(Stored::Duplicate);
    }
    tx.prepare_cached(
        "INSERT INTO conflict (source, order_no, order_id, body, capture_id, seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (source, order_no, body) DO NOTHING",
    )?
    .execute(params![
        source,
        order.order_no,
        order_id,
        body,
        capture_id,
        now
    ])?;
    Ok(Stored::Conflict)
}

/// Pages in use inside a transaction (file pages less the free list).
fn used_pages(conn: &Connection) -> Result<i64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    Ok(pages - free)
}

pub(super) fn bump(conn: &Connection, source: &str, name: &str, by: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO counter (source, name, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (source, name) DO UPDATE SET value = value + ?3",
        params![source, name, by],
    )?;
    Ok(())
}
