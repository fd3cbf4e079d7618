//! Optional lines inside an item (`items.optional`): a further name line, a
//! modifier that adds to the price (`+ extra shot 0.60`), a discount line, a
//! serial or batch number — lines some items print and others do not,
//! between the item's own lines or after them.
//!
//! Invariants: an optional line belongs to the item whose lines it is among
//! or follows; its values are applied after the item's own, in print order:
//! `name` appends to the name, `modifier` appends ` + modifier`, `add` adds
//! to the unit price and `qty × add` to the amount, `discount` (its size)
//! adds to the line's discount and comes off the amount, `batch_no`/`box_no`
//! set those fields. Amounts follow the template's number format and a bad
//! one fails the receipt naming the line.

use super::*;

impl Template {
    /// The first `items.optional` regex matching receipt line `l`, if any.
    pub(super) fn optional_at(&self, l: usize, hits: &LineHits) -> Option<usize> {
        self.items.optional.clone().find(|&re| hits.matches(l, re))
    }

    /// Applies the optional lines `extras` (regex, receipt line) to `line`.
    pub(super) fn apply_optional(
        &self,
        line: &mut Line,
        extras: &[(usize, usize)],
        lines: &[String],
    ) -> Result<(), TemplateError> {
        for &(re, l) in extras {
            let mut slots = self.regexes.slots(re);
            if !self.regexes.captures(re, &lines[l], &mut slots) {
                continue;
            }
            let k = re - self.items.optional.start;
            let groups = &self.items.optional_groups[k];
            let get = |name: &str| -> Option<&str> {
                let g = OPTIONAL_GROUPS.iter().position(|n| *n == name)?;
                let (a, b) = slots.get(groups[g]?)?;
                Some(lines[l][a..b].trim()).filter(|v| !v.is_empty())
            };
            let dec = |name: &str| -> Result<Option<Decimal>, TemplateError> {
                get(name)
                    .map(|v| {
                        self.number.parse(v).map_err(|e| {
                            err(Some(l), lines, &format!("items.optional[{k}].{name}"), e)
                        })
                    })
                    .transpose()
            };
            let overflow = |name: &str| {
                err(
                    Some(l),
                    lines,
                    &format!("items.optional[{k}].{name}"),
                    "the item's amounts add up past any real amount",
                )
            };
            if let Some(v) = get("name") {
                if !line.name.is_empty() {
                    line.name.push(' ');
                }
                line.name.push_str(v);
            }
            if let Some(v) = get("modifier") {
                if !line.name.is_empty() {
                    line.name.push_str(" + ");
                }
                line.name.push_str(v);
            }
            if let Some(add) = dec("add")? {
                let scale = line.amount.scale().max(add.scale());
                line.price = line.price.checked_add(add).ok_or_else(|| overflow("add"))?;
                line.amount = line
                    .qty
                    .checked_mul(add)
                    .and_then(|a| line.amount.checked_add(a))
                    .ok_or_else(|| overflow("add"))?
                    .round_dp(scale);
            }
            if let Some(d) = dec("discount")? {
                let d = d.abs();
                line.discount = line
                    .discount
                    .checked_add(d)
                    .ok_or_else(|| overflow("discount"))?;
                line.amount = line
                    .amount
                    .checked_sub(d)
                    .ok_or_else(|| overflow("discount"))?;
            }
            if let Some(v) = get("batch_no") {
                line.batch_no = Some(v.to_string());
            }
            if let Some(v) = get("box_no") {
                line.box_no = Some(v.to_string());
            }
        }
        Ok(())
    }
}
