//! Command tables: which `ESC`/`GS`/`FS`/`DLE` commands exist, how long their
//! headers are, and what a finished header or payload does (events, skips,
//! collections); barcode symbologies and CODE128 text.
//!
//! Invariant: every command known here is consumed with its exact length
//! ([`header_len`] and the skips in `header_done`), so no argument or image
//! byte reaches the text; `header_len` is 0 exactly for unknown commands.

use super::*;

/// Which command a header is being collected for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmd {
    Esc(u8),
    Gs(u8),
    Fs(u8),
    Dle(u8),
    /// `ESC &`: one character's width byte, then its bitmap.
    UserCharWidth {
        y: u8,
        left: u16,
    },
    /// `FS q`: one NV image header `xL xH yL yH`, then its bitmap.
    NvImageHeader {
        left: u8,
    },
}

/// What collected payload bytes are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Payload {
    /// `GS k` with the barcode system `m`.
    Barcode(u8),
    /// `GS ( k` block (cn fn … data).
    TwoD,
    /// `ESC Z` data, printed at once as the `GS Z`-selected symbology.
    EscZ,
    /// `ESC D` tab stops (discarded).
    Tabs,
}

impl Decoder {
    /// An introducer followed by an unknown byte. A control byte means the
    /// introducer was stray: the control is processed as usual.
    pub(super) fn unknown(
        &mut self,
        intro: u8,
        b: u8,
        off: u64,
        out: &mut Vec<Event>,
        replay: &mut Replay,
    ) {
        if b < 0x20 {
            out.push(Event {
                end: off,
                kind: EventKind::Unknown(vec![intro]),
            });
            self.ground(b, off, out, replay);
        } else {
            out.push(Event {
                end: off + 1,
                kind: EventKind::Unknown(vec![intro, b]),
            });
            self.state = State::Resync(3);
        }
    }

    pub(super) fn esc(&mut self, b: u8, off: u64, out: &mut Vec<Event>, replay: &mut Replay) {
        let end = off + 1;
        match b {
            b'@' => {
                self.end_line(end, out, false);
                self.reset();
                out.push(Event {
                    end,
                    kind: EventKind::Init,
                });
            }
            b'i' | b'm' => {
                self.end_line(end, out, false);
                out.push(Event {
                    end,
                    kind: EventKind::Cut { partial: b == b'm' },
                });
            }
            b'v' => out.push(Event {
                end,
                kind: EventKind::StatusRequest {
                    command: [ESC, b'v', 0],
                },
            }),
            // No arguments: ESC FF, ESC 2, ESC <, ESC L, ESC S.
            0x0c | b'2' | b'<' | b'L' | b'S' => {}
            b'D' => {
                self.state = State::UntilNul {
                    what: Payload::Tabs,
                    left: 33,
                    data: Vec::new(),
                    start: end,
                }
            }
            _ if header_len(Cmd::Esc(b), &[]) > 0 => self.header(Cmd::Esc(b)),
            _ => self.unknown(ESC, b, off, out, replay),
        }
    }

    pub(super) fn gs(&mut self, b: u8, off: u64, out: &mut Vec<Event>, replay: &mut Replay) {
        match b {
            // No arguments: GS : (macro), GS c (print counter).
            b':' | b'c' => {}
            _ if header_len(Cmd::Gs(b), &[]) > 0 => self.header(Cmd::Gs(b)),
            _ => self.unknown(GS, b, off, out, replay),
        }
    }

    pub(super) fn fs(&mut self, b: u8, off: u64, out: &mut Vec<Event>, replay: &mut Replay) {
        match b {
            b'&' => self.multibyte = Some(self.config.multibyte().unwrap_or(Multibyte::Gb18030)),
            b'.' => self.multibyte = None,
            _ if header_len(Cmd::Fs(b), &[]) > 0 => self.header(Cmd::Fs(b)),
            _ => self.unknown(FS, b, off, out, replay),
        }
    }

    pub(super) fn reset(&mut self) {
        self.multibyte = self.config.multibyte();
        self.table = self.config.single().table();
        self.stored_2d.clear();
        self.esc_z_kind = 2;
    }

    pub(super) fn header_done(&mut self, cmd: Cmd, h: &[u8], end: u64, out: &mut Vec<Event>) {
        // A new command claims afresh; the next block of `ESC &` or `FS q` adds
        // to what its command claimed so far.
        if matches!(cmd, Cmd::Esc(_) | Cmd::Gs(_) | Cmd::Fs(_) | Cmd::Dle(_)) {
            self.claimed = 0;
        }
        let u16_at = |i: usize| h[i] as u64 | (h[i + 1] as u64) << 8;
        match cmd {
            Cmd::Esc(b'*') => {
                // m nL nH: 8-dot modes send 1 byte per column, 24-dot modes 3.
                let per_col = if matches!(h[0], 32 | 33) { 3 } else { 1 };
                self.skip(u16_at(1) * per_col, After::Ground);
            }
            Cmd::Esc(b'&') => {
                let (y, c1, c2) = (h[0], h[1], h[2]);
                let count = if c2 >= c1 { (c2 - c1) as u16 + 1 } else { 0 };
                self.after(After::UserChar { y, left: count });
            }
            Cmd::UserCharWidth { y, left } => {
                self.skip(
                    y as u64 * h[0] as u64,
                    After::UserChar { y, left: left - 1 },
                );
            }
            Cmd::Esc(b'(') | Cmd::Fs(b'(') => self.skip(u16_at(1), After::Ground),
            Cmd::Esc(b'J') | Cmd::Esc(b'd') | Cmd::Esc(b'e') => self.end_line(end, out, false),
            Cmd::Esc(b'p') => out.push(Event {
                end,
                kind: EventKind::DrawerKick { pin: h[0] & 1 },
            }),
            Cmd::Esc(b't') => match SingleByte::from_esc_t(h[0]) {
                Some(t) => {
                    self.table = t.table();
                    // The POS chose a single-byte table, whatever mode the
                    // printer was in: bytes 0x80–0xFF are that table's until
                    // `FS &` turns Chinese mode on again. `ESC t 0` restates
                    // the power-on table, which drivers send as boilerplate
                    // before Chinese text: it leaves the mode as it is.
                    if h[0] != 0 {
                        self.multibyte = None;
                    }
                }
                None => {
                    self.table = SingleByte::Cp437.table();
                    out.push(Event {
                        end,
                        kind: EventKind::Unknown(vec![ESC, b't', h[0]]),
                    });
                }
            },
            Cmd::Esc(b'u') => out.push(Event {
                end,
                kind: EventKind::StatusRequest {
                    command: [ESC, b'u', h[0]],
                },
            }),
            Cmd::Esc(b'Z') => {
                let n = u16_at(3) as usize;
                self.collect(Payload::EscZ, n, end);
            }
            Cmd::Gs(b'(') => {
                let n = u16_at(1);
                if h[0] == b'k' && n as usize <= MAX_PAYLOAD && n > 0 {
                    self.collect(Payload::TwoD, n as usize, end);
                } else {
                    self.skip(n, After::Ground);
                }
            }
            Cmd::Gs(b'8') => {
                let n =
                    h[1] as u64 | (h[2] as u64) << 8 | (h[3] as u64) << 16 | (h[4] as u64) << 24;
                self.skip(n, After::Ground);
            }
            Cmd::Gs(b'*') => self.skip(h[0] as u64 * h[1] as u64 * 8, After::Ground),
            Cmd::Gs(b'v') => self.skip(u16_at(2) * u16_at(4), After::Ground),
            Cmd::Gs(b'V') => {
                self.end_line(end, out, false);
                out.push(Event {
                    end,
                    kind: EventKind::Cut {
                        partial: matches!(h[0], 1 | 49 | 66 | 98 | 104),
                    },
                });
            }
            Cmd::Gs(b'k') => {
                let m = h[0];
                if m <= 6 {
                    self.state = State::UntilNul {
                        what: Payload::Barcode(m),
                        left: 256,
                        data: Vec::new(),
                        start: end,
                    };
                } else if h.len() > 1 {
                    self.collect(Payload::Barcode(m), h[1] as usize, end);
                }
                // m in 7..65 is no barcode system: nothing more to consume.
            }
            Cmd::Gs(b'Z') => self.esc_z_kind = h[0],
            Cmd::Gs(b'r') | Cmd::Gs(b'I') => out.push(Event {
                end,
                kind: EventKind::StatusRequest {
                    command: [GS, if cmd == Cmd::Gs(b'r') { b'r' } else { b'I' }, h[0]],
                },
            }),
            Cmd::Fs(b'2') => self.skip(72, After::Ground),
            Cmd::Fs(b'q') => self.after(After::NvImage { left: h[0] }),
            Cmd::NvImageHeader { left } => {
                let size = u16_at(0) * u16_at(2) * 8;
                self.skip(size, After::NvImage { left: left - 1 });
            }
            Cmd::Dle(0x04) | Cmd::Dle(0x05) => {
                let sub = if cmd == Cmd::Dle(0x04) { 0x04 } else { 0x05 };
                out.push(Event {
                    end,
                    kind: EventKind::StatusRequest {
                        command: [DLE, sub, h[0]],
                    },
                });
            }
            Cmd::Dle(0x14) if h[0] == 1 => out.push(Event {
                end,
                kind: EventKind::DrawerKick { pin: h[1] & 1 },
            }),
            // Everything else only formats, and its arguments are now consumed.
            _ => {}
        }
    }

    pub(super) fn collect(&mut self, what: Payload, n: usize, start: u64) {
        if n == 0 {
            self.state = State::Ground;
        } else if n > MAX_PAYLOAD || self.claimed.saturating_add(n as u64) > self.max_claim {
            // Skipped, or (past the claim bound) given up and counted by `skip`.
            self.skip(n as u64, After::Ground);
        } else {
            self.claimed += n as u64;
            self.state = State::Collect {
                what,
                left: n,
                data: Vec::with_capacity(n.min(256)),
                start,
            };
        }
    }

    pub(super) fn payload_done(
        &mut self,
        what: Payload,
        data: Vec<u8>,
        start: u64,
        end: u64,
        out: &mut Vec<Event>,
    ) {
        match what {
            Payload::Tabs => {}
            Payload::Barcode(m) => {
                let symbology = barcode_symbology(m);
                let payload = if matches!(m, 73 | 74) {
                    code128_text(&data)
                } else {
                    data.iter()
                        .map(|&b| b as char)
                        .filter(|c| !c.is_control())
                        .collect()
                };
                let code = Code {
                    kind: CodeKind::Barcode,
                    symbology,
                    payload,
                    data,
                    data_offset: start,
                };
                self.print_code(code, end, out);
            }
            Payload::EscZ => {
                let (kind, symbology) = match self.esc_z_kind {
                    0 | 48 => (CodeKind::Pdf417, "pdf417"),
                    1 | 49 => (CodeKind::DataMatrix, "datamatrix"),
                    _ => (CodeKind::Qr, "qr"),
                };
                let payload = self.payload_text(&data);
                let code = Code {
                    kind,
                    symbology,
                    payload,
                    data,
                    data_offset: start,
                };
                self.print_code(code, end, out);
            }
            Payload::TwoD => {
                if data.len() < 2 {
                    return;
                }
                let (cn, func) = (data[0], data[1]);
                match func {
                    // Store: cn fn m d1…dk.
                    80 if data.len() >= 3 => {
                        let stored = data[3..].to_vec();
                        self.stored_2d.retain(|s| s.0 != cn);
                        self.stored_2d.push((cn, stored, start + 3));
                    }
                    // Print what was stored.
                    81 => {
                        let Some((_, stored, at)) =
                            self.stored_2d.iter().find(|s| s.0 == cn).cloned()
                        else {
                            return;
                        };
                        let (kind, symbology) = match cn {
                            48 => (CodeKind::Pdf417, "pdf417"),
                            49 => (CodeKind::Qr, "qr"),
                            50 => (CodeKind::MaxiCode, "maxicode"),
                            53 => (CodeKind::Aztec, "aztec"),
                            54 => (CodeKind::DataMatrix, "datamatrix"),
                            _ => (CodeKind::Other2d, "2d"),
                        };
                        let payload = self.payload_text(&stored);
                        let code = Code {
                            kind,
                            symbology,
                            payload,
                            data: stored,
                            data_offset: at,
                        };
                        self.print_code(code, end, out);
                    }
                    _ => {}
                }
            }
        }
    }

    /// A printed code ends the line in the buffer (if it has text), then is an
    /// event of its own ending at `end`.
    fn print_code(&mut self, code: Code, end: u64, out: &mut Vec<Event>) {
        self.end_line(end, out, false);
        out.push(Event {
            end,
            kind: EventKind::Code(code),
        });
    }

    /// 2D payloads are usually UTF-8 (URLs, JSON); a Chinese POS may encode them
    /// in its own code page.
    pub(super) fn payload_text(&self, data: &[u8]) -> String {
        if let Ok(s) = std::str::from_utf8(data) {
            return s.to_string();
        }
        match self.config.multibyte() {
            Some(Multibyte::Gb18030) => encoding_rs::GB18030.decode_without_bom_handling(data).0,
            Some(Multibyte::Big5) => encoding_rs::BIG5.decode_without_bom_handling(data).0,
            _ => String::from_utf8_lossy(data),
        }
        .into_owned()
    }
}

/// Total header length of `cmd` given the header bytes read so far, or 0 when
/// the command is unknown. Several commands learn their length from their first
/// argument.
pub(super) fn header_len(cmd: Cmd, h: &[u8]) -> usize {
    let first = h.first().copied();
    match cmd {
        Cmd::Esc(b) => match b {
            b' ' | b'!' | b'%' | b'-' | b'3' | b'=' | b'?' | b'E' | b'G' | b'J' | b'M' | b'R'
            | b'T' | b'U' | b'V' | b'a' | b'd' | b'e' | b'r' | b't' | b'u' | b'{' | b'l' | b'Q' => {
                1
            }
            b'$' | b'\\' | b'c' | b'B' => 2,
            b'*' | b'&' | b'(' | b'p' => 3,
            b'Z' => 5,
            b'W' => 8,
            // ESC C n (page length in lines) or ESC C NUL n (in inches).
            b'C' => match first {
                Some(0) => 2,
                _ => 1,
            },
            _ => 0,
        },
        Cmd::Gs(b) => match b {
            b'!' | b'/' | b'B' | b'E' | b'H' | b'I' | b'T' | b'a' | b'b' | b'f' | b'h' | b'j'
            | b'r' | b'w' | b'Z' => 1,
            b'$' | b'L' | b'P' | b'W' | b'*' => 2,
            b'(' | b'^' => 3,
            b'g' => 4,
            b'8' => 5,
            b'v' => 6,
            b'V' => match first {
                Some(65 | 66 | 97 | 98 | 103 | 104) => 2,
                _ => 1,
            },
            b'k' => match first {
                Some(m) if m >= 65 => 2,
                _ => 1,
            },
            // Counter commands: GS C 0 n m, GS C 1 aL aH bL bH n r, GS C 2 nL nH.
            b'C' => match first {
                Some(0 | 48) | Some(2 | 50) => 3,
                Some(1 | 49) => 7,
                _ => 1,
            },
            _ => 0,
        },
        Cmd::Fs(b) => match b {
            b'!' | b'-' | b'C' | b'W' | b'q' => 1,
            b'S' | b'p' | b'2' => 2,
            b'(' => 3,
            _ => 0,
        },
        Cmd::Dle(b) => match b {
            // DLE EOT n, and n = 7 or 8 take one more byte.
            0x04 => match first {
                Some(7 | 8) => 2,
                _ => 1,
            },
            0x05 => 1,
            // DLE DC4 fn …: 1 pulse (m t), 2 power-off, 3 buzzer, 7 ASB, 8 clear buffer.
            0x14 => match first {
                Some(1..=3) => 3,
                Some(7) => 2,
                Some(8) => 8,
                _ => 1,
            },
            _ => 0,
        },
        Cmd::UserCharWidth { .. } => 1,
        Cmd::NvImageHeader { .. } => 4,
    }
}

pub(super) fn barcode_symbology(m: u8) -> &'static str {
    match m {
        0 | 65 => "upc-a",
        1 | 66 => "upc-e",
        2 | 67 => "ean13",
        3 | 68 => "ean8",
        4 | 69 => "code39",
        5 | 70 => "itf",
        6 | 71 => "codabar",
        72 => "code93",
        73 => "code128",
        74 => "gs1-128",
        75..=78 => "gs1-databar",
        79 => "code128-auto",
        _ => "barcode",
    }
}

/// What a scanner reads from an ESC/POS CODE128 payload: `{A`/`{B`/`{C` select
/// the code set (in set C each byte 0–99 is two digits), `{1`–`{4` and `{S` are
/// function/shift characters that carry no text, `{{` is a literal brace.
pub(super) fn code128_text(data: &[u8]) -> String {
    let mut out = String::new();
    let mut set = b'B';
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == b'{' && i + 1 < data.len() {
            match data[i + 1] {
                c @ (b'A' | b'B' | b'C') => set = c,
                b'{' => out.push('{'),
                _ => {}
            }
            i += 2;
            continue;
        }
        if set == b'C' {
            if b < 100 {
                out.push_str(&format!("{b:02}"));
            }
        } else if (0x20..0x7f).contains(&b) {
            out.push(b as char);
        }
        i += 1;
    }
    out
}
