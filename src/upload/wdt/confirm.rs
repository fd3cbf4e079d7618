//! Confirming with the ERP what an answer leaves in doubt: `searchSelfOrder` by tid,
//! or by what a push just modified, and matching an `error_list` entry to its trade.
//!
//! Invariants:
//! - `start_time`/`end_time` are the trade's *modification* time (the
//!   searchSelfOrder page: 修改起始/结束时间, 东八区, at most 30 days apart), never its
//!   trade time: a backlog is pushed days after the sale.
//! - A query that fails is "not known" (`None`), never "held": a trade is not counted
//!   delivered on a failed confirmation.

use std::collections::HashSet;

use super::*;

impl WdtClient {
    /// Whether the ERP holds trade `t`: `searchSelfOrder` by tid and shop, and by
    /// the window its page defines: `start_time`/`end_time` are the trade's
    /// *modification* time (修改起始/结束时间, 东八区, at most 30 days apart), not its
    /// trade time. A trade is modified when it is pushed, which may be days after the
    /// sale (a backlog), so the window is the last [`SEARCH_WINDOW_SECS`] of the
    /// server's clock. `None`: the query failed (not known either way).
    pub(super) fn holds(&self, t: &BuiltTrade) -> Option<bool> {
        let now = self.offset.now_unix();
        let body = serde_json::json!([{
            "shop_no": t.shop_no,
            "tid": t.tid,
            "start_time": server_time(now - SEARCH_WINDOW_SECS),
            "end_time": server_time(now + 60),
        }])
        .to_string();
        let pager = [("page_size", "10"), ("page_no", "0"), ("calc_total", "1")];
        let url = self.signed_url_with(SEARCH_SELF_ORDER, &body, now, &pager);
        let reply = self.http.post(&url, CONTENT_TYPE, body.as_bytes()).ok()?;
        let v = serde_json::from_slice::<serde_json::Value>(&reply.body).ok()?;
        if !(v["status"] == 0 || v["status"] == "0") {
            log::warn!(
                "wdt: {SEARCH_SELF_ORDER} for trade {} failed: status {} {}",
                t.tid,
                v["status"],
                v["message"].as_str().unwrap_or_default()
            );
            return None;
        }
        let held = v["data"]["order"]
            .as_array()
            .is_some_and(|l| l.iter().any(|o| o["tid"] == t.tid.as_str()));
        log::info!(
            "wdt: {SEARCH_SELF_ORDER}: trade {} is {}held by the ERP",
            t.tid,
            if held { "" } else { "not " }
        );
        Some(held)
    }

    /// The tids of `shop_no` modified since `since` (server unix seconds, less a
    /// minute for the clocks), by searchSelfOrder's modification-time window, at most
    /// [`MAX_BATCH`] · 5 of them. `None`: the query failed.
    pub(super) fn modified_since(&self, shop_no: &str, since: i64) -> Option<HashSet<String>> {
        let now = self.offset.now_unix();
        let body = serde_json::json!([{
            "shop_no": shop_no,
            "start_time": server_time(since - 60),
            "end_time": server_time(now + 60),
        }])
        .to_string();
        let mut found = HashSet::new();
        for page in 0..5 {
            let page_no = page.to_string();
            let pager = [
                ("page_size", "100"),
                ("page_no", page_no.as_str()),
                ("calc_total", "0"),
            ];
            let url = self.signed_url_with(SEARCH_SELF_ORDER, &body, now, &pager);
            let reply = self.http.post(&url, CONTENT_TYPE, body.as_bytes()).ok()?;
            let v = serde_json::from_slice::<serde_json::Value>(&reply.body).ok()?;
            if !(v["status"] == 0 || v["status"] == "0") {
                return None;
            }
            let list = v["data"]["order"].as_array().cloned().unwrap_or_default();
            found.extend(
                list.iter()
                    .filter_map(|o| o["tid"].as_str().map(str::to_string)),
            );
            if list.len() < MAX_BATCH {
                break;
            }
        }
        Some(found)
    }
}

/// The trade of `chunk` an `error_list` entry names: an id equal to a tid, else to
/// one of a trade's line oids, else the one tid its text names as a whole token.
pub(super) fn entry_trade<'a>(e: &ErrorEntry, chunk: &[&'a BuiltTrade]) -> Option<&'a str> {
    let by_tid = e
        .ids
        .iter()
        .find_map(|id| chunk.iter().find(|t| t.tid == *id));
    let by_oid = || {
        e.ids
            .iter()
            .find_map(|id| chunk.iter().find(|t| t.has_oid(id)))
    };
    match by_tid.or_else(by_oid) {
        Some(t) => Some(t.tid.as_str()),
        None => named_tid(&e.error, chunk.iter().map(|t| t.tid.as_str())),
    }
}

/// Unix seconds as the server's wall time (东八区), `yyyy-MM-dd HH:mm:ss`.
pub(super) fn server_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix + SERVER_ZONE_SECS, 0)
        .map(|d| d.naive_utc().format(crate::order::TIME_FORMAT).to_string())
        .unwrap_or_default()
}
