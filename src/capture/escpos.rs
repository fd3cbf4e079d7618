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
//!
//! # Text model
//!
//! A printer has a single-byte table selected by `ESC t` (CP437 after `ESC @`
//! unless configured otherwise) and, on Chinese models, a double-byte "Chinese
//! mode" (`FS &` on, `FS .` off) that is **on by default** — which is why a
//! Chinese POS never sends `ESC t`. The configured [`CodePage`] says which mode
//! the printer starts in: a multibyte one (GB18030, UTF-8, Big5) starts in
//! multibyte mode, a single-byte one starts with that table. `FS &` turns on the
//! configured multibyte encoding (GB18030 when the configuration is
//! single-byte), `FS .` falls back to the `ESC t` table, `ESC @` restores the
//! configured start. GB18030 is decoded as a superset of GBK and GB2312.
//!
//! `CR` is ignored (POS software sends `CR LF`), `HT` becomes `\t`, other C0
//! controls are dropped. `LF` ends a line (an empty line too); commands that
//! print the buffer (`ESC d`, `ESC J`, `ESC e`, `FF`, cuts, barcodes, `ESC @`)
//! end a line only when it has text.

use encoding_rs::Encoding;

use super::codepages;

mod offsets;
use offsets::Runs;
pub use offsets::{Offsets, Run};

/// A line longer than this many characters is emitted as a line of its own;
/// real receipts are 32–64 columns, so only garbage ever reaches it.
pub const MAX_LINE_CHARS: usize = 4096;

/// Largest barcode / 2D-code payload that is collected (a QR code holds at most
/// 7089 digits); longer data is skipped without an event.
pub const MAX_PAYLOAD: usize = 16 * 1024;

const ESC: u8 = 0x1b;
const GS: u8 = 0x1d;
const FS: u8 = 0x1c;
const DLE: u8 = 0x10;
const LF: u8 = 0x0a;
const CR: u8 = 0x0d;

/// The printer's character encoding at power-on / after `ESC @`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePage {
    /// GB18030 (a superset of GBK and GB2312): the default of Chinese printers.
    Gb18030,
    Utf8,
    Big5,
    /// A single-byte table; bytes < 0x80 are ASCII.
    Single(SingleByte),
}

/// Multibyte text encodings ("Chinese mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Multibyte {
    Gb18030,
    Utf8,
    Big5,
}

/// Single-byte tables: the ones `ESC t` selects on Epson-compatible printers
/// that encoding_rs or a small table covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleByte {
    Cp437,
    Cp737,
    Cp850,
    Cp852,
    Cp855,
    Cp857,
    Cp858,
    Cp860,
    Cp861,
    Cp862,
    Cp863,
    Cp865,
    Cp866,
    Cp869,
    Iso8859_2,
    Iso8859_7,
    Iso8859_15,
    Windows1250,
    Windows1251,
    Windows1252,
    Windows1253,
    Windows1254,
    Windows1255,
    Windows1256,
    Windows1257,
    Windows1258,
}

/// Where a single-byte table comes from.
enum TableSource {
    Dos(&'static [char; 128]),
    Web(&'static Encoding),
}

/// `(table, config name, ESC t number)`; the numbers are Epson's.
const SINGLE_BYTE: &[(SingleByte, &str, u8)] = &[
    (SingleByte::Cp437, "cp437", 0),
    (SingleByte::Cp850, "cp850", 2),
    (SingleByte::Cp860, "cp860", 3),
    (SingleByte::Cp863, "cp863", 4),
    (SingleByte::Cp865, "cp865", 5),
    (SingleByte::Cp857, "cp857", 13),
    (SingleByte::Cp737, "cp737", 14),
    (SingleByte::Iso8859_7, "iso-8859-7", 15),
    (SingleByte::Windows1252, "windows-1252", 16),
    (SingleByte::Cp866, "cp866", 17),
    (SingleByte::Cp852, "cp852", 18),
    (SingleByte::Cp858, "cp858", 19),
    (SingleByte::Cp855, "cp855", 34),
    (SingleByte::Cp861, "cp861", 35),
    (SingleByte::Cp862, "cp862", 36),
    (SingleByte::Cp869, "cp869", 38),
    (SingleByte::Iso8859_2, "iso-8859-2", 39),
    (SingleByte::Iso8859_15, "iso-8859-15", 40),
    (SingleByte::Windows1250, "windows-1250", 45),
    (SingleByte::Windows1251, "windows-1251", 46),
    (SingleByte::Windows1253, "windows-1253", 47),
    (SingleByte::Windows1254, "windows-1254", 48),
    (SingleByte::Windows1255, "windows-1255", 49),
    (SingleByte::Windows1256, "windows-1256", 50),
    (SingleByte::Windows1257, "windows-1257", 51),
    (SingleByte::Windows1258, "windows-1258", 52),
];

impl SingleByte {
    /// The table `ESC t n` selects, if this module knows it.
    pub fn from_esc_t(n: u8) -> Option<SingleByte> {
        SINGLE_BYTE.iter().find(|e| e.2 == n).map(|e| e.0)
    }

    pub fn name(self) -> &'static str {
        SINGLE_BYTE
            .iter()
            .find(|e| e.0 == self)
            .map(|e| e.1)
            .unwrap_or("cp437")
    }

    fn source(self) -> TableSource {
        use SingleByte::*;
        match self {
            Cp437 => TableSource::Dos(&codepages::CP437),
            Cp737 => TableSource::Dos(&codepages::CP737),
            Cp850 => TableSource::Dos(&codepages::CP850),
            Cp852 => TableSource::Dos(&codepages::CP852),
            Cp855 => TableSource::Dos(&codepages::CP855),
            Cp857 => TableSource::Dos(&codepages::CP857),
            Cp858 => TableSource::Dos(&codepages::CP858),
            Cp860 => TableSource::Dos(&codepages::CP860),
            Cp861 => TableSource::Dos(&codepages::CP861),
            Cp862 => TableSource::Dos(&codepages::CP862),
            Cp863 => TableSource::Dos(&codepages::CP863),
            Cp865 => TableSource::Dos(&codepages::CP865),
            Cp869 => TableSource::Dos(&codepages::CP869),
            Cp866 => TableSource::Web(encoding_rs::IBM866),
            Iso8859_2 => TableSource::Web(encoding_rs::ISO_8859_2),
            Iso8859_7 => TableSource::Web(encoding_rs::ISO_8859_7),
            Iso8859_15 => TableSource::Web(encoding_rs::ISO_8859_15),
            Windows1250 => TableSource::Web(encoding_rs::WINDOWS_1250),
            Windows1251 => TableSource::Web(encoding_rs::WINDOWS_1251),
            Windows1252 => TableSource::Web(encoding_rs::WINDOWS_1252),
            Windows1253 => TableSource::Web(encoding_rs::WINDOWS_1253),
            Windows1254 => TableSource::Web(encoding_rs::WINDOWS_1254),
            Windows1255 => TableSource::Web(encoding_rs::WINDOWS_1255),
            Windows1256 => TableSource::Web(encoding_rs::WINDOWS_1256),
            Windows1257 => TableSource::Web(encoding_rs::WINDOWS_1257),
            Windows1258 => TableSource::Web(encoding_rs::WINDOWS_1258),
        }
    }

    /// The upper half (0x80–0xFF) as chars; built once per `ESC t`.
    fn table(self) -> [char; 128] {
        match self.source() {
            TableSource::Dos(t) => *t,
            TableSource::Web(enc) => {
                let mut t = ['\u{FFFD}'; 128];
                for (i, slot) in t.iter_mut().enumerate() {
                    let byte = [0x80 + i as u8];
                    if let Some(s) = enc.decode_without_bom_handling_and_without_replacement(&byte)
                    {
                        *slot = s.chars().next().unwrap_or('\u{FFFD}');
                    }
                }
                t
            }
        }
    }
}

impl CodePage {
    /// Parses a configured `encoding` name. GBK and GB2312 are accepted as
    /// GB18030, of which they are subsets.
    pub fn parse(name: &str) -> Option<CodePage> {
        let n = name.trim().to_ascii_lowercase().replace('_', "-");
        match n.as_str() {
            "gb18030" | "gbk" | "gb2312" | "cp936" => return Some(CodePage::Gb18030),
            "utf-8" | "utf8" => return Some(CodePage::Utf8),
            "big5" => return Some(CodePage::Big5),
            "pc437" | "ibm437" => return Some(CodePage::Single(SingleByte::Cp437)),
            "pc858" | "ibm858" => return Some(CodePage::Single(SingleByte::Cp858)),
            "latin1" | "iso-8859-1" | "cp1252" => {
                return Some(CodePage::Single(SingleByte::Windows1252));
            }
            _ => {}
        }
        SINGLE_BYTE
            .iter()
            .find(|e| e.1 == n || e.1.replace('-', "") == n)
            .map(|e| CodePage::Single(e.0))
    }

    /// The accepted names, for error messages.
    pub fn names() -> String {
        let mut v = vec!["gb18030 (gbk)", "utf-8", "big5"];
        v.extend(SINGLE_BYTE.iter().map(|e| e.1));
        v.join(", ")
    }

    pub fn name(self) -> &'static str {
        match self {
            CodePage::Gb18030 => "gb18030",
            CodePage::Utf8 => "utf-8",
            CodePage::Big5 => "big5",
            CodePage::Single(s) => s.name(),
        }
    }

    fn multibyte(self) -> Option<Multibyte> {
        match self {
            CodePage::Gb18030 => Some(Multibyte::Gb18030),
            CodePage::Utf8 => Some(Multibyte::Utf8),
            CodePage::Big5 => Some(Multibyte::Big5),
            CodePage::Single(_) => None,
        }
    }

    fn single(self) -> SingleByte {
        match self {
            CodePage::Single(s) => s,
            _ => SingleByte::Cp437,
        }
    }
}

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

/// Which command a header is being collected for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
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
enum Payload {
    /// `GS k` with the barcode system `m`.
    Barcode(u8),
    /// `GS ( k` block (cn fn … data).
    TwoD,
    /// `ESC Z` data, printed at once as the `GS Z`-selected symbology.
    EscZ,
    /// `ESC D` tab stops (discarded).
    Tabs,
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
        }
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
    fn text_run(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> usize {
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
    fn gb18030_run(&mut self, bytes: &[u8], room: usize, out: &mut Vec<Event>) -> usize {
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
    fn command_run(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> usize {
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
    fn took_text(&mut self, bytes: usize, chars: usize, out: &mut Vec<Event>) {
        self.pos += bytes as u64;
        self.activity += bytes as u64;
        self.line_chars += chars;
        if self.line_chars >= MAX_LINE_CHARS {
            let last = self.runs.last().unwrap_or(self.pos);
            self.end_line(last + 1, out, false);
        }
    }

    /// In `Skip`: drops as many of the skipped bytes as `bytes` holds.
    fn skip_run(&mut self, bytes: &[u8]) -> usize {
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
    fn collect_run(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> usize {
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

    /// Emits the text of an unfinished line, if any (an unfinished multibyte
    /// character becomes U+FFFD). Used when a receipt ends by idle timeout.
    /// Command state is kept: a command split across the pause still completes.
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
        if n == 0 {
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

    fn start_char(&mut self, b: u8, off: u64, out: &mut Vec<Event>) {
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

    fn continue_char(&mut self, b: u8, off: u64, out: &mut Vec<Event>, replay: &mut Replay) {
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

    fn append_pending(&mut self, b: u8) {
        let i = self.pending.len as usize;
        if i < 4 {
            self.pending.bytes[i] = b;
            self.pending.len += 1;
        }
    }

    /// The pending bytes (a copy, no allocation) and how many there are.
    fn take_pending(&mut self) -> ([u8; 4], usize) {
        let p = std::mem::take(&mut self.pending);
        (p.bytes, (p.len as usize).min(4))
    }

    fn complete_encoded(&mut self, enc: &'static Encoding, out: &mut Vec<Event>) {
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

    fn push_char(&mut self, c: char, off: u64, out: &mut Vec<Event>) {
        self.text.push(c);
        self.runs.push(off);
        self.line_chars += 1;
        if self.line_chars >= MAX_LINE_CHARS {
            self.end_line(off + 1, out, false);
        }
    }

    /// Emits the current line. `always`: emit even when empty (a line feed).
    fn end_line(&mut self, end: u64, out: &mut Vec<Event>, always: bool) {
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

    /// An introducer followed by an unknown byte. A control byte means the
    /// introducer was stray: the control is processed as usual.
    fn unknown(&mut self, intro: u8, b: u8, off: u64, out: &mut Vec<Event>, replay: &mut Replay) {
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

    fn esc(&mut self, b: u8, off: u64, out: &mut Vec<Event>, replay: &mut Replay) {
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

    fn gs(&mut self, b: u8, off: u64, out: &mut Vec<Event>, replay: &mut Replay) {
        match b {
            // No arguments: GS : (macro), GS c (print counter).
            b':' | b'c' => {}
            _ if header_len(Cmd::Gs(b), &[]) > 0 => self.header(Cmd::Gs(b)),
            _ => self.unknown(GS, b, off, out, replay),
        }
    }

    fn fs(&mut self, b: u8, off: u64, out: &mut Vec<Event>, replay: &mut Replay) {
        match b {
            b'&' => self.multibyte = Some(self.config.multibyte().unwrap_or(Multibyte::Gb18030)),
            b'.' => self.multibyte = None,
            _ if header_len(Cmd::Fs(b), &[]) > 0 => self.header(Cmd::Fs(b)),
            _ => self.unknown(FS, b, off, out, replay),
        }
    }

    fn reset(&mut self) {
        self.multibyte = self.config.multibyte();
        self.table = self.config.single().table();
        self.stored_2d.clear();
        self.esc_z_kind = 2;
    }

    fn header_done(&mut self, cmd: Cmd, h: &[u8], end: u64, out: &mut Vec<Event>) {
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
                Some(t) => self.table = t.table(),
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

    fn collect(&mut self, what: Payload, n: usize, start: u64) {
        if n == 0 {
            self.state = State::Ground;
        } else if n > MAX_PAYLOAD {
            self.skip(n as u64, After::Ground);
        } else {
            self.state = State::Collect {
                what,
                left: n,
                data: Vec::with_capacity(n.min(256)),
                start,
            };
        }
    }

    fn payload_done(
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
                self.end_line(end, out, false);
                out.push(Event {
                    end,
                    kind: EventKind::Code(Code {
                        kind: CodeKind::Barcode,
                        symbology,
                        payload,
                        data,
                        data_offset: start,
                    }),
                });
            }
            Payload::EscZ => {
                let (kind, symbology) = match self.esc_z_kind {
                    0 | 48 => (CodeKind::Pdf417, "pdf417"),
                    1 | 49 => (CodeKind::DataMatrix, "datamatrix"),
                    _ => (CodeKind::Qr, "qr"),
                };
                let payload = self.payload_text(&data);
                self.end_line(end, out, false);
                out.push(Event {
                    end,
                    kind: EventKind::Code(Code {
                        kind,
                        symbology,
                        payload,
                        data,
                        data_offset: start,
                    }),
                });
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
                        self.end_line(end, out, false);
                        out.push(Event {
                            end,
                            kind: EventKind::Code(Code {
                                kind,
                                symbology,
                                payload,
                                data: stored,
                                data_offset: at,
                            }),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// 2D payloads are usually UTF-8 (URLs, JSON); a Chinese POS may encode them
    /// in its own code page.
    fn payload_text(&self, data: &[u8]) -> String {
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

/// Total header length of `cmd` given the header bytes read so far, or 0 when
/// the command is unknown. Several commands learn their length from their first
/// argument.
fn header_len(cmd: Cmd, h: &[u8]) -> usize {
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

fn barcode_symbology(m: u8) -> &'static str {
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
fn code128_text(data: &[u8]) -> String {
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

#[cfg(test)]
mod tests;
