//! `_sig` (secret-wrapped md5/sha1 of the sorted parameters), `_timestamp`, `_nonce`.

use std::collections::BTreeMap;

use md5::Digest;

use super::*;

/// The signing string: secret + concat(key + value, keys in byte order) + secret.
pub fn signing_string(params: &BTreeMap<String, String>, secret: &str) -> String {
    let mut plain = String::from(secret);
    for (k, v) in params {
        if k == "_sig" {
            continue;
        }
        plain.push_str(k);
        plain.push_str(v);
    }
    plain.push_str(secret);
    plain
}

/// `_sig`: upper-case hex md5 or sha1 of the signing string.
pub fn sign(params: &BTreeMap<String, String>, secret: &str, method: SignMethod) -> String {
    let plain = signing_string(params, secret);
    match method {
        SignMethod::Md5 => hex_upper(&md5::Md5::digest(plain.as_bytes())),
        SignMethod::Sha1 => hex_upper(&sha1::Sha1::digest(plain.as_bytes())),
    }
}

pub(super) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `_timestamp`: `yyyyMMddHHmmss` of `unix` in the zone `zone_secs` east of UTC.
pub fn format_timestamp(unix: i64, zone_secs: i32) -> String {
    let t = chrono::DateTime::from_timestamp(unix + i64::from(zone_secs), 0).unwrap_or_default();
    t.naive_utc().format("%Y%m%d%H%M%S").to_string()
}

/// A random UUID (version 4) in its 8-4-4-4-12 form; not a secret.
pub(super) fn nonce() -> String {
    // The UUID form (version 4, 8-4-4-4-12) the gateway SDK sends.
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    let a = (a & !0xf000) | 0x4000;
    let b = (b & !(0xc << 60)) | (0x8 << 60);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}
