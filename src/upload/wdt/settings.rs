//! Wangdiantong settings: `[wdt]` and `[source.wdt]` as written, their validation
//! (errors name the key), and a source's resolved shop identity ([`ShopTarget`]).

use std::path::PathBuf;

use serde::Deserialize;

use super::*;
use crate::order::{Kind, Payment};
use crate::secret::Secret;
pub use crate::upload::Unresolved;
use crate::upload::http::HttpConfig;
use crate::upload::{check_url, secret_from, text_key};

/// Which push method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PushMethod {
    /// Current; answers `error_list` for single failed trades.
    PushSelf2,
    /// The seed's; obsolete, all-or-nothing.
    PushSelf,
}

impl PushMethod {
    pub fn method(self) -> &'static str {
        match self {
            PushMethod::PushSelf2 => PUSH_SELF2,
            PushMethod::PushSelf => PUSH_SELF,
        }
    }
}

/// Status codes of one order kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KindStatus {
    pub process_status: i64,
    pub trade_status: i64,
    pub refund_status: i64,
    pub pay_status: i64,
    /// Order lines' `refund_status` (its own code set); lines' `status` is `trade_status`.
    pub line_refund_status: i64,
}

pub const DEFAULT_SALE: KindStatus = KindStatus {
    process_status: 10,
    trade_status: 70,
    refund_status: 0,
    pay_status: 2,
    line_refund_status: 0,
};
pub const DEFAULT_REFUND: KindStatus = KindStatus {
    process_status: 10,
    trade_status: 80,
    refund_status: 3,
    pay_status: 2,
    line_refund_status: 5,
};
pub const DEFAULT_VOID: KindStatus = KindStatus {
    process_status: 70,
    trade_status: 90,
    refund_status: 0,
    pay_status: 0,
    line_refund_status: 6,
};

/// The code sets of the seed (shared with the emulator).
pub const PROCESS_STATUSES: &[i64] = &[10, 20, 30, 40, 60, 70];
pub const TRADE_STATUSES: &[i64] = &[10, 20, 30, 40, 50, 60, 70, 80, 90];
pub const REFUND_STATUSES: &[i64] = &[0, 1, 2, 3];
pub const PAY_STATUSES: &[i64] = &[0, 1, 2];
pub const LINE_REFUND_STATUSES: &[i64] = &[0, 1, 2, 3, 4, 5, 6];
pub const PAY_METHODS: &[i64] = &[1, 2, 3, 4, 5, 6, 7, 8];
pub const DELIVERY_TERMS: &[i64] = &[1, 2];

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKindStatus {
    pub process_status: Option<i64>,
    pub trade_status: Option<i64>,
    pub refund_status: Option<i64>,
    pub pay_status: Option<i64>,
    pub line_refund_status: Option<i64>,
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatuses {
    pub sale: Option<RawKindStatus>,
    pub refund: Option<RawKindStatus>,
    pub void: Option<RawKindStatus>,
}

/// `pay_method` per payment kind.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPayMethods {
    pub cash: Option<i64>,
    pub wechat: Option<i64>,
    pub alipay: Option<i64>,
    pub card: Option<i64>,
    pub other: Option<i64>,
    /// The POS did not say.
    pub unknown: Option<i64>,
}

/// Validated pay methods: cash, wechat, alipay, card, other, unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PayMethods(pub [i64; 6]);

pub const DEFAULT_PAY_METHODS: PayMethods = PayMethods([2, 8, 7, 6, 1, 2]);

impl PayMethods {
    pub fn of(&self, p: Option<Payment>) -> i64 {
        self.0[match p {
            Some(Payment::Cash) => 0,
            Some(Payment::Wechat) => 1,
            Some(Payment::Alipay) => 2,
            Some(Payment::Card) => 3,
            Some(Payment::Other) => 4,
            None => 5,
        }]
    }
}

/// `[wdt]` as written in the TOML (and as `check-config` prints it back).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWdt {
    /// Read by the config (whether this destination gets delivery rows); default true.
    pub enabled: Option<bool>,
    /// Default [`DEFAULT_URL`].
    pub url: Option<String>,
    /// Seller account. Required.
    pub sid: Option<String>,
    /// appkey. Required.
    pub key: Option<String>,
    /// The appsecret, `secret:salt`. This or `secret_file`.
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    /// `pushSelf2` (default) or `pushSelf`.
    pub method: Option<String>,
    /// Trades per request, 1..=100, default 100.
    pub batch_size: Option<usize>,
    /// Requests in flight at once, 1..=[`MAX_CONCURRENCY`], default
    /// [`DEFAULT_CONCURRENCY`].
    pub concurrency: Option<usize>,
    /// Defaults for sources that set none (see [`RawWdtShop`]).
    pub shop_no: Option<String>,
    pub tid_prefix: Option<String>,
    pub receiver_name: Option<String>,
    pub receiver_area: Option<String>,
    pub receiver_address: Option<String>,
    pub receiver_mobile: Option<String>,
    /// `buyer_nick` (the seed: a fixed value when unknown). Default `门店顾客`.
    pub buyer_nick: Option<String>,
    /// 1 (款到发货, default) or 2 (货到付款).
    pub delivery_term: Option<i64>,
    /// Default false.
    pub is_auto_wms: Option<bool>,
    /// Required when `is_auto_wms`; default empty.
    pub warehouse_no: Option<String>,
    /// After a rate-limit answer, wait this long (jittered up to twice it). Default 300,
    /// the vendor's "5–10 minutes".
    pub rate_limit_wait_secs: Option<u64>,
    /// How long a lone trade refused with a message nobody recognises is retried
    /// before it is rejected (`"24h"`, [`DEFAULT_GIVE_UP_AFTER`]).
    pub give_up_after: Option<String>,
    pub status: Option<RawStatuses>,
    pub pay_method: Option<RawPayMethods>,
    pub connect_timeout_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub ca_file: Option<PathBuf>,
}

/// Per-source Wangdiantong identity, `[source.wdt]`.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWdtShop {
    pub shop_no: Option<String>,
    /// Prepended to the order number to make the `tid` (two lanes whose POSes both count
    /// from 1 need distinct prefixes: a tid is unique per seller account).
    pub tid_prefix: Option<String>,
    /// The receiver of an in-store sale: the shop's own name, area (`省 市 区`), address, phone.
    pub receiver_name: Option<String>,
    pub receiver_area: Option<String>,
    pub receiver_address: Option<String>,
    pub receiver_mobile: Option<String>,
}

/// Validated per-source (or default) identity; all optional, resolved per order.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WdtShop {
    pub shop_no: Option<String>,
    pub tid_prefix: Option<String>,
    pub receiver_name: Option<String>,
    pub receiver_area: Option<String>,
    pub receiver_address: Option<String>,
    pub receiver_mobile: Option<String>,
}

impl WdtShop {
    /// The keys as written; None when none is set (no table to print).
    pub fn raw(&self) -> Option<RawWdtShop> {
        (*self != WdtShop::default()).then(|| RawWdtShop {
            shop_no: self.shop_no.clone(),
            tid_prefix: self.tid_prefix.clone(),
            receiver_name: self.receiver_name.clone(),
            receiver_area: self.receiver_area.clone(),
            receiver_address: self.receiver_address.clone(),
            receiver_mobile: self.receiver_mobile.clone(),
        })
    }
}

impl RawWdtShop {
    pub fn validate_at(self, prefix: &str) -> Result<WdtShop, String> {
        let check = |key: &str, v: Option<String>, max: usize| text_key(prefix, key, v, max, false);
        Ok(WdtShop {
            shop_no: check("shop_no", self.shop_no, MAX_ID)?,
            // "" is no prefix (the documented default), not a blank identity.
            tid_prefix: text_key(prefix, "tid_prefix", self.tid_prefix, 20, true)?,
            receiver_name: check("receiver_name", self.receiver_name, 100)?,
            // pushSelf2 takes at most 40 characters here (pushSelf's table says 128):
            // refused now rather than every order rejected one by one.
            receiver_area: check("receiver_area", self.receiver_area, MAX_RECEIVER_AREA)?,
            receiver_address: check("receiver_address", self.receiver_address, 256)?,
            receiver_mobile: check("receiver_mobile", self.receiver_mobile, 40)?,
        })
    }

    pub fn validate(self) -> Result<WdtShop, String> {
        self.validate_at("source.wdt")
    }
}

/// Validated `[wdt]`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Wdt {
    pub url: String,
    pub sid: String,
    pub key: String,
    /// The part of the appsecret before the first `:`; signs, is never sent.
    pub secret: Secret,
    /// The part after it; sent as `salt`.
    pub salt: Secret,
    /// Where the appsecret was read from, when it was (printed instead of `***`).
    pub secret_file: Option<PathBuf>,
    pub method: PushMethod,
    pub batch_size: usize,
    /// Requests (batches) in flight at once.
    pub concurrency: usize,
    pub defaults: WdtShop,
    pub buyer_nick: String,
    pub delivery_term: i64,
    pub is_auto_wms: bool,
    pub warehouse_no: String,
    /// Sale, refund, void.
    pub statuses: [KindStatus; 3],
    pub pay_methods: PayMethods,
    pub rate_limit_wait_secs: u64,
    #[serde(serialize_with = "crate::settings::ser_duration")]
    pub give_up_after: std::time::Duration,
    pub http: HttpConfig,
}

fn status_of(
    prefix: &str,
    raw: Option<RawKindStatus>,
    d: KindStatus,
) -> Result<KindStatus, String> {
    let r = raw.unwrap_or_default();
    let pick = |key: &str, v: Option<i64>, dflt: i64, set: &[i64]| -> Result<i64, String> {
        let v = v.unwrap_or(dflt);
        if set.contains(&v) {
            Ok(v)
        } else {
            Err(format!("{prefix}.{key}: must be one of {set:?}, got {v}"))
        }
    };
    Ok(KindStatus {
        process_status: pick(
            "process_status",
            r.process_status,
            d.process_status,
            PROCESS_STATUSES,
        )?,
        trade_status: pick(
            "trade_status",
            r.trade_status,
            d.trade_status,
            TRADE_STATUSES,
        )?,
        refund_status: pick(
            "refund_status",
            r.refund_status,
            d.refund_status,
            REFUND_STATUSES,
        )?,
        pay_status: pick("pay_status", r.pay_status, d.pay_status, PAY_STATUSES)?,
        line_refund_status: pick(
            "line_refund_status",
            r.line_refund_status,
            d.line_refund_status,
            LINE_REFUND_STATUSES,
        )?,
    })
}

impl RawWdt {
    /// The `[wdt]` table as the config holds it, deserialized and validated. Errors
    /// name the key (`wdt.…`).
    pub fn from_table(table: toml::Table) -> Result<Wdt, String> {
        let raw: RawWdt = serde::Deserialize::deserialize(toml::Value::Table(table))
            .map_err(|e| format!("wdt: {}", e.to_string().trim()))?;
        raw.validate()
    }

    pub fn validate(self) -> Result<Wdt, String> {
        let url = self.url.unwrap_or_else(|| DEFAULT_URL.to_string());
        check_url("wdt.url", &url)?;
        let required = |key: &str, v: Option<String>| -> Result<String, String> {
            match v {
                Some(s) if !s.trim().is_empty() => Ok(s),
                _ => Err(format!("wdt.{key}: missing")),
            }
        };
        let sid = required("sid", self.sid)?;
        let key = required("key", self.key)?;
        let secret_file = self.secret_file.clone();
        let appsecret = secret_from("wdt", self.secret, self.secret_file)?;
        let Some((secret, salt)) = appsecret.expose().split_once(':') else {
            return Err(
                "wdt.secret: must be the appsecret as given, secret:salt (no ':' found)".into(),
            );
        };
        if secret.is_empty() || salt.is_empty() {
            return Err("wdt.secret: both parts of secret:salt must be non-empty".into());
        }
        let (secret, salt) = (Secret::new(secret), Secret::new(salt));
        let method = match self.method.as_deref().unwrap_or("pushSelf2") {
            "pushSelf2" | PUSH_SELF2 => PushMethod::PushSelf2,
            "pushSelf" | PUSH_SELF => PushMethod::PushSelf,
            other => {
                return Err(format!(
                    "wdt.method: must be pushSelf2 or pushSelf, got {other:?}"
                ));
            }
        };
        let batch_size = self.batch_size.unwrap_or(MAX_BATCH);
        if !(1..=MAX_BATCH).contains(&batch_size) {
            return Err(format!(
                "wdt.batch_size: must be 1..={MAX_BATCH}, got {batch_size}"
            ));
        }
        let concurrency = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(format!(
                "wdt.concurrency: must be 1..={MAX_CONCURRENCY}, got {concurrency}"
            ));
        }
        let defaults = RawWdtShop {
            shop_no: self.shop_no,
            tid_prefix: self.tid_prefix,
            receiver_name: self.receiver_name,
            receiver_area: self.receiver_area,
            receiver_address: self.receiver_address,
            receiver_mobile: self.receiver_mobile,
        }
        .validate_at("wdt")?;
        let buyer_nick = self.buyer_nick.unwrap_or_else(|| DEFAULT_BUYER_NICK.into());
        if buyer_nick.trim().is_empty() || buyer_nick.chars().count() > 100 {
            return Err("wdt.buyer_nick: must be 1..=100 characters".into());
        }
        let delivery_term = self.delivery_term.unwrap_or(1);
        if !DELIVERY_TERMS.contains(&delivery_term) {
            return Err(format!(
                "wdt.delivery_term: must be 1 or 2, got {delivery_term}"
            ));
        }
        let is_auto_wms = self.is_auto_wms.unwrap_or(false);
        let warehouse_no = self.warehouse_no.unwrap_or_default();
        if warehouse_no.chars().count() > MAX_ID {
            return Err(format!(
                "wdt.warehouse_no: must be at most {MAX_ID} characters"
            ));
        }
        if is_auto_wms && warehouse_no.trim().is_empty() {
            return Err("wdt.warehouse_no: required when wdt.is_auto_wms = true".into());
        }
        let rate_limit_wait_secs = self
            .rate_limit_wait_secs
            .unwrap_or(DEFAULT_RATE_LIMIT_WAIT_SECS);
        if !(1..=3600).contains(&rate_limit_wait_secs) {
            return Err(format!(
                "wdt.rate_limit_wait_secs: must be 1..=3600, got {rate_limit_wait_secs}"
            ));
        }
        let give_up_after = match self.give_up_after.as_deref() {
            None => DEFAULT_GIVE_UP_AFTER,
            Some(v) => {
                crate::settings::parse_duration(v).map_err(|e| format!("wdt.give_up_after: {e}"))?
            }
        };
        if give_up_after.is_zero() {
            return Err("wdt.give_up_after: must be more than 0".into());
        }
        let st = self.status.unwrap_or_default();
        let statuses = [
            status_of("wdt.status.sale", st.sale, DEFAULT_SALE)?,
            status_of("wdt.status.refund", st.refund, DEFAULT_REFUND)?,
            status_of("wdt.status.void", st.void, DEFAULT_VOID)?,
        ];
        let pm = self.pay_method.unwrap_or_default();
        let mut pay_methods = DEFAULT_PAY_METHODS;
        for (i, (k, v)) in [
            ("cash", pm.cash),
            ("wechat", pm.wechat),
            ("alipay", pm.alipay),
            ("card", pm.card),
            ("other", pm.other),
            ("unknown", pm.unknown),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(v) = v {
                if !PAY_METHODS.contains(&v) {
                    return Err(format!("wdt.pay_method.{k}: must be 1..=8, got {v}"));
                }
                pay_methods.0[i] = v;
            }
        }
        let http = HttpConfig::from_raw(
            "wdt",
            self.connect_timeout_secs,
            self.timeout_secs,
            self.ca_file,
        )?;
        Ok(Wdt {
            url,
            sid,
            key,
            secret,
            salt,
            secret_file,
            method,
            batch_size,
            concurrency,
            defaults,
            buyer_nick,
            delivery_term,
            is_auto_wms,
            warehouse_no,
            statuses,
            pay_methods,
            rate_limit_wait_secs,
            give_up_after,
            http,
        })
    }
}

impl Wdt {
    /// `[wdt]` as the file writes it, every default filled in; the appsecret as
    /// `***`, or its `secret_file`.
    pub fn raw(&self) -> RawWdt {
        let d = self.defaults.raw().unwrap_or_default();
        let status = |k: &KindStatus| {
            Some(RawKindStatus {
                process_status: Some(k.process_status),
                trade_status: Some(k.trade_status),
                refund_status: Some(k.refund_status),
                pay_status: Some(k.pay_status),
                line_refund_status: Some(k.line_refund_status),
            })
        };
        let [cash, wechat, alipay, card, other, unknown] = self.pay_methods.0.map(Some);
        RawWdt {
            enabled: Some(true),
            url: Some(self.url.clone()),
            sid: Some(self.sid.clone()),
            key: Some(self.key.clone()),
            secret: self.secret_file.is_none().then(|| self.secret.clone()),
            secret_file: self.secret_file.clone(),
            method: Some(
                match self.method {
                    PushMethod::PushSelf2 => "pushSelf2",
                    PushMethod::PushSelf => "pushSelf",
                }
                .into(),
            ),
            batch_size: Some(self.batch_size),
            concurrency: Some(self.concurrency),
            shop_no: d.shop_no,
            tid_prefix: d.tid_prefix,
            receiver_name: d.receiver_name,
            receiver_area: d.receiver_area,
            receiver_address: d.receiver_address,
            receiver_mobile: d.receiver_mobile,
            buyer_nick: Some(self.buyer_nick.clone()),
            delivery_term: Some(self.delivery_term),
            is_auto_wms: Some(self.is_auto_wms),
            warehouse_no: Some(self.warehouse_no.clone()),
            rate_limit_wait_secs: Some(self.rate_limit_wait_secs),
            give_up_after: Some(crate::settings::fmt_duration(self.give_up_after)),
            status: Some(RawStatuses {
                sale: status(&self.statuses[0]),
                refund: status(&self.statuses[1]),
                void: status(&self.statuses[2]),
            }),
            pay_method: Some(RawPayMethods {
                cash,
                wechat,
                alipay,
                card,
                other,
                unknown,
            }),
            connect_timeout_secs: Some(self.http.connect_timeout.as_secs()),
            timeout_secs: Some(self.http.timeout.as_secs()),
            ca_file: self.http.ca_file.clone(),
        }
    }
}

/// The shop identity an order goes out with, after overrides and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopTarget {
    pub shop_no: String,
    pub tid_prefix: String,
    pub receiver_name: String,
    pub receiver_area: String,
    pub receiver_address: String,
    pub receiver_mobile: String,
}

impl Wdt {
    /// Resolves a source's `[source.wdt]` over `[wdt]` (the one place this is done;
    /// the config calls it for every source). An error is configuration.
    pub fn resolve(&self, over: Option<&WdtShop>) -> Result<ShopTarget, Unresolved> {
        let empty = WdtShop::default();
        let o = over.unwrap_or(&empty);
        let d = &self.defaults;
        let pick = |key: &'static str,
                    a: &Option<String>,
                    b: &Option<String>|
         -> Result<String, Unresolved> {
            a.clone().or_else(|| b.clone()).ok_or_else(|| Unresolved {
                key,
                reason: format!("no wdt {key}: set wdt.{key} or the source's [source.wdt] {key}"),
            })
        };
        Ok(ShopTarget {
            shop_no: pick("shop_no", &o.shop_no, &d.shop_no)?,
            tid_prefix: o
                .tid_prefix
                .clone()
                .or_else(|| d.tid_prefix.clone())
                .unwrap_or_default(),
            receiver_name: pick("receiver_name", &o.receiver_name, &d.receiver_name)?,
            receiver_area: pick("receiver_area", &o.receiver_area, &d.receiver_area)?,
            receiver_address: pick("receiver_address", &o.receiver_address, &d.receiver_address)?,
            receiver_mobile: pick("receiver_mobile", &o.receiver_mobile, &d.receiver_mobile)?,
        })
    }

    /// [`Wdt::resolve`], with only the reason.
    pub fn target(&self, over: Option<&WdtShop>) -> Result<ShopTarget, String> {
        self.resolve(over).map_err(|e| e.reason)
    }

    pub(super) fn status(&self, kind: Kind) -> KindStatus {
        match kind {
            Kind::Sale => self.statuses[0],
            Kind::Refund => self.statuses[1],
            Kind::Void => self.statuses[2],
        }
    }
}
