#!/usr/bin/env python3
"""Node main-thread instructions per `Connection: close` response, plain node
vs node attached to farewell, counted by callgrind.

    python3 crates/farewell-node/js/bench/instructions.py [N1 N2 [REPS]]

Environment: MODES (default "plain attached"), FAREWELL_NODE_ADDON (default
target/release/libfarewell_node.so: cargo build --release -p farewell-node),
OUTDIR (default /tmp/farewell-node-instructions).

The fixture server (js/fixture/server.mjs, the one `farewell bench http
--node` runs) runs under `valgrind --tool=callgrind --separate-threads=yes`;
python's http.client sends N sequential `GET /` requests from outside
valgrind, each on its own connection with `Connection: close`, and closes
5 ms after reading the response. The figure is (Ir(N2) - Ir(N1)) / (N2 - N1)
of node's main thread: start-up and shutdown cancel out. Printed per run:

- raw: that difference;
- less seed: less V8's hash-seed start-up (`HashSeed::InitializeRoots`
  looks for a prime from a random seed: 8 to 15 million Ir, different in
  every process, so up to 7k per response in a 1,000-response difference);
- gc: the part of it in V8's garbage collector (noisy: whether a scavenge or
  a mark-compact falls in the window; collections also run on helper
  threads, not counted here);
- mutator: less seed, less gc.

Mind the tier: node 20 runs the per-response functions (Node's http and
stream code, and farewell's index.js) in its baseline compiler (Sparkplug)
until a few thousand responses, and TurboFan's code from about 6,000 on
(`node --trace-opt`). N1=600 N2=1600 measures that warm-up; N1=6000 N2=8000
the steady state a benchmark of many thousand responses runs in.

Everything is on loopback and bounded (a fixed count, socket timeouts, 900 s
per run, node killed by its PID).
"""

import collections
import glob
import http.client
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(os.path.dirname(HERE))
FIXTURE = os.path.join(CRATE, "js", "fixture", "server.mjs")
ADDON = os.environ.get(
    "FAREWELL_NODE_ADDON",
    os.path.join(CRATE, "..", "..", "target", "release", "libfarewell_node.so"))
OUTDIR = os.environ.get("OUTDIR", "/tmp/farewell-node-instructions")
BODY = b"hello from node\n"
GC = re.compile(r"Scaveng|MarkCompact|Heap::|GCTracer|Sweep|Marking|Evacuat|"
                r"BodyDescriptor|Minor|IterateObjectCache|RootScavenge|"
                r"Pretenuring|SemiSpace|MemoryChunk|RememberedSet|SlotSet")


def run(mode, n, tag):
    """Serves n responses under callgrind; returns node's main-thread profile file."""
    out = os.path.join(OUTDIR, f"cg.{mode}.{n}.{tag}")
    for old in glob.glob(out + "*"):
        os.remove(old)
    args = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
            f"--callgrind-out-file={out}", "node", FIXTURE, "--port", "0"]
    if mode == "attached":
        args.append("--attached")
    env = dict(os.environ, FAREWELL_NODE_ADDON=os.path.abspath(ADDON))
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        port = json.loads(proc.stdout.readline())["port"]
        deadline = time.monotonic() + 900
        for i in range(n):
            if time.monotonic() > deadline:
                raise SystemExit(f"{mode} {n}: over 900 s")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/", headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or body != BODY:
                raise SystemExit(f"{mode} request {i}: {resp.status} {body!r}")
            time.sleep(0.005)
            conn.close()
        time.sleep(0.5)
        # The fixture stops on stdin's end (farewell.drain(), then exit).
        proc.stdin.close()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    main = [f for f in glob.glob(out + "-*") if f.endswith("-01")]
    if len(main) != 1:
        raise SystemExit(f"no main-thread profile for {out}")
    return main[0]


def profile(path):
    """Total Ir, the hash seed's and the GC's self Ir, of one profile."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path],
                          capture_output=True, text=True, check=True).stdout
    total = seed = gc = 0
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)$", line)
        if not m:
            continue
        ir, name = int(m.group(1).replace(",", "")), m.group(2)
        if "PROGRAM TOTALS" in name:
            total = ir
        elif "detail::sprp" in name or "HashSeed::" in name:
            seed += ir
        elif GC.search(name):
            gc += ir
    return collections.namedtuple("Profile", "total seed gc")(total, seed, gc)


def main():
    n1 = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    n2 = int(sys.argv[2]) if len(sys.argv) > 2 else 1600
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    os.makedirs(OUTDIR, exist_ok=True)
    print(f"Ir per response, node's main thread, N1={n1} N2={n2}")
    print(f"{'mode':<9} {'run':>3} {'raw':>9} {'less seed':>10} {'gc':>8} {'mutator':>9}")
    for rep in range(1, reps + 1):
        for mode in os.environ.get("MODES", "plain attached").split():
            a, b = profile(run(mode, n1, rep)), profile(run(mode, n2, rep))
            per = lambda x, y: (y - x) / (n2 - n1)
            raw = per(a.total, b.total)
            less_seed = per(a.total - a.seed, b.total - b.seed)
            gc = per(a.gc, b.gc)
            print(f"{mode:<9} {rep:>3} {raw:>9.0f} {less_seed:>10.0f} {gc:>8.0f} "
                  f"{less_seed - gc:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
