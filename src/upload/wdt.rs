//! Wangdiantong (旺店通) `sales.RawTrade.pushSelf2` / `pushSelf`: configuration, raw
//! trades from stamped orders, the `sign` signature, reply classification, batching.
//!
//! Invariants:
//! - Each order becomes one raw trade (`tid` = optional per-source prefix + order number)
//!   with one order line per order line (`oid` = `tid-N`, N from 1), and the amounts obey
//!   the spec's relations exactly: line `total_amount = price*num + adjust_amount -
//!   discount` (the POS's printed amount is `total_amount`; `adjust_amount` takes its
//!   rounding), Σ `share_discount` = the order discount, `receivable = Σ(total_amount -
//!   share_discount)`, `goods_count = Σ num`, `order_count` = lines. Decimals go out as
//!   strings with at most 4 decimals, never through a float.
//! - A refund is a trade of returned goods: positive quantities and amounts, refund
//!   statuses, `refund_amount` = what the line was worth.
//! - Every field the seed marks required is present, from the order or from the
//!   documented, configurable defaults (an in-store sale's receiver is the shop itself).
//! - A request holds at most `batch_size` (≤ 100) trades of one `shop_no`, with distinct
//!   `tid`s. Trades named in `error_list` are rejected alone; a batch refused for one
//!   trade's data is resent trade by trade so that only the bad one is rejected.
//! - The secret (before the `:`) is never sent; the salt is sent in the query as the spec
//!   wants, so the query string is never logged.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use md5::Digest;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::http::{Http, HttpConfig, Reply};
use super::json::J;
use super::ovopark::{check_url, percent_encode, secret_from};
use super::{Clock, Outcome, classify_http_status, cut_chars, jitter_secs};
use crate::order::{Kind, Order, Payment, format_time};
use crate::secret::Secret;

pub const DEFAULT_URL: &str = "http://wdt.wangdian.cn/openapi";
pub const PUSH_SELF2: &str = "sales.RawTrade.pushSelf2";
pub const PUSH_SELF: &str = "sales.RawTrade.pushSelf";
/// The harmless call of `check-config --online` (the spec's signature vector uses it).
pub const CORE_NOW: &str = "system.Core.now";
/// WDT timestamps count from 2012-01-01 00:00:00 UTC+8.
pub const EPOCH_OFFSET: i64 = 1325347200;
pub const MAX_BATCH: usize = 100;

/// One batch in flight by default: on loopback a second one gained 5–15 % and cost
/// 4 MB of peak RSS (two batches built at once). Over a WAN, where a batch waits a
/// round trip and the cloud's work, 2 overlaps building the next batch with that
/// wait. Each batch in flight is a possible re-push after a crash (an update of the
/// same trades).
pub const DEFAULT_CONCURRENCY: usize = 1;
pub const MAX_CONCURRENCY: usize = 4;
pub const DEFAULT_BUYER_NICK: &str = "门店顾客";
/// Max lengths (characters) from the seed.
pub const MAX_ID: usize = 40;
pub const MAX_GOODS_NAME: usize = 255;
pub const MAX_SPEC_NAME: usize = 100;

/// The vendor's advice after a rate-limit message: wait 5–10 minutes (the wait is
/// jittered between this and twice this).
pub const DEFAULT_RATE_LIMIT_WAIT_SECS: u64 = 300;

/// Messages of status 100 (substrings), by what they mean.
pub const RATE_LIMIT_MESSAGES: [&str; 2] =
    ["超过每分钟最大调用频率限制", "超过每分钟最大并发次数限制"];
pub const CONFIG_MESSAGES: [&str; 3] = [
    "店铺编号不存在或已停用",
    "店铺平台不是自有平台",
    "新建订单权限不足",
];
/// About one trade's data. `金额不合法` is the emulator's message for a broken amount
/// relation (the spec names no message for it).
pub const DATA_MESSAGES: [&str; 5] = [
    "非法字符",
    "数量不合法",
    "下单时间非法",
    "Data truncation",
    "金额不合法",
];

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKindStatus {
    pub process_status: Option<i64>,
    pub trade_status: Option<i64>,
    pub refund_status: Option<i64>,
    pub pay_status: Option<i64>,
    pub line_refund_status: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatuses {
    pub sale: Option<RawKindStatus>,
    pub refund: Option<RawKindStatus>,
    pub void: Option<RawKindStatus>,
}

/// `pay_method` per payment kind.
#[derive(Debug, Default, Deserialize)]
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

/// `[wdt]` as written in the TOML.
#[derive(Debug, Default, Deserialize)]
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
    pub status: Option<RawStatuses>,
    pub pay_method: Option<RawPayMethods>,
    pub connect_timeout_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub ca_file: Option<PathBuf>,
}

/// Per-source Wangdiantong identity, `[source.wdt]`.
#[derive(Debug, Default, Clone, Deserialize)]
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

impl RawWdtShop {
    pub fn validate_at(self, prefix: &str) -> Result<WdtShop, String> {
        let check =
            |key: &str, v: Option<String>, max: usize| super::text_key(prefix, key, v, max, false);
        Ok(WdtShop {
            shop_no: check("shop_no", self.shop_no, MAX_ID)?,
            // "" is no prefix (the documented default), not a blank identity.
            tid_prefix: super::text_key(prefix, "tid_prefix", self.tid_prefix, 20, true)?,
            receiver_name: check("receiver_name", self.receiver_name, 100)?,
            receiver_area: check("receiver_area", self.receiver_area, 128)?,
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
            http,
        })
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
    /// Resolves `[source.wdt]` over `[wdt]`; an error is configuration.
    pub fn target(&self, over: Option<&WdtShop>) -> Result<ShopTarget, String> {
        let empty = WdtShop::default();
        let o = over.unwrap_or(&empty);
        let d = &self.defaults;
        let pick = |key: &str, a: &Option<String>, b: &Option<String>| -> Result<String, String> {
            a.clone().or_else(|| b.clone()).ok_or_else(|| {
                format!("no wdt {key}: set wdt.{key} or the source's [source.wdt] {key}")
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

    fn status(&self, kind: Kind) -> KindStatus {
        match kind {
            Kind::Sale => self.statuses[0],
            Kind::Refund => self.statuses[1],
            Kind::Void => self.statuses[2],
        }
    }
}

/// One order as a raw trade with its order lines, ready to batch.
#[derive(Debug, Clone)]
pub struct BuiltTrade {
    pub tid: String,
    pub shop_no: String,
    pub(crate) trade: J,
    pub(crate) lines: Vec<J>,
    pub warnings: Vec<String>,
}

impl BuiltTrade {
    /// The trade object's JSON (for tests and `parse --show wdt`-style output).
    pub fn trade_json(&self) -> String {
        self.trade.to_text()
    }

    pub fn lines_json(&self) -> Vec<String> {
        self.lines.iter().map(J::to_text).collect()
    }
}

fn dec(d: Decimal) -> J {
    J::Str(d.round_dp(4).to_string())
}

/// Removes control characters (the server answers 非法字符 to them) from a name.
fn clean_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Builds the raw trade of a stamped order. `Err` is why the order is rejected.
pub fn build_trade(order: &Order, shop: &ShopTarget, cfg: &Wdt) -> Result<BuiltTrade, String> {
    let mut warnings = Vec::new();
    let ident = |field: &str, v: &str| -> Result<String, String> {
        if v.trim().is_empty() {
            return Err(format!("{field} is empty"));
        }
        if v.chars().any(char::is_control) {
            return Err(format!("{field} {v:?} contains control characters"));
        }
        let n = v.chars().count();
        if n > MAX_ID {
            return Err(format!(
                "{field} {v:?} is {n} characters, Wangdiantong allows at most {MAX_ID}"
            ));
        }
        Ok(v.to_string())
    };
    let name = |field: &str, v: &str, max: usize, warnings: &mut Vec<String>| -> String {
        let v = clean_name(v);
        match cut_chars(&v, max) {
            Some(cut) => {
                warnings.push(format!(
                    "order {}: {field} cut to {max} characters",
                    order.order_no
                ));
                cut
            }
            None => v,
        }
    };
    if order.lines.is_empty() {
        return Err("a Wangdiantong trade needs at least one line".into());
    }
    let tid = ident("tid", &format!("{}{}", shop.tid_prefix, order.order_no))?;
    let status = cfg.status(order.kind);
    let refund = order.kind == Kind::Refund;
    // Order-level discount spread over the lines in proportion to their amounts; the
    // last line takes the remainder so the shares add up exactly.
    let totals: Vec<Decimal> = order
        .lines
        .iter()
        .map(|l| l.amount.abs().round_dp(4))
        .collect();
    let sum_total: Decimal = totals.iter().sum();
    let order_discount = order.discount.abs().round_dp(4);
    if sum_total.is_zero() && !order_discount.is_zero() {
        return Err(format!(
            "discount {} on lines that add up to 0",
            order.discount
        ));
    }
    let mut shares = Vec::with_capacity(totals.len());
    let mut shared = Decimal::ZERO;
    for (i, t) in totals.iter().enumerate() {
        let s = if i + 1 == totals.len() {
            order_discount - shared
        } else if sum_total.is_zero() {
            // Free lines only (gifts): nothing to spread, and nothing to divide by.
            Decimal::ZERO
        } else {
            (order_discount * t / sum_total).round_dp(4)
        };
        shared += s;
        shares.push(s);
    }

    let mut lines = Vec::new();
    let mut goods_count = Decimal::ZERO;
    let mut receivable = Decimal::ZERO;
    let mut line_discounts = Decimal::ZERO;
    for (i, l) in order.lines.iter().enumerate() {
        let f = |n: &str| format!("lines[{i}].{n}");
        let code = ident(&f("code"), &l.code)?;
        let num = l.qty.abs().round_dp(4);
        if num.is_zero() {
            return Err(format!("{} is 0", f("qty")));
        }
        let price = l.price.abs().round_dp(4);
        let discount = l.discount.abs().round_dp(4);
        let total = totals[i];
        let adjust = (total - (price * num - discount)).round_dp(4);
        let share = shares[i];
        let refund_amount = if refund { total - share } else { Decimal::ZERO };
        goods_count += num;
        receivable += total - share;
        line_discounts += discount;
        let goods_name = if l.name.trim().is_empty() {
            warnings.push(format!(
                "order {}: {} is empty, sent the code",
                order.order_no,
                f("name")
            ));
            code.clone()
        } else {
            name(&f("name"), &l.name, MAX_GOODS_NAME, &mut warnings)
        };
        let mut obj = vec![
            ("tid", J::str(&tid)),
            ("oid", J::Str(ident("oid", &format!("{tid}-{}", i + 1))?)),
            ("status", J::Int(status.trade_status)),
            ("refund_status", J::Int(status.line_refund_status)),
            ("goods_id", J::str(&code)),
            ("spec_id", J::str(&code)),
            ("goods_no", J::str(&code)),
            ("spec_no", J::str(&code)),
            ("goods_name", J::Str(goods_name)),
        ];
        if !l.attrs.is_empty() {
            let spec: Vec<&str> = l.attrs.iter().map(|a| a.value.as_str()).collect();
            obj.push((
                "spec_name",
                J::Str(name(
                    &f("attrs"),
                    &spec.join(" "),
                    MAX_SPEC_NAME,
                    &mut warnings,
                )),
            ));
        }
        obj.extend([
            ("num", dec(num)),
            ("price", dec(price)),
            ("discount", dec(discount)),
            ("share_discount", dec(share)),
            ("total_amount", dec(total)),
            ("adjust_amount", dec(adjust)),
            ("refund_amount", dec(refund_amount)),
            ("remark", J::str("")),
            ("json", J::str("")),
        ]);
        lines.push(J::Obj(obj));
    }
    let time = format_time(&order.order_time);
    let cod = if cfg.delivery_term == 2 {
        receivable
    } else {
        Decimal::ZERO
    };
    let mut trade = vec![
        ("tid", J::str(&tid)),
        ("process_status", J::Int(status.process_status)),
        ("trade_status", J::Int(status.trade_status)),
        ("refund_status", J::Int(status.refund_status)),
        ("pay_status", J::Int(status.pay_status)),
        ("order_count", J::Int(order.lines.len() as i64)),
        ("goods_count", dec(goods_count)),
        ("pay_method", J::Int(cfg.pay_methods.of(order.payment))),
        ("trade_time", J::str(&time)),
    ];
    if status.pay_status != 0 {
        trade.push(("pay_time", J::str(&time)));
    }
    trade.extend([
        ("end_time", J::str(&time)),
        ("buyer_nick", J::str(&cfg.buyer_nick)),
        ("buyer_message", J::str("")),
        ("receiver_name", J::str(&shop.receiver_name)),
        ("receiver_area", J::str(&shop.receiver_area)),
        ("receiver_address", J::str(&shop.receiver_address)),
        ("receiver_zip", J::str("")),
        ("receiver_mobile", J::str(&shop.receiver_mobile)),
        ("post_amount", dec(Decimal::ZERO)),
        ("other_amount", dec(Decimal::ZERO)),
        ("discount", dec(order_discount + line_discounts)),
        ("receivable", dec(receivable)),
        ("delivery_term", J::Int(cfg.delivery_term)),
        ("cod_amount", dec(cod)),
        ("is_auto_wms", J::Bool(cfg.is_auto_wms)),
        ("warehouse_no", J::str(&cfg.warehouse_no)),
        (
            "remark",
            J::opt_str(
                order
                    .cashier
                    .as_deref()
                    .map(|c| name("cashier", &format!("收银员 {c}"), 1024, &mut warnings)),
            ),
        ),
    ]);
    Ok(BuiltTrade {
        tid,
        shop_no: shop.shop_no.clone(),
        trade: J::Obj(trade),
        lines,
        warnings,
    })
}

/// The body: `[shop_no, rawTradeList, rawTradeOrderList]` (no discount list).
pub fn build_body(shop_no: &str, trades: &[&BuiltTrade]) -> String {
    J::Arr(vec![
        J::str(shop_no),
        J::Arr(trades.iter().map(|t| t.trade.clone()).collect()),
        J::Arr(
            trades
                .iter()
                .flat_map(|t| t.lines.iter().cloned())
                .collect(),
        ),
    ])
    .to_text()
}

/// WDT `timestamp` of a unix time.
pub fn timestamp(unix: i64) -> i64 {
    unix - EPOCH_OFFSET
}

/// The signing string: secret + concat(key + value, keys in byte order) + secret, over
/// the public parameters and `body`, without `sign` and the paging parameters.
pub fn signing_string(params: &BTreeMap<String, String>, secret: &str) -> String {
    let mut plain = String::from(secret);
    for (k, v) in params {
        if matches!(k.as_str(), "sign" | "page_size" | "page_no" | "calc_total") {
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
    /// Anything else: the same outcome for every trade of the request.
    All(Outcome),
}

impl Classified {
    /// The classification with `secrets` blanked out of every text in it.
    fn redacted(self, secrets: &[&str]) -> Classified {
        use super::redact;
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
        _ => Classified::All(Outcome::retry(format!(
            "{what} (not a status the spec names)"
        ))),
    }
}

/// The Wangdiantong client of one destination. Blocking (ureq).
pub struct WdtClient {
    cfg: Wdt,
    sources: HashMap<String, WdtShop>,
    http: Http,
    clock: Arc<Clock>,
}

impl std::fmt::Debug for WdtClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WdtClient")
            .field("url", &self.cfg.url)
            .finish()
    }
}

impl WdtClient {
    /// `sources`: the `[source.wdt]` overrides by source name.
    pub fn new(cfg: Wdt, sources: HashMap<String, WdtShop>) -> Result<WdtClient, String> {
        let http = Http::new(&cfg.http, &cfg.url).map_err(|e| format!("wdt: {e}"))?;
        Ok(WdtClient {
            cfg,
            sources,
            http,
            clock: Arc::new(Clock::new()),
        })
    }

    pub fn config(&self) -> &Wdt {
        &self.cfg
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// How many orders one [`WdtClient::send_batch`] call sends per request.
    pub fn batch_size(&self) -> usize {
        self.cfg.batch_size
    }

    /// Batches in flight at once.
    pub fn concurrency(&self) -> usize {
        self.cfg.concurrency
    }

    /// Builds the trade of one order (what `send_batch` would send).
    pub fn build(&self, order: &Order) -> Result<BuiltTrade, Outcome> {
        let over = order.source.as_deref().and_then(|s| self.sources.get(s));
        let shop = self.cfg.target(over).map_err(Outcome::misconfigured)?;
        build_trade(order, &shop, &self.cfg)
            .map_err(|r| Outcome::rejected(format!("order {}: {r}", order.order_no)))
    }

    /// The signed URL (query) for `method` and `body` at server time `now_unix`.
    pub fn signed_url(&self, method: &str, body: &str, now_unix: i64) -> String {
        let mut p = BTreeMap::new();
        p.insert("sid".to_string(), self.cfg.sid.clone());
        p.insert("key".to_string(), self.cfg.key.clone());
        p.insert("salt".to_string(), self.cfg.salt.expose().to_string());
        p.insert("method".to_string(), method.to_string());
        p.insert("v".to_string(), "1.0".to_string());
        p.insert("timestamp".to_string(), timestamp(now_unix).to_string());
        p.insert("body".to_string(), body.to_string());
        let sign = sign(&p, self.cfg.secret.expose());
        p.remove("body");
        let mut url = self.cfg.url.clone();
        url.push('?');
        for (k, v) in &p {
            url.push_str(k);
            url.push('=');
            url.push_str(&percent_encode(v));
            url.push('&');
        }
        url.push_str("sign=");
        url.push_str(&sign);
        url
    }

    /// POSTs one call; a timestamp refusal is answered by learning the server clock from
    /// `Date` and sending once more.
    fn call(&self, method: &str, body: &str) -> Classified {
        let mut last = None;
        for _ in 0..2 {
            let url = self.signed_url(method, body, self.clock.now_unix());
            let reply = match self.http.post(&url, "application/json", body.as_bytes()) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("wdt: {e}");
                    return Classified::All(e.into_outcome());
                }
            };
            if let Some(off) = self.clock.learn_from_reply(&reply) {
                log::info!(
                    "wdt: server clock differs from ours by {off} s; timestamps follow the server"
                );
            }
            // The reply's text is logged and stored: never with our secret or salt in it.
            let secrets = [self.cfg.secret.expose(), self.cfg.salt.expose()];
            match classify_with(&reply, self.cfg.rate_limit_wait_secs).redacted(&secrets) {
                Classified::TimestampRefused(what) => last = Some(what),
                c => return c,
            }
        }
        Classified::All(Outcome::retry(format!(
            "{} (timestamp refused twice: clock skew)",
            last.unwrap_or_default()
        )))
    }

    /// Sends one request of trades and maps the reply onto them, splitting a batch
    /// refused for one trade's data into single requests.
    fn send_chunk(&self, chunk: &[&BuiltTrade], out: &mut HashMap<String, Outcome>) {
        let Some(first) = chunk.first() else { return };
        let body = build_body(&first.shop_no, chunk);
        match self.call(self.cfg.method.method(), &body) {
            Classified::Accepted {
                failed,
                new_count,
                chg_count,
            } => {
                for t in chunk {
                    let outcome = match failed.iter().find(|(no, _)| *no == t.tid) {
                        Some((_, err)) => Outcome::rejected(format!(
                            "Wangdiantong refused trade {}: {err}",
                            t.tid
                        )),
                        None => Outcome::Delivered {
                            note: format!(
                                "accepted (batch of {}: {new_count} new, {chg_count} updated)",
                                chunk.len()
                            ),
                        },
                    };
                    out.insert(t.tid.clone(), outcome);
                }
            }
            Classified::DataError(what) if chunk.len() > 1 => {
                log::info!(
                    "wdt: a batch of {} was refused ({what}); resending one by one",
                    chunk.len()
                );
                for t in chunk {
                    self.send_chunk(&[t], out);
                }
            }
            Classified::DataError(what) => {
                out.insert(first.tid.clone(), Outcome::rejected(what));
            }
            Classified::TimestampRefused(what) => {
                for t in chunk {
                    out.insert(t.tid.clone(), Outcome::retry(what.clone()));
                }
            }
            Classified::All(o) => {
                for t in chunk {
                    out.insert(t.tid.clone(), o.clone());
                }
            }
        }
    }

    /// Delivers stamped orders, `batch_size` per request; returns one outcome per
    /// order, in the order given.
    pub fn send_batch(&self, orders: &[&Order]) -> Vec<Outcome> {
        let mut results: Vec<Option<Outcome>> = vec![None; orders.len()];
        let mut built: Vec<(usize, BuiltTrade)> = Vec::new();
        for (i, order) in orders.iter().enumerate() {
            match self.build(order) {
                Ok(t) => {
                    for w in &t.warnings {
                        log::warn!("wdt: {w}");
                    }
                    built.push((i, t));
                }
                Err(o) => results[i] = Some(o),
            }
        }
        // Requests hold one shop_no and distinct tids; otherwise order is kept.
        let mut pending: Vec<&(usize, BuiltTrade)> = built.iter().collect();
        while !pending.is_empty() {
            let shop_no = pending[0].1.shop_no.clone();
            let mut chunk: Vec<&(usize, BuiltTrade)> = Vec::new();
            let mut rest = Vec::new();
            for item in pending {
                let fits = chunk.len() < self.cfg.batch_size
                    && item.1.shop_no == shop_no
                    && !chunk.iter().any(|c| c.1.tid == item.1.tid);
                if fits {
                    chunk.push(item);
                } else {
                    rest.push(item);
                }
            }
            pending = rest;
            let trades: Vec<&BuiltTrade> = chunk.iter().map(|(_, t)| t).collect();
            let mut out = HashMap::new();
            self.send_chunk(&trades, &mut out);
            for (i, t) in &chunk {
                results[*i] = Some(
                    out.remove(&t.tid)
                        .unwrap_or_else(|| Outcome::retry("no outcome for this trade")),
                );
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Outcome::retry("not sent")))
            .collect()
    }

    /// `check-config --online`: a signed `system.Core.now` shows whether the account,
    /// key and secret are accepted (it cannot show whether `shop_no` exists).
    pub fn check_online(&self) -> Result<String, String> {
        match self.call(CORE_NOW, "[]") {
            Classified::Accepted { .. } => Ok(format!(
                "wdt: account {} and key accepted (clock offset {} s); shop_no is checked by the first push",
                self.cfg.sid,
                self.clock.offset()
            )),
            Classified::All(Outcome::Misconfigured { reason }) => Err(format!(
                "wdt: the account, key or secret is refused: {reason}"
            )),
            Classified::All(o) => Err(format!("wdt: unreachable or failing: {}", o.text())),
            Classified::DataError(w) | Classified::TimestampRefused(w) => Err(format!("wdt: {w}")),
        }
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

    /// The published vector (`waywake/wdt-sdk-go` `sign_test.go`).
    #[test]
    fn published_vector() {
        let p = params(&[
            ("body", "[]"),
            ("key", "wdt_test"),
            ("method", "system.Core.now"),
            ("salt", "dd"),
            ("sid", "wdtapi3"),
            ("timestamp", "100"),
            ("v", "1.0"),
        ]);
        assert_eq!(
            signing_string(&p, "aa"),
            "aabody[]keywdt_testmethodsystem.Core.nowsaltddsidwdtapi3timestamp100v1.0aa"
        );
        assert_eq!(sign(&p, "aa"), "b5745bf1f4721a0d16e9a68cb7513032");
    }

    #[test]
    fn sign_and_paging_params_are_not_signed() {
        let mut p = params(&[("a", "1")]);
        let base = signing_string(&p, "s");
        for k in ["sign", "page_size", "page_no", "calc_total"] {
            p.insert(k.into(), "9".into());
        }
        assert_eq!(signing_string(&p, "s"), base);
    }

    #[test]
    fn timestamp_counts_from_2012() {
        assert_eq!(timestamp(1325347200), 0);
        assert_eq!(timestamp(1325347300), 100);
    }

    pub(crate) fn raw_ok() -> RawWdt {
        RawWdt {
            sid: Some("wdtapi3".into()),
            key: Some("wdt_test".into()),
            secret: Some(Secret::new("aa:dd")),
            shop_no: Some("SHOP1".into()),
            receiver_name: Some("一号店".into()),
            receiver_area: Some("上海 上海市 徐汇区".into()),
            receiver_address: Some("漕溪北路1号".into()),
            receiver_mobile: Some("13800000000".into()),
            ..RawWdt::default()
        }
    }

    #[test]
    fn config_splits_appsecret_and_names_keys() {
        let v = raw_ok().validate().unwrap();
        assert_eq!((v.secret.expose(), v.salt.expose()), ("aa", "dd"));
        assert_eq!(v.method, PushMethod::PushSelf2);
        assert_eq!(v.batch_size, 100);
        assert_eq!(v.statuses, [DEFAULT_SALE, DEFAULT_REFUND, DEFAULT_VOID]);
        let check = |f: &dyn Fn(&mut RawWdt), key: &str| {
            let mut r = raw_ok();
            f(&mut r);
            let e = r.validate().unwrap_err();
            assert!(e.starts_with(key), "{key}: {e}");
            assert!(!e.contains("aa:dd"), "{e}");
        };
        check(&|r| r.secret = Some(Secret::new("nosalt")), "wdt.secret");
        check(&|r| r.secret = Some(Secret::new("aa:")), "wdt.secret");
        check(&|r| r.sid = None, "wdt.sid");
        check(&|r| r.method = Some("push".into()), "wdt.method");
        check(&|r| r.batch_size = Some(101), "wdt.batch_size");
        check(&|r| r.batch_size = Some(0), "wdt.batch_size");
        check(&|r| r.concurrency = Some(0), "wdt.concurrency");
        check(
            &|r| r.concurrency = Some(MAX_CONCURRENCY + 1),
            "wdt.concurrency",
        );
        check(&|r| r.delivery_term = Some(3), "wdt.delivery_term");
        check(&|r| r.is_auto_wms = Some(true), "wdt.warehouse_no");
        check(&|r| r.shop_no = Some("x".repeat(41)), "wdt.shop_no");
        check(
            &|r| {
                r.status = Some(RawStatuses {
                    refund: Some(RawKindStatus {
                        trade_status: Some(15),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            },
            "wdt.status.refund.trade_status",
        );
        check(
            &|r| {
                r.pay_method = Some(RawPayMethods {
                    card: Some(9),
                    ..Default::default()
                })
            },
            "wdt.pay_method.card",
        );
    }

    #[test]
    fn from_table_accepts_enabled_and_names_unknown_keys() {
        let t: toml::Table =
            toml::from_str("enabled = true\nsid = \"s\"\nkey = \"k\"\nsecret = \"a:b\"\n").unwrap();
        assert_eq!(RawWdt::from_table(t).unwrap().sid, "s");
        let t: toml::Table = toml::from_str("sid = \"s\"\nshopno = \"x\"\n").unwrap();
        let e = RawWdt::from_table(t).unwrap_err();
        assert!(e.starts_with("wdt:") && e.contains("shopno"), "{e}");
        let t: toml::Table =
            toml::from_str("enabled = false\nakey = \"k\"\nsecret = \"s\"\norg_id = 1\n").unwrap();
        assert_eq!(
            crate::upload::ovopark::RawOvopark::from_table(t)
                .unwrap()
                .akey,
            "k"
        );
    }

    #[test]
    fn toml_tables() {
        let r: RawWdt = toml::from_str(
            r#"
            sid = "s"
            key = "k"
            secret = "a:b"
            method = "pushSelf"
            batch_size = 20
            [status.sale]
            process_status = 20
            [pay_method]
            cash = 3
            "#,
        )
        .unwrap();
        let v = r.validate().unwrap();
        assert_eq!(v.method, PushMethod::PushSelf);
        assert_eq!(v.statuses[0].process_status, 20);
        assert_eq!(v.statuses[0].trade_status, DEFAULT_SALE.trade_status);
        assert_eq!(v.pay_methods.of(Some(Payment::Cash)), 3);
        assert_eq!(v.pay_methods.of(Some(Payment::Wechat)), 8);
        assert!(toml::from_str::<RawWdt>("sid = \"s\"\nshopno = \"x\"").is_err());
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            date: None,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    fn kind_of(c: &Classified) -> String {
        match c {
            Classified::Accepted { failed, .. } => format!("accepted/{}", failed.len()),
            Classified::DataError(_) => "data".into(),
            Classified::TimestampRefused(_) => "timestamp".into(),
            Classified::All(o) => o.kind().into(),
        }
    }

    /// Every status row of the spec's table and each status-100 message it names.
    #[test]
    fn classification_table() {
        let check = |status: u16, body: &str, expected: &str| {
            let c = classify(&reply(status, body));
            assert_eq!(kind_of(&c), expected, "{status} {body}: {c:?}");
        };
        check(
            200,
            r#"{"status":0,"data":{"chg_count":0,"new_count":1}}"#,
            "accepted/0",
        );
        check(
            200,
            r#"{"status":0,"data":{"chg_count":0,"new_count":1,"error_list":[{"no":"T2","error":"x"}]}}"#,
            "accepted/1",
        );
        for (status, expected) in [
            (1, "misconfigured"),
            (2, "misconfigured"),
            (3, "misconfigured"),
            (4, "retry"),
            (5, "retry"),
            (6, "misconfigured"),
            (7, "timestamp"),
            (8, "misconfigured"),
            (99, "retry"),
            (42, "retry"),
        ] {
            check(
                200,
                &format!(r#"{{"status":{status},"message":"m"}}"#),
                expected,
            );
        }
        let msg = |m: &str| format!(r#"{{"status":100,"message":"{m}"}}"#);
        for m in RATE_LIMIT_MESSAGES {
            check(200, &msg(m), "retry");
        }
        for m in CONFIG_MESSAGES {
            check(200, &msg(m), "misconfigured");
        }
        for m in [
            "商品名称含有非法字符",
            "数量不合法",
            "下单时间非法",
            "Data truncation: tid",
        ] {
            check(200, &msg(m), "data");
        }
        check(200, &msg("系统繁忙"), "retry");
        check(
            200,
            r#"{"status":"1","message":"验证失败"}"#,
            "misconfigured",
        );
        check(502, "", "retry");
        check(403, "", "misconfigured");
        check(200, "garbage", "retry");
        check(200, r#"{"data":{}}"#, "retry");
    }

    #[test]
    fn rate_limit_waits_five_to_ten_minutes() {
        let c = classify(&reply(
            200,
            r#"{"status":100,"message":"超过每分钟最大调用频率限制"}"#,
        ));
        let Classified::All(Outcome::Retry { after: Some(d), .. }) = c else {
            panic!("{c:?}")
        };
        assert!((300..=600).contains(&d.as_secs()), "{d:?}");
    }

    fn cfg() -> Wdt {
        raw_ok().validate().unwrap()
    }

    fn shop() -> ShopTarget {
        cfg().target(None).unwrap()
    }

    fn future() -> chrono::NaiveDateTime {
        crate::order::parse_time("2099-01-01 00:00:00").unwrap()
    }

    fn parts(t: &BuiltTrade) -> (serde_json::Value, Vec<serde_json::Value>) {
        (
            serde_json::from_str(&t.trade_json()).unwrap(),
            t.lines_json()
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        )
    }

    fn d(v: &serde_json::Value) -> Decimal {
        v.as_str().unwrap().parse().unwrap()
    }

    /// Every fixture order becomes a trade that the emulator's strict checks accept.
    #[test]
    fn fixture_orders_build_valid_trades() {
        let cfg = cfg();
        for o in crate::upload::testutil::fixture_orders() {
            let t = build_trade(&o, &shop(), &cfg).unwrap();
            let (trade, lines) = parts(&t);
            let refs: Vec<&serde_json::Value> = lines.iter().collect();
            crate::emulator::wdt::check_trade(&trade, &refs, future())
                .unwrap_or_else(|e| panic!("{}: {e}", o.order_no));
            assert_eq!(trade["tid"], o.order_no.as_str());
            assert_eq!(d(&trade["receivable"]), o.paid.abs(), "{}", o.order_no);
            for (i, l) in lines.iter().enumerate() {
                assert_eq!(l["oid"], format!("{}-{}", o.order_no, i + 1));
                assert_eq!(d(&l["total_amount"]), o.lines[i].amount.abs());
                for k in [
                    "num",
                    "price",
                    "total_amount",
                    "share_discount",
                    "adjust_amount",
                ] {
                    assert!(d(&l[k]).scale() <= 4, "{k}");
                }
            }
        }
    }

    #[test]
    fn amounts_follow_the_spec_relations() {
        let orders = crate::upload::testutil::fixture_orders();
        let market = orders
            .iter()
            .find(|o| o.order_no == "2026112200013")
            .unwrap();
        let t = build_trade(market, &shop(), &cfg()).unwrap();
        let (trade, lines) = parts(&t);
        // 0.96 spread over 7.00, 2.00, 10.96 (of 19.96); the last line takes the rest.
        let shares: Vec<String> = lines
            .iter()
            .map(|l| l["share_discount"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(shares, ["0.3367", "0.0962", "0.5271"]);
        // 0.856 kg × 12.80 = 10.9568, printed 10.96: the rounding goes to adjust_amount.
        assert_eq!(lines[2]["adjust_amount"], "0.0032");
        assert_eq!(trade["goods_count"], "3.856");
        assert_eq!(trade["order_count"], 3);
        assert_eq!(trade["receivable"], "19.0000");
        assert_eq!(trade["pay_method"], 8);
        assert_eq!(trade["trade_status"], DEFAULT_SALE.trade_status);
        assert_eq!(trade["cod_amount"], "0");

        let refund = orders
            .iter()
            .find(|o| o.order_no == "2026112200015")
            .unwrap();
        let (trade, lines) = parts(&build_trade(refund, &shop(), &cfg()).unwrap());
        assert_eq!(trade["trade_status"], DEFAULT_REFUND.trade_status);
        assert_eq!(trade["refund_status"], DEFAULT_REFUND.refund_status);
        assert_eq!(lines[0]["num"], "1");
        assert_eq!(lines[0]["total_amount"], "59.90");
        assert_eq!(lines[0]["refund_amount"], "59.90");
        assert_eq!(lines[0]["refund_status"], DEFAULT_REFUND.line_refund_status);
        assert_eq!(trade["receiver_name"], "一号店");
        assert_eq!(trade["is_auto_wms"], false);
        assert_eq!(trade["warehouse_no"], "");
    }

    #[test]
    fn cash_on_delivery_term_sets_cod_amount() {
        let mut c = cfg();
        c.delivery_term = 2;
        let o = &crate::upload::testutil::fixture_orders()[0];
        let (trade, lines) = parts(&build_trade(o, &shop(), &c).unwrap());
        assert_eq!(trade["cod_amount"], trade["receivable"]);
        let refs: Vec<&serde_json::Value> = lines.iter().collect();
        crate::emulator::wdt::check_trade(&trade, &refs, future()).unwrap();
    }

    #[test]
    fn length_rules_reject_identifiers_and_cut_names() {
        let base = crate::upload::testutil::fixture_orders().remove(0);
        let check_reject = |f: &dyn Fn(&mut Order), needle: &str| {
            let mut o = base.clone();
            f(&mut o);
            let e = build_trade(&o, &shop(), &cfg()).unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
        };
        check_reject(&|o| o.order_no = "9".repeat(41), "tid");
        // tid fits but tid-N does not.
        check_reject(&|o| o.order_no = "9".repeat(39), "oid");
        check_reject(&|o| o.lines[0].code = "C".repeat(41), "lines[0].code");
        check_reject(&|o| o.lines[0].qty = Decimal::ZERO, "lines[0].qty");
        check_reject(&|o| o.lines.clear(), "at least one line");
        let mut o = base.clone();
        o.lines[0].name = "长".repeat(300);
        let t = build_trade(&o, &shop(), &cfg()).unwrap();
        assert_eq!(t.warnings.len(), 1);
        let (trade, lines) = parts(&t);
        assert_eq!(
            lines[0]["goods_name"].as_str().unwrap().chars().count(),
            255
        );
        let refs: Vec<&serde_json::Value> = lines.iter().collect();
        crate::emulator::wdt::check_trade(&trade, &refs, future()).unwrap();
    }

    #[test]
    fn per_source_shop_and_tid_prefix() {
        let c = cfg();
        let over = WdtShop {
            shop_no: Some("SHOP2".into()),
            tid_prefix: Some("L2-".into()),
            ..Default::default()
        };
        let s = c.target(Some(&over)).unwrap();
        assert_eq!(
            (s.shop_no.as_str(), s.tid_prefix.as_str()),
            ("SHOP2", "L2-")
        );
        assert_eq!(s.receiver_name, "一号店", "falls back to [wdt]");
        let o = &crate::upload::testutil::fixture_orders()[0];
        let t = build_trade(o, &s, &c).unwrap();
        assert_eq!(t.tid, format!("L2-{}", o.order_no));
        let mut c2 = c.clone();
        c2.defaults.receiver_mobile = None;
        assert!(c2.target(None).unwrap_err().contains("receiver_mobile"));
    }

    #[test]
    fn body_is_a_positional_array() {
        let o = &crate::upload::testutil::fixture_orders()[0];
        let t = build_trade(o, &shop(), &cfg()).unwrap();
        let body = build_body("SHOP1", &[&t, &t]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
        assert_eq!(v[0], "SHOP1");
        assert_eq!(v[1].as_array().unwrap().len(), 2);
        assert_eq!(v[2].as_array().unwrap().len(), 2 * o.lines.len());
    }
}
