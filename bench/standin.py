#!/usr/bin/env python3
"""A Wangdiantong stand-in that accepts every request at once, for measuring the
agent's own drain bound (issue #14): the strict emulator checks every field of every
trade and is itself the bound of a drain against it (docs/BENCHMARKS.md).

  bench/standin.py PORT

Serves HTTP/1.1 with keep-alive on 127.0.0.1:PORT. Every POST is read whole and
answered status 0 with an empty error list (no check at all: this is not an emulator,
it only takes the other side's time out of the figure); a `Date` header is sent as a
real server does. GET /health answers ok. Run by bench/run.sh.

`new_count` is the number of trades pushed (counted by a key only trades carry,
without parsing): an answer whose counts fall short of the batch is confirmed by
searchSelfOrder, one more request per batch that a real ERP does not cost (issue #26).
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACCEPTED = '{{"status":0,"message":"ok","data":{{"new_count":{},"chg_count":0,"error_list":[]}}}}'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes: with Nagle's algorithm on, the
    # second waits for the agent's delayed ACK of the first (~40 ms a request, which
    # was most of a drain's time). Real servers and the emulator send without delay.
    disable_nagle_algorithm = True

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        trades = 0
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                break
            n -= len(chunk)
            # A trade's key (not a line's); a key never spans two reads of a body
            # this small in practice, and a miscount only costs a confirmation.
            trades += chunk.count(b'"process_status"')
        self.answer(ACCEPTED.format(trades).encode())

    def do_GET(self):
        self.answer(b"ok")

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
