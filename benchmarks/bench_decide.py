"""Micro-benchmark of the pure decision steps (``prepare`` + ``choose``) over the story fixtures.

    .venv/bin/python -m benchmarks.bench_decide [--rounds 5] [--n 20000]

CPU time (``time.process_time``) per request, best of ``--rounds``, for every story of
``tests/fixtures/bidding`` decoded once and decided ``--n`` times in a loop. This is the part of the
bid path that the filter table, eligibility and pricing own (no HTTP, no Redis, no ONNX), so a
change to them shows here undiluted. Compare runs on the same machine minutes apart; the machine
is shared, so run the two sides alternately and keep the best round of each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from dsp.bidding.decide import IdSource, Prepared, choose, prepare
from dsp.config.snapshot import load_snapshot
from dsp.openrtb.decode import RequestDecoder
from dsp.testing.fakes import AdmitAll
from dsp.testing.stories import audience_of

ROOT = Path(__file__).resolve().parent.parent
STORIES = ROOT / "tests" / "fixtures" / "bidding"
CONFIGS = ROOT / "tests" / "fixtures" / "configs" / "demo"


def _cases() -> list[tuple[Any, Any, Any, float]]:
    snapshot = load_snapshot(CONFIGS if CONFIGS.is_dir() else ROOT / "bidder_configs")
    out = []
    for path in sorted(STORIES.glob("*.json")):
        story = json.loads(path.read_text())
        if story["exchange"] not in snapshot.exchanges:
            continue
        profile = snapshot.exchanges[story["exchange"]]
        req = RequestDecoder().decode(json.dumps(story["request"]).encode(), lax_numbers=profile.lax_numbers)
        now = dt.datetime.fromisoformat(story.get("now", "2026-06-01T12:00:00Z").replace("Z", "+00:00"))
        out.append((req, profile, audience_of(story), now.timestamp()))
    return out


def per_request_us(n: int, rounds: int) -> float:
    snapshot = load_snapshot(CONFIGS if CONFIGS.is_dir() else ROOT / "bidder_configs")
    cases = _cases()
    money = AdmitAll()
    ids = IdSource("b-")
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n // len(cases)):
            for req, profile, audience, now_s in cases:
                prep = prepare(req, profile, snapshot, now_s)
                if isinstance(prep, Prepared):
                    choose(prep, audience, money, snapshot, ids)
        best = min(best, (time.process_time() - t0) / (n // len(cases) * len(cases)))
    return best * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()
    print(f"prepare+choose: {per_request_us(args.n, args.rounds):.2f} us per request (best of {args.rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
