#!/usr/bin/env bash
# Rebuilds the seed corpora in fuzz/corpus/ from the project's own fixtures
# (tests/fixtures) and from reply shapes copied out of the cloud specs. The seeds
# are committed; run this only after the fixtures change.
#
# The decoder and receipt targets read a 9-byte header before the stream: one
# selector byte (code page / template) and eight bytes seeding the feed split.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fx="$here/../tests/fixtures"
c="$here/corpus"
# Inputs that once crashed a target (regress-*) stay: they are seeds too.
[ -d "$c" ] && find "$c" -type f ! -name 'regress-*' -delete
mkdir -p "$c"/{escpos_decode,receipt_template,csv_reader,json_reader,ovopark_response,wdt_response}

seed='\x2a\x5e\x11\x93\x07\xc4\x3b\x01'
hdr() { printf "\\x$(printf %02x "$1")$seed"; }

# Decoder: the fixtures in their own code pages (0 = GB18030, 1 = UTF-8), and the
# market receipt read as CP437 (3): text in the wrong code page is still input.
{ hdr 0; cat "$fx/receipts/market.bin"; } >"$c/escpos_decode/market-gb18030"
{ hdr 1; cat "$fx/receipts/kiosk.bin"; } >"$c/escpos_decode/kiosk-utf8"
{ hdr 3; cat "$fx/receipts/market.bin"; } >"$c/escpos_decode/market-cp437"
{ hdr 2; printf '\x1b@\x1c&\xa5\x5b\xa4\xe9 9.50\n\x1dV\x41\x03'; } >"$c/escpos_decode/big5-cut"
# Length-prefixed commands claiming the most their fields can say, each followed by
# a receipt (issue #24: a GS 8 L header claiming 2 GiB silenced a stream).
{ hdr 0; for h in '\x1d8L\x00\x00\x00\x80\x30\x70' '\x1dv0\x00\xff\xff\xff\xff' \
    '\x1d(L\xff\xff' '\x1d(k\xff\xff' '\x1d*\xff\xff' '\x1b*\x21\xff\xff' \
    '\x1b&\xff\x20\x7e\xff' '\x1bZ\x00\x00\x00\xff\xff' '\x1cq\x01\xff\xff\xff\xff'; do
    printf "$h"'TOTAL 9.50\n\x1dV\x00'; done; } >"$c/escpos_decode/absurd-lengths"

# Receipt chain: 0 = market template, 1 = kiosk template.
{ hdr 0; cat "$fx/receipts/market.bin"; } >"$c/receipt_template/market"
{ hdr 1; cat "$fx/receipts/kiosk.bin"; } >"$c/receipt_template/kiosk"
{ hdr 0; printf '\x1d8L\x00\x00\x00\x80\x30\x70'; cat "$fx/receipts/market.bin"; } \
    >"$c/receipt_template/market-after-gs8l"

# CSV: the GBK export as shipped, and the same text in UTF-8 (with a BOM, as
# Windows tools write it).
cp "$fx/exports/sales_20261122_1122.csv" "$c/csv_reader/sales-gbk.csv"
{ printf '\xef\xbb\xbf'; iconv -f GB18030 -t UTF-8 "$fx/exports/sales_20261122_1122.csv"; } \
    >"$c/csv_reader/sales-utf8-bom.csv"

# JSON: the export (an array) and its first order alone (an object).
cp "$fx/exports/orders-20261122-1005.json" "$c/json_reader/orders.json"
cp "$fx/receipts/market.expected.json" "$c/json_reader/market-orders.json"
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))[0], ensure_ascii=False))' \
    "$fx/exports/orders-20261122-1005.json" >"$c/json_reader/one-order.json"

# Replies: STATUS, header lines, a blank line, the body (see fuzz/src/lib.rs `reply`).
date='Date: Sun, 22 Nov 2026 02:05:00 GMT'
o="$c/ovopark_response"
printf '200\n%s\n\n{"stat": {"cid": "c1", "code": "0", "codename": "SUCCESS", "systime": "2026-11-22 10:05:00"}, "result": "ok", "data": {}}' "$date" >"$o/success"
printf '200\n\n{"stat": {"cid": "c2", "code": "208003", "codename": "ORDER_NUMBER_DUPLICATION", "systime": "1795313100000"}, "result": "duplicate", "data": {}}' >"$o/duplicate"
printf '200\n%s\n\n{"stat": {"cid": "c3", "code": "16", "codename": "TIMESTAMP_OVERTIME", "systime": "1795313100"}, "data": {}}' "$date" >"$o/timestamp"
printf '200\n\n{"stat": {"code": "0", "codename": "SUCCESS"}, "data": {"code": "206003", "message": "shop not found"}}' >"$o/data-code"
printf '200\n\n{"stat": {"code": -100, "codename": "API_CALL_REPEAT"}}' >"$o/repeat"
printf '503\nRetry-After: 120\n%s\n\n<html>busy</html>' "$date" >"$o/busy"
printf '200\n\n{"stat": {"code": "0"}, "data": [{"orgId": 1, "enterpriseId": "E1"}]}' >"$o/business-org"

w="$c/wdt_response"
printf '200\n%s\n\n{"status": 0, "data": {"chg_count": 0, "new_count": 1}}' "$date" >"$w/success"
printf '200\n\n{"status": 0, "data": {"chg_count": 0, "new_count": 1, "error_list": [{"no": "T2", "error": "bad goods"}]}}' >"$w/error-list"
printf '200\n\n{"status": 100, "message": "店铺编号不存在或已停用"}' >"$w/shop"
printf '200\n\n{"status": 100, "message": "超过每分钟最大调用频率限制"}' >"$w/rate-limit"
printf '200\n\n{"status": 100, "message": "数量不合法"}' >"$w/data-error"
printf '200\n%s\n\n{"status": "7", "message": "timestamp"}' "$date" >"$w/timestamp"
printf '429\nRetry-After: 30\n\n' >"$w/too-many"
