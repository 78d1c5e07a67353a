"""``dsp report``: what the bids bought, from the event log (test traffic excluded).

    dsp report --events events/ [--by campaign,exchange,day,creative] [--json]

Per campaign and per exchange (and per combination of ``--by`` dimensions): requests sampled,
bids, wins, win rate, impressions billed, committed spend, average clearing price against the
bid, clicks, CTR, applications, approvals, funded loans, cost per funded loan, and each
campaign's funnel rates re-estimated from the log (shrunk toward the configured priors when
``--configs`` names the campaign files). ``--json`` prints one object (docs/events.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", required=True, help="event log directory (dsp events sink)")
    parser.add_argument("--by", default="", help="extra grouping: any of campaign,exchange,day,creative")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--configs", default="bidder_configs",
                        help="bidder_configs directory: shrink funnel estimates toward its priors "
                             "(default bidder_configs; skipped when missing)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import msgspec

    from dsp.offline.eventlog.join import open_log
    from dsp.offline.eventlog.report import build_report, render_text

    root = Path(args.events)
    if not root.is_dir():
        print(f"dsp report: --events {root}: not a directory", file=sys.stderr)
        return 2
    by = tuple(d.strip() for d in args.by.split(",") if d.strip())
    try:
        report = build_report(open_log(root), by, configs=Path(args.configs) if args.configs else None)
    except ValueError as exc:
        print(f"dsp report: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        print(render_text(report))
    return 0
