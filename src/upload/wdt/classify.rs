//! A Wangdiantong reply, classified by status and message.
//!
//! A status-100 message and an `error_list` entry's `error` are the same kind of
//! thing: free text (pushSelf/pushSelf2 pages, response `message` String(255) and
//! `error_list[].error`), so both go through [`message_class`]: a transient message
//! is retried, a configuration message pauses what it concerns (the source whose shop
//! it names, or the destination), and only a fault of the trade's own data rejects it
//! (issue #26). docs/VENDOR_ERRORS.md is the whole table, with the pages.

use super::*;
use crate::upload::http::Reply;
use crate::upload::{Outcome, classify_http_status, jitter_secs, redact};

/// One entry of pushSelf2's `data.error_list`: every id it carries (the page's `no`
/// is the tid; a server may key it otherwise, or give a line's id) and its free text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEntry {
    /// The entry's id values (`no` first), as text.
    pub ids: Vec<String>,
    pub error: String,
}

/// What a free-text message of the ERP is about (see [`message_class`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageClass {
    /// 超过每分钟最大调用频率限制 / 并发次数限制: wait as the vendor advises.
    RateLimited,
    /// The source's shop (店铺编号不存在或已停用, 店铺平台不是自有平台, 传入店铺编号全部错误):
    /// pause the sources whose orders carry that shop_no.
    Source,
    /// The key, its permissions, a setting of the config every order carries, or a
    /// tenant setting: pause the destination.
    Destination,
    /// A passing fault of the server (系统繁忙, 请稍后…): retry.
    Transient,
    /// A trade time ahead of the server's clock (下单时间非法): wait for its clock.
    TradeAhead,
    /// A fault of this trade's own data: reject it (only it).
    Data,
    /// Nobody knows: isolate the trade, retry it until `give_up_after`.
    Unrecognised,
}

/// The class of a status-100 message or an `error_list` entry's text. Checked in this
/// order: rate limit, a shop, the destination, a passing fault, the trade's data.
pub fn message_class(message: &str) -> MessageClass {
    let has = |list: &[&str]| list.iter().any(|m| message.contains(m));
    if has(&RATE_LIMIT_MESSAGES) {
        MessageClass::RateLimited
    } else if has(&SOURCE_MESSAGES) {
        MessageClass::Source
    } else if has(&CONFIG_MESSAGES) {
        MessageClass::Destination
    } else if has(&TRANSIENT_MESSAGES) {
        MessageClass::Transient
    } else if message.contains(TRADE_TIME_AHEAD) {
        MessageClass::TradeAhead
    } else if has(&DATA_MESSAGES) {
        MessageClass::Data
    } else {
        MessageClass::Unrecognised
    }
}

/// The outcome of a message of a class that is the same for every trade it concerns
/// (`None` for the classes about one trade: data, trade ahead, unrecognised).
pub fn shared_outcome(
    class: MessageClass,
    what: &str,
    rate_limit_wait_secs: u64,
) -> Option<Outcome> {
    Some(match class {
        MessageClass::RateLimited => Outcome::Retry {
            after: Some(jitter_secs(rate_limit_wait_secs, 2 * rate_limit_wait_secs)),
            reason: format!("{what} (rate limited: waiting as the vendor advises)"),
        },
        MessageClass::Source => Outcome::source_misconfigured(format!(
            "{what} (the identity of this order's source at Wangdiantong: fix its shop_no or receiver in [source.wdt] or [wdt], or the shop in the ERP)"
        )),
        MessageClass::Destination => Outcome::misconfigured(what.to_string()),
        MessageClass::Transient => Outcome::retry(what.to_string()),
        MessageClass::TradeAhead | MessageClass::Data | MessageClass::Unrecognised => {
            return None;
        }
    })
}

/// How a reply went, before it is mapped onto the trades of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Status 0: delivered, except what `error_list` names, as far as the counts
    /// and entries add up (the client checks, and confirms by query what does not).
    Accepted {
        failed: Vec<ErrorEntry>,
        new_count: i64,
        chg_count: i64,
    },
    /// Status 100 about one trade's data: reject it, or split a batch to find it.
    DataError(String),
    /// Status 7: timestamp outside ±120 s.
    TimestampRefused(String),
    /// Status 100 with a message that is neither a known transient fault nor a known
    /// configuration fault: most often one trade's data the ERP refuses for the whole
    /// call (`…原始单号为：K0150`). Isolated: the trade it names, or halves of the batch.
    Unrecognised(String),
    /// Anything else: the same outcome for every trade of the request.
    All(Outcome),
}

impl Classified {
    /// The classification with `secrets` blanked out of every text in it.
    pub(super) fn redacted(self, secrets: &[&str]) -> Classified {
        match self {
            Classified::Accepted {
                failed,
                new_count,
                chg_count,
            } => Classified::Accepted {
                failed: failed
                    .into_iter()
                    .map(|e| ErrorEntry {
                        ids: e.ids,
                        error: redact(&e.error, secrets),
                    })
                    .collect(),
                new_count,
                chg_count,
            },
            Classified::DataError(w) => Classified::DataError(redact(&w, secrets)),
            Classified::TimestampRefused(w) => Classified::TimestampRefused(redact(&w, secrets)),
            Classified::Unrecognised(w) => Classified::Unrecognised(redact(&w, secrets)),
            Classified::All(o) => Classified::All(o.redacted(secrets)),
        }
    }
}

/// Classifies a WDT reply by the spec's status table and status-100 messages.
pub fn classify(reply: &Reply) -> Classified {
    classify_with(reply, DEFAULT_RATE_LIMIT_WAIT_SECS)
}

/// [`classify`] with the configured rate-limit wait.
pub fn classify_with(reply: &Reply, rate_limit_wait_secs: u64) -> Classified {
    if let Some(o) = classify_http_status(reply) {
        return Classified::All(o);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
        return Classified::All(Outcome::retry(format!(
            "HTTP {}: the reply is not JSON",
            reply.status
        )));
    };
    let status = match &v["status"] {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let Some(status) = status else {
        return Classified::All(Outcome::retry("the reply has no status"));
    };
    let message = v["message"].as_str().unwrap_or_default().to_string();
    let what = if message.is_empty() {
        format!("Wangdiantong status {status}")
    } else {
        format!("Wangdiantong status {status}: {message}")
    };
    match status {
        0 => {
            let data = &v["data"];
            // pushSelf2 page, response `data.error_list[]`: `no` (the tid) and
            // `error` (free text). An entry is kept whatever its keys: one that
            // names no trade of the batch is confirmed by query, not dropped.
            let failed = data["error_list"]
                .as_array()
                .map(|list| list.iter().map(error_entry).collect())
                .unwrap_or_default();
            let count = |k: &str| match &data[k] {
                serde_json::Value::Number(n) => n.as_i64().unwrap_or(0),
                serde_json::Value::String(s) => s.trim().parse().unwrap_or(0),
                _ => 0,
            };
            Classified::Accepted {
                failed,
                new_count: count("new_count"),
                chg_count: count("chg_count"),
            }
        }
        1 | 2 | 3 | 6 | 8 => Classified::All(Outcome::misconfigured(what)),
        4 | 5 | 99 => Classified::All(Outcome::retry(what)),
        7 => Classified::TimestampRefused(what),
        100 => match message_class(&message) {
            MessageClass::Data | MessageClass::TradeAhead => Classified::DataError(what),
            MessageClass::Unrecognised => Classified::Unrecognised(what),
            class => match shared_outcome(class, &what, rate_limit_wait_secs) {
                Some(o) => Classified::All(o),
                None => Classified::Unrecognised(what),
            },
        },
        _ => Classified::All(Outcome::retry(format!(
            "{what} (not a status the spec names)"
        ))),
    }
}

/// An `error_list` entry as it came: its ids (`no` first, then any other text or
/// number it carries) and its `error` text (or `message`, `msg`).
fn error_entry(e: &serde_json::Value) -> ErrorEntry {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let error_keys = ["error", "message", "msg", "error_msg"];
    let error = error_keys
        .iter()
        .find_map(|k| e[*k].as_str().filter(|t| !t.trim().is_empty()))
        .unwrap_or("refused (no error text)")
        .to_string();
    let mut ids: Vec<String> = text(&e["no"]).into_iter().collect();
    if let Some(m) = e.as_object() {
        for (k, v) in m {
            if k == "no" || error_keys.contains(&k.as_str()) {
                continue;
            }
            ids.extend(text(v));
        }
    }
    ErrorEntry { ids, error }
}
