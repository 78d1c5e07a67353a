"""``dsp explain REQUEST.json [--exchange NAME]``: per imp and campaign, the filter or the price.

    dsp explain tests/fixtures/bidding/bid-known-user.json --exchange generic
    dsp explain req.json --redis-url redis://127.0.0.1:6379/0      # look the user up and score them
    dsp explain req.json --p-intent 0.12 --pd 0.08                  # what-if scores

The file may be a bare OpenRTB request or a story fixture (``{"request": {...}, ...}``). The user is
looked up in Redis and scored with the real models when ``--redis-url`` (or ``REDIS_URL``) is given
and reachable; otherwise they are scored as unknown (population scores). Exit code 0 for a bid,
1 for a no-bid, 2 for an invalid request or config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsp.bidding.audience import Audience
    from dsp.scoring.model import ModelRunner


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("request", help="OpenRTB request JSON (or a story fixture with 'request')")
    parser.add_argument("--exchange", default=None,
                        help="exchange profile (default: generic, or the fixture's)")
    parser.add_argument("--configs", default=os.environ.get("DSP_CONFIGS", "bidder_configs"))
    parser.add_argument("--models", default=os.environ.get("DSP_MODELS", "models"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--p-intent", type=float, default=None, help="override the intent score")
    parser.add_argument("--pd", type=float, default=None, help="override the probability of default")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import msgspec

    from dsp.bidding.context import request_context
    from dsp.clock import wall_time
    from dsp.config.snapshot import load_snapshot
    from dsp.errors import ConfigInvalid, InvalidRequest
    from dsp.offline.explain import explain, render
    from dsp.openrtb.decode import RequestDecoder

    raw = Path(args.request).read_bytes()
    exchange = args.exchange
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("request"), dict):
        exchange = exchange or doc.get("exchange")
        raw = json.dumps(doc["request"]).encode()
    exchange = exchange or "generic"
    try:
        snapshot = load_snapshot(Path(args.configs))
    except ConfigInvalid as exc:
        print(f"invalid config:\n{exc}", file=sys.stderr)
        return 2
    profile = snapshot.exchanges.get(exchange)
    if profile is None:
        print(f"unknown exchange {exchange!r}; known: {', '.join(sorted(snapshot.exchanges))}",
              file=sys.stderr)
        return 2
    try:
        req = RequestDecoder().decode(raw, lax_numbers=profile.lax_numbers)
    except InvalidRequest as exc:
        print(f"invalid request (HTTP 400): {exc.message}" + (f" [path {exc.path}]" if exc.path else ""))
        return 2
    now = wall_time()
    ctx = request_context(req, profile.name, profile.auction_type, now)
    audience, note = _audience(args, ctx.user_id, ctx.user_allowed)
    report = explain(req, profile, snapshot, audience, now, note)
    print(msgspec.json.format(msgspec.json.encode(report)).decode() if args.json else render(report))
    return 0 if report.decision.startswith("bid") else 1


def _audience(args: argparse.Namespace, user_id: str, allowed: bool) -> tuple[Audience, str]:
    """Resolve the user like the server would (Redis + models), or as unknown; with overrides."""
    import asyncio

    import numpy as np

    from dsp.bidding.audience import Audience
    from dsp.features.contract import DEFAULTS
    from dsp.scoring.model import load_models

    runners = load_models(Path(args.models))
    intent, risk = runners["intent"], runners["risk"]
    row = np.asarray(DEFAULTS, dtype=np.float32).reshape(1, -1)
    population = (float(intent.predict(row)[0]), float(risk.predict(row)[0]))
    audience = Audience("", False, population[0], population[1], {})
    note = ""
    if not allowed:
        note = "not looked up (lmt/dnt or GDPR without consent)"
    elif not user_id:
        note = "no user id in the request"
    elif args.redis_url:
        audience, note = asyncio.run(_lookup(args.redis_url, user_id, intent, risk, population))
    else:
        note = f"{user_id}: not looked up (no --redis-url)"
    if args.p_intent is not None or args.pd is not None:
        audience = Audience(audience.user_key or "what-if", True,
                            args.p_intent if args.p_intent is not None else audience.p_intent,
                            args.pd if args.pd is not None else audience.pd, audience.caps)
        note = f"what-if scores p_intent={audience.p_intent}, pd={audience.pd}"
    return audience, note


async def _lookup(url: str, user_id: str, intent: ModelRunner, risk: ModelRunner,
                  population: tuple[float, float]) -> tuple[Audience, str]:
    from dsp.bidding.audience import AudienceResolver, ModelScorer
    from dsp.clock import Deadline
    from dsp.errors import DependencyUnavailable
    from dsp.features.connect import async_client
    from dsp.features.store import FeatureStore

    client = async_client(url)
    store = FeatureStore(client)
    try:
        resolver = AudienceResolver(store, ModelScorer(intent, risk), population)
        try:
            aud = await resolver.resolve(user_id, Deadline.after_ms(2000))
        except DependencyUnavailable as exc:
            return resolver.unknown(), f"{user_id}: scoring failed ({exc})"
        await resolver.close()
        state = "known" if aud.known else "unknown (no features in Redis)"
        return aud, f"{user_id}: {state}, p_intent={aud.p_intent:.4f}, pd={aud.pd:.4f}"
    finally:
        await store.aclose()
        await client.aclose()
