//! Read-only views for people: `status` (per source and destination) and
//! `orders` (one order and its deliveries).
//!
//! Invariant: reads only, and every query over the queue is bounded.

use super::*;

/// `status`: what a person checks first.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub sources: Vec<SourceStatus>,
    pub destinations: Vec<DestStatus>,
    pub db_bytes: u64,
    /// Since when (unix seconds) some capture waits because the queue is full (at
    /// `outbox.max_size`, or the disk): nothing new is stored until deliveries free
    /// room. `None` while captures are stored.
    pub queue_full_since: Option<i64>,
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
    /// Order numbers seen again with other content (kept aside in the `conflict` table).
    pub conflicts: i64,
    /// Print commands the receipt decoder could not follow and skipped (a
    /// length past what a receipt can be, a command cut short by a receipt's
    /// end); the receipts around them were captured.
    pub malformed_commands: i64,
    /// Unparsed receipts dropped to keep them within their share of the queue, or
    /// journalled without their raw bytes (`outbox.unparsed_percent`).
    pub unparsed_dropped: i64,
    /// Since when this source's captures wait for room (the queue is full).
    pub queue_full_since: Option<i64>,
    pub last_error: Option<String>,
    /// When the source last captured a unit still in the journal (unix seconds), for
    /// `/metrics`; not part of `status --json`.
    #[serde(skip)]
    pub last_capture_at: Option<i64>,
}

impl SourceStatus {
    /// The total a [`JOURNAL_TOTALS`] name (and its counter) stands for.
    fn total_mut(&mut self, name: &str) -> Option<&mut i64> {
        Some(match name {
            "files_seen" => &mut self.files_seen,
            "files_ingested" => &mut self.files_ingested,
            "files_rejected" => &mut self.files_rejected,
            "receipts" => &mut self.receipts,
            "orders" => &mut self.orders,
            "duplicates" => &mut self.duplicates,
            _ => return None,
        })
    }
}

/// A source's totals in `status`: each is the sum over its journal rows plus the
/// counter of the same name, which keeps what retention deleted of them (`prune`
/// folds the deleted rows' sums into it, in the same transaction).
/// (counter name, sum over `capture` rows)
pub(super) const JOURNAL_TOTALS: [(&str, &str); 6] = [
    ("files_seen", "sum(kind = 'file')"),
    (
        "files_ingested",
        "sum(kind = 'file' AND status != 'rejected')",
    ),
    ("files_rejected", "sum(status = 'rejected')"),
    ("receipts", "sum(kind = 'receipt' AND status != 'rejected')"),
    ("orders", "sum(orders)"),
    ("duplicates", "sum(duplicates)"),
];

/// [`JOURNAL_TOTALS`]' sums as SELECT columns, in order.
pub(super) fn journal_sums() -> String {
    JOURNAL_TOTALS.map(|(_, sum)| sum).join(", ")
}

/// [`JOURNAL_TOTALS`]' sums read from a row, from column `first` on.
pub(super) fn read_sums(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<[i64; 6]> {
    let mut v = [0i64; 6];
    for (i, x) in v.iter_mut().enumerate() {
        *x = r.get(first + i)?;
    }
    Ok(v)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DestStatus {
    pub name: String,
    pub pending: i64,
    pub delivered: i64,
    pub rejected: i64,
    /// Orders whose stored row is damaged (cannot be read): kept, not sent.
    pub quarantined: i64,
    /// Seconds since the oldest pending order was stored.
    pub oldest_pending_age: Option<i64>,
    pub paused: Option<String>,
    /// Sources whose rows this destination holds back (their shop or enterprise is
    /// refused there), with why and how many of their orders wait; the others flow.
    pub paused_sources: Vec<super::SourcePause>,
    /// The last failed attempt's reason (kept as history once requests succeed again).
    pub last_error: Option<String>,
    /// When that error happened (unix seconds).
    pub last_error_at: Option<i64>,
    /// The last successful attempt after the last error (unix seconds); `None` while
    /// the last attempt failed. Set: the error is over (`status` no longer shows it).
    pub last_success_at: Option<i64>,
    /// The earliest scheduled attempt of a pending row (unix seconds); the worker
    /// may try earlier (a probe, a wake).
    pub next_due_at: Option<i64>,
    /// When the worker will try next, as far as the queue tells (unix seconds): the
    /// next scheduled row, or sooner the probe that follows a failed attempt. Filled
    /// by the caller that knows the engine's timing (`status`), `None` when nothing
    /// is pending.
    pub next_attempt_at: Option<i64>,
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

impl Outbox {
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
                if let Some(total) = s.total_mut(&name) {
                    *total = value;
                    continue;
                }
                match name.as_str() {
                    "corrected" => s.corrected = value,
                    super::ingest::MALFORMED_COMMANDS => s.malformed_commands = value,
                    super::junk::UNPARSED_DROPPED => s.unparsed_dropped = value,
                    super::room::FULL_SINCE => s.queue_full_since = Some(value),
                    _ => {}
                }
            }
            // The journal's rows are the totals; the counters above hold what
            // retention deleted of them (`prune`), so a capture writes no counter and
            // the totals never go down. The same scan finds each source's newest row
            // and newest row with an error (read by rowid below): one pass over the
            // journal, not one per source.
            let mut stmt = self.conn.prepare(&format!(
                "SELECT source, sum(status = 'unparsed'), {}, max(id),
                        max(CASE WHEN error IS NOT NULL THEN id END)
                   FROM capture GROUP BY source",
                journal_sums()
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    read_sums(r, 2)?,
                    r.get::<_, Option<i64>>(2 + JOURNAL_TOTALS.len())?,
                    r.get::<_, Option<i64>>(3 + JOURNAL_TOTALS.len())?,
                ))
            })?;
            // A queue the daemon has not upgraded yet (`status` opens it read-only
            // and migrates nothing) still counts every file and receipt in its
            // counters, as captures did before migration 0004.
            let version: i64 = self
                .conn
                .pragma_query_value(None, "user_version", |r| r.get(0))?;
            let mut at = self
                .conn
                .prepare("SELECT captured_at FROM capture WHERE id = ?1")?;
            let mut error = self
                .conn
                .prepare("SELECT error FROM capture WHERE id = ?1")?;
            for row in rows {
                let (source, unparsed, sums, newest, newest_error) = row?;
                let s = entry(&mut sources, &source);
                s.unparsed = unparsed;
                for ((name, _), n) in JOURNAL_TOTALS.iter().zip(sums) {
                    if version < 4 && !matches!(*name, "orders" | "duplicates") {
                        continue;
                    }
                    if let Some(total) = s.total_mut(name) {
                        *total += n;
                    }
                }
                if let Some(id) = newest {
                    s.last_capture_at = at.query_row(params![id], |r| r.get(0)).optional()?;
                }
                if let Some(id) = newest_error {
                    s.last_error = error.query_row(params![id], |r| r.get(0)).optional()?;
                }
            }
            let mut stmt = self
                .conn
                .prepare("SELECT source, count(*) FROM conflict GROUP BY source")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (source, n) = row?;
                entry(&mut sources, &source).conflicts = n;
            }
        }
        let mut destinations = Vec::new();
        {
            // One scan of the table for every destination's counts: the index on
            // deliveries holds pending rows only (migration 0004).
            let counts: Vec<(String, String, i64)> = self
                .conn
                .prepare("SELECT dest, state, count(*) FROM delivery GROUP BY dest, state")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<std::result::Result<_, _>>()?;
            let mut names: Vec<String> = self
                .conn
                .prepare("SELECT dest FROM dest_state")?
                .query_map([], |r| r.get(0))?
                .collect::<std::result::Result<_, _>>()?;
            names.extend(counts.iter().map(|(dest, _, _)| dest.clone()));
            let schema: i64 = self
                .conn
                .pragma_query_value(None, "user_version", |r| r.get(0))?;
            if schema >= 5 {
                let paused: Vec<String> = self
                    .conn
                    .prepare("SELECT DISTINCT dest FROM source_pause")?
                    .query_map([], |r| r.get(0))?
                    .collect::<std::result::Result<_, _>>()?;
                names.extend(paused);
            }
            names.sort();
            names.dedup();
            // The oldest pending order is the one stored first (ids grow with time,
            // and so do delivery ids): the lowest id is read from the pending rows' own
            // index, then one order is looked up, not one per pending row.
            let mut oldest = self.conn.prepare(
                "SELECT o.created_at FROM orders o
                  WHERE o.id = (SELECT order_id FROM delivery WHERE id =
                                  (SELECT min(id) FROM delivery
                                    WHERE dest = ?1 AND state = 'pending'))",
            )?;
            let mut state = self
                .conn
                .prepare("SELECT paused_reason, last_error, last_error_at, last_success_at FROM dest_state WHERE dest = ?1")?;
            let mut next_due = self.conn.prepare(
                "SELECT min(next_at) FROM delivery WHERE dest = ?1 AND state = 'pending'",
            )?;
            for name in names {
                let mut d = DestStatus {
                    name: name.clone(),
                    ..Default::default()
                };
                for (_, st, n) in counts.iter().filter(|(dest, _, _)| *dest == name) {
                    let n = *n;
                    match DeliveryState::parse(st) {
                        DeliveryState::Pending => d.pending = n,
                        DeliveryState::Delivered => d.delivered = n,
                        DeliveryState::Rejected => d.rejected = n,
                        DeliveryState::Quarantined => d.quarantined = n,
                    }
                }
                let oldest_at: Option<i64> =
                    oldest.query_row(params![name], |r| r.get(0)).optional()?;
                d.oldest_pending_age = oldest_at.map(|t| (now - t).max(0));
                d.next_due_at = next_due.query_row(params![name], |r| r.get(0))?;
                if let Some((paused, err, err_at, ok_at)) = state
                    .query_row(params![name], |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                        ))
                    })
                    .optional()?
                {
                    d.paused = paused;
                    d.last_error = err;
                    d.last_error_at = err_at;
                    d.last_success_at = ok_at;
                }
                // A queue the daemon has not upgraded yet (read-only) has no pauses
                // per source (migration 0006).
                if schema >= 5 {
                    d.paused_sources = self.source_pauses(&name)?;
                    let mut pending = self.conn.prepare_cached(
                        "SELECT count(*) FROM delivery d JOIN orders o ON o.id = d.order_id
                          WHERE d.dest = ?1 AND d.state = 'pending' AND o.source = ?2",
                    )?;
                    for p in d.paused_sources.iter_mut() {
                        p.pending = pending.query_row(params![name, p.source], |r| r.get(0))?;
                    }
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
        let queue_full_since = sources.iter().filter_map(|s| s.queue_full_since).min();
        Ok(Status {
            sources,
            destinations,
            db_bytes: (page_count * page_size) as u64,
            queue_full_since,
        })
    }

    /// When `source` last captured a unit (unix seconds): one row, newest first (the
    /// metrics endpoint asks this per source at most once a second).
    pub fn last_capture_at(&self, source: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT captured_at FROM capture WHERE source = ?1 ORDER BY id DESC LIMIT 1",
                params![source],
                |r| r.get(0),
            )
            .optional()?)
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
            "SELECT o.id, o.body, o.source, o.order_no, o.order_time FROM orders o
              WHERE (?1 IS NULL OR EXISTS (SELECT 1 FROM delivery d
                                             WHERE d.id BETWEEN o.id * 64 AND o.id * 64 + 63
                                               AND d.state = ?1))
                AND (?2 IS NULL OR o.source = ?2)
              ORDER BY o.id DESC LIMIT ?3",
        )?;
        let mut deliveries = self.conn.prepare(
            "SELECT dest, state, attempts, last_error FROM delivery
              WHERE id BETWEEN ?1 * 64 AND ?1 * 64 + 63 ORDER BY dest",
        )?;
        let rows = stmt.query_map(
            params![state.map(|s| s.as_str()), source, limit as i64],
            |r| {
                // A damaged body is shown with what the row's own columns say, and
                // why it cannot be read, instead of failing the whole listing.
                let body = match r.get_ref(1)? {
                    rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                        serde_json::from_slice::<serde_json::Value>(b)
                            .map_err(|e| format!("damaged row: the body is not an order: {e}"))
                    }
                    _ => Err("damaged row: the body is not text".to_string()),
                };
                let lossy = |i: usize| -> rusqlite::Result<String> {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Text(b) => String::from_utf8_lossy(b).into(),
                        _ => String::new(),
                    })
                };
                Ok((r.get::<_, i64>(0)?, body, lossy(2)?, lossy(3)?, lossy(4)?))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body, source, order_no, order_time) = row?;
            let order = match body {
                Ok(v) if v.is_object() => super::body::canonical(v),
                Ok(_) => serde_json::json!({"source": source, "order_no": order_no,
                    "order_time": order_time, "damaged": "damaged row: the body is not an order"}),
                Err(reason) => serde_json::json!({"source": source, "order_no": order_no,
                    "order_time": order_time, "damaged": reason}),
            };
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
