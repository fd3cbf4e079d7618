//! Ovopark settings: `[ovopark]` and `[source.ovopark]` as written, their validation
//! (errors name the key), and where a source's orders go (its [`Target`]).

use std::path::PathBuf;

use serde::Deserialize;

use super::*;
use crate::order::Kind;
use crate::secret::Secret;
pub use crate::upload::Unresolved;
use crate::upload::http::HttpConfig;
use crate::upload::{check_url, secret_from, text_key};

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
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum IdValue {
    Int(i64),
    Text(String),
}

impl IdValue {
    /// A validated id as written: an integer when it is one.
    pub fn written(s: &str) -> IdValue {
        s.parse()
            .map_or_else(|_| IdValue::Text(s.to_string()), IdValue::Int)
    }

    fn into_string(self) -> String {
        match self {
            IdValue::Int(i) => i.to_string(),
            IdValue::Text(s) => s,
        }
    }
}

/// `[ovopark]` as written in the TOML (and as `check-config` prints it back).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
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
    /// The sendOrder method name (`_mt`), default [`SEND_ORDER`], for a tenant whose
    /// platform registers the storehouse payload under another name. Not the POS API
    /// (`open.ovopark.pos.sendOrder`): its payload differs and is not built (the
    /// config warns, issue #26).
    pub method: Option<String>,
    /// How long an order refused with a code nobody recognises is retried before it
    /// is rejected (`"24h"`, [`DEFAULT_GIVE_UP_AFTER`]).
    pub give_up_after: Option<String>,
}

/// Ovopark takes one order per request, so over a real network a backlog drains at
/// one order per round trip unless requests overlap. A few in flight keep the link
/// busy; each one in flight is a possible resend after a crash (answered 208003).
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const MAX_CONCURRENCY: usize = 16;

/// Per-source Ovopark identity, `[source.ovopark]`: a box may serve several shops, and
/// an agent account may act for several enterprises.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
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

impl OvoparkShop {
    /// The keys as written; None when none is set (no table to print).
    pub fn raw(&self) -> Option<RawOvoparkShop> {
        (*self != OvoparkShop::default()).then(|| RawOvoparkShop {
            org_id: self.org_id.as_deref().map(IdValue::written),
            enterprise_id: self.enterprise_id.as_deref().map(IdValue::written),
            shop_id: self.shop_id.clone(),
            dep_id: self.dep_id.as_deref().map(IdValue::written),
            order_no_prefix: self.order_no_prefix.clone(),
        })
    }
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
        let shop_id = text_key(prefix, "shop_id", self.shop_id, MAX_STR, false)?;
        let order_no_prefix = text_key(prefix, "order_no_prefix", self.order_no_prefix, 20, true)?;
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
    /// Where the secret was read from, when it was (printed instead of `***`).
    pub secret_file: Option<PathBuf>,
    pub sign_method: SignMethod,
    /// Seconds east of UTC of `_timestamp`.
    pub zone_secs: i32,
    pub defaults: OvoparkShop,
    /// `orderType` for sale, refund, void.
    pub order_types: [String; 3],
    pub http: HttpConfig,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// `_mt` of the push.
    pub method: String,
    #[serde(serialize_with = "crate::settings::ser_duration")]
    pub give_up_after: std::time::Duration,
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
        let secret_file = self.secret_file.clone();
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
        let method = self.method.unwrap_or_else(|| SEND_ORDER.to_string());
        let method_ok = method.len() <= 100
            && method.contains('.')
            && method
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
        if !method_ok {
            return Err(format!(
                "ovopark.method: must be a method name like {SEND_ORDER}, got {method:?}"
            ));
        }
        let give_up_after = match self.give_up_after.as_deref() {
            None => DEFAULT_GIVE_UP_AFTER,
            Some(v) => crate::settings::parse_duration(v)
                .map_err(|e| format!("ovopark.give_up_after: {e}"))?,
        };
        if give_up_after.is_zero() {
            return Err("ovopark.give_up_after: must be more than 0".into());
        }
        Ok(Ovopark {
            method,
            give_up_after,
            url,
            aid,
            akey,
            secret,
            secret_file,
            sign_method,
            zone_secs,
            defaults,
            order_types,
            http,
            concurrency,
        })
    }
}

impl Ovopark {
    /// `[ovopark]` as the file writes it, every default filled in; the secret as
    /// `***`, or its `secret_file`.
    pub fn raw(&self) -> RawOvopark {
        let d = self.defaults.raw().unwrap_or_default();
        let zone = self.zone_secs.unsigned_abs();
        let sign = if self.zone_secs < 0 { '-' } else { '+' };
        let [sale, refund, void] = self.order_types.clone();
        RawOvopark {
            enabled: Some(true),
            url: Some(self.url.clone()),
            aid: Some(self.aid.clone()),
            akey: Some(self.akey.clone()),
            secret: self.secret_file.is_none().then(|| self.secret.clone()),
            secret_file: self.secret_file.clone(),
            sign_method: Some(self.sign_method.as_str().into()),
            timestamp_utc_offset: Some(format!("{sign}{:02}:{:02}", zone / 3600, zone % 3600 / 60)),
            org_id: d.org_id,
            enterprise_id: d.enterprise_id,
            shop_id: d.shop_id,
            dep_id: d.dep_id,
            order_no_prefix: d.order_no_prefix,
            order_type_sale: Some(sale),
            order_type_refund: Some(refund),
            order_type_void: Some(void),
            connect_timeout_secs: Some(self.http.connect_timeout.as_secs()),
            timeout_secs: Some(self.http.timeout.as_secs()),
            ca_file: self.http.ca_file.clone(),
            concurrency: Some(self.concurrency),
            method: Some(self.method.clone()),
            give_up_after: Some(crate::settings::fmt_duration(self.give_up_after)),
        }
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

/// A source's Ovopark identity resolved over `[ovopark]`, once, when the config is
/// read; only the shop may still come from the order (its stamped shop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub org_id: String,
    pub enterprise_id: String,
    /// `[source.ovopark]` shop_id/dep_id, when set (they win over the order's shop).
    pub shop: Option<(Option<String>, Option<String>)>,
    /// `[ovopark]` shop_id/dep_id, for orders stamped without a shop.
    pub default_shop: Option<(Option<String>, Option<String>)>,
    pub order_no_prefix: String,
    /// The source's own `shop` (its identity), when known: an order stamped with
    /// another shop (an export carrying each order's shop) is that order's data.
    pub source_shop: Option<String>,
}

impl Route {
    /// Whether an order stamped with `order_shop` goes with a shop of its own (not
    /// its source's, nor one the config sets): then a refusal of that shop (206004)
    /// is about that order, not its source.
    pub fn shop_is_the_orders(&self, order_shop: Option<&str>) -> bool {
        self.shop.is_none()
            && self.source_shop.is_some()
            && order_shop.is_some_and(|s| !s.is_empty() && Some(s) != self.source_shop.as_deref())
    }

    /// The tenant/shop for an order stamped with `order_shop`.
    pub fn target(&self, order_shop: Option<&str>) -> Result<Target, String> {
        let (shop_id, dep_id) = if let Some(s) = &self.shop {
            s.clone()
        } else if let Some(s) = order_shop.filter(|s| !s.is_empty()) {
            (Some(s.to_string()), None)
        } else if let Some(s) = &self.default_shop {
            s.clone()
        } else {
            return Err("no ovopark shop: set the source's shop, [source.ovopark] shop_id/dep_id or ovopark.shop_id".into());
        };
        Ok(Target {
            org_id: self.org_id.clone(),
            enterprise_id: self.enterprise_id.clone(),
            shop_id,
            dep_id,
            order_no_prefix: self.order_no_prefix.clone(),
        })
    }
}

impl Ovopark {
    /// Resolves a source's `[source.ovopark]` over `[ovopark]` (the one place this is
    /// done; the config calls it for every source). `shop`: the source's stamped shop.
    /// Precedence: `[source.ovopark]`, then the order's stamped `shop` (as `shopId`),
    /// then `[ovopark]`. An error here is configuration (the same for every order of
    /// that source).
    pub fn resolve(
        &self,
        over: Option<&OvoparkShop>,
        shop: Option<&str>,
    ) -> Result<Route, Unresolved> {
        let empty = OvoparkShop::default();
        let over = over.unwrap_or(&empty);
        let src = shop.unwrap_or("?");
        let org_id = over
            .org_id
            .clone()
            .or_else(|| self.defaults.org_id.clone())
            .ok_or_else(|| Unresolved {
                key: "org_id",
                reason: format!(
                    "no ovopark org_id for the source of shop {src} (set ovopark.org_id)"
                ),
            })?;
        let enterprise_id = over
            .enterprise_id
            .clone()
            .or_else(|| self.defaults.enterprise_id.clone())
            .ok_or_else(|| Unresolved {
                key: "enterprise_id",
                reason: "no ovopark enterprise_id (set ovopark.enterprise_id)".to_string(),
            })?;
        let pair = |s: &OvoparkShop| {
            (s.shop_id.is_some() || s.dep_id.is_some())
                .then(|| (s.shop_id.clone(), s.dep_id.clone()))
        };
        let route = Route {
            org_id,
            enterprise_id,
            shop: pair(over),
            default_shop: pair(&self.defaults),
            source_shop: shop.map(str::to_string),
            order_no_prefix: over
                .order_no_prefix
                .clone()
                .or_else(|| self.defaults.order_no_prefix.clone())
                .unwrap_or_default(),
        };
        route.target(shop).map_err(|reason| Unresolved {
            key: "shop_id",
            reason,
        })?;
        Ok(route)
    }

    /// The tenant/shop for an order of a source with overrides `over`, stamped with
    /// `order_shop` (see [`Ovopark::resolve`]).
    pub fn target(
        &self,
        over: Option<&OvoparkShop>,
        order_shop: Option<&str>,
    ) -> Result<Target, String> {
        self.resolve(over, order_shop)
            .map_err(|e| e.reason)?
            .target(order_shop)
    }

    pub(super) fn order_type(&self, kind: Kind) -> &str {
        match kind {
            Kind::Sale => &self.order_types[0],
            Kind::Refund => &self.order_types[1],
            Kind::Void => &self.order_types[2],
        }
    }
}
