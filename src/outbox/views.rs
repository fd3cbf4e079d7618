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
