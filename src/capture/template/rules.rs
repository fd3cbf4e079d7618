//! Template compilation: [`RawTemplate::validate`] turns the raw
//! `[source.template]` settings into a [`Template`] — every regex compiled into
//! one [`LineRegexes`] list, every field and item group checked, the time
//! format tried on a sample.
//!
//! Invariant: all checking happens here, once per template, never per receipt;
//! every error names the key relative to the source (e.g.
//! `template.items.lines[1]: …`).

use super::*;

pub(super) const ITEM_GROUPS: [&str; 8] = [
    "code", "name", "qty", "price", "amount", "discount", "batch_no", "box_no",
];

/// The named groups of an `items.optional` regex.
pub(super) const OPTIONAL_GROUPS: [&str; 6] =
    ["name", "modifier", "add", "discount", "batch_no", "box_no"];

/// Where a field is looked for.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// Receipt lines: the field's regex is `LineRegexes::all[i]`.
    Lines(usize),
    /// Code payloads, optionally only of one kind or symbology.
    Codes {
        filter: Option<String>,
        regex: Regex,
    },
}

#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) key: &'static str,
    pub(super) source: Source,
}

/// The item rules; numbers index `LineRegexes::all`.
#[derive(Debug, Clone)]
pub(super) struct Items {
    pub(super) start: Option<usize>,
    pub(super) end: Option<usize>,
    pub(super) lines: Range<usize>,
    pub(super) skip: Range<usize>,
    pub(super) void_line: Range<usize>,
    /// `items.optional`, and per regex the capture index of each of
    /// [`OPTIONAL_GROUPS`].
    pub(super) optional: Range<usize>,
    pub(super) optional_groups: Vec<[Option<usize>; OPTIONAL_GROUPS.len()]>,
    pub(super) void_negative: bool,
    /// Per name of [`ITEM_GROUPS`]: which layout line (0-based within
    /// `lines`) and which capture group of its regex holds it.
    pub(super) groups: [Option<(usize, usize)>; ITEM_GROUPS.len()],
}

pub(super) fn compile(key: &str, pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("{key}: {e}"))
}

/// For the `mask` regexes, which the masker applies itself.
pub(super) fn compile_all(key: &str, patterns: &[String]) -> Result<Vec<Regex>, String> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| compile(&format!("{key}[{i}]"), p))
        .collect()
}

impl RawField {
    pub(super) fn validate(
        &self,
        key: &'static str,
        regexes: &mut LineRegexes,
    ) -> Result<Field, String> {
        let path = format!("template.fields.{key}");
        let regex_key = format!("{path}.regex");
        let source = match self.from.as_deref() {
            None | Some("lines") => Source::Lines(regexes.add(&regex_key, &self.regex)?),
            Some("codes") => Source::Codes {
                filter: None,
                regex: compile(&regex_key, &self.regex)?,
            },
            Some(kind) => {
                const KNOWN: [&str; 18] = [
                    "barcode",
                    "qr",
                    "pdf417",
                    "datamatrix",
                    "aztec",
                    "maxicode",
                    "upc-a",
                    "upc-e",
                    "ean13",
                    "ean8",
                    "code39",
                    "itf",
                    "codabar",
                    "code93",
                    "code128",
                    "gs1-128",
                    "gs1-databar",
                    "code128-auto",
                ];
                if !KNOWN.contains(&kind) {
                    return Err(format!(
                        "{path}.from: must be lines, codes or one of {}, got {kind:?}",
                        KNOWN.join(", ")
                    ));
                }
                Source::Codes {
                    filter: Some(kind.to_string()),
                    regex: compile(&regex_key, &self.regex)?,
                }
            }
        };
        if self.format.is_some() && key != "order_time" && key != "order_date" {
            return Err(format!(
                "{path}.format: only order_time has a format (and order_date)"
            ));
        }
        Ok(Field { key, source })
    }
}

fn opt_date(f: &Option<RawField>, regexes: &mut LineRegexes) -> Result<Option<Field>, String> {
    f.as_ref()
        .map(|f| f.validate("order_date", regexes))
        .transpose()
}

impl RawTemplate {
    /// Errors name the key relative to the source, e.g. `template.items.lines[1]: …`.
    pub fn validate(self) -> Result<Template, String> {
        let refund_negative = match self.refund_sign.as_deref() {
            None | Some("printed") => false,
            Some("negative") => true,
            Some(other) => {
                return Err(format!(
                    "template.refund_sign: must be printed or negative, got {other:?}"
                ));
            }
        };
        let number = NumberFormat::from_keys(
            "template",
            self.decimal.as_deref(),
            self.grouping.as_deref(),
            NumberFormat::POINT_COMMA.grouping,
        )?;
        let time = TimeRule::new(
            self.fields.order_time.format.as_deref(),
            self.fields.order_date.as_ref().map(|d| d.format.as_deref()),
        )?;
        let mut regexes = LineRegexes {
            all: Vec::new(),
            ascii: Vec::new(),
            set: None,
        };
        let mut payment = Vec::new();
        for (name, patterns) in &self.payment {
            let p = Payment::parse(name).ok_or_else(|| {
                format!(
                    "template.payment.{name}: not a payment; use one of {}",
                    Payment::ALL.map(Payment::as_str).join(", ")
                )
            })?;
            payment.push((
                p,
                regexes.add_all(&format!("template.payment.{name}"), patterns)?,
            ));
        }
        // Lines are tried payment by payment in the canonical order, so the
        // result does not depend on how the TOML table is ordered.
        payment.sort_by_key(|(p, _)| Payment::ALL.iter().position(|q| q == p));
        let start = self
            .items
            .start
            .as_deref()
            .map(|p| regexes.add("template.items.start", p))
            .transpose()?;
        let end = self
            .items
            .end
            .as_deref()
            .map(|p| regexes.add("template.items.end", p))
            .transpose()?;
        let lines = regexes.add_all("template.items.lines", &self.items.lines)?;
        let skip = regexes.add_all("template.items.skip", &self.items.skip)?;
        let void_line = regexes.add_all("template.items.void_line", &self.items.void_line)?;
        let optional = regexes.add_all("template.items.optional", &self.items.optional)?;
        let mut optional_groups = Vec::new();
        for (i, re) in regexes.all[optional.clone()].iter().enumerate() {
            let mut g = [None; OPTIONAL_GROUPS.len()];
            for (index, name) in re.capture_names().enumerate() {
                let Some(name) = name else { continue };
                let Some(at) = OPTIONAL_GROUPS.iter().position(|n| *n == name) else {
                    return Err(format!(
                        "template.items.optional[{i}]: unknown group {name:?}; groups are {}",
                        OPTIONAL_GROUPS.join(", ")
                    ));
                };
                g[at] = Some(index);
            }
            optional_groups.push(g);
        }
        if lines.is_empty() {
            return Err("template.items.lines: needs at least one regex".into());
        }
        let mut groups = [None; ITEM_GROUPS.len()];
        for (i, re) in regexes.all[lines.clone()].iter().enumerate() {
            for (index, name) in re.capture_names().enumerate() {
                let Some(name) = name else { continue };
                let Some(g) = ITEM_GROUPS.iter().position(|n| *n == name) else {
                    return Err(format!(
                        "template.items.lines[{i}]: unknown group {name:?}; groups are {}",
                        ITEM_GROUPS.join(", ")
                    ));
                };
                if let Some((j, _)) = groups[g] {
                    return Err(format!(
                        "template.items.lines[{i}]: group {name:?} already in items.lines[{j}]"
                    ));
                }
                groups[g] = Some((i, index));
            }
        }
        let has = |g: &str| {
            ITEM_GROUPS
                .iter()
                .position(|n| *n == g)
                .is_some_and(|g| groups[g].is_some())
        };
        if !has("code") {
            return Err(
                "template.items.lines: no (?P<code>…) group; every line needs a code".into(),
            );
        }
        if !has("price") && !has("amount") {
            return Err("template.items.lines: needs a (?P<price>…) or (?P<amount>…) group".into());
        }
        let items = Items {
            start,
            end,
            lines,
            skip,
            void_line,
            optional,
            optional_groups,
            void_negative: self.items.void_negative.unwrap_or(false),
            groups,
        };
        let reprint = regexes.add_all("template.reprint", &self.reprint)?;
        let refund = regexes.add_all("template.refund", &self.refund)?;
        let void = regexes.add_all("template.void", &self.void)?;
        let ignore = regexes.add_all("template.ignore", &self.ignore)?;
        let masker = Masker::new(
            self.mask_cards.unwrap_or(true),
            compile_all("template.mask", &self.mask)?,
        );
        let f = &self.fields;
        let order_no = f.order_no.validate("order_no", &mut regexes)?;
        let order_time = f.order_time.validate("order_time", &mut regexes)?;
        let order_date = opt_date(&f.order_date, &mut regexes)?;
        let mut opt = |f: &Option<RawField>, key| {
            f.as_ref()
                .map(|f| f.validate(key, &mut regexes))
                .transpose()
        };
        let cashier = opt(&f.cashier, "cashier")?;
        let total = opt(&f.total, "total")?;
        let discount = opt(&f.discount, "discount")?;
        let paid = opt(&f.paid, "paid")?;
        regexes.build_set();
        let check_totals = self.check_totals.unwrap_or(true);
        let (time_format, date_format) = match &time {
            TimeRule::DateTime(f) => (f.format.clone(), None),
            TimeRule::Split { date, time } => (time.clone(), Some(date.format.clone())),
        };
        let refund_sign = if refund_negative {
            "negative"
        } else {
            "printed"
        };
        let mut raw = RawTemplate {
            refund_sign: Some(refund_sign.into()),
            check_totals: Some(check_totals),
            mask_cards: Some(self.mask_cards.unwrap_or(true)),
            decimal: Some(number.decimal_key()),
            grouping: Some(number.grouping_key()),
            ..self
        };
        raw.items.void_negative = Some(items.void_negative);
        // The time formats as read (the defaults filled in).
        raw.fields.order_time.format = Some(time_format);
        if let Some(d) = raw.fields.order_date.as_mut() {
            d.format = date_format;
        }
        Ok(Template {
            raw,
            regexes,
            reprint,
            refund,
            void,
            ignore,
            refund_negative,
            check_totals,
            number,
            masker,
            order_no,
            order_time,
            order_date,
            time,
            cashier,
            total,
            discount,
            paid,
            payment,
            items,
        })
    }
}
