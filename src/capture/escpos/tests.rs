//! Decoder tests: one `check(input, expected)` table per concern, the fixture
//! receipts, and the split-invariance / never-panic properties.

use super::*;

/// Events rendered compactly so that expectations read like the receipt.
fn render(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Line(l) => format!("line:{}", l.text),
            EventKind::Cut { partial: false } => "cut".to_string(),
            EventKind::Cut { partial: true } => "cut:partial".to_string(),
            EventKind::Code(c) => format!("{}:{}", c.symbology, c.payload),
            EventKind::DrawerKick { pin } => format!("kick:{pin}"),
            EventKind::StatusRequest { command } => format!("status:{command:02x?}"),
            EventKind::Init => "init".to_string(),
            EventKind::Unknown(b) => format!("unknown:{b:02x?}"),
        })
        .collect()
}

fn decode(page: CodePage, input: &[u8]) -> Vec<Event> {
    let mut d = Decoder::new(page);
    let mut out = Vec::new();
    d.feed(input, &mut out);
    d.finish(&mut out);
    out
}

#[track_caller]
fn check(page: CodePage, input: &[u8], expected: &[&str]) {
    assert_eq!(render(&decode(page, input)), expected, "input {input:02x?}");
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn formatting_commands_never_leak_arguments() {
    let gb = CodePage::Gb18030;
    // Printable arguments ('8', '1', '0', '@') are the dangerous ones.
    check(
        gb,
        b"\x1b!\x38A\x1bE\x01B\x1b-\x02C\x1ba\x31D\x1bM\x01E\x1bG\x01F\x1bR\x0fG\x1b2\x1b3\x40H\n",
        &["line:ABCDEFGH"],
    );
    check(
        gb,
        b"\x1d!\x11\x1dB\x01T\x1d!\x00\x1dB\x00U\n",
        &["line:TU"],
    );
    check(
        gb,
        b"\x1b$\x10\x00a\x1d$\x20\x01b\x1b\\\x05\x00c\n",
        &["line:abc"],
    );
    check(gb, b"\x1bW\x00\x00\x00\x00\x40\x02\x40\x02x\n", &["line:x"]);
    check(gb, b"\x1bc3\x0f\x1bc4\x00\x1bc5\x01y\n", &["line:y"]);
    check(gb, b"\x1bC\x00\x0bz\x1bC\x20w\n", &["line:zw"]);
    check(gb, b"\x1bD\x08\x10\x18\x00q\n", &["line:q"]);
    check(
        gb,
        b"\x1dH\x02\x1dh\x50\x1dw\x03\x1df\x00\x1dL\x00\x00\x1dW\x00\x02k\n",
        &["line:k"],
    );
    check(
        gb,
        b"\x1b{\x01\x1bV\x01\x1bT\x00\x1bU\x01\x1b \x05s\n",
        &["line:s"],
    );
}

#[test]
fn printing_commands_end_lines_with_text_only() {
    let gb = CodePage::Gb18030;
    check(
        gb,
        b"abc\x1bd\x05def\x1bJ\x30\n",
        &["line:abc", "line:def", "line:"],
    );
    check(gb, b"\x1bd\x03\x1bJ\x10\x1be\x01", &[]);
    check(gb, b"a\x0cb\r\n\n", &["line:a", "line:b", "line:"]);
    check(gb, b"a\tb\r\n", &["line:a\tb"]);
    check(
        gb,
        b"no newline at the end",
        &["line:no newline at the end"],
    );
    // Other C0 controls and DEL print nothing.
    check(gb, b"a\x00\x07\x7fb\n", &["line:ab"]);
}

#[test]
fn cuts_in_every_form() {
    let gb = CodePage::Gb18030;
    check(gb, b"\x1dV\x00X\n", &["cut", "line:X"]);
    check(gb, b"\x1dV\x01X\n", &["cut:partial", "line:X"]);
    check(gb, b"\x1dV0X\n", &["cut", "line:X"]);
    check(gb, b"\x1dV1X\n", &["cut:partial", "line:X"]);
    check(gb, b"\x1dVA\x05X\n", &["cut", "line:X"]);
    check(gb, b"\x1dVB\x05X\n", &["cut:partial", "line:X"]);
    check(gb, b"\x1dVa\x05X\n", &["cut", "line:X"]);
    check(gb, b"\x1dVb\x05X\n", &["cut:partial", "line:X"]);
    check(gb, b"\x1dVg\x05X\n", &["cut", "line:X"]);
    check(gb, b"\x1dVh\x05X\n", &["cut:partial", "line:X"]);
    check(gb, b"\x1bi\x1bmX\n", &["cut", "cut:partial", "line:X"]);
    // Text before a cut without a line feed belongs before the cut.
    check(gb, b"tail\x1dVA\x00", &["line:tail", "cut"]);
}

#[test]
fn images_are_skipped_by_length_even_when_they_contain_controls() {
    let gb = CodePage::Gb18030;
    // GS v 0: 2 bytes wide, 3 rows = 6 bytes holding LF, ESC, GS.
    check(
        gb,
        b"\x1dv0\x00\x02\x00\x03\x00\x0a\x1b\x1d\x40\x0a\x56A\n",
        &["line:A"],
    );
    // ESC * 24-dot (m = 33): 2 columns of 3 bytes.
    check(
        gb,
        b"\x1b*\x21\x02\x00\x0a\x0a\x1bi\x0a\x0aB\n",
        &["line:B"],
    );
    // ESC * 8-dot (m = 0): 3 columns of 1 byte.
    check(gb, b"\x1b*\x00\x03\x00\x0a\x1dVC\n", &["line:C"]);
    // GS ( L with a 5-byte body, GS 8 L with a 4-byte length.
    check(gb, b"\x1d(L\x05\x000p0\x0a\x0aD\n", &["line:D"]);
    check(gb, b"\x1d8L\x03\x00\x00\x000p\x0aE\n", &["line:E"]);
    // GS * x y: x*y*8 bytes.
    check(
        gb,
        &cat(&[b"\x1d*\x01\x01", &[0x0a; 8], b"F\n"]),
        &["line:F"],
    );
    // ESC & y c1 c2 (x d…)…: two characters of width 1, y = 3.
    check(
        gb,
        b"\x1b&\x03AB\x01\x0a\x0a\x0a\x02\x0a\x0a\x0a\x0a\x0a\x0aG\n",
        &["line:G"],
    );
    // FS q: one NV image of 1×1 (8 bytes); FS p prints it; FS 2: 72 bytes.
    check(
        gb,
        &cat(&[
            b"\x1cq\x01\x01\x00\x01\x00",
            &[0x0a; 8],
            b"\x1cp\x01\x00H\n",
        ]),
        &["line:H"],
    );
    check(
        gb,
        &cat(&[b"\x1c2\xfe\xa1", &[0x0a; 72], b"I\n"]),
        &["line:I"],
    );
    // ESC ( A / FS ( C blocks.
    check(
        gb,
        b"\x1b(A\x04\x000a\x0a\x0aJ\x1c(C\x02\x000\x01K\n",
        &["line:JK"],
    );
}

#[test]
fn barcodes_keep_their_payload() {
    let gb = CodePage::Gb18030;
    check(gb, b"\x1dk\x026901234567892\x00", &["ean13:6901234567892"]);
    check(gb, b"\x1dkC\x0d6901234567892", &["ean13:6901234567892"]);
    check(gb, b"\x1dkI\x05{B123", &["code128:123"]);
    // Code set C carries two digits per byte.
    check(gb, b"\x1dkI\x06{C\x14\x1a\x0b\x16", &["code128:20261122"]);
    check(gb, b"\x1dkI\x06{A{{ab", &["code128:{ab"]);
    // A barcode ends the line before it.
    check(
        gb,
        b"x\x1dk\x04A1\x00y\n",
        &["line:x", "code39:A1", "line:y"],
    );
}

#[test]
fn two_d_codes_are_reported_when_printed() {
    let gb = CodePage::Gb18030;
    let qr = b"\x1d(k\x04\x001A2\x00\x1d(k\x03\x001C\x06\x1d(k\x08\x001P0hello\x1d(k\x03\x001Q0";
    check(gb, qr, &["qr:hello"]);
    // Stored but never printed: nothing.
    check(gb, b"\x1d(k\x08\x001P0hello", &[]);
    // PDF417 (cn = 48) and a UTF-8 payload.
    let mut pdf = b"\x1d(k\x09\x000P0".to_vec();
    pdf.extend_from_slice("红牛".as_bytes());
    pdf.extend_from_slice(b"\x1d(k\x03\x000Q0");
    // 3 + 6 bytes of UTF-8 = pL 9.
    check(gb, &pdf, &["pdf417:红牛"]);
    // ESC Z prints at once, as the GS Z selection (QR unless told).
    check(gb, b"\x1bZ\x00L\x06\x03\x00abc", &["qr:abc"]);
    check(gb, b"\x1dZ\x00\x1bZ\x00L\x06\x03\x00abc", &["pdf417:abc"]);
}

#[test]
fn drawer_kicks_and_status_requests() {
    let gb = CodePage::Gb18030;
    check(gb, b"\x1bp\x00\x19\xfa", &["kick:0"]);
    check(gb, b"\x1bp1\x19\xfa", &["kick:1"]);
    check(gb, b"\x10\x14\x01\x01\x03", &["kick:1"]);
    check(gb, b"\x10\x04\x01", &["status:[10, 04, 01]"]);
    check(
        gb,
        b"\x10\x04\x07\x01X\n",
        &["status:[10, 04, 07]", "line:X"],
    );
    check(
        gb,
        b"\x10\x05\x02\x1dr\x01\x1bv\x1bu\x00",
        &[
            "status:[10, 05, 02]",
            "status:[1d, 72, 01]",
            "status:[1b, 76, 00]",
            "status:[1b, 75, 00]",
        ],
    );
    // DLE DC4 8 (clear buffer) takes seven bytes, and a lone DLE is ignored.
    check(
        gb,
        b"\x10\x14\x08\x01\x03\x14\x01\x06\x02\x08A\x10B\n",
        &["line:AB"],
    );
}

#[test]
fn init_resets_the_code_page() {
    let cp437 = CodePage::Single(SingleByte::Cp437);
    check(
        cp437,
        b"\x9b\x1bt\x02\x9b\x1b@\x9b\n",
        &["line:¢ø", "init", "line:¢"],
    );
    // Text pending at ESC @ is kept (a capture must not lose what the POS sent).
    check(cp437, b"abc\x1b@d\n", &["line:abc", "init", "line:d"]);
}

#[test]
fn text_in_each_code_page() {
    let gb = CodePage::Gb18030;
    // GB18030 is on without any ESC t, as on Chinese printers.
    check(gb, b"\xb5\xa5\xba\xc5: 1\n", &["line:单号: 1"]);
    let (four, _, _) = encoding_rs::GB18030.encode("𠀀é");
    check(gb, &cat(&[&four, b"\n"]), &["line:𠀀é"]);
    check(gb, b"\x80\n", &["line:€"]);
    // FS . leaves Chinese mode for the ESC t table; FS & returns.
    check(gb, b"\x1c.\x1bt\x13\xd5\xb5\x1c&\xb5\xa5\n", &["line:€Á单"]);
    // ESC t selects its table under a multibyte base too (Chinese mode off)…
    check(gb, b"\x1bt\x13M\x81ller\n", &["line:Müller"]);
    check(CodePage::Utf8, b"\x1bt\x13M\x81ller\n", &["line:Müller"]);
    // … until FS & turns Chinese mode on again, and ESC @ restores the base.
    check(
        gb,
        b"\x1bt\x13\x81\x1c&\xb5\xa5\x1b@\xb5\xa5\n",
        &["line:ü单", "init", "line:单"],
    );
    // ESC t 0 (driver boilerplate) leaves Chinese mode on.
    check(gb, b"\x1b@\x1bt\x00\xb5\xa5\n", &["init", "line:单"]);
    check(
        CodePage::Utf8,
        "红牛250ml\n".as_bytes(),
        &["line:红牛250ml"],
    );
    let (big5, _, _) = encoding_rs::BIG5.encode("總計");
    check(CodePage::Big5, &cat(&[&big5, b"\n"]), &["line:總計"]);
    let cp858 = CodePage::Single(SingleByte::Cp858);
    check(cp858, b"\xd5 \x9c\n", &["line:€ £"]);
    check(CodePage::Single(SingleByte::Cp437), b"\xd5\n", &["line:╒"]);
    check(
        CodePage::Single(SingleByte::Windows1252),
        b"\x80\xe9\n",
        &["line:€é"],
    );
    // ESC t with every supported number decodes; an unknown one says so.
    let w1251 = CodePage::Single(SingleByte::Cp437);
    check(w1251, b"\x1bt\x2e\xc4\xe0\n", &["line:Да"]);
    check(w1251, b"\x1bt\x11\x80\n", &["line:А"]);
    check(
        w1251,
        b"\x1bt\xc8\x9b\n",
        &["unknown:[1b, 74, c8]", "line:¢"],
    );
}

#[test]
fn malformed_multibyte_text_never_swallows_commands() {
    let gb = CodePage::Gb18030;
    // A lead byte followed by LF / ESC: U+FFFD, and the control still works.
    check(gb, b"\xb5\nX\n", &["line:\u{FFFD}", "line:X"]);
    check(gb, b"\xb5\x1dV\x00", &["line:\u{FFFD}", "cut"]);
    // A broken four-byte sequence gives back its ASCII digit.
    check(gb, b"\x81\x30\n", &["line:\u{FFFD}0"]);
    check(gb, b"\x81\x30\x81\x0a", &["line:\u{FFFD}0\u{FFFD}"]);
    let utf8 = CodePage::Utf8;
    check(
        utf8,
        b"\xe7\xba\nA\xff\n",
        &["line:\u{FFFD}", "line:A\u{FFFD}"],
    );
    // Truncated at the very end.
    check(utf8, b"ok\xe7", &["line:ok\u{FFFD}"]);
}

#[test]
fn unknown_commands_resynchronise() {
    let gb = CodePage::Gb18030;
    // Unknown ESC ^ with two control-byte arguments.
    check(gb, b"\x1b^\x01\x02X\n", &["unknown:[1b, 5e]", "line:X"]);
    check(gb, b"\x1dz\x00Y\n", &["unknown:[1d, 7a]", "line:Y"]);
    check(gb, b"\x1cz\x00Z\n", &["unknown:[1c, 7a]", "line:Z"]);
    // A stray introducer before a control: the control still counts.
    check(gb, b"a\x1d\nb\n", &["unknown:[1d]", "line:a", "line:b"]);
    check(gb, b"a\x1b\x1b@", &["unknown:[1b]", "line:a", "init"]);
}

#[test]
fn offsets_point_at_the_raw_bytes() {
    let input = b"\x1b@\xb5\xa5A\n\x1dV\x00";
    let events = decode(CodePage::Gb18030, input);
    let EventKind::Line(line) = &events[1].kind else {
        panic!("{events:?}")
    };
    assert_eq!(line.text, "单A");
    assert_eq!(line.offsets.iter().collect::<Vec<_>>(), [2, 4]);
    assert_eq!(events[1].end, 6, "the line ends after its LF");
    assert_eq!(events[2].end, 9, "the cut ends after GS V 0");
    let code = decode(CodePage::Gb18030, b"xx\x1dkI\x05{B123");
    let EventKind::Code(c) = &code[1].kind else {
        panic!("{code:?}")
    };
    assert_eq!(c.data_offset, 6);
    assert_eq!(c.data, b"{B123");
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/receipts")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn market_fixture_decodes_to_its_receipt_text() {
    let raw = fixture("market.bin");
    let events = decode(CodePage::Gb18030, &raw);
    let r = render(&events);
    // Four receipts, each closed by GS V B 3 and carrying its CODE128 barcode.
    assert_eq!(
        r.iter().filter(|s| *s == "cut:partial").count(),
        4,
        "{r:#?}"
    );
    let codes: Vec<_> = r.iter().filter(|s| s.starts_with("code128:")).collect();
    assert_eq!(
        codes,
        [
            "code128:2026112200013",
            "code128:2026112200014",
            "code128:2026112200013",
            "code128:2026112200015"
        ]
    );
    assert_eq!(r.iter().filter(|s| *s == "kick:0").count(), 2);
    assert_eq!(r.iter().filter(|s| *s == "init").count(), 4);
    for want in [
        "line:鲜丰超市(人民路店)",
        "line:单号: 2026112200013",
        "line:收银员: 张三   机号: 03",
        "line:散装苹果(称重)",
        "line:2000001000012   0.856  12.80  10.96",
        "line:**重打印**",
        "line:退货单",
        "line:6902538005141      -1  59.90 -59.90",
    ] {
        assert!(r.iter().any(|s| s == want), "missing {want:?} in {r:#?}");
    }
    // Nothing of the raster logo leaks: every line is printable text.
    for e in &events {
        if let EventKind::Line(l) = &e.kind {
            assert!(!l.text.contains('\u{FFFD}'), "garbage in {:?}", l.text);
        }
    }
    // Each cut ends exactly after its GS V B n bytes.
    for e in events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Cut { .. }))
    {
        let end = e.end as usize;
        assert_eq!(&raw[end - 4..end], b"\x1dVB\x03");
    }
}

#[test]
fn kiosk_fixture_decodes_to_its_receipt_text() {
    let r = render(&decode(CodePage::Utf8, &fixture("kiosk.bin")));
    assert_eq!(
        r,
        [
            "init",
            "line:便利蜂 #1024",
            "line:订单号 A10240000123",
            "line:2026/11/22 21:03:44  收银 李四",
            "line:关东煮套餐 [1002003] x1 @12.00 = 12.00",
            "line:红牛250ml [6920202888883] x2 @6.50 = 13.00",
            "line:总计 25.00  支付宝 25.00",
            "qr:https://example.invalid/r/A10240000123",
            "line:",
            "cut",
            "init",
            "line:便利蜂 #1024",
            "line:订单号 A10240000124",
            "line:2026/11/22 21:05:09  收银 李四",
            "line:乐事薯片原味75g [6954767423579] x3 @8.90 = 26.70",
            "line:总计 26.70  支付宝 26.70",
            "qr:https://example.invalid/r/A10240000124",
            "line:",
            "cut",
        ]
    );
}

/// Feeds `input` in random pieces (some a single byte) and returns the events.
fn decode_split(page: CodePage, input: &[u8], rng: &mut fastrand::Rng) -> Vec<Event> {
    let mut d = Decoder::new(page);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = match rng.u8(..4) {
            0 => 1,
            1 => rng.usize(1..=3),
            _ => rng.usize(1..=rest.len().min(64)),
        }
        .min(rest.len());
        d.feed(&rest[..n], &mut out);
        rest = &rest[n..];
    }
    d.finish(&mut out);
    out
}

/// A random stream that is mostly meaningful: commands this decoder knows, with
/// random arguments, text in the code page, and raw random bytes in between.
fn plausible_stream(rng: &mut fastrand::Rng) -> Vec<u8> {
    let pieces: &[&[u8]] = &[
        b"\x1b@",
        b"\x1b!",
        b"\x1bE",
        b"\x1ba",
        b"\x1bd",
        b"\x1bJ",
        b"\x1bt",
        b"\x1bp",
        b"\x1b*",
        b"\x1bi",
        b"\x1bm",
        b"\x1b&",
        b"\x1bD",
        b"\x1bZ",
        b"\x1b(A",
        b"\x1d!",
        b"\x1dB",
        b"\x1dV",
        b"\x1dv0",
        b"\x1dk",
        b"\x1d(k",
        b"\x1d8L",
        b"\x1d*",
        b"\x1c&",
        b"\x1c.",
        b"\x1cq",
        b"\x1c2",
        b"\x10\x04",
        b"\x10\x05",
        b"\x10\x14",
        b"\n",
        b"\r\n",
        b"\t",
        "单号: ".as_bytes(),
        b"\xb5\xa5\xba\xc5",
        b"\x81\x30\x81\x30",
        "红牛".as_bytes(),
        b"TOTAL 12.50",
    ];
    let mut s = Vec::new();
    for _ in 0..rng.usize(1..80) {
        s.extend_from_slice(pieces[rng.usize(..pieces.len())]);
        // Small arguments keep variable-length commands short enough to end.
        for _ in 0..rng.usize(0..4) {
            s.push(if rng.bool() { rng.u8(..8) } else { rng.u8(..) });
        }
    }
    s
}

#[test]
fn any_split_of_the_same_stream_decodes_identically() {
    let mut rng = fastrand::Rng::with_seed(0x7111_4e1a);
    let pages = [
        CodePage::Gb18030,
        CodePage::Utf8,
        CodePage::Big5,
        CodePage::Single(SingleByte::Cp858),
    ];
    let mut streams: Vec<(CodePage, Vec<u8>)> = vec![
        (CodePage::Gb18030, fixture("market.bin")),
        (CodePage::Utf8, fixture("kiosk.bin")),
    ];
    for i in 0..300 {
        let page = pages[i % pages.len()];
        let stream = if i % 3 == 0 {
            let mut s = vec![0u8; rng.usize(0..2048)];
            rng.fill(&mut s);
            s
        } else {
            plausible_stream(&mut rng)
        };
        streams.push((page, stream));
    }
    for (page, stream) in &streams {
        let whole = decode(*page, stream);
        for _ in 0..8 {
            let split = decode_split(*page, stream, &mut rng);
            assert_eq!(split, whole, "{page:?} stream {stream:02x?}");
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic_and_keep_the_offset_invariants() {
    let mut rng = fastrand::Rng::with_seed(42);
    for round in 0..400 {
        let mut stream = vec![0u8; rng.usize(0..4096)];
        rng.fill(&mut stream);
        if round % 2 == 0 {
            stream = plausible_stream(&mut rng);
        }
        for page in [
            CodePage::Gb18030,
            CodePage::Utf8,
            CodePage::Single(SingleByte::Cp437),
        ] {
            let mut d = Decoder::new(page);
            let mut events = Vec::new();
            d.feed(&stream, &mut events);
            d.finish(&mut events);
            assert_eq!(d.position(), stream.len() as u64);
            let mut last = 0;
            for e in &events {
                assert!(e.end >= last && e.end <= d.position(), "{e:?}");
                last = e.end;
                if let EventKind::Line(l) = &e.kind {
                    assert_eq!(l.offsets.len(), l.text.chars().count());
                    let offsets: Vec<u64> = l.offsets.iter().collect();
                    assert!(offsets.iter().all(|&o| o < e.end));
                    assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
                }
                if let EventKind::Code(c) = &e.kind {
                    assert!(c.data.len() <= MAX_PAYLOAD);
                }
            }
        }
    }
}

#[test]
fn endless_garbage_is_cut_into_bounded_lines() {
    let events = decode(CodePage::Gb18030, &vec![b'x'; MAX_LINE_CHARS * 2 + 5]);
    let lens: Vec<usize> = events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Line(l) => l.text.len(),
            _ => 0,
        })
        .collect();
    assert_eq!(lens, [MAX_LINE_CHARS, MAX_LINE_CHARS, 5]);
}

#[test]
fn status_polls_are_not_activity() {
    let mut d = Decoder::new(CodePage::Gb18030);
    let mut out = Vec::new();
    d.feed(
        b"\x10\x04\x01\x10\x04\x07\x01\x10\x14\x01\x00\x01",
        &mut out,
    );
    assert_eq!(d.activity(), 0);
    d.feed(b"\x1b@a", &mut out);
    assert_eq!(d.activity(), 3);
}

#[test]
fn code_page_names_round_trip() {
    for name in [
        "gb18030",
        "GBK",
        "utf-8",
        "UTF8",
        "big5",
        "cp437",
        "cp858",
        "windows-1252",
        "cp866",
    ] {
        let page = CodePage::parse(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(CodePage::parse(page.name()), Some(page), "{name}");
    }
    assert_eq!(CodePage::parse("gbk"), Some(CodePage::Gb18030));
    assert_eq!(CodePage::parse("ebcdic"), None);
}

/// Reference decoding: every byte through the byte-at-a-time state machine,
/// none of the bulk runs of [`Decoder::feed`].
fn decode_bytewise(page: CodePage, input: &[u8]) -> Vec<Event> {
    let mut d = Decoder::new(page);
    let mut out = Vec::new();
    for &b in input {
        d.step_one(b, &mut out);
    }
    d.finish(&mut out);
    assert_eq!(d.position(), input.len() as u64);
    out
}

#[test]
fn bulk_runs_decode_exactly_as_byte_at_a_time() {
    // The cases where a bulk run must stop or give way: sequences that are
    // whole but do not decode (GB18030 four-byte pointers out of range, UTF-8
    // overlongs and surrogates), a Big5 pair that decodes to two characters,
    // lines at the length limit in multibyte text, images and payloads.
    let long_gb = "长".repeat(MAX_LINE_CHARS + 3);
    let long_utf8 = "é".repeat(MAX_LINE_CHARS - 1);
    let edge: &[&[u8]] = &[
        b"\x84\x31\xa5\x30",
        b"\xfe\x39\xfe\x39",
        b"\x81\x30\x81\x30",
        b"\x80\xff",
        b"\xe0\x80\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\x88\x62\x88\x64",
        long_gb.as_bytes(),
        long_utf8.as_bytes(),
        b"\x1dv0\x00\x02\x00\x03\x00\x1b\x1d\x0a\x80\x81\x40",
        b"\x1d(k\x06\x001P0abc\x1d(k\x03\x001Q0",
        b"\x1dkI\x05{B123",
    ];
    let mut rng = fastrand::Rng::with_seed(0xb01c);
    let mut streams = vec![fixture("market.bin"), fixture("kiosk.bin")];
    for i in 0..400 {
        let mut s = plausible_stream(&mut rng);
        for _ in 0..rng.usize(0..6) {
            let at = rng.usize(..=s.len());
            let piece = edge[rng.usize(..edge.len())];
            s.splice(at..at, piece.iter().copied());
        }
        if i % 4 == 0 {
            let mut noise = vec![0u8; rng.usize(0..2048)];
            rng.fill(&mut noise);
            s.extend_from_slice(&noise);
        }
        streams.push(s);
    }
    let pages = [
        CodePage::Gb18030,
        CodePage::Utf8,
        CodePage::Big5,
        CodePage::Single(SingleByte::Cp858),
        CodePage::Single(SingleByte::Windows1251),
    ];
    for stream in &streams {
        for page in pages {
            assert_eq!(
                decode(page, stream),
                decode_bytewise(page, stream),
                "{page:?} stream {stream:02x?}"
            );
        }
    }
}
