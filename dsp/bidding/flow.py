"""One request's flow: a decoded request in, a :class:`Decision` out, inside the deadline.

    flow = BidFlow(resolver, money, notices, id_source)
    decision = await flow.run(req, profile, snapshot, deadline)

Steps: :func:`dsp.bidding.decide.prepare` (gates, context, candidates; no I/O) -> at most one await
(:meth:`AudienceResolver.resolve`, shared with concurrent requests) -> :func:`choose` (pricing,
best per imp, reservation) -> :func:`bid_response`. The HTTP layer only decodes, calls ``run``
and encodes: the flow knows nothing about the transport.

Degradation: Redis trouble makes the user unknown (inside the resolver); so does a user lookup
that has not finished when ``AUDIENCE_SHARE`` of the remaining budget is spent (the request goes
on with contextual campaigns and still answers in time); a model failure is a MODEL_ERROR no-bid;
a deadline that runs out anywhere is a DEADLINE no-bid, never a late bid.
"""

from __future__ import annotations

import random

import msgspec

from dsp.batching import DeadlineExceeded
from dsp.bidding.audience import Audience, AudienceSource
from dsp.bidding.decide import Chosen, IdSource, Prepared, choose, prepare_in_context
from dsp.bidding.ports import MoneyGate
from dsp.bidding.respond import NoticeUrls, bid_response
from dsp.clock import Deadline, monotonic, wall_time
from dsp.config.snapshot import Snapshot
from dsp.errors import DependencyUnavailable
from dsp.exchanges.profile import ExchangeProfile
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.request import BidRequest
from dsp.openrtb.response import BidResponse
from dsp.privacy.policy import Privacy

#: Share of the time left that the audience step (features + scores) may use; the rest is for
#: pricing, the response and the event loop getting back to this request under load.
AUDIENCE_SHARE = 0.8


class Decision(msgspec.Struct, gc=False):
    """Either ``response`` (200) or ``reason`` (no-bid). ``campaigns`` lists who bid (metrics)."""

    response: BidResponse | None = None
    reason: NoBidReason | None = None
    campaigns: tuple[str, ...] = ()
    pricing_s: float = 0.0  # time spent pricing and building the response (when timed)
    privacy: Privacy | None = None  # the consent signals' outcome (None: not looked at)
    # What the decision was made from, for the event log (None where the flow stopped earlier).
    prep: Prepared | None = None
    audience: Audience | None = None
    chosen: list[Chosen] | None = None


class BidFlow:
    """The bid path's orchestration. Holds its collaborators; no per-request state."""

    __slots__ = ("_draw", "_ids", "_money", "_notices", "_resolver")

    def __init__(self, resolver: AudienceSource, money: MoneyGate, notices: NoticeUrls,
                 ids: IdSource) -> None:
        self._resolver = resolver
        self._money = money
        self._notices = notices
        self._ids = ids
        self._draw = random.Random().random  # exploration draws (campaign learning.explore_share)

    async def audience(self, prep: Prepared, deadline: Deadline) -> Audience | NoBidReason:
        """The request's one await: resolve and score the user (or the population for nobody)."""
        if not prep.needs_user:
            return self._resolver.unknown()
        now = monotonic()
        share = Deadline(now + (deadline.at_s - now) * AUDIENCE_SHARE)
        try:
            return await self._resolver.resolve(prep.ctx.user_id, share, prep.intent_floor)
        except DeadlineExceeded:
            return NoBidReason.DEADLINE
        except DependencyUnavailable:
            return NoBidReason.MODEL_ERROR

    async def run(self, req: BidRequest, profile: ExchangeProfile, snapshot: Snapshot,
                  deadline: Deadline, *, timed: bool = False) -> Decision:
        if deadline.expired():
            return Decision(reason=NoBidReason.DEADLINE)
        ctx, prep = prepare_in_context(req, profile, snapshot, wall_time())
        privacy = ctx.privacy.outcome if ctx is not None else None
        if not isinstance(prep, Prepared):
            return Decision(reason=prep, privacy=privacy)
        if prep.may_explore:
            prep.explore_u = self._draw()
        audience = await self.audience(prep, deadline)
        if not isinstance(audience, Audience):
            return Decision(reason=audience, prep=prep, privacy=privacy)
        if deadline.expired():
            return Decision(reason=NoBidReason.DEADLINE, prep=prep, audience=audience,
                            privacy=privacy)
        t0 = monotonic() if timed else 0.0
        chosen = choose(prep, audience, self._money, snapshot, self._ids)
        if not isinstance(chosen, list):
            return Decision(reason=chosen, pricing_s=monotonic() - t0 if timed else 0.0,
                            prep=prep, audience=audience, privacy=privacy)
        response = bid_response(prep, chosen, self._notices, audience.user_key)
        return Decision(response=response,
                        campaigns=tuple([ch.candidate.campaign.id for ch in chosen]),
                        pricing_s=monotonic() - t0 if timed else 0.0,
                        prep=prep, audience=audience, chosen=chosen, privacy=privacy)
