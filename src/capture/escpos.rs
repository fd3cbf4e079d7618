//! Streaming ESC/POS decoder: turns the byte stream a POS sends to its receipt
//! printer into what the printer would put on paper — text lines in the printer's
//! code page, cuts, barcode and 2D-code payloads, drawer kicks, status requests —
//! and skips everything else (images, formatting) by its exact length.
//!
//! # Use
//!
//! ```
//! use tillrelay::capture::escpos::{CodePage, Decoder, EventKind};
//! let mut d = Decoder::new(CodePage::Gb18030);
//! let mut events = Vec::new();
//! d.feed(b"\x1b@\x1ba\x01TOTAL 9.50\n\x1dV\x41\x03", &mut events);
//! d.finish(&mut events);
//! assert!(matches!(&events[1].kind, EventKind::Line(l) if l.text == "TOTAL 9.50"));
//! assert!(matches!(events[2].kind, EventKind::Cut { partial: false }));
//! ```
//!
//! # Invariants
//!
//! - **Split invariance.** The decoder is a byte-at-a-time state machine; all
//!   state (a half-read command, a half-read multibyte character, the selected
//!   code page, stored 2D-code data) lives in [`Decoder`], so feeding the same
//!   stream in any split yields the same events. A property test checks this.
//! - **Bulk runs are only a shortcut.** For speed, [`Decoder::feed`] takes runs
//!   of whole text characters (decoded by encoding_rs in one call), skipped
//!   image bytes and payload bytes in bulk; each run gives exactly what the
//!   state machine gives byte by byte, which a property test checks against
//!   the byte-at-a-time path.
//! - **No argument leaks.** Every command this module knows is consumed with its
//!   exact length, including variable-length ones (bit images, raster images,
//!   `GS ( …`/`ESC ( …`/`FS ( …` blocks, `GS 8 L`, user-defined characters), so
//!   image bytes and arguments never reach the text. An unknown `ESC x`/`GS x`/
//!   `FS x` is reported as [`EventKind::Unknown`] and resynchronised: its
//!   command byte and up to three following control bytes (< 0x20, other than
//!   the introducers `ESC GS FS DLE` and `LF`/`CR`) are dropped. A printable
//!   argument of an unknown command would show as text; that is the price of not
//!   dropping real text after an unknown zero-argument command.
//! - **Offsets.** Every event carries `end`, the stream offset just past its last
//!   byte (offsets count from the first byte ever fed, 0-based), and every
//!   character of a line carries the offset of its first byte. That is what lets
//!   the segmenter cut the raw stream per receipt and the masker blank a card
//!   number in the raw bytes themselves. The per-character offsets are kept as
//!   runs ([`Offsets`]): one per stretch of equal-width characters, which a
//!   bulk run appends in one step.
//! - **Never panics, bounded memory** on arbitrary input: a line is forced out
//!   after [`MAX_LINE_CHARS`] characters, a code payload longer than
//!   [`MAX_PAYLOAD`] bytes is skipped, not collected.
//! - **A claimed length is bounded by what a receipt can be.** Every command
//!   that announces how many bytes follow (images `ESC *`, `GS v 0`, `GS 8 L`,
//!   `GS *`, `FS q`, user characters `ESC &`, `GS ( …`/`ESC ( …`/`FS ( …`
//!   blocks, `ESC Z`, `GS k`) is followed only while the bytes it claims, all
//!   its blocks together, fit in [`Decoder::with_max_claim`] (a source's
//!   `segment.max_bytes`: a receipt is never longer). A command claiming more
//!   cannot be followed: it is dropped at once and counted
//!   ([`Decoder::take_malformed`]), and decoding goes on with the next byte, so
//!   a 9-byte header claiming 2 GiB no longer swallows every later receipt
//!   (issue #24). [`Decoder::end_receipt`] likewise ends a command left half
//!   read when a receipt ends (idle timeout, end of stream).
//!
//! # Text model
//!
//! A printer has a single-byte table selected by `ESC t` (CP437 after `ESC @`
//! unless configured otherwise) and, on Chinese models, a double-byte "Chinese
//! mode" (`FS &` on, `FS .` off) that is **on by default** — which is why a
//! Chinese POS usually never sends `ESC t`. The configured [`CodePage`] says
//! which mode the printer starts in: a multibyte one (GB18030, UTF-8, Big5)
//! starts in multibyte mode, a single-byte one starts with that table.
//!
//! - `ESC t n` selects the single-byte table for bytes 0x80–0xFF **whatever
//!   mode the printer was in**: it leaves multibyte mode, so a receipt that
//!   sends `ESC t 19` decodes as CP858 under the default GB18030 too. The one
//!   exception is `ESC t 0` (CP437, the power-on table), which drivers send as
//!   boilerplate before Chinese text: it selects the table but leaves the mode
//!   as it is. An unknown `n` selects CP437 and leaves the mode.
//! - `FS &` turns multibyte mode on: the configured multibyte encoding, or
//!   GB18030 when the configuration is single-byte.
//! - `FS .` turns it off: bytes 0x80–0xFF are the `ESC t` table's.
//! - `ESC @` restores the configured start (mode and table).
//!
//! GB18030 is decoded as a superset of GBK and GB2312. Mode changes happen
//! only on commands, so the bulk text path reads the mode once per run.
//!
//! `CR` is ignored (POS software sends `CR LF`), `HT` becomes `\t`, other C0
//! controls are dropped. `LF` ends a line (an empty line too); commands that
//! print the buffer (`ESC d`, `ESC J`, `ESC e`, `FF`, cuts, barcodes, `ESC @`)
//! end a line only when it has text.

mod bulk;
mod charset;
mod codepages;
mod commands;
mod offsets;
mod text;

use charset::Multibyte;
pub use charset::{CodePage, SingleByte};
use commands::{Cmd, Payload, header_len};
use offsets::Runs;
pub use offsets::{Offsets, Run};

/// A line longer than this many characters is emitted as a line of its own;
/// real receipts are 32–64 columns, so only garbage ever reaches it.
pub const MAX_LINE_CHARS: usize = 4096;

/// The most bytes a command may claim by default (a receipt's default
/// `segment.max_bytes`).
pub const DEFAULT_MAX_CLAIM: u64 = 1 << 20;

/// Largest barcode / 2D-code payload that is collected (a QR code holds at most
/// 7089 digits); longer data is skipped without an event.
pub const MAX_PAYLOAD: usize = 16 * 1024;

const ESC: u8 = 0x1b;
const GS: u8 = 0x1d;
const FS: u8 = 0x1c;
const DLE: u8 = 0x10;
const LF: u8 = 0x0a;
const CR: u8 = 0x0d;

/// One decoded event and where in the stream it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Stream offset just past the event's last byte.
    pub end: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A printed line (without its line ending).
    Line(Line),
    /// `GS V` (all forms), `ESC i` (full) or `ESC m` (partial).
    Cut { partial: bool },
    /// A barcode (`GS k`) or a printed 2D code (`GS ( k` print, `ESC Z`).
    Code(Code),
    /// Cash drawer pulse: `ESC p m t1 t2` or `DLE DC4 1 m t`; `pin` is 0 or 1.
    DrawerKick { pin: u8 },
    /// The POS asked the printer for status (`DLE EOT`, `DLE ENQ`, `GS r`,
    /// `GS I`, `ESC u`, `ESC v`); the printer's answer travels the other way.
    StatusRequest { command: [u8; 3] },
    /// `ESC @`: the printer was reset to its configured state.
    Init,
    /// A command this decoder does not know (introducer and command byte), or an
    /// `ESC t` table it cannot decode (all three bytes; CP437 is used instead).
    Unknown(Vec<u8>),
}

/// A line of text and, per character, the stream offset of its first byte.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Line {
    pub text: String,
    /// `offsets.len() == text.chars().count()`.
    pub offsets: Offsets,
}

/// A barcode or 2D-code payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    pub kind: CodeKind,
    /// e.g. `"code128"`, `"ean13"`, `"qr"`, `"pdf417"`.
    pub symbology: &'static str,
    /// The payload as text: what a scanner would read (for CODE128 the code-set
    /// selectors `{A {B {C` are interpreted, not shown).
    pub payload: String,
    /// The payload bytes as sent.
    pub data: Vec<u8>,
    /// Stream offset of `data[0]`.
    pub data_offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    Barcode,
    Qr,
    Pdf417,
    DataMatrix,
    Aztec,
    MaxiCode,
    Other2d,
}

impl CodeKind {
    pub fn name(self) -> &'static str {
        match self {
            CodeKind::Barcode => "barcode",
            CodeKind::Qr => "qr",
            CodeKind::Pdf417 => "pdf417",
            CodeKind::DataMatrix => "datamatrix",
            CodeKind::Aztec => "aztec",
            CodeKind::MaxiCode => "maxicode",
            CodeKind::Other2d => "2d",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Ground,
    Esc,
    Gs,
    Fs,
    Dle,
    Header {
        cmd: Cmd,
        buf: [u8; 8],
        len: u8,
    },
    /// Skip this many data bytes, then continue with `then`.
    Skip {
        left: u64,
        then: After,
    },
    /// Collect exactly `left` more bytes.
    Collect {
        what: Payload,
        left: usize,
        data: Vec<u8>,
        start: u64,
    },
    /// Collect until NUL (not included), at most `left` more bytes.
    UntilNul {
        what: Payload,
        left: usize,
        data: Vec<u8>,
        start: u64,
    },
    /// After an unknown command: drop up to this many control bytes.
    Resync(u8),
}

/// Where a [`State::Skip`] continues: most commands return to text, the two
/// repeated-block commands continue with their next block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Ground,
    UserChar { y: u8, left: u16 },
    NvImage { left: u8 },
}

/// A multibyte character being read.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    bytes: [u8; 4],
    len: u8,
    /// Total length expected (UTF-8 knows it from the lead byte; GB18030 learns
    /// it from the second byte).
    need: u8,
    start: u64,
}

/// Bytes to process again after a malformed multibyte character (as the WHATWG
/// decoders do): at most three, each with its stream offset.
#[derive(Default)]
struct Replay {
    items: [(u8, u64); 4],
    len: usize,
}

impl Replay {
    fn push(&mut self, b: u8, off: u64) {
        if self.len < self.items.len() {
            self.items[self.len] = (b, off);
            self.len += 1;
        }
    }
}

/// The streaming decoder. See the module documentation.
pub struct Decoder {
    config: CodePage,
    multibyte: Option<Multibyte>,
    table: [char; 128],
    pos: u64,
    state: State,
    /// The line being decoded: its text and its characters' offsets. Both
    /// buffers keep their capacity from line to line.
    text: String,
    runs: Runs,
    line_chars: usize,
    pending: Pending,
    /// `GS ( k` store-function data per symbology (`cn`), printed by function 81.
    stored_2d: Vec<(u8, Vec<u8>, u64)>,
    /// `GS Z n`: which symbology `ESC Z` prints.
    esc_z_kind: u8,
    /// Bytes that were not real-time status traffic (see [`Decoder::activity`]).
    activity: u64,
    /// The most bytes one command may claim, all its blocks together.
    max_claim: u64,
    /// What the command being read has claimed so far (all its blocks).
    claimed: u64,
    /// Where commands not followed since the last [`Decoder::take_malformed`]
    /// were given up (stream offsets), and what the last one was.
    malformed: Vec<u64>,
    malformed_note: Option<String>,
}

impl Decoder {
    pub fn new(config: CodePage) -> Decoder {
        Decoder {
            config,
            multibyte: config.multibyte(),
            table: config.single().table(),
            pos: 0,
            state: State::Ground,
            text: String::new(),
            runs: Runs::default(),
            line_chars: 0,
            pending: Pending::default(),
            stored_2d: Vec::new(),
            esc_z_kind: 2,
            activity: 0,
            max_claim: DEFAULT_MAX_CLAIM,
            claimed: 0,
            malformed: Vec::new(),
            malformed_note: None,
        }
    }

    /// The decoder with `n` as the most bytes one command may claim (a
    /// source's `segment.max_bytes`; at least 1).
    pub fn with_max_claim(mut self, n: u64) -> Decoder {
        self.max_claim = n.max(1);
        self
    }

    /// Moves into `into` the stream offsets where commands were given up since
    /// the last call (a claimed length past the bound, or cut short by
    /// [`Decoder::end_receipt`]), each once; returns a description of the last.
    pub fn take_malformed(&mut self, into: &mut Vec<u64>) -> Option<String> {
        into.append(&mut self.malformed);
        self.malformed_note.take()
    }

    /// A receipt ended (idle timeout, end of stream, `max_bytes`): a command
    /// still being read is given up, so that nothing it claimed can swallow
    /// the next receipt. The code page and mode stay (a printer keeps them
    /// between receipts too). Returns whether a command was given up.
    pub fn end_receipt(&mut self) -> bool {
        match std::mem::replace(&mut self.state, State::Ground) {
            State::Ground | State::Resync(_) => false,
            State::Skip { left, .. } => {
                self.malformed_at(format!("{left} claimed byte(s) never came"));
                true
            }
            _ => {
                self.malformed_at("a command cut short".into());
                true
            }
        }
    }

    fn malformed_at(&mut self, why: String) {
        self.malformed.push(self.pos);
        self.malformed_note = Some(format!(
            "{why} at stream offset {}; skipped, decoding goes on",
            self.pos
        ));
    }

    /// The configured code page.
    pub fn code_page(&self) -> CodePage {
        self.config
    }

    /// Stream offset of the next byte to be fed (= bytes fed so far).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Count of bytes fed that were not part of a `DLE` real-time command. A POS
    /// driver that polls `DLE EOT` every second is not printing: the segmenter's
    /// idle timer only restarts when this count moves.
    pub fn activity(&self) -> u64 {
        self.activity
    }

    /// Whether a line has text not yet ended by a line feed.
    pub fn has_pending_text(&self) -> bool {
        !self.text.is_empty() || self.pending.len > 0
    }

    /// Decodes `bytes`, appending events to `out`.
    ///
    /// Runs of text, image data and fixed-length payloads are taken in bulk
    /// ([`Decoder::text_run`], [`Decoder::skip_run`], [`Decoder::collect_run`]);
    /// everything else goes byte by byte through [`Decoder::step`]. A bulk run
    /// only ever covers bytes whose byte-at-a-time result it reproduces exactly
    /// (whole characters, in states where no byte in it can change the state),
    /// so the split-invariance property holds whatever the chunking.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let taken = match self.state {
                State::Ground if self.pending.len == 0 => match rest[0] {
                    LF => {
                        self.pos += 1;
                        self.activity += 1;
                        self.end_line(self.pos, out, true);
                        1
                    }
                    ESC | GS | FS => self.command_run(rest, out),
                    _ => self.text_run(rest, out),
                },
                State::Skip { .. } => self.skip_run(rest),
                State::Collect { .. } => self.collect_run(rest, out),
                _ => 0,
            };
            if taken > 0 {
                i += taken;
            } else {
                self.step_one(bytes[i], out);
                i += 1;
            }
        }
    }

    /// The byte-at-a-time path: one byte, then whatever it asks to replay.
    fn step_one(&mut self, b: u8, out: &mut Vec<Event>) {
        let off = self.pos;
        self.pos += 1;
        let mut replay = Replay::default();
        self.step(b, off, out, &mut replay);
        // Replayed bytes can themselves fail as a new character and replay
        // again; each round replays strictly fewer bytes, so this ends.
        while replay.len > 0 {
            let round = std::mem::take(&mut replay);
            for &(rb, roff) in &round.items[..round.len] {
                self.step(rb, roff, out, &mut replay);
            }
        }
    }

    /// Emits the text of an unfinished line, if any (an unfinished multibyte
    /// character becomes U+FFFD). Used when a receipt ends by idle timeout.
    /// Command state is kept here; a receipt's end then gives up a half-read
    /// command with [`Decoder::end_receipt`].
    pub fn flush_line(&mut self, out: &mut Vec<Event>) {
        if self.pending.len > 0 {
            let start = self.pending.start;
            self.pending = Pending::default();
            self.push_char('\u{FFFD}', start, out);
        }
        self.end_line(self.pos, out, false);
    }

    /// End of input: flushes the unfinished line.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.flush_line(out);
    }

    fn step(&mut self, b: u8, off: u64, out: &mut Vec<Event>, replay: &mut Replay) {
        let realtime = match self.state {
            State::Dle => true,
            State::Header {
                cmd: Cmd::Dle(_), ..
            } => true,
            State::Ground => b == DLE && self.pending.len == 0,
            _ => false,
        };
        if !realtime {
            self.activity += 1;
        }
        let end = off + 1;
        match std::mem::replace(&mut self.state, State::Ground) {
            State::Ground => self.ground(b, off, out, replay),
            State::Esc => self.esc(b, off, out, replay),
            State::Gs => self.gs(b, off, out, replay),
            State::Fs => self.fs(b, off, out, replay),
            State::Dle => match b {
                0x04 | 0x05 | 0x14 => self.header(Cmd::Dle(b)),
                // A lone DLE is ignored; the byte after it is ordinary.
                _ => self.ground(b, off, out, replay),
            },
            State::Header { cmd, mut buf, len } => {
                buf[len as usize] = b;
                let len = len + 1;
                if (len as usize) < header_len(cmd, &buf[..len as usize]) {
                    self.state = State::Header { cmd, buf, len };
                } else {
                    self.header_done(cmd, &buf[..len as usize], end, out);
                }
            }
            State::Skip { left, then } => {
                if left > 1 {
                    self.state = State::Skip {
                        left: left - 1,
                        then,
                    };
                } else {
                    self.after(then);
                }
            }
            State::Collect {
                what,
                left,
                mut data,
                start,
            } => {
                data.push(b);
                if left > 1 {
                    self.state = State::Collect {
                        what,
                        left: left - 1,
                        data,
                        start,
                    };
                } else {
                    self.payload_done(what, data, start, end, out);
                }
            }
            State::UntilNul {
                what,
                left,
                mut data,
                start,
            } => {
                if b == 0 {
                    self.payload_done(what, data, start, end, out);
                } else if left > 1 {
                    data.push(b);
                    self.state = State::UntilNul {
                        what,
                        left: left - 1,
                        data,
                        start,
                    };
                }
                // Else: no terminator within the limit; the data is garbage and
                // is dropped, decoding continues as text.
            }
            State::Resync(n) => {
                let droppable = b < 0x20 && !matches!(b, ESC | GS | FS | DLE | LF | CR);
                if n > 0 && droppable {
                    self.state = State::Resync(n - 1);
                } else {
                    self.ground(b, off, out, replay);
                }
            }
        }
    }

    fn after(&mut self, then: After) {
        self.state = match then {
            After::Ground => State::Ground,
            After::UserChar { left: 0, .. } | After::NvImage { left: 0 } => State::Ground,
            After::UserChar { y, left } => State::Header {
                cmd: Cmd::UserCharWidth { y, left },
                buf: [0; 8],
                len: 0,
            },
            After::NvImage { left } => State::Header {
                cmd: Cmd::NvImageHeader { left },
                buf: [0; 8],
                len: 0,
            },
        };
    }

    fn skip(&mut self, n: u64, then: After) {
        self.claimed = self.claimed.saturating_add(n);
        if self.claimed > self.max_claim {
            let (claimed, max) = (self.claimed, self.max_claim);
            self.malformed_at(format!(
                "a command claiming {claimed} bytes, more than a receipt can be ({max})"
            ));
            self.state = State::Ground;
        } else if n == 0 {
            self.after(then);
        } else {
            self.state = State::Skip { left: n, then };
        }
    }

    fn header(&mut self, cmd: Cmd) {
        self.state = State::Header {
            cmd,
            buf: [0; 8],
            len: 0,
        };
    }

    fn ground(&mut self, b: u8, off: u64, out: &mut Vec<Event>, replay: &mut Replay) {
        if self.pending.len > 0 {
            self.continue_char(b, off, out, replay);
            return;
        }
        match b {
            LF => self.end_line(off + 1, out, true),
            CR => {}
            0x09 => self.push_char('\t', off, out),
            0x0c => self.end_line(off + 1, out, false),
            ESC => self.state = State::Esc,
            GS => self.state = State::Gs,
            FS => self.state = State::Fs,
            DLE => self.state = State::Dle,
            0x00..=0x1f | 0x7f => {}
            0x20..=0x7e => self.push_char(b as char, off, out),
            _ => self.start_char(b, off, out),
        }
    }
}

#[cfg(test)]
mod tests;
