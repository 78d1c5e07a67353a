"""``dsp budget``: inspect and set a campaign's budget in Redis.

    dsp budget show c42 [--redis URL] [--utc-offset-minutes M] [--day N]
    dsp budget set  c42 --daily 250.00 [--total 5000] [--day N]    # pins the day's budget
    dsp budget set  c42 --unpin                                   # config's budget applies again

Amounts on the command line are currency units; Redis holds integer micros. A pinned budget
overrides the campaign config for that day (every bidder's next lease call picks it up within a
second); lowering it below what is already spent or leased stops new leases at once, and money
already leased is spent at most up to the leases (see docs/money.md for the bound).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from dsp.budget.keys import campaign_day, day_key, total_key
from dsp.cli.common import add_redis_url
from dsp.money import micros_to_units, units_to_micros


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="budget_command", metavar="ACTION", required=True)
    for name, help_text in (("show", "print budget, spend, leases"), ("set", "pin a budget")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("campaign_id")
        add_redis_url(p, "--redis")
        p.add_argument("--utc-offset-minutes", type=int, default=0)
        p.add_argument("--day", type=int, default=None, help="campaign-local day number (default today)")
        if name == "set":
            p.add_argument("--daily", type=float, help="daily budget, currency units")
            p.add_argument("--total", type=float, help="lifetime budget, currency units")
            p.add_argument("--unpin", action="store_true", help="let the config's budgets apply again")
            p.set_defaults(func=_guarded(_set))
        else:
            p.set_defaults(func=_guarded(_show))


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from dsp.features.connect import RedisError

        try:
            return fn(args)
        except RedisError as exc:
            print(f"dsp budget: Redis at {args.redis}: {exc}", file=sys.stderr)
            return 1
    return run


def _client(url: str) -> Any:
    from dsp.features.connect import sync_client

    return sync_client(url, timeout_s=5)


def _day(args: argparse.Namespace) -> int:
    return args.day if args.day is not None else campaign_day(time.time(), args.utc_offset_minutes)


def _set(args: argparse.Namespace) -> int:
    if args.daily is None and args.total is None and not args.unpin:
        print("nothing to do: give --daily, --total or --unpin")
        return 2
    for name in ("daily", "total"):
        value = getattr(args, name)
        if value is not None and value < 0:
            print(f"--{name}: must be >= 0")
            return 2
    r = _client(args.redis)
    dk, tk = day_key(args.campaign_id, _day(args)), total_key(args.campaign_id)
    if args.unpin:
        r.hdel(dk, "pinned")
        r.hdel(tk, "pinned")
    if args.daily is not None:
        r.hset(dk, mapping={"budget": units_to_micros(args.daily), "pinned": 1})
        r.expire(dk, 3 * 86_400)
    if args.total is not None:
        r.hset(tk, mapping={"budget": units_to_micros(args.total), "pinned": 1})
    return _show(args)


def _show(args: argparse.Namespace) -> int:
    r = _client(args.redis)
    day = _day(args)
    raw = {k.decode(): v.decode() for k, v in r.hgetall(day_key(args.campaign_id, day)).items()}
    total = {k.decode(): v.decode() for k, v in r.hgetall(total_key(args.campaign_id)).items()}
    now_ms = int(r.time()[0]) * 1000

    def units(field: str, src: dict[str, str]) -> str:
        return f"{micros_to_units(int(src.get(field, '0'))):,.6f}"

    budget, spent, out = (int(raw.get(f, "0")) for f in ("budget", "spent", "out"))
    print(f"campaign {args.campaign_id}  day {day}{'  (pinned)' if raw.get('pinned') == '1' else ''}")
    print(f"  budget     {units('budget', raw)}")
    print(f"  spent      {units('spent', raw)}")
    print(f"  leased out {units('out', raw)}")
    print(f"  free       {micros_to_units(budget - out - spent):,.6f}")
    if "plan" in raw:  # the plan guard: spend + open bids may reach plan + allowance now
        plan_micros = int(float(raw["plan"]))
        print(f"  plan guard {micros_to_units(plan_micros):,.6f} + allowance {units('allow', raw)}")
    for field, value in sorted(raw.items()):
        if field.startswith("lease:"):
            lid = field[6:]
            left_s = (int(raw.get(f"lexp:{lid}", "0")) - now_ms) / 1000
            held = micros_to_units(int(raw.get(f"resv:{lid}", "0")))
            print(f"  lease {lid}  {micros_to_units(int(value)):,.6f}  (open bids {held:,.6f})"
                  f"  expires in {left_s:.1f} s")
    if total:
        print(f"  lifetime budget {units('budget', total) if 'budget' in total else '-'}"
              f"  spent {units('spent', total)}")
    return 0
