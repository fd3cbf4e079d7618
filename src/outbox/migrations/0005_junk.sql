-- 0005: unparsed receipts have a bounded share of the queue (issue #24).

-- The journal rows whose raw bytes count against the share: unparsed receipts still
-- holding their bytes, oldest first. Partial, so a parsed receipt (every order's
-- path) never writes an entry: captures insert their journal row as 'parsed' and
-- only an unparsed receipt's commit adds one. Sizing the share and finding the
-- oldest to drop read this index instead of the whole journal.
CREATE INDEX capture_unparsed ON capture (id) WHERE status = 'unparsed' AND raw IS NOT NULL;
