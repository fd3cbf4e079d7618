//! Privacy masking: blanks payment-card numbers in a receipt **before anything
//! is stored** — in its text lines, its code payloads and its raw bytes alike,
//! so the capture journal, `record`-style dumps of a receipt, parsed fields and
//! logs never see a full card number.
//!
//! What is a card number (`mask_cards = true`, the default):
//! - 15 to 19 ASCII digits, either contiguous or printed in groups of four
//!   separated by one space or dash (`6222 0212 3456 7890`, last group 1–4
//!   digits) or as Amex `4-6-5`;
//! - not glued to other letters or digits (`A4111…`, `…12345` are not cards);
//! - starting like a payment card (3, 4, 5, 6, or 2221–2720);
//! - passing the Luhn check.
//!
//! EAN-13 product codes (13 digits) and date-based order numbers (`2026…`) are
//! therefore never touched. The first six and last four digits stay (what PCI
//! DSS allows on a receipt); the digits between become `*`, one for one, so
//! line layouts and byte offsets do not move.
//!
//! Extra `mask` regexes in the template blank the ASCII digits of their first
//! capture group (or of the whole match) except the last four — for card
//! numbers printed some other way, or member/phone numbers.
//!
//! Invariants: a digit is blanked in the raw bytes exactly where the decoder
//! says its character came from (single-byte ASCII in every supported
//! encoding), so re-decoding a masked receipt gives the masked text; masking
//! is idempotent (`*` is never a digit).

use regex::Regex;

use super::escpos::{CodeKind, Offsets};
use super::segment::Receipt;

/// Configured masking.
#[derive(Debug, Clone)]
pub struct Masker {
    cards: bool,
    patterns: Vec<Regex>,
}

impl Default for Masker {
    fn default() -> Self {
        Masker {
            cards: true,
            patterns: Vec::new(),
        }
    }
}

impl Masker {
    pub fn new(cards: bool, patterns: Vec<Regex>) -> Masker {
        Masker { cards, patterns }
    }

    /// A masker that changes nothing.
    pub fn off() -> Masker {
        Masker {
            cards: false,
            patterns: Vec::new(),
        }
    }

    /// Masks the receipt in place; returns how many numbers were blanked (also
    /// added to `receipt.masked`).
    pub fn apply(&self, r: &mut Receipt) -> usize {
        if !self.cards && self.patterns.is_empty() {
            return 0;
        }
        let mut count = 0;
        for (i, line) in r.lines.iter_mut().enumerate() {
            // Most lines cannot hold a card number; skip them without
            // building the per-character view.
            if self.patterns.is_empty() && !(self.cards && may_hold_card(line.as_bytes())) {
                continue;
            }
            let mut chars: Vec<char> = line.chars().collect();
            let (hide, n) = self.spans(line, &chars);
            if n == 0 {
                continue;
            }
            count += n;
            // Walked alongside the chars: a run-length lookup per char would
            // cost a walk over the runs each.
            let mut offsets = r.line_offsets.get(i).map(Offsets::iter);
            for (j, c) in chars.iter_mut().enumerate() {
                let off = offsets.as_mut().and_then(Iterator::next);
                if !hide[j] || !c.is_ascii_digit() {
                    continue;
                }
                if let Some(off) = off {
                    blank_raw(&mut r.raw, r.stream_offset, off, *c);
                }
                *c = '*';
            }
            *line = chars.into_iter().collect();
        }
        for rc in &mut r.codes {
            let code = &mut rc.code;
            if !self.cards || !(may_hold_card(&code.data) || may_hold_card(code.payload.as_bytes()))
            {
                continue;
            }
            let mut data_chars: Vec<char> = code.data.iter().map(|&b| b as char).collect();
            if code.kind == CodeKind::Barcode {
                // CODE128 `{A`/`{B`/`{C` selectors are not text: they must not
                // glue a number to a letter.
                let mut j = 0;
                while j + 1 < data_chars.len() {
                    if data_chars[j] == '{' {
                        data_chars[j] = '|';
                        data_chars[j + 1] = '|';
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
            }
            let spans = card_spans(&data_chars);
            for j in spans.iter().flatten() {
                let digit = code.data[*j] as char;
                blank_raw(
                    &mut r.raw,
                    r.stream_offset,
                    code.data_offset + *j as u64,
                    digit,
                );
                code.data[*j] = b'*';
            }
            let payload_chars: Vec<char> = code.payload.chars().collect();
            let text_spans = card_spans(&payload_chars);
            if !text_spans.is_empty() || !spans.is_empty() {
                count += text_spans.len().max(spans.len());
                let mut chars = payload_chars;
                for j in text_spans.iter().flatten() {
                    chars[*j] = '*';
                }
                code.payload = chars.into_iter().collect();
            }
        }
        r.masked += count;
        count
    }

    /// Masks one piece of text (for text that never was raw bytes).
    pub fn mask_text(&self, text: &str) -> (String, usize) {
        let mut chars: Vec<char> = text.chars().collect();
        let (hide, n) = self.spans(text, &chars);
        for (j, c) in chars.iter_mut().enumerate() {
            if hide[j] && c.is_ascii_digit() {
                *c = '*';
            }
        }
        (chars.into_iter().collect(), n)
    }

    /// Which chars of `line` to hide, and how many numbers that is.
    fn spans(&self, line: &str, chars: &[char]) -> (Vec<bool>, usize) {
        let mut hide = vec![false; chars.len()];
        let mut n = 0;
        if self.cards && may_hold_card(line.as_bytes()) {
            for span in card_spans(chars) {
                n += 1;
                for j in span {
                    hide[j] = true;
                }
            }
        }
        if !self.patterns.is_empty() {
            // Byte index in `line` → char index.
            let mut char_at = vec![0usize; line.len() + 1];
            for (ci, (bi, _)) in line.char_indices().enumerate() {
                char_at[bi] = ci;
            }
            char_at[line.len()] = chars.len();
            for re in &self.patterns {
                for caps in re.captures_iter(line) {
                    let Some(m) = caps.get(1).or_else(|| caps.get(0)) else {
                        continue;
                    };
                    let digits: Vec<usize> = (char_at[m.start()]..char_at[m.end()])
                        .filter(|&j| chars[j].is_ascii_digit())
                        .collect();
                    if digits.len() > 4 {
                        n += 1;
                        for &j in &digits[..digits.len() - 4] {
                            hide[j] = true;
                        }
                    }
                }
            }
        }
        (hide, n)
    }
}

/// Blanks the raw byte of a digit, if it really is that digit (defensive: the
/// decoder's offsets make this always so).
fn blank_raw(raw: &mut [u8], base: u64, off: u64, digit: char) {
    let Some(rel) = off.checked_sub(base) else {
        return;
    };
    if let Some(b) = raw.get_mut(rel as usize) {
        if *b as char == digit {
            *b = b'*';
        }
    }
}

/// Whether `text` has a run of at least 15 ASCII digits joined by single
/// spaces or dashes: a card number needs one (see [`card_spans`]). A cheap
/// byte scan, exact for UTF-8 and for code payloads alike because every
/// character of such a run is ASCII.
fn may_hold_card(text: &[u8]) -> bool {
    // Most lines have fewer than 15 digits in all: a count the compiler
    // vectorises settles them before the byte-by-byte run scan.
    if text.iter().filter(|b| b.is_ascii_digit()).count() < 15 {
        return false;
    }
    let mut digits = 0;
    for (i, &b) in text.iter().enumerate() {
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= 15 {
                return true;
            }
        } else if !(matches!(b, b' ' | b'-') && text.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            digits = 0;
        }
    }
    false
}

/// For each card number in `chars`, the indices of the digits to hide (all but
/// the first six and last four).
pub fn card_spans(chars: &[char]) -> Vec<Vec<usize>> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let glued_before = i > 0 && chars[i - 1].is_ascii_alphanumeric();
        // A run: digit groups joined by single spaces or dashes.
        let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
        let mut j = i;
        while j < chars.len() {
            if chars[j].is_ascii_digit() {
                if let Some(g) = groups.last_mut() {
                    g.push(j);
                }
                j += 1;
            } else if matches!(chars[j], ' ' | '-')
                && j + 1 < chars.len()
                && chars[j + 1].is_ascii_digit()
            {
                groups.push(Vec::new());
                j += 1;
            } else {
                break;
            }
        }
        let glued_after = j < chars.len() && chars[j].is_ascii_alphanumeric();
        let last = groups.len() - 1;
        let mut a = 0;
        while a < groups.len() {
            let mut matched = None;
            for b in (a..groups.len()).rev() {
                // A window touching a glued end of the run is not a card.
                if (a == 0 && glued_before) || (b == last && glued_after) {
                    continue;
                }
                let window = &groups[a..=b];
                if looks_like_card(chars, window) {
                    matched = Some(b);
                    break;
                }
            }
            match matched {
                Some(b) => {
                    let digits: Vec<usize> = groups[a..=b].iter().flatten().copied().collect();
                    found.push(digits[6..digits.len() - 4].to_vec());
                    a = b + 1;
                }
                None => a += 1,
            }
        }
        i = j.max(i + 1);
    }
    found
}

fn looks_like_card(chars: &[char], groups: &[Vec<usize>]) -> bool {
    let lens: Vec<usize> = groups.iter().map(Vec::len).collect();
    let total: usize = lens.iter().sum();
    if !(15..=19).contains(&total) {
        return false;
    }
    let layout = lens.len() == 1
        || lens == [4, 6, 5]
        || (lens[..lens.len() - 1].iter().all(|&l| l == 4)
            && (1..=4).contains(&lens[lens.len() - 1]));
    if !layout {
        return false;
    }
    let digits: Vec<u32> = groups
        .iter()
        .flatten()
        .filter_map(|&j| chars[j].to_digit(10))
        .collect();
    let prefix4 = digits[..4].iter().fold(0, |acc, d| acc * 10 + d);
    let issuer = matches!(digits[0], 3..=6) || (2221..=2720).contains(&prefix4);
    issuer && luhn(&digits)
}

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: &str) {
        let (out, _) = Masker::default().mask_text(input);
        assert_eq!(out, expected, "input {input:?}");
    }

    #[test]
    fn card_numbers_are_masked_and_nothing_else() {
        check("卡号: 6222021234567890128", "卡号: 622202*********0128");
        check("Visa 4111111111111111", "Visa 411111******1111");
        check("4111 1111 1111 1111 paid", "4111 11** **** 1111 paid");
        check("4111-1111-1111-1111", "4111-11**-****-1111");
        check("AMEX 3782 822463 10005", "AMEX 3782 82**** *0005");
        check("MC2 2223000048400011", "MC2 222300******0011");
        // A quantity glued by one space in front does not hide the card.
        check("1 4111 1111 1111 1111", "1 4111 11** **** 1111");
        // Not cards: EAN-13, a failing Luhn, order numbers, glued to letters,
        // numbers too long, EAN + quantity, already masked.
        for same in [
            "6901234567892       2   3.50   7.00",
            "4111111111111112",
            "单号: 2026112200013",
            "202611220001300001",
            "A4111111111111111",
            "41111111111111110000",
            "6901234567892 12",
            "6222 **** **** 0123",
            "2026-11-22 09:15:02",
        ] {
            check(same, same);
        }
    }

    /// A Luhn-valid number of `len` digits starting with `prefix`.
    fn luhn_number(rng: &mut fastrand::Rng, prefix: &str, len: usize) -> String {
        let mut d: Vec<u32> = prefix.chars().filter_map(|c| c.to_digit(10)).collect();
        while d.len() < len - 1 {
            d.push(rng.u32(0..10));
        }
        d.push(0);
        let check = (10 - luhn_sum(&d) % 10) % 10;
        *d.last_mut().unwrap() = check;
        assert!(luhn(&d));
        d.iter()
            .map(|x| char::from_digit(*x, 10).unwrap())
            .collect()
    }

    fn luhn_sum(digits: &[u32]) -> u32 {
        digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &d)| {
                if i % 2 == 1 {
                    (d * 2) % 9 + (d == 9) as u32 * 9
                } else {
                    d
                }
            })
            .sum()
    }

    #[test]
    fn the_quick_precheck_never_hides_a_card() {
        // may_hold_card lets lines skip card_spans: it must say yes to every
        // text card_spans finds a card in. Random receipt-like text with real
        // card numbers in every layout, glued or not to their neighbours.
        let mut rng = fastrand::Rng::with_seed(0xca4d);
        let pieces = [
            " ", "-", "  ", "卡号:", "A", "x", "1", "12", "2026", "*", "\t",
        ];
        let mut found = 0;
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..rng.usize(1..6) {
                if rng.u8(..3) == 0 {
                    let len = rng.usize(15..=19);
                    let prefix = ["4", "51", "6222", "37", "2221", "9"][rng.usize(..6)];
                    let n = luhn_number(&mut rng, prefix, len);
                    let sep = [" ", "-", ""][rng.usize(..3)];
                    let grouped: Vec<String> = if rng.bool() && len == 15 {
                        vec![n[..4].into(), n[4..10].into(), n[10..].into()]
                    } else {
                        n.as_bytes()
                            .chunks(4)
                            .map(|c| String::from_utf8(c.to_vec()).unwrap())
                            .collect()
                    };
                    text.push_str(&grouped.join(sep));
                } else {
                    text.push_str(pieces[rng.usize(..pieces.len())]);
                }
            }
            let chars: Vec<char> = text.chars().collect();
            if !card_spans(&chars).is_empty() {
                found += 1;
                assert!(may_hold_card(text.as_bytes()), "{text:?}");
            }
        }
        assert!(found > 500, "only {found} texts held a card");
    }

    #[test]
    fn extra_patterns_keep_the_last_four_digits() {
        let m = Masker::new(false, vec![Regex::new(r"会员[:：]\s*(\d+)").unwrap()]);
        let (out, n) = m.mask_text("会员: 13800138000 积分 12");
        assert_eq!(out, "会员: *******8000 积分 12");
        assert_eq!(n, 1);
        // Without cards enabled a card stays (the operator chose so).
        assert_eq!(m.mask_text("4111111111111111").0, "4111111111111111");
    }

    #[test]
    fn masking_reaches_the_raw_bytes_and_is_idempotent() {
        use crate::capture::escpos::{CodePage, Decoder};
        use crate::capture::segment::{Boundary, SegmentRules, Segmenter};
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\x1b@");
        let (gb, _, _) = encoding_rs::GB18030.encode("银行卡: 6222");
        stream.extend_from_slice(&gb);
        // A bold toggle in the middle of the number does not hide it.
        stream.extend_from_slice(b"\x1bE\x010212345\x1bE\x0067890128\n");
        stream.extend_from_slice(b"\x1dkI\x15{B6222021234567890128\x1bi");
        let decode = |bytes: &[u8]| {
            let mut d = Decoder::new(CodePage::Gb18030);
            let mut s = Segmenter::new(SegmentRules::default());
            let mut evs = Vec::new();
            let mut out = Vec::new();
            s.push_bytes(bytes, None, true);
            d.feed(bytes, &mut evs);
            d.finish(&mut evs);
            for e in evs {
                s.push_event(e, &mut out);
            }
            s.close(d.position(), Boundary::EndOfInput, &mut out);
            out.remove(0)
        };
        let mut r = decode(&stream);
        assert_eq!(r.lines[0], "银行卡: 6222021234567890128");
        assert_eq!(Masker::default().apply(&mut r), 2);
        assert_eq!(r.lines[0], "银行卡: 622202*********0128");
        assert_eq!(r.codes[0].code.payload, "622202*********0128");
        assert!(!r.raw.windows(4).any(|w| w == b"1234"), "{:02x?}", r.raw);
        // The masked raw decodes to the masked text, and masking again is a no-op.
        let mut again = decode(&r.raw);
        assert_eq!(again.lines, r.lines);
        assert_eq!(again.codes[0].code.payload, r.codes[0].code.payload);
        assert_eq!(Masker::default().apply(&mut again), 0);
        assert_eq!(again.raw, r.raw);
    }
}
