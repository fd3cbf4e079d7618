//! The Wangdiantong emulator: `POST /openapi?…`, strict to `spec/wangdiantong.md` and
//! the seed's field tables.
//!
//! Public checks, in this order: a query parameter that is not public → status 2; a
//! missing one → 1 (参数错误); unknown `sid` → 1 (sid is not exists); wrong `key` → 1
//! (app auth fail); `v` ≠ 1.0 → 8; a body that is not `application/json` → 1; wrong
//! `salt` or `sign` → 1 (验证失败); `timestamp` more than ±120 s from the emulator's
//! clock → 7; an unknown method → 1.
//!
//! Push checks: the body is `[shop_no, rawTradeList, rawTradeOrderList(, discountList)]`
//! (else 1); an unknown or disabled `shop_no` → 100 店铺编号不存在或已停用, another
//! platform's shop (`[[wdt.shop]]`, platform ≠ 127) → 100 店铺平台不是自有平台; more
//! than 100 trades → 1. A method denied to the key (`/_emu/deny`) → 100 权限不足.
//! Each trade and its lines are checked against every rule the seed and spec state:
//! required fields present and typed, max lengths (characters), no control characters,
//! code sets, Decimal(19,4) with at most 4 decimals, time formats, a `trade_time` not in
//! the future (UTC+8), the amount relations (line `total_amount = price*num +
//! adjust_amount - discount` to 0.0001, `goods_count = Σ num`, `order_count` = lines,
//! `receivable = Σ(total_amount - share_discount)`, `cod_amount` per `delivery_term`),
//! `num > 0`, `oid` unique per seller. A trade that fails is named in `error_list`
//! (pushSelf2) or fails the whole call with status 100 and its message (pushSelf, which
//! stores nothing then). Messages always carry one of 字段缺失 / 不合法 / 非法 /
//! Data truncation, the data-error markers the client recognises.
//!
//! A `tid` pushed again replaces the trade and counts in `chg_count`.

use std::collections::{BTreeMap, HashMap, HashSet};

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::spec::utc_offset_secs;
use super::spec::wdt::{
    CORE_NOW, DELIVERY_TERMS, EPOCH_OFFSET, LINE_REFUND_STATUSES, MAX_BATCH, OWN_PLATFORM,
    PAGE_PARAMS, PAY_METHODS, PAY_STATUSES, PROCESS_STATUSES, PUSH_SELF, PUSH_SELF2, QUERY_SHOP,
    REFUND_STATUSES, SEARCH_SELF_ORDER, TRADE_STATUSES, expected_sign,
};
use super::{Cloud, Request, Response, State, parse_form};

mod query;
use query::{query_shop, search};

pub const RATE_LIMIT_MESSAGE: &str = "超过每分钟最大调用频率限制";

/// The emulated seller account.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WdtTenant {
    pub sid: String,
    pub key: String,
    /// The appsecret's two parts (`secret:salt`).
    pub secret: String,
    pub salt: String,
    /// Shops (own platform) that accept pushes.
    pub shop_nos: Vec<String>,
    /// More shops the ERP knows (`setting.Shop.queryShop` lists them with the
    /// `shop_nos`): another platform's shop refuses pushes (店铺平台不是自有平台), a
    /// disabled one too (店铺编号不存在或已停用).
    #[serde(rename = "shop")]
    pub shops: Vec<WdtShopRecord>,
    pub timestamp_tolerance_secs: i64,
    /// The server's zone (future `trade_time` check).
    pub utc_offset: String,
}

/// A shop of the ERP besides the own-platform `shop_nos`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WdtShopRecord {
    pub shop_no: String,
    #[serde(default)]
    pub name: String,
    /// The vendor's platform code (127: 其他（自有商城）, the one pushSelf accepts).
    #[serde(default = "own_platform")]
    pub platform_id: i64,
    #[serde(default)]
    pub disabled: bool,
}

fn own_platform() -> i64 {
    OWN_PLATFORM
}

impl Default for WdtTenant {
    fn default() -> Self {
        WdtTenant {
            sid: "demo-sid".into(),
            key: "demo-key".into(),
            secret: "demo-wdt-secret".into(),
            salt: "demo-salt".into(),
            shop_nos: vec!["SHOP1".into(), "SHOP2".into()],
            shops: vec![WdtShopRecord {
                shop_no: "TMALL1".into(),
                name: "天猫旗舰店".into(),
                platform_id: 1,
                disabled: false,
            }],
            timestamp_tolerance_secs: 120,
            utc_offset: "+08:00".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct WdtRecord {
    shop_no: String,
    /// As received: parsed trees took ~48 KB per 4 KB trade (a map per line, a string
    /// per key), and a drain of 100,000 made the emulator, not the agent, what the
    /// benchmark measured.
    trade: Box<RawValue>,
    orders: Vec<Box<RawValue>>,
    oids: Vec<String>,
    pushes: u32,
    updates: u32,
    /// When it was last pushed (the server's unix seconds): searchSelfOrder's
    /// modification time.
    modified: i64,
}

#[derive(Debug, Default)]
pub(crate) struct WdtState {
    trades: BTreeMap<String, WdtRecord>,
    /// oid → tid.
    oids: HashMap<String, String>,
    /// Trades the ERP refuses whatever their data (`POST /_emu/wdt/refuse`).
    pub(crate) refusals: Vec<RefuseSpec>,
    /// A push of a trade the ERP already holds fails the whole call, naming it (the
    /// trade was submitted and may no longer change): `POST /_emu/wdt/held`.
    pub(crate) refuse_held: bool,
    /// Methods the key may not call (`POST /_emu/deny`): status 100 权限不足.
    pub(crate) denied: Vec<String>,
    /// Trades the ERP silently does not store (`POST /_emu/wdt/drop`): the call
    /// succeeds, no `error_list` entry names them, and `new_count + chg_count` is
    /// short of the batch by as many (issue #26: an answer that does not add up).
    pub(crate) dropped: Vec<String>,
}

/// `POST /_emu/wdt/refuse` body: pushes holding `tid` are refused with `message`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefuseSpec {
    pub tid: String,
    pub message: String,
    /// The whole call fails with status 100 (the real server's usual way; nothing of
    /// the request is stored) rather than an `error_list` entry.
    #[serde(default = "yes")]
    pub whole_call: bool,
    /// The message ends with `,原始单号为：{tid}` (as many of the ERP's do).
    #[serde(default = "yes")]
    pub names_tid: bool,
    /// With `whole_call = false`: how the `error_list` entry names the trade. `"no"`
    /// (the default) as the pushSelf2 page has it (`no` = the tid); `"oid"`: `no` holds
    /// the trade's first line id instead; `""`: the entry carries no id at all (only
    /// its `error`). The two others are what servers were seen to answer (issue #26):
    /// a client must not count such a trade delivered.
    #[serde(default = "no_key")]
    pub entry_key: String,
}

fn no_key() -> String {
    "no".into()
}

fn yes() -> bool {
    true
}

impl RefuseSpec {
    fn text(&self) -> String {
        if self.names_tid {
            format!("{},原始单号为：{}", self.message, self.tid)
        } else {
            self.message.clone()
        }
    }
}

impl WdtState {
    pub(crate) fn listing(&self) -> Value {
        Value::Array(
            self.trades
                .iter()
                .map(|(tid, r)| {
                    json!({"tid": tid, "shop_no": r.shop_no, "pushes": r.pushes, "updates": r.updates,
                           "trade": r.trade, "orders": r.orders})
                })
                .collect(),
        )
    }
}

pub(crate) fn answer_error(status: &str, message: &str) -> Value {
    let status: Value = status
        .parse::<i64>()
        .map_or_else(|_| json!(status), |n| json!(n));
    json!({"status": status, "message": message})
}

const PUBLIC: [&str; 7] = ["sid", "key", "salt", "method", "v", "timestamp", "sign"];

pub(crate) fn handle(cfg: &WdtTenant, st: &mut State, req: &Request, now: i64) -> Response {
    let (status, body) = match public(cfg, req, now) {
        Err((status, msg)) => (status, answer_error(&status.to_string(), &msg)),
        // The vendor's answer to a key without this API's permission.
        Ok(method) if st.wdt.denied.contains(&method) => (100, answer_error("100", "权限不足")),
        Ok(method) if method == CORE_NOW => {
            (0, json!({"status": 0, "data": {"now": now - EPOCH_OFFSET}}))
        }
        Ok(method) if method == SEARCH_SELF_ORDER => match search(
            &st.wdt,
            req,
            i64::from(utc_offset_secs(&cfg.utc_offset).unwrap_or(8 * 3600)),
        ) {
            Ok(v) => (0, v),
            Err((status, msg)) => (status, answer_error(&status.to_string(), &msg)),
        },
        Ok(method) if method == QUERY_SHOP => match query_shop(cfg, req) {
            Ok(v) => (0, v),
            Err((status, msg)) => (status, answer_error(&status.to_string(), &msg)),
        },
        Ok(method) => match push(cfg, &mut st.wdt, method == PUSH_SELF2, &req.body, now) {
            Ok(v) => (0, v),
            Err((status, msg)) => (status, answer_error(&status.to_string(), &msg)),
        },
    };
    st.count_answer(Cloud::Wdt, &status.to_string());
    Response::json(&body)
}

type Refusal = (i64, String);

/// A trade or line: parsed for the checks, and the text it came as (what is stored).
type Parsed<'a> = (Value, &'a RawValue);

fn public(cfg: &WdtTenant, req: &Request, now: i64) -> Result<String, Refusal> {
    let q = parse_form(&req.query);
    let known = |k: &str| PUBLIC.contains(&k) || PAGE_PARAMS.contains(&k);
    if let Some((k, _)) = q.iter().find(|(k, _)| !known(k)) {
        return Err((2, format!("unknown parameter {k}")));
    }
    let p: BTreeMap<String, String> = q.into_iter().collect();
    for k in PUBLIC {
        if p.get(k).is_none_or(|v| v.is_empty()) {
            return Err((1, format!("参数错误: {k} missing")));
        }
    }
    if p["sid"] != cfg.sid {
        return Err((1, "sid is not exists".into()));
    }
    if p["key"] != cfg.key {
        return Err((1, "app auth fail".into()));
    }
    if p["v"] != "1.0" {
        return Err((8, "版本号错误".into()));
    }
    let ts: i64 = p["timestamp"]
        .parse()
        .map_err(|_| (1, "参数错误: timestamp".to_string()))?;
    let json_body = req.header("content-type").is_some_and(|c| {
        c.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    if !json_body {
        return Err((1, "参数错误: Content-Type must be application/json".into()));
    }
    let mut signed = p.clone();
    signed.insert(
        "body".into(),
        String::from_utf8_lossy(&req.body).into_owned(),
    );
    if p["salt"] != cfg.salt || expected_sign(&signed, &cfg.secret) != p["sign"] {
        return Err((1, "验证失败".into()));
    }
    if (ts + EPOCH_OFFSET - now).abs() > cfg.timestamp_tolerance_secs {
        return Err((
            7,
            "timestamp error: more than 2 minutes from the server time".into(),
        ));
    }
    let method = p["method"].clone();
    if ![
        CORE_NOW,
        PUSH_SELF,
        PUSH_SELF2,
        SEARCH_SELF_ORDER,
        QUERY_SHOP,
    ]
    .contains(&method.as_str())
    {
        return Err((1, format!("参数错误: method {method} not exists")));
    }
    Ok(method)
}

fn push(
    cfg: &WdtTenant,
    st: &mut WdtState,
    self2: bool,
    body: &[u8],
    now: i64,
) -> Result<Value, Refusal> {
    let bad = |m: &str| (1, format!("参数错误: {m}"));
    // Split as text first; each trade and line is parsed for its checks and stored
    // as the text it came as.
    let args: Vec<&RawValue> =
        serde_json::from_slice(body).map_err(|_| bad("body must be a JSON array"))?;
    if !(3..=4).contains(&args.len()) {
        return Err(bad(
            "body must be [shop_no, rawTradeList, rawTradeOrderList(, discountList)]",
        ));
    }
    let shop_no: String =
        serde_json::from_str(args[0].get()).map_err(|_| bad("shop_no must be a string"))?;
    if args.len() == 4 && serde_json::from_str::<Vec<&RawValue>>(args[3].get()).is_err() {
        return Err(bad("discountList must be a list"));
    }
    let lines: Vec<&RawValue> =
        serde_json::from_str(args[2].get()).map_err(|_| bad("rawTradeOrderList must be a list"))?;
    let trades: Vec<&RawValue> =
        serde_json::from_str(args[1].get()).map_err(|_| bad("rawTradeList must be a list"))?;
    if !cfg.shop_nos.contains(&shop_no) {
        let other = cfg.shops.iter().find(|s| s.shop_no == shop_no);
        return Err(match other {
            Some(s) if !s.disabled && s.platform_id != OWN_PLATFORM => {
                (100, "店铺平台不是自有平台".into())
            }
            _ => (100, "店铺编号不存在或已停用".into()),
        });
    }
    if trades.len() > MAX_BATCH {
        return Err(bad("at most 100 trades per call"));
    }
    let parse = |r: &RawValue| -> Result<Value, Refusal> {
        serde_json::from_str(r.get()).map_err(|_| bad("not JSON"))
    };
    let trades: Vec<Parsed> = trades
        .into_iter()
        .map(|r| Ok((parse(r)?, r)))
        .collect::<Result<_, Refusal>>()?;
    let mut by_tid: HashMap<String, Vec<Parsed>> = HashMap::new();
    for (i, raw) in lines.into_iter().enumerate() {
        let l = parse(raw)?;
        let tid = l
            .get("tid")
            .and_then(Value::as_str)
            .ok_or_else(|| (100, format!("字段缺失: rawTradeOrderList[{i}].tid")))?
            .to_string();
        by_tid.entry(tid).or_default().push((l, raw));
    }
    let trade_tids: HashSet<&str> = trades
        .iter()
        .filter_map(|(t, _)| t.get("tid").and_then(Value::as_str))
        .collect();
    if let Some(orphan) = by_tid.keys().find(|t| !trade_tids.contains(t.as_str())) {
        return Err(bad(&format!(
            "rawTradeOrderList tid {orphan} has no rawTradeList entry"
        )));
    }
    let zone = utc_offset_secs(&cfg.utc_offset).unwrap_or(8 * 3600);
    let server_local = chrono::DateTime::from_timestamp(now + i64::from(zone), 0)
        .unwrap_or_default()
        .naive_utc();
    let mut ok: Vec<(String, &RawValue, Vec<Parsed>)> = Vec::new();
    let mut errors: Vec<(String, String)> = Vec::new();
    // How each error_list entry names its trade (a fault switch: see RefuseSpec).
    let mut entry_ids: HashMap<String, Option<String>> = HashMap::new();
    let mut seen_oids: HashSet<String> = HashSet::new();
    for (i, (t, t_raw)) in trades.into_iter().enumerate() {
        let tid = t
            .get("tid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // The first trade with a tid takes its lines; a repeat in the same request is
        // refused as such.
        let Some(my_lines) = by_tid.remove(&tid).or_else(|| {
            (!ok.iter().any(|(k, _, _)| *k == tid) && !errors.iter().any(|(k, _)| *k == tid))
                .then(Vec::new)
        }) else {
            errors.push((
                tid.clone(),
                format!("原始单号非法: tid {tid} 在同一请求中重复"),
            ));
            continue;
        };
        let refs: Vec<&Value> = my_lines.iter().map(|(l, _)| l).collect();
        let mut result =
            check_trade(&t, &refs, server_local).map_err(|m| format!("rawTradeList[{i}] {m}"));
        if result.is_ok() {
            for (l, _) in &my_lines {
                let oid = l["oid"].as_str().unwrap_or_default().to_string();
                let taken = st.oids.get(&oid).is_some_and(|owner| *owner != tid);
                if taken || !seen_oids.insert(oid.clone()) {
                    result = Err(format!("子单号非法: oid {oid} 重复"));
                    break;
                }
            }
        }
        match result {
            Ok(()) => ok.push((tid, t_raw, my_lines)),
            Err(m) => errors.push((tid, m)),
        }
    }
    // The ERP's own refusals (fault switches): most fail the whole call.
    let mut i = 0;
    while i < ok.len() {
        let tid = ok[i].0.clone();
        if st.refuse_held && st.trades.contains_key(&tid) {
            return Err((100, format!("订单已递交,不能修改,原始单号为：{tid}")));
        }
        if st.dropped.contains(&tid) {
            ok.remove(i);
            continue;
        }
        match st.refusals.iter().find(|r| r.tid == tid) {
            Some(r) if r.whole_call => return Err((100, r.text())),
            Some(r) => {
                let first_oid = ok[i].2.first().and_then(|(l, _)| l["oid"].as_str());
                let id = match r.entry_key.as_str() {
                    "oid" => first_oid.map(str::to_string),
                    "" => None,
                    _ => Some(tid.clone()),
                };
                entry_ids.insert(tid.clone(), id);
                errors.push((tid, r.text()));
                ok.remove(i);
            }
            None => i += 1,
        }
    }
    if !self2 {
        if let Some((_, m)) = errors.first() {
            return Err((100, m.clone()));
        }
    }
    let (mut new_count, mut chg_count) = (0, 0);
    for (tid, t, lines) in ok {
        // An update frees the oids of the trade's previous lines (only those: a scan
        // of every stored oid per trade made big backlogs quadratic).
        if let Some(r) = st.trades.get(&tid) {
            for oid in &r.oids {
                if st.oids.get(oid) == Some(&tid) {
                    st.oids.remove(oid);
                }
            }
        }
        let oids: Vec<String> = lines
            .iter()
            .filter_map(|(l, _)| l["oid"].as_str().map(str::to_string))
            .collect();
        for oid in &oids {
            st.oids.insert(oid.clone(), tid.clone());
        }
        let trade = t.to_owned();
        let orders: Vec<Box<RawValue>> = lines.into_iter().map(|(_, r)| r.to_owned()).collect();
        match st.trades.get_mut(&tid) {
            Some(r) => {
                chg_count += 1;
                r.pushes += 1;
                r.updates += 1;
                r.trade = trade;
                r.orders = orders;
                r.oids = oids;
                r.shop_no = shop_no.clone();
                r.modified = now;
            }
            None => {
                new_count += 1;
                st.trades.insert(
                    tid,
                    WdtRecord {
                        shop_no: shop_no.clone(),
                        trade,
                        orders,
                        oids,
                        pushes: 1,
                        updates: 0,
                        modified: now,
                    },
                );
            }
        }
    }
    let mut data = json!({"chg_count": chg_count, "new_count": new_count});
    if self2 && !errors.is_empty() {
        data["error_list"] = Value::Array(
            errors
                .into_iter()
                .map(|(tid, error)| match entry_ids.get(&tid) {
                    Some(None) => json!({"error": error}),
                    Some(Some(id)) => json!({"no": id, "error": error}),
                    None => json!({"no": tid, "error": error}),
                })
                .collect(),
        );
    }
    Ok(json!({"status": 0, "data": data}))
}

/// One object's field checks.
struct Fields<'a> {
    o: &'a Map<String, Value>,
    path: String,
}

impl Fields<'_> {
    fn missing(&self, k: &str) -> String {
        format!("字段缺失或类型不合法: {}{k}", self.path)
    }

    /// A string field; `required` means present (not null) and, if `nonempty`, not "".
    fn str(
        &self,
        k: &str,
        max: usize,
        required: bool,
        nonempty: bool,
    ) -> Result<Option<&str>, String> {
        match self.o.get(k) {
            None | Some(Value::Null) if !required => Ok(None),
            Some(Value::String(s)) => {
                if nonempty && s.trim().is_empty() {
                    return Err(self.missing(k));
                }
                if s.chars().count() > max {
                    return Err(format!("Data truncation: {}{k} 超过 {max} 字符", self.path));
                }
                if s.chars().any(char::is_control) {
                    return Err(format!("非法字符: {}{k}", self.path));
                }
                Ok(Some(s))
            }
            _ => Err(self.missing(k)),
        }
    }

    fn int(&self, k: &str, set: Option<&[i64]>, required: bool) -> Result<Option<i64>, String> {
        match self.o.get(k) {
            None | Some(Value::Null) if !required => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => {
                let v = n.as_i64().unwrap_or_default();
                if let Some(set) = set {
                    if !set.contains(&v) {
                        return Err(format!("{}{k} 取值不合法: {v}", self.path));
                    }
                }
                Ok(Some(v))
            }
            _ => Err(self.missing(k)),
        }
    }

    fn dec(&self, k: &str, required: bool) -> Result<Option<Decimal>, String> {
        let text = match self.o.get(k) {
            None | Some(Value::Null) if !required => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(self.missing(k)),
        };
        let d: Decimal = text
            .trim()
            .parse()
            .map_err(|_| format!("{}{k} 金额/数量不合法: {text:?}", self.path))?;
        if d.scale() > 4 {
            return Err(format!("Data truncation: {}{k} 超过4位小数", self.path));
        }
        if d.abs() >= Decimal::from(1_000_000_000_000_000i64) {
            return Err(format!(
                "Data truncation: {}{k} 超过 Decimal(19,4)",
                self.path
            ));
        }
        Ok(Some(d))
    }

    fn time(
        &self,
        k: &str,
        required: bool,
        nullable: bool,
        what: &str,
    ) -> Result<Option<chrono::NaiveDateTime>, String> {
        if nullable && matches!(self.o.get(k), Some(Value::Null)) {
            return Ok(None);
        }
        let Some(s) = self.str(k, 40, required, required)? else {
            return Ok(None);
        };
        if !required && s.is_empty() {
            return Ok(None);
        }
        crate::order::parse_time(s)
            .map(Some)
            .map_err(|_| format!("{what}: {}{k} {s:?}", self.path))
    }
}

/// Checks one trade and its lines (the emulator and the client's tests share it).
pub fn check_trade(
    t: &Value,
    lines: &[&Value],
    server_local: chrono::NaiveDateTime,
) -> Result<(), String> {
    let o = t.as_object().ok_or("不合法: not an object")?;
    let f = Fields {
        o,
        path: String::new(),
    };
    let tid = f.str("tid", 40, true, true)?.unwrap_or_default();
    f.int("process_status", Some(PROCESS_STATUSES), true)?;
    f.int("trade_status", Some(TRADE_STATUSES), true)?;
    f.int("refund_status", Some(REFUND_STATUSES), true)?;
    f.int("pay_status", Some(PAY_STATUSES), true)?;
    let order_count = f.int("order_count", None, true)?.unwrap_or_default();
    let goods_count = f.dec("goods_count", true)?.unwrap_or_default();
    f.int("pay_method", Some(PAY_METHODS), true)?;
    let trade_time = f.time("trade_time", true, false, "下单时间非法")?;
    if trade_time.is_some_and(|t| t > server_local) {
        return Err(format!("下单时间非法: trade_time 在未来 (tid {tid})"));
    }
    f.time("pay_time", false, true, "支付时间非法")?;
    if !o.contains_key("end_time") {
        return Err(f.missing("end_time"));
    }
    f.time("end_time", false, true, "结束时间非法")?;
    f.str("buyer_nick", 100, true, true)?;
    f.str("buyer_message", 1024, false, false)?;
    f.str("buyer_email", 40, false, false)?;
    f.str("buyer_area", 255, false, false)?;
    f.str("receiver_name", 100, true, true)?;
    f.str("receiver_area", 128, true, true)?;
    f.str("receiver_address", 256, true, true)?;
    f.str("receiver_zip", 20, false, false)?;
    f.str("receiver_mobile", 40, true, true)?;
    f.str("receiver_telno", 40, false, false)?;
    f.dec("post_amount", true)?;
    f.dec("other_amount", false)?;
    f.dec("discount", true)?;
    let receivable = f.dec("receivable", true)?.unwrap_or_default();
    f.dec("platform_cost", false)?;
    f.int("invoice_type", Some(&[0, 1, 2, 3]), false)?;
    f.str("invoice_title", 255, false, false)?;
    f.str("invoice_content", 255, false, false)?;
    f.int("logistics_type", None, false)?;
    let delivery_term = f
        .int("delivery_term", Some(DELIVERY_TERMS), true)?
        .unwrap_or(1);
    f.str("pay_id", 40, false, false)?;
    f.str("remark", 1024, false, false)?;
    f.int("remark_flag", Some(&[0, 1, 2, 3, 4, 5]), false)?;
    let cod = f.dec("cod_amount", false)?;
    let auto_wms = match o.get("is_auto_wms") {
        Some(Value::Bool(b)) => *b,
        _ => return Err(f.missing("is_auto_wms")),
    };
    let warehouse = f.str("warehouse_no", 40, true, false)?.unwrap_or_default();
    if auto_wms && warehouse.trim().is_empty() {
        return Err("字段缺失: warehouse_no (is_auto_wms = true)".into());
    }
    f.str("pay_account", 128, false, false)?;
    f.str("to_deliver_time", 20, false, false)?;
    f.dec("received", false)?;
    f.int("consign_interval", None, false)?;
    f.dec("paid", false)?;

    if lines.is_empty() {
        return Err(format!("数量不合法: tid {tid} 没有原始子单"));
    }
    if order_count != lines.len() as i64 {
        return Err(format!(
            "数量不合法: order_count {order_count} ≠ {} 个子单",
            lines.len()
        ));
    }
    let mut sum_num = Decimal::ZERO;
    let mut sum_receivable = Decimal::ZERO;
    let tolerance = Decimal::new(1, 4);
    for (i, l) in lines.iter().enumerate() {
        let lo = l.as_object().ok_or("不合法: order line is not an object")?;
        let f = Fields {
            o: lo,
            path: format!("rawTradeOrderList[{i}]."),
        };
        f.str("tid", 40, true, true)?;
        f.str("oid", 40, true, true)?;
        f.int("status", Some(TRADE_STATUSES), true)?;
        f.int("refund_status", Some(LINE_REFUND_STATUSES), true)?;
        for k in ["goods_id", "spec_id", "goods_no", "spec_no"] {
            f.str(k, 40, true, true)?;
        }
        f.str("goods_name", 255, true, true)?;
        f.str("spec_name", 100, false, false)?;
        f.int("order_type", Some(&[0, 1, 2]), false)?;
        f.str("cid", 40, false, false)?;
        let num = f.dec("num", true)?.unwrap_or_default();
        let price = f.dec("price", true)?.unwrap_or_default();
        let discount = f.dec("discount", true)?.unwrap_or_default();
        let share = f.dec("share_discount", true)?.unwrap_or_default();
        let total = f.dec("total_amount", true)?.unwrap_or_default();
        let adjust = f.dec("adjust_amount", true)?.unwrap_or_default();
        f.dec("refund_amount", true)?;
        f.str("remark", 255, true, false)?;
        f.str("json", 255, true, false)?;
        if num <= Decimal::ZERO {
            return Err(format!("数量不合法: {}num {num}", f.path));
        }
        let expected = price * num + adjust - discount;
        if (expected - total).abs() > tolerance {
            return Err(format!(
                "金额不合法: {}total_amount {total} ≠ price*num + adjust_amount - discount = {expected}",
                f.path
            ));
        }
        sum_num += num;
        sum_receivable += total - share;
    }
    if goods_count != sum_num {
        return Err(format!(
            "数量不合法: goods_count {goods_count} ≠ Σ num {sum_num}"
        ));
    }
    if (receivable - sum_receivable).abs() > tolerance {
        return Err(format!(
            "金额不合法: receivable {receivable} ≠ Σ(total_amount - share_discount) {sum_receivable}"
        ));
    }
    let cod_expected = if delivery_term == 2 {
        receivable
    } else {
        Decimal::ZERO
    };
    if cod.is_some_and(|c| (c - cod_expected).abs() > tolerance) {
        return Err(format!(
            "金额不合法: cod_amount must be {cod_expected} with delivery_term {delivery_term}"
        ));
    }
    Ok(())
}
