-- 0006: a pause scoped to what is wrong (issue #26).

-- A destination found misconfigured as a whole (key, signature, permission) is paused
-- in dest_state, as before. A source whose identity the destination refuses (its
-- Wangdiantong shop_no 店铺编号不存在或已停用, its Ovopark shopId 206004 or
-- orgId/enterpriseId) pauses that source's rows for that destination only: they stay
-- pending, are left out of every claim but a slow probe of one of them, and every
-- other source's rows go on. One row per paused (destination, source); none while
-- nothing is wrong, so this costs no page per order.
CREATE TABLE source_pause (
    dest      TEXT    NOT NULL,
    source    TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    paused_at INTEGER NOT NULL,
    PRIMARY KEY (dest, source)
) WITHOUT ROWID;
