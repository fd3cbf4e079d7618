//! A raw trade and its order lines from one stamped order, and the request body.

use rust_decimal::Decimal;

use super::*;
use crate::order::{Kind, Order, format_time};
use crate::upload::cut_chars;
use crate::upload::json::J;

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

    /// Whether `id` is the `oid` of one of this trade's lines (an `error_list` entry
    /// may name a line rather than its trade).
    pub fn has_oid(&self, id: &str) -> bool {
        self.lines.iter().any(|l| match l {
            J::Obj(fields) => fields
                .iter()
                .any(|(k, v)| *k == "oid" && matches!(v, J::Str(s) if s == id)),
            _ => false,
        })
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
    // The amounts say what the POS said. Wangdiantong has no negative quantity (its
    // `num` must be positive: 数量不合法), so a line's sign travels in its price: a
    // deposit return printed −1 × 0.50 goes as 1 × −0.50 with total_amount −0.50,
    // and the trade's receivable is what the customer paid. A refund printed negative
    // (the usual) is sent with every amount negated — its kind is told by the refund
    // status, and Wangdiantong's refund amounts are positive. Nothing is rounded to
    // make numbers agree: an order that disagrees with itself is refused here (the
    // readers refuse it at capture; a template with `check_totals = false` or an
    // order stored before that check may still hold one).
    let sign = if refund && order.total.is_sign_negative() && !order.total.is_zero() {
        Decimal::NEGATIVE_ONE
    } else {
        Decimal::ONE
    };
    let totals: Vec<Decimal> = order
        .lines
        .iter()
        .map(|l| (sign * l.amount).round_dp(4))
        .collect();
    let order_discount = order.discount.abs().round_dp(4);
    // Order-level discount spread over the lines that cost something, in proportion
    // to their amounts (a returned deposit takes none); the last of them takes the
    // remainder so the shares add up exactly.
    let sum_total: Decimal = totals.iter().filter(|t| t.is_sign_positive()).sum();
    if sum_total.is_zero() && !order_discount.is_zero() {
        return Err(format!(
            "discount {} on lines that add up to 0",
            order.discount
        ));
    }
    if let Err(e) = order.check_consistency() {
        return Err(format!(
            "{}: {}; Wangdiantong's receivable is the sum of the lines, so the order cannot be sent as printed",
            e.field, e.problem
        ));
    }
    let last_paying = totals
        .iter()
        .rposition(|t| t.is_sign_positive() && !t.is_zero());
    let mut shares = Vec::with_capacity(totals.len());
    let mut shared = Decimal::ZERO;
    for (i, t) in totals.iter().enumerate() {
        let s = if Some(i) == last_paying {
            order_discount - shared
        } else if sum_total.is_zero() || !t.is_sign_positive() {
            // Free or negative lines take no share (and with free lines only there
            // is nothing to divide by).
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
        let qty = (sign * l.qty).round_dp(4);
        if qty.is_zero() {
            return Err(format!("{} is 0", f("qty")));
        }
        let num = qty.abs();
        // qty × price keeps its sign in price × num.
        let price = if qty.is_sign_negative() {
            -l.price
        } else {
            l.price
        }
        .round_dp(4);
        let discount = l.discount.round_dp(4);
        if discount.is_sign_negative() && !discount.is_zero() {
            return Err(format!(
                "{} is {} (negative): Wangdiantong has no surcharge on a line",
                f("discount"),
                l.discount
            ));
        }
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
    if receivable.is_sign_negative() && !receivable.is_zero() {
        return Err(format!(
            "a {} of {} (less than nothing): goods handed back must be sent as kind = \"refund\"",
            order.kind.as_str(),
            order.paid
        ));
    }
    // trade_time/pay_time/end_time are the server's wall time, 东八区 (UTC+8), whatever
    // the till's zone (spec: times; the server refuses a trade_time ahead of its own
    // clock as 下单时间非法): the till's local time moved by its zone's difference.
    let time = format_time(&server_wall(order));
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
        // "" rather than null without a cashier: the seed's optional strings are "".
        (
            "remark",
            J::str(
                order
                    .cashier
                    .as_deref()
                    .map(|c| name("cashier", &format!("收银员 {c}"), 1024, &mut warnings))
                    .unwrap_or_default(),
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

/// The order's close as the Wangdiantong server's wall time (东八区, UTC+8): the till's
/// wall time (`order.zone`, `agent.timezone`) moved by the difference of the zones.
pub fn server_wall(order: &Order) -> chrono::NaiveDateTime {
    let shift = i64::from(order.zone_secs()) - SERVER_ZONE_SECS;
    order.order_time - chrono::TimeDelta::seconds(shift)
}
