"""``dsp replay``: replay iPinYou market-price logs through our pricing and pacing code.

    # one campaign, one log (validation or test.theta format), tuned on its validation set
    dsp replay --data-dir ../shared/datasets/ipinyou-rtb-logs-rlb-dp --campaign 2997 --set test

    # the docs table: nine campaigns' validation sets + 2997's full test set, beside the
    # published Lin / RLB numbers (published_bid_performance_N1000_c0_1-32.tsv)
    dsp replay --data-dir ../shared/datasets/ipinyou-rtb-logs-rlb-dp --table

    # any log in either format, with a given budget per 1000-auction episode
    dsp replay --log my.txt --budget-per-episode 2000 --value-per-click 40000

Tuning: only Lin's ``b0``, on the reference grid 6, 12, ... 300, on tuning data (the first half
of a validation set's episodes for the table's validation rows; the whole validation set for a
test set). Ours gets nothing more: it starts each run at Lin's bid level (``λ0 = m − 1`` with
value-per-click ``m · b0 / mean CTR``, ``m`` = :data:`HEADROOM`), so λ can move both ways, and
the controller does the rest. The controller's settings (:data:`REPLAY_PACING`, every
:data:`REPLAY_UPDATE_EVERY` auctions) are fixed for all campaigns (docs/replay.md says how they
were chosen).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="folder of the rlb-dp iPinYou files")
    parser.add_argument("--campaign", help="campaign id (with --data-dir)")
    parser.add_argument("--set", choices=("validation", "test"), default="validation")
    parser.add_argument("--table", action="store_true", help="all campaigns, markdown table")
    parser.add_argument("--log", type=Path, help="a log file in either format")
    parser.add_argument("--budget-per-episode", type=int, help="price units per episode")
    parser.add_argument("--value-per-click", type=float,
                        help="value per click in price units (with --log; λ starts at 0)")
    parser.add_argument("--episode", type=int, default=1000, help="auctions per episode")
    parser.add_argument("--c0", type=float, default=1 / 32, help="budget / training cost")
    parser.add_argument("--first-price", action="store_true", help="pay the bid, not the market")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (OSError, ValueError, KeyError) as exc:
        print(f"dsp replay: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from dsp.offline.replay import report as rr

    if args.table:
        if args.data_dir is None:
            print("--table needs --data-dir", file=sys.stderr)
            return 2
        print(rr.table(args.data_dir, c0=args.c0, n=args.episode, first_price=args.first_price))
        return 0
    if args.log is not None:
        if args.budget_per_episode is None or args.value_per_click is None:
            print("--log needs --budget-per-episode and --value-per-click", file=sys.stderr)
            return 2
        if args.budget_per_episode <= 0 or args.value_per_click <= 0 or args.episode <= 0:
            print("--budget-per-episode, --value-per-click and --episode must be > 0", file=sys.stderr)
            return 2
        print(rr.single_log(args.log, args.budget_per_episode, args.value_per_click,
                            n=args.episode, first_price=args.first_price))
        return 0
    if args.data_dir is None or args.campaign is None:
        print("give --table, --log, or --data-dir with --campaign", file=sys.stderr)
        return 2
    print(rr.one_campaign(args.data_dir, args.campaign, args.set, c0=args.c0, n=args.episode,
                          first_price=args.first_price))
    return 0
