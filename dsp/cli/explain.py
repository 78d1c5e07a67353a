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
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dsp.cli.common import add_configs, add_models, add_redis_url, scoring_plan, snapshot_or_none

if TYPE_CHECKING:
    from dsp.bidding.audience import Audience
    from dsp.scoring.plan import PlanScorer


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("request", help="OpenRTB request JSON (or a story fixture with 'request')")
    parser.add_argument("--exchange", default=None,
                        help="exchange profile (default: generic, or the fixture's)")
    add_configs(parser)
    add_models(parser)
    add_redis_url(parser, optional=True)
    parser.add_argument("--p-intent", type=float, default=None, help="override the intent score")
    parser.add_argument("--pd", type=float, default=None, help="override the probability of default")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import msgspec

    from dsp.bidding.context import request_context
    from dsp.clock import wall_time
    from dsp.errors import InvalidRequest
    from dsp.exchanges.hooks import hooks_for
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
    snapshot = snapshot_or_none(args.configs)
    if snapshot is None:
        return 2
    profile = snapshot.exchanges.get(exchange)
    if profile is None:
        print(f"unknown exchange {exchange!r}; known: {', '.join(sorted(snapshot.exchanges))}",
              file=sys.stderr)
        return 2
    try:
        req = RequestDecoder().decode(raw, lax_numbers=profile.lax_numbers,
                                      hook=hooks_for(profile).normalise_request)
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

    from dsp.bidding.audience import Audience

    scorer = scoring_plan(args.models)
    population = scorer.population()
    audience = Audience("", False, population["p_intent"], population["pd"], {})
    note = ""
    if not allowed:
        note = "not looked up (lmt/dnt or GDPR without consent)"
    elif not user_id:
        note = "no user id in the request"
    elif args.redis_url:
        audience, note = asyncio.run(_lookup(args.redis_url, user_id, scorer, population))
    else:
        note = f"{user_id}: not looked up (no --redis-url)"
    if args.p_intent is not None or args.pd is not None:
        audience = Audience(audience.user_key or "what-if", True,
                            args.p_intent if args.p_intent is not None else audience.p_intent,
                            args.pd if args.pd is not None else audience.pd, audience.caps,
                            audience.scores)
        note = f"what-if scores p_intent={audience.p_intent}, pd={audience.pd}"
    return audience, note


async def _lookup(url: str, user_id: str, scorer: PlanScorer,
                  population: dict[str, float]) -> tuple[Audience, str]:
    from dsp.bidding.audience import AudienceResolver
    from dsp.clock import Deadline
    from dsp.errors import DependencyUnavailable
    from dsp.features.connect import async_client
    from dsp.features.store import FeatureStore

    client = async_client(url)
    store = FeatureStore(client)
    try:
        resolver = AudienceResolver(store, scorer, population)
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
