//! Ovopark `open.ovopark.storehouse.sendOrder`: configuration, `iposJson` from a stamped
//! order, the `_sig` signature, reply classification, and the `getBusinessOrg` check.
//!
//! Invariants:
//! - One order per request; the `iposJson` text that is signed is the text that is sent.
//! - An identifier longer than the spec's max length rejects the order (with the field
//!   and length in the reason); a name is cut at a character boundary, with a warning.
//! - Every request carries a fresh signed `_nonce` (as the vendor's newer gateway SDK
//!   does), so a quick resend is never taken for a replay (-100).
//! - `_timestamp` is computed per attempt from the learned server clock, in the
//!   configured zone (default UTC+8); a timestamp refusal (code 16) costs at most one
//!   immediate extra attempt.
//! - Codes are classified by the spec's table; a code the spec does not name is retried
//!   (never rejected), except `208xxx` codes besides 208003, which the spec's family of
//!   order codes makes about this order's data (an assumption, named in the docs).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use md5::Digest;
use serde::Deserialize;

use super::http::{Http, HttpConfig, Reply};
use super::json::J;
use super::{Clock, Outcome, classify_http_status, cut_chars};
use crate::order::{Kind, Order, format_time};
use crate::secret::Secret;

pub const SEND_ORDER: &str = "open.ovopark.storehouse.sendOrder";
pub const GET_BUSINESS_ORG: &str = "open.gateway.getBusinessOrg";
pub const DEFAULT_URL: &str = "https://openapi.opretail.com/cloud.api";
pub const DEFAULT_AID: &str = "S107";
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=utf-8";
/// Default `orderType` labels per order kind.
pub const DEFAULT_ORDER_TYPES: [&str; 3] = ["销售", "退货", "作废"];
/// Max length (characters) of the string fields in `iposJson`.
pub const MAX_STR: usize = 100;
/// Max length (characters) of the numeric fields with a length (`depId`, `goodsNums`, `skuKeyId`).
pub const MAX_NUM: usize = 11;

/// `_sm`: the digest of the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignMethod {
    Md5,
    Sha1,
}

impl SignMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::Md5 => "md5",
            SignMethod::Sha1 => "sha1",
        }
    }

    pub fn parse(s: &str) -> Option<SignMethod> {
        match s {
            "md5" => Some(SignMethod::Md5),
            "sha1" => Some(SignMethod::Sha1),
            _ => None,
        }
    }
}

/// An id that TOML may give as an integer or a string (`org_id = 1` or `"1"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum IdValue {
    Int(i64),
    Text(String),
}

impl IdValue {
    fn into_string(self) -> String {
        match self {
            IdValue::Int(i) => i.to_string(),
            IdValue::Text(s) => s,
        }
    }
}

/// `[ovopark]` as written in the TOML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOvopark {
    /// Read by the config (whether this destination gets delivery rows); default true.
    pub enabled: Option<bool>,
    /// Default [`DEFAULT_URL`].
    pub url: Option<String>,
    /// `_aid`, default `S107`.
    pub aid: Option<String>,
    /// `_akey` (AccessKey ID). Required.
    pub akey: Option<String>,
    /// The signing secret (`_asid`, AccessKey Secret). This or `secret_file`.
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    /// `md5` (default) or `sha1`.
    pub sign_method: Option<String>,
    /// Zone `_timestamp` is written in, `+08:00` by default.
    pub timestamp_utc_offset: Option<String>,
    /// Tenant and shop defaults for sources that set none.
    pub org_id: Option<IdValue>,
    pub enterprise_id: Option<IdValue>,
    pub shop_id: Option<String>,
    pub dep_id: Option<IdValue>,
    pub order_no_prefix: Option<String>,
    /// `orderType` labels; defaults [`DEFAULT_ORDER_TYPES`].
    pub order_type_sale: Option<String>,
    pub order_type_refund: Option<String>,
    pub order_type_void: Option<String>,
    pub connect_timeout_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub ca_file: Option<PathBuf>,
    /// Requests in flight at once, 1..=[`MAX_CONCURRENCY`]; default
    /// [`DEFAULT_CONCURRENCY`].
    pub concurrency: Option<usize>,
}

/// Ovopark takes one order per request, so over a real network a backlog drains at
/// one order per round trip unless requests overlap. A few in flight keep the link
/// busy; each one in flight is a possible resend after a crash (answered 208003).
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const MAX_CONCURRENCY: usize = 16;

/// Per-source Ovopark identity, `[source.ovopark]`: a box may serve several shops, and
/// an agent account may act for several enterprises.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOvoparkShop {
    pub org_id: Option<IdValue>,
    pub enterprise_id: Option<IdValue>,
    pub shop_id: Option<String>,
    pub dep_id: Option<IdValue>,
    /// Prepended to the order number to make `orderNo`, which Ovopark keeps unique per
    /// enterprise: two lanes whose POSes both count from 1 need distinct prefixes, or
    /// the second lane's order would be taken for a repeat (208003) and never stored.
    pub order_no_prefix: Option<String>,
}

/// Validated Ovopark identity (all optional: a source falls back to the destination's).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OvoparkShop {
    pub org_id: Option<String>,
    pub enterprise_id: Option<String>,
    pub shop_id: Option<String>,
    pub dep_id: Option<String>,
    pub order_no_prefix: Option<String>,
}

impl RawOvoparkShop {
    /// Validates with error messages under `prefix` (e.g. `source.lane1.ovopark`).
    pub fn validate_at(self, prefix: &str) -> Result<OvoparkShop, String> {
        let int_id = |key: &str, v: Option<IdValue>| -> Result<Option<String>, String> {
            let Some(v) = v else { return Ok(None) };
            let s = v.into_string();
            if s.is_empty() || s.len() > MAX_NUM || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{prefix}.{key}: must be an integer of at most {MAX_NUM} digits, got {s:?}"
                ));
            }
            Ok(Some(s))
        };
        let shop_id = super::text_key(prefix, "shop_id", self.shop_id, MAX_STR, false)?;
        let order_no_prefix =
            super::text_key(prefix, "order_no_prefix", self.order_no_prefix, 20, true)?;
        let shop = OvoparkShop {
            org_id: int_id("org_id", self.org_id)?,
            enterprise_id: int_id("enterprise_id", self.enterprise_id)?,
            shop_id,
            dep_id: int_id("dep_id", self.dep_id)?,
            order_no_prefix,
        };
        if shop.shop_id.is_some() && shop.dep_id.is_some() {
            return Err(format!("{prefix}: set shop_id or dep_id, not both"));
        }
        Ok(shop)
    }

    pub fn validate(self) -> Result<OvoparkShop, String> {
        self.validate_at("source.ovopark")
    }
}

/// Validated `[ovopark]`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ovopark {
    pub url: String,
    pub aid: String,
    pub akey: String,
    pub secret: Secret,
    pub sign_method: SignMethod,
    /// Seconds east of UTC of `_timestamp`.
    pub zone_secs: i32,
    pub defaults: OvoparkShop,
    /// `orderType` for sale, refund, void.
    pub order_types: [String; 3],
    pub http: HttpConfig,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// Reads `secret` or `secret_file` (exactly one) under `prefix`.
pub(crate) fn secret_from(
    prefix: &str,
    secret: Option<Secret>,
    file: Option<PathBuf>,
) -> Result<Secret, String> {
    match (secret, file) {
        (Some(_), Some(_)) => Err(format!(
            "{prefix}.secret: set secret or secret_file, not both"
        )),
        (None, None) => Err(format!("{prefix}.secret: missing (or set secret_file)")),
        (Some(s), None) if s.is_empty() => Err(format!("{prefix}.secret: is empty")),
        (Some(s), None) => Ok(s),
        (None, Some(p)) => Secret::from_file(&p).map_err(|e| format!("{prefix}.secret_file: {e}")),
    }
}

/// Parses `+08:00` / `-05:30` / `Z` into seconds east of UTC.
pub(crate) fn parse_utc_offset(s: &str) -> Option<i32> {
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
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

pub(crate) fn check_url(key: &str, url: &str) -> Result<(), String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(['?', '#', ' '])
    {
        return Err(format!(
            "{key}: must be an http(s) URL without a query, got {url:?}"
        ));
    }
    Ok(())
}

impl RawOvopark {
    /// The `[ovopark]` table as the config holds it, deserialized and validated. Errors
    /// name the key (`ovopark.…`).
    pub fn from_table(table: toml::Table) -> Result<Ovopark, String> {
        let raw: RawOvopark = serde::Deserialize::deserialize(toml::Value::Table(table))
            .map_err(|e| format!("ovopark: {}", e.to_string().trim()))?;
        raw.validate()
    }

    pub fn validate(self) -> Result<Ovopark, String> {
        let url = self.url.unwrap_or_else(|| DEFAULT_URL.to_string());
        check_url("ovopark.url", &url)?;
        let aid = self.aid.unwrap_or_else(|| DEFAULT_AID.to_string());
        if aid.is_empty() || aid.len() > 20 {
            return Err(format!(
                "ovopark.aid: must be 1..=20 characters, got {aid:?}"
            ));
        }
        let akey = self.akey.unwrap_or_default();
        if akey.trim().is_empty() {
            return Err("ovopark.akey: missing".into());
        }
        if akey.len() > 20 {
            return Err(format!(
                "ovopark.akey: must be at most 20 characters, got {} characters",
                akey.len()
            ));
        }
        let secret = secret_from("ovopark", self.secret, self.secret_file)?;
        let sm = self.sign_method.unwrap_or_else(|| "md5".into());
        let sign_method = SignMethod::parse(&sm)
            .ok_or_else(|| format!("ovopark.sign_method: must be md5 or sha1, got {sm:?}"))?;
        let zone = self.timestamp_utc_offset.unwrap_or_else(|| "+08:00".into());
        let zone_secs = parse_utc_offset(&zone).ok_or_else(|| {
            format!("ovopark.timestamp_utc_offset: must look like +08:00, got {zone:?}")
        })?;
        let defaults = RawOvoparkShop {
            org_id: self.org_id,
            enterprise_id: self.enterprise_id,
            shop_id: self.shop_id,
            dep_id: self.dep_id,
            order_no_prefix: self.order_no_prefix,
        }
        .validate_at("ovopark")?;
        let mut order_types = DEFAULT_ORDER_TYPES.map(String::from);
        for (i, (key, v)) in [
            ("order_type_sale", self.order_type_sale),
            ("order_type_refund", self.order_type_refund),
            ("order_type_void", self.order_type_void),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(v) = v {
                if v.chars().count() > MAX_STR {
                    return Err(format!(
                        "ovopark.{key}: must be at most {MAX_STR} characters"
                    ));
                }
                order_types[i] = v;
            }
        }
        let http = HttpConfig::from_raw(
            "ovopark",
            self.connect_timeout_secs,
            self.timeout_secs,
            self.ca_file,
        )?;
        let concurrency = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(format!(
                "ovopark.concurrency: must be 1..={MAX_CONCURRENCY}, got {concurrency}"
            ));
        }
        Ok(Ovopark {
            url,
            aid,
            akey,
            secret,
            sign_method,
            zone_secs,
            defaults,
            order_types,
            http,
            concurrency,
        })
    }
}

/// The tenant and shop an order goes to, after per-source overrides and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub org_id: String,
    pub enterprise_id: String,
    /// Exactly one of these is set.
    pub shop_id: Option<String>,
    pub dep_id: Option<String>,
    /// Prepended to the order number (`orderNo`); empty by default.
    pub order_no_prefix: String,
}

impl Ovopark {
    /// The tenant/shop for an order of `source`. Precedence: `[source.ovopark]`, then the
    /// order's stamped `shop` (as `shopId`), then `[ovopark]`. An error here is
    /// configuration (the same for every order of that source).
    pub fn target(
        &self,
        over: Option<&OvoparkShop>,
        order_shop: Option<&str>,
    ) -> Result<Target, String> {
        let empty = OvoparkShop::default();
        let over = over.unwrap_or(&empty);
        let src = order_shop.unwrap_or("?");
        let org_id = over
            .org_id
            .clone()
            .or_else(|| self.defaults.org_id.clone())
            .ok_or_else(|| {
                format!("no ovopark org_id for the source of shop {src} (set ovopark.org_id)")
            })?;
        let enterprise_id = over
            .enterprise_id
            .clone()
            .or_else(|| self.defaults.enterprise_id.clone())
            .ok_or_else(|| "no ovopark enterprise_id (set ovopark.enterprise_id)".to_string())?;
        let (shop_id, dep_id) = if over.shop_id.is_some() || over.dep_id.is_some() {
            (over.shop_id.clone(), over.dep_id.clone())
        } else if let Some(s) = order_shop.filter(|s| !s.is_empty()) {
            (Some(s.to_string()), None)
        } else if self.defaults.shop_id.is_some() || self.defaults.dep_id.is_some() {
            (self.defaults.shop_id.clone(), self.defaults.dep_id.clone())
        } else {
            return Err("no ovopark shop: set the source's shop, [source.ovopark] shop_id/dep_id or ovopark.shop_id".into());
        };
        let order_no_prefix = over
            .order_no_prefix
            .clone()
            .or_else(|| self.defaults.order_no_prefix.clone())
            .unwrap_or_default();
        Ok(Target {
            org_id,
            enterprise_id,
            shop_id,
            dep_id,
            order_no_prefix,
        })
    }

    fn order_type(&self, kind: Kind) -> &str {
        match kind {
            Kind::Sale => &self.order_types[0],
            Kind::Refund => &self.order_types[1],
            Kind::Void => &self.order_types[2],
        }
    }
}

/// `iposJson` text of a stamped order, and the warnings about names that were cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipos {
    pub json: String,
    pub warnings: Vec<String>,
}

/// Builds `iposJson`. `Err` is the reason the order is rejected (its data breaks the spec).
pub fn build_ipos(order: &Order, target: &Target, order_type: &str) -> Result<Ipos, String> {
    let mut warnings = Vec::new();
    let ident = |field: &str, v: &str| -> Result<String, String> {
        if v.is_empty() {
            return Err(format!("{field} is empty"));
        }
        let n = v.chars().count();
        if n > MAX_STR {
            return Err(format!(
                "{field} is {n} characters, Ovopark allows at most {MAX_STR}"
            ));
        }
        Ok(v.to_string())
    };
    let name = |field: &str, v: &str, warnings: &mut Vec<String>| -> String {
        match cut_chars(v, MAX_STR) {
            Some(cut) => {
                warnings.push(format!(
                    "order {}: {field} cut to {MAX_STR} characters",
                    order.order_no
                ));
                cut
            }
            None => v.to_string(),
        }
    };
    let machine_id = order
        .machine_id
        .as_deref()
        .ok_or("not stamped: no machine_id (set the source's machine_id)")?;
    let start = order.video_start.ok_or("not stamped: no video_start")?;
    let end = order.video_end.ok_or("not stamped: no video_end")?;

    let mut obj: Vec<(&'static str, J)> = Vec::new();
    match (&target.shop_id, &target.dep_id) {
        (Some(s), _) => obj.push(("shopId", J::Str(ident("shopId", s)?))),
        (None, Some(d)) => obj.push((
            "depId",
            J::Int(
                d.parse()
                    .map_err(|_| format!("depId {d:?} is not an integer"))?,
            ),
        )),
        (None, None) => return Err("no shopId or depId".into()),
    }
    let order_no = format!("{}{}", target.order_no_prefix, order.order_no);
    obj.push(("orderNo", J::Str(ident("orderNo", &order_no)?)));
    if let Some(c) = order.cashier.as_deref().filter(|c| !c.is_empty()) {
        obj.push(("userName", J::Str(name("userName", c, &mut warnings))));
    }
    obj.push(("machineId", J::Str(ident("machineId", machine_id)?)));
    obj.push(("startTime", J::Str(format_time(&start))));
    obj.push(("endTime", J::Str(format_time(&end))));
    obj.push(("orderTime", J::Str(format_time(&order.order_time))));
    obj.push((
        "orderType",
        J::Str(name("orderType", order_type, &mut warnings)),
    ));
    let mut goods = Vec::new();
    for (i, line) in order.lines.iter().enumerate() {
        let f = |n: &str| format!("goods[{i}].{n}");
        let mut g: Vec<(&'static str, J)> = Vec::new();
        g.push(("goodsId", J::Str(ident(&f("goodsId"), &line.code)?)));
        g.push(("goodsPrice", J::Num(line.price)));
        let gname = if line.name.trim().is_empty() {
            warnings.push(format!(
                "order {}: {} has no name, sent its code",
                order.order_no,
                f("goodsName")
            ));
            line.code.clone()
        } else {
            name(&f("goodsName"), &line.name, &mut warnings)
        };
        g.push(("goodsName", J::Str(gname)));
        let nums = line.qty.normalize();
        let nums_text = nums.to_string();
        if nums_text.len() > MAX_NUM {
            return Err(format!(
                "{} {nums_text} is {} characters, Ovopark allows at most {MAX_NUM}",
                f("goodsNums"),
                nums_text.len()
            ));
        }
        g.push(("goodsNums", J::Num(nums)));
        if let Some(t) = line.scan_time {
            g.push(("scanTime", J::Str(format_time(&t))));
        }
        if let Some(b) = line.batch_no.as_deref().filter(|b| !b.is_empty()) {
            g.push(("batchNo", J::Str(ident(&f("batchNo"), b)?)));
        }
        if let Some(b) = line.box_no.as_deref().filter(|b| !b.is_empty()) {
            g.push(("boxNo", J::Str(ident(&f("boxNo"), b)?)));
        }
        if !line.attrs.is_empty() {
            let mut skus = Vec::new();
            for (k, a) in line.attrs.iter().enumerate() {
                if a.key_id.to_string().len() > MAX_NUM {
                    return Err(format!(
                        "{}.skus[{k}].skuKeyId {} has more than {MAX_NUM} digits",
                        f(""),
                        a.key_id
                    ));
                }
                skus.push(J::Obj(vec![
                    ("skuKeyId", J::Int(a.key_id)),
                    (
                        "skuValue",
                        J::Str(name(
                            &format!("{}skus[{k}].skuValue", f("")),
                            &a.value,
                            &mut warnings,
                        )),
                    ),
                ]));
            }
            g.push(("skus", J::Arr(skus)));
        }
        goods.push(J::Obj(g));
    }
    obj.push(("goods", J::Arr(goods)));
    Ok(Ipos {
        json: J::Obj(obj).to_text(),
        warnings,
    })
}

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

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `_timestamp`: `yyyyMMddHHmmss` of `unix` in the zone `zone_secs` east of UTC.
pub fn format_timestamp(unix: i64, zone_secs: i32) -> String {
    let t = chrono::DateTime::from_timestamp(unix + i64::from(zone_secs), 0).unwrap_or_default();
    t.naive_utc().format("%Y%m%d%H%M%S").to_string()
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

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// 32 random hex digits (a UUID's worth of randomness; not a secret).
fn nonce() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

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
}

fn code_text(v: &serde_json::Value) -> Option<String> {
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
        Some(1..=15 | 17) | Some(206001 | 206003 | 206004 | 206005 | 206006) => {
            Outcome::misconfigured(what.clone())
        }
        Some(208000..=208999) => Outcome::rejected(what.clone()),
        _ => Outcome::retry(format!("{what} (a code the spec does not name)")),
    };
    Classified {
        outcome,
        timestamp_refused: n == Some(16),
        code: Some(code),
        systime,
    }
}

/// The Ovopark client of one destination. Blocking (ureq); call it from a blocking thread.
pub struct OvoparkClient {
    cfg: Ovopark,
    sources: HashMap<String, OvoparkShop>,
    http: Http,
    clock: Arc<Clock>,
}

impl std::fmt::Debug for OvoparkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OvoparkClient")
            .field("url", &self.cfg.url)
            .finish()
    }
}

impl OvoparkClient {
    /// `sources`: the `[source.ovopark]` overrides by source name.
    pub fn new(
        cfg: Ovopark,
        sources: HashMap<String, OvoparkShop>,
    ) -> Result<OvoparkClient, String> {
        let http = Http::new(&cfg.http, &cfg.url).map_err(|e| format!("ovopark: {e}"))?;
        Ok(OvoparkClient {
            cfg,
            sources,
            http,
            clock: Arc::new(Clock::new()),
        })
    }

    pub fn config(&self) -> &Ovopark {
        &self.cfg
    }

    /// The learned server clock (share it, persist its offset, show it in `status`).
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// Where an order of this source goes (configuration errors are `Err`).
    pub fn target_for(&self, order: &Order) -> Result<Target, String> {
        let over = order.source.as_deref().and_then(|s| self.sources.get(s));
        self.cfg.target(over, order.shop.as_deref())
    }

    /// The form parameters of one sendOrder attempt at server time `now_unix`.
    pub fn params(&self, target: &Target, ipos: &str, now_unix: i64) -> BTreeMap<String, String> {
        let mut p = self.gateway_params(SEND_ORDER, "v2", now_unix);
        p.insert("orgId".into(), target.org_id.clone());
        p.insert("enterpriseId".into(), target.enterprise_id.clone());
        p.insert("iposJson".into(), ipos.to_string());
        p
    }

    fn gateway_params(&self, mt: &str, version: &str, now_unix: i64) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        p.insert("_aid".into(), self.cfg.aid.clone());
        p.insert("_akey".into(), self.cfg.akey.clone());
        p.insert("_mt".into(), mt.to_string());
        p.insert("_sm".into(), self.cfg.sign_method.as_str().to_string());
        p.insert("_requestMode".into(), "post".into());
        p.insert("_version".into(), version.to_string());
        p.insert("_format".into(), "json".into());
        // The vendor's newer gateway SDK signs a fresh `_nonce` into every request; it
        // keeps a quick resend of the same order (same second, same body) from being
        // taken for a replay (-100).
        p.insert("_nonce".into(), nonce());
        p.insert(
            "_timestamp".into(),
            format_timestamp(now_unix, self.cfg.zone_secs),
        );
        p
    }

    /// Signs and POSTs `params`; a timestamp refusal is answered by learning the server
    /// clock and sending once more with a fresh timestamp. Returns the classification and
    /// the reply body (empty when there was no reply).
    fn call(&self, make: &dyn Fn(i64) -> BTreeMap<String, String>) -> (Classified, Vec<u8>) {
        let mut last = None;
        for _ in 0..2 {
            let mut p = make(self.clock.now_unix());
            let sig = sign(&p, self.cfg.secret.expose(), self.cfg.sign_method);
            p.insert("_sig".into(), sig);
            let body = form_encode(&p);
            let reply = match self.http.post(&self.cfg.url, CONTENT_TYPE, body.as_bytes()) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("ovopark: {e}");
                    let c = Classified {
                        outcome: e.into_outcome(),
                        code: None,
                        timestamp_refused: false,
                        systime: None,
                    };
                    return (c, Vec::new());
                }
            };
            let mut c = classify(&reply);
            // The reply's text is logged and stored: never with our secret in it.
            c.outcome = c.outcome.redacted(&[self.cfg.secret.expose()]);
            let learned = c
                .systime
                .as_deref()
                .and_then(|s| super::parse_ovopark_systime(s, self.cfg.zone_secs))
                .and_then(|t| self.clock.learn(t))
                .or_else(|| self.clock.learn_from_reply(&reply));
            if let Some(off) = learned {
                log::info!(
                    "ovopark: server clock differs from ours by {off} s; timestamps follow the server"
                );
            }
            if !c.timestamp_refused {
                return (c, reply.body);
            }
            last = Some((c, reply.body));
        }
        last.unwrap_or_else(|| {
            let c = Classified {
                outcome: Outcome::retry("timestamp refused"),
                code: None,
                timestamp_refused: true,
                systime: None,
            };
            (c, Vec::new())
        })
    }

    /// Delivers one stamped order; never panics, never blocks past the timeouts.
    pub fn send(&self, order: &Order) -> Outcome {
        let target = match self.target_for(order) {
            Ok(t) => t,
            Err(e) => return Outcome::misconfigured(e),
        };
        let ipos = match build_ipos(order, &target, self.cfg.order_type(order.kind)) {
            Ok(i) => i,
            Err(reason) => return Outcome::rejected(format!("order {}: {reason}", order.order_no)),
        };
        for w in &ipos.warnings {
            log::warn!("ovopark: {w}");
        }
        let (c, _) = self.call(&|now| self.params(&target, &ipos.json, now));
        match &c.outcome {
            Outcome::Delivered { .. } => {}
            o => log::debug!(
                "ovopark: order {}: {}: {}",
                order.order_no,
                o.kind(),
                o.text()
            ),
        }
        c.outcome
    }

    /// `check-config --online`: a harmless `getBusinessOrg` call that shows whether the
    /// key works and may act for the configured enterprise. `Ok` says what was found.
    pub fn check_online(&self) -> Result<String, String> {
        let mut orgs: Vec<(String, String)> = Vec::new();
        let mut push = |o: Option<&String>, e: Option<&String>| {
            if let (Some(o), Some(e)) = (o, e) {
                if !orgs.contains(&(o.clone(), e.clone())) {
                    orgs.push((o.clone(), e.clone()));
                }
            }
        };
        push(
            self.cfg.defaults.org_id.as_ref(),
            self.cfg.defaults.enterprise_id.as_ref(),
        );
        for s in self.sources.values() {
            push(
                s.org_id.as_ref().or(self.cfg.defaults.org_id.as_ref()),
                s.enterprise_id
                    .as_ref()
                    .or(self.cfg.defaults.enterprise_id.as_ref()),
            );
        }
        if orgs.is_empty() {
            return Err("ovopark: no org_id/enterprise_id configured".into());
        }
        let mut found = Vec::new();
        for (org, ent) in &orgs {
            let (c, body) = self.call(&|now| {
                let mut p = self.gateway_params(GET_BUSINESS_ORG, "v1", now);
                p.insert("orgid".into(), org.clone());
                p.insert("pageNumber".into(), "1".into());
                p.insert("pageSize".into(), "100".into());
                p
            });
            match c.outcome {
                Outcome::Delivered { .. } => {}
                Outcome::Misconfigured { reason } => {
                    return Err(format!(
                        "ovopark: the key or signature is refused: {reason}"
                    ));
                }
                other => {
                    return Err(format!("ovopark: unreachable or failing: {}", other.text()));
                }
            }
            let data = serde_json::from_slice::<serde_json::Value>(&body)
                .map(|v| v["data"].clone())
                .unwrap_or_default();
            let mut listed = Vec::new();
            collect_orgs(&data, &mut listed);
            if listed.is_empty() {
                found.push(format!(
                    "orgId {org}/enterpriseId {ent} (getBusinessOrg listed no enterprise to compare)"
                ));
            } else if listed
                .iter()
                .any(|(o, e)| o == org && e.as_ref().is_none_or(|e| e == ent))
            {
                found.push(format!("orgId {org}/enterpriseId {ent}"));
            } else if listed.iter().any(|(o, _)| o == org) {
                return Err(format!(
                    "ovopark: orgId {org} is listed with another enterpriseId than {ent}: fix enterprise_id"
                ));
            } else {
                let names: Vec<String> = listed.iter().map(|(o, _)| o.clone()).collect();
                return Err(format!(
                    "ovopark: the key may not act for orgId {org} (agent permission): getBusinessOrg lists orgIds {}",
                    names.join(", ")
                ));
            }
        }
        Ok(format!(
            "ovopark: key accepted (clock offset {} s); may act for {}",
            self.clock.offset(),
            found.join(", ")
        ))
    }
}

/// Collects `(orgId, enterpriseId)` from any objects in a getBusinessOrg answer (the
/// spec does not give its shape, so look for the ids wherever they are).
fn collect_orgs(v: &serde_json::Value, out: &mut Vec<(String, Option<String>)>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_orgs(i, out)),
        serde_json::Value::Object(m) => {
            let org = ["orgId", "orgid", "org_id"]
                .iter()
                .find_map(|k| m.get(*k).and_then(code_text));
            if let Some(org) = org {
                let ent = ["enterpriseId", "enterpriseid", "enterprise_id"]
                    .iter()
                    .find_map(|k| m.get(*k).and_then(code_text));
                out.push((org, ent));
            }
            m.values().for_each(|i| collect_orgs(i, out));
        }
        _ => {}
    }
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

    /// Published vector 1: the vendor SDK README.
    #[test]
    fn vendor_readme_vector() {
        let p = params(&[
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
            signing_string(&p, "test"),
            "test_aidS107_akeytest_mtopen.demo.queryOpenAccount_requestModepost_smmd5_timestamp20171221132407_versionv1orgid1test"
        );
        assert_eq!(
            sign(&p, "test", SignMethod::Md5),
            "5489704B80A47394025527D6D51FB582"
        );
    }

    /// Published vector 2: `waywake/ovopark-sdk-ts` tests.
    #[test]
    fn sdk_ts_vector() {
        let p = params(&[
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
        assert_eq!(
            sign(&p, &secret, SignMethod::Md5),
            "B657F7CA341BB5C9C162603B9389DAA9"
        );
        // The sha1 form: 40 upper-case hex characters of the same signing string.
        let s = sign(&p, &secret, SignMethod::Sha1);
        assert_eq!(s.len(), 40);
        assert_eq!(s, s.to_uppercase());
    }

    #[test]
    fn sig_is_excluded_and_empty_values_kept() {
        let mut p = params(&[("b", ""), ("a", "1")]);
        let before = signing_string(&p, "s");
        p.insert("_sig".into(), "X".into());
        assert_eq!(signing_string(&p, "s"), before);
        assert_eq!(before, "sa1bs");
    }

    #[test]
    fn timestamp_in_zone() {
        // 2019-11-28 06:16:20 UTC = 14:16:20 at UTC+8.
        assert_eq!(format_timestamp(1574921780, 8 * 3600), "20191128141620");
        assert_eq!(format_timestamp(1574921780, 0), "20191128061620");
    }

    #[test]
    fn utc_offsets() {
        let check = |s: &str, e: Option<i32>| assert_eq!(parse_utc_offset(s), e, "{s}");
        check("+08:00", Some(28800));
        check("-05:30", Some(-19800));
        check("Z", Some(0));
        check("8", None);
        check("+8:00", None);
    }

    #[test]
    fn form_encoding_escapes_reserved_and_utf8() {
        let p = params(&[("iposJson", "{\"a\":\"可 乐&=+\"}"), ("_sm", "md5")]);
        assert_eq!(
            form_encode(&p),
            "_sm=md5&iposJson=%7B%22a%22%3A%22%E5%8F%AF%20%E4%B9%90%26%3D%2B%22%7D"
        );
    }

    fn raw_ok() -> RawOvopark {
        RawOvopark {
            akey: Some("K1".into()),
            secret: Some(Secret::new("s3cr3t")),
            org_id: Some(IdValue::Int(1)),
            enterprise_id: Some(IdValue::Text("2".into())),
            ..RawOvopark::default()
        }
    }

    #[test]
    fn config_validation_names_the_key() {
        let v = raw_ok().validate().unwrap();
        assert_eq!(v.url, DEFAULT_URL);
        assert_eq!(v.sign_method, SignMethod::Md5);
        assert_eq!(v.zone_secs, 28800);
        assert_eq!(v.defaults.org_id.as_deref(), Some("1"));
        assert_eq!(v.concurrency, DEFAULT_CONCURRENCY);
        let check = |f: &dyn Fn(&mut RawOvopark), key: &str| {
            let mut r = raw_ok();
            f(&mut r);
            let e = r.validate().unwrap_err();
            assert!(e.starts_with(key), "{key}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        };
        check(
            &|r| r.sign_method = Some("sha256".into()),
            "ovopark.sign_method",
        );
        check(&|r| r.akey = None, "ovopark.akey");
        check(&|r| r.secret = None, "ovopark.secret");
        check(
            &|r| r.secret_file = Some("/nonexistent/x".into()),
            "ovopark.secret",
        );
        check(
            &|r| r.org_id = Some(IdValue::Text("x1".into())),
            "ovopark.org_id",
        );
        check(
            &|r| r.dep_id = Some(IdValue::Int(123456789012)),
            "ovopark.dep_id",
        );
        check(&|r| r.url = Some("ftp://x".into()), "ovopark.url");
        check(&|r| r.concurrency = Some(0), "ovopark.concurrency");
        check(
            &|r| r.concurrency = Some(MAX_CONCURRENCY + 1),
            "ovopark.concurrency",
        );
        check(
            &|r| r.timestamp_utc_offset = Some("CST".into()),
            "ovopark.timestamp_utc_offset",
        );
        check(
            &|r| r.order_type_sale = Some("x".repeat(101)),
            "ovopark.order_type_sale",
        );
        let e = RawOvoparkShop {
            shop_id: Some("A".into()),
            dep_id: Some(IdValue::Int(1)),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn toml_accepts_int_or_text_ids_and_refuses_unknown_keys() {
        let r: RawOvopark = toml::from_str(
            "akey = \"K\"\nsecret = \"s\"\norg_id = 7\nenterprise_id = \"8\"\ndep_id = 123\n",
        )
        .unwrap();
        let v = r.validate().unwrap();
        assert_eq!(v.defaults.dep_id.as_deref(), Some("123"));
        assert!(toml::from_str::<RawOvopark>("akey = \"K\"\nsecrets = \"s\"\n").is_err());
    }

    #[test]
    fn target_precedence() {
        let mut cfg = raw_ok().validate().unwrap();
        cfg.defaults.dep_id = Some("9".into());
        let over = OvoparkShop {
            org_id: Some("5".into()),
            shop_id: Some("OV-1".into()),
            ..Default::default()
        };
        let t = cfg.target(Some(&over), Some("D001")).unwrap();
        assert_eq!((t.org_id.as_str(), t.enterprise_id.as_str()), ("5", "2"));
        assert_eq!(
            (t.shop_id.as_deref(), t.dep_id.as_deref()),
            (Some("OV-1"), None)
        );
        let t = cfg.target(None, Some("D001")).unwrap();
        assert_eq!(
            (t.shop_id.as_deref(), t.dep_id.as_deref()),
            (Some("D001"), None)
        );
        let t = cfg.target(None, None).unwrap();
        assert_eq!(
            (t.shop_id.as_deref(), t.dep_id.as_deref()),
            (None, Some("9"))
        );
        cfg.defaults.org_id = None;
        assert!(
            cfg.target(None, Some("D001"))
                .unwrap_err()
                .contains("org_id")
        );
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            date: None,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    fn stat(code: &str) -> String {
        format!(
            r#"{{"stat":{{"cid":"c","code":"{code}","codename":"X","systime":"1574921780123"}},"result":"r","data":{{}}}}"#
        )
    }

    /// Every code row of the spec's table, plus the HTTP-level cases.
    #[test]
    fn classification_table() {
        let check = |status: u16, body: &str, kind: &str| {
            let c = classify(&reply(status, body));
            assert_eq!(c.outcome.kind(), kind, "{status} {body}: {:?}", c.outcome);
        };
        check(200, &stat("0"), "delivered");
        check(200, &stat("208003"), "delivered");
        check(200, &stat("16"), "retry");
        check(200, &stat("-100"), "retry");
        for code in ["-500", "-999", "206999", "999999"] {
            check(200, &stat(code), "retry");
        }
        for code in 1..=17 {
            if code != 16 {
                check(200, &stat(&code.to_string()), "misconfigured");
            }
        }
        for code in ["206001", "206003", "206004", "206005", "206006"] {
            check(200, &stat(code), "misconfigured");
        }
        // Not in the spec: an order code of the 208 family is about the order's data;
        // anything else is retried, never rejected.
        check(200, &stat("208001"), "rejected");
        check(200, &stat("123456"), "retry");
        // Numeric stat.code, and a business code in data.code under a gateway success.
        check(200, r#"{"stat":{"code":0}}"#, "delivered");
        check(
            200,
            r#"{"stat":{"code":"0"},"data":{"code":"208003"}}"#,
            "delivered",
        );
        check(
            200,
            r#"{"stat":{"code":"0"},"data":{"code":206004}}"#,
            "misconfigured",
        );
        check(
            200,
            r#"{"stat":{"code":"0"},"data":{"code":"0"}}"#,
            "delivered",
        );
        // HTTP level.
        check(500, "oops", "retry");
        check(503, "", "retry");
        check(429, "", "retry");
        check(404, "", "misconfigured");
        check(301, "", "misconfigured");
        check(200, "<html>portal</html>", "retry");
        check(200, r#"{"result":"no stat"}"#, "retry");
    }

    #[test]
    fn timestamp_refusal_carries_systime() {
        let c = classify(&reply(200, &stat("16")));
        assert!(c.timestamp_refused);
        assert_eq!(c.systime.as_deref(), Some("1574921780123"));
        assert!(!classify(&reply(200, &stat("7"))).timestamp_refused);
    }

    fn target() -> Target {
        Target {
            org_id: "1".into(),
            enterprise_id: "2".into(),
            shop_id: Some("D001".into()),
            dep_id: None,
            order_no_prefix: String::new(),
        }
    }

    #[test]
    fn order_no_prefix_keeps_lanes_apart() {
        let o = crate::upload::testutil::fixture_orders().remove(0);
        let t = Target {
            order_no_prefix: "L2-".into(),
            ..target()
        };
        let v: serde_json::Value =
            serde_json::from_str(&build_ipos(&o, &t, "销售").unwrap().json).unwrap();
        assert_eq!(v["orderNo"], format!("L2-{}", o.order_no));
    }

    /// Every fixture order builds an iposJson that the emulator's strict checks accept,
    /// with the fields the spec maps from the order.
    #[test]
    fn fixture_orders_build_valid_ipos() {
        let orders = crate::upload::testutil::fixture_orders();
        assert!(orders.len() >= 9);
        for o in &orders {
            let ipos = build_ipos(o, &target(), "销售").unwrap();
            assert!(ipos.warnings.is_empty(), "{:?}", ipos.warnings);
            let v: serde_json::Value = serde_json::from_str(&ipos.json).unwrap();
            crate::emulator::ovopark::check_ipos(&v)
                .unwrap_or_else(|e| panic!("{}: {e}", o.order_no));
            assert_eq!(v["orderNo"], o.order_no.as_str());
            assert_eq!(v["shopId"], "D001");
            assert_eq!(v["machineId"], "NVR01-CH03");
            assert_eq!(v["orderTime"], format_time(&o.order_time));
            assert_eq!(v["startTime"], format_time(&o.video_start.unwrap()));
            assert_eq!(v["endTime"], format_time(&o.video_end.unwrap()));
            assert_eq!(v["goods"].as_array().unwrap().len(), o.lines.len());
            for (g, l) in v["goods"].as_array().unwrap().iter().zip(&o.lines) {
                assert_eq!(g["goodsId"], l.code.as_str());
                assert_eq!(g["goodsName"], l.name.as_str());
                // Exact decimal text on the wire, never a float rendering.
                let price_text = g["goodsPrice"].to_string();
                let nums_text = g["goodsNums"].to_string();
                assert_eq!(
                    price_text.parse::<f64>().unwrap(),
                    l.price.to_string().parse::<f64>().unwrap()
                );
                assert_eq!(
                    nums_text.parse::<f64>().unwrap(),
                    l.qty.to_string().parse::<f64>().unwrap()
                );
                assert!(ipos.json.contains(&format!("\"goodsPrice\":{}", l.price)));
            }
        }
        let first = orders
            .iter()
            .find(|o| o.order_no == "W20261122-0001")
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&build_ipos(first, &target(), "销售").unwrap().json).unwrap();
        assert_eq!(v["userName"], "赵六");
        assert_eq!(v["orderType"], "销售");
        assert_eq!(v["goods"][0]["scanTime"], "2026-11-22 10:00:31");
        assert_eq!(v["goods"][0]["skus"][1]["skuKeyId"], 2);
        assert_eq!(v["goods"][0]["skus"][1]["skuValue"], "L");
    }

    #[test]
    fn length_rules_reject_identifiers_and_cut_names() {
        let base = crate::upload::testutil::fixture_orders().remove(0);
        let check_reject = |f: &dyn Fn(&mut Order), needle: &str| {
            let mut o = base.clone();
            f(&mut o);
            let e = build_ipos(&o, &target(), "销售").unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
        };
        check_reject(
            &|o| o.order_no = "9".repeat(101),
            "orderNo is 101 characters",
        );
        check_reject(&|o| o.machine_id = Some("M".repeat(101)), "machineId");
        check_reject(&|o| o.lines[0].code = "C".repeat(101), "goods[0].goodsId");
        check_reject(
            &|o| o.lines[1].batch_no = Some("B".repeat(101)),
            "goods[1].batchNo",
        );
        check_reject(
            &|o| o.lines[0].qty = "123456789.123".parse().unwrap(),
            "goods[0].goodsNums",
        );
        check_reject(&|o| o.machine_id = None, "machine_id");
        check_reject(&|o| o.video_end = None, "video_end");
        let mut long_shop = target();
        long_shop.shop_id = Some("S".repeat(101));
        assert!(
            build_ipos(&base, &long_shop, "x")
                .unwrap_err()
                .contains("shopId")
        );

        let mut o = base.clone();
        o.lines[0].name = "长".repeat(150);
        o.cashier = Some("收".repeat(101));
        let ipos = build_ipos(&o, &target(), "销售").unwrap();
        assert_eq!(ipos.warnings.len(), 2, "{:?}", ipos.warnings);
        let v: serde_json::Value = serde_json::from_str(&ipos.json).unwrap();
        assert_eq!(
            v["goods"][0]["goodsName"].as_str().unwrap(),
            "长".repeat(100)
        );
        assert_eq!(v["userName"].as_str().unwrap().chars().count(), 100);
        crate::emulator::ovopark::check_ipos(&v).unwrap();
    }

    #[test]
    fn dep_id_goes_out_as_an_integer() {
        let o = crate::upload::testutil::fixture_orders().remove(0);
        let t = Target {
            shop_id: None,
            dep_id: Some("123".into()),
            ..target()
        };
        let json = build_ipos(&o, &t, "销售").unwrap().json;
        assert!(json.starts_with(r#"{"depId":123,"orderNo""#), "{json}");
    }
}
