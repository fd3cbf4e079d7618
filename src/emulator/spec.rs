//! The emulators' own reading of the specs (`spec/ovopark.md`, `spec/wangdiantong.md`
//! and the vendors' field tables in `seeds/`): method names, length limits, code sets,
//! the signatures, the timestamp epochs.
//!
//! Invariant: nothing here comes from the clients (`crate::upload`). A misreading of a
//! spec shared by a client and its emulator would be invisible to every test; written
//! twice, from the spec each time, the two readings check each other, and the published
//! signature vectors check both (see the tests below and the clients' own).

use std::collections::BTreeMap;

use md5::Digest;

/// Ovopark (`spec/ovopark.md`, `seeds/ovopark-storehouse-sendOrder.txt`).
pub mod ovopark {
    use super::*;

    pub const SEND_ORDER: &str = "open.ovopark.storehouse.sendOrder";
    /// The same payload under the name some tenants' platforms register (public
    /// integration notes); `ovopark.method` selects it.
    pub const POS_SEND_ORDER: &str = "open.ovopark.pos.sendOrder";
    pub const GET_BUSINESS_ORG: &str = "open.gateway.getBusinessOrg";
    /// The seed's length of the `String` fields of `iposJson`.
    pub const MAX_STR: usize = 100;
    /// The seed's length of the `int` fields that have one (`orgId`, `depId`, …).
    pub const MAX_NUM: usize = 11;

    /// `_sm`: "md5 or sha1".
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Sm {
        Md5,
        Sha1,
    }

    impl Sm {
        pub fn parse(sm: &str) -> Option<Sm> {
            match sm {
                "md5" => Some(Sm::Md5),
                "sha1" => Some(Sm::Sha1),
                _ => None,
            }
        }
    }

    /// `_sig`: secret + every sent parameter but `_sig` as key+value in byte order of
    /// the keys + secret; upper-case hex of its md5 or sha1.
    pub fn expected_sig(params: &BTreeMap<String, String>, secret: &str, d: Sm) -> String {
        let mut plain = secret.to_string();
        for (k, v) in params.iter().filter(|(k, _)| k.as_str() != "_sig") {
            plain.push_str(k);
            plain.push_str(v);
        }
        plain.push_str(secret);
        let bytes: Vec<u8> = match d {
            Sm::Md5 => md5::Md5::digest(plain.as_bytes()).to_vec(),
            Sm::Sha1 => sha1::Sha1::digest(plain.as_bytes()).to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }
}

/// Wangdiantong (`spec/wangdiantong.md`, `seeds/wangdiantong-sales-RawTrade-pushSelf.txt`).
pub mod wdt {
    /// Looks up raw trades by tid, shop and a time window; its pager (`page_size`,
    /// `page_no`, `calc_total`) travels in the query and is signed like the rest.
    pub const SEARCH_SELF_ORDER: &str = "sales.RawTrade.searchSelfOrder";
    pub const PAGE_PARAMS: [&str; 3] = ["page_size", "page_no", "calc_total"];
    /// The ERP's shop records (`[{shop_no?, platform_id?}]`, paged like
    /// searchSelfOrder); not in the seed: the vendor's API page for it (qjb
    /// `setting.Shop.queryShop`) gives `data.details[]` with `shop_no`, `platform_id`
    /// (127 = 其他（自有商城）, the platform pushSelf needs), `is_disabled`.
    pub const QUERY_SHOP: &str = "setting.Shop.queryShop";
    /// `platform_id` of a self-operated shop (自有平台), per the vendor's platform table.
    pub const OWN_PLATFORM: i64 = 127;
    use super::*;

    pub const PUSH_SELF2: &str = "sales.RawTrade.pushSelf2";
    pub const PUSH_SELF: &str = "sales.RawTrade.pushSelf";
    pub const CORE_NOW: &str = "system.Core.now";
    /// "whole seconds since 2012-01-01 00:00:00 UTC+8 = unix seconds − 1325347200".
    pub const EPOCH_OFFSET: i64 = 1_325_347_200;
    /// "pushSelf2 advice: at most 100 trades per call".
    pub const MAX_BATCH: usize = 100;
    /// The seed's code sets: 处理状态, 平台状态, 退款状态, 付款状态, 支付方式, 发货条件,
    /// and the order line's 退款标记.
    pub const PROCESS_STATUSES: &[i64] = &[10, 20, 30, 40, 60, 70];
    pub const TRADE_STATUSES: &[i64] = &[10, 20, 30, 40, 50, 60, 70, 80, 90];
    pub const REFUND_STATUSES: &[i64] = &[0, 1, 2, 3];
    pub const PAY_STATUSES: &[i64] = &[0, 1, 2];
    pub const PAY_METHODS: &[i64] = &[1, 2, 3, 4, 5, 6, 7, 8];
    pub const DELIVERY_TERMS: &[i64] = &[1, 2];
    pub const LINE_REFUND_STATUSES: &[i64] = &[0, 1, 2, 3, 4, 5, 6];

    /// `sign`: secret + every query parameter but `sign`, and `body`, as key+value in
    /// byte order of the keys + secret; lower-case hex md5. The spec's table leaves the
    /// pager out, but every published SDK (php-3.0, Go) signs `page_size`, `page_no`
    /// and `calc_total` like the rest, and the gateway checks what the SDKs send.
    pub fn expected_sign(params: &BTreeMap<String, String>, secret: &str) -> String {
        let mut plain = secret.to_string();
        for (k, v) in params {
            if k != "sign" {
                plain.push_str(k);
                plain.push_str(v);
            }
        }
        plain.push_str(secret);
        md5::Md5::digest(plain.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// `+08:00` / `-05:30` / `Z` as seconds east of UTC (the emulators' `utc_offset`).
pub fn utc_offset_secs(s: &str) -> Option<i32> {
    if s == "Z" || s == "UTC" {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

/// An HTTP `Date` header (IMF-fixdate) of unix seconds.
pub fn http_date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The emulator checks signatures by the published vectors of `spec/ovopark.md`
    /// on its own (the client's tests check the same vectors on the client side).
    #[test]
    fn ovopark_published_vectors() {
        let readme = params(&[
            ("_aid", "S107"),
            ("_akey", "test"),
            ("_mt", "open.demo.queryOpenAccount"),
            ("_requestMode", "post"),
            ("_sm", "md5"),
            ("_timestamp", "20171221132407"),
            ("_version", "v1"),
            ("orgid", "1"),
        ]);
        assert_eq!(
            ovopark::expected_sig(&readme, "test", ovopark::Sm::Md5),
            "5489704B80A47394025527D6D51FB582"
        );
        let mut sdk_ts = params(&[
            ("_aid", "S107"),
            ("_akey", "S107-0000xxxx"),
            ("_requestMode", "post"),
            ("_sm", "md5"),
            ("_timestamp", "20191128141620"),
            ("_version", "v1"),
            ("_mt", "open.gateway.getBusinessOrg"),
            ("orgid", "11111"),
            ("starttime", "--------"),
            ("endtime", "-----"),
        ]);
        let secret = "x".repeat(31);
        let expected = "B657F7CA341BB5C9C162603B9389DAA9";
        assert_eq!(
            ovopark::expected_sig(&sdk_ts, &secret, ovopark::Sm::Md5),
            expected
        );
        // `_sig` itself is never signed.
        sdk_ts.insert("_sig".into(), expected.into());
        assert_eq!(
            ovopark::expected_sig(&sdk_ts, &secret, ovopark::Sm::Md5),
            expected
        );
        assert_eq!(ovopark::Sm::parse("sha1"), Some(ovopark::Sm::Sha1));
        assert_eq!(
            ovopark::expected_sig(&sdk_ts, &secret, ovopark::Sm::Sha1).len(),
            40
        );
    }

    /// The emulator checks the published vector of `spec/wangdiantong.md` on its own.
    #[test]
    fn wdt_published_vector() {
        let mut p = params(&[
            ("body", "[]"),
            ("key", "wdt_test"),
            ("method", "system.Core.now"),
            ("salt", "dd"),
            ("sid", "wdtapi3"),
            ("timestamp", "100"),
            ("v", "1.0"),
        ]);
        assert_eq!(
            wdt::expected_sign(&p, "aa"),
            "b5745bf1f4721a0d16e9a68cb7513032"
        );
        // `sign` is not signed.
        p.insert("sign".into(), "x".into());
        assert_eq!(
            wdt::expected_sign(&p, "aa"),
            "b5745bf1f4721a0d16e9a68cb7513032"
        );
        // The pager is, as every vendor SDK signs it (issue #16; the spec's line 57
        // leaves it out).
        p.insert("page_no".into(), "2".into());
        assert_ne!(
            wdt::expected_sign(&p, "aa"),
            "b5745bf1f4721a0d16e9a68cb7513032"
        );
    }

    #[test]
    fn offsets_and_dates() {
        assert_eq!(utc_offset_secs("+08:00"), Some(8 * 3600));
        assert_eq!(utc_offset_secs("-05:30"), Some(-19800));
        assert_eq!(utc_offset_secs("Z"), Some(0));
        assert_eq!(utc_offset_secs("+25:00"), None);
        assert_eq!(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
