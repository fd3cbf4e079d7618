//! The Ovopark emulator: `POST /cloud.api`, strict to `spec/ovopark.md`.
//!
//! Gateway checks, in this order, each answered with the seed's code: `_akey` empty (1)
//! or unknown (2); `_sm` empty (4) or not md5/sha1 (5); `_sig` empty (6); `_mt` empty
//! (8); `_requestMode` empty (10); `_aid` empty (11) or not the key's (12); `_version`
//! empty (13); `_timestamp` empty (14) or not `yyyyMMddHHmmss` (15); `_format` other than
//! json/xml (17); unknown method/version (9); wrong signature (7); `_timestamp` outside
//! the window (16); the same signed request again within the window (-100).
//!
//! Choices where the spec is silent (documented here and in the report):
//! - The `_timestamp` window is ±`timestamp_tolerance_secs` (default 600 s), in the
//!   tenant's zone (default UTC+8).
//! - Data errors in `iposJson` (a missing required field, a wrong type, a value over its
//!   max length, a bad time format) answer `208001 ORDER_DATA_INVALID` with the field in
//!   `result`: the spec names no code for them, and 208xxx is its family of order codes.
//! - Business codes come back in `stat.code` (the spec's working assumption).
//! - Tenant checks: unknown `orgId` → 206001; `enterpriseId` not the org's → 206005; the
//!   key not permitted for the enterprise → 206006; unknown shop → 206004; an `orderNo`
//!   already accepted for the org → 208003.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Value, json};

use super::spec::ovopark::{
    GET_BUSINESS_ORG, MAX_NUM, MAX_STR, POS_SEND_ORDER, SEND_ORDER, Sm, expected_sig,
};
use super::spec::utc_offset_secs;
use super::{Cloud, Request, Response, State, parse_form};

/// The emulated tenant: one developer key and the enterprises it knows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OvoTenant {
    pub aid: String,
    pub akey: String,
    pub secret: String,
    /// Zone of `_timestamp`.
    pub utc_offset: String,
    /// Accepted `_timestamp` distance from the emulator's clock.
    pub timestamp_tolerance_secs: i64,
    #[serde(rename = "enterprise")]
    pub enterprises: Vec<OvoEnterprise>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OvoEnterprise {
    pub org_id: String,
    pub enterprise_id: String,
    #[serde(default)]
    pub name: String,
    /// Third-party shop ids (`shopId`) known in this enterprise.
    #[serde(default)]
    pub shop_ids: Vec<String>,
    /// Ovopark shop ids (`depId`).
    #[serde(default)]
    pub dep_ids: Vec<String>,
    /// Whether the key (an agent's) may act for this enterprise.
    #[serde(default = "yes")]
    pub permitted: bool,
}

fn yes() -> bool {
    true
}

impl Default for OvoTenant {
    fn default() -> Self {
        OvoTenant {
            aid: "S107".into(),
            akey: "demo-akey".into(),
            secret: "demo-ovopark-secret".into(),
            utc_offset: "+08:00".into(),
            timestamp_tolerance_secs: 600,
            enterprises: vec![
                OvoEnterprise {
                    org_id: "1001".into(),
                    enterprise_id: "2001".into(),
                    name: "演示企业".into(),
                    shop_ids: vec!["D001".into(), "D002".into()],
                    dep_ids: vec!["123".into()],
                    permitted: true,
                },
                OvoEnterprise {
                    org_id: "1002".into(),
                    enterprise_id: "2002".into(),
                    name: "别家企业".into(),
                    shop_ids: vec!["X001".into()],
                    dep_ids: vec![],
                    permitted: false,
                },
            ],
        }
    }
}

/// An accepted order.
#[derive(Debug, Clone)]
pub(crate) struct OvoRecord {
    enterprise_id: String,
    ipos: Value,
    accepted: u32,
    duplicates: u32,
}

/// `POST /_emu/ovopark/reply` body: the shape of `stat` in every answer. The spec
/// types `stat.code` and `stat.systime` as text; the vendor's gateway SDKs type them
/// int and long, and `systime` is documented only as "the current time".
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplyForm {
    /// `stat.code` as a JSON number instead of text.
    pub numeric_code: bool,
    pub systime: SystimeForm,
    /// Whether answers carry an HTTP `Date` header (without it, `stat.systime` is the
    /// client's only way to learn the server's clock).
    pub date_header: bool,
    /// The `Date` header comes from a front web server whose clock is right, while
    /// the gateway behind it (its `stat.systime`, its `_timestamp` window) runs on
    /// the skewed clock of `/_emu/clock`: the two disagree, as they may behind a
    /// load balancer. `stat.systime` is then the one to follow (issue #26, item 9).
    pub front_date: bool,
}

impl Default for ReplyForm {
    fn default() -> Self {
        ReplyForm {
            numeric_code: false,
            systime: SystimeForm::MillisText,
            date_header: true,
            front_date: false,
        }
    }
}

/// How `stat.systime` is written.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SystimeForm {
    /// Epoch milliseconds as text (`"1574921780123"`): the default.
    MillisText,
    /// Epoch milliseconds as a JSON number (the SDKs' `long`).
    Millis,
    /// `yyyy-MM-dd HH:mm:ss` in the tenant's zone.
    Datetime,
}

#[derive(Debug, Default)]
pub(crate) struct OvoState {
    /// The shape of `stat` (`POST /_emu/ovopark/reply`).
    pub(crate) reply: ReplyForm,
    /// Methods the key may not call (`POST /_emu/deny`): code 9, as for a method not
    /// registered for the key's application.
    pub(crate) denied: Vec<String>,
    /// (orgId, orderNo) → record.
    orders: BTreeMap<(String, String), OvoRecord>,
    /// Signatures seen recently → when (replay detection).
    seen: HashMap<String, i64>,
    seen_pruned_at: i64,
    cid: u64,
}

impl OvoState {
    pub(crate) fn listing(&self) -> Value {
        Value::Array(
            self.orders
                .iter()
                .map(|((org, no), r)| {
                    json!({"org_id": org, "enterprise_id": r.enterprise_id, "order_no": no,
                           "accepted": r.accepted, "duplicates": r.duplicates, "ipos": r.ipos})
                })
                .collect(),
        )
    }
}

/// The seed's code names.
pub fn codename(code: &str) -> &'static str {
    match code {
        "0" => "SUCCESS",
        "1" => "KEY_NOTNULL",
        "2" => "KEY_UNLAWFUL",
        "3" => "KEY_HAS_EXPIRED",
        "4" => "SIGN_METHOD_NOTNULL",
        "5" => "SIGN_TYPE_NOTEXIST",
        "6" => "SIGN_NOTNULL",
        "7" => "SIGN_WRONG",
        "8" => "METHOD_NOTNULL",
        "9" => "METHOD_NOTEXIST_CODE",
        "10" => "REQUESTMODE_NOTNULL",
        "11" => "APPLICATIONID_NOTNULL",
        "12" => "APPLICATIONID_NOTSAME",
        "13" => "VERSION_NOTNULL",
        "14" => "TIMESTAMP_NOTNULL",
        "15" => "TIMESTAMP_FORMAT_ERROR",
        "16" => "TIMESTAMP_OVERTIME",
        "17" => "FORMAT_TYPE_NOTEXIST",
        "-100" => "API_CALL_REPEAT",
        "-500" => "API_SYSTEM_CALL_ERROR",
        "-999" => "UNKNOWN_ERROR",
        "206001" => "OPEN_USER_IS_NULL",
        "206003" => "BUSINESS_PLATFORM_UNBOUND",
        "206004" => "DEPARTMENT_NOT_EXIST",
        "206005" => "ORGANIZATIONAL_MISMATCH",
        "206006" => "AGENT_PERMISSION_DENIED",
        "206999" => "BUSINESS_BASE_ERROR",
        "208001" => "ORDER_DATA_INVALID",
        "208003" => "ORDER_NUMBER_DUPLICATION",
        "999999" => "API_SERVICE_ERROR",
        _ => "ERROR",
    }
}

/// A reply body in the spec's shape.
pub(crate) fn answer(code: &str, name: &str, result: &str, now: i64, data: Option<Value>) -> Value {
    json!({
        "stat": {"cid": format!("emu-{now}"), "code": code, "codename": name,
                 "systime": (now * 1000).to_string()},
        "result": result,
        "data": data.unwrap_or_else(|| json!({})),
    })
}

/// `v` (an [`answer`]) in the shape `form` asks for; `zone_secs`: the tenant's zone.
pub(crate) fn shaped(mut v: Value, form: &ReplyForm, zone_secs: i64) -> Value {
    let stat = &mut v["stat"];
    if form.numeric_code {
        if let Some(n) = stat["code"].as_str().and_then(|c| c.parse::<i64>().ok()) {
            stat["code"] = json!(n);
        }
    }
    let millis: i64 = stat["systime"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default();
    stat["systime"] = match form.systime {
        SystimeForm::MillisText => json!(millis.to_string()),
        SystimeForm::Millis => json!(millis),
        SystimeForm::Datetime => {
            let local = chrono::DateTime::from_timestamp(millis / 1000 + zone_secs, 0)
                .unwrap_or_default()
                .naive_utc();
            json!(local.format("%Y-%m-%d %H:%M:%S").to_string())
        }
    };
    v
}

type Refusal = (&'static str, String);

fn refuse(code: &'static str, msg: impl Into<String>) -> Refusal {
    (code, msg.into())
}

/// Checks the gateway parameters; `Ok` is the method name.
fn gateway(
    cfg: &OvoTenant,
    p: &BTreeMap<String, String>,
    now: i64,
    st: &mut OvoState,
) -> Result<String, Refusal> {
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let akey = get("_akey");
    if akey.is_empty() {
        return Err(refuse("1", "_akey cannot be empty"));
    }
    if akey != cfg.akey {
        return Err(refuse("2", "_akey is illegal"));
    }
    let sm = get("_sm");
    if sm.is_empty() {
        return Err(refuse("4", "The _sm parameter cannot be empty"));
    }
    let Some(method) = Sm::parse(sm) else {
        return Err(refuse("5", "_sm type does not exist"));
    };
    let sig = get("_sig");
    if sig.is_empty() {
        return Err(refuse("6", "The _sig parameter cannot be empty"));
    }
    let mt = get("_mt");
    if mt.is_empty() {
        return Err(refuse("8", "_mt cannot be empty"));
    }
    if get("_requestMode").is_empty() {
        return Err(refuse("10", "The _requestMode parameter cannot be empty"));
    }
    let aid = get("_aid");
    if aid.is_empty() {
        return Err(refuse("11", "_aid parameter cannot be empty"));
    }
    if aid != cfg.aid {
        return Err(refuse("12", "_aid does not match the current key"));
    }
    let version = get("_version");
    if version.is_empty() {
        return Err(refuse("13", "_version version number cannot be empty"));
    }
    let ts = get("_timestamp");
    if ts.is_empty() {
        return Err(refuse("14", "_timestamp timestamp cannot be empty"));
    }
    let zone = utc_offset_secs(&cfg.utc_offset).unwrap_or(8 * 3600);
    let ts_unix = match chrono::NaiveDateTime::parse_from_str(ts, "%Y%m%d%H%M%S") {
        Ok(t) if ts.len() == 14 => t.and_utc().timestamp() - i64::from(zone),
        _ => return Err(refuse("15", "_timestamp timestamp format error")),
    };
    if let Some(f) = p.get("_format") {
        if f != "json" && f != "xml" {
            return Err(refuse("17", "_format type does not exist"));
        }
    }
    let known = matches!(
        (mt, version),
        (SEND_ORDER | POS_SEND_ORDER, "v2") | (GET_BUSINESS_ORG, "v1")
    );
    if !known {
        return Err(refuse(
            "9",
            "The method name corresponding to _mt does not exist or is not registered in the service",
        ));
    }
    if !expected_sig(p, &cfg.secret, method).eq_ignore_ascii_case(sig) {
        return Err(refuse(
            "7",
            "Invalid signature, please check the parameters and signature format",
        ));
    }
    if (ts_unix - now).abs() > cfg.timestamp_tolerance_secs {
        return Err(refuse("16", "_timestamp has expired"));
    }
    let window = cfg.timestamp_tolerance_secs;
    // Forget old signatures at most once a second: a scan of all of them per request
    // made a fast backlog drain quadratic.
    if st.seen_pruned_at != now {
        st.seen.retain(|_, at| now - *at <= window);
        st.seen_pruned_at = now;
    }
    if st.seen.get(sig).is_some_and(|at| now - *at <= window) {
        return Err(refuse("-100", "Interface duplicate call"));
    }
    st.seen.insert(sig.to_string(), now);
    Ok(mt.to_string())
}

pub(crate) fn handle(cfg: &OvoTenant, st: &mut State, req: &Request, now: i64) -> Response {
    let form = String::from_utf8_lossy(&req.body);
    let p: BTreeMap<String, String> = parse_form(&form).into_iter().collect();
    let (code, result, data) = match gateway(cfg, &p, now, &mut st.ovo) {
        Err((code, msg)) => (code, msg, None),
        Ok(mt) if st.ovo.denied.contains(&mt) => (
            "9",
            "The method name corresponding to _mt does not exist or is not registered in the service"
                .to_string(),
            None,
        ),
        Ok(mt) if mt == GET_BUSINESS_ORG => {
            let list: Vec<Value> = cfg
                .enterprises
                .iter()
                .filter(|e| e.permitted)
                .map(
                    |e| json!({"orgId": e.org_id, "enterpriseId": e.enterprise_id, "name": e.name}),
                )
                .collect();
            (
                "0",
                String::new(),
                Some(json!({"total": list.len(), "list": list})),
            )
        }
        Ok(_) => match send_order(cfg, &mut st.ovo, &p) {
            Ok(code) => (code, String::new(), None),
            Err((code, msg)) => (code, msg, None),
        },
    };
    st.count_answer(Cloud::Ovopark, code);
    st.ovo.cid += 1;
    let zone = utc_offset_secs(&cfg.utc_offset).unwrap_or(8 * 3600);
    let body = answer(code, codename(code), &result, now, data);
    Response::json(&shaped(body, &st.ovo.reply, i64::from(zone)))
}

fn send_order(
    cfg: &OvoTenant,
    st: &mut OvoState,
    p: &BTreeMap<String, String>,
) -> Result<&'static str, Refusal> {
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let org = get("orgId");
    let Some(ent) = cfg.enterprises.iter().find(|e| e.org_id == org) else {
        return Err(refuse("206001", "开放平台用户不存在"));
    };
    if get("enterpriseId") != ent.enterprise_id {
        return Err(refuse("206005", "组织架构不匹配"));
    }
    if !ent.permitted {
        return Err(refuse("206006", "代理商没有此企业权限"));
    }
    let ipos_text = get("iposJson");
    if ipos_text.is_empty() {
        return Err(refuse("208001", "iposJson: missing"));
    }
    let ipos: Value = serde_json::from_str(ipos_text)
        .map_err(|e| refuse("208001", format!("iposJson: not JSON: {e}")))?;
    check_ipos(&ipos).map_err(|m| refuse("208001", format!("iposJson: {m}")))?;
    let shop_known = match (ipos.get("shopId"), ipos.get("depId")) {
        (Some(Value::String(s)), _) => ent.shop_ids.contains(s),
        (_, Some(d)) => ent.dep_ids.contains(&d.to_string()),
        _ => false,
    };
    if !shop_known {
        return Err(refuse("206004", "部门不存在"));
    }
    let order_no = ipos["orderNo"].as_str().unwrap_or_default().to_string();
    let key = (org.to_string(), order_no);
    if let Some(r) = st.orders.get_mut(&key) {
        r.duplicates += 1;
        return Err(refuse("208003", "订单号重复"));
    }
    st.orders.insert(
        key,
        OvoRecord {
            enterprise_id: ent.enterprise_id.clone(),
            ipos,
            accepted: 1,
            duplicates: 0,
        },
    );
    Ok("0")
}

/// Every rule the spec's `iposJson` table states: required fields, types, max lengths
/// (characters), time formats. `Err` names the field.
pub fn check_ipos(v: &Value) -> Result<(), String> {
    let Some(obj) = v.as_object() else {
        return Err("not a JSON object".into());
    };
    let string = |o: &serde_json::Map<String, Value>,
                  path: &str,
                  key: &str,
                  required: bool|
     -> Result<Option<String>, String> {
        match o.get(key) {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(format!("{path}{key}: required")),
            Some(Value::String(s)) => {
                if required && s.is_empty() {
                    return Err(format!("{path}{key}: required"));
                }
                let n = s.chars().count();
                if n > MAX_STR {
                    return Err(format!("{path}{key}: {n} characters, max {MAX_STR}"));
                }
                Ok(Some(s.clone()))
            }
            Some(_) => Err(format!("{path}{key}: must be a string")),
        }
    };
    let time = |o: &serde_json::Map<String, Value>,
                path: &str,
                key: &str,
                required: bool|
     -> Result<(), String> {
        if let Some(s) = string(o, path, key, required)? {
            if s.len() != 19 || crate::order::parse_time(&s).is_err() {
                return Err(format!("{path}{key}: {s:?} is not yyyy-MM-dd HH:mm:ss"));
            }
        }
        Ok(())
    };
    let int = |o: &serde_json::Map<String, Value>,
               path: &str,
               key: &str,
               required: bool|
     -> Result<(), String> {
        match o.get(key) {
            None | Some(Value::Null) if !required => Ok(()),
            None | Some(Value::Null) => Err(format!("{path}{key}: required")),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                if n.to_string().len() > MAX_NUM {
                    return Err(format!("{path}{key}: more than {MAX_NUM} digits"));
                }
                Ok(())
            }
            Some(_) => Err(format!("{path}{key}: must be an integer")),
        }
    };
    match (obj.get("shopId"), obj.get("depId")) {
        (None, None) => return Err("shopId or depId: one is required".into()),
        (Some(_), Some(_)) => return Err("shopId and depId: choose one".into()),
        (Some(_), None) => {
            string(obj, "", "shopId", true)?;
        }
        (None, Some(_)) => int(obj, "", "depId", true)?,
    }
    string(obj, "", "orderNo", true)?;
    string(obj, "", "userName", false)?;
    string(obj, "", "machineId", true)?;
    time(obj, "", "startTime", true)?;
    time(obj, "", "endTime", true)?;
    time(obj, "", "orderTime", true)?;
    string(obj, "", "orderType", false)?;
    let Some(goods) = obj.get("goods").and_then(Value::as_array) else {
        return Err("goods: required, an array".into());
    };
    for (i, g) in goods.iter().enumerate() {
        let path = format!("goods[{i}].");
        let Some(g) = g.as_object() else {
            return Err(format!("goods[{i}]: must be an object"));
        };
        string(g, &path, "goodsId", true)?;
        string(g, &path, "goodsName", true)?;
        match g.get("goodsPrice") {
            Some(Value::Number(_)) => {}
            None | Some(Value::Null) => return Err(format!("{path}goodsPrice: required")),
            Some(_) => return Err(format!("{path}goodsPrice: must be a number")),
        }
        match g.get("goodsNums") {
            Some(Value::Number(n)) => {
                let text = n.as_f64().map(|f| f.to_string()).unwrap_or_default();
                if text.len() > MAX_NUM {
                    return Err(format!(
                        "{path}goodsNums: {text} is more than {MAX_NUM} characters"
                    ));
                }
            }
            None | Some(Value::Null) => return Err(format!("{path}goodsNums: required")),
            Some(_) => return Err(format!("{path}goodsNums: must be a number")),
        }
        string(g, &path, "boxNo", false)?;
        string(g, &path, "batchNo", false)?;
        time(g, &path, "scanTime", false)?;
        match g.get("skus") {
            None | Some(Value::Null) => {}
            Some(Value::Array(skus)) => {
                for (k, s) in skus.iter().enumerate() {
                    let sp = format!("{path}skus[{k}].");
                    let Some(s) = s.as_object() else {
                        return Err(format!("{sp}: must be an object"));
                    };
                    int(s, &sp, "skuKeyId", false)?;
                    string(s, &sp, "skuValue", false)?;
                }
            }
            Some(_) => return Err(format!("{path}skus: must be an array")),
        }
    }
    Ok(())
}
