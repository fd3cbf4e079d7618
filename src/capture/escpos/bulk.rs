//! The bulk runs of [`Decoder::feed`]: whole text characters, skipped bytes and
//! collected payload bytes taken many at a time.
//!
//! Invariant: a run only covers bytes whose byte-at-a-time result it
//! reproduces exactly (the split-invariance and bulk-equivalence property
//! tests check this); anything else returns 0 and goes through `Decoder::step`.

use encoding_rs::Encoding;

use super::*;

impl Decoder {
    /// In `Ground` with no character pending: takes the longest prefix of
    /// `bytes` made of whole text characters (printable ASCII, `HT`, and in
    /// the current mode complete multibyte characters or upper-half table
    /// bytes), appends it and its characters' offsets to the line, and
    /// returns its length (0: the first byte is not plain text).
    ///
    /// The run stops before anything the byte-at-a-time path treats specially
    /// (controls, `CR`, malformed or incomplete characters) and at the line
    /// length limit, so the result is exactly that of [`Decoder::step`] over
    /// the same bytes. Should a structurally whole character not decode (an
    /// unmapped sequence), the run is handed to the byte-at-a-time path.
    pub(super) fn text_run(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> usize {
        // The line is forced out on reaching the limit, so room > 0.
        let room = MAX_LINE_CHARS - self.line_chars;
        let base = self.pos;
        let Some(mb) = self.multibyte else {
            // A single-byte table: every byte but the controls is a character.
            let n = bytes
                .iter()
                .take(room)
                .position(|&b| !(is_text_ascii(b) || b >= 0x80))
                .unwrap_or(bytes.len().min(room));
            if n == 0 {
                return 0;
            }
            self.text.reserve(n);
            for &b in &bytes[..n] {
                let c = if b < 0x80 {
                    b as char
                } else {
                    self.table[(b - 0x80) as usize]
                };
                self.text.push(c);
            }
            self.runs.push_many(base, n, 1);
            self.took_text(n, n, out);
            return n;
        };
        if mb == Multibyte::Gb18030 {
            return self.gb18030_run(bytes, room, out);
        }
        let text_before = self.text.len();
        let runs_before = self.runs.mark();
        let mut i = 0;
        let mut units = 0;
        let mut ascii = true;
        while i < bytes.len() && units < room {
            let b = bytes[i];
            let n = if is_text_ascii(b) {
                1
            } else {
                ascii = false;
                multibyte_len(mb, &bytes[i..])
            };
            if n == 0 {
                break;
            }
            self.runs.push(base + i as u64);
            i += n;
            units += 1;
        }
        if i == 0 {
            return 0;
        }
        let run = &bytes[..i];
        if ascii {
            // ASCII is itself in every multibyte encoding here.
            if let Ok(s) = std::str::from_utf8(run) {
                self.text.push_str(s);
                self.took_text(i, units, out);
                return i;
            }
        }
        let decoded = match mb {
            Multibyte::Utf8 => match std::str::from_utf8(run) {
                Ok(s) => {
                    self.text.push_str(s);
                    true
                }
                Err(_) => false,
            },
            Multibyte::Big5 => decode_into(encoding_rs::BIG5, run, &mut self.text),
            Multibyte::Gb18030 => false,
        };
        // One character per unit, as the byte-at-a-time path gives; a Big5
        // sequence that decodes to two characters takes the slow path too.
        if decoded && self.text[text_before..].chars().count() == units {
            self.took_text(i, units, out);
        } else {
            self.text.truncate(text_before);
            self.runs.restore(runs_before);
            for &b in run {
                self.step_one(b, out);
            }
        }
        i
    }

    /// [`Decoder::text_run`] for GB18030, in one pass: stretches of ASCII are
    /// copied as they are, two-byte characters looked up in
    /// [`gb18030_pairs`]. Stops before anything else (four-byte characters,
    /// unmapped or malformed sequences, a lead byte at the end of `bytes`),
    /// which the byte-at-a-time path then decodes.
    pub(super) fn gb18030_run(&mut self, bytes: &[u8], room: usize, out: &mut Vec<Event>) -> usize {
        let pairs = gb18030_pairs();
        let base = self.pos;
        let (text, runs) = (&mut self.text, &mut self.runs);
        let mut i = 0;
        let mut units = 0;
        while i < bytes.len() && units < room {
            let b = bytes[i];
            if is_text_ascii(b) {
                let limit = (bytes.len() - i).min(room - units);
                let n = bytes[i..i + limit]
                    .iter()
                    .position(|&b| !is_text_ascii(b))
                    .unwrap_or(limit);
                let Ok(ascii) = std::str::from_utf8(&bytes[i..i + n]) else {
                    break;
                };
                text.push_str(ascii);
                runs.push_many(base + i as u64, n, 1);
                i += n;
                units += n;
                continue;
            }
            // A stretch of two-byte characters: one run of step 2.
            let start = i;
            while i + 1 < bytes.len() && units < room {
                let (lead, trail) = (bytes[i], bytes[i + 1]);
                if !matches!((lead, trail), (0x81..=0xfe, 0x40..=0x7e | 0x80..=0xfe)) {
                    break;
                }
                let v = pairs[(lead - 0x81) as usize * 191 + (trail - 0x40) as usize];
                let Some(c) = char::from_u32(v as u32).filter(|_| v != 0) else {
                    break;
                };
                text.push(c);
                i += 2;
                units += 1;
            }
            if i > start {
                runs.push_many(base + start as u64, (i - start) / 2, 2);
            } else if b == 0x80 {
                // GB18030's one-byte euro sign.
                text.push('\u{20AC}');
                runs.push(base + i as u64);
                i += 1;
                units += 1;
            } else {
                break;
            }
        }
        if i > 0 {
            self.took_text(i, units, out);
        }
        i
    }

    /// In `Ground` with no character pending, at `ESC`/`GS`/`FS`: a whole
    /// fixed-header command (`ESC a n`, `GS ! n`, `GS V m`, an image or
    /// barcode header…) in `bytes` is read at once and handed to
    /// [`Decoder::header_done`], as the byte-at-a-time path does after the
    /// `Esc`/`Gs`/`Fs` and `Header` states. Returns its length, or 0 for
    /// commands that path treats otherwise (no arguments, unknown, `ESC @`…:
    /// the explicit arms of `esc`/`gs`/`fs`, none of which has a header
    /// length) and for a header cut off by the end of `bytes`.
    pub(super) fn command_run(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> usize {
        let cmd = match bytes {
            [ESC, b, ..] => Cmd::Esc(*b),
            [GS, b, ..] => Cmd::Gs(*b),
            [FS, b, ..] => Cmd::Fs(*b),
            _ => return 0,
        };
        if header_len(cmd, &[]) == 0 {
            return 0;
        }
        let args = &bytes[2..];
        let mut len = 0;
        loop {
            if len == args.len() {
                return 0;
            }
            len += 1;
            if len >= header_len(cmd, &args[..len]) {
                break;
            }
        }
        let n = 2 + len;
        self.pos += n as u64;
        self.activity += n as u64;
        self.header_done(cmd, &args[..len], self.pos, out);
        n
    }

    /// Accounts for `bytes` text bytes making `chars` characters just appended
    /// to the line, ending the line at the length limit as `push_char` does.
    pub(super) fn took_text(&mut self, bytes: usize, chars: usize, out: &mut Vec<Event>) {
        self.pos += bytes as u64;
        self.activity += bytes as u64;
        self.line_chars += chars;
        if self.line_chars >= MAX_LINE_CHARS {
            let last = self.runs.last().unwrap_or(self.pos);
            self.end_line(last + 1, out, false);
        }
    }

    /// In `Skip`: drops as many of the skipped bytes as `bytes` holds.
    pub(super) fn skip_run(&mut self, bytes: &[u8]) -> usize {
        let State::Skip { left, then } = self.state else {
            return 0;
        };
        let n = left.min(bytes.len() as u64);
        self.pos += n;
        self.activity += n;
        if n == left {
            self.after(then);
        } else {
            self.state = State::Skip {
                left: left - n,
                then,
            };
        }
        n as usize
    }

    /// In `Collect`: takes as many of the payload bytes as `bytes` holds.
    pub(super) fn collect_run(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> usize {
        let State::Collect {
            what,
            left,
            mut data,
            start,
        } = std::mem::replace(&mut self.state, State::Ground)
        else {
            return 0;
        };
        let n = left.min(bytes.len());
        data.extend_from_slice(&bytes[..n]);
        self.pos += n as u64;
        self.activity += n as u64;
        if n == left {
            let end = self.pos;
            self.payload_done(what, data, start, end, out);
        } else {
            self.state = State::Collect {
                what,
                left: left - n,
                data,
                start,
            };
        }
        n
    }
}

/// Printable ASCII and `HT`: the bytes that are text in every mode.
fn is_text_ascii(b: u8) -> bool {
    (0x20..=0x7e).contains(&b) || b == b'\t'
}

/// Length of the whole multibyte character (or GB18030's single-byte `€`) at
/// the start of `bytes`, by structure only; 0 when it is malformed or
/// incomplete — those are left to the byte-at-a-time path.
fn multibyte_len(mb: Multibyte, bytes: &[u8]) -> usize {
    let at = |i: usize| bytes.get(i).copied();
    let cont = |i: usize| matches!(at(i), Some(0x80..=0xbf));
    match mb {
        Multibyte::Utf8 => match bytes[0] {
            0xc2..=0xdf if cont(1) => 2,
            0xe0..=0xef if cont(1) && cont(2) => 3,
            0xf0..=0xf4 if cont(1) && cont(2) && cont(3) => 4,
            _ => 0,
        },
        // GB18030 has its own run (Decoder::gb18030_run).
        Multibyte::Gb18030 => 0,
        Multibyte::Big5 => match (bytes[0], at(1)) {
            (0x81..=0xfe, Some(0x40..=0x7e | 0xa1..=0xfe)) => 2,
            _ => 0,
        },
    }
}

/// The GB18030 two-byte characters — lead 0x81–0xFE, trail 0x40–0xFE
/// (0x7F is never a trail) at `(lead − 0x81) × 191 + trail − 0x40` — as
/// encoding_rs decodes them, 0 where it maps none. Built once on first use
/// (48 KB): looking a character up is a few instructions, a call into
/// encoding_rs several hundred, which for receipt lines of a few dozen bytes
/// was most of the decoding time.
fn gb18030_pairs() -> &'static [u16] {
    static PAIRS: std::sync::OnceLock<Box<[u16]>> = std::sync::OnceLock::new();
    PAIRS.get_or_init(|| {
        let mut t = vec![0u16; 126 * 191].into_boxed_slice();
        let mut buf = [0u8; 8];
        for lead in 0x81..=0xfeu8 {
            for trail in (0x40..=0x7eu8).chain(0x80..=0xfe) {
                let mut d = encoding_rs::GB18030.new_decoder_without_bom_handling();
                let (result, _, written) =
                    d.decode_to_utf8_without_replacement(&[lead, trail], &mut buf, true);
                if result != encoding_rs::DecoderResult::InputEmpty {
                    continue;
                }
                let mut chars = std::str::from_utf8(&buf[..written]).unwrap_or("").chars();
                if let (Some(c), None) = (chars.next(), chars.next()) {
                    if let Ok(v) = u16::try_from(c as u32) {
                        t[(lead - 0x81) as usize * 191 + (trail - 0x40) as usize] = v;
                    }
                }
            }
        }
        t
    })
}

/// Decodes whole characters `run` onto `text`; false (with `text` possibly
/// extended, for the caller to truncate) when a sequence is unmapped.
fn decode_into(enc: &'static Encoding, run: &[u8], text: &mut String) -> bool {
    let mut d = enc.new_decoder_without_bom_handling();
    let Some(need) = d.max_utf8_buffer_length_without_replacement(run.len()) else {
        return false;
    };
    text.reserve(need);
    let (result, read) = d.decode_to_string_without_replacement(run, text, true);
    result == encoding_rs::DecoderResult::InputEmpty && read == run.len()
}
