"""Where a bid request's CPU goes: py-spy samples of one ``dsp serve`` worker under wrk load.

    pip install --target /tmp/pyspy py-spy          # not a project dependency
    .venv/bin/python -m benchmarks.profile_bidpath --py-spy /tmp/pyspy/bin/py-spy \\
        [--duration 8] [--connections 64] [--rate 250] [--raw prof.txt]

Procedure (the same traffic as ``bench_bidpath``): a throwaway Redis seeded with ``dsp features
seed``; known-user bodies that reach scoring; campaign budgets raised in a temporary config copy;
``dsp serve --workers 1`` on the HTTP front; wrk (one thread, ``--connections``) drives it for a
2 s warm-up and then for the whole sampling window; ``py-spy record --nonblocking --format raw``
samples the worker at ``--rate`` Hz (``--native`` adds C frames). The plain-Python build is
profiled by default (``DSP_PURE_PYTHON=1``): py-spy cannot see inside mypyc's C functions.
Each sample is charged to one part of the bid path by the innermost frame that belongs to a
known file (table ``PARTS``),
so a sample inside msgspec's C decoder counts as ``decode``, one in ``transport.write`` as
``front``. Samples with no Python frame of ours are the event loop's own (uvloop's C: epoll,
socket reads, callback dispatch). The report gives each part's share of the samples and the
top 25 innermost frames; the requests/s and CPU per request of the window are printed with it.

On a VM py-spy over-attributes samples to system-call sites; read shares as a ranking, and the
CPU per request from ``bench_bidpath`` as the total.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from benchmarks.bench_bidpath import PY, Server, group_cpu_s, run_wrk, seed_and_write_traffic
from dsp.testing.redis_server import RedisServer, free_port

# (part, regex on "file" of a frame): the first part whose pattern matches the innermost frame of
# ours wins; order matters (specific before general).
PARTS: list[tuple[str, str]] = [
    ("front: head parsing, response bytes, socket write", r"dsp/server/front"),
    ("decode + validate (msgspec)", r"dsp/openrtb/(decode|validate|request)"),
    ("response + notice tokens", r"dsp/bidding/respond|dsp/notices/tokens|dsp/openrtb/response"),
    ("prepare: filters, context, eligibility", r"dsp/bidding/(filters|context|eligibility)"),
    ("choose: caps, pricing, money gate", r"dsp/bidding/pricing|dsp/budget/freqcap|dsp/money"),
    ("batch read: Redis + record assembly", r"dsp/features/|redis/|hiredis"),
    ("scoring (ONNX)", r"dsp/scoring/|onnxruntime"),
    ("audience batching", r"dsp/bidding/audience|dsp/batching"),
    ("money runtime + notices (background)", r"dsp/budget/|dsp/notices/"),
    ("metrics", r"dsp/server/recorder|dsp/observability|prometheus_client"),
    ("decide / flow glue", r"dsp/bidding/(decide|flow)"),
    ("endpoint glue", r"dsp/server/bid_endpoint"),
    ("aiohttp (other routes)", r"aiohttp/"),
    ("event loop (uvloop C: epoll, reads, dispatch)", r"asyncio/(runners|base_events)\.py|uvloop/"),
    ("other dsp", r"dsp/"),
]
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")


def classify(stack: list[str]) -> tuple[str, str]:
    """(part, innermost frame) for one sample's frames (outermost first)."""
    leaf = stack[-1] if stack else "?"
    for frame in reversed(stack):
        m = _FRAME.match(frame)
        file = m.group("file") if m else frame
        for part, pattern in PARTS:
            if re.search(pattern, file):
                return part, leaf
    return "event loop (uvloop C: epoll, reads, dispatch)", leaf


def summarize(raw: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    parts: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        n = int(count_text)
        frames = [f for f in stack_text.split(";") if not f.startswith(("process ", "thread "))]
        part, leaf = classify(frames)
        parts[part] += n
        leaves[re.sub(r"^.*/(site-packages|dsp)/", "", leaf)] += n
        total += n
    return parts, leaves, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--bodies", type=int, default=2000)
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    ap.add_argument("--raw", type=Path, default=None, help="keep py-spy's raw output here")
    ap.add_argument("--compiled", action="store_true",
                    help="profile the mypyc build (its functions are C: py-spy charges their time to "
                         "the nearest Python caller); default: the plain-Python build, which it can see")
    args = ap.parse_args()
    if not Path(args.py_spy).exists():
        print(f"profile_bidpath: py-spy not found at {args.py_spy} (see the module docstring)",
              file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dsp-profile-"))
    try:
        with RedisServer() as redis:
            configs, _, _, lua = seed_and_write_traffic(work, redis.url, args.users, args.bodies)
            port = free_port()
            srv = Server("bidder-1w", [PY, "-m", "dsp.cli", "serve", "--port", str(port), "--workers", "1",
                                       "--redis-url", redis.url, "--configs", str(configs),
                                       "--log-level", "WARNING"], port,
                         env={"DSP_TOKEN_KEYS": "b1:" + "ab" * 16,
                              "DSP_PURE_PYTHON": "0" if args.compiled else "1"})
            raw = args.raw or work / "prof.txt"
            with srv:
                assert srv.proc is not None
                run_wrk(port, lua, args.connections, 2)
                result: dict[str, float] = {}
                cpu0 = group_cpu_s(srv.proc.pid)
                load = threading.Thread(target=lambda: result.update(
                    run_wrk(port, lua, args.connections, args.duration + 2)))
                load.start()
                cmd = [args.py_spy, "record", "--nonblocking", "-p", str(srv.proc.pid), "-d",
                       str(args.duration), "-r", str(args.rate), "--format", "raw", "-o", str(raw)]
                if args.native:
                    cmd.append("--native")
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                load.join()
                cpu_us = (group_cpu_s(srv.proc.pid) - cpu0) / max(1.0, result["requests"]) * 1e6
            parts, leaves, total = summarize(raw)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"# dsp serve --workers 1, wrk -t1 -c{args.connections}: {result['rps']:,.0f} req/s, "
          f"{cpu_us:.1f} µs CPU per request (whole process, incl. py-spy's pauses: none, --nonblocking); "
          f"{total} samples at {args.rate} Hz")
    print(f"\n{'part':<56}{'share':>7}{'µs/req':>9}")
    for part, n in parts.most_common():
        print(f"{part:<56}{n / total:>7.1%}{cpu_us * n / total:>9.1f}")
    print("\ninnermost frames (top 25):")
    for leaf, n in leaves.most_common(25):
        print(f"{n / total:>7.1%}  {leaf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
