//! Room at the cap: how full the queue is, making room, the "queue full" mark
//! `status` shows, and bounding the WAL under pressure.
//!
//! Room is made in this order, each step only when the one before freed nothing
//! (issue #24):
//! 1. the oldest unparsed receipts (junk until a template reads it: `junk.rs`),
//!    counted as `unparsed_dropped`;
//! 2. orders delivered everywhere, oldest first, whatever their retention age;
//! 3. the raw bytes of the oldest parsed receipts (their orders stay: only the copy
//!    kept for `reparse` goes).
//!
//! Invariants: no pending, rejected or quarantined order is ever deleted here;
//! everything here writes inside the reserves that captures cannot use, so it
//! works on a queue that captures filled.

use super::*;

/// How many delivered orders one pass of [`Outbox::make_room`] deletes at most.
const ROOM_BATCH: i64 = 500;

/// The per-source counter that holds since when captures wait for room.
pub(super) const FULL_SINCE: &str = "queue_full_since";

impl Outbox {
    /// Pages in use (the file's pages less the free list), which captures may fill up
    /// to the cap.
    pub(super) fn used_pages(&self) -> Result<i64> {
        let pages: i64 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))?;
        let free: i64 = self
            .conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
        Ok(pages - free)
    }

    /// Whether captures may not add to the queue any more (`outbox.max_size`).
    pub fn at_cap(&self) -> Result<bool> {
        Ok(self.cap_pages > 0 && self.used_pages()? >= self.cap_pages)
    }

    /// Called by a capture at the cap: makes room in the order the module says
    /// (one batch of the first kind there is), then checkpoints the WAL so that a
    /// full disk gets its space back. Returns how many rows it dropped, deleted or
    /// emptied.
    pub fn make_room(&mut self) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let (junk, junk_bytes) =
            super::junk::drop_oldest_unparsed(&tx, (self.unparsed_max / 4).max(1))?;
        if junk > 0 {
            tx.commit()?;
            self.checkpoint();
            log::warn!(
                "queue at its size cap: dropped the {junk} oldest unparsed receipt(s) \
                 ({junk_bytes} bytes) to make room; counted as unparsed_dropped in status"
            );
            return Ok(junk);
        }
        let deleted = tx.execute(
            "DELETE FROM orders WHERE id IN (
                 SELECT o.id FROM orders o
                  WHERE NOT EXISTS (SELECT 1 FROM delivery d
                                     WHERE d.id BETWEEN o.id * 64 AND o.id * 64 + 63
                                       AND d.state != 'delivered')
                  ORDER BY o.id LIMIT ?1)",
            params![ROOM_BATCH],
        )?;
        if deleted > 0 {
            // A parsed receipt whose orders are gone keeps its journal row (the ledger)
            // but not its raw bytes; unparsed receipts are never touched.
            tx.execute(
                "UPDATE capture SET raw = NULL WHERE raw IS NOT NULL AND status = 'parsed'
                    AND NOT EXISTS (SELECT 1 FROM orders WHERE capture_id = capture.id)",
                [],
            )?;
        }
        let mut emptied = 0;
        if deleted == 0 {
            emptied = tx.execute(
                "UPDATE capture SET raw = NULL WHERE id IN (
                     SELECT id FROM capture WHERE raw IS NOT NULL AND kind = 'receipt'
                        AND status IN ('parsed', 'partial') ORDER BY id LIMIT ?1)",
                params![ROOM_BATCH],
            )?;
        }
        tx.commit()?;
        self.checkpoint();
        if deleted > 0 {
            log::info!("queue at its size cap: deleted {deleted} delivered order(s) to make room");
        } else if emptied > 0 {
            log::warn!(
                "queue at its size cap: dropped the raw bytes of the {emptied} oldest parsed \
                 receipt(s) to make room (their orders are kept)"
            );
        }
        Ok(deleted + emptied)
    }

    /// Moves the WAL into the database and truncates it (to `journal_size_limit`).
    /// Best effort: a reader holding an old snapshot only makes it partial.
    pub fn checkpoint(&self) {
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    /// Marks `source` as waiting for room (kept from the first time), for `status`;
    /// cleared by its next stored capture. Called on [`OutboxError::Full`].
    pub fn note_full(&self, source: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO counter (source, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (source, name) DO NOTHING",
            params![source, FULL_SINCE, now],
        )?;
        Ok(())
    }
}
