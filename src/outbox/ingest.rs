//! Ingest: a captured unit (file, receipt) and its orders go into one
//! transaction — the journal row, new orders with a delivery row per
//! destination, duplicates counted, corrections of rejected orders applied —
//! plus the file ledger and the per-source counters.
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

/// One captured unit's open transaction (see [`Outbox::begin_ingest`]). Dropping it
/// without [`Ingest::commit`] rolls everything back.
pub struct Ingest<'a> {
    tx: rusqlite::Transaction<'a>,
    destinations: &'a [String],
    on_commit: Option<&'a OnCommit>,
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
        let capture_id = insert_capture(&tx, unit, now, "unparsed", None)?;
        Ok(Ingest {
            tx,
            destinations: &self.destinations,
            on_commit: self.on_commit.as_ref(),
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
        insert_capture(&tx, unit, now(), "rejected", Some(error))?;
        bump(&tx, unit.source, "files_rejected", 1)?;
        tx.commit()?;
        Ok(())
    }

    /// Adds to a per-source counter (e.g. `files_seen`). Not fsynced on its own (a
    /// counter is a statistic, not a capture): the next durable commit on the queue
    /// carries it to the disk, in the same flash pages, instead of a sync of its own.
    pub fn count(&mut self, source: &str, name: &str, by: i64) -> Result<()> {
        let sync: i64 = self
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let bumped = bump(&self.conn, source, name, by);
        self.conn.pragma_update(None, "synchronous", sync)?;
        bumped
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
pub(super) fn correct_rejected(
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

pub(super) fn bump(conn: &Connection, source: &str, name: &str, by: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO counter (source, name, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (source, name) DO UPDATE SET value = value + ?3",
        params![source, name, by],
    )?;
    Ok(())
}
