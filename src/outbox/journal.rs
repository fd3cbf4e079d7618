//! The raw capture journal as `reparse` reads it: entries with their raw
//! bytes, and storing what a fixed template got out of them.
//!
//! Invariant: reparse inserts through the same `insert_order` as capture, but
//! never applies corrections: an order already stored is a duplicate.

use super::ingest::{Corrections, Stored, insert_order};
use super::*;

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
            let body = super::body::encode(order)?;
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
                Stored::Duplicate | Stored::Corrected | Stored::Conflict => {
                    duplicates.push(order.order_no.clone())
                }
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
            conflicts: Vec::new(),
        })
    }
}
