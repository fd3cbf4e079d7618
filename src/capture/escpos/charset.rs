//! Code pages: the configured [`CodePage`], the single-byte tables `ESC t`
//! selects (by Epson number and config name) and their upper halves.
//!
//! Invariant: [`SingleByte::table`] always gives 128 chars (U+FFFD where a
//! table leaves a byte undefined), so a table lookup is total for any byte
//! >= 0x80; every name in `SINGLE_BYTE` is one `CodePage::parse` accepts.

use encoding_rs::Encoding;

use super::codepages;

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
pub(super) enum Multibyte {
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
    pub(super) fn table(self) -> [char; 128] {
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

    pub(super) fn multibyte(self) -> Option<Multibyte> {
        match self {
            CodePage::Gb18030 => Some(Multibyte::Gb18030),
            CodePage::Utf8 => Some(Multibyte::Utf8),
            CodePage::Big5 => Some(Multibyte::Big5),
            CodePage::Single(_) => None,
        }
    }

    pub(super) fn single(self) -> SingleByte {
        match self {
            CodePage::Single(s) => s,
            _ => SingleByte::Cp437,
        }
    }
}
