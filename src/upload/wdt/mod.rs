//! Wangdiantong (旺店通) `sales.RawTrade.pushSelf2` / `pushSelf`: configuration, raw
//! trades from stamped orders, the `sign` signature, reply classification, batching.
//!
//! Invariants:
//! - Each order becomes one raw trade (`tid` = optional per-source prefix + order number)
//!   with one order line per order line (`oid` = `tid-N`, N from 1), and the amounts obey
//!   the spec's relations exactly: line `total_amount = price*num + adjust_amount -
//!   discount` (the POS's printed amount is `total_amount`; `adjust_amount` takes its
//!   rounding), Σ `share_discount` = the order discount, `receivable = Σ(total_amount -
//!   share_discount)`, `goods_count = Σ num`, `order_count` = lines. Decimals go out as
//!   strings with at most 4 decimals, never through a float.
//! - A refund is a trade of returned goods: positive quantities and amounts, refund
//!   statuses, `refund_amount` = what the line was worth.
//! - Every field the seed marks required is present, from the order or from the
//!   documented, configurable defaults (an in-store sale's receiver is the shop itself).
//! - A request holds at most `batch_size` (≤ 100) trades of one `shop_no`, with distinct
//!   `tid`s. Trades named in `error_list` are rejected alone; a batch refused for one
//!   trade's data is resent trade by trade so that only the bad one is rejected.
//! - The secret (before the `:`) is never sent; the salt is sent in the query as the spec
//!   wants, so the query string is never logged.
//!
//! Layout: [`settings`] (the `[wdt]` / `[source.wdt]` tables, their validation,
//! and the resolution of a source's identity), [`request`] (raw trades and the request body), [`sign`]
//! (`sign`, `timestamp`), [`classify`] (status and messages of a reply), [`client`] (the
//! requests, and the engine's [`crate::upload::Destination`]).

mod classify;
mod client;
mod request;
mod settings;
mod sign;
#[cfg(test)]
mod tests;

pub use classify::*;
pub use client::*;
pub use request::*;
pub use settings::*;
pub use sign::*;

pub const DEFAULT_URL: &str = "http://wdt.wangdian.cn/openapi";
pub const PUSH_SELF2: &str = "sales.RawTrade.pushSelf2";
pub const PUSH_SELF: &str = "sales.RawTrade.pushSelf";
/// The harmless call of `check-config --online` (the spec's signature vector uses it).
pub const CORE_NOW: &str = "system.Core.now";
/// WDT timestamps count from 2012-01-01 00:00:00 UTC+8.
pub const EPOCH_OFFSET: i64 = 1325347200;
pub const MAX_BATCH: usize = 100;

/// One batch in flight by default: on loopback a second one gained 5–15 % and cost
/// 4 MB of peak RSS (two batches built at once). Over a WAN, where a batch waits a
/// round trip and the cloud's work, 2 overlaps building the next batch with that
/// wait. Each batch in flight is a possible re-push after a crash (an update of the
/// same trades).
pub const DEFAULT_CONCURRENCY: usize = 1;
pub const MAX_CONCURRENCY: usize = 4;
pub const DEFAULT_BUYER_NICK: &str = "门店顾客";
/// Max lengths (characters) from the seed.
pub const MAX_ID: usize = 40;
pub const MAX_GOODS_NAME: usize = 255;
pub const MAX_SPEC_NAME: usize = 100;

/// The vendor's advice after a rate-limit message: wait 5–10 minutes (the wait is
/// jittered between this and twice this).
pub const DEFAULT_RATE_LIMIT_WAIT_SECS: u64 = 300;

/// Messages of status 100 (substrings), by what they mean.
pub const RATE_LIMIT_MESSAGES: [&str; 2] =
    ["超过每分钟最大调用频率限制", "超过每分钟最大并发次数限制"];
pub const CONFIG_MESSAGES: [&str; 3] = [
    "店铺编号不存在或已停用",
    "店铺平台不是自有平台",
    "新建订单权限不足",
];
/// About one trade's data. `金额不合法` is the emulator's message for a broken amount
/// relation (the spec names no message for it).
pub const DATA_MESSAGES: [&str; 5] = [
    "非法字符",
    "数量不合法",
    "下单时间非法",
    "Data truncation",
    "金额不合法",
];
