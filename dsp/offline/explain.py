"""What the bidder would do with one request, per imp and campaign, and why. Pure; no money moves.

    report = explain(req, profile, snapshot, audience, now_s)
    print(render(report))

Runs the same steps as the hot path (:func:`prepare`, :func:`choose`) with tracing on and a money
gate that admits everything without reserving (:class:`dsp.testing.fakes.AdmitAll`), so the answer
shows the bid the targeting and the value formula produce; budget and pacing state are live-only
and are not part of it. Every drop names its row of the filter table (:mod:`dsp.bidding.filters`).
"""

from __future__ import annotations

import msgspec

from dsp.bidding.audience import Audience
from dsp.bidding.decide import IdSource, Prepared, Priced, choose, prepare_in_context
from dsp.bidding.eligibility import Drop
from dsp.config.snapshot import Snapshot
from dsp.exchanges.profile import ExchangeProfile
from dsp.openrtb.request import BidRequest
from dsp.testing.fakes import AdmitAll


class Line(msgspec.Struct, frozen=True):
    campaign: str
    imp: str  # imp id, or "*" for the whole request
    outcome: str  # "bid" | "outbid" | a NoBidReason value
    detail: str
    value_cpm: float | None = None
    bid_cpm: float | None = None
    filter: str = ""  # the row of dsp.bidding.filters that decided it ("" for bid/outbid)


class Report(msgspec.Struct, frozen=True):
    request_id: str
    exchange: str
    currency: str | None
    user: str
    lines: list[Line]
    decision: str
    nbr: int | None = None
    privacy: str = ""  # the consent signals' outcome and why (empty: not looked at)


def explain(req: BidRequest, profile: ExchangeProfile, snapshot: Snapshot, audience: Audience,
            now_s: float, user_note: str = "") -> Report:
    drops: list[Drop] = []
    priced: list[Priced] = []
    ctx, prep = prepare_in_context(req, profile, snapshot, now_s, trace=drops)
    privacy = ""
    if ctx is not None:
        pd = ctx.privacy
        privacy = pd.outcome.value + (" (user data allowed)" if pd.user_data else " (no user data)") + (
            f" — {pd.detail}" if pd.detail else "") + (", GDPR applies" if pd.eu else "")
    imp_ids = [imp.id for imp in req.imp]
    lines = [Line(d.campaign_id, imp_ids[d.imp_index] if d.imp_index >= 0 else "*",
                  d.reason.value, d.detail, filter=d.filter) for d in drops]
    user = user_note or (f"known (p_intent={audience.p_intent:.4f}, pd={audience.pd:.4f})"
                         if audience.known else
                         f"unknown (population p_intent={audience.p_intent:.4f}, pd={audience.pd:.4f})")
    if not isinstance(prep, Prepared):
        return Report(req.id, profile.name, None, user, lines,
                      f"no-bid: {prep.value}", prep.nbr, privacy)
    chosen = choose(prep, audience, AdmitAll(), snapshot, IdSource("explain-"), trace=priced)
    winners = {} if not isinstance(chosen, list) else {
        (c.candidate.campaign.id, c.candidate.imp_index): c for c in chosen}
    for p in priced:
        imp_id = imp_ids[p.imp_index]
        won = (p.campaign_id, p.imp_index) in winners
        outcome = "bid" if won else (p.reason.value if p.reason is not None else "outbid")
        detail = p.detail or ("wins the imp" if won else "another campaign bids more on this imp")
        lines.append(Line(p.campaign_id, imp_id, outcome, detail, p.value_cpm_micros / 1e6,
                          p.bid_cpm_micros / 1e6, filter=p.filter))
    if isinstance(chosen, list):
        parts = [f"imp {c.candidate.imp.id} -> {c.candidate.campaign.id} "
                 f"{c.price_cpm_micros / 1e6:.6f} {prep.currency} CPM"
                 + (f" (deal {c.candidate.deal.id})" if c.candidate.deal is not None else "")
                 for c in chosen]
        return Report(req.id, profile.name, prep.currency, user, lines, "bid: " + "; ".join(parts),
                      None, privacy)
    return Report(req.id, profile.name, prep.currency, user, lines, f"no-bid: {chosen.value}",
                  chosen.nbr, privacy)


def render(report: Report) -> str:
    out = [f"request {report.request_id} on exchange {report.exchange}"
           + (f", answering in {report.currency}" if report.currency else ""),
           f"user: {report.user}"]
    if report.privacy:
        out.append(f"privacy: {report.privacy}")
    by_campaign: dict[str, list[Line]] = {}
    for line in report.lines:
        by_campaign.setdefault(line.campaign, []).append(line)
    for campaign, lines in by_campaign.items():
        out.append(f"campaign {campaign}:")
        for ln in lines:
            where = "all imps" if ln.imp == "*" else f"imp {ln.imp}"
            money = ""
            if ln.value_cpm is not None and ln.value_cpm > 0:
                money = f" value {ln.value_cpm:.4f} CPM"
                if ln.bid_cpm:
                    money += f", bid {ln.bid_cpm:.4f} CPM"
            by = f" [filter {ln.filter}]" if ln.filter else ""
            out.append(f"  {where}: {ln.outcome}{by}{money}" + (f" — {ln.detail}" if ln.detail else ""))
    out.append(f"decision: {report.decision}" + (f" (nbr {report.nbr})" if report.nbr is not None else ""))
    return "\n".join(out)
