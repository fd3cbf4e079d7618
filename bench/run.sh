#!/usr/bin/env bash
# Whole-process benchmarks: the real release binary, a real SQLite file, real files.
# Prints one table. Usage: bench/run.sh [--quick]   (quick: shorter idle window)
# Figures and targets are explained in docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${1:-}
idle_secs=60
[ "$quick" = "--quick" ] && idle_secs=10

cargo build --release --locked -q
bin=$PWD/target/release/tillrelay
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

mkdir -p "$work/inbox"
cat > "$work/tillrelay.toml" <<TOML
[agent]
state_dir = "$work/state"
[outbox]
max_size = "2GB"
[[source]]
name = "lane1"
kind = "folder"
path = "$work/inbox"
shop = "D001"
machine_id = "NVR01-CH03"
settle = "200ms"
[ovopark]
enabled = true
[wdt]
enabled = true
TOML

# A process's CPU time (ms) and voluntary context switches (wake-ups), all threads.
cpu_ms() { awk '{print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"'}' "/proc/$1/stat"; }
wakeups() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# Start-to-READY: a datagram socket of our own as NOTIFY_SOCKET, timed by python.
ready_ms() {
  python3 - "$bin" "$work/tillrelay.toml" <<'PY'
import os, socket, subprocess, sys, time, tempfile
d = tempfile.mkdtemp()
path = os.path.join(d, "notify")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(30)
env = dict(os.environ, NOTIFY_SOCKET=path)
t0 = time.monotonic()
p = subprocess.Popen([sys.argv[1], "run", "--config", sys.argv[2]], env=env,
                     stderr=subprocess.DEVNULL)
while True:
    msg = s.recv(4096).decode()
    if "READY=1" in msg:
        break
print(f"{(time.monotonic() - t0) * 1000:.1f}")
p.terminate(); p.wait()
PY
}

row() { printf '%-52s %14s   %s\n' "$1" "$2" "$3"; }
printf '%-52s %14s   %s\n' "figure" "value" "target"

# Idle: nothing to do for idle_secs.
"$bin" run --config "$work/tillrelay.toml" 2>/dev/null &
pid=$!
sleep 2
c0=$(cpu_ms $pid); w0=$(wakeups $pid)
sleep "$idle_secs"
c1=$(cpu_ms $pid); w1=$(wakeups $pid)
row "RSS idle" "$(( $(rss_kb $pid) / 1024 )).$(( $(rss_kb $pid) % 1024 * 10 / 1024 )) MB" "<= 8 MB"
row "idle CPU time in ${idle_secs} s" "$(awk "BEGIN {print $c1 - $c0}") ms" "<= 20 ms (60 s)"
row "idle wake-ups in ${idle_secs} s (all threads)" "$(( w1 - w0 ))" "no busy polling"

# Fill: 10 files of 10,000 orders, 100,000 queued per destination.
python3 - "$work/inbox" <<'PY'
import json, os, sys
inbox = sys.argv[1]  # files are written beside it, then renamed in at once
for f in range(10):
    orders = []
    for i in range(10000):
        n = f * 10000 + i
        orders.append({"order_no": f"B{n:08d}", "order_time": "2026-11-22 09:15:02",
            "kind": "sale", "cashier": "张三", "payment": "wechat", "total": "70.00",
            "discount": "0.00", "paid": "70.00",
            "lines": [{"code": f"690123{l:05d}", "name": "可口可乐500ml", "qty": "2",
                       "price": "3.50", "amount": "7.00", "discount": "0"} for l in range(10)]})
    with open(os.path.join(inbox, "..", f"f{f}.json"), "w") as fh:
        json.dump(orders, fh, ensure_ascii=False)
PY
t0=$(date +%s.%N)
for f in 0 1 2 3 4 5 6 7 8 9; do mv "$work/f$f.json" "$work/inbox/"; done
until [ "$(ls "$work/inbox/done" 2>/dev/null | wc -l)" -ge 10 ]; do sleep 0.1; done
t1=$(date +%s.%N)
row "10 files × 10,000 orders → committed (with watch)" "$(awk "BEGIN {printf \"%d\", 100000 / ($t1 - $t0)}") orders/s" ">= 20,000 orders/s"
row "peak RSS while ingesting 100,000 orders" "$(( $(hwm_kb $pid) / 1024 )) MB" "<= 16 MB"
kill -TERM $pid; wait $pid || true

r=()
for _ in 1 2 3 4 5; do r+=("$(ready_ms)"); done
row "start to READY with 100,000 queued (median of 5)" "$(printf '%s\n' "${r[@]}" | sort -n | sed -n 3p) ms" "<= 200 ms"
row "queue.db with 100,000 orders" "$(( $(stat -c %s "$work/state/queue.db") / 1048576 )) MB" ""
size=$(stat -c %s "$bin")
row "stripped x86-64 release binary" "$(( size / 1024 )) KB" "(armv7: <= 6 MB)"
