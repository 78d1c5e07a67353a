"""The event log's cost on the bid path, in-process, and the size of an event.

    .venv/bin/python -m benchmarks.bench_events [--n 20000] [--rounds 5]

CPU per request of what the event log adds to one bid request (thread CPU time, best of
``--rounds``; steadier than a whole-server run on a busy machine):

* ``record`` on a bid (one bid event: keyed user hash, the feature vector, the scores) and on a
  no-bid, at the default 1% request sample (the sampled request's body is sanitized then);
* the writer's share per event at flush time (msgpack encoding of a tick's events);
* for scale, the bid flow itself (prepare, choose, build the response) for the same request.

Then bytes per event: msgpack in Redis, and zstd Parquet for 100,000 events of each kind
(synthetic, realistic field values). Compare the added µs with the server's CPU per request from
``benchmarks/bench_bidpath.py --events on,off`` (run in the same session).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np

from dsp.bidding.audience import Audience
from dsp.bidding.decide import IdSource, Prepared, choose, prepare
from dsp.bidding.eventlog import BidEventLog
from dsp.bidding.flow import Decision
from dsp.bidding.respond import NoticeUrls, bid_response
from dsp.config.snapshot import load_snapshot
from dsp.events.codec import encode_entry
from dsp.events.schema import Event
from dsp.notices.tokens import TokenSigner
from dsp.openrtb.decode import RequestDecoder
from dsp.testing.fakes import AdmitAll
from dsp.testing.users import desktop_banner_request, interested_user_row

ROOT = Path(__file__).resolve().parent.parent


class ListWriter:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def append(self, event: Event) -> None:
        self.events.append(event)


def _cpu_us(fn: object, n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.thread_time()
        for _ in range(n):
            fn()  # type: ignore[operator]
        best = min(best, (time.thread_time() - t0) / n * 1e6)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    snap = load_snapshot(ROOT / "bidder_configs")
    profile = snap.exchanges["generic"]
    body = msgspec.json.encode(desktop_banner_request("req-1", "user-1"))
    req = RequestDecoder().decode(body)
    features = interested_user_row()[0]
    audience = Audience("u:{0123456789abcdef}", True, 0.3, 0.02, {},
                        {"p_intent": 0.3, "pd": 0.02}, features)
    money = AdmitAll()
    ids = IdSource("bench-")
    notices = NoticeUrls(TokenSigner({"k": b"0123456789abcdef"}, "k"), "http://b.test")

    def flow() -> Decision:
        prep = prepare(req, profile, snap, time.time())
        assert isinstance(prep, Prepared)
        chosen = choose(prep, audience, money, snap, ids)
        assert isinstance(chosen, list)
        return Decision(response=bid_response(prep, chosen, notices, audience.user_key),
                        prep=prep, audience=audience, chosen=chosen)

    decision = flow()
    nobid = Decision(prep=decision.prep, audience=audience)
    writer = ListWriter()
    log = BidEventLog(writer, b"k" * 32, model_versions={"intent": "v1", "risk": "v1"})

    def record_bid() -> None:
        log.record(body, req, "generic", decision, snap.version)
        if len(writer.events) > 10_000:
            writer.events.clear()

    def record_nobid() -> None:
        log.record(body, req, "generic", nobid, snap.version)
        if len(writer.events) > 10_000:
            writer.events.clear()

    flow_us = _cpu_us(flow, args.n, args.rounds)
    bid_us = _cpu_us(record_bid, args.n, args.rounds)
    nobid_us = _cpu_us(record_nobid, args.n, args.rounds)
    writer.events.clear()
    for _ in range(200):
        record_bid()
    tick = list(writer.events[:200])
    enc_us = _cpu_us(lambda: encode_entry(tick), max(1, args.n // 200), args.rounds) / len(tick)
    print(f"bid flow (prepare, choose, response), one bid: {flow_us:6.2f} µs/request")
    print(f"event log on a bid request (1 bid event):      {bid_us:6.2f} µs/request")
    print(f"event log on a no-bid request:                 {nobid_us:6.2f} µs/request")
    print(f"flush encoding per event (tick of {len(tick)}):      {enc_us:6.2f} µs/event")
    print(f"added per bid request ≈ {bid_us + enc_us:.2f} µs; per no-bid ≈ {nobid_us:.2f} µs")
    _sizes(decision, log, writer, body, req, snap.version)
    return 0


def _sizes(decision: Decision, log: BidEventLog, writer: ListWriter, body: bytes,
           req: object, version: str) -> None:
    from dsp.offline.eventlog.parquet import write_events

    rng = np.random.default_rng(0)
    writer.events.clear()
    log.sample_rate = 1.0
    for i in range(20_000):
        assert decision.chosen is not None
        ch = decision.chosen[0]
        ch.bid_id = f"3f9a1c4d2-{i:x}"
        decision.audience = Audience("u", True, float(rng.random()), float(rng.random()), {},
                                     {"p_intent": float(rng.random()), "pd": float(rng.random())},
                                     rng.random(32).astype(np.float32))
        log.record(body, req, "generic", decision, version)  # type: ignore[arg-type]
    by_kind: dict[str, list[Event]] = {}
    for ev in writer.events:
        by_kind.setdefault(type(ev).__name__, []).append(ev)
    with tempfile.TemporaryDirectory() as d:
        for name, evs in sorted(by_kind.items()):
            redis_b = sum(len(encode_entry(evs[i:i + 200])[b"e"]) for i in range(0, len(evs), 200))
            kind = "bid" if name == "BidEvent" else "sample"
            _, size = write_events(Path(d), kind, "2026-12-03", 8, "x", evs)
            print(f"{name:<12} {len(evs):>6} events: msgpack {redis_b / len(evs):6.0f} B/event, "
                  f"Parquet {size / len(evs):6.1f} B/event")


if __name__ == "__main__":
    raise SystemExit(main())
