//! The delivery state machine: claim due rows, record outcomes
//! (delivered / retry at a time / rejected), pause a destination, re-queue
//! rejected rows, replace a fixed order.
//!
//! A pause has the scope of what is wrong: a destination (`dest_state`, its key or
//! signature) or one source's rows for it (`source_pause`, its shop or enterprise).
//!
//! Invariants: `pending → delivered | rejected`; `rejected → pending` only by an
//! explicit retry (or a correction at ingest); every claim is bounded by a
//! `LIMIT`, and rows scheduled absurdly far ahead (a clock jump) count as due.

use super::*;

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
    /// The order's stored body cannot be read (a damaged row): kept with the reason,
    /// never claimed; `retry` puts it back to pending.
    Quarantined,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Rejected => "rejected",
            DeliveryState::Quarantined => "quarantined",
        }
    }

    pub(super) fn parse(s: &str) -> DeliveryState {
        match s {
            "delivered" => DeliveryState::Delivered,
            "rejected" => DeliveryState::Rejected,
            "quarantined" => DeliveryState::Quarantined,
            _ => DeliveryState::Pending,
        }
    }
}

/// Which pending rows a claim takes (see [`Outbox::claim`]).
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// Every source's.
    All,
    /// One source's only (the probe of a paused source).
    Only(&'a str),
    /// Every source's but these (the sources paused for the destination).
    Except(&'a [String]),
}

impl Claim<'_> {
    /// The claim's `(only, except)` parameters: a source name, a JSON array of names.
    fn params(&self) -> (Option<String>, Option<String>) {
        match self {
            Claim::All => (None, None),
            Claim::Except([]) => (None, None),
            Claim::Only(s) => (Some(s.to_string()), None),
            Claim::Except(l) => (None, serde_json::to_string(l).ok()),
        }
    }
}

/// A source whose rows a destination holds back (its identity there is refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcePause {
    pub source: String,
    /// The destination's words, with what to fix.
    pub reason: String,
    /// Paused since (unix seconds).
    pub since: i64,
    /// Its orders waiting for this destination (filled by `status`).
    pub pending: i64,
}

/// What became of one delivery attempt, as [`Outbox::record_outcomes`] stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Delivered(Option<String>),
    Retry { next_at: i64, error: String },
    Rejected(String),
}

impl Outbox {
    /// Up to `limit` pending deliveries to `dest` that are due at `now`, oldest first.
    /// Rows scheduled absurdly far ahead (the clock jumped back) count as due. A row
    /// whose order cannot be read (a damaged body) is quarantined for every
    /// destination, with the reason, and the claim goes on without it.
    pub fn claim_due(&mut self, dest: &str, now: i64, limit: usize) -> Result<Vec<Due>> {
        self.claim(dest, now, limit, &Claim::All)
    }

    /// [`Outbox::claim_due`] narrowed to the rows of some sources, or to all but some
    /// (the sources paused for `dest`: their rows stay pending and are left out of
    /// every claim but their probe).
    pub fn claim(
        &mut self,
        dest: &str,
        now: i64,
        limit: usize,
        which: &Claim<'_>,
    ) -> Result<Vec<Due>> {
        loop {
            let (out, damaged) = self.claim_readable(dest, now, limit, which)?;
            if damaged.is_empty() {
                return Ok(out);
            }
            for (order_id, reason) in &damaged {
                log::error!(
                    "queue: order #{order_id} cannot be read and is quarantined (kept; every \
                     other order goes on): {reason}"
                );
                self.conn.execute(
                    "UPDATE delivery SET state = 'quarantined', last_error = ?2, updated_at = ?3
                      WHERE id BETWEEN ?1 * 64 AND ?1 * 64 + 63 AND state = 'pending'",
                    params![order_id, format!("damaged row: {reason}"), now],
                )?;
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    /// One claim: the readable due rows, and the order ids (with why) of those that
    /// could not be read.
    fn claim_readable(
        &mut self,
        dest: &str,
        now: i64,
        limit: usize,
        which: &Claim<'_>,
    ) -> Result<(Vec<Due>, Vec<Damaged>)> {
        let (only, except) = which.params();
        // The source filters are NULL for a plain claim (the common case: no paused
        // source), so the claim still walks `delivery_due` in order and stops at LIMIT.
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.id, o.id, o.source, o.body, d.attempts FROM delivery d
               JOIN orders o ON o.id = d.order_id
              WHERE d.dest = ?1 AND d.state = 'pending' AND (d.next_at <= ?2 OR d.next_at > ?3)
                AND (?5 IS NULL OR o.source = ?5)
                AND (?6 IS NULL OR o.source NOT IN (SELECT value FROM json_each(?6)))
              ORDER BY d.next_at, d.id LIMIT ?4",
        )?;
        let mut rows = stmt.query(params![
            dest,
            now,
            now + MAX_SCHEDULE_AHEAD,
            limit as i64,
            only,
            except
        ])?;
        let (mut out, mut damaged) = (Vec::new(), Vec::new());
        while let Some(r) = rows.next()? {
            let delivery_id: i64 = r.get(0)?;
            let order_id: i64 = r.get(1)?;
            let attempts: i64 = r.get(4)?;
            let body = r.get_ref(3)?;
            let read = text(r.get_ref(2)?).and_then(|source| {
                let order: Order = match body {
                    rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                        serde_json::from_slice(b)
                            .map_err(|e| format!("the body is not an order: {e}"))?
                    }
                    _ => return Err("the body is not text".to_string()),
                };
                Ok((source, order))
            });
            match read {
                Ok((source, order)) => out.push(Due {
                    delivery_id,
                    order_id,
                    source,
                    order,
                    attempts: attempts as u32,
                }),
                Err(reason) => damaged.push((order_id, reason)),
            }
        }
        Ok((out, damaged))
    }

    /// When the next pending delivery to `dest` is due, if any.
    pub fn next_due_at(&self, dest: &str) -> Result<Option<i64>> {
        self.next_due_except(dest, &[])
    }

    /// [`Outbox::next_due_at`] of the rows of every source but `paused`.
    pub fn next_due_except(&self, dest: &str, paused: &[String]) -> Result<Option<i64>> {
        if paused.is_empty() {
            return Ok(self.conn.query_row(
                "SELECT min(next_at) FROM delivery WHERE dest = ?1 AND state = 'pending'",
                params![dest],
                |r| r.get(0),
            )?);
        }
        let except = serde_json::to_string(paused).unwrap_or_default();
        Ok(self.conn.query_row(
            "SELECT min(d.next_at) FROM delivery d JOIN orders o ON o.id = d.order_id
              WHERE d.dest = ?1 AND d.state = 'pending'
                AND o.source NOT IN (SELECT value FROM json_each(?2))",
            params![dest, except],
            |r| r.get(0),
        )?)
    }

    /// Pauses (`Some(reason)`) or resumes (`None`) the rows of `source` for `dest`: its
    /// identity there is refused (a shop, an enterprise). The first pause's time is kept
    /// while the reason changes.
    pub fn set_source_paused(
        &mut self,
        dest: &str,
        source: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        match reason {
            Some(r) => self.conn.execute(
                "INSERT INTO source_pause (dest, source, reason, paused_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (dest, source) DO UPDATE SET reason = ?3",
                params![dest, source, r, now()],
            )?,
            None => self.conn.execute(
                "DELETE FROM source_pause WHERE dest = ?1 AND source = ?2",
                params![dest, source],
            )?,
        };
        Ok(())
    }

    /// The sources paused for `dest`: `(source, reason, since)`, by source.
    pub fn source_pauses(&self, dest: &str) -> Result<Vec<SourcePause>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT source, reason, paused_at FROM source_pause WHERE dest = ?1
              ORDER BY source LIMIT 1000",
        )?;
        let rows = stmt.query_map(params![dest], |r| {
            Ok(SourcePause {
                source: r.get(0)?,
                reason: r.get(1)?,
                since: r.get(2)?,
                pending: 0,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
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

    /// Records the last error or success of a destination, for `status`. An error
    /// clears the success time, so `last_success_at` set means "a request succeeded
    /// after the last error" (the destination is healthy again) even within one
    /// second; the error itself is kept, with its time, as history.
    ///
    /// A success after an error, or the first one, is written at once; while nothing
    /// else changes, `last_success_at` is moved forward at most once every
    /// [`LAST_SUCCESS_REFRESH`] seconds (flash wear, issue #14: a page written per pass
    /// was one more page per order in the WAL). So it may lag the real last success by
    /// that much, never more; it is never left set after an error.
    pub fn note_attempt(&mut self, dest: &str, error: Option<&str>) -> Result<()> {
        let now = now();
        match error {
            Some(e) => self.conn.execute(
                "INSERT INTO dest_state (dest, last_error, last_error_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (dest) DO UPDATE SET last_error = ?2, last_error_at = ?3,
                     last_success_at = NULL",
                params![dest, e, now],
            )?,
            // An upsert whose WHERE is false changes no row, so SQLite writes no page.
            // A time ahead of now (the clock went back) is replaced at once.
            None => self.conn.execute(
                "INSERT INTO dest_state (dest, last_success_at) VALUES (?1, ?2)
                 ON CONFLICT (dest) DO UPDATE SET last_success_at = ?2
                  WHERE last_success_at IS NULL OR last_success_at > ?2
                     OR last_success_at <= ?2 - ?3",
                params![dest, now, LAST_SUCCESS_REFRESH],
            )?,
        };
        Ok(())
    }

    /// Brings every pending row of `dest` scheduled after `now` forward to `now` (the
    /// cloud answers again: its backlog is due at once, and `status` says so).
    /// Returns how many rows moved.
    pub fn reset_due(&mut self, dest: &str, now: i64) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE delivery SET next_at = ?2 WHERE dest = ?1 AND state = 'pending' AND next_at > ?2",
            params![dest, now],
        )?)
    }

    /// Puts rejected (and quarantined) deliveries back to pending (after the data,
    /// config or damaged row was fixed).
    /// `dest`/`order_no` narrow it down; returns how many rows were re-queued.
    pub fn retry_rejected(&mut self, dest: Option<&str>, order_no: Option<&str>) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE delivery SET state = 'pending', next_at = ?3, updated_at = ?3
              WHERE state IN ('rejected', 'quarantined') AND (?1 IS NULL OR dest = ?1)
                AND (?2 IS NULL OR order_id IN (SELECT id FROM orders WHERE order_no = ?2))",
            params![dest, order_no, now()],
        )?)
    }

    /// Replaces a stored order's body (a fixed order re-dropped for `retry`).
    pub fn replace_order(&mut self, source: &str, order: &Order) -> Result<bool> {
        let body = super::body::encode(order)?;
        Ok(self.conn.execute(
            "UPDATE orders SET body = ?3 WHERE source = ?1 AND order_no = ?2",
            params![source, order.order_no, body],
        )? > 0)
    }
}

/// Seconds between two writes of a healthy destination's `last_success_at` (see
/// [`Outbox::note_attempt`]).
pub const LAST_SUCCESS_REFRESH: i64 = 60;

/// An order id whose row cannot be read, with why.
type Damaged = (i64, String);

/// A text column as a `String`, or why it cannot be one (a damaged row).
fn text(v: rusqlite::types::ValueRef<'_>) -> std::result::Result<String, String> {
    match v {
        rusqlite::types::ValueRef::Text(b) => std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|e| format!("the source is not UTF-8: {e}")),
        _ => Err("the source is not text".to_string()),
    }
}
