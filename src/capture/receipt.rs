//! One source's whole receipt chain — decoder → segmenter → masker (→ template)
//! — for live serial bytes ([`Pipeline`]) and for bytes already on disk:
//! `tillrelay parse FILE`, folder sources with `format = "receipt"`
//! ([`parse_bytes`]), and journal entries being re-parsed ([`parse_one`]).
//!
//! Invariants:
//! - Every [`Receipt`] that leaves this module is already masked (see
//!   [`super::mask`]), so whatever stores it — the capture journal first of all
//!   — never sees a full card number.
//! - Files go through the same decoder, segmentation rules and template as
//!   live bytes; only the idle timeout is meaningless for them and ignored.
//! - A journal entry is one receipt: [`parse_one`] decodes it whole, without
//!   segmenting it again, in the source's configured code page.

use std::time::Instant;

use super::escpos::{CodePage, Decoder, Event};
use super::mask::Masker;
use super::segment::{Boundary, RawSegment, Receipt, SegmentRules, Segmenter};
use super::template::{Parsed, RawTemplate, Template, TemplateError};

/// A source's receipt settings, validated: `encoding`, `[source.segment]`,
/// `[source.template]`.
#[derive(Debug, Clone)]
pub struct ReceiptRules {
    pub encoding: CodePage,
    pub segment: SegmentRules,
    /// None while a template is still being written (`record`/`parse` work).
    pub template: Option<Template>,
    masker: Masker,
}

/// A source's receipt keys as the file writes them (what `check-config` prints).
#[derive(Debug, Clone)]
pub struct RawRules {
    /// The code page by name (`gb18030`, `cp858`, …).
    pub encoding: String,
    pub segment: RawSegment,
    pub template: Option<RawTemplate>,
}

impl ReceiptRules {
    /// The rules as the file writes them, every default filled in.
    pub fn raw(&self) -> RawRules {
        RawRules {
            encoding: self.encoding.name().to_string(),
            segment: self.segment.raw(),
            template: self.template.as_ref().map(|t| t.raw().clone()),
        }
    }

    /// Validates the three receipt keys of a source. `encoding` defaults to
    /// GB18030 (what Chinese printers do without being told). Errors name the
    /// key relative to the source (`encoding: …`, `segment.…`, `template.…`).
    pub fn from_raw(
        encoding: Option<&str>,
        segment: Option<RawSegment>,
        template: Option<RawTemplate>,
    ) -> Result<ReceiptRules, String> {
        let encoding = match encoding {
            None => CodePage::Gb18030,
            Some(name) => CodePage::parse(name).ok_or_else(|| {
                format!(
                    "encoding: unknown {name:?}; use one of {}",
                    CodePage::names()
                )
            })?,
        };
        let segment = segment.unwrap_or_default().validate()?;
        let template = template.map(RawTemplate::validate).transpose()?;
        let masker = template
            .as_ref()
            .map(|t| t.masker().clone())
            .unwrap_or_default();
        Ok(ReceiptRules {
            encoding,
            segment,
            template,
            masker,
        })
    }

    /// Rules with defaults and no template (for tests and `record`).
    pub fn plain(encoding: CodePage) -> ReceiptRules {
        ReceiptRules {
            encoding,
            segment: SegmentRules::default(),
            template: None,
            masker: Masker::default(),
        }
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Applies the template; a source without one fails every receipt.
    pub fn parse(&self, r: &Receipt) -> Result<Parsed, TemplateError> {
        self.parse_at(r, None)
    }

    /// [`ReceiptRules::parse`] for a receipt captured at `captured` (local
    /// time; None = now), which places a date printed without its year.
    pub fn parse_at(
        &self,
        r: &Receipt,
        captured: Option<chrono::NaiveDateTime>,
    ) -> Result<Parsed, TemplateError> {
        match &self.template {
            Some(t) => match captured {
                Some(at) => t.parse_at(r, at),
                None => t.parse(r),
            },
            None => Err(TemplateError {
                line: None,
                text: None,
                field: "template".into(),
                problem: "this source has no [source.template] yet".into(),
            }),
        }
    }
}

/// Largest piece of input [`Pipeline::feed`] hands the decoder at once.
pub const PIECE: usize = 64 * 1024;

/// Event buffer capacity a [`Pipeline`] keeps between pieces (about 100 KB):
/// a serial read (at most 4 KB) of receipts decodes to a few hundred events.
/// A bigger buffer (a 64 KB piece of a file, a burst of line feeds) is freed.
const KEEP_EVENTS: usize = 1024;

/// Live receipt assembly for one serial source: feed it the tap's chunks and
/// call [`Pipeline::tick`] when [`Pipeline::deadline`] passes.
pub struct Pipeline {
    decoder: Decoder,
    segmenter: Segmenter,
    masker: Masker,
    /// The decoder's events of one piece, handed on at once; kept between
    /// pieces so that it is not grown again (realloc by realloc) every time,
    /// up to [`KEEP_EVENTS`].
    events: Vec<Event>,
}

impl Pipeline {
    pub fn new(rules: &ReceiptRules) -> Pipeline {
        Pipeline {
            decoder: Decoder::new(rules.encoding),
            segmenter: Segmenter::new(rules.segment.clone()),
            masker: rules.masker.clone(),
            events: Vec::new(),
        }
    }

    /// Bytes as they arrived at `now` (None for files: no idle timing).
    ///
    /// A large input (a whole file) is taken in pieces of [`PIECE`] bytes, as
    /// if it had arrived that way: the decoder's events and the segmenter's
    /// buffer stay small, and `max_bytes` cuts a long receipt within a piece
    /// of where it is reached, not only at the end of the input.
    pub fn feed(&mut self, bytes: &[u8], now: Option<Instant>, out: &mut Vec<Receipt>) {
        for piece in bytes.chunks(PIECE) {
            self.feed_piece(piece, now, out);
        }
    }

    fn feed_piece(&mut self, bytes: &[u8], now: Option<Instant>, out: &mut Vec<Receipt>) {
        let before = self.decoder.activity();
        let mut events = std::mem::take(&mut self.events);
        self.decoder.feed(bytes, &mut events);
        let active = self.decoder.activity() != before;
        self.segmenter.push_bytes(bytes, now, active);
        let first = out.len();
        self.push(&mut events, out);
        self.keep(events);
        if self.segmenter.buffered() > self.segmenter.rules().max_bytes {
            self.close(Boundary::MaxBytes, out);
        }
        self.mask(&mut out[first..]);
    }

    /// Ends the receipt in progress if the idle timeout passed by `now`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Receipt>) {
        if self.segmenter.idle_due(now) {
            let first = out.len();
            self.close(Boundary::Idle, out);
            self.mask(&mut out[first..]);
        }
    }

    /// When [`Pipeline::tick`] next has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        self.segmenter.idle_deadline()
    }

    /// End of input (end of a file, or shutdown): the rest is one receipt.
    pub fn finish(&mut self, out: &mut Vec<Receipt>) {
        let first = out.len();
        self.close(Boundary::EndOfInput, out);
        self.mask(&mut out[first..]);
    }

    /// Raw bytes held for the receipt in progress.
    pub fn buffered(&self) -> usize {
        self.segmenter.buffered()
    }

    /// Cuts the receipt in progress here, as `max_bytes` would (a caller
    /// bounding the memory of many pipelines together).
    pub fn cut(&mut self, out: &mut Vec<Receipt>) {
        let first = out.len();
        self.close(Boundary::MaxBytes, out);
        self.mask(&mut out[first..]);
    }

    /// Bytes that printed nothing and were dropped (status polls and the like).
    pub fn discarded_bytes(&self) -> u64 {
        self.segmenter.discarded_bytes()
    }

    /// Keeps the (empty) event buffer for the next piece unless a burst of
    /// events grew it past [`KEEP_EVENTS`]: a live pipeline runs for months.
    fn keep(&mut self, events: Vec<Event>) {
        if events.capacity() <= KEEP_EVENTS {
            self.events = events;
        }
    }

    /// Hands `events` on to the segmenter, leaving `events` empty.
    fn push(&mut self, events: &mut Vec<Event>, out: &mut Vec<Receipt>) {
        for e in events.drain(..) {
            self.segmenter.push_event(e, out);
        }
    }

    fn close(&mut self, why: Boundary, out: &mut Vec<Receipt>) {
        let mut events = std::mem::take(&mut self.events);
        self.decoder.flush_line(&mut events);
        self.push(&mut events, out);
        self.keep(events);
        self.segmenter.close(self.decoder.position(), why, out);
    }

    fn mask(&self, receipts: &mut [Receipt]) {
        for r in receipts {
            self.masker.apply(r);
        }
    }
}

/// Splits a file (a capture, a POS "print to file" receipt) into masked receipts.
pub fn split_bytes(bytes: &[u8], rules: &ReceiptRules) -> Vec<Receipt> {
    let mut p = Pipeline::new(rules);
    let mut out = Vec::new();
    p.feed(bytes, None, &mut out);
    p.finish(&mut out);
    out
}

/// Splits a file into receipts and parses each with the source's template.
pub fn parse_bytes(
    bytes: &[u8],
    rules: &ReceiptRules,
) -> Vec<(Receipt, Result<Parsed, TemplateError>)> {
    parse_bytes_at(bytes, rules, None)
}

/// [`parse_bytes`] for a file captured at `captured` (e.g. its modification
/// time; None = now), which places dates printed without their year.
pub fn parse_bytes_at(
    bytes: &[u8],
    rules: &ReceiptRules,
    captured: Option<chrono::NaiveDateTime>,
) -> Vec<(Receipt, Result<Parsed, TemplateError>)> {
    split_bytes(bytes, rules)
        .into_iter()
        .map(|r| {
            let parsed = rules.parse_at(&r, captured);
            (r, parsed)
        })
        .collect()
}

/// Decodes one journalled receipt whole (no re-segmentation) and parses it.
pub fn parse_one(raw: &[u8], rules: &ReceiptRules) -> (Receipt, Result<Parsed, TemplateError>) {
    let r = decode_whole(raw, rules);
    let parsed = rules.parse(&r);
    (r, parsed)
}

/// Masks card numbers in a whole raw stream (e.g. a `record` capture before it
/// is written to disk); returns the masked bytes (same length, digits replaced
/// by `*`) and how many numbers were masked. A card number split across two
/// calls is not seen: mask a whole capture, not its chunks.
pub fn mask_stream(raw: &[u8], rules: &ReceiptRules) -> (Vec<u8>, usize) {
    let r = decode_whole(raw, rules);
    (r.raw, r.masked)
}

/// Decodes `raw` as one receipt, in the source's code page, masked.
fn decode_whole(raw: &[u8], rules: &ReceiptRules) -> Receipt {
    let mut decoder = Decoder::new(rules.encoding);
    let mut segmenter = Segmenter::new(SegmentRules {
        cut: false,
        end_pattern: None,
        end_extra_lines: 0,
        start_pattern: None,
        idle_timeout: None,
        max_bytes: usize::MAX,
    });
    let mut events = Vec::new();
    decoder.feed(raw, &mut events);
    decoder.finish(&mut events);
    segmenter.push_bytes(raw, None, true);
    let mut out = Vec::new();
    for e in events {
        segmenter.push_event(e, &mut out);
    }
    segmenter.close(decoder.position(), Boundary::EndOfInput, &mut out);
    let mut r = out.pop().unwrap_or_else(|| Receipt {
        raw: raw.to_vec(),
        stream_offset: 0,
        lines: Vec::new(),
        codes: Vec::new(),
        drawer_kicks: 0,
        ended_by: Boundary::EndOfInput,
        first_at: None,
        last_at: None,
        masked: 0,
        line_offsets: Vec::new(),
    });
    rules.masker.apply(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_file_without_cuts_is_still_cut_at_max_bytes() {
        // Fed as one slice (as `parse FILE` does), a 3 MiB stream with no
        // boundary used to become one 3 MiB receipt; max_bytes promises a cut.
        let line = b"6901234567892       2   3.50   7.00\n";
        let stream: Vec<u8> = line.iter().copied().cycle().take(3 << 20).collect();
        let rules = ReceiptRules::plain(CodePage::Gb18030);
        let max = rules.segment.max_bytes;
        let receipts = split_bytes(&stream, &rules);
        assert!(receipts.len() >= 3, "{} receipts", receipts.len());
        for r in &receipts[..receipts.len() - 1] {
            assert_eq!(r.ended_by, Boundary::MaxBytes);
            assert!(
                r.raw.len() > max && r.raw.len() <= max + PIECE,
                "{}",
                r.raw.len()
            );
        }
        let joined: Vec<u8> = receipts.iter().flat_map(|r| r.raw.clone()).collect();
        assert_eq!(joined, stream);
    }
}
