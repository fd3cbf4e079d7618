//! `sign` (secret-wrapped md5 of the sorted parameters and body) and `timestamp`.

use std::collections::BTreeMap;

use md5::Digest;

use super::*;

/// WDT `timestamp` of a unix time.
pub fn timestamp(unix: i64) -> i64 {
    unix - EPOCH_OFFSET
}

/// The signing string: secret + concat(key + value, keys in byte order) + secret, over
/// every query parameter but `sign` (the pager `page_size`/`page_no`/`calc_total`
/// included, as every vendor SDK signs it) and `body`.
pub fn signing_string(params: &BTreeMap<String, String>, secret: &str) -> String {
    let mut plain = String::from(secret);
    for (k, v) in params {
        if k == "sign" {
            continue;
        }
        plain.push_str(k);
        plain.push_str(v);
    }
    plain.push_str(secret);
    plain
}

/// `sign`: lower-case hex md5 of the signing string.
pub fn sign(params: &BTreeMap<String, String>, secret: &str) -> String {
    md5::Md5::digest(signing_string(params, secret).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
