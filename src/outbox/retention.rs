//! Retention: deletes orders delivered everywhere and old raw capture bytes.
//!
//! Invariant: pending and rejected orders are never touched.

use super::*;

impl Outbox {
    /// Applies retention: deletes orders delivered everywhere longer than `retention`
    /// ago, drops raw capture bytes older than `raw_retention`. Never touches pending
    /// or rejected orders. Returns (orders deleted, raw captures dropped).
    pub fn prune(&mut self, now: i64, cfg: &OutboxConfig) -> Result<(usize, usize)> {
        let cutoff = now - cfg.retention.as_secs() as i64;
        let raw_cutoff = now - cfg.raw_retention.as_secs() as i64;
        let tx = self.conn.transaction()?;
        let orders = tx.execute(
            "DELETE FROM orders WHERE created_at < ?1 AND NOT EXISTS (
                 SELECT 1 FROM delivery d WHERE d.order_id = orders.id
                    AND (d.state != 'delivered' OR d.updated_at >= ?1))",
            params![cutoff],
        )?;
        let raws = tx.execute(
            "UPDATE capture SET raw = NULL WHERE raw IS NOT NULL AND captured_at < ?1",
            params![raw_cutoff],
        )?;
        tx.execute(
            "DELETE FROM capture WHERE captured_at < ?1 AND captured_at < ?2
                AND NOT EXISTS (SELECT 1 FROM orders WHERE capture_id = capture.id)",
            params![cutoff, raw_cutoff],
        )?;
        tx.commit()?;
        Ok((orders, raws))
    }
}
