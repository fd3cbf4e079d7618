#!/usr/bin/env bash
# Whole-process benchmarks: the real release binary, a real SQLite file, real files,
# the clouds' emulators on loopback. Prints one table.
#   bench/run.sh            full run (60 s idle window, 100,000-order backlog)
#   bench/run.sh --quick    10 s idle window, 10,000-order backlog
# Each figure is explained in docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
idle_secs=60
backlog=100000
if [ "${1:-}" = "--quick" ]; then idle_secs=10; backlog=10000; fi
files=$(( backlog / 10000 ))

cargo build --release --locked -q
bin=$PWD/target/release/tillrelay
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
mkdir -p "$work/inbox"
write_config() { # $1: state dir name
  cat > "$work/tillrelay.toml" <<TOML
[agent]
state_dir = "$work/$1"
[outbox]
max_size = "2GB"
[[source]]
name = "lane1"
kind = "folder"
path = "$work/inbox"
shop = "D001"
machine_id = "NVR01-CH03"
settle = "200ms"
TOML
  # the emulator's demo tenant (the configuration `tillrelay emulate` prints)
  cat >> "$work/tillrelay.toml" <<TOML

[ovopark]
url = "$base/cloud.api"
aid = "S107"
akey = "demo-akey"
secret = "demo-ovopark-secret"
org_id = "1001"
enterprise_id = "2001"
shop_id = "D001"
timeout_secs = 5

[wdt]
url = "$base/openapi"
sid = "demo-sid"
key = "demo-key"
secret = "demo-wdt-secret:demo-salt"
shop_no = "SHOP1"
receiver_name = "演示门店"
receiver_area = "上海 上海市 徐汇区"
receiver_address = "漕溪北路1号"
receiver_mobile = "13800000000"
timeout_secs = 5
TOML
}

cpu_ms() { awk '{print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"'}' "/proc/$1/stat"; }
wakeups() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}'; }
kb() { awk "/^$2/ {print \$2}" "/proc/$1/status"; }
mb() { awk "BEGIN {printf \"%.1f MB\", $1 / 1024}"; }
now() { date +%s.%N; }
delivered() { # $1: destination
  "$bin" status --json --config "$work/tillrelay.toml" 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(next((x["delivered"] for x in d["destinations"] if x["name"]==sys.argv[1]), 0))' "$1" 2>/dev/null || echo 0
}
start_emulator() { "$bin" emulate --listen "127.0.0.1:$port" >/dev/null 2>&1 & emu=$!; pids+=("$emu"); sleep 0.3; }
start_agent() { "$bin" run --config "$work/tillrelay.toml" 2>/dev/null & agent=$!; pids+=("$agent"); }
stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

# Orders: 10 lines each, like a supermarket receipt. Written beside the inbox, moved in at once.
make_orders() { # $1: count of files of 10,000, $2: first order number, $3: orders per file
  python3 - "$work" "$1" "$2" "$3" <<'PY'
import json, os, sys
work, nfiles, first, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for f in range(nfiles):
    orders = []
    for i in range(per):
        n = first + f * per + i
        orders.append({"order_no": f"B{n:08d}", "order_time": "2026-11-22 09:15:02",
            "kind": "sale", "cashier": "张三", "payment": "wechat", "total": "70.00",
            "discount": "0.00", "paid": "70.00",
            "lines": [{"code": f"690123{l:05d}", "name": "可口可乐500ml", "qty": "2",
                       "price": "3.50", "amount": "7.00", "discount": "0"} for l in range(10)]})
    with open(os.path.join(work, f"b{first}-{f}.json"), "w") as fh:
        json.dump(orders, fh, ensure_ascii=False)
PY
}

row() { printf '%-58s %16s   %s\n' "$1" "$2" "$3"; }
printf '%-58s %16s   %s\n' "figure (x86-64, this machine)" "value" "target"

# 1. Idle: both destinations up, nothing to do.
write_config state
start_emulator
start_agent
sleep 3
c0=$(cpu_ms "$agent"); w0=$(wakeups "$agent")
sleep "$idle_secs"
c1=$(cpu_ms "$agent"); w1=$(wakeups "$agent")
row "RSS idle" "$(mb "$(kb "$agent" VmRSS)")" "<= 8 MB"
row "idle: CPU time in ${idle_secs} s" "$(awk "BEGIN {print $c1 - $c0}") ms" "<= 20 ms / 60 s"
row "idle: wake-ups in ${idle_secs} s (all threads)" "$(( w1 - w0 ))" "no busy polling"
stop "$agent"; stop "$emu"

# 2. Capture a backlog while the clouds are unreachable.
write_config backlog
make_orders "$files" 0 10000
start_agent
sleep 1
t0=$(now)
for f in "$work"/b0-*.json; do mv "$f" "$work/inbox/"; done
until [ "$(ls "$work/inbox/done" 2>/dev/null | wc -l)" -ge "$files" ]; do sleep 0.05; done
t1=$(now)
row "folder: $files × 10,000 orders → committed (real agent)" "$(awk "BEGIN {printf \"%d orders/s\", $backlog / ($t1 - $t0)}")" ">= 20,000 orders/s"
row "peak RSS while capturing them" "$(mb "$(kb "$agent" VmHWM)")" ""
stop "$agent"

# 3. Start to READY with the backlog queued.
r=()
for _ in 1 2 3 4 5; do
  r+=("$(python3 - "$bin" "$work/tillrelay.toml" <<'PY'
import os, socket, subprocess, sys, time, tempfile
path = os.path.join(tempfile.mkdtemp(), "notify")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(path); s.settimeout(30)
t0 = time.monotonic()
p = subprocess.Popen([sys.argv[1], "run", "--config", sys.argv[2]],
                     env=dict(os.environ, NOTIFY_SOCKET=path), stderr=subprocess.DEVNULL)
while b"READY=1" not in s.recv(4096): pass
print(f"{(time.monotonic() - t0) * 1000:.1f}")
p.kill(); p.wait()
PY
)")
done
row "start to READY with $backlog queued (median of 5)" "$(printf '%s\n' "${r[@]}" | sort -n | sed -n 3p) ms" "<= 200 ms"

# 4. Drain the backlog: the clouds come back.
start_emulator
start_agent
t0=$(now); tw=""; to=""
while [ -z "$tw" ] || [ -z "$to" ]; do
  sleep 0.25
  [ -z "$tw" ] && [ "$(delivered wdt)" -ge "$backlog" ] && tw=$(now)
  [ -z "$to" ] && [ "$(delivered ovopark)" -ge "$backlog" ] && to=$(now)
done
row "backlog of $backlog → Wangdiantong emulator (batches of 100)" "$(awk "BEGIN {printf \"%d orders/s\", $backlog / ($tw - $t0)}")" ">= 5,000 orders/s"
row "backlog of $backlog → Ovopark emulator (1 per request)" "$(awk "BEGIN {printf \"%d orders/s\", $backlog / ($to - $t0)}")" ">= 1,000 orders/s"
row "peak RSS while draining $backlog" "$(mb "$(kb "$agent" VmHWM)")" "<= 16 MB"
stop "$agent"; stop "$emu"

# 5. The same with 1,000 queued, for the memory comparison.
write_config small
make_orders 1 900000 1000
start_agent; sleep 1
mv "$work"/b900000-0.json "$work/inbox/"
until [ "$(ls "$work/inbox/done" 2>/dev/null | wc -l)" -ge "$(( files + 1 ))" ]; do sleep 0.05; done
stop "$agent"
start_emulator; start_agent
until [ "$(delivered ovopark)" -ge 1000 ] && [ "$(delivered wdt)" -ge 1000 ]; do sleep 0.25; done
row "peak RSS while draining 1,000" "$(mb "$(kb "$agent" VmHWM)")" "within 2 MB of the above"
stop "$agent"; stop "$emu"

row "queue.db with $backlog orders (10 lines each)" "$(( $(stat -c %s "$work/backlog/queue.db") / 1048576 )) MB" ""
row "stripped x86-64 release binary" "$(( $(stat -c %s "$bin") / 1024 )) KB" "(armv7 in docs/BOX.md)"
