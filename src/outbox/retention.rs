//! Retention: deletes orders delivered everywhere and old raw capture bytes.
//!
//! Invariants: pending, rejected and quarantined orders are never touched. Retention
//! never deletes what a wrong clock stamped: a box without an RTC boots in 1970 and
//! stamps its captures then; compared with the real time once the clock is set, they
//! would look decades old. So nothing is pruned while the clock reads before
//! [`GOOD_TIME_FLOOR`], and a row stamped before it is first re-stamped with the first
//! good time seen (its age counts from when the clock was known to be right).
//! A clock set wrongly into the past *after* that floor cannot be told from the truth;
//! a clock set into the future only keeps rows longer.
//! A journal row it deletes is counted into `counter` in the same transaction, so a
//! source's totals in `status` never go down.

use super::*;

/// 2020-01-01T00:00:00Z: no tillrelay box captured anything before this, so a time
/// before it is a clock that was not set (boot in 1970), never a real capture time.
pub const GOOD_TIME_FLOOR: i64 = 1_577_836_800;

impl Outbox {
    /// Applies retention: deletes orders delivered everywhere longer than `retention`
    /// ago, drops raw capture bytes older than `raw_retention`. Never touches pending,
    /// rejected or quarantined orders, and does nothing while `now` is before
    /// [`GOOD_TIME_FLOOR`]. Returns (orders deleted, raw captures dropped).
    pub fn prune(&mut self, now: i64, cfg: &OutboxConfig) -> Result<(usize, usize)> {
        if now < GOOD_TIME_FLOOR {
            return Ok((0, 0));
        }
        let cutoff = now - cfg.retention.as_secs() as i64;
        let raw_cutoff = now - cfg.raw_retention.as_secs() as i64;
        let tx = self.conn.transaction()?;
        // Stamps of a clock that was not set become "first seen with a good clock".
        for sql in [
            "UPDATE capture SET captured_at = ?1 WHERE captured_at < ?2",
            "UPDATE orders SET created_at = ?1 WHERE created_at < ?2",
            "UPDATE delivery SET updated_at = ?1 WHERE updated_at < ?2",
            "UPDATE conflict SET seen_at = ?1 WHERE seen_at < ?2",
        ] {
            tx.execute(sql, params![now, GOOD_TIME_FLOOR])?;
        }
        let orders = tx.execute(
            "DELETE FROM orders WHERE created_at < ?1 AND NOT EXISTS (
                 SELECT 1 FROM delivery d WHERE d.id BETWEEN orders.id * 64 AND orders.id * 64 + 63
                    AND (d.state != 'delivered' OR d.updated_at >= ?1))",
            params![cutoff],
        )?;
        let raws = tx.execute(
            "UPDATE capture SET raw = NULL WHERE raw IS NOT NULL AND captured_at < ?1",
            params![raw_cutoff],
        )?;
        // `status` counts a source's files, receipts and orders from the journal's
        // rows: what is deleted here moves into the counters first, in the same
        // transaction, so the totals (and the metrics' counters) never go down.
        const GONE: &str = "captured_at < ?1 AND captured_at < ?2
            AND NOT EXISTS (SELECT 1 FROM orders WHERE capture_id = capture.id)";
        let gone: Vec<(String, [i64; 6])> = tx
            .prepare(&format!(
                "SELECT source, {} FROM capture WHERE {GONE} GROUP BY source",
                super::views::journal_sums()
            ))?
            .query_map(params![cutoff, raw_cutoff], |r| {
                Ok((r.get(0)?, super::views::read_sums(r, 1)?))
            })?
            .collect::<std::result::Result<_, _>>()?;
        for (source, sums) in &gone {
            for ((name, _), n) in super::views::JOURNAL_TOTALS.iter().zip(sums) {
                if *n > 0 {
                    super::ingest::bump(&tx, source, name, *n)?;
                }
            }
        }
        tx.execute(
            &format!("DELETE FROM capture WHERE {GONE}"),
            params![cutoff, raw_cutoff],
        )?;
        tx.execute(
            "DELETE FROM conflict WHERE seen_at < ?1",
            params![cutoff.min(raw_cutoff)],
        )?;
        tx.commit()?;
        Ok((orders, raws))
    }
}
