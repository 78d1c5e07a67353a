"""Instructions per request of the bid path's steps, counted by callgrind: a noise-free companion
to ``bench_hotpath`` on a shared machine.

    .venv/bin/python -m benchmarks.count_hotpath [--steps decode,prepare,choose,respond,answer]
        [--n 300] [--baseline /path/to/other/checkout] [--compiled]

Timing on the shared 2-core VM moves by ±20 % from minute to minute, so a change worth 2–5 % of a
step cannot be seen in µs. Instructions executed can: the same code and input give the same count
to within ~1 % for ``answer`` (the event loop's bookkeeping) and ~0.2 % for the other steps
(``PYTHONHASHSEED=0``; measured by repeating runs). Instructions are not time (a BLAKE2b round or a cache miss
weighs differently from a bytecode), so read the counts beside ``bench_hotpath``'s µs, not instead.

Each (checkout, step) runs in its own process under ``valgrind --tool=callgrind`` with
instrumentation off during set-up (snapshot, bodies, requests decoded and prepared, one warm-up
pass); the parent switches it on (``callgrind_control -i on``) only around the measured loop over
``--n`` inputs: ``decode`` (bodies), ``prepare`` (decoded requests), ``choose`` (prepared requests
with the cycling scores of ``bench_hotpath``), ``respond`` (per **bid**: ``bid_response`` +
``encode_response``), ``answer`` (the whole ``BidEndpoint.answer``, as in ``bench_hotpath``). The
child code of *this* checkout runs against the other checkout's ``dsp`` with ``--baseline``.
Needs valgrind (``apt-get install valgrind``; not a project dependency). About 20 s per step and
checkout; plain Python unless ``--compiled``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("decode", "prepare", "choose", "respond", "answer")


def _wait(path: Path, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 900.0) -> None:
    end = time.monotonic() + timeout_s
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"child exited ({proc.returncode}) before {path.name}")
        if time.monotonic() > end:
            raise TimeoutError(path.name)
        time.sleep(0.02)


def child(step: str, n: int, sync: Path) -> None:
    """Set up, signal ``ready``, wait for ``go``, run ``n`` inputs of ``step``, signal ``done``."""
    sys.path.insert(0, os.getcwd())  # the checkout being measured, not this file's
    from prometheus_client import CollectorRegistry

    from benchmarks.bench_hotpath import SCORES, _AdmitAll, _answer_all, _CycleResolver
    from dsp.bidding.audience import Audience
    from dsp.bidding.decide import IdSource, Prepared, choose, prepare
    from dsp.bidding.flow import BidFlow
    from dsp.bidding.respond import NoticeUrls, bid_response
    from dsp.config.reloader import SnapshotHolder
    from dsp.config.snapshot import load_snapshot
    from dsp.errors import InvalidRequest
    from dsp.notices.tokens import TokenSigner
    from dsp.observability.metrics import Metrics
    from dsp.openrtb.decode import RequestDecoder
    from dsp.openrtb.response import encode_response
    from dsp.server.bid_endpoint import BidEndpoint
    from dsp.server.recorder import BidRecorder
    from dsp.testing.traffic import TrafficGenerator, TrafficMix

    root = Path.cwd()
    snap = load_snapshot(root / "bidder_configs")
    profile = snap.exchanges["generic"]
    gen = TrafficGenerator.from_sources(TrafficMix(exchanges={"generic": 1.0}, known_user_share=0.0,
                                                   seed=11))
    dec = RequestDecoder()
    now_s = 1.78e9  # fixed: the same flight days and hours in every run
    bodies: list[bytes] = []
    while len(bodies) < 2 * n:
        body = gen.next().body
        try:
            if isinstance(prepare(dec.decode(body), profile, snap, now_s), Prepared):
                bodies.append(body)
        except InvalidRequest:
            continue
    money, ids = _AdmitAll(), IdSource("b-")
    notices = NoticeUrls(TokenSigner({"k": b"k" * 32}, "k"), "http://127.0.0.1:8080")
    audiences = [Audience("u", True, p, pd, {}) for p, pd in SCORES]
    endpoint = BidEndpoint(SnapshotHolder(root / "bidder_configs", snap),
                           BidFlow(_CycleResolver(audiences), money, notices, ids),
                           BidRecorder(Metrics(CollectorRegistry())), 256 * 1024)
    reqs = [dec.decode(b) for b in bodies]
    preps = [prepare(r, profile, snap, now_s) for r in reqs]
    chosen = [choose(p, audiences[i % len(audiences)], money, snap, ids)  # type: ignore[arg-type]
              for i, p in enumerate(preps)]
    bids = [(p, c) for p, c in zip(preps, chosen, strict=True) if isinstance(c, list)]
    for p, c in bids:  # warm-up: every code path once (lazy caches filled)
        encode_response(bid_response(p, c, notices, "uk"))  # type: ignore[arg-type]
    asyncio.run(_answer_all(endpoint, bodies[:50]))
    (sync / "ready").touch()
    _wait(sync / "go")
    if step == "decode":
        for b in bodies[:n]:
            dec.decode(b)
    elif step == "prepare":
        for r in reqs[:n]:
            prepare(r, profile, snap, now_s)
    elif step == "choose":
        for i, p in enumerate(preps[:n]):
            choose(p, audiences[i % len(audiences)], money, snap, ids)  # type: ignore[arg-type]
    elif step == "respond":
        for p, c in bids[:n]:
            encode_response(bid_response(p, c, notices, "uk"))  # type: ignore[arg-type]
    elif step == "answer":
        asyncio.run(_answer_all(endpoint, bodies[:n]))
    (sync / "done").touch()
    _wait(sync / "end")


def count(checkout: Path, step: str, n: int, compiled: bool) -> int:
    """Instructions the measured loop of ``step`` executed in ``checkout``."""
    with tempfile.TemporaryDirectory(prefix="count-hotpath-") as tmp:
        sync = Path(tmp)
        env = {**os.environ, "PYTHONHASHSEED": "0", "DSP_PURE_PYTHON": "0" if compiled else "1"}
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={sync / 'callgrind.out'}",
               str(checkout / ".venv" / "bin" / "python"), str(Path(__file__).resolve()),
               "--child", step, "--n", str(n), "--sync", str(sync)]
        with open(sync / "log", "wb") as log:
            proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                _wait(sync / "ready", proc)
                subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                               capture_output=True)
                (sync / "go").touch()
                _wait(sync / "done", proc)
                subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True,
                               capture_output=True)
                (sync / "end").touch()
                proc.wait(timeout=300)
            finally:
                if proc.poll() is None:
                    proc.kill()
        text = (sync / "log").read_text(errors="replace")
        found = re.search(r"Collected : (\d+)", text)
        if proc.returncode != 0 or found is None:
            raise RuntimeError(f"callgrind run failed ({checkout}, {step}):\n{text[-2000:]}")
        return int(found.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--n", type=int, default=300, help="inputs per measured loop")
    ap.add_argument("--baseline", type=Path, help="another checkout (with its .venv) to count too")
    ap.add_argument("--compiled", action="store_true", help="the mypyc build instead of plain Python")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--sync", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.n, args.sync)
        return 0
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("needs valgrind (sudo apt-get install -y valgrind)", file=sys.stderr)
        return 2
    steps = [s for s in args.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        ap.error(f"unknown steps: {sorted(unknown)}")
    checkouts = [("this", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    build = "compiled" if args.compiled else "pure Python"
    print(f"# instructions per input (respond: per bid), {args.n} inputs, {build}")
    header = f"{'step':<10}" + "".join(f"{name:>14}" for name, _ in checkouts)
    print(header + (f"{'this/baseline':>15}" if args.baseline else ""))
    for step in steps:
        counts = [count(path, step, args.n, args.compiled) / args.n for _, path in checkouts]
        line = f"{step:<10}" + "".join(f"{c:>14,.0f}" for c in counts)
        if args.baseline:
            line += f"{counts[0] / counts[1]:>14.3f}x"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
