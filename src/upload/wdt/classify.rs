//! A Wangdiantong reply, classified by status and message.

use super::*;
use crate::upload::http::Reply;
use crate::upload::{Outcome, classify_http_status, jitter_secs, redact};

/// How a reply went, before it is mapped onto the trades of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Status 0: all delivered except these `(tid, error)`.
    Accepted {
        failed: Vec<(String, String)>,
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
                    .map(|(no, e)| (no, redact(&e, secrets)))
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
            let failed = data["error_list"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|e| {
                            let no = match &e["no"] {
                                serde_json::Value::String(s) => s.clone(),
                                serde_json::Value::Number(n) => n.to_string(),
                                _ => return None,
                            };
                            Some((no, e["error"].as_str().unwrap_or("refused").to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Classified::Accepted {
                failed,
                new_count: data["new_count"].as_i64().unwrap_or(0),
                chg_count: data["chg_count"].as_i64().unwrap_or(0),
            }
        }
        1 | 2 | 3 | 6 | 8 => Classified::All(Outcome::misconfigured(what)),
        4 | 5 | 99 => Classified::All(Outcome::retry(what)),
        7 => Classified::TimestampRefused(what),
        100 if RATE_LIMIT_MESSAGES.iter().any(|m| message.contains(m)) => {
            Classified::All(Outcome::Retry {
                after: Some(jitter_secs(rate_limit_wait_secs, 2 * rate_limit_wait_secs)),
                reason: format!("{what} (rate limited: waiting as the vendor advises)"),
            })
        }
        100 if CONFIG_MESSAGES.iter().any(|m| message.contains(m)) => {
            Classified::All(Outcome::misconfigured(what))
        }
        100 if DATA_MESSAGES.iter().any(|m| message.contains(m)) => Classified::DataError(what),
        100 if TRANSIENT_MESSAGES.iter().any(|m| message.contains(m)) => {
            Classified::All(Outcome::retry(what))
        }
        100 => Classified::Unrecognised(what),
        _ => Classified::All(Outcome::retry(format!(
            "{what} (not a status the spec names)"
        ))),
    }
}
