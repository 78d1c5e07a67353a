"""``dsp forecast``: what a config change would do, on the logged traffic, before it ships.

    dsp forecast --from OLD_DIR [--configs NEW_DIR] --events DIR [--json]
    dsp forecast --ipinyou DATA_DIR [--campaigns 1458,2259] [--episodes 100]   (accuracy table)

Replays the event log's request sample through both config trees with the real bid path,
budgets and pacing simulated over each day, wins and prices from a censored bid landscape fitted
on the logged wins and losses, and prints per campaign old vs new with 90% intervals. Refuses
(exit 3) when the log is too thin. Also runs the fair-lending gate on both trees (exit 2 when the
new one fails it). ``--ipinyou`` measures the forecast on the iPinYou logs converted into the
event format (docs/forecast.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsp.cli.config import DEFAULT_CONFIGS, add_fairness_args


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="old", help="the current (baseline) config tree")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="the proposed config tree")
    parser.add_argument("--events", type=Path, help="event-log directory (Parquet, as the sink writes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--ipinyou", type=Path, default=None,
                        help="accuracy table on the iPinYou folder (rlb-dp files)")
    parser.add_argument("--campaigns", default=None, help="iPinYou campaigns (default: all 9)")
    parser.add_argument("--episodes", type=int, default=100, help="iPinYou episodes per campaign")
    add_fairness_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.ipinyou is not None:
        return _accuracy(args)
    if not args.old or args.events is None:
        print("dsp forecast: give --from OLD_DIR and --events DIR (or --ipinyou DATA_DIR)",
              file=sys.stderr)
        return 2
    import msgspec

    from dsp.cli.config import _load, fair_lending
    from dsp.config.snapshot import Snapshot
    from dsp.offline.forecast.report import render
    from dsp.offline.forecast.run import TooThin, forecast

    old, new = _load(args.old), _load(args.configs)
    if not isinstance(old, Snapshot) or not isinstance(new, Snapshot):
        return 2
    if not args.events.is_dir():
        print(f"dsp forecast: {args.events}: no such event-log directory", file=sys.stderr)
        return 2
    try:
        fc = forecast(old, new, args.events)
    except TooThin as exc:
        print(f"dsp forecast: refusing: {exc}", file=sys.stderr)
        return 3
    if args.json:
        sys.stdout.write(msgspec.json.encode(fc).decode() + "\n")
        return 0
    print(render(fc))
    return 2 if fair_lending([("old", old), ("new", new)], args) else 0


def _accuracy(args: argparse.Namespace) -> int:
    from dsp.offline.forecast.ipinyou import evaluate_campaign, table
    from dsp.offline.replay.ipinyou import CAMPAIGNS

    campaigns = args.campaigns.split(",") if args.campaigns else list(CAMPAIGNS)
    results = []
    for c in campaigns:
        results += evaluate_campaign(args.ipinyou, c, episodes=args.episodes)
        print(f"campaign {c} done", file=sys.stderr, flush=True)
    print(table(results))
    return 0
