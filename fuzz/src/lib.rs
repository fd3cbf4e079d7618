//! The properties behind tillrelay's bad-input promise — "any bytes on the serial
//! line, any file in the folder, any response from a server never crashes the
//! agent and never loses the other orders" — as one function per entry point,
//! each taking arbitrary bytes and panicking only when a property fails.
//!
//! Two drivers call these functions:
//! - the cargo-fuzz targets in `fuzz/fuzz_targets/` (coverage-guided, minutes);
//! - `tests/bad_input.rs` in the main crate, which includes this very file with
//!   `#[path]` and feeds it random and mutated-fixture bytes from a seeded PRNG
//!   (seconds, in every `cargo test`).
//!
//! So the file may use only `std`, `serde_json` and `tillrelay` (what both the
//! fuzz crate and the main crate's tests have), and it must not read files at run
//! time: the example config is compiled in with `include_str!`.
//!
//! Properties, per entry point:
//! - ESC/POS decoder: never panics; any split of the stream into `feed` calls
//!   yields the same events; event ends and character offsets are ordered and
//!   inside the stream; lines and payloads stay within their bounds.
//! - Receipt chain (decoder → segmenter → masker → template, with the example
//!   config's `market` and `kiosk` sources): never panics; live-style split
//!   feeding gives the same receipts as reading the bytes as a file; the receipts'
//!   raw bytes plus the discarded bytes are the stream (only masked digits
//!   differ).
//! - CSV and JSON readers: never panic; order numbers are distinct (CSV); every
//!   JSON element comes back either as an order or as an error.
//! - Every order a template or reader yields passes `Order::check`, survives the
//!   outbox's JSON round trip, and can be stamped and translated for both clouds
//!   without a panic (a refusal is fine: it is kept with its reason).
//! - Ovopark and Wangdiantong reply classification: never panics whatever the
//!   status, `Date`, `Retry-After` and body; only a 2xx reply with the success
//!   code can count as delivered, only a 2xx business code can reject an order,
//!   waits stay within their caps, and clock learning from the reply never
//!   panics (nor does the next request's timestamp).

use std::path::Path;
use std::sync::LazyLock;

use tillrelay::capture::escpos::{
    CodePage, Decoder, Event, EventKind, MAX_LINE_CHARS, MAX_PAYLOAD, SingleByte,
};
use tillrelay::capture::formats::{CsvConfig, Encoding, read_csv, read_json};
use tillrelay::capture::receipt::{Pipeline, ReceiptRules, parse_one};
use tillrelay::capture::segment::Receipt;
use tillrelay::capture::template::Parsed as ReceiptParsed;
use tillrelay::config::{Config, Source, SourceKind};
use tillrelay::order::Order;
use tillrelay::stamp::stamp;
use tillrelay::upload::http::Reply;
use tillrelay::upload::{Outcome, ServerOffset, ovopark, parse_ovopark_systime, wdt};

/// The example config shipped with the agent (config/tillrelay.toml).
const EXAMPLE_CONFIG: &str = include_str!("../../config/tillrelay.toml");

/// Both destinations, with the identities of config/tillrelay.toml's upload section, so that
/// every order a reader accepts is also stamped and translated for both clouds
/// (which is where it goes next in the agent).
const DESTINATIONS: &str = r#"
[ovopark]
akey = "FUZZ-KEY"
secret = "fuzz"
org_id = 1
enterprise_id = 1

[wdt]
sid = "fuzz"
key = "fuzz"
secret = "aa:dd"
shop_no = "SHOP1"
receiver_name = "一号店"
receiver_area = "上海 上海市 徐汇区"
receiver_address = "漕溪北路1号"
receiver_mobile = "13800000000"
"#;

/// What the targets take from the example config.
pub struct Examples {
    /// `market`: GB18030, two printed lines per item, GS V cuts.
    pub market: ReceiptRules,
    /// `kiosk`: UTF-8, one line per item, order number in a QR code.
    pub kiosk: ReceiptRules,
    /// `lane1`'s CSV mapping, GBK as configured.
    pub csv_gbk: CsvConfig,
    /// The same mapping read as UTF-8.
    pub csv_utf8: CsvConfig,
    /// The whole config, with both destinations.
    pub config: Config,
}

/// Parsed once: the config is not what is being fuzzed.
pub static EXAMPLES: LazyLock<Examples> = LazyLock::new(|| {
    let text = format!("{EXAMPLE_CONFIG}\n{DESTINATIONS}");
    let config = Config::from_toml(&text, Path::new("/etc/tillrelay/tillrelay.toml"))
        .expect("the example config is valid");
    let rules = |name: &str| match config.source(name).map(|s| &s.kind) {
        Some(SourceKind::Serial(s)) => s.rules.clone(),
        _ => panic!("the example config has no serial source {name}"),
    };
    let csv_gbk = match config.source("lane1").map(|s| &s.kind) {
        Some(SourceKind::Folder(f)) => f.csv.clone(),
        _ => panic!("the example config has no folder source lane1"),
    };
    assert_eq!(csv_gbk.encoding, Encoding::Gb18030, "lane1 reads GBK");
    let mut csv_utf8 = csv_gbk.clone();
    csv_utf8.encoding = Encoding::Utf8;
    Examples {
        market: rules("market"),
        kiosk: rules("kiosk"),
        csv_gbk,
        csv_utf8,
        config,
    }
});

/// Code pages the decoder target cycles through (first byte of the input).
pub const PAGES: [CodePage; 6] = [
    CodePage::Gb18030,
    CodePage::Utf8,
    CodePage::Big5,
    CodePage::Single(SingleByte::Cp437),
    CodePage::Single(SingleByte::Cp858),
    CodePage::Single(SingleByte::Cp866),
];

/// Length of the header that the decoder and receipt targets read before the
/// stream: one selector byte, then eight bytes seeding the feed split.
pub const HEADER: usize = 9;

/// Splits `data` into (selector, split seed, stream). Inputs shorter than the
/// header are all stream, fed whole and in single bytes.
pub fn header(data: &[u8]) -> (u8, u64, &[u8]) {
    if data.len() < HEADER {
        return (0, 0, data);
    }
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&data[1..HEADER]);
    (data[0], u64::from_le_bytes(seed), &data[HEADER..])
}

/// Chunk lengths for feeding a stream piecewise, from a seed (splitmix64): a mix
/// of single bytes, two or three bytes, and longer runs, as a serial port
/// delivers them. Seed 0 feeds one byte at a time.
pub struct Splits(u64);

impl Splits {
    pub fn new(seed: u64) -> Splits {
        Splits(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Cuts `stream` into consecutive non-empty chunks.
    pub fn chunks(mut self, stream: &[u8]) -> Vec<&[u8]> {
        let single = self.0 == 0;
        let mut out = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let r = self.next();
            let n = if single {
                1
            } else {
                match r % 4 {
                    0 => 1,
                    1 => 1 + (r >> 8) as usize % 3,
                    _ => 1 + (r >> 8) as usize % 64,
                }
            }
            .min(rest.len());
            out.push(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }
}

fn decode(page: CodePage, chunks: &[&[u8]]) -> (Vec<Event>, u64) {
    let mut d = Decoder::new(page);
    let mut events = Vec::new();
    for c in chunks {
        d.feed(c, &mut events);
    }
    d.finish(&mut events);
    (events, d.position())
}

/// ESC/POS decoder. Input: selector byte (code page, see [`PAGES`]), eight
/// split-seed bytes, then the stream.
pub fn escpos_decode(data: &[u8]) {
    let (sel, seed, stream) = header(data);
    let page = PAGES[sel as usize % PAGES.len()];
    let (whole, position) = decode(page, &[stream]);
    let (split, _) = decode(page, &Splits::new(seed).chunks(stream));
    assert_eq!(split, whole, "split invariance, {page:?}");
    assert_eq!(position, stream.len() as u64);
    let mut last = 0;
    for e in &whole {
        assert!(e.end >= last && e.end <= position, "event end {e:?}");
        last = e.end;
        match &e.kind {
            EventKind::Line(l) => {
                assert_eq!(l.offsets.len(), l.text.chars().count(), "{l:?}");
                assert!(l.text.chars().count() <= MAX_LINE_CHARS);
                let offsets: Vec<u64> = l.offsets.iter().collect();
                assert!(offsets.iter().all(|&o| o < e.end), "{e:?}");
                assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{e:?}");
            }
            EventKind::Code(c) => {
                assert!(c.data.len() <= MAX_PAYLOAD);
                assert!(c.data_offset + c.data.len() as u64 <= e.end, "{e:?}");
            }
            _ => {}
        }
    }
}

/// What every order a reader or template returns must survive on its way out:
/// its own check, the outbox's JSON round trip, stamping with its source's
/// identity and video window, and translation for both clouds (which may refuse
/// it, with a reason, but never panic).
pub fn check_order(o: &Order, source: &str, what: &str) {
    if let Err(e) = o.check() {
        panic!("{what} returned an order that fails its own check: {e}");
    }
    round_trip(o, what);
    let cfg = &EXAMPLES.config;
    let src: &Source = cfg.source(source).expect("a configured source");
    let mut o = o.clone();
    stamp(&mut o, &src.identity);
    round_trip(&o, what);
    if let Some(ovo) = &cfg.ovopark {
        if let Ok(target) = ovo.target(Some(&src.ovopark), o.shop.as_deref()) {
            let _ = ovopark::build_ipos(&o, &target, "销售");
        }
    }
    if let Some(w) = &cfg.wdt {
        if let Ok(shop) = w.target(Some(&src.wdt)) {
            let _ = wdt::build_trade(&o, &shop, w);
        }
    }
}

/// The outbox stores an order as `serde_json::to_string` and reads it back with
/// `serde_json::from_str`: an order that does not survive that would be lost
/// after it was acknowledged.
pub fn round_trip(o: &Order, what: &str) {
    let text = serde_json::to_string(o).expect("an order serialises");
    let back: Order = match serde_json::from_str(&text) {
        Ok(b) => b,
        Err(e) => panic!("{what}: the stored order does not read back ({e}): {text}"),
    };
    let again = serde_json::to_string(&back).expect("an order serialises");
    assert_eq!(
        again, text,
        "{what}: the stored order changes on reading back"
    );
}

/// The receipt chain with the example config's `market` (even selector) or
/// `kiosk` (odd selector) source. Input: selector byte, eight split-seed bytes,
/// then the bytes the POS sent.
pub fn receipt_template(data: &[u8]) {
    let (sel, seed, stream) = header(data);
    let (source, rules) = if sel % 2 == 0 {
        ("market", &EXAMPLES.market)
    } else {
        ("kiosk", &EXAMPLES.kiosk)
    };
    receipt_chain(source, rules, seed, stream);
}

/// The receipt chain properties for one source's rules; returns the receipts (as
/// read from a file) and what the template made of each.
pub fn receipt_chain(
    source: &str,
    rules: &ReceiptRules,
    seed: u64,
    stream: &[u8],
) -> Vec<(Receipt, Result<ReceiptParsed, String>)> {
    // As a file: one feed, then the end.
    let mut p = Pipeline::new(rules);
    let mut whole = Vec::new();
    p.feed(stream, None, &mut whole);
    p.finish(&mut whole);
    let discarded = p.discarded_bytes();

    // As live serial bytes without idle time: chunk by chunk. The max_bytes cut is
    // checked per feed, so only streams within it must split identically.
    let mut q = Pipeline::new(rules);
    let mut split = Vec::new();
    for c in Splits::new(seed).chunks(stream) {
        q.feed(c, None, &mut split);
    }
    q.finish(&mut split);
    if stream.len() <= rules.segment.max_bytes {
        assert_eq!(split, whole, "live feeding differs from reading the file");
        assert_eq!(q.discarded_bytes(), discarded);
    }

    // Nothing reordered, duplicated or lost: receipts in order, and their bytes
    // plus the discarded ones are the stream, except digits masked as '*'.
    let mut at = 0u64;
    let mut kept = 0u64;
    for r in &whole {
        assert!(r.stream_offset >= at, "receipts overlap or go back");
        let start = r.stream_offset as usize;
        let original = &stream[start..start + r.raw.len()];
        for (i, (&got, &was)) in r.raw.iter().zip(original).enumerate() {
            assert!(
                got == was || (got == b'*' && was.is_ascii_digit()),
                "receipt byte {} changed from {was:#04x} to {got:#04x}",
                start + i
            );
        }
        at = r.stream_offset + r.raw.len() as u64;
        kept += r.raw.len() as u64;
    }
    assert_eq!(kept + discarded, stream.len() as u64, "bytes lost");

    let mut results = Vec::new();
    for r in whole {
        let parsed = rules.parse(&r);
        if let Ok(ReceiptParsed::Order(o)) = &parsed {
            check_order(o, source, "a receipt template");
        }
        // Re-parsing from the journal (`tillrelay reparse`) takes the raw bytes alone.
        let (_, again) = parse_one(&r.raw, rules);
        if let Ok(ReceiptParsed::Order(o)) = &again {
            check_order(o, source, "a re-parsed receipt");
        }
        results.push((r, parsed.map_err(|e| e.to_string())));
    }
    results
}

/// `lane1`'s CSV mapping, once as GBK (as configured) and once as UTF-8. Input:
/// the file's bytes.
pub fn csv_reader(data: &[u8]) {
    for cfg in [&EXAMPLES.csv_gbk, &EXAMPLES.csv_utf8] {
        let Ok(parsed) = read_csv(data, cfg) else {
            continue;
        };
        let mut seen = std::collections::HashSet::new();
        for o in &parsed.orders {
            check_order(o, "lane1", "the CSV reader");
            assert!(seen.insert(&o.order_no), "order {} twice", o.order_no);
        }
    }
}

/// The canonical JSON reader. Input: the file's bytes.
pub fn json_reader(data: &[u8]) {
    let Ok(parsed) = read_json(data) else {
        return;
    };
    for o in &parsed.orders {
        check_order(o, "lane1", "the JSON reader");
    }
    // The file was read, so it is JSON: each of its elements is accounted for.
    let text = std::str::from_utf8(data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data))
        .expect("read_json accepted it, so it is UTF-8");
    let elements = if text.trim_start().starts_with('[') {
        // Counted as read_json splits them: a number serde_json cannot hold as a
        // Value (1e999) is still an element, refused as an order.
        serde_json::from_str::<Vec<&serde_json::value::RawValue>>(text)
            .expect("read_json accepted it, so it is an array")
            .len()
    } else {
        1
    };
    assert_eq!(
        parsed.orders.len() + parsed.errors.len(),
        elements,
        "an element came back neither as an order nor as an error"
    );
}

/// An HTTP reply from bytes laid out like a tiny HTTP response, so seeds are
/// readable: `STATUS\nName: value\n…\n\nbody`. Only `Date` and `Retry-After`
/// reach the classifiers (names case-insensitive, values lossily UTF-8, as the
/// HTTP client hands them over). Without a blank line the whole input is a 200
/// body; a status that is not a number is 200.
pub fn reply(data: &[u8]) -> Reply {
    let Some(split) = data.windows(2).position(|w| w == b"\n\n") else {
        return Reply {
            status: 200,
            body: data.to_vec(),
            ..Reply::default()
        };
    };
    let head = String::from_utf8_lossy(&data[..split]);
    let mut lines = head.lines();
    let mut r = Reply {
        status: lines
            .next()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(200),
        body: data[split + 2..].to_vec(),
        ..Reply::default()
    };
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_string());
        match name.trim().to_ascii_lowercase().as_str() {
            "date" => r.date = value,
            "retry-after" => r.retry_after = value,
            _ => {}
        }
    }
    r
}

fn check_outcome(o: &Outcome, reply: &Reply, max_wait: u64) {
    assert!(!o.text().is_empty(), "an outcome without a reason: {o:?}");
    let ok = (200..300).contains(&reply.status);
    if !ok {
        assert!(
            matches!(o, Outcome::Retry { .. } | Outcome::Misconfigured { .. }),
            "HTTP {} taken as {o:?}",
            reply.status
        );
    }
    if let Outcome::Retry {
        after: Some(after), ..
    } = o
    {
        assert!(after.as_secs() <= max_wait, "wait {after:?} past its cap");
    }
}

/// The Ovopark zone the example config implies (UTC+8, the default).
const ZONE: i32 = 8 * 3600;

/// Ovopark reply classification and clock learning. Input: see [`reply`].
pub fn ovopark_response(data: &[u8]) {
    let reply = reply(data);
    let c = ovopark::classify(&reply);
    check_outcome(&c.outcome, &reply, 3600);
    let code: Option<i64> = c.code.as_deref().and_then(|s| s.parse().ok());
    match &c.outcome {
        Outcome::Delivered { .. } => assert!(
            matches!(code, Some(0 | 208003)),
            "delivered on code {:?}",
            c.code
        ),
        Outcome::Rejected { .. } => assert!(
            matches!(code, Some(208000..=208999)) && code != Some(208003),
            "rejected on code {:?}",
            c.code
        ),
        _ => {}
    }
    assert_eq!(c.timestamp_refused, code == Some(16));
    // As the client does after each reply: learn the server clock, then stamp the
    // next request with it.
    let clock = ServerOffset::new();
    let _ = c
        .systime
        .as_deref()
        .and_then(|s| parse_ovopark_systime(s, ZONE))
        .and_then(|t| clock.learn(t))
        .or_else(|| clock.learn_from_reply(&reply));
    let _ = ovopark::format_timestamp(clock.now_unix(), ZONE);
}

/// Wangdiantong reply classification and clock learning. Input: see [`reply`].
pub fn wdt_response(data: &[u8]) {
    let reply = reply(data);
    let wait = wdt::DEFAULT_RATE_LIMIT_WAIT_SECS;
    let ok = (200..300).contains(&reply.status);
    match wdt::classify(&reply) {
        wdt::Classified::Accepted { failed, .. } => {
            assert!(ok, "HTTP {} accepted", reply.status);
            assert!(failed.iter().all(|e| !e.error.is_empty()));
        }
        wdt::Classified::DataError(what)
        | wdt::Classified::TimestampRefused(what)
        | wdt::Classified::Unrecognised(what) => {
            assert!(ok, "HTTP {} read as a business status", reply.status);
            assert!(!what.is_empty());
        }
        wdt::Classified::All(o) => {
            assert!(!matches!(
                o,
                Outcome::Delivered { .. } | Outcome::Rejected { .. }
            ));
            check_outcome(&o, &reply, (2 * wait).max(3600));
        }
    }
    let clock = ServerOffset::new();
    let _ = clock.learn_from_reply(&reply);
    let _ = wdt::timestamp(clock.now_unix());
}
