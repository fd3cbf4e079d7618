-- 0004: fewer pages written per order (issue #14: flash wear). Every index is one more
-- page (or, at 512-byte pages, a rebalance of three) in the WAL for every commit that
-- changes its table, and one more page copied into the database file at checkpoints.

-- 1. A delivery row is found by its order without an index: its id is
--    order_id * 64 + its destination's slot (dest_slot), so an order's deliveries
--    are one rowid range, and a new order's rows are appended at the table's end.
--    The UNIQUE (order_id, dest) index (two entries per order, and an index append
--    rebalanced its last three leaves every few orders) and the foreign key (which
--    needed that index) go; the trigger below is the ON DELETE CASCADE.
CREATE TABLE dest_slot (
    dest TEXT PRIMARY KEY,
    slot INTEGER NOT NULL UNIQUE CHECK (slot BETWEEN 0 AND 63)
);
INSERT INTO dest_slot (dest, slot)
  SELECT dest, row_number() OVER (ORDER BY dest) - 1 FROM (SELECT DISTINCT dest FROM delivery);
CREATE TABLE delivery_new (
    id           INTEGER PRIMARY KEY,   -- order_id * 64 + dest_slot.slot
    order_id     INTEGER NOT NULL,      -- orders.id
    dest         TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'rejected', 'quarantined')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    last_error   TEXT,
    updated_at   INTEGER NOT NULL
);
INSERT INTO delivery_new
  SELECT d.order_id * 64 + s.slot, d.order_id, d.dest, d.state, d.attempts, d.next_at,
         d.last_error, d.updated_at
    FROM delivery d JOIN dest_slot s ON s.dest = d.dest;
DROP TABLE delivery;
ALTER TABLE delivery_new RENAME TO delivery;
CREATE TRIGGER order_deleted AFTER DELETE ON orders BEGIN
    DELETE FROM delivery WHERE id BETWEEN old.id * 64 AND old.id * 64 + 63;
END;

-- 2. delivery_due held every delivery row, so each outcome moved an entry from the
--    row's 'pending' range to its 'delivered' one, and retention deleted it again.
--    The only queries that seek by it ask for pending rows (the claim, the next due
--    time, bringing the backlog forward): it now holds the pending rows alone. A
--    capture adds its entries to a small index (a page or two while the queue keeps
--    up), an outcome only removes one, retention has none to delete. `status` counts
--    deliveries by state with one scan of the table.
CREATE INDEX delivery_due ON delivery (dest, next_at) WHERE state = 'pending';

-- 3. The file ledger recognised a committed file by (source, name, size, hash): the
--    hash is 40 hex characters in every entry, so a 512-byte index page held five
--    and split every few captures. (source, name, size) finds the one or two rows a
--    lookup checks (the hash is compared on the row), and still serves `status`'s
--    per-source lookups.
DROP INDEX IF EXISTS capture_ledger;
CREATE INDEX capture_ledger ON capture (source, name, size);

-- 4. A capture bumped a counter row (files seen, ingested, rejected, receipts): one
--    more page for every order. `status` now counts the journal's rows, and these
--    counters hold only what retention deleted from the journal. What they held so
--    far counted the rows still in the journal too: those are taken off once.
UPDATE counter SET value = max(0, value - (SELECT count(*) FROM capture c
    WHERE c.source = counter.source AND CASE counter.name
      WHEN 'files_seen' THEN c.kind = 'file'
      WHEN 'files_ingested' THEN c.kind = 'file' AND c.status != 'rejected'
      WHEN 'files_rejected' THEN c.status = 'rejected'
      WHEN 'receipts' THEN c.kind = 'receipt' AND c.status != 'rejected' END))
  WHERE name IN ('files_seen', 'files_ingested', 'files_rejected', 'receipts');
