"""The bid path's pure per-request steps, compiled (mypyc) vs plain Python, in one run.

    .venv/bin/python -m benchmarks.bench_hotpath [--rounds 5] [--bodies 2000]

No sockets, Redis or models: the CPU one request spends in the steps ``dsp.compiled.HOT_PATH``
covers and their neighbours, on realistic bodies (``dsp.testing.traffic``, generic exchange,
only bodies that reach scoring), with synthetic scores (a fixed cycle of p_intent/pd pairs, about
half of them bid) and a money gate that admits everything:

* ``head``     the HTTP front's head parsing (``dsp.server.front.parse_head``: llhttp via httptools)
               of a wrk-like head; ``head-split`` is the bytes-splitting parser it replaced (kept
               below for this comparison, same rules);
* ``decode``   ``RequestDecoder.decode`` (msgspec + the semantic checks);
* ``prepare``  gates, request context, eligibility;
* ``choose``   caps, pricing, money gate, best per imp, reservation;
* ``respond``  ``bid_response`` (notice tokens, HMAC) + ``encode_response`` (bids only);
* ``write``    the front's response bytes;
* ``answer``   the whole ``BidEndpoint.answer`` (decode, the flow's ``run`` with its one await
               answered at once by a resolver that cycles through the same scores, metrics tallies,
               response encoding) awaited in a loop: the steps above plus the glue around them,
               without the event loop, sockets, Redis or a Task (not part of the total).

The parent runs two child processes per round, alternately: ``DSP_PURE_PYTHON=1`` (plain Python)
and the compiled build (when ``scripts/compile`` made one), and reports each step's best round in
µs of CPU (``time.process_time``) per request, and the ratio. Ratios are what to compare on a
shared machine. Timing lives here, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("head", "decode", "prepare", "choose", "respond", "write")
REFERENCE = ("head-split", "answer")  # not part of the total
HEAD = (b"POST /bid/generic HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1234\r\nx-openrtb-version: 2.6")
SCORES = ((0.05, 0.10), (0.004, math.nan), (0.02, 0.45), (0.03, 0.15), (0.012, 0.25), (0.2, 0.05))


def split_parse_head(head: bytes) -> tuple[str, int, bool, bool, bytes | None] | None:
    """The front's head parser before llhttp (``bytes.split``/``partition``), for comparison."""
    lines = head.split(b"\r\n")
    method, _, rest = lines[0].partition(b" ")
    target, _, protocol = rest.partition(b" ")
    if method != b"POST" or protocol != b"HTTP/1.1" or not target.startswith(b"/bid/"):
        return None
    name = target[5:].partition(b"?")[0]
    if not name or name.translate(None, b"abcdefghijklmnopqrstuvwxyz0123456789_.-"):
        return None
    length, accept_gzip, close, version = -1, False, False, None
    for line in lines[1:]:
        key, colon, value = line.partition(b":")
        if (not colon or not key or key[0] in (32, 9) or key[-1] in (32, 9)
                or b"\r" in line or b"\n" in line or b"\x00" in line):
            return None
        key = key.lower()
        value = value.strip(b" \t")
        if key == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > 12:
                return None
            length = int(value)
        elif key == b"accept-encoding":
            accept_gzip = b"gzip" in value.lower()
        elif key == b"connection":
            close = b"close" in value.lower()
        elif key == b"x-openrtb-version":
            version = value if value.isascii() and value.decode().isprintable() else None
        elif key == b"content-encoding":
            if value.lower() not in (b"", b"identity", b"gzip", b"x-gzip"):
                return None
        elif key in (b"transfer-encoding", b"expect", b"upgrade"):
            return None
    return name.decode(), max(length, 0), accept_gzip, close, version


class _CycleResolver:
    """An AudienceSource that answers at once, cycling through :data:`SCORES`."""

    def __init__(self, audiences: list[Any]) -> None:
        self._audiences = audiences
        self._i = 0

    def unknown(self, user_key: str = "", caps: dict[str, bytes] | None = None) -> Any:
        return self._audiences[0]

    async def resolve(self, user_id: str, deadline: Any, intent_floor: float = 0.0) -> Any:
        self._i += 1
        return self._audiences[self._i % len(self._audiences)]

    async def close(self) -> None:
        return None


class _AdmitAll:
    def pacing_multiplier(self, campaign_id: str) -> float:
        return 0.0

    def admit(self, campaign_id: str, value_micros: int) -> None:
        return None

    def reserve(self, campaign_id: str, bid_id: str, price_micros: int, expires_at_s: float,
                test: bool = False, issued_at_s: float | None = None) -> bool:
        return True


async def _answer_all(endpoint: Any, bodies: list[bytes]) -> None:
    from dsp.clock import monotonic

    for body in bodies:
        await endpoint.answer("generic", body, False, monotonic())


def child(n_bodies: int, repeat: int) -> dict[str, object]:
    """Measure every step over the bodies ``repeat`` times; µs per request per step."""
    from dsp import compiled
    from dsp.bidding.audience import Audience
    from dsp.bidding.decide import IdSource, Prepared, choose, prepare
    from dsp.bidding.respond import NoticeUrls, bid_response
    from dsp.config.snapshot import load_snapshot
    from dsp.errors import InvalidRequest
    from dsp.notices.tokens import TokenSigner
    from dsp.openrtb.decode import RequestDecoder
    from dsp.openrtb.response import encode_response
    from dsp.server.bid_endpoint import BidReply
    from dsp.server.front import Front, parse_head
    from dsp.testing.traffic import TrafficGenerator, TrafficMix

    snap = load_snapshot(ROOT / "bidder_configs")
    profile = snap.exchanges["generic"]
    gen = TrafficGenerator.from_sources(TrafficMix(exchanges={"generic": 1.0}, known_user_share=0.0,
                                                   seed=11))
    dec = RequestDecoder()
    now = time.time()
    bodies: list[bytes] = []
    while len(bodies) < n_bodies:
        body = gen.next().body
        try:
            if isinstance(prepare(dec.decode(body), profile, snap, now), Prepared):
                bodies.append(body)
        except InvalidRequest:
            continue
    money, ids = _AdmitAll(), IdSource("b-")
    notices = NoticeUrls(TokenSigner({"k": b"k" * 32}, "k"), "http://127.0.0.1:8080")
    from prometheus_client import CollectorRegistry

    from dsp.bidding.flow import BidFlow
    from dsp.config.reloader import SnapshotHolder
    from dsp.observability.metrics import Metrics
    from dsp.server.bid_endpoint import BidEndpoint
    from dsp.server.recorder import BidRecorder

    audiences = [Audience("u", True, p, pd, {}) for p, pd in SCORES]
    endpoint = BidEndpoint(SnapshotHolder(ROOT / "bidder_configs", snap),
                           BidFlow(_CycleResolver(audiences), money, notices, ids),
                           BidRecorder(Metrics(CollectorRegistry())), 256 * 1024)
    front = Front(endpoint, lambda: None)  # type: ignore[arg-type,return-value]  # .response() only
    spent = dict.fromkeys(STEPS + REFERENCE, 0.0)
    bids = 0
    clock = time.process_time
    for _ in range(repeat):
        t = clock()
        for _ in bodies:
            parse_head(HEAD)
        spent["head"] += clock() - t
        t = clock()
        for _ in bodies:
            split_parse_head(HEAD)
        spent["head-split"] += clock() - t
        t = clock()
        reqs = [dec.decode(b) for b in bodies]
        spent["decode"] += clock() - t
        t = clock()
        preps = [prepare(r, profile, snap, now) for r in reqs]
        spent["prepare"] += clock() - t
        t = clock()
        chosen = [choose(p, audiences[i % len(audiences)], money, snap, ids)  # type: ignore[arg-type]
                  for i, p in enumerate(preps)]
        spent["choose"] += clock() - t
        t = clock()
        replies = []
        for p, ch in zip(preps, chosen, strict=True):
            if isinstance(ch, list):
                replies.append(BidReply(200, encode_response(bid_response(p, ch, notices, "uk"))))  # type: ignore[arg-type]
            else:
                replies.append(BidReply(204))
        spent["respond"] += clock() - t
        bids = sum(1 for r in replies if r.status == 200)
        t = clock()
        for r in replies:
            front.response(r, b"2.6", False)
        spent["write"] += clock() - t
        t = clock()
        asyncio.run(_answer_all(endpoint, bodies))
        spent["answer"] += clock() - t
    n = len(bodies) * repeat
    return {"status": compiled.STATUS, "bid_share": bids / len(bodies),
            "us": {k: v / n * 1e6 for k, v in spent.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bodies", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5, help="passes over the bodies per round")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.bodies, args.repeat)))
        return 0
    best: dict[str, dict[str, float]] = {}
    status: dict[str, str] = {}
    share = 0.0
    for _ in range(args.rounds):
        for build, env in (("pure", {"DSP_PURE_PYTHON": "1"}), ("compiled", {"DSP_PURE_PYTHON": "0"})):
            out = subprocess.run([sys.executable, "-m", "benchmarks.bench_hotpath", "--child",
                                  "--bodies", str(args.bodies), "--repeat", str(args.repeat)],
                                 cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True,
                                 text=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            status[build], share = res["status"], res["bid_share"]
            b = best.setdefault(build, {})
            for k, v in res["us"].items():
                b[k] = min(b.get(k, math.inf), v)
    print(f"# {args.bodies} bodies × {args.repeat} passes, best of {args.rounds} rounds; bids {share:.0%}")
    print(f"# pure: {status['pure']}; compiled: {status['compiled']}")
    print(f"{'step':<10}{'pure µs':>10}{'compiled µs':>13}{'pure/compiled':>15}")
    for k in (*STEPS, "total", *REFERENCE):
        p = sum(best["pure"][x] for x in STEPS) if k == "total" else best["pure"][k]
        c = sum(best["compiled"][x] for x in STEPS) if k == "total" else best["compiled"][k]
        print(f"{k:<10}{p:>10.2f}{c:>13.2f}{p / c:>14.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
