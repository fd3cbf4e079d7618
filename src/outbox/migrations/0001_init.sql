-- 0001: the capture journal, orders, one delivery row per destination.
-- All times are unix seconds (UTC) of the box's clock.

-- Every captured unit (a folder file or a printed receipt), written in the same
-- transaction as the orders it held. For files it is also the ingest ledger:
-- (source, name, size, hash) says "this file's orders are committed".
CREATE TABLE capture (
    id          INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('file', 'receipt')),
    name        TEXT,
    size        INTEGER NOT NULL,
    hash        TEXT    NOT NULL,           -- sha1 hex of the raw bytes
    raw         BLOB,                       -- kept for raw_retention (receipts), NULL for export files
    captured_at INTEGER NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('parsed', 'partial', 'unparsed', 'rejected')),
    orders      INTEGER NOT NULL DEFAULT 0, -- new orders this unit added
    duplicates  INTEGER NOT NULL DEFAULT 0, -- orders it held that were already stored
    error       TEXT
);
CREATE INDEX capture_ledger ON capture (source, name, size, hash);
CREATE INDEX capture_status ON capture (status, source);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    order_no    TEXT    NOT NULL,
    order_time  TEXT    NOT NULL,
    body        TEXT    NOT NULL,           -- the stamped canonical order, JSON
    capture_id  INTEGER REFERENCES capture (id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (source, order_no)
);

CREATE TABLE delivery (
    id           INTEGER PRIMARY KEY,
    order_id     INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    dest         TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'rejected')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    last_error   TEXT,
    updated_at   INTEGER NOT NULL,
    UNIQUE (order_id, dest)
);
CREATE INDEX delivery_due ON delivery (dest, state, next_at);
CREATE INDEX delivery_order ON delivery (order_id);

-- A destination found misconfigured (bad key, signature, shop): sending stops until a probe succeeds.
CREATE TABLE dest_state (
    dest          TEXT PRIMARY KEY,
    paused_reason TEXT,
    paused_at     INTEGER,
    last_error    TEXT,
    last_error_at INTEGER,
    last_success_at INTEGER
);

-- Per-source counters shown by `status` (files seen, rejected, …).
CREATE TABLE counter (
    source TEXT    NOT NULL,
    name   TEXT    NOT NULL,
    value  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source, name)
);
