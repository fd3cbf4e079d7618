#!/usr/bin/env bash
# The folder-capture figures of bench/run.sh alone, repeated, for iterating on capture:
# one 10,000-order JSON export (10 lines per order, ~5 MB) dropped into the watched
# folder of the real release agent (both clouds configured but unreachable, as in
# bench/run.sh step 2); prints orders/s to commit and the agent's peak RSS (VmHWM) per
# run, then the medians.
#   bench/capture-folder.sh [RUNS] [ORDERS]     defaults: 5 runs, 10000 orders
#   FORMAT=csv bench/capture-folder.sh          the same orders as a CSV export (one row per line)
#   WRAP="valgrind --tool=massif --massif-out-file=/tmp/massif.out" bench/capture-folder.sh 1
#                                               run the agent under a tool (one run)
#   BIN=path/to/tillrelay bench/capture-folder.sh  another build (e.g. one with symbols)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
runs=${1:-5}
orders=${2:-10000}
format=${FORMAT:-json}
wrap=${WRAP:-}

if [ -z "${BIN:-}" ]; then cargo build --release --locked -q; fi
bin=${BIN:-$PWD/target/release/tillrelay}
work=$(mktemp -d)
agent=""
cleanup() { [ -n "$agent" ] && kill "$agent" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

python3 - "$work/orders.$format" "$orders" "$format" <<'PY'
import csv, json, sys
path, n, fmt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
orders = [{"order_no": f"B{i:08d}", "order_time": "2026-11-22 09:15:02",
           "kind": "sale", "cashier": "张三", "payment": "wechat", "total": "70.00",
           "discount": "0.00", "paid": "70.00",
           "lines": [{"code": f"690123{l:05d}", "name": "可口可乐500ml", "qty": "2",
                      "price": "3.50", "amount": "7.00", "discount": "0"} for l in range(10)]}
          for i in range(n)]
with open(path, "w", newline="") as fh:
    if fmt == "json":
        json.dump(orders, fh, ensure_ascii=False)
    else:
        w = csv.writer(fh)
        w.writerow(["order_no", "order_time", "kind", "cashier", "payment", "total",
                    "order_discount", "paid", "code", "name", "qty", "price", "amount", "discount"])
        for o in orders:
            for l in o["lines"]:
                w.writerow([o["order_no"], o["order_time"], o["kind"], o["cashier"], o["payment"],
                            o["total"], o["discount"], o["paid"], l["code"], l["name"], l["qty"],
                            l["price"], l["amount"], l["discount"]])
PY
size=$(stat -c %s "$work/orders.$format")

cpu_ms() { awk '{print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"'}' "/proc/$1/stat"; }
rates=(); peaks=(); cpus=()
for run in $(seq "$runs"); do
  rm -rf "$work/state" "$work/inbox"; mkdir -p "$work/inbox"
  # Both clouds configured but unreachable (nothing listens on port 9), as in run.sh.
  agent_config "$work/state" "$work/inbox" "http://127.0.0.1:9" > "$work/tillrelay.toml"
  cp "$work/orders.$format" "$work/big.$format"
  # shellcheck disable=SC2086
  $wrap "$bin" run --config "$work/tillrelay.toml" 2>"$work/agent.log" &
  agent=$!
  sleep "$([ -n "$wrap" ] && echo 5 || echo 1)"
  pid=$agent
  [ -n "$wrap" ] && pid=$(pgrep -P "$agent" || echo "$agent")
  c0=$(cpu_ms "$pid")
  t0=$(date +%s.%N)
  mv "$work/big.$format" "$work/inbox/"
  until [ -e "$work/inbox/done/big.$format" ] || [ -e "$work/inbox/rejected/big.$format" ]; do sleep 0.01; done
  t1=$(date +%s.%N)
  peak=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  c1=$(cpu_ms "$pid")
  kill -TERM "$agent"; wait "$agent" 2>/dev/null || true; agent=""
  [ -e "$work/inbox/done/big.$format" ] || { echo "the file was rejected:"; cat "$work/inbox/rejected/"*.error.txt; exit 1; }
  rate=$(awk "BEGIN {printf \"%d\", $orders / ($t1 - $t0)}")
  cpu=$(awk "BEGIN {print $c1 - $c0}")
  rates+=("$rate"); peaks+=("$peak"); cpus+=("$cpu")
  printf 'run %d: %d orders (%d bytes, %s) → committed: %6d orders/s, peak RSS %.1f MB, agent CPU %d ms\n' \
    "$run" "$orders" "$size" "$format" "$rate" "$(awk "BEGIN {print $peak / 1024}")" "$cpu"
done
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
printf 'median of %d: %d orders/s, peak RSS %.1f MB, agent CPU %d ms\n' "$runs" "$(med "${rates[@]}")" \
  "$(awk "BEGIN {print $(med "${peaks[@]}") / 1024}")" "$(med "${cpus[@]}")"
