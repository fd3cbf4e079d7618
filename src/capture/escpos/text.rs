//! The byte-at-a-time character path: single-byte tables, multibyte
//! characters read one byte per call (with replay of the bytes after a
//! malformed one), and ending lines.
//!
//! Invariant: a line never grows past [`MAX_LINE_CHARS`] characters, and every
//! character pushed carries the stream offset of its first byte.

use encoding_rs::Encoding;

use super::*;

impl Decoder {
    pub(super) fn start_char(&mut self, b: u8, off: u64, out: &mut Vec<Event>) {
        match self.multibyte {
            None => {
                let c = self.table[(b - 0x80) as usize];
                self.push_char(c, off, out);
            }
            Some(Multibyte::Utf8) => {
                let need = match b {
                    0xc2..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf4 => 4,
                    _ => 0,
                };
                if need == 0 {
                    self.push_char('\u{FFFD}', off, out);
                } else {
                    self.pending = Pending {
                        bytes: [b, 0, 0, 0],
                        len: 1,
                        need,
                        start: off,
                    };
                }
            }
            Some(Multibyte::Gb18030) | Some(Multibyte::Big5) => {
                if (0x81..=0xfe).contains(&b) {
                    self.pending = Pending {
                        bytes: [b, 0, 0, 0],
                        len: 1,
                        need: 2,
                        start: off,
                    };
                } else if b == 0x80 && self.multibyte == Some(Multibyte::Gb18030) {
                    // GB18030 (as encoding_rs and WHATWG decode it) maps 0x80 to €.
                    self.push_char('\u{20AC}', off, out);
                } else {
                    self.push_char('\u{FFFD}', off, out);
                }
            }
        }
    }

    pub(super) fn continue_char(
        &mut self,
        b: u8,
        off: u64,
        out: &mut Vec<Event>,
        replay: &mut Replay,
    ) {
        let p = self.pending;
        let start = p.start;
        match self.multibyte {
            Some(Multibyte::Utf8) => {
                if (0x80..=0xbf).contains(&b) {
                    self.append_pending(b);
                    if self.pending.len == self.pending.need {
                        let (buf, n) = self.take_pending();
                        match std::str::from_utf8(&buf[..n]) {
                            Ok(s) => {
                                for c in s.chars() {
                                    self.push_char(c, start, out);
                                }
                            }
                            Err(_) => self.push_char('\u{FFFD}', start, out),
                        }
                    }
                } else {
                    self.pending = Pending::default();
                    self.push_char('\u{FFFD}', start, out);
                    replay.push(b, off);
                }
            }
            Some(Multibyte::Gb18030) => match p.len {
                1 => {
                    if b.is_ascii_digit() {
                        self.append_pending(b);
                        self.pending.need = 4;
                    } else if matches!(b, 0x40..=0x7e | 0x80..=0xfe) {
                        self.append_pending(b);
                        self.complete_encoded(encoding_rs::GB18030, out);
                    } else {
                        self.pending = Pending::default();
                        self.push_char('\u{FFFD}', start, out);
                        if b < 0x80 {
                            replay.push(b, off);
                        }
                    }
                }
                2 => {
                    if (0x81..=0xfe).contains(&b) {
                        self.append_pending(b);
                    } else {
                        self.pending = Pending::default();
                        self.push_char('\u{FFFD}', start, out);
                        replay.push(p.bytes[1], start + 1);
                        replay.push(b, off);
                    }
                }
                _ => {
                    if b.is_ascii_digit() {
                        self.append_pending(b);
                        self.complete_encoded(encoding_rs::GB18030, out);
                    } else {
                        self.pending = Pending::default();
                        self.push_char('\u{FFFD}', start, out);
                        replay.push(p.bytes[1], start + 1);
                        replay.push(p.bytes[2], start + 2);
                        replay.push(b, off);
                    }
                }
            },
            Some(Multibyte::Big5) => {
                if matches!(b, 0x40..=0x7e | 0xa1..=0xfe) {
                    self.append_pending(b);
                    self.complete_encoded(encoding_rs::BIG5, out);
                } else {
                    self.pending = Pending::default();
                    self.push_char('\u{FFFD}', start, out);
                    if b < 0x80 {
                        replay.push(b, off);
                    }
                }
            }
            None => {
                // Unreachable in practice (single-byte mode never leaves a
                // character pending); treat the byte as a fresh one.
                self.pending = Pending::default();
                replay.push(b, off);
            }
        }
    }

    pub(super) fn append_pending(&mut self, b: u8) {
        let i = self.pending.len as usize;
        if i < 4 {
            self.pending.bytes[i] = b;
            self.pending.len += 1;
        }
    }

    /// The pending bytes (a copy, no allocation) and how many there are.
    pub(super) fn take_pending(&mut self) -> ([u8; 4], usize) {
        let p = std::mem::take(&mut self.pending);
        (p.bytes, (p.len as usize).min(4))
    }

    pub(super) fn complete_encoded(&mut self, enc: &'static Encoding, out: &mut Vec<Event>) {
        let start = self.pending.start;
        let (bytes, n) = self.take_pending();
        // At most two characters come out of one sequence (Big5); 16 bytes
        // of UTF-8 hold them without a heap allocation per character.
        let mut buf = [0u8; 16];
        let mut d = enc.new_decoder_without_bom_handling();
        let (result, read, written) =
            d.decode_to_utf8_without_replacement(&bytes[..n], &mut buf, true);
        let text = match result {
            encoding_rs::DecoderResult::InputEmpty if read == n => {
                std::str::from_utf8(&buf[..written]).ok()
            }
            _ => None,
        };
        match text {
            Some(s) => {
                for c in s.chars() {
                    self.push_char(c, start, out);
                }
            }
            None => self.push_char('\u{FFFD}', start, out),
        }
    }

    pub(super) fn push_char(&mut self, c: char, off: u64, out: &mut Vec<Event>) {
        self.text.push(c);
        self.runs.push(off);
        self.line_chars += 1;
        if self.line_chars >= MAX_LINE_CHARS {
            self.end_line(off + 1, out, false);
        }
    }

    /// Emits the current line. `always`: emit even when empty (a line feed).
    pub(super) fn end_line(&mut self, end: u64, out: &mut Vec<Event>, always: bool) {
        if always || !self.text.is_empty() {
            // The line is built in buffers that keep their capacity and leave
            // as exact-size copies: one allocation per line for the text, and
            // none for the offsets unless the line has more than INLINE runs.
            let line = Line {
                text: self.text.as_str().to_owned(),
                offsets: self.runs.take(),
            };
            self.text.clear();
            self.line_chars = 0;
            out.push(Event {
                end,
                kind: EventKind::Line(line),
            });
        }
    }
}
