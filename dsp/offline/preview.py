"""Replay requests through two config snapshots and report how the decisions change. Pure.

    result = preview(old_snapshot, new_snapshot, samples)
    print(render_preview(result))

Each sample is (name, exchange, decoded request, audience). A marketer raising ``pd_max`` or
adding a country sees, before reloading, how many more requests each campaign would bid on and
at what average price; no money moves (the money gate admits everything without reserving).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from dsp.bidding.audience import Audience
from dsp.bidding.decide import IdSource, Prepared, choose, prepare
from dsp.config.snapshot import Snapshot
from dsp.openrtb.request import BidRequest
from dsp.testing.fakes import AdmitAll


class Sample(msgspec.Struct, frozen=True):
    name: str
    exchange: str
    request: BidRequest
    audience: Audience


class Decision(msgspec.Struct, frozen=True):
    outcome: str  # "bid" or a no-bid reason
    bids: dict[str, float]  # campaign -> CPM in the campaign currency


class PreviewResult(msgspec.Struct, frozen=True):
    samples: int
    bids_before: dict[str, int]
    bids_after: dict[str, int]
    cpm_before: dict[str, float]
    cpm_after: dict[str, float]
    changed: list[tuple[str, str, str]]  # (sample, before, after)


def _decide(snapshot: Snapshot, s: Sample, now_s: float) -> Decision:
    profile = snapshot.exchanges.get(s.exchange)
    if profile is None:
        return Decision("unknown_exchange", {})
    prep = prepare(s.request, profile, snapshot, now_s)
    if not isinstance(prep, Prepared):
        return Decision(prep.value, {})
    chosen = choose(prep, s.audience, AdmitAll(), snapshot, IdSource("preview-"))
    if not isinstance(chosen, list):
        return Decision(chosen.value, {})
    bids: dict[str, float] = {}
    for c in chosen:
        bids[c.candidate.campaign.id] = c.price.bid_cpm_micros / 1e6  # campaign currency
    return Decision("bid", bids)


def _label(d: Decision) -> str:
    if d.outcome != "bid":
        return f"no-bid ({d.outcome})"
    return "bid " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(d.bids.items()))


def preview(old: Snapshot, new: Snapshot, samples: Sequence[Sample], now_s: float) -> PreviewResult:
    counts: tuple[dict[str, int], dict[str, int]] = ({}, {})
    sums: tuple[dict[str, float], dict[str, float]] = ({}, {})
    changed: list[tuple[str, str, str]] = []
    for s in samples:
        before, after = _decide(old, s, now_s), _decide(new, s, now_s)
        for k, d in enumerate((before, after)):
            for cid, cpm in d.bids.items():
                counts[k][cid] = counts[k].get(cid, 0) + 1
                sums[k][cid] = sums[k].get(cid, 0.0) + cpm
        if before != after:
            changed.append((s.name, _label(before), _label(after)))
    avg = tuple({c: sums[k][c] / counts[k][c] for c in counts[k]} for k in (0, 1))
    return PreviewResult(len(samples), counts[0], counts[1], avg[0], avg[1], changed)


def render_preview(r: PreviewResult, max_changes: int = 30) -> str:
    out = [f"{r.samples} requests replayed"]
    for cid in sorted(set(r.bids_before) | set(r.bids_after)):
        b, a = r.bids_before.get(cid, 0), r.bids_after.get(cid, 0)
        pb, pa = r.cpm_before.get(cid), r.cpm_after.get(cid)
        price = f"avg CPM {pb:.4f} -> {pa:.4f}" if pb is not None and pa is not None else ""
        out.append(f"  {cid}: bids {b} -> {a} ({a - b:+d}) {price}")
    out.append(f"{len(r.changed)} decisions change")
    for name, before, after in r.changed[:max_changes]:
        out.append(f"  {name}: {before}  =>  {after}")
    if len(r.changed) > max_changes:
        out.append(f"  ... and {len(r.changed) - max_changes} more")
    return "\n".join(out)
