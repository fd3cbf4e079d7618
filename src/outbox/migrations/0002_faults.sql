-- 0002: what a damaged row or a conflicting copy leaves behind (issue #15).

-- A delivery may now be 'quarantined': its order's stored body cannot be read
-- (a damaged row). It is kept with the reason in last_error and never claimed again,
-- so every other order flows; `retry` puts it back to pending once the body is fixed.
-- SQLite cannot alter a CHECK constraint: the table is rebuilt with the same columns.
CREATE TABLE delivery_new (
    id           INTEGER PRIMARY KEY,
    order_id     INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    dest         TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'rejected', 'quarantined')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    last_error   TEXT,
    updated_at   INTEGER NOT NULL,
    UNIQUE (order_id, dest)
);
INSERT INTO delivery_new SELECT id, order_id, dest, state, attempts, next_at, last_error, updated_at
  FROM delivery;
DROP TABLE delivery;
ALTER TABLE delivery_new RENAME TO delivery;
CREATE INDEX delivery_due ON delivery (dest, state, next_at);
CREATE INDEX delivery_order ON delivery (order_id);

-- A second copy of a stored order (same source and order_no) whose content differs:
-- a real conflict, not a re-export. The stored order is left as it was; the other
-- version is kept here, once per distinct body, for a person to decide.
CREATE TABLE conflict (
    id          INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    order_no    TEXT    NOT NULL,
    order_id    INTEGER,                    -- the stored order (NULL once retention deleted it)
    body        TEXT    NOT NULL,           -- the other version, stamped canonical JSON
    capture_id  INTEGER,                    -- the unit it came in
    seen_at     INTEGER NOT NULL,
    UNIQUE (source, order_no, body)
);
CREATE INDEX conflict_source ON conflict (source, id);
