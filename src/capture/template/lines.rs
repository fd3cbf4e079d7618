//! The line-regex engine: every regex a template tries on receipt lines in one
//! indexed list and one [`RegexSet`], the per-receipt match table
//! ([`LineHits`]) and capture slots.
//!
//! Invariant: the set is only a shortcut — where it is absent (a huge template)
//! or skipped, each regex is tried on its own with the same result; the ASCII
//! variant of a regex is used only on all-ASCII lines, where it matches exactly
//! as the Unicode one does.

use super::*;

/// Every regex a template tries on receipt lines, in one list that the rules
/// refer to by index, and the same regexes as one [`RegexSet`]: a receipt line
/// is searched once for all of them ([`LineHits`]) instead of once per rule,
/// and a rule's own regex runs only to extract captures from a line the set
/// says it matches.
#[derive(Debug, Clone)]
pub(super) struct LineRegexes {
    pub(super) all: Vec<Regex>,
    /// Per regex, the same pattern with Unicode mode off, used for captures
    /// on all-ASCII lines (item code lines, mostly). On ASCII text it matches
    /// exactly as the Unicode regex does (`\d`, `\s`, `\w`, `.`, `(?i)` differ
    /// only on non-ASCII characters), and its automaton is a fraction of the
    /// size, which makes captures about three times cheaper. None where the
    /// pattern needs Unicode mode (`\p{…}`).
    pub(super) ascii: Vec<Option<regex::bytes::Regex>>,
    /// None if the set would exceed the regex size limit (a huge template):
    /// then each regex is tried on its own, with the same result.
    pub(super) set: Option<RegexSet>,
}

/// The capture spans of one regex on one line, from whichever variant ran.
pub(super) struct Slots {
    pub(super) unicode: CaptureLocations,
    pub(super) ascii: Option<regex::bytes::CaptureLocations>,
    pub(super) from_ascii: bool,
}

impl Slots {
    /// Byte span of capture group `i` in the line, if it took part.
    pub(super) fn get(&self, i: usize) -> Option<(usize, usize)> {
        match (&self.ascii, self.from_ascii) {
            (Some(a), true) => a.get(i),
            _ => self.unicode.get(i),
        }
    }
}

impl LineRegexes {
    pub(super) fn add(&mut self, key: &str, pattern: &str) -> Result<usize, String> {
        self.all.push(compile(key, pattern)?);
        self.ascii.push(
            regex::bytes::RegexBuilder::new(pattern)
                .unicode(false)
                .build()
                .ok(),
        );
        Ok(self.all.len() - 1)
    }

    pub(super) fn slots(&self, re: usize) -> Slots {
        Slots {
            unicode: self.all[re].capture_locations(),
            ascii: self.ascii[re]
                .as_ref()
                .map(regex::bytes::Regex::capture_locations),
            from_ascii: false,
        }
    }

    /// Runs regex `re` on `line` for its captures; false when it does not match.
    pub(super) fn captures(&self, re: usize, line: &str, slots: &mut Slots) -> bool {
        if line.is_ascii() {
            if let (Some(a), Some(locs)) = (&self.ascii[re], &mut slots.ascii) {
                slots.from_ascii = true;
                return a.captures_read(locs, line.as_bytes()).is_some();
            }
        }
        slots.from_ascii = false;
        self.all[re]
            .captures_read(&mut slots.unicode, line)
            .is_some()
    }

    /// A field's value on `line`: the first capture group, or the whole match.
    pub(super) fn value(&self, re: usize, line: &str) -> Option<String> {
        let mut slots = self.slots(re);
        if !self.captures(re, line, &mut slots) {
            return None;
        }
        let (a, b) = slots.get(1).or_else(|| slots.get(0))?;
        Some(line[a..b].trim().to_string())
    }

    pub(super) fn add_all(
        &mut self,
        key: &str,
        patterns: &[String],
    ) -> Result<Range<usize>, String> {
        let first = self.all.len();
        for (i, p) in patterns.iter().enumerate() {
            self.add(&format!("{key}[{i}]"), p)?;
        }
        Ok(first..self.all.len())
    }

    pub(super) fn build_set(&mut self) {
        self.set = RegexSetBuilder::new(self.all.iter().map(Regex::as_str))
            .build()
            .ok();
    }

    /// Which regexes match which line.
    pub(super) fn hits(&self, lines: &[String]) -> LineHits {
        let words = self.all.len().div_ceil(64).max(1);
        let mut bits = vec![0u64; lines.len() * words];
        for (i, line) in lines.iter().enumerate() {
            let row = &mut bits[i * words..(i + 1) * words];
            match &self.set {
                Some(set) => {
                    for p in set.matches(line).iter() {
                        row[p / 64] |= 1 << (p % 64);
                    }
                }
                None => {
                    for (p, re) in self.all.iter().enumerate() {
                        if re.is_match(line) {
                            row[p / 64] |= 1 << (p % 64);
                        }
                    }
                }
            }
        }
        LineHits { words, bits }
    }
}

/// Per receipt line, the set of [`LineRegexes`] that match it.
pub(super) struct LineHits {
    pub(super) words: usize,
    pub(super) bits: Vec<u64>,
}

impl LineHits {
    pub(super) fn matches(&self, line: usize, re: usize) -> bool {
        self.bits[line * self.words + re / 64] & (1 << (re % 64)) != 0
    }

    pub(super) fn any(&self, line: usize, res: &Range<usize>) -> bool {
        res.clone().any(|re| self.matches(line, re))
    }

    pub(super) fn lines(&self) -> usize {
        self.bits.len() / self.words
    }

    /// The first line at or after `from` that one of `res` matches.
    pub(super) fn first(&self, from: usize, res: &Range<usize>) -> Option<usize> {
        (from..self.lines()).find(|&i| self.any(i, res))
    }
}
