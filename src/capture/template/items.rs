//! Item layouts: one-line or multi-line item regexes, the strict item region
//! (`items.start`/`items.end`/`items.skip`), and derived line amounts
//! (`amount = qty × price − discount`, whichever of price and amount is
//! missing).
//!
//! Invariant: in a strict region every non-blank line that is not skipped is
//! part of an item, or the receipt fails naming that line — an item is never
//! silently dropped; an item cancelled by a `void_line` is kept, with that
//! line, in the order's `voided`.

use super::*;

/// What the item region holds.
#[derive(Default)]
pub(super) struct ItemsRead {
    pub(super) lines: Vec<Line>,
    /// Items cancelled by an `items.void_line`.
    pub(super) voided: Vec<VoidedLine>,
    /// How each amount the receipt did not print was computed.
    pub(super) computed: Vec<String>,
}

impl Template {
    /// The item lines of the receipt, and how each amount the receipt did
    /// not print was computed (for the totals message: a wrong computed
    /// amount is named, not blamed on an unmatched item line).
    pub(super) fn items(
        &self,
        r: &Receipt,
        kind: Kind,
        hits: &LineHits,
    ) -> Result<ItemsRead, TemplateError> {
        let lines = &r.lines;
        let it = &self.items;
        let mut from = 0;
        let mut to = lines.len();
        if let Some(start) = it.start {
            match hits.first(0, &(start..start + 1)) {
                Some(i) => from = i + 1,
                None if kind == Kind::Void => return Ok(ItemsRead::default()),
                None => return Err(err(None, lines, "items.start", "no line matches")),
            }
        }
        if let Some(end) = it.end {
            if let Some(i) = hits.first(from, &(end..end + 1)) {
                to = i;
            }
        }
        let strict = it.start.is_some() || it.end.is_some();
        let skipped = |i: usize| lines[i].trim().is_empty() || hits.any(i, &it.skip);
        let layout = it.lines.clone();
        // One set of capture slots per layout line, reused for every item.
        let mut locs: Vec<Slots> = layout.clone().map(|re| self.regexes.slots(re)).collect();
        let mut out = Vec::new();
        // Per item in `out`, the receipt line it starts on.
        let mut starts = Vec::new();
        // Per item in `out`, how its amount was computed, if it was.
        let mut notes: Vec<Option<String>> = Vec::new();
        let mut voided = Vec::new();
        let mut i = from;
        while i < to {
            // A line void cancels the item just before it. Tried first: a
            // "STORNO" line may look like an item's name line.
            if hits.any(i, &it.void_line) {
                starts.pop();
                notes.pop();
                let Some(line) = out.pop() else {
                    return Err(err(
                        Some(i),
                        lines,
                        "items.void_line",
                        "cancels an item, but no item comes before it",
                    ));
                };
                voided.push(VoidedLine {
                    reason: lines[i].trim().to_string(),
                    line,
                });
                i += 1;
                continue;
            }
            if skipped(i) {
                i += 1;
                continue;
            }
            // Try the layout at line i: its k-th regex on the next line that
            // is not one of the item's optional lines (run for its captures
            // only where the set says it matches).
            let mut at = Vec::with_capacity(layout.len());
            let mut extras = Vec::new();
            let mut failed = None;
            let mut l = i;
            for (k, re) in layout.clone().enumerate() {
                if k > 0 {
                    while l < to && !hits.matches(l, re) {
                        let Some(o) = self.optional_at(l, hits) else {
                            break;
                        };
                        extras.push((o, l));
                        l += 1;
                    }
                }
                let matched = l < to
                    && hits.matches(l, re)
                    && self.regexes.captures(re, &lines[l], &mut locs[k]);
                if !matched {
                    failed = Some((k, l));
                    break;
                }
                at.push(l);
                l += 1;
            }
            match failed {
                None => {
                    // Optional lines after the item's own, before the next
                    // item (a line void ends them).
                    while l < to && !hits.any(l, &it.void_line) {
                        let Some(o) = self.optional_at(l, hits) else {
                            break;
                        };
                        extras.push((o, l));
                        l += 1;
                    }
                    let (mut line, computed) = self.item(&at, &locs, lines)?;
                    self.apply_optional(&mut line, &extras, lines)?;
                    // An amount computed, or changed by optional lines, is
                    // described for the totals message.
                    let how = (computed || !extras.is_empty()).then(|| describe(i + 1, &line));
                    out.push(line);
                    starts.push(i);
                    notes.push(how);
                    i = l;
                }
                Some((k, l)) if strict => {
                    let at = l.min(to.saturating_sub(1));
                    let problem = if l >= to {
                        format!(
                            "the item starting at line {} is cut off by the end of the item \
                             region before items.lines[{k}]",
                            i + 1
                        )
                    } else if k == 0 {
                        "is in the item region but matches neither items.lines[0] nor \
                         items.skip"
                            .to_string()
                    } else {
                        format!(
                            "does not match items.lines[{k}] (the item starting at line {})",
                            i + 1
                        )
                    };
                    return Err(err(Some(at), lines, "items", problem));
                }
                Some(_) => i += 1,
            }
        }
        if it.void_negative && kind != Kind::Refund {
            void_negative(&mut out, &mut notes, &starts, lines, &mut voided);
        }
        Ok(ItemsRead {
            lines: out,
            voided,
            computed: notes.into_iter().flatten().collect(),
        })
    }

    /// The item whose layout lines are on receipt lines `rows`, from the
    /// captures of each of its lines; with it, whether its amount was
    /// computed (the receipt did not print it).
    pub(super) fn item(
        &self,
        rows: &[usize],
        locs: &[Slots],
        lines: &[String],
    ) -> Result<(Line, bool), TemplateError> {
        let first = rows[0];
        let get = |name: &str| -> Option<(usize, &str)> {
            let g = ITEM_GROUPS.iter().position(|n| *n == name)?;
            let (k, index) = self.items.groups[g]?;
            let (a, b) = locs[k].get(index)?;
            Some((rows[k], lines[rows[k]][a..b].trim()))
        };
        let dec = |name: &str| -> Result<Option<Decimal>, TemplateError> {
            match get(name) {
                None => Ok(None),
                Some((i, v)) => self
                    .number
                    .parse(v)
                    .map(Some)
                    .map_err(|e| err(Some(i), lines, &format!("items.{name}"), e)),
            }
        };
        let first = Some(first);
        let code = match get("code") {
            Some((_, c)) if !c.is_empty() => c.to_string(),
            _ => return Err(err(first, lines, "items.code", "is empty")),
        };
        let qty = dec("qty")?.unwrap_or(Decimal::ONE);
        let price = dec("price")?;
        let amount = dec("amount")?;
        let amount_printed = amount;
        let discount = dec("discount")?.unwrap_or(Decimal::ZERO);
        // `amount` is what the line costs after its own discount:
        // amount = qty × price − discount, whichever of the two is missing.
        let (price, amount) = match (price, amount) {
            (Some(p), Some(a)) => (p, a),
            (Some(p), None) => match qty.checked_mul(p).and_then(|a| a.checked_sub(discount)) {
                Some(a) => (p, a.round_dp(p.scale().max(discount.scale()))),
                None => {
                    return Err(err(
                        first,
                        lines,
                        "items.amount",
                        "qty × price − discount overflows",
                    ));
                }
            },
            (None, Some(a)) if !qty.is_zero() => {
                match a.checked_add(discount).and_then(|a| a.checked_div(qty)) {
                    Some(p) => (p.round_dp(a.scale().max(discount.scale())), a),
                    None => {
                        return Err(err(
                            first,
                            lines,
                            "items.price",
                            "(amount + discount) ÷ qty overflows",
                        ));
                    }
                }
            }
            _ => {
                return Err(err(
                    first,
                    lines,
                    "items.price",
                    "no price, and no amount and quantity to derive it from",
                ));
            }
        };
        let text = |name: &str| get(name).map(|(_, v)| v.to_string());
        let line = Line {
            code,
            name: text("name").unwrap_or_default(),
            qty,
            price,
            amount,
            discount,
            scan_time: None,
            batch_no: text("batch_no").filter(|v| !v.is_empty()),
            box_no: text("box_no").filter(|v| !v.is_empty()),
            attrs: Vec::new(),
        };
        Ok((line, amount_printed.is_none()))
    }
}

/// `items.void_negative`: a line with a negative quantity and amount that
/// exactly undoes an earlier line of the same code (−qty, −amount) cancels it:
/// both leave the lines, the earlier one is kept in `voided` with the
/// negative line's text as its reason. A negative line that undoes nothing
/// (a deposit returned) stays as printed.
fn void_negative(
    out: &mut Vec<Line>,
    notes: &mut Vec<Option<String>>,
    starts: &[usize],
    lines: &[String],
    voided: &mut Vec<VoidedLine>,
) {
    let mut gone = vec![false; out.len()];
    let mut cancelled = Vec::new();
    for j in 0..out.len() {
        let neg = &out[j];
        if !neg.amount.is_sign_negative() || neg.amount.is_zero() || !neg.qty.is_sign_negative() {
            continue;
        }
        // The latest earlier line still standing that this one undoes.
        let undone = (0..j).rev().find(|&k| {
            !gone[k]
                && out[k].code == neg.code
                && out[k].amount == -neg.amount
                && out[k].qty == -neg.qty
        });
        if let Some(k) = undone {
            gone[k] = true;
            gone[j] = true;
            cancelled.push((k, lines[starts[j]].trim().to_string()));
        }
    }
    cancelled.sort_by_key(|(k, _)| *k);
    for (k, reason) in cancelled {
        voided.push(VoidedLine {
            reason,
            line: out[k].clone(),
        });
    }
    let mut keep = gone.iter().map(|g| !g);
    out.retain(|_| keep.next().unwrap_or(true));
    let mut keep = gone.iter().map(|g| !g);
    notes.retain(|_| keep.next().unwrap_or(true));
}

/// How an item's amount came about, for the totals message (`line 4: 2 ×
/// 18.50 − 3.00 = 34.00`).
fn describe(at: usize, l: &Line) -> String {
    if l.discount.is_zero() {
        format!("line {at}: {} × {} = {}", l.qty, l.price, l.amount)
    } else {
        format!(
            "line {at}: {} × {} − {} = {}",
            l.qty, l.price, l.discount, l.amount
        )
    }
}
