"""Micro-benchmark of the consent decoding and the invalid-traffic / supply gates.

    .venv/bin/python -m benchmarks.bench_quality [--rounds 3] [--n 20000]

Each row is CPU time (``time.process_time``) per call, best of ``--rounds``, all in one process
so the rows compare with each other (the machine is shared: compare ratios, not absolutes):

* ``decide``: :func:`dsp.privacy.policy.decide` on requests with no signal, a short TC string,
  a long range-encoded one (300 + 430 range entries, publisher restrictions), a GPP string with
  ``tcfeuv2`` and ``usnat``, and ``us_privacy``; each at first sight (the memo of decisions
  cleared before every call) and seen before (a user's strings repeat all session);
* ``quality_gate``: public IP and a browser UA seen before (memo hit), the same with the memo
  cleared before each call (first sight of a UA), a data-centre IP, an ads.txt check;
* ``prepare``: the whole pre-I/O step (gates, context, eligibility) for the demo config, without
  and with a GDPR consent string, to show what the privacy and quality gates add to it.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from dsp.bidding.decide import prepare
from dsp.bidding.quality import quality_gate
from dsp.config.snapshot import load_snapshot
from dsp.openrtb.decode import RequestDecoder
from dsp.privacy.policy import PrivacyPolicy, decide
from dsp.testing.consent import gpp_string, tc_string, usnat_section

ROOT = Path(__file__).resolve().parent.parent
UA = ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/123.0.6312.118 Mobile Safari/537.36")


def _request(**over: object) -> bytes:
    body = {"id": "r", "at": 2, "tmax": 120, "cur": ["USD"],
            "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}],
            "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"],
                     "publisher": {"id": "pub-1001"}},
            "device": {"ua": UA, "ip": "203.0.113.7", "devicetype": 2, "os": "Windows",
                       "geo": {"country": "USA", "region": "CA"}},
            "user": {"id": "u", "buyeruid": "b"}}
    body.update(over)
    return msgspec.json.encode(body)


def _time(fn: Callable[[], object], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t0) / n)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=20_000)
    a = ap.parse_args()
    snap = load_snapshot(ROOT / "bidder_configs")
    profile = snap.exchanges["generic"]
    dec = RequestDecoder()
    policy = PrivacyPolicy(vendor_id=1234)
    short_tc = tc_string(purposes_consent=range(1, 11), vendor_consents={1234, 755, 12})
    long_tc = tc_string(purposes_consent=range(1, 11), purposes_li=(2, 7), range_encoding=True,
                        vendor_consents={i for i in range(1, 3000) if i % 10 < 5} | {1234},
                        vendor_li={i for i in range(1, 3000, 7)},
                        restrictions=[(p, 1, range(100, 400)) for p in (2, 7, 9, 10)])
    gpp = gpp_string({2: short_tc, 7: usnat_section()})
    reqs = {
        "no signal": dec.decode(_request()),
        f"TCF short ({len(short_tc)} chars)": dec.decode(
            _request(regs={"gdpr": 1}, user={"consent": short_tc})),
        f"TCF range-encoded ({len(long_tc)} chars)": dec.decode(
            _request(regs={"gdpr": 1}, user={"consent": long_tc})),
        "GPP tcfeuv2 + usnat": dec.decode(_request(regs={"gpp": gpp, "gpp_sid": [2, 7]})),
        "us_privacy 1YNN": dec.decode(_request(regs={"us_privacy": "1YNN"})),
    }
    print(f"{'operation':58s} {'µs/call':>8s}")
    memo = policy.decisions

    def first_sight(r: object) -> object:
        memo.clear()
        return decide(r, policy)  # type: ignore[arg-type]

    for name, req in reqs.items():
        n = a.n // 20 if "range" in name else a.n
        first = functools.partial(first_sight, req)
        again = functools.partial(decide, req, policy)
        print(f"{'decide, first sight: ' + name:58s} {_time(first, n, a.rounds):8.2f}")
        print(f"{'decide, string seen before: ' + name:58s} {_time(again, a.n, a.rounds):8.2f}")
    plain = reqs["no signal"]
    rules = snap.traffic
    print(f"{'quality_gate: browser UA seen before, public IP':58s} "
          f"{_time(lambda: quality_gate(plain, profile, rules), a.n, a.rounds):8.2f}")

    def cold() -> object:
        rules.bots._cache.clear()
        return quality_gate(plain, profile, rules)

    cold_us = _time(cold, a.n // 10, a.rounds)
    print(f"{'quality_gate: first sight of the UA (memo cleared)':58s} {cold_us:8.2f}")
    dc = dec.decode(_request(device={"ua": UA, "ip": "3.0.4.5", "devicetype": 2}))
    dc_us = _time(lambda: quality_gate(dc, profile, rules), a.n, a.rounds)
    print(f"{'quality_gate: data-centre IP':58s} {dc_us:8.2f}")
    now = time.time()
    base_ms = _time(lambda: prepare(plain, profile, snap, now), a.n, a.rounds)
    eu = reqs[f"TCF short ({len(short_tc)} chars)"]
    eu_ms = _time(lambda: prepare(eu, profile, snap, now), a.n, a.rounds)
    print(f"{'prepare: whole pre-I/O step, no privacy signal':58s} {base_ms:8.2f}")
    print(f"{'prepare: same, GDPR with a TC string':58s} {eu_ms:8.2f}")


if __name__ == "__main__":
    main()
