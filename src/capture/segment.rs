//! Receipt boundaries: cuts the decoded stream of one printer into receipts,
//! each with the exact raw bytes it came from.
//!
//! A receipt ends at the first of:
//! - a **cut** command (`GS V`, `ESC i`, `ESC m`), when `cut = true` (default);
//! - the line matching **`end_pattern`** plus `end_extra_lines` more non-blank lines;
//! - a line matching **`start_pattern`**: the receipt before it ends where the
//!   last printed line, code or cut ended, so the commands in between (reset,
//!   logo) open the new receipt;
//! - **idle timeout**: no printing bytes for `idle_timeout_ms`. Time is an
//!   explicit argument ([`Segmenter::idle_due`]), never read here, so tests need
//!   no sleeping. Real-time status polls (`DLE EOT`…) do not count as printing:
//!   a driver that polls every second would otherwise hold a receipt open forever;
//! - **`max_bytes`** buffered (a bound on memory whatever the POS sends).
//!
//! Invariants:
//! - Concatenating the `raw` of consecutive receipts and the bytes discarded in
//!   between gives back the stream: nothing is reordered or duplicated.
//! - A segment without content — no non-blank line, no code, no drawer kick (e.g.
//!   status polls, a lone reset or cut) — is not a receipt: its bytes are
//!   discarded and counted in [`Segmenter::discarded_bytes`], so polls between
//!   sales do not pile up.
//! - The segmenter is driven by decoder [`Event`]s plus the raw bytes, always
//!   in stream order: [`Segmenter::push_bytes`] before the events of those bytes.

use std::time::{Duration, Instant};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::escpos::{Code, Event, EventKind, Offsets};

/// `[source.segment]` as written in the config (and as `check-config` prints it back).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSegment {
    /// Cut commands end a receipt. Default true.
    #[serde(default)]
    pub cut: Option<bool>,
    /// Regex; the matching line ends a receipt (after `end_extra_lines` more).
    #[serde(default)]
    pub end_pattern: Option<String>,
    /// Non-blank lines after the `end_pattern` line still in the receipt. Default 0.
    #[serde(default)]
    pub end_extra_lines: Option<usize>,
    /// Regex; the matching line begins a new receipt.
    #[serde(default)]
    pub start_pattern: Option<String>,
    /// Quiet time that ends a receipt, in milliseconds; 0 turns it off.
    /// Default 5000. Ignored for files.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// Largest receipt in bytes; a longer one is cut there. Default 1048576.
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

/// Validated segmentation rules.
#[derive(Debug, Clone)]
pub struct SegmentRules {
    pub cut: bool,
    pub end_pattern: Option<Regex>,
    pub end_extra_lines: usize,
    pub start_pattern: Option<Regex>,
    pub idle_timeout: Option<Duration>,
    pub max_bytes: usize,
}

pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 5000;
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

impl Default for SegmentRules {
    fn default() -> Self {
        SegmentRules {
            cut: true,
            end_pattern: None,
            end_extra_lines: 0,
            start_pattern: None,
            idle_timeout: Some(Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS)),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl SegmentRules {
    /// The rules as the file writes them, every default filled in.
    pub fn raw(&self) -> RawSegment {
        RawSegment {
            cut: Some(self.cut),
            end_pattern: self.end_pattern.as_ref().map(|r| r.as_str().to_string()),
            // Only meaningful (and only accepted) with an end_pattern.
            end_extra_lines: self.end_pattern.as_ref().map(|_| self.end_extra_lines),
            start_pattern: self.start_pattern.as_ref().map(|r| r.as_str().to_string()),
            idle_timeout_ms: Some(self.idle_timeout.map_or(0, |d| d.as_millis() as u64)),
            max_bytes: Some(self.max_bytes),
        }
    }
}

impl RawSegment {
    /// Errors name the key relative to the source, e.g. `segment.end_pattern: …`.
    pub fn validate(self) -> Result<SegmentRules, String> {
        let regex = |key: &str, p: Option<String>| -> Result<Option<Regex>, String> {
            p.map(|p| Regex::new(&p).map_err(|e| format!("segment.{key}: {e}")))
                .transpose()
        };
        let rules = SegmentRules {
            cut: self.cut.unwrap_or(true),
            end_pattern: regex("end_pattern", self.end_pattern)?,
            end_extra_lines: self.end_extra_lines.unwrap_or(0),
            start_pattern: regex("start_pattern", self.start_pattern)?,
            idle_timeout: match self.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS) {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            max_bytes: self.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
        };
        if rules.max_bytes < 1024 {
            return Err(format!(
                "segment.max_bytes: must be at least 1024, got {}",
                rules.max_bytes
            ));
        }
        if self.end_extra_lines.is_some() && rules.end_pattern.is_none() {
            return Err("segment.end_extra_lines: needs segment.end_pattern".into());
        }
        if !rules.cut
            && rules.end_pattern.is_none()
            && rules.start_pattern.is_none()
            && rules.idle_timeout.is_none()
        {
            return Err(
                "segment: no boundary left (cut = false, no end_pattern, no start_pattern, \
                 idle_timeout_ms = 0)"
                    .into(),
            );
        }
        Ok(rules)
    }
}

/// Why a receipt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    Cut,
    EndPattern,
    StartPattern,
    Idle,
    MaxBytes,
    /// The input ended (a file, or the tap shut down).
    EndOfInput,
}

impl Boundary {
    pub fn as_str(self) -> &'static str {
        match self {
            Boundary::Cut => "cut",
            Boundary::EndPattern => "end_pattern",
            Boundary::StartPattern => "start_pattern",
            Boundary::Idle => "idle",
            Boundary::MaxBytes => "max_bytes",
            Boundary::EndOfInput => "end_of_input",
        }
    }
}

/// A barcode / 2D code and where it was printed among the lines.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptCode {
    pub code: Code,
    /// Number of receipt lines printed before it.
    pub after_line: usize,
}

/// One receipt: its raw bytes and what they decode to.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// The bytes exactly as the POS sent them (after card masking, see
    /// [`super::mask`]).
    pub raw: Vec<u8>,
    /// Stream offset of `raw[0]`.
    pub stream_offset: u64,
    pub lines: Vec<String>,
    pub codes: Vec<ReceiptCode>,
    pub drawer_kicks: u32,
    pub ended_by: Boundary,
    /// When the first byte and the last printing byte arrived (None for files).
    pub first_at: Option<Instant>,
    pub last_at: Option<Instant>,
    /// How many card numbers [`super::mask`] blanked.
    pub masked: usize,
    /// Per line, per char: the stream offset of its first byte.
    pub(crate) line_offsets: Vec<Offsets>,
    /// Commands in (or just before) it that the decoder could not follow and
    /// skipped (see `escpos`: a claimed length past the bound, a command cut
    /// short by the receipt's end); counted per source in the journal.
    pub malformed: u64,
}

impl Receipt {
    /// The receipt as text, codes shown in place as `[qr] payload`, for
    /// `tillrelay parse --text` and for template writers.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut codes = self.codes.iter().peekable();
        for (i, line) in self.lines.iter().enumerate() {
            while let Some(c) = codes.next_if(|c| c.after_line <= i) {
                s.push_str(&format!("[{}] {}\n", c.code.symbology, c.code.payload));
            }
            s.push_str(line);
            s.push('\n');
        }
        for c in codes {
            s.push_str(&format!("[{}] {}\n", c.code.symbology, c.code.payload));
        }
        s
    }

    /// [`Receipt::render`] with 1-based line numbers — the numbers template
    /// errors cite (`line 12 "…": items: …`). Codes are shown unnumbered.
    pub fn render_numbered(&self) -> String {
        let width = self.lines.len().max(1).to_string().len();
        let mut s = String::new();
        let mut codes = self.codes.iter().peekable();
        let code_line = |c: &ReceiptCode| {
            format!(
                "{:>width$} | [{}] {}\n",
                "", c.code.symbology, c.code.payload
            )
        };
        for (i, line) in self.lines.iter().enumerate() {
            while let Some(c) = codes.next_if(|c| c.after_line <= i) {
                s.push_str(&code_line(c));
            }
            let numbered = format!("{:>width$} | {line}", i + 1);
            s.push_str(numbered.trim_end());
            s.push('\n');
        }
        for c in codes {
            s.push_str(&code_line(c));
        }
        s
    }

    /// Whether anything was printed (the test for being a receipt at all).
    pub fn has_content(&self) -> bool {
        self.lines.iter().any(|l| !l.trim().is_empty())
            || !self.codes.is_empty()
            || self.drawer_kicks > 0
    }
}

/// The receipt being built.
#[derive(Default)]
struct Building {
    lines: Vec<String>,
    offsets: Vec<Offsets>,
    codes: Vec<ReceiptCode>,
    kicks: u32,
}

impl Building {
    fn has_content(&self) -> bool {
        self.lines.iter().any(|l| !l.trim().is_empty()) || !self.codes.is_empty() || self.kicks > 0
    }
}

/// Splits one printer's decoded stream into receipts. See the module docs.
pub struct Segmenter {
    rules: SegmentRules,
    /// Raw bytes not yet part of an emitted receipt are `buf[head..]`;
    /// `buf[head]` is at stream offset `base`. Emitted bytes are dropped from
    /// the front only once they are half the buffer, so a whole file pushed at
    /// once costs linear, not quadratic, copying as its receipts are cut off.
    buf: Vec<u8>,
    head: usize,
    base: u64,
    cur: Building,
    /// Where the last line, code or cut ended: where a start pattern splits.
    last_split: u64,
    /// Non-blank lines still to take after an end-pattern line.
    countdown: Option<usize>,
    first_at: Option<Instant>,
    last_activity: Option<Instant>,
    discarded: u64,
}

impl Segmenter {
    pub fn new(rules: SegmentRules) -> Segmenter {
        Segmenter {
            rules,
            buf: Vec::new(),
            head: 0,
            base: 0,
            cur: Building::default(),
            last_split: 0,
            countdown: None,
            first_at: None,
            last_activity: None,
            discarded: 0,
        }
    }

    pub fn rules(&self) -> &SegmentRules {
        &self.rules
    }

    /// Raw bytes, before the events decoded from them. `active`: the bytes
    /// included printing (not only status polls), which restarts the idle timer.
    pub fn push_bytes(&mut self, bytes: &[u8], now: Option<Instant>, active: bool) {
        if bytes.is_empty() {
            return;
        }
        if self.buffered() == 0 {
            self.first_at = now;
        }
        self.buf.extend_from_slice(bytes);
        if active {
            self.last_activity = now;
        }
    }

    /// Bytes held for the receipt being built.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Bytes thrown away because they printed nothing (polls, stray resets).
    pub fn discarded_bytes(&self) -> u64 {
        self.discarded
    }

    pub fn push_event(&mut self, ev: Event, out: &mut Vec<Receipt>) {
        match ev.kind {
            EventKind::Line(line) => {
                let blank = line.text.trim().is_empty();
                if let Some(start) = &self.rules.start_pattern {
                    if start.is_match(&line.text) && self.cur.has_content() {
                        self.close(self.last_split, Boundary::StartPattern, out);
                    }
                }
                let ends = self
                    .rules
                    .end_pattern
                    .as_ref()
                    .is_some_and(|p| p.is_match(&line.text));
                self.cur.lines.push(line.text);
                self.cur.offsets.push(line.offsets);
                self.last_split = ev.end;
                if ends && self.countdown.is_none() {
                    self.countdown = Some(self.rules.end_extra_lines);
                } else if let Some(n) = self.countdown {
                    if !blank {
                        self.countdown = Some(n.saturating_sub(1));
                    }
                }
                if self.countdown == Some(0) {
                    self.close(ev.end, Boundary::EndPattern, out);
                }
            }
            EventKind::Cut { .. } => {
                self.last_split = ev.end;
                if self.rules.cut {
                    self.close(ev.end, Boundary::Cut, out);
                }
            }
            EventKind::Code(code) => {
                self.cur.codes.push(ReceiptCode {
                    code,
                    after_line: self.cur.lines.len(),
                });
                self.last_split = ev.end;
            }
            EventKind::DrawerKick { .. } => self.cur.kicks += 1,
            EventKind::StatusRequest { .. } | EventKind::Init | EventKind::Unknown(_) => {}
        }
    }

    /// Whether the idle timeout has passed at `now` with bytes waiting.
    pub fn idle_due(&self, now: Instant) -> bool {
        let Some(idle) = self.rules.idle_timeout else {
            return false;
        };
        if self.buffered() == 0 {
            return false;
        }
        match self.last_activity.or(self.first_at) {
            Some(t) => now.saturating_duration_since(t) >= idle,
            None => false,
        }
    }

    /// When the idle timeout will be due, for a caller that sleeps until then.
    pub fn idle_deadline(&self) -> Option<Instant> {
        let idle = self.rules.idle_timeout?;
        if self.buffered() == 0 {
            return None;
        }
        self.last_activity.or(self.first_at).map(|t| t + idle)
    }

    /// Ends the receipt at stream offset `end` (everything buffered up to it).
    /// The caller flushes the decoder's unfinished line first.
    pub fn close(&mut self, end: u64, why: Boundary, out: &mut Vec<Receipt>) {
        let take = end.saturating_sub(self.base).min(self.buffered() as u64) as usize;
        let raw = self.buf[self.head..self.head + take].to_vec();
        let stream_offset = self.base;
        self.base += take as u64;
        self.head += take;
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        } else if self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        let cur = std::mem::take(&mut self.cur);
        self.countdown = None;
        let first_at = self.first_at;
        let last_at = self.last_activity;
        // What stays buffered arrived after the boundary; its first byte time is
        // not known more precisely than "the latest activity".
        let rest = self.buffered();
        self.first_at = if rest == 0 {
            None
        } else {
            last_at.or(first_at)
        };
        if rest > 0 {
            // Keep the idle timer running for the rest.
            self.last_activity = last_at;
        } else {
            self.last_activity = None;
        }
        if !cur.has_content() {
            self.discarded += raw.len() as u64;
            return;
        }
        out.push(Receipt {
            raw,
            stream_offset,
            lines: cur.lines,
            codes: cur.codes,
            drawer_kicks: cur.kicks,
            ended_by: why,
            first_at,
            last_at,
            masked: 0,
            line_offsets: cur.offsets,
            malformed: 0,
        });
    }

    /// Stream offset of the end of everything pushed so far.
    pub fn end_offset(&self) -> u64 {
        self.base + self.buffered() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::escpos::{CodePage, Decoder};

    fn rules(f: impl FnOnce(&mut RawSegment)) -> SegmentRules {
        let mut raw = RawSegment::default();
        f(&mut raw);
        raw.validate().unwrap()
    }

    /// Runs the stream through decoder + segmenter as one chunk at `t0`, then
    /// closes at end of input.
    fn segment(rules: SegmentRules, input: &[u8]) -> (Vec<Receipt>, u64) {
        let mut d = Decoder::new(CodePage::Gb18030);
        let mut s = Segmenter::new(rules);
        let mut out = Vec::new();
        let mut evs = Vec::new();
        s.push_bytes(input, None, true);
        d.feed(input, &mut evs);
        d.finish(&mut evs);
        for e in evs {
            s.push_event(e, &mut out);
        }
        s.close(d.position(), Boundary::EndOfInput, &mut out);
        (out, s.discarded_bytes())
    }

    fn summary(receipts: &[Receipt]) -> Vec<(String, &'static str)> {
        receipts
            .iter()
            .map(|r| {
                (
                    String::from_utf8_lossy(&r.raw).into_owned(),
                    r.ended_by.as_str(),
                )
            })
            .collect()
    }

    #[track_caller]
    fn check(rules: SegmentRules, input: &[u8], expected: &[(&str, &str)], discarded: u64) {
        let (receipts, gone) = segment(rules, input);
        let got = summary(&receipts);
        let want: Vec<(String, &str)> = expected.iter().map(|(a, b)| (a.to_string(), *b)).collect();
        assert_eq!(got, want);
        assert_eq!(gone, discarded, "discarded bytes");
    }

    #[test]
    fn cuts_split_and_empty_segments_are_discarded() {
        check(
            rules(|_| {}),
            b"A\n\x1bi\x10\x04\x01\x1bi\x1b@B\n\x1dV\x00\x10\x04\x01",
            &[("A\n\x1bi", "cut"), ("\x1b@B\n\x1dV\x00", "cut")],
            // The poll + cut between, and the trailing poll.
            3 + 2 + 3,
        );
        // cut = false: the cut is just a command inside one receipt.
        check(
            rules(|r| r.cut = Some(false)),
            b"A\n\x1biB\n",
            &[("A\n\x1biB\n", "end_of_input")],
            0,
        );
    }

    #[test]
    fn end_pattern_with_extra_lines() {
        let r = rules(|r| {
            r.end_pattern = Some("^Thank".into());
            r.end_extra_lines = Some(1);
            r.cut = Some(false);
        });
        // Blank lines do not count as the extra line.
        check(
            r,
            b"A\nThank you\n\nwww\nB\nThank\nx\n",
            &[
                ("A\nThank you\n\nwww\n", "end_pattern"),
                ("B\nThank\nx\n", "end_pattern"),
            ],
            0,
        );
        let r = rules(|r| r.end_pattern = Some("^END$".into()));
        check(r, b"A\nEND\n\x1dV\x00", &[("A\nEND\n", "end_pattern")], 3);
    }

    #[test]
    fn start_pattern_opens_a_new_receipt_with_its_preamble() {
        let r = rules(|r| {
            r.start_pattern = Some("^SHOP".into());
            r.cut = Some(false);
        });
        check(
            r,
            b"\x1b@SHOP\nA\n\x1b@\x1ba\x01SHOP\nB\n",
            &[
                ("\x1b@SHOP\nA\n", "start_pattern"),
                ("\x1b@\x1ba\x01SHOP\nB\n", "end_of_input"),
            ],
            0,
        );
    }

    #[test]
    fn codes_and_kicks_are_content_and_keep_their_place() {
        let (receipts, _) = segment(
            rules(|_| {}),
            b"A\n\x1dkI\x05{B123B\n\x1bi\x1bp\x00\x10\x10\x1bi",
        );
        assert_eq!(receipts.len(), 2);
        assert_eq!(receipts[0].render(), "A\n[code128] 123\nB\n");
        assert_eq!(
            receipts[0].render_numbered(),
            "1 | A\n  | [code128] 123\n2 | B\n"
        );
        assert_eq!(receipts[1].drawer_kicks, 1);
        assert!(receipts[1].lines.is_empty());
    }

    #[test]
    fn idle_timeout_is_driven_by_the_callers_clock() {
        let r = rules(|r| {
            r.idle_timeout_ms = Some(3000);
        });
        let t0 = Instant::now();
        let mut s = Segmenter::new(r);
        let mut d = Decoder::new(CodePage::Gb18030);
        let mut out = Vec::new();
        let feed = |s: &mut Segmenter,
                    d: &mut Decoder,
                    bytes: &[u8],
                    at: Instant,
                    out: &mut Vec<Receipt>| {
            let before = d.activity();
            let mut evs = Vec::new();
            d.feed(bytes, &mut evs);
            s.push_bytes(bytes, Some(at), d.activity() != before);
            for e in evs {
                s.push_event(e, out);
            }
        };
        feed(&mut s, &mut d, b"A\nB", t0, &mut out);
        assert!(!s.idle_due(t0 + Duration::from_millis(2999)));
        // Status polls keep arriving but are not printing.
        feed(
            &mut s,
            &mut d,
            b"\x10\x04\x01",
            t0 + Duration::from_secs(2),
            &mut out,
        );
        assert!(s.idle_due(t0 + Duration::from_millis(3000)));
        assert_eq!(s.idle_deadline(), Some(t0 + Duration::from_secs(3)));
        let mut evs = Vec::new();
        d.flush_line(&mut evs);
        for e in evs {
            s.push_event(e, &mut out);
        }
        s.close(d.position(), Boundary::Idle, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].lines, ["A", "B"]);
        assert_eq!(out[0].raw, b"A\nB\x10\x04\x01");
        assert_eq!(out[0].first_at, Some(t0));
        assert_eq!(out[0].last_at, Some(t0));
        assert!(!s.idle_due(t0 + Duration::from_secs(60)), "nothing left");
        // Polls alone become due too, and are discarded rather than kept.
        feed(
            &mut s,
            &mut d,
            b"\x10\x04\x01",
            t0 + Duration::from_secs(10),
            &mut out,
        );
        assert!(s.idle_due(t0 + Duration::from_secs(13)));
        s.close(d.position(), Boundary::Idle, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(s.discarded_bytes(), 3);
    }

    #[test]
    fn receipts_concatenate_back_to_the_stream() {
        let raw = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/receipts/market.bin"),
        )
        .unwrap();
        let (receipts, discarded) = segment(SegmentRules::default(), &raw);
        assert_eq!(receipts.len(), 4);
        assert_eq!(discarded, 0);
        let joined: Vec<u8> = receipts.iter().flat_map(|r| r.raw.clone()).collect();
        assert_eq!(joined, raw);
        let mut offset = 0;
        for r in &receipts {
            assert_eq!(r.stream_offset, offset);
            offset += r.raw.len() as u64;
            assert!(r.raw.ends_with(b"\x1dVB\x03"));
        }
        // The drawer kick after receipt 1's cut is printed with receipt 2.
        assert_eq!(
            receipts.iter().map(|r| r.drawer_kicks).collect::<Vec<_>>(),
            [0, 1, 0, 1]
        );
    }

    #[test]
    fn bad_rules_name_their_key() {
        let e = RawSegment {
            end_pattern: Some("(".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.starts_with("segment.end_pattern: "), "{e}");
        let e = RawSegment {
            cut: Some(false),
            idle_timeout_ms: Some(0),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.starts_with("segment: no boundary"), "{e}");
        let e = RawSegment {
            end_extra_lines: Some(2),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("end_extra_lines"), "{e}");
    }
}
