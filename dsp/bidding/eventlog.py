"""What one bid request leaves in the event log: a bid event per bid, and sometimes a sample.

    log = BidEventLog(writer, hash_key, model_versions={"intent": "3", "risk": "2"})
    log.record(body, decision, config_version)        # after the decision; never awaits

Per request the cost is one random draw (the request sample) plus, per bid placed, one keyed
hash and one :class:`~dsp.events.schema.BidEvent` appended to the writer's buffer
(benchmarks/bench_bidpath.py measures events on against off). A sampled request (``sample_rate``,
default 1%) also keeps its sanitized body (:mod:`dsp.events.sanitize`), its outcome and scores,
no-bids included, so a forecast can replay real traffic.

Every decoded request may be sampled, including those no campaign was eligible for (a config
change may make them eligible: a forecast needs them). Invalid bodies and unknown exchanges are
not sampled: they cannot be replayed.
"""

from __future__ import annotations

import os
import random
from typing import Protocol

from dsp.bidding.audience import Audience
from dsp.bidding.decide import Chosen, Prepared
from dsp.bidding.flow import Decision
from dsp.clock import wall_time
from dsp.events.sanitize import sanitize_request
from dsp.events.schema import BidEvent, Event, SampleEvent, keyed_user_hash
from dsp.openrtb.request import BidRequest


class EventAppender(Protocol):
    """The writer's hot-path surface (:class:`dsp.events.writer.EventWriter`)."""

    def append(self, event: Event) -> None: ...


def _scores(audience: Audience | None) -> dict[str, float]:
    """Every named score of the scoring plan (``p_intent``, ``pd`` and any other model's).
    NaN (the risk model skipped below every intent floor) is kept: it says "not scored"."""
    if audience is None:
        return {}
    if audience.scores:
        return audience.scores
    return {"p_intent": audience.p_intent, "pd": audience.pd}


class BidEventLog:
    """Maps decisions to events. One per process; holds no per-request state."""

    __slots__ = ("_hash_key", "_model_versions", "_prefix", "_random", "_writer", "sample_rate",
                 "samples")

    def __init__(self, writer: EventAppender, hash_key: bytes, *,
                 model_versions: dict[str, str] | None = None, sample_rate: float = 0.01) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be within [0, 1]")
        self._writer = writer
        self._hash_key = hash_key
        self._model_versions = dict(model_versions or {})
        self._random = random.Random().random
        self._prefix = f"s{os.getpid():x}{random.getrandbits(24):06x}-"
        self.sample_rate = sample_rate
        self.samples = 0

    def record(self, body: bytes, req: BidRequest, exchange: str, decision: Decision,
               config_version: str) -> None:
        """Log ``decision`` (made from ``body``, decoded as ``req``). Cheap when nothing was bid
        and the request is not sampled."""
        prep = decision.prep
        chosen = decision.chosen
        user_hash = ""
        if chosen and prep is not None:
            user_hash = keyed_user_hash(prep.ctx.user_id, self._hash_key)
            self._bids(prep, chosen, decision.audience, user_hash, config_version)
        if self.sample_rate and self._random() < self.sample_rate:
            self._sample(body, req, exchange, decision, user_hash, config_version)

    def _bids(self, prep: Prepared, chosen: list[Chosen], audience: Audience | None,
              user_hash: str, config_version: str) -> None:
        ctx = prep.ctx
        ts_us = int(ctx.now_s * 1_000_000)
        known = audience is not None and audience.known
        features = b""
        if audience is not None and audience.features is not None:
            features = audience.features.astype("<f4", copy=False).tobytes()
        scores = _scores(audience)
        append = self._writer.append
        for ch in chosen:
            cand = ch.candidate
            c = cand.campaign
            cr = cand.creative
            imp = cand.imp
            append(BidEvent(
                ts_us=ts_us, exchange=ctx.exchange, campaign=c.id, test=ctx.test,
                bid_id=ch.bid_id, request_id=prep.req.id, imp_id=imp.id, creative=cr.id,
                format=cr.kind, w=cr.w or 0, h=cr.h or 0,
                deal_id=cand.deal.id if cand.deal is not None else "",
                floor_cpm_micros=cand.floor_cpm_micros, floor_currency=c.currency,
                bid_cpm_micros=ch.price.bid_cpm_micros,
                bid_price_micros=-(-ch.price.bid_cpm_micros // 1000), currency=c.currency,
                response_cpm_micros=ch.price_cpm_micros, response_currency=prep.currency,
                auction_type=cand.auction_type,
                shading=ch.price.shading if cand.auction_type == 1 else 1.0,
                value_cpm_micros=ch.price.value_cpm_micros, pacing_lambda=ch.price.pacing_lambda,
                user_hash=user_hash, user_known=known, features=features, scores=scores,
                model_versions=self._model_versions, config_version=config_version,
                explore=ch.price.explore, propensity=ch.price.propensity))

    def _sample(self, body: bytes, req: BidRequest, exchange: str, decision: Decision,
                user_hash: str, config_version: str) -> None:
        clean = sanitize_request(body, self._hash_key)
        if clean is None:
            return
        prep = decision.prep
        now_s = prep.ctx.now_s if prep is not None else wall_time()
        if prep is not None and not user_hash:
            user_hash = keyed_user_hash(prep.ctx.user_id, self._hash_key)
        self.samples += 1
        audience = decision.audience
        self._writer.append(SampleEvent(
            ts_us=int(now_s * 1_000_000), exchange=exchange, test=req.test == 1,
            sample_id=f"{self._prefix}{self.samples:x}", request_id=req.id, body=clean,
            sample_rate=self.sample_rate,
            outcome="bid" if decision.response is not None else "nobid",
            reason=decision.reason.value if decision.reason is not None else "",
            user_hash=user_hash,
            user_known=audience is not None and audience.known, scores=_scores(audience),
            bid_ids=[ch.bid_id for ch in decision.chosen] if decision.chosen else [],
            config_version=config_version))
