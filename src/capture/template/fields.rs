//! Field extraction: finding a field's value in the receipt lines or code
//! payloads, printed decimals, and errors that name the receipt line.
//!
//! Invariant: the first match wins; decimals keep the scale they were
//! printed with.

use super::*;

/// A found value and the receipt line (0-based) it came from, if a line.
pub(super) struct Found {
    pub(super) value: String,
    pub(super) line: Option<usize>,
}

pub(super) fn err(
    line: Option<usize>,
    lines: &[String],
    field: &str,
    problem: impl Into<String>,
) -> TemplateError {
    TemplateError {
        line: line.map(|i| i + 1),
        text: line.and_then(|i| lines.get(i).cloned()),
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A field's value: its regex's first capture group, or the whole match.
pub(super) fn capture_value(re: &Regex, text: &str) -> Option<String> {
    let c = re.captures(text)?;
    Some(
        c.get(1)
            .or_else(|| c.get(0))
            .map(|m| m.as_str().trim().to_string())
            .unwrap_or_default(),
    )
}

pub(super) fn neg(d: Decimal) -> Decimal {
    -d.abs()
}

impl Template {
    /// The field's value from the first line (or code) its regex matches.
    pub(super) fn find(&self, f: &Field, r: &Receipt, hits: &LineHits) -> Option<Found> {
        match &f.source {
            Source::Lines(re) => {
                let i = hits.first(0, &(*re..*re + 1))?;
                self.regexes.value(*re, &r.lines[i]).map(|value| Found {
                    value,
                    line: Some(i),
                })
            }
            Source::Codes { filter, regex } => r
                .codes
                .iter()
                .filter(|c| match filter {
                    None => true,
                    Some(k) => c.code.kind.name() == k || c.code.symbology == k,
                })
                .find_map(|c| {
                    capture_value(regex, &c.code.payload).map(|value| Found { value, line: None })
                }),
        }
    }

    pub(super) fn find_decimal(
        &self,
        f: &Option<Field>,
        r: &Receipt,
        hits: &LineHits,
    ) -> Result<Option<Decimal>, TemplateError> {
        let Some(f) = f else { return Ok(None) };
        let Some(found) = self.find(f, r, hits) else {
            return Ok(None);
        };
        self.number
            .parse(&found.value)
            .map(Some)
            .map_err(|e| err(found.line, &r.lines, f.key, e))
    }
}
