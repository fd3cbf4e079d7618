//! In-process benchmarks of receipt capture (`cargo bench --bench capture`).
//!
//! Figures, each the median of several runs on one core:
//! - ESC/POS decode of GB18030 receipts (tests/fixtures/receipts/market.bin
//!   repeated to ≥ 8 MB), as is (with its raster logos, which are skipped by
//!   length) and with the logos taken out (text and commands only: the harder
//!   case, since every byte is decoded);
//! - the live chain decoder → segmenter → masker over the same streams, fed in
//!   serial-sized chunks, and a whole file at once (`parse FILE`, folder
//!   sources with `format = "receipt"`);
//! - template parsing of already-segmented receipts: the market template of
//!   config/tillrelay.toml (6 fields) over receipts of 10 items.
//!
//! Time is this thread's CPU time (see [`cpu_now`]). Nothing here asserts anything about time: the figures and their targets are
//! in docs/BENCHMARKS-capture.md. The few asserts check that what is timed did
//! the real work (receipts found, orders parsed), so a broken decoder cannot
//! produce a flattering figure.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use tillrelay::capture::escpos::{CodePage, Decoder};
use tillrelay::capture::receipt::{Pipeline, ReceiptRules, split_bytes};
use tillrelay::capture::segment::{RawSegment, Receipt};
use tillrelay::capture::template::{Parsed, RawTemplate};

/// Runs per figure and stream size; `BENCH_RUNS=1 BENCH_MB=1` make a run
/// short enough for `valgrind --tool=callgrind`, whose instruction counts do
/// not depend on what else the machine is doing.
fn runs() -> usize {
    env_usize("BENCH_RUNS", 5)
}

fn stream_bytes() -> usize {
    env_usize("BENCH_MB", 8) << 20
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
/// A serial read rarely returns more than this; the tap hands chunks on as read.
const CHUNK: usize = 4096;

/// CPU time of this thread. The build machine is shared, so wall time mostly
/// measures the other jobs; one thread's CPU time is the "one core" figure.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A stopwatch over this thread's CPU time.
struct Stopwatch(Duration);

impl Stopwatch {
    fn start() -> Stopwatch {
        Stopwatch(cpu_now())
    }
    fn elapsed(&self) -> Duration {
        cpu_now() - self.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn root(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The receipt rules of source `name` in config/tillrelay.toml.
fn doc_rules(name: &str) -> ReceiptRules {
    let text = std::fs::read_to_string(root("config/tillrelay.toml")).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let src = doc["source"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .unwrap();
    let segment: Option<RawSegment> = src.get("segment").map(|v| v.clone().try_into().unwrap());
    let template: Option<RawTemplate> = src.get("template").map(|v| v.clone().try_into().unwrap());
    ReceiptRules::from_raw(
        src.get("encoding").and_then(|v| v.as_str()),
        segment,
        template,
    )
    .unwrap()
}

/// `bytes` without its `GS v 0` raster images (header and bitmap).
fn without_raster(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"\x1dv0") && i + 8 <= bytes.len() {
            let x = bytes[i + 4] as usize | (bytes[i + 5] as usize) << 8;
            let y = bytes[i + 6] as usize | (bytes[i + 7] as usize) << 8;
            i += 8 + x * y;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn repeat_to(unit: &[u8], size: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(size + unit.len());
    while s.len() < size {
        s.extend_from_slice(unit);
    }
    s
}

/// Decoder alone, fed `CHUNK` bytes at a time; events are consumed (dropped)
/// after each chunk as the segmenter would. Returns MB/s.
#[inline(never)] // a symbol of its own for profilers (callgrind --toggle-collect)
fn decode(stream: &[u8]) -> f64 {
    let t = Stopwatch::start();
    let mut d = Decoder::new(CodePage::Gb18030);
    let mut events = Vec::new();
    let mut n = 0usize;
    for chunk in stream.chunks(CHUNK) {
        d.feed(chunk, &mut events);
        n += events.len();
        events.clear();
    }
    d.finish(&mut events);
    black_box(n);
    stream.len() as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// Decoder → segmenter → masker as the serial tap drives it. Returns MB/s.
#[inline(never)] // a symbol of its own for profilers (callgrind --toggle-collect)
fn chain(stream: &[u8], rules: &ReceiptRules, expect: usize) -> f64 {
    let t = Stopwatch::start();
    let mut p = Pipeline::new(rules);
    let mut out = Vec::new();
    let mut receipts = 0;
    for chunk in stream.chunks(CHUNK) {
        p.feed(chunk, None, &mut out);
        receipts += out.len();
        out.clear();
    }
    p.finish(&mut out);
    receipts += out.len();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(receipts, expect);
    stream.len() as f64 / secs / 1e6
}

/// The same chain over a whole file in one call. Returns MB/s.
#[inline(never)] // a symbol of its own for profilers (callgrind --toggle-collect)
fn chain_file(stream: &[u8], rules: &ReceiptRules, expect: usize) -> f64 {
    let t = Stopwatch::start();
    let out = split_bytes(stream, rules);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out.len(), expect);
    stream.len() as f64 / secs / 1e6
}

/// GB18030 bytes of `text`. encoding_rs encodes CJK to GB18030 by searching
/// its index, so each distinct character is encoded once and remembered.
fn gb18030(text: &str) -> Vec<u8> {
    thread_local! {
        static SEEN: std::cell::RefCell<std::collections::HashMap<char, Vec<u8>>> =
            Default::default();
    }
    SEEN.with_borrow_mut(|seen| {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            if c.is_ascii() {
                out.push(c as u8);
            } else {
                out.extend_from_slice(seen.entry(c).or_insert_with(|| {
                    encoding_rs::GB18030
                        .encode(c.encode_utf8(&mut [0; 4]))
                        .0
                        .into_owned()
                }));
            }
        }
        out
    })
}

/// One market-style receipt with 10 two-line items, as the POS sends it.
fn ten_item_receipt(i: usize) -> Vec<u8> {
    const NAMES: [&str; 10] = [
        "可口可乐500ml",
        "农夫山泉550ml",
        "散装苹果(称重)",
        "蒙牛纯牛奶250ml*16",
        "康师傅红烧牛肉面",
        "伊利安慕希酸奶",
        "旺旺雪饼150g",
        "金龙鱼大米5kg",
        "海天酱油500ml",
        "维达抽纸3包",
    ];
    let mut text = String::new();
    text.push_str(&format!(
        "单号: {:013}\n时间: 2026-11-22 {:02}:{:02}:{:02}\n收银员: 张三   机号: 03\n",
        2026112200000u64 + i as u64,
        9 + i / 3600 % 12,
        i / 60 % 60,
        i % 60
    ));
    text.push_str("--------------------------------\n品名            数量  单价   金额\n");
    let mut total = 0i64; // cents
    for (k, name) in NAMES.iter().enumerate() {
        let qty = 1 + (i + k) % 3;
        let price = 150 + ((i * 7 + k * 131) % 2000) as i64;
        let amount = price * qty as i64;
        total += amount;
        text.push_str(&format!(
            "{name}\n69{:011}   {qty:>5} {:>6}.{:02} {:>6}.{:02}\n",
            ((i * 10 + k) as u64 * 7919) % 100_000_000_000,
            price / 100,
            price % 100,
            amount / 100,
            amount % 100
        ));
    }
    let paid = total - 50;
    text.push_str(&format!(
        "--------------------------------\n件数: 10        合计: {}.{:02}\n优惠: 0.50\n\
         应收: {}.{:02}\n微信支付: {}.{:02}\n找零: 0.00\n--------------------------------\n",
        total / 100,
        total % 100,
        paid / 100,
        paid % 100,
        paid / 100,
        paid % 100
    ));
    let gb = gb18030(&text);
    let shop = gb18030("鲜丰超市(人民路店)\n");
    let thanks = gb18030("谢谢惠顾 欢迎再次光临\n");
    let mut b = Vec::new();
    b.extend_from_slice(b"\x1b@\x1ba\x01\x1d!\x11");
    b.extend_from_slice(&shop);
    b.extend_from_slice(b"\x1d!\x00\x1ba\x00");
    b.extend_from_slice(&gb);
    b.extend_from_slice(b"\x1ba\x01");
    b.extend_from_slice(&thanks);
    let no = format!("{{B{:013}", 2026112200000u64 + i as u64);
    b.extend_from_slice(&[0x1d, b'k', 73, no.len() as u8]);
    b.extend_from_slice(no.as_bytes());
    b.extend_from_slice(b"\x1bd\x03\x1dVB\x03");
    b
}

/// Template parse of already-segmented receipts. Returns receipts/s.
#[inline(never)] // a symbol of its own for profilers (callgrind --toggle-collect)
fn templates(receipts: &[Receipt], rules: &ReceiptRules) -> f64 {
    let t = Stopwatch::start();
    let mut orders = 0;
    for r in receipts {
        if let Ok(Parsed::Order(o)) = rules.parse(r) {
            orders += 1;
            black_box(o);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(orders, receipts.len(), "every receipt parses to an order");
    receipts.len() as f64 / secs
}

/// Runs figure `name` unless a filter argument excludes it.
fn run(name: &str, unit: &str, f: impl Fn() -> f64) {
    // `cargo bench --bench capture -- WORD` runs the figures whose name contains
    // WORD (to profile one of them); `cargo bench` itself passes `--bench`.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|w| name.contains(w.as_str())) {
        return;
    }
    let m = median((0..runs()).map(|_| f()).collect());
    println!("{name:<52} {m:>12.1} {unit}");
}

fn main() {
    let market = std::fs::read(root("tests/fixtures/receipts/market.bin")).unwrap();
    let rules = doc_rules("market");
    let per_unit = split_bytes(&market, &rules).len();
    let with_logos = repeat_to(&market, stream_bytes());
    let text_only_unit = without_raster(&market);
    let text_only = repeat_to(&text_only_unit, stream_bytes());
    let receipts_with = with_logos.len() / market.len() * per_unit;
    let receipts_text = text_only.len() / text_only_unit.len() * per_unit;
    println!(
        "streams: market.bin ({} B, {per_unit} receipts) ×{} = {} B; without raster logos ({} B) ×{} = {} B",
        market.len(),
        with_logos.len() / market.len(),
        with_logos.len(),
        text_only_unit.len(),
        text_only.len() / text_only_unit.len(),
        text_only.len()
    );
    println!(
        "{:<52} {:>12}",
        format!("figure (median of {})", runs()),
        "value"
    );
    run("decode, GB18030 receipts with logos", "MB/s", || {
        decode(&with_logos)
    });
    run("decode, GB18030 receipts without logos", "MB/s", || {
        decode(&text_only)
    });
    run(
        "decode→segment→mask, with logos (4 KB chunks)",
        "MB/s",
        || chain(&with_logos, &rules, receipts_with),
    );
    run(
        "decode→segment→mask, without logos (4 KB chunks)",
        "MB/s",
        || chain(&text_only, &rules, receipts_text),
    );
    run(
        "decode→segment→mask, without logos (whole file)",
        "MB/s",
        || chain_file(&text_only, &rules, receipts_text),
    );

    // Built only when a template figure runs, so that profiling one figure
    // does not profile the set-up of another.
    let stream = std::cell::OnceCell::new();
    let stream =
        || -> &Vec<u8> { stream.get_or_init(|| (0..2000).flat_map(ten_item_receipt).collect()) };
    let receipts = std::cell::OnceCell::new();
    let receipts = || -> &Vec<Receipt> {
        receipts.get_or_init(|| {
            let r = split_bytes(stream(), &rules);
            assert_eq!(r.len(), 2000);
            r
        })
    };
    run(
        "template parse, 6 fields × 10 items (segmented)",
        "receipts/s",
        || templates(receipts(), &rules),
    );
    run(
        "template, 6 fields × 10 items, from bytes (decode→…→parse)",
        "receipts/s",
        || {
            let t = Stopwatch::start();
            let mut n = 0;
            for (_, p) in tillrelay::capture::receipt::parse_bytes(stream(), &rules) {
                n += matches!(p, Ok(Parsed::Order(_))) as usize;
            }
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(n, 2000);
            n as f64 / secs
        },
    );
}
