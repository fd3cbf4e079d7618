-- 0003: fewer pages written per order (issue #14: flash wear).

-- Every index is one more page in the WAL for every commit that changes its table,
-- and one more page copied into the database file at each checkpoint. These two
-- served no query (checked with EXPLAIN QUERY PLAN):
--   delivery_order (order_id) duplicates the first column of the UNIQUE
--     (order_id, dest) index, which every lookup by order (and the ON DELETE
--     CASCADE of orders) uses instead, with the same cost;
--   capture_status (status, source) was never chosen: `status` scans the journal
--     by source, `reparse` walks it by id.
-- Dropped in place: their pages go to the free list and are reused.
DROP INDEX IF EXISTS delivery_order;
DROP INDEX IF EXISTS capture_status;
