//! The Wangdiantong emulator's query methods: `sales.RawTrade.searchSelfOrder` (what
//! the ERP holds, by tid, shop and time window) and `setting.Shop.queryShop` (the
//! tenant's shops). Both are paged as the vendor's query methods are: the pager
//! (`page_size`, `page_no`, `calc_total`) travels in the query, signed.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::super::spec::wdt::{OWN_PLATFORM, QUERY_SHOP};
use super::super::{Request, parse_form};
use super::{Refusal, WdtShopRecord, WdtState, WdtTenant};

/// `sales.RawTrade.searchSelfOrder`: body `[{"shop_no", "tid", "start_time",
/// "end_time"}]` (times `yyyy-MM-dd HH:mm:ss`, UTC+8, compared with `trade_time`);
/// answers `{"total_count", "order": [{"tid", "shop_no", "trade_time"}]}` (the count
/// only with `calc_total=1`). The pager is required: `page_size` 1..=100, `page_no` ≥ 0.
pub(super) fn search(st: &WdtState, req: &Request) -> Result<Value, Refusal> {
    let bad = |m: &str| (1, format!("参数错误: {m}"));
    let q: BTreeMap<String, String> = parse_form(&req.query).into_iter().collect();
    let page_size: usize = q
        .get("page_size")
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| bad("page_size must be 1..=100"))?;
    let page_no: usize = q
        .get("page_no")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("page_no"))?;
    let args: Vec<Value> =
        serde_json::from_slice(&req.body).map_err(|_| bad("body must be a JSON array"))?;
    let p = args
        .first()
        .and_then(Value::as_object)
        .ok_or_else(|| bad("body must be [{shop_no, tid, start_time, end_time}]"))?;
    let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
    let time = |k: &str| {
        crate::order::parse_time(text(k))
            .map_err(|_| bad(&format!("{k} must be yyyy-MM-dd HH:mm:ss")))
    };
    let (start, end) = (time("start_time")?, time("end_time")?);
    let (tid, shop_no) = (text("tid"), text("shop_no"));
    let found: Vec<Value> = st
        .trades
        .get(tid)
        .filter(|r| shop_no.is_empty() || r.shop_no == shop_no)
        .and_then(|r| {
            let t: Value = serde_json::from_str(r.trade.get()).ok()?;
            let at = crate::order::parse_time(t["trade_time"].as_str()?).ok()?;
            (start <= at && at <= end)
                .then(|| json!({"tid": tid, "shop_no": r.shop_no, "trade_time": t["trade_time"]}))
        })
        .into_iter()
        .collect();
    let total = found.len();
    let page: Vec<Value> = found
        .into_iter()
        .skip(page_no * page_size)
        .take(page_size)
        .collect();
    let mut data = json!({"order": page});
    if q.get("calc_total").map(String::as_str) == Some("1") {
        data["total_count"] = json!(total);
    }
    Ok(json!({"status": 0, "data": data}))
}

/// `setting.Shop.queryShop`: body `[{"shop_no"?, "platform_id"?}]` (either narrows;
/// `platform_id` as a number or text, as the vendor's example sends it); answers
/// `{"total_count", "details": [{shop_id, shop_name, shop_no, platform_id,
/// sub_platform_id, is_disabled, auth_state}]}`. The pager is required, as for every
/// query (`此方法仅支持分页查询`): `page_size` 1..=100, `page_no` ≥ 0.
pub(super) fn query_shop(cfg: &WdtTenant, req: &Request) -> Result<Value, Refusal> {
    let bad = |m: &str| (1, format!("参数错误: {m}"));
    let q: BTreeMap<String, String> = parse_form(&req.query).into_iter().collect();
    let page = |k: &str| q.get(k).and_then(|v| v.parse::<usize>().ok());
    let (Some(page_size), Some(page_no)) = (page("page_size"), page("page_no")) else {
        return Err((100, format!("此方法仅支持分页查询：{QUERY_SHOP}")));
    };
    if !(1..=100).contains(&page_size) {
        return Err(bad("page_size must be 1..=100"));
    }
    let args: Vec<Value> =
        serde_json::from_slice(&req.body).map_err(|_| bad("body must be a JSON array"))?;
    let empty = Map::new();
    let p = match args.first() {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("body must be [{shop_no, platform_id}]")),
    };
    let shop_no = p.get("shop_no").and_then(Value::as_str).unwrap_or_default();
    let platform = match p.get("platform_id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => Some(s.trim().parse().map_err(|_| bad("platform_id"))?),
        Some(_) => return Err(bad("platform_id")),
    };
    let own = cfg.shop_nos.iter().map(|no| WdtShopRecord {
        shop_no: no.clone(),
        name: no.clone(),
        platform_id: OWN_PLATFORM,
        disabled: false,
    });
    let all: Vec<WdtShopRecord> = own.chain(cfg.shops.iter().cloned()).collect();
    let found: Vec<Value> = all
        .iter()
        .enumerate()
        .filter(|(_, s)| shop_no.is_empty() || s.shop_no == shop_no)
        .filter(|(_, s)| platform.is_none_or(|p| s.platform_id == p))
        .map(|(i, s)| {
            json!({"shop_id": i + 1, "shop_name": s.name, "shop_no": s.shop_no,
                   "platform_id": s.platform_id, "sub_platform_id": 0,
                   "is_disabled": s.disabled, "auth_state": 1})
        })
        .collect();
    let total = found.len();
    let page: Vec<Value> = found
        .into_iter()
        .skip(page_no * page_size)
        .take(page_size)
        .collect();
    Ok(json!({"status": 0, "data": {"total_count": total, "details": page}}))
}
