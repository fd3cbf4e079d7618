#!/usr/bin/env python3
"""One order at a time through the whole agent (issue #14), against the emulators on
loopback: how long an order takes from the till to each cloud, and how many bytes the
agent writes to the disk per order.

  bench/flow.py BIN latency N [--settle 200ms] [--serial]
      N orders, one at a time, each a JSON file renamed into the watched folder (and,
      with --serial, N receipts written to a pseudo-terminal, each ending in a cut):
      the time from the rename (the write of the receipt's last byte) to each
      emulator's answer, seen by polling `/_emu/stats` (about 1 ms apart).
  bench/flow.py BIN wear N [--apart]
      Steady state: orders one file at a time, each delivered to both clouds before
      the next, while retention (20 s here) deletes delivered orders as fast as they
      come. Over at least N orders, from one WAL restart to a later one (so whole
      checkpoints are in the window): the agent's `write_bytes` (/proc/PID/io: bytes
      it caused to be written to the block device, at 4 KiB pages: WAL frames,
      checkpoints into the database file, retention's deletions) per order, and
      over the stored order body. With --apart, every dirty page is written back
      (sync) after each order, as the kernel does when a till's orders come minutes
      apart.

Prints tab-separated rows: figure, value, unit. Run by bench/run.sh; nothing here
asserts. The config is the one bench/lib.sh writes (one folder lane, both clouds as the
emulator's demo tenant), plus the example config's market serial lane with --serial.
"""

import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def order(n):
    lines = [{"code": f"690123{l:05d}", "name": "可口可乐500ml", "qty": "2",
              "price": "3.50", "amount": "7.00", "discount": "0"} for l in range(10)]
    return {"order_no": f"F{n:08d}", "order_time": "2026-11-22 09:15:02", "kind": "sale",
            "cashier": "张三", "payment": "wechat", "total": "70.00", "discount": "0.00",
            "paid": "70.00", "lines": lines}


def market_receipt(n):
    """The first receipt of tests/fixtures/receipts/market.bin (logo, GB18030 text,
    barcode, feed and cut) with its order number replaced by a 13-digit `n`."""
    raw = open(os.path.join(ROOT, "tests/fixtures/receipts/market.bin"), "rb").read()
    cut = raw.find(b"\x1dVB\x03") + 4
    r = raw[3:cut]  # without the leading status request (DLE EOT 1): no printer answers
    return r.replace(b"2026112200013", f"{2026100000000 + n:013d}".encode())


def market_source(pos, printer):
    """The example config's market serial lane on the given devices."""
    text = open(os.path.join(ROOT, "config/tillrelay.toml"), encoding="utf-8").read()
    start = text.index('[[source]]\nname = "market"')
    end = text.index("[[source]]", start + 10)
    block = text[start:end]
    out = []
    for line in block.splitlines():
        if line.startswith("enabled ="):
            line = "enabled = true"
        elif line.startswith("device ="):
            line = f"device = {json.dumps(pos)}"
        elif line.startswith("passthrough ="):
            line = f"passthrough = {json.dumps(printer)}"
        elif line.startswith("flow_control ="):
            line = 'flow_control = "none"'
        out.append(line)
    return "\n".join(out) + "\n"


def config(state, inbox, base, settle, serial=None):
    tail = subprocess.run(
        ["bash", "-c", f'. "{ROOT}/bench/lib.sh"; agent_config "$@"', "-",
         state, inbox, base], check=True, capture_output=True, text=True).stdout
    tail = tail.replace('settle = "200ms"', f'settle = "{settle}"')
    if serial:
        # the serial lane goes before the cloud tables (a [[source]] after [ovopark]
        # would still parse, but keep the file in the example's order)
        i = tail.index("[ovopark]")
        tail = tail[:i] + market_source(*serial) + "\n" + tail[i:]
    return tail


class Emu:
    def __init__(self, binary):
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "emulate", "--listen", f"127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conn = None
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/_emu/health")
                break
            except OSError:
                self.conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def get(self, path):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            self.conn.request("GET", path)
            body = self.conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            # the emulator may close an idle connection: open a new one once
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            self.conn.request("GET", path)
            body = self.conn.getresponse().read()
        return body

    def answers(self):
        s = json.loads(self.get("/_emu/stats"))
        return tuple(sum(s[c]["answers"].values()) for c in ("ovopark", "wdt"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Agent:
    def __init__(self, binary, cfg_path, state):
        self.proc = subprocess.Popen([binary, "run", "--config", cfg_path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pid_file = os.path.join(state, "tillrelay.pid")
        deadline = time.monotonic() + 30
        while not os.path.exists(pid_file):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the agent did not start")
            time.sleep(0.02)

    def write_bytes(self):
        with open(f"/proc/{self.proc.pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
        raise SystemExit("no write_bytes in /proc/PID/io")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def wait_answers(emu, want, t0, timeout=30):
    """Polls until both clouds answered `want` (ovopark, wdt) requests; returns the
    seconds from t0 to each (ovopark, wdt)."""
    got = [None, None]
    deadline = time.monotonic() + timeout
    while None in got:
        a = emu.answers()
        now = time.monotonic()
        for k in (0, 1):
            if got[k] is None and a[k] >= want[k]:
                got[k] = now - t0
        if now > deadline:
            raise SystemExit(f"not delivered within {timeout} s: answers {a}, wanted {want}")
        time.sleep(0.0005)
    return got


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def drop(stage, inbox, n):
    path = os.path.join(stage, f"orders-{n:08d}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump([order(n)], f, ensure_ascii=False)
    t0 = time.monotonic()
    os.rename(path, os.path.join(inbox, f"orders-{n:08d}.json"))
    return t0


def setup(work, binary, settle, serial=None, retention=None):
    state, inbox, stage = (os.path.join(work, d) for d in ("state", "inbox", "stage"))
    for d in (inbox, stage):
        os.makedirs(d, exist_ok=True)
    emu = Emu(binary)
    cfg_path = os.path.join(work, "tillrelay.toml")
    with open(cfg_path, "w", encoding="utf-8") as f:
        text = config(state, inbox, emu.base, settle, serial)
        if retention:
            text = text.replace("[outbox]\n", f'[outbox]\nretention = "{retention}"\n')
        f.write(text)
    agent = Agent(binary, cfg_path, state)
    return emu, agent, inbox, stage, state


def latency(binary, n, settle, serial):
    with tempfile.TemporaryDirectory() as work:
        ptys = None
        if serial:
            pos_m, pos_s = os.openpty()
            prn_m, prn_s = os.openpty()
            ptys = (os.ttyname(pos_s), os.ttyname(prn_s))
            # the printer: reads what is forwarded to it, so the line never backs up
            threading.Thread(target=lambda: [os.read(prn_m, 65536) for _ in iter(int, 1)],
                             daemon=True).start()
        emu, agent, inbox, stage, _ = setup(work, binary, settle, ptys)
        try:
            time.sleep(1)
            rows = []
            kinds = [("folder", None)] + ([("serial", pos_m)] if serial else [])
            for kind, fd in kinds:
                ovo, wdt = [], []
                base = emu.answers()
                for i in range(n + 5):
                    if fd is None:
                        t0 = drop(stage, inbox, (1 if kind == "folder" else 2) * 10**6 + i)
                    else:
                        data = market_receipt(i)
                        os.write(fd, data[:-4])
                        time.sleep(0.005)  # the receipt's body, then its cut alone
                        os.write(fd, data[-4:])
                        t0 = time.monotonic()
                    base = (base[0] + 1, base[1] + 1)
                    o, w = wait_answers(emu, base, t0)
                    if i >= 5:  # the first few warm up connections and caches
                        ovo.append(o * 1000)
                        wdt.append(w * 1000)
                    time.sleep(0.02)
                for cloud, v in (("Ovopark", ovo), ("Wangdiantong", wdt)):
                    rows.append((f"{kind} → {cloud}, p50", f"{pct(v, 50):.1f}", "ms"))
                    rows.append((f"{kind} → {cloud}, p99", f"{pct(v, 99):.1f}", "ms"))
            return rows
        finally:
            agent.stop()
            emu.stop()


def wal_generation(state):
    """The WAL header's checkpoint sequence number: it goes up each time the WAL is
    started again from its beginning, which SQLite does at the first commit after a
    checkpoint copied all of it into the database file."""
    try:
        with open(os.path.join(state, "queue.db-wal"), "rb") as f:
            h = f.read(16)
    except FileNotFoundError:
        return None
    return int.from_bytes(h[12:16], "big") if len(h) == 16 else None


def stored_orders(state):
    db = sqlite3.connect(f"file:{state}/queue.db?mode=ro", uri=True)
    try:
        count, body = db.execute(
            "SELECT count(*), avg(length(CAST(body AS BLOB))) FROM orders").fetchone()
    finally:
        db.close()
    return count, body


def wear(binary, n, apart):
    """Steady state, as a box is after its first `retention`: orders captured one file
    at a time, each delivered to both clouds before the next, while the retention
    pass deletes delivered orders as fast as they come (`retention = "20s"`: a pass
    every 2 s). The window runs from one WAL restart to a later one, so it holds whole
    checkpoints (every page the window's commits changed copied into the database
    file once) and no debt of pages written before it or left for after it."""
    with tempfile.TemporaryDirectory() as work:
        emu, agent, inbox, stage, state = setup(work, binary, "200ms",
                                                retention="20s")
        try:
            time.sleep(1)
            base = emu.answers()
            i = 0

            def one():
                nonlocal base, i
                t0 = drop(stage, inbox, i)
                i += 1
                base = (base[0] + 1, base[1] + 1)
                wait_answers(emu, base, t0)
                # the outcomes are committed after the answers: let them land
                time.sleep(0.05)
                if apart:
                    # A till's orders come minutes apart: the kernel has written every
                    # dirty page back before the next one (dirty_expire is 30 s).
                    os.sync()
                return wal_generation(state)

            # Warm up past the retention (deletions under way) and to a WAL restart.
            t_start = time.monotonic()
            gen = wal_generation(state)
            while True:
                g = one()
                if time.monotonic() - t_start > 25 and g != gen:
                    break
                gen = g
            gen, w0, i0 = g, agent.write_bytes(), i
            count0, _ = stored_orders(state)
            checkpoints = 0
            while True:
                g = one()
                if g != gen:
                    checkpoints += 1
                    gen = g
                    if i - i0 >= n:
                        break
            w1, orders = agent.write_bytes(), i - i0
            count1, body = stored_orders(state)
            deleted = orders - (count1 - count0)
            per = (w1 - w0) / orders
            label = "orders far apart (written back between orders)" if apart else \
                "orders back to back"
            return [(f"bytes written per order, {label}", f"{per / 1024:.1f}", "KB"),
                    ("  stored order body", f"{body / 1024:.2f}", "KB"),
                    ("  write amplification (written / body)", f"{per / body:.1f}", "×"),
                    ("  orders in the window", str(orders), ""),
                    ("  of them deleted by retention in the window", str(deleted), ""),
                    ("  checkpoints in the window", str(checkpoints), "")]
        finally:
            if agent.proc.poll() is None:
                agent.stop()
            emu.stop()


def main():
    a = sys.argv[1:]
    binary, what, n = a[0], a[1], int(a[2])
    settle = a[a.index("--settle") + 1] if "--settle" in a else "200ms"
    if what == "latency":
        rows = latency(binary, n, settle, "--serial" in a)
    elif what == "wear":
        rows = wear(binary, n, "--apart" in a)
    else:
        raise SystemExit(__doc__)
    for r in rows:
        print("\t".join(r))


if __name__ == "__main__":
    main()
