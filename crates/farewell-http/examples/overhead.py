#!/usr/bin/env python3
"""Instructions per request, farewell-http vs plain hyper, counted by callgrind.

    python3 crates/farewell-http/examples/overhead.py [BINARY] [OUTDIR]

Environment: SERVERS (default "hyper farewell"), MODES (default "keepalive
close"), N1 and N2 (default 300 and 1300 requests).

BINARY is target/release/examples/overhead (cargo build --release -p
farewell-http --example overhead). For each server (farewell, hyper) and mode
(keep-alive: N requests on one connection; close: N requests each with
`Connection: close` on its own connection), the server runs under
`valgrind --tool=callgrind` on one thread and python's http.client sends the
requests from outside valgrind, checking every response (200, the demo's
body). Two runs per pair, with N1 and N2 requests; the figure is
(Ir(N2) - Ir(N1)) / (N2 - N1): start-up and shutdown cancel out. Everything is
on loopback and bounded (a fixed count, socket timeouts, the server killed by
its PID).
"""

import http.client
import os
import re
import signal
import subprocess
import sys
import time

PORT = 18431
N1, N2 = int(os.environ.get("N1", 300)), int(os.environ.get("N2", 1300))
BODY = b"hello from farewell-http\n"


def run(binary, server, mode, n, outdir):
    out = os.path.join(outdir, f"cg.{server}.{mode}.{n}")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         binary, server, str(PORT)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        if not line.startswith(b"ready"):
            raise SystemExit(f"{server}: not ready: {line!r}")
        deadline = time.monotonic() + 300
        conn = None
        for i in range(n):
            if time.monotonic() > deadline:
                raise SystemExit(f"{server} {mode}: over 300 s")
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            headers = {"Connection": "close"} if mode == "close" else {}
            conn.request("GET", "/", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or body != BODY:
                raise SystemExit(f"{server} {mode}: request {i}: {resp.status} {body!r}")
            if mode == "close":
                conn.close()
                conn = None
        if conn is not None:
            conn.close()
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with open(out) as f:
        for line in f:
            m = re.match(r"(summary|totals): (\d+)", line)
            if m:
                return int(m.group(2))
    raise SystemExit(f"no total in {out}")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/examples/overhead"
    outdir = sys.argv[2] if len(sys.argv) > 2 else "/tmp/overhead"
    os.makedirs(outdir, exist_ok=True)
    servers = os.environ.get("SERVERS", "hyper farewell").split()
    modes = os.environ.get("MODES", "keepalive close").split()
    for mode in modes:
        for server in servers:
            a = run(binary, server, mode, N1, outdir)
            b = run(binary, server, mode, N2, outdir)
            print(f"{server:8} {mode:9} {(b - a) / (N2 - N1):10.0f} Ir/request"
                  f"  (Ir {a} @ {N1}, {b} @ {N2})", flush=True)


if __name__ == "__main__":
    main()
