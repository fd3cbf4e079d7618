#!/usr/bin/env bash
# Scrape cost (issue #27): what one GET /metrics costs with an empty queue and with
# 50,000 orders pending (both clouds configured but unreachable, as in a backlog), on
# the real release agent. Per queue: a first scrape after the start (it reads the
# queue at once), then 20 scrapes half a second apart: their median and max latency,
# and the agent's CPU per scrape (its CPU while scraped less its CPU in as long
# unscraped). Prints "figure<TAB>value<TAB>unit"
# lines (bench/run.sh puts them in its table).
#   bench/scrape.sh                       the release build (built first)
#   BIN_CMD="qemu-arm … tillrelay" bench/scrape.sh   another agent command
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
if [ -z "${BIN_CMD:-}" ]; then
  cargo build --release --locked -q
  BIN_CMD=$PWD/target/release/tillrelay
fi
# shellcheck disable=SC2206
agent_cmd=($BIN_CMD)
work=$(mktemp -d)
agent=""
cleanup() { [ -n "$agent" ] && kill "$agent" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mport=$(free_port)
mkdir -p "$work/inbox"
# Nothing listens at the clouds' address: every order stays pending.
agent_config "$work/state" "$work/inbox" "http://127.0.0.1:$(free_port)" > "$work/tillrelay.toml"
printf '\n[metrics]\nlisten = "127.0.0.1:%s"\n' "$mport" >> "$work/tillrelay.toml"
start_agent() { "${agent_cmd[@]}" run --config "$work/tillrelay.toml" 2>/dev/null & agent=$!; }
stop_agent() { kill -TERM "$agent"; wait "$agent" 2>/dev/null || true; agent=""; }

# prints: first-ms median-ms max-ms cpu-ms-per-scrape
series() {
  python3 - "http://127.0.0.1:$mport" "$agent" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys, time, urllib.error, urllib.request
base, pid, tck = sys.argv[1], sys.argv[2], int(sys.argv[3])
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000 / tck
deadline = time.monotonic() + 60
while True:  # the endpoint is up (any answer)
    try:
        urllib.request.urlopen(base + "/nothing", timeout=1)
    except urllib.error.HTTPError:
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
def scrape():
    t0 = time.monotonic()
    body = urllib.request.urlopen(base + "/metrics", timeout=30).read()
    assert b"tillrelay_outbox_up 1\n" in body, body[:200]
    return (time.monotonic() - t0) * 1000
first = scrape()
# The agent's CPU while nobody scrapes (upload retries and all), then with 20 scrapes
# in as long: the difference is what the scrapes cost.
c0 = cpu()
time.sleep(10)
idle = cpu() - c0
c0, lat = cpu(), []
t0 = time.monotonic()
for _ in range(20):
    time.sleep(0.5)
    lat.append(scrape())
busy = (cpu() - c0) * 10 / (time.monotonic() - t0)
print(f"{first:.1f} {statistics.median(lat):.2f} {max(lat):.1f} {max(0.0, busy - idle) / 20:.2f}")
PY
}

start_agent
read -r first median max cpu < <(series)
stop_agent
printf 'scrape /metrics, empty queue: median of 20\t%s\tms\n' "$median"
printf '  max; first after the start; agent CPU per scrape\t%s; %s; %s\tms\n' "$max" "$first" "$cpu"

# 50,000 orders (5 exports of 10,000, 10 lines each), captured while nothing delivers.
python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
for f in range(5):
    orders = [{"order_no": f"S{f * 10000 + i:08d}", "order_time": "2026-11-22 09:15:02",
               "kind": "sale", "cashier": "张三", "payment": "wechat", "total": "70.00",
               "discount": "0.00", "paid": "70.00",
               "lines": [{"code": f"690123{l:05d}", "name": "可口可乐500ml", "qty": "2",
                          "price": "3.50", "amount": "7.00", "discount": "0"} for l in range(10)]}
              for i in range(10000)]
    with open(os.path.join(work, f"s{f}.json"), "w") as fh:
        json.dump(orders, fh, ensure_ascii=False)
PY
start_agent
for f in "$work"/s*.json; do mv "$f" "$work/inbox/"; done
until [ "$(ls "$work/inbox/done" 2>/dev/null | wc -l)" -ge 5 ]; do sleep 0.1; done
stop_agent
start_agent
read -r first median max cpu < <(series)
stop_agent
printf 'scrape /metrics, 50,000 orders pending: median of 20\t%s\tms\n' "$median"
printf '  max; first after the start; agent CPU per scrape\t%s; %s; %s\tms\n' "$max" "$first" "$cpu"
