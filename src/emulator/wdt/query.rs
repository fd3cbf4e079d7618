//! The Wangdiantong emulator's query methods: `sales.RawTrade.searchSelfOrder` (what
//! the ERP holds, by tid, shop and time window) and `setting.Shop.queryShop` (the
//! tenant's shops). Both are paged as the vendor's query methods are: the pager
//! (`page_size`, `page_no`, `calc_total`) travels in the query, signed.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::super::spec::wdt::{OWN_PLATFORM, QUERY_SHOP};
use super::super::{Request, parse_form};
use super::{Refusal, WdtRecord, WdtShopRecord, WdtState, WdtTenant};

/// searchSelfOrder: `end_time - start_time` at most 30 days (its page).
const MAX_SPAN_SECS: i64 = 30 * 86_400;

/// When the trade was last pushed, as the server's wall time.
fn modified_local(r: &WdtRecord, zone_secs: i64) -> chrono::NaiveDateTime {
    chrono::DateTime::from_timestamp(r.modified + zone_secs, 0)
        .unwrap_or_default()
        .naive_utc()
}

/// `sales.RawTrade.searchSelfOrder`: body `[{"shop_no", "tid", "start_time",
/// "end_time"}]`. As the vendor's page (旗舰版 `sales.RawTrade.searchSelfOrder`)
/// defines them, `start_time`/`end_time` are the raw trade's **modification** time
/// (修改起始时间/修改结束时间: when it was pushed or last changed, not its
/// `trade_time`), `yyyy-MM-dd HH:mm:ss` in the server's zone, at most 30 days apart;
/// the page's own example asks by `tid`, so a query by `tid` alone is taken too (both
/// times or neither). Answers `{"total_count", "order": [{"tid", "shop_no",
/// "trade_time", "modified"}]}` (the count only with `calc_total=1`). The pager is
/// required: `page_size` 1..=100, `page_no` ≥ 0.
pub(super) fn search(st: &WdtState, req: &Request, zone_secs: i64) -> Result<Value, Refusal> {
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
    let (tid, shop_no) = (text("tid"), text("shop_no"));
    let window = match (p.get("start_time"), p.get("end_time")) {
        (None, None) if !tid.is_empty() => None,
        (None, None) => return Err(bad("start_time and end_time, or tid, are required")),
        (Some(_), None) | (None, Some(_)) => {
            return Err(bad("start_time and end_time go together"));
        }
        (Some(_), Some(_)) => {
            let (start, end) = (time("start_time")?, time("end_time")?);
            if end < start || (end - start).num_seconds() > MAX_SPAN_SECS {
                return Err(bad("end_time - start_time must be 0..=30 days"));
            }
            Some((start, end))
        }
    };
    let in_window = |r: &WdtRecord| {
        let Some((start, end)) = window else {
            return true;
        };
        let modified = modified_local(r, zone_secs);
        start <= modified && modified <= end
    };
    let matches = |t: &str, r: &WdtRecord| {
        (tid.is_empty() || t == tid) && (shop_no.is_empty() || r.shop_no == shop_no)
    };
    let found: Vec<Value> = st
        .trades
        .iter()
        .filter(|(t, r)| matches(t, r) && in_window(r))
        .map(|(t, r)| {
            let trade: Value = serde_json::from_str(r.trade.get()).unwrap_or_default();
            json!({"tid": t, "shop_no": r.shop_no, "trade_time": trade["trade_time"],
                   "modified": modified_local(r, zone_secs).format(crate::order::TIME_FORMAT).to_string()})
        })
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
