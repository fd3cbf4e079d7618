//! Percent-encoding shared by both clouds: Ovopark's form body and Wangdiantong's
//! query string.
//!
//! Invariant: every byte outside the unreserved set (`A-Z a-z 0-9 - _ . ~`) is escaped
//! as `%XX` in upper-case hex, space included (`%20`, never `+`). Both signatures are
//! computed over the plain values, so the encoding only has to be one the servers
//! decode; it is kept byte-identical to what the published vectors were checked with.
//! `form_urlencoded` is not used: it writes `+` for a space and leaves `*` bare.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but the RFC 3986 unreserved characters.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` with every byte outside the unreserved set escaped.
pub(crate) fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, ESCAPED).to_string()
}

/// `application/x-www-form-urlencoded` body (`%20` for space; every byte outside the
/// unreserved set escaped).
pub fn form_encode(params: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in params {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's output is the hand-written encoder's, byte for byte, over every
    /// byte value and some UTF-8.
    #[test]
    fn same_bytes_as_the_hand_written_encoder() {
        fn by_hand(s: &str) -> String {
            let mut out = String::new();
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        }
        let ascii: String = (0u8..128).map(char::from).collect();
        for s in [ascii.as_str(), "可口可乐 a+b*c", "é~!'()", ""] {
            assert_eq!(percent_encode(s), by_hand(s), "{s:?}");
        }
    }
}
