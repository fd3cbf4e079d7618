//! What the Wangdiantong client needs to keep one refused trade from holding back the
//! others: finding the trade a whole-call refusal names, and remembering since when a
//! lone trade has been refused (to give up on it after `wdt.give_up_after`).
//!
//! Invariants:
//! - A tid is "named" by a message only as a whole token (`K015` is not named by
//!   `…原始单号为：K0150`), and only when exactly one trade of the request is named.
//! - The first-failure book is [`crate::upload::FirstFailures`] (shared with Ovopark).

pub use crate::upload::FirstFailures;

/// The one tid of `tids` that `message` names as a whole token, if exactly one is.
pub fn named_tid<'a>(message: &str, tids: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut found = None;
    for tid in tids {
        if tid.is_empty() || !names(message, tid) {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(tid);
    }
    found
}

/// Whether `tid` occurs in `message` not glued to other id characters.
fn names(message: &str, tid: &str) -> bool {
    let id_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut from = 0;
    while let Some(at) = message[from..].find(tid) {
        let start = from + at;
        let end = start + tid.len();
        let before = message[..start].chars().next_back();
        let after = message[end..].chars().next();
        if !before.is_some_and(id_char) && !after.is_some_and(id_char) {
            return true;
        }
        from = start + tid.len().max(1);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tid_is_named_only_as_a_whole_token_and_only_alone() {
        let msg = "商家编码和货品编号不匹配,原始单号为：K0150";
        assert_eq!(named_tid(msg, ["K015", "K0150", "K01500"]), Some("K0150"));
        assert_eq!(named_tid(msg, ["K015", "K01500"]), None);
        assert_eq!(named_tid("tid A-1 and A-2 refused", ["A-1", "A-2"]), None);
        assert_eq!(named_tid("bad: A-1", ["A-1", "A-12"]), Some("A-1"));
        assert_eq!(named_tid("no trade here", ["A-1"]), None);
    }

    #[test]
    fn the_refusal_clock_runs_from_the_first_refusal_until_cleared() {
        use std::time::Duration;
        let f = FirstFailures::default();
        assert_eq!(f.refused("T1", 100), Duration::ZERO);
        assert_eq!(f.refused("T1", 160), Duration::from_secs(60));
        f.clear("T1");
        assert_eq!(f.refused("T1", 200), Duration::ZERO);
    }
}
