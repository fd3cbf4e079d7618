//! Unparsed receipts' share of the queue (issue #24: 12 MiB of printable bytes
//! without a cut filled a 4 MB queue for good, and the receipts printed next were
//! held in memory and lost at stop).
//!
//! A receipt no template could read is journalled `unparsed` with its raw bytes,
//! for `reparse`. Those bytes may take at most `outbox.unparsed_percent` of the cap
//! (`Outbox::unparsed_max`): before an unparsed receipt is journalled, the oldest
//! unparsed receipts (of any source) are dropped until it fits, and at the cap
//! they are the first thing dropped to make room (`room.rs`). One bigger than the
//! whole share, or one arriving when the queue is full with nothing left to drop,
//! is journalled without its raw bytes.
//!
//! Invariants:
//! - Only unparsed receipts' journal rows are dropped here, never a row with an
//!   order, a file's ledger row, or a partly parsed receipt.
//! - A dropped row's totals (`receipts`) move into `counter` in the same
//!   transaction, as retention does, so `status` never counts down; each drop is
//!   counted per source as [`UNPARSED_DROPPED`] and logged.
//! - Sizing the share reads the partial index `capture_unparsed` (migration 0005)
//!   and only when an unparsed receipt is journalled or room is needed: the path
//!   of a parsed receipt reads and writes nothing more than before.

use super::*;

/// The per-source counter of unparsed receipts dropped or journalled without their
/// raw bytes (`status`: `unparsed_dropped`).
pub const UNPARSED_DROPPED: &str = "unparsed_dropped";

/// The unparsed journal rows still holding raw bytes, oldest first.
const JUNK: &str = "status = 'unparsed' AND raw IS NOT NULL";

/// Most rows one drop looks at (the oldest first).
const DROP_BATCH: i64 = 500;

/// `unit` without its raw bytes, saying why in its error.
pub(super) fn without_raw<'a>(unit: &Capture<'a>, why: &str) -> Capture<'a> {
    let mut bare = unit.clone();
    bare.raw = None;
    bare.error = Some(format!(
        "{}; raw bytes not kept ({why})",
        unit.error.as_deref().unwrap_or("not parsed")
    ));
    log::warn!(
        "source {}: an unparsed receipt of {} bytes is journalled without its raw bytes ({why})",
        unit.source,
        unit.size
    );
    bare
}

impl Outbox {
    /// Bytes the raw bytes of unparsed receipts take now.
    pub fn unparsed_bytes(&self) -> Result<i64> {
        Ok(self.conn.query_row(
            &format!("SELECT coalesce(sum(length(raw)), 0) FROM capture WHERE {JUNK}"),
            [],
            |r| r.get(0),
        )?)
    }

    /// Before an unparsed receipt of `size` bytes is journalled: drops the oldest
    /// unparsed receipts until it fits in the share. False when it is bigger than
    /// the whole share (it keeps no raw bytes then, and nothing is dropped).
    pub(super) fn keep_unparsed_within_share(&mut self, size: i64) -> Result<bool> {
        if self.unparsed_max <= 0 {
            return Ok(true);
        }
        if size > self.unparsed_max {
            return Ok(false);
        }
        let over = self.unparsed_bytes()? + size - self.unparsed_max;
        if over > 0 {
            let tx = self.conn.transaction()?;
            let (n, bytes) = drop_oldest_unparsed(&tx, over)?;
            tx.commit()?;
            log::warn!(
                "queue: dropped the {n} oldest unparsed receipt(s) ({bytes} bytes) to keep \
                 unparsed receipts within their share ({} bytes, outbox.unparsed_percent); \
                 counted as unparsed_dropped in status",
                self.unparsed_max
            );
        }
        Ok(true)
    }
}

/// Drops the oldest unparsed receipts (journal rows with their raw bytes), of any
/// source, until at least `bytes` of raw bytes are gone or none is left; counts
/// them per source. Returns (rows, raw bytes) dropped.
pub(super) fn drop_oldest_unparsed(
    tx: &rusqlite::Transaction<'_>,
    bytes: i64,
) -> Result<(usize, i64)> {
    let rows: Vec<(i64, i64)> = tx
        .prepare_cached(&format!(
            "SELECT id, length(raw) FROM capture WHERE {JUNK} ORDER BY id LIMIT ?1"
        ))?
        .query_map(params![DROP_BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let mut ids = Vec::new();
    let mut freed = 0;
    for (id, len) in rows {
        if freed >= bytes {
            break;
        }
        ids.push(id);
        freed += len;
    }
    if ids.is_empty() {
        return Ok((0, 0));
    }
    let ids_json = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
    const CHOSEN: &str = "id IN (SELECT value FROM json_each(?1))";
    // What `status` counts from these rows moves into the counters first.
    let gone: Vec<(String, i64, [i64; 6])> = tx
        .prepare(&format!(
            "SELECT source, count(*), {} FROM capture WHERE {CHOSEN} GROUP BY source",
            super::views::journal_sums()
        ))?
        .query_map(params![ids_json], |r| {
            Ok((r.get(0)?, r.get(1)?, super::views::read_sums(r, 2)?))
        })?
        .collect::<std::result::Result<_, _>>()?;
    for (source, n, sums) in &gone {
        for ((name, _), v) in super::views::JOURNAL_TOTALS.iter().zip(sums) {
            if *v > 0 {
                super::ingest::bump(tx, source, name, *v)?;
            }
        }
        super::ingest::bump(tx, source, UNPARSED_DROPPED, *n)?;
    }
    tx.execute(
        &format!("DELETE FROM capture WHERE {CHOSEN}"),
        params![ids_json],
    )?;
    Ok((ids.len(), freed))
}

#[cfg(test)]
mod tests;
