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

    /// See [`Template::unchecked_totals`]: the note an order read with
    /// `check_totals = false` carries when its numbers do not add up.
    pub fn unchecked_totals(&self, o: &crate::order::Order) -> Option<String> {
        self.template.as_ref()?.unchecked_totals(o)
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

/// Offsets of given-up commands a [`Pipeline`] keeps while no receipt comes
/// out (junk without content); more are only counted.
const MAX_PENDING_MALFORMED: usize = 1024;

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
    /// Where the decoder gave up commands not yet counted in a receipt (stream
    /// offsets, ascending): each goes to the first receipt that ends at or
    /// after it, so the count does not depend on how the bytes were split.
    malformed: Vec<u64>,
    /// Given-up commands beyond [`MAX_PENDING_MALFORMED`] offsets, counted in
    /// the next receipt out.
    carried: u64,
    /// What the first command given up was, until [`Pipeline::malformed_note`]
    /// hands it over (once: a stream's log says it once).
    note: Option<String>,
    noted: bool,
}

impl Pipeline {
    pub fn new(rules: &ReceiptRules) -> Pipeline {
        Pipeline {
            decoder: Decoder::new(rules.encoding).with_max_claim(rules.segment.max_bytes as u64),
            segmenter: Segmenter::new(rules.segment.clone()),
            masker: rules.masker.clone(),
            events: Vec::new(),
            malformed: Vec::new(),
            carried: 0,
            note: None,
            noted: false,
        }
    }

    /// The first command this stream's decoder could not follow, once: for the
    /// caller to log with the source's name (the count goes with the receipts).
    pub fn malformed_note(&mut self) -> Option<String> {
        self.note.take()
    }

    /// Collects what the decoder gave up and counts each in the receipt (of
    /// `out[first..]`) it belongs to; the rest waits for the next receipts.
    fn count_malformed(&mut self, out: &mut [Receipt], first: usize) {
        let note = self.decoder.take_malformed(&mut self.malformed);
        if note.is_some() && !self.noted {
            self.note = note;
            self.noted = true;
        }
        for r in out.iter_mut().skip(first) {
            let end = r.stream_offset + r.raw.len() as u64;
            let k = self.malformed.partition_point(|&at| at <= end);
            r.malformed += k as u64 + std::mem::take(&mut self.carried);
            self.malformed.drain(..k);
        }
        if self.malformed.len() > MAX_PENDING_MALFORMED {
            let extra = self.malformed.len() - MAX_PENDING_MALFORMED;
            self.carried += extra as u64;
            self.malformed.drain(..extra);
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
        self.count_malformed(out, first);
        self.mask(&mut out[first..]);
    }

    /// Ends the receipt in progress if the idle timeout passed by `now`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Receipt>) {
        if self.segmenter.idle_due(now) {
            let first = out.len();
            self.close(Boundary::Idle, out);
            self.count_malformed(out, first);
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
        self.count_malformed(out, first);
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
        // Whatever command was half read ends with the receipt (issue #24): its
        // claimed bytes never swallow the next one.
        self.decoder.end_receipt();
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
    let mut decoder = Decoder::new(rules.encoding).with_max_claim(rules.segment.max_bytes as u64);
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
        malformed: 0,
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

    /// Rules with a small `max_bytes`, so that every length-prefixed command
    /// can claim more than a receipt can be.
    fn small_rules() -> ReceiptRules {
        let segment = RawSegment {
            max_bytes: Some(4096),
            idle_timeout_ms: Some(500),
            ..RawSegment::default()
        };
        ReceiptRules::from_raw(Some("gb18030"), Some(segment), None).unwrap()
    }

    const NEXT: &[u8] = b"ORDER 42\nTOTAL 9.50\n\x1dV\x00";

    /// Every command that says how many bytes follow, each claiming the most
    /// its fields can say (issue #24: `GS 8 L` claiming 2 GiB silenced a stream
    /// for good): the command is given up at once, counted, and the receipt
    /// right after it is read whole.
    #[test]
    fn every_length_prefixed_command_claiming_absurd_lengths_leaves_the_next_receipt_whole() {
        let cases: &[(&str, &[u8])] = &[
            ("GS 8 L, 2 GiB", b"\x1d8L\x00\x00\x00\x80"),
            ("GS 8 L, 4 GiB", b"\x1d8L\xff\xff\xff\xff"),
            ("GS v 0", b"\x1dv0\x00\xff\xff\xff\xff"),
            ("GS ( L", b"\x1d(L\xff\xff"),
            ("GS ( k, past the payload bound", b"\x1d(k\xff\xff"),
            ("GS ( k, past the claim bound", b"\x1d(k\x10\x27"),
            ("GS ( E", b"\x1d(E\xff\xff"),
            ("GS *", b"\x1d*\xff\xff"),
            ("ESC *, 24-dot", b"\x1b*\x21\xff\xff"),
            ("ESC *, 8-dot", b"\x1b*\x00\xff\xff"),
            ("ESC &", b"\x1b&\xff\x20\x7e\xff"),
            ("ESC ( A", b"\x1b(A\xff\xff"),
            ("ESC Z", b"\x1bZ\x00\x00\x00\xff\xff"),
            ("FS (", b"\x1c(A\xff\xff"),
            ("FS q", b"\x1cq\x01\xff\xff\xff\xff"),
        ];
        let rules = small_rules();
        for (what, header) in cases {
            let mut stream = b"\x1b@".to_vec();
            stream.extend_from_slice(header);
            stream.extend_from_slice(NEXT);
            // fed whole, and byte by byte: the same
            for split in [stream.len(), 1] {
                let mut p = Pipeline::new(&rules);
                let mut out = Vec::new();
                for piece in stream.chunks(split) {
                    p.feed(piece, Some(Instant::now()), &mut out);
                }
                assert_eq!(out.len(), 1, "{what}: {out:?}");
                assert_eq!(out[0].lines, ["ORDER 42", "TOTAL 9.50"], "{what}");
                assert_eq!(out[0].ended_by, Boundary::Cut, "{what}");
                assert_eq!(out[0].malformed, 1, "{what}");
                let note = p.malformed_note().unwrap_or_default();
                assert!(
                    note.contains("more than a receipt can be"),
                    "{what}: {note}"
                );
                assert_eq!(p.malformed_note(), None, "{what}: said once");
            }
        }
    }

    /// A claim within the bound that never completes (the image's bytes never
    /// came) ends with its receipt at the idle timeout; the next receipt is
    /// decoded from its first byte.
    #[test]
    fn a_command_cut_short_by_the_idle_timeout_is_given_up_and_the_next_receipt_read() {
        let rules = small_rules();
        let mut p = Pipeline::new(&rules);
        let mut out = Vec::new();
        let t0 = Instant::now();
        // GS v 0 claiming 40 x 50 = 2000 bytes, of which 3 come
        p.feed(b"SALE 1\n\x1dv0\x00\x28\x00\x32\x00abc", Some(t0), &mut out);
        assert!(out.is_empty());
        p.tick(t0 + std::time::Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].lines, ["SALE 1"]);
        assert_eq!(out[0].ended_by, Boundary::Idle);
        assert_eq!(out[0].malformed, 1);
        p.feed(NEXT, Some(t0 + std::time::Duration::from_secs(2)), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1].lines, ["ORDER 42", "TOTAL 9.50"]);
        assert_eq!(out[1].malformed, 0);
    }

    /// A logo within the bound is still skipped by its exact length.
    #[test]
    fn an_image_within_the_bound_is_skipped_whole() {
        let rules = small_rules();
        let mut stream = b"\x1dv0\x00\x02\x00\x03\x00".to_vec();
        stream.extend_from_slice(&[0x0a; 6]); // image bytes that look like line feeds
        stream.extend_from_slice(NEXT);
        let out = split_bytes(&stream, &rules);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].lines, ["ORDER 42", "TOTAL 9.50"]);
        assert_eq!(out[0].malformed, 0);
    }
}
