//! Wangdiantong (旺店通) `sales.RawTrade.pushSelf2` / `pushSelf`: configuration, raw
//! trades from stamped orders, the `sign` signature, reply classification, batching,
//! and `check-config --online`'s checks (the account by `system.Core.now`, each
//! source's shop by `setting.Shop.queryShop`).
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
//!   `tid`s. Each `error_list` entry's free text is classified like a whole call's
//!   message, for its trade alone (matched by `no`, any id it carries, a line's oid, or
//!   a tid its text names); an entry naming no trade, or `new_count + chg_count` short
//!   of the batch, has every trade confirmed by `searchSelfOrder` (by modification
//!   time), never assumed delivered. Trade times go out as 东八区 wall time converted
//!   from the order's zone. A whole call refused
//!   with a data message or one nobody recognises (status 100) is isolated: the trade
//!   the message names is set aside and the others sent again at once, else the batch
//!   is split in halves until the trade is alone; one refused trade never holds back
//!   the others. A lone trade refused with an unrecognised message is retried until
//!   `give_up_after` has passed, then rejected; a trade time ahead of the server's
//!   clock (`下单时间非法`) waits for it (rejected when over an hour ahead).
//! - The secret (before the `:`) is never sent; the salt is sent in the query as the spec
//!   wants, so the query string is never logged.
//!
//! Layout: [`settings`] (the `[wdt]` / `[source.wdt]` tables, their validation,
//! and the resolution of a source's identity), [`request`] (raw trades and the request body), [`sign`]
//! (`sign`, `timestamp`), [`classify`] (status and messages of a reply), [`client`] (the
//! requests, and the engine's [`crate::upload::Destination`]), `confirm` (searchSelfOrder:
//! what an answer leaves in doubt), `isolate` (the trade a whole-call refusal names).

mod classify;
mod client;
mod confirm;
mod isolate;
mod request;
mod settings;
mod sign;
#[cfg(test)]
mod tests;

pub use classify::*;
pub use client::*;
pub use isolate::*;
pub use request::*;
pub use settings::*;
pub use sign::*;

/// The formal environment over TLS: the seed's page gives `http://wdt.wangdian.cn/openapi`
/// (正式环境); the open SDKs (`waywake/wdt-sdk-deno`, `BernardSimon/gwdt`) use this
/// same host and path with `https://`. Plain http sends the key, the salt and the
/// orders in clear, and behind a proxy is tunnelled to port 80, which proxies
/// commonly refuse (issue #26).
pub const DEFAULT_URL: &str = "https://wdt.wangdian.cn/openapi";
pub const PUSH_SELF2: &str = "sales.RawTrade.pushSelf2";
pub const PUSH_SELF: &str = "sales.RawTrade.pushSelf";
/// Raw trades the ERP holds, by tid, shop and *modification*-time window (confirms a
/// refused re-push, and an answer that does not add up).
pub const SEARCH_SELF_ORDER: &str = "sales.RawTrade.searchSelfOrder";
/// searchSelfOrder's `start_time`..`end_time` span: the page allows at most 30 days
/// (修改起始/结束时间); a minute is kept for the clocks' difference.
pub const SEARCH_WINDOW_SECS: i64 = 30 * 86_400 - 120;
/// The ERP's shop records (`check-config --online`: does each source's shop_no exist,
/// and is it self-operated). Not in the seed: its request (`[{"shop_no"}]` and the
/// pager, signed) and answer (`data.details[]`: `shop_no`, `platform_id`,
/// `is_disabled`) follow the vendor's qjb API page for it and the other query methods.
pub const QUERY_SHOP: &str = "setting.Shop.queryShop";
/// `platform_id` of a self-operated shop (其他（自有商城）): the only kind pushSelf takes.
pub const OWN_PLATFORM: i64 = 127;
/// Status 100's message for a key without the called method's permission.
pub const PERMISSION_MESSAGE: &str = "权限不足";
/// The harmless call of `check-config --online` (the spec's signature vector uses it).
pub const CORE_NOW: &str = "system.Core.now";
/// WDT timestamps count from 2012-01-01 00:00:00 UTC+8.
pub const EPOCH_OFFSET: i64 = 1325347200;
pub const MAX_BATCH: usize = 100;
/// The body is raw UTF-8 JSON; the signature covers these exact bytes.
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";

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
/// `receiver_area` of pushSelf2 (the stricter of the two methods).
pub const MAX_RECEIVER_AREA: usize = 40;

/// The vendor's advice after a rate-limit message: wait 5–10 minutes (the wait is
/// jittered between this and twice this).
pub const DEFAULT_RATE_LIMIT_WAIT_SECS: u64 = 300;

/// Messages of status 100 (substrings), by what they mean.
pub const RATE_LIMIT_MESSAGES: [&str; 2] =
    ["超过每分钟最大调用频率限制", "超过每分钟最大并发次数限制"];
/// A shop of the request the ERP does not take: unknown or disabled, another
/// platform's (pushSelf takes 自有平台 only), all shops wrong (pushSelf page's sample
/// error, the 旗舰版 error table `qjbguide_cwmsm`). A request holds one shop_no, so
/// this is the identity of the sources whose orders carry it: they pause, the
/// others go on (issue #26). Likewise the receiver and buyer fields, which come from
/// the config (`receiver_*`, per source or `[wdt]`, and `buyer_nick`), never from the
/// order: 收件人…/昵称…包含非法字符或为空, 电话号码不能包含* (the 旗舰版 error table) are
/// every order's of those sources, not one trade's data.
pub const SOURCE_MESSAGES: [&str; 6] = [
    "店铺编号不存在或已停用",
    "店铺平台不是自有平台",
    "传入店铺编号全部错误",
    "收件人",
    "昵称",
    "电话号码不能包含",
];
/// The same for every trade whatever its source: the key lacks an API's permission
/// (`权限不足`, also inside `新建订单权限不足`), the key may not use the warehouse,
/// the warehouse the config names is empty (`wdt.warehouse_no`), a `pay_method` the
/// tenant's server does not take (`wdt.pay_method`: the seed lists 8 微信支付, some
/// servers take ≤ 7).
pub const CONFIG_MESSAGES: [&str; 4] = [
    "权限不足",
    "无仓库访问权限",
    "仓库编号不可为空",
    "pay_method must be",
];
/// Status-100 messages of a passing fault on the server's side (the SDKs retry them):
/// the same for every trade, retried with backoff.
pub const TRANSIENT_MESSAGES: [&str; 6] = [
    "系统繁忙",
    "服务器繁忙",
    "请稍后",
    "稍后再试",
    "超时",
    "timeout",
];
/// A trade time ahead of the server's clock (UTC+8): retried once the server's time
/// has passed it, unless it is further ahead than [`MAX_TRADE_AHEAD_SECS`].
pub const TRADE_TIME_AHEAD: &str = "下单时间非法";
/// A trade time further ahead of the server's clock than this is not a POS clock a
/// little fast but a wrong clock or zone: the trade is rejected saying by how much.
pub const MAX_TRADE_AHEAD_SECS: i64 = 3600;
/// The server's zone (trade times are its local time).
pub const SERVER_ZONE_SECS: i64 = 8 * 3600;
/// `wdt.give_up_after` default: a lone trade refused with a message nobody recognises
/// is retried (capped backoff) this long before it is rejected.
pub const DEFAULT_GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// About one trade's data. `金额不合法` is the emulator's message for a broken amount
/// relation (the spec names no message for it).
pub const DATA_MESSAGES: [&str; 5] = [
    "非法字符",
    "数量不合法",
    "下单时间非法",
    "Data truncation",
    "金额不合法",
];
