//! `iposJson` of one stamped order: the spec's fields, lengths and types.

use super::*;
use crate::order::{Order, format_time};
use crate::upload::cut_chars;
use crate::upload::json::J;

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
    // The seed's page gives startTime/endTime/orderTime as `yyyy-MM-dd HH:mm:ss`
    // with no zone: the shop's wall time, the clock its video is recorded on, so the
    // till's own wall time goes as it is (order.zone is not applied; issue #26).
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
