//! A cloud.api reply, classified by the spec's code table into an [`Outcome`].

use crate::upload::http::Reply;
use crate::upload::{Outcome, classify_http_status};

/// What a reply said, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub outcome: Outcome,
    /// The vendor code, when the body had one.
    pub code: Option<String>,
    /// Code 16: the `_timestamp` was refused (correct the clock, retry at once).
    pub timestamp_refused: bool,
    /// `stat.systime`, for clock learning.
    pub systime: Option<String>,
    /// A code the spec does not name: retried, but about this order only (one order's
    /// unknown refusal must not stop the others), and given up after `give_up_after`.
    pub unrecognised: bool,
}

pub(super) fn code_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Classifies a sendOrder (or any cloud.api) reply by the spec's code table.
pub fn classify(reply: &Reply) -> Classified {
    let plain = |outcome| Classified {
        outcome,
        code: None,
        timestamp_refused: false,
        systime: None,
        unrecognised: false,
    };
    if let Some(o) = classify_http_status(reply) {
        return plain(o);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
        return plain(Outcome::retry(format!(
            "HTTP {}: the reply is not JSON",
            reply.status
        )));
    };
    let stat = &v["stat"];
    let Some(stat_code) = code_text(&stat["code"]) else {
        return plain(Outcome::retry("the reply has no stat.code"));
    };
    let systime = code_text(&stat["systime"]);
    // Business codes may come back in data.code under a successful gateway code.
    let code = match code_text(&v["data"]["code"]) {
        Some(dc) if stat_code == "0" && dc != "0" => dc,
        _ => stat_code,
    };
    let codename = stat["codename"].as_str().unwrap_or_default();
    let result = v["result"]
        .as_str()
        .or(v["data"]["message"].as_str())
        .unwrap_or_default();
    let what = format!(
        "Ovopark code {code}{}{}",
        if codename.is_empty() {
            String::new()
        } else {
            format!(" {codename}")
        },
        if result.is_empty() {
            String::new()
        } else {
            format!(": {result}")
        }
    );
    let n: Option<i64> = code.parse().ok();
    let outcome = match n {
        Some(0) => Outcome::Delivered {
            note: "accepted".into(),
        },
        Some(208003) => Outcome::Delivered {
            note: "accepted before (208003 ORDER_NUMBER_DUPLICATION)".into(),
        },
        Some(16) => Outcome::retry(format!("{what} (timestamp refused: clock skew)")),
        Some(-100) => Outcome::retry(format!("{what} (repeated call)")),
        Some(-500 | -999 | 206999 | 999999) => Outcome::retry(what.clone()),
        // The key, signature, method, version, format, or the open-platform user
        // behind the key (206001): every order's problem, the destination pauses.
        // 12 APPLICATIONID_NOTSAME: the seed fixes `_aid` as S107; the gateway SDK's
        // readme gives cloud.api applications their own id (`DC-00xxxx`).
        Some(12) => Outcome::misconfigured(format!(
            "{what} (_aid and _akey must belong together: set ovopark.aid to your key's application id, e.g. DC-00xxxx from the Ovopark console, instead of the page's S107)"
        )),
        Some(1..=15 | 17) | Some(206001) => Outcome::misconfigured(what.clone()),
        // The identity an order carries (seed, business return codes): 206004
        // DEPARTMENT_NOT_EXIST is its `shopId`/`depId`, 206003/206005/206006 its
        // `enterpriseId`/`orgId` pair (per source: `[source.ovopark]`). Only the
        // sources whose orders carry it pause; the others go on (issue #26).
        Some(206003..=206006) => Outcome::source_misconfigured(format!(
            "{what} (the {} of this order's source)",
            if n == Some(206004) {
                "shopId"
            } else {
                "orgId/enterpriseId"
            }
        )),
        Some(208000..=208999) => Outcome::rejected(what.clone()),
        _ => Outcome::retry(format!("{what} (a code the spec does not name)")),
    };
    let unrecognised = !known_code(n);
    Classified {
        outcome,
        unrecognised,
        timestamp_refused: n == Some(16),
        code: Some(code),
        systime,
    }
}

/// Whether the spec's code table names `n` (see [`classify`]).
fn known_code(n: Option<i64>) -> bool {
    matches!(
        n,
        Some(
            0
            | 208003
            | 16
            | -100
            | -500
            | -999
            | 206999
            | 999999
            | 1..=15
            | 17
            | 206001
            | 206003..=206006
            | 208000..=208999,
        )
    )
}
