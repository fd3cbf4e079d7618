#!/usr/bin/env python3
"""The print path soak (issue #24): "30 minutes compressed to 5" of a till's network
printing against the real agent on loopback, with the faults of issue #24 mixed in.

  bench/soak.py BIN [SECONDS]     (default 300; bench/run.sh --quick runs 60)

What runs, for SECONDS (every rate about six times a busy lane's):
  - two print proxies (`kind = "tcp"`, `max_connections = 8`), each in front of a
    stand-in printer on 127.0.0.1: `front` one that closes its side after the POS's
    FIN, `front2` one that keeps its side open (as many network printers do). Two POS
    threads per proxy send jobs of 1-3 receipts (the example config's market receipt,
    each with its own order number) in uneven pieces, then FIN;
  - pushed receipts: `push` (`kind = "listen"`, TCP: 1-3 receipts per connection) and
    `pushu` (UDP: each receipt from a new socket, so a new source port per receipt);
  - a malformed command (a 9-byte `GS 8 L` header claiming 2 GiB) before about one
    receipt in five, on every path;
  - junk: every 10-20 s a connection of 1-3 MiB of printable lines without a cut, to
    one of front, front2, push (the proxies must print it byte for byte too);
  - idle POS connections to front, front2 and push appearing and vanishing: about one
    every 0.5 s, at most 10 at once per port; half are closed with RST (SO_LINGER 0)
    after 0.5-10 s, half are left silent until the agent ends them (a slot wanted:
    `evicted_idle`; `peer_idle_timeout`: `idle_closed`).

Then it waits (at most 90 s) for the printers and the queue to settle and checks:
every job the POS sent (a connection written and FIN'd without an error) arrived
byte-identical at its printer, in one printer connection; every receipt sent is
stored exactly once (`tillrelay orders --json`; no `duplicates` in the capture
journal, no conflicts); no POS connection turned away. The agent's RSS is sampled
every second. Prints tab-separated rows (figure, value, unit) like bench/flow.py, and
exits 1 if a job was lost or turned away or a receipt is missing or stored twice.
The unparsed share of the queue is made small (`max_size = "64MB"`,
`unparsed_percent = 5`) so that junk is dropped oldest-first during the run.
"""

import hashlib
import json
import os
import random
import select
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flow import ROOT, Agent, Emu, free_port, market_receipt  # noqa: E402

# `GS 8 L p1 p2 p3 p4 m fn`: a raster image header claiming 2 GiB that never comes.
BAD = b"\x1d8L\x00\x00\x00\x80\x30\x70"
LOCK = threading.Lock()


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def digest(b):
    return hashlib.sha1(b).hexdigest()


class Printer:
    """A raw-TCP printer on 127.0.0.1: each connection's bytes, kept when the proxy
    half-closes (FIN). `keep`: keeps its own side open afterwards (closed 20 s later),
    as a printer that never closes first does."""

    def __init__(self, keep):
        self.keep = keep
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.addr = self.sock.getsockname()
        self.got = {}  # sha1 -> count of connections that delivered exactly those bytes
        self.conns = 0
        self.errors = 0
        self.held = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            c, _ = self.sock.accept()
            with LOCK:
                self.conns += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        parts = []
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                parts.append(b)
        except OSError:
            with LOCK:
                self.errors += 1
        data = b"".join(parts)
        with LOCK:
            if data:
                h = digest(data)
                self.got[h] = self.got.get(h, 0) + 1
            if self.keep:
                self.held.append((time.monotonic(), c))
                now = time.monotonic()
                while self.held and now - self.held[0][0] > 20:
                    self.held.pop(0)[1].close()
                return
        c.close()


class Ledger:
    """What the POS side sent: jobs per printer, receipts per source."""

    def __init__(self):
        self.next_no = 0
        self.jobs = {}  # printer name -> {sha1: count}
        self.job_count = {}
        self.receipts = {}  # order_no -> source
        self.turned_away = []
        self.bad_sent = 0
        self.junk_bytes = 0
        self.udp_datagrams = 0

    def receipt(self, source):
        with LOCK:
            self.next_no += 1
            n = self.next_no
        r = market_receipt(n)
        return f"{2026100000000 + n:013d}", r

    def sent(self, source, printer, payload, order_nos):
        with LOCK:
            for no in order_nos:
                self.receipts[no] = source
            if printer:
                h = digest(payload)
                d = self.jobs.setdefault(printer, {})
                d[h] = d.get(h, 0) + 1
                self.job_count[printer] = self.job_count.get(printer, 0) + 1

    def refused(self, what):
        with LOCK:
            self.turned_away.append(what)


def receipts_payload(ledger, source, rng):
    """1-3 receipts back to back, a malformed command before about one in five."""
    out, nos = b"", []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.2:
            out += BAD
            with LOCK:
                ledger.bad_sent += 1
        no, r = ledger.receipt(source)
        out += r
        nos.append(no)
    return out, nos


def junk(rng):
    line = b"".join(bytes([rng.randint(0x21, 0x7E)]) for _ in range(47)) + b"\n"
    return line * (rng.randint(1, 3) * 1048576 // len(line))


def send_job(addr, payload, rng, timeout=120):
    """Connects (waiting in the listen backlog if need be), writes `payload` in
    uneven pieces, FIN, then reads until the agent closes (at most 10 s)."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        at = 0
        while at < len(payload):
            n = rng.choice((1, 7, 100, 1500, 4096, 65536))
            s.sendall(payload[at:at + n])
            at += n
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass  # the job is out; a reset after it is not a lost job
    finally:
        s.close()


def pos_worker(ledger, source, addr, printer, until, seed):
    """A POS printing jobs of receipts to `addr` (a proxy with `printer` behind it,
    or a listen port when printer is None)."""
    rng = random.Random(seed)
    while time.monotonic() < until:
        time.sleep(rng.uniform(0.3, 1.5))
        payload, nos = receipts_payload(ledger, source, rng)
        try:
            send_job(addr, payload, rng)
        except OSError as e:
            ledger.refused(f"{source}: {e}")
            continue
        ledger.sent(source, printer, payload, nos)


def udp_worker(ledger, addr, until, seed):
    """Each receipt from a new socket (a new source port), the malformed header
    sometimes sent first from the same socket."""
    rng = random.Random(seed)
    while time.monotonic() < until:
        time.sleep(rng.uniform(0.2, 0.8))
        no, r = ledger.receipt("pushu")
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if rng.random() < 0.2:
                u.sendto(BAD, addr)
                with LOCK:
                    ledger.bad_sent += 1
                    ledger.udp_datagrams += 1
            u.sendto(r, addr)
            with LOCK:
                ledger.udp_datagrams += 1
        finally:
            u.close()
        ledger.sent("pushu", None, r, [no])


def junk_worker(ledger, targets, until, seed):
    rng = random.Random(seed)
    while True:
        time.sleep(max(0.0, min(rng.uniform(10, 20), until - time.monotonic())))
        if time.monotonic() >= until:
            return
        source, addr, printer = rng.choice(targets)
        payload = junk(rng)
        try:
            send_job(addr, payload, rng)
        except OSError as e:
            ledger.refused(f"{source} (junk): {e}")
            continue
        with LOCK:
            ledger.junk_bytes += len(payload)
        ledger.sent(source, printer, payload, [])


class Idle:
    """Idle POS connections appearing and vanishing."""

    def __init__(self):
        self.opened = self.rst = self.ended_by_agent = self.silent_at_end = 0
        self.failed = 0

    def run(self, targets, until, seed):
        rng = random.Random(seed)
        live = []  # (socket, target, close_at or None)
        while time.monotonic() < until:
            time.sleep(rng.uniform(0.3, 0.7))
            now = time.monotonic()
            # the agent ended some (given way to a job, or idle too long)
            if live:
                r, _, _ = select.select([c for c, _, _ in live], [], [], 0)
                for c in r:
                    try:
                        gone = c.recv(1) == b""
                    except OSError:
                        gone = True
                    if gone:
                        self.ended_by_agent += 1
                        c.close()
                        live = [x for x in live if x[0] is not c]
            keep = []
            for c, t, at in live:
                if at is not None and now >= at:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    c.close()
                    self.rst += 1
                else:
                    keep.append((c, t, at))
            live = keep
            name, addr = rng.choice(targets)
            if sum(1 for _, t, _ in live if t == name) < 10:
                try:
                    c = socket.create_connection(addr, timeout=5)
                except OSError:
                    self.failed += 1
                    continue
                self.opened += 1
                close_at = now + rng.uniform(0.5, 10) if rng.random() < 0.5 else None
                live.append((c, name, close_at))
        self.silent_at_end = len(live)
        for c, _, _ in live:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()


def net_source(name, kind, keys, idle_timeout_ms):
    """The example config's market lane as source `name` of `kind` with `keys` in
    place of its serial keys (the same template and segmentation)."""
    text = open(os.path.join(ROOT, "config/tillrelay.toml"), encoding="utf-8").read()
    start = text.index('[[source]]\nname = "market"')
    block = text[start:text.index("[[source]]", start + 10)]
    serial = ("device =", "baud =", "data_bits =", "parity =", "stop_bits =",
              "flow_control =", "passthrough =")
    out = []
    for line in block.splitlines():
        if line.startswith(serial):
            continue
        if line == 'name = "market"':
            line = f'name = "{name}"'
        elif line == 'kind = "serial"':
            line = f'kind = "{kind}"\n{keys}'
        elif line.startswith("enabled ="):
            line = "enabled = true"
        elif line.startswith("idle_timeout_ms ="):
            line = f"idle_timeout_ms = {idle_timeout_ms}"
        out.append(line)
    return "\n".join(out) + "\n"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tillrelay_json(binary, cfg, *args):
    out = subprocess.run([binary, *args, "--json", "--config", cfg], check=True,
                         capture_output=True, timeout=60).stdout
    return json.loads(out)


def counters(status, name):
    """Every counter `status --json` shows for source `name` (its live counters and
    its queue-side ones), merged."""
    found = {}

    def walk(v):
        if isinstance(v, dict):
            if v.get("name") == name or v.get("source") == name:
                found.update({k: x for k, x in v.items() if isinstance(x, int)})
            for k, x in v.items():
                if k == name and isinstance(x, dict):
                    found.update({k2: x2 for k2, x2 in x.items() if isinstance(x2, int)})
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(status)
    return found


def main():
    a = sys.argv[1:]
    if not a:
        raise SystemExit(__doc__)
    binary = os.path.abspath(a[0])
    secs = float(a[1]) if len(a) > 1 else 300.0
    # the timeouts scale with the run: 30 s of silence ends a connection in 5 min
    peer_idle = max(10, int(secs / 10))
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as work:
        state, inbox = os.path.join(work, "state"), os.path.join(work, "inbox")
        os.makedirs(inbox)
        pa, pb = Printer(keep=False), Printer(keep=True)
        ports = {n: free_port() for n in ("front", "front2", "push", "pushu")}
        emu = Emu(binary)
        tail = subprocess.run(
            ["bash", "-c", f'. "{ROOT}/bench/lib.sh"; agent_config "$@"', "-",
             state, inbox, emu.base], check=True, capture_output=True, text=True).stdout
        tail = tail.replace('max_size = "2GB"', 'max_size = "64MB"\nunparsed_percent = 5')
        common = f'allow = ["127.0.0.1"]\npeer_idle_timeout = "{peer_idle}s"'
        sources = (
            net_source("front", "tcp", f'listen = "127.0.0.1:{ports["front"]}"\n'
                       f'printer = "127.0.0.1:{pa.addr[1]}"\nmax_connections = 8\n{common}', 1000)
            + net_source("front2", "tcp", f'listen = "127.0.0.1:{ports["front2"]}"\n'
                         f'printer = "127.0.0.1:{pb.addr[1]}"\nmax_connections = 8\n{common}', 1000)
            + net_source("push", "listen", f'listen = "127.0.0.1:{ports["push"]}"\n'
                         f'protocol = "tcp"\nmax_connections = 8\n{common}', 1000)
            + net_source("pushu", "listen", f'listen = "127.0.0.1:{ports["pushu"]}"\n'
                         f'protocol = "udp"\n{common}', 1000))
        i = tail.index("[ovopark]")
        cfg = os.path.join(work, "tillrelay.toml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(tail[:i] + sources + "\n" + tail[i:])
        agent = Agent(binary, cfg, state)
        try:
            addr = {n: ("127.0.0.1", p) for n, p in ports.items()}
            # the sources bind after the pid file: wait for each TCP port
            deadline = time.monotonic() + 30
            for n in ("front", "front2", "push"):
                while True:
                    try:
                        socket.create_connection(addr[n], timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise SystemExit(f"the agent does not listen on {n}")
                        time.sleep(0.05)
            ledger, idle = Ledger(), Idle()
            t0 = time.monotonic()
            until = t0 + secs
            # two POS per proxy, one TCP pusher, one UDP pusher (seeds 1-6)
            pos = [("front", "front"), ("front", "front"), ("front2", "front2"),
                   ("front2", "front2"), ("push", None)]
            threads = [threading.Thread(target=pos_worker,
                                        args=(ledger, s, addr[s], p, until, k + 1))
                       for k, (s, p) in enumerate(pos)]
            threads.append(threading.Thread(target=udp_worker,
                                            args=(ledger, addr["pushu"], until, 6)))
            junk_to = [("front", addr["front"], "front"), ("front2", addr["front2"], "front2"),
                       ("push", addr["push"], None)]
            threads.append(threading.Thread(target=junk_worker,
                                            args=(ledger, junk_to, until, 7)))
            threads.append(threading.Thread(target=idle.run, args=(
                [(n, addr[n]) for n in ("front", "front2", "push")], until, 8)))
            for t in threads:
                t.daemon = True
                t.start()
            rss = []  # (seconds since start, kB)
            last_log = t0
            while any(t.is_alive() for t in threads):
                now = time.monotonic()
                rss.append((now - t0, rss_kb(agent.proc.pid)))
                if now - last_log >= 30:
                    last_log = now
                    log(f"{now - t0:.0f} s: {len(ledger.receipts)} receipts, "
                        f"RSS {rss[-1][1] / 1024:.1f} MB")
                if now > until + 180:
                    failures.append("POS threads still busy 180 s after the end")
                    break
                time.sleep(1)
            sent_for = time.monotonic() - t0
            # Settle: every job at its printer, every receipt in the queue (90 s at most).
            expected = dict(ledger.receipts)
            printers = {"front": pa, "front2": pb}
            deadline = time.monotonic() + 90
            stored = {}
            while True:
                with LOCK:
                    missing_jobs = sum(max(0, c - printers[p].got.get(h, 0))
                                       for p, d in ledger.jobs.items() for h, c in d.items())
                stored = {}
                for o in tillrelay_json(binary, cfg, "orders", "--limit", "10000000"):
                    key = (o.get("source"), o.get("order_no"))
                    stored[key] = stored.get(key, 0) + 1
                missing = [no for no, s in expected.items() if (s, no) not in stored]
                if (missing_jobs == 0 and not missing) or time.monotonic() > deadline:
                    break
                time.sleep(2)
            rss.append((time.monotonic() - t0, rss_kb(agent.proc.pid)))
            status = tillrelay_json(binary, cfg, "status")
            db = sqlite3.connect(f"file:{state}/queue.db?mode=ro", uri=True)
            try:
                dups = db.execute("SELECT coalesce(sum(duplicates), 0) FROM capture").fetchone()[0]
                conflicts = db.execute("SELECT count(*) FROM conflict").fetchone()[0]
                by_status = dict(db.execute(
                    "SELECT status, count(*) FROM capture GROUP BY status").fetchall())
            finally:
                db.close()
        finally:
            agent.stop()
            emu.stop()

        doubled = [k for k, c in stored.items() if c > 1]
        unexpected = [k for k in stored if k[0] in ports and expected.get(k[1]) != k[0]]
        jobs = sum(ledger.job_count.values())
        rows.append(("traffic for", f"{sent_for:.0f}", "s"))
        for p in ("front", "front2"):
            label = "closes after FIN" if p == "front" else "keeps its side open"
            rows.append((f"print jobs through {p} (printer {label})",
                         str(ledger.job_count.get(p, 0)), ""))
        printed = sum(min(c, printers[p].got.get(h, 0))
                      for p, d in ledger.jobs.items() for h, c in d.items())
        rows.append(("  printed byte-identical, one printer connection each", str(printed), ""))
        rows.append(("  POS connections turned away (jobs and junk)",
                     str(len(ledger.turned_away)), ""))
        rows.append(("receipts sent (proxied, pushed TCP, pushed UDP)", str(len(expected)), ""))
        for s in ports:
            n = sum(1 for v in expected.values() if v == s)
            got = sum(1 for (src, no) in stored if src == s and expected.get(no) == s)
            rows.append((f"  {s}: sent / stored", f"{n} / {got}", ""))
        rows.append(("  missing", str(len(missing)), ""))
        rows.append(("  stored twice (same number, duplicates journalled, conflicts)",
                     f"{len(doubled)}, {dups}, {conflicts}", ""))
        rows.append(("  malformed GS 8 L headers sent", str(ledger.bad_sent), ""))
        rows.append(("  UDP datagrams, each from a new port", str(ledger.udp_datagrams), ""))
        rows.append(("junk sent without a cut", f"{ledger.junk_bytes / 1048576:.1f}", "MiB"))
        rows.append(("captures journalled by status",
                     ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())), ""))
        rows.append(("idle POS connections opened", str(idle.opened), ""))
        rows.append(("  closed by the POS with RST", str(idle.rst), ""))
        rows.append(("  ended by the agent (given way or idle timeout)",
                     str(idle.ended_by_agent), ""))
        for name in ports:
            c = counters(status, name)
            keys = ("evicted_idle", "idle_closed", "refused_busy", "malformed_commands",
                    "unparsed_dropped", "cut_for_memory", "capture_dropped_bytes",
                    "printer_dropped_bytes")
            rows.append((f"counters of {name}",
                         ", ".join(f"{k} {c[k]}" for k in keys if k in c), ""))
        steady = [kb for t, kb in rss if t >= 10] or [kb for _, kb in rss]
        rows.append(("agent RSS: at 10 s / peak / end", " / ".join(
            f"{kb / 1024:.1f}" for kb in (steady[0], max(kb for _, kb in rss), rss[-1][1])), "MB"))
        q = [steady[min(len(steady) - 1, len(steady) * k // 4)] for k in (1, 2, 3)]
        rows.append(("  at a quarter / half / three quarters", " / ".join(
            f"{kb / 1024:.1f}" for kb in q), "MB"))

        lost_jobs = jobs - printed
        if lost_jobs:
            failures.append(f"{lost_jobs} job(s) not printed byte-identical")
        if ledger.turned_away:
            failures.append(f"{len(ledger.turned_away)} POS connection(s) turned away, "
                            f"first: {ledger.turned_away[0]}")
        if missing:
            failures.append(f"{len(missing)} receipt(s) not stored, e.g. {missing[:5]}")
        if doubled or dups or conflicts:
            failures.append(f"stored twice: {len(doubled)} numbers, {dups} duplicates, "
                            f"{conflicts} conflicts")
        if unexpected:
            failures.append(f"{len(unexpected)} order(s) stored that were not sent as such, "
                            f"e.g. {unexpected[:5]}")
    for r in rows:
        print("\t".join(r))
    for f in failures:
        log(f"FAILED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
