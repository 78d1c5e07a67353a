"""``dsp features``: write users into Redis.

    dsp features seed --users N --seed S [--ids-out FILE] [--redis-url URL] [--data-dir DIR] [--cluster]
    dsp features load FILE [--redis-url URL] [--cluster]
    dsp features bench [--seed S] [--users N] [--batch 1,8,32,128] [--redis-url URL]

``seed`` writes the deterministic synthetic population (dsp.offline.population) for seed S:
users ``syn<S>-00000000`` … in chunks of 100,000, MSET-pipelined. ``--ids-out`` writes one JSON
line per user: ``{"id", "true_intent", "true_pd", "has_credit_history", "defaulted"}`` where
``true_intent`` is the ground-truth per-impression application probability and ``true_pd`` the
reference default probability (Taiwan default rate of the anchor row's delinquency bucket; the
base rate for thin-file users); ``defaulted`` is the anchor row's real outcome.

``load`` reads JSON lines (format in dsp.features.rows), loads every good row and reports each
bad one as ``FILE:LINE: message`` on stderr; exit status 1 if any row was rejected.

Redis URL: ``--redis-url``, else ``$REDIS_URL``, else dsp.features.connect.DEFAULT_REDIS_URL.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dsp.cli.common import redis_url_default


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="features_command", metavar="ACTION")
    seed = sub.add_parser("seed", help="write a deterministic synthetic population into Redis")
    seed.add_argument("--users", type=int, required=True, help="number of users")
    seed.add_argument("--seed", type=int, default=1, help="population seed (default 1)")
    seed.add_argument("--ids-out", type=Path, default=None,
                      help="write JSON lines {id, true_intent, true_pd, ...} here")
    seed.add_argument("--redis-url", default=None)
    seed.add_argument("--data-dir", type=Path, default=None,
                      help="datasets directory holding the UCI Taiwan data (default: "
                           "$DSP_DATASETS_DIR, else ../shared/datasets)")
    seed.add_argument("--cluster", action="store_true", help="the URL names a Redis Cluster node")
    seed.set_defaults(func=_seed)
    load = sub.add_parser("load", help="load users from a JSON-lines file")
    load.add_argument("file", type=Path)
    load.add_argument("--redis-url", default=None)
    load.add_argument("--cluster", action="store_true", help="the URL names a Redis Cluster node")
    load.set_defaults(func=_load)
    bench = sub.add_parser("bench", help="time batched fetches of seeded users")
    bench.add_argument("--seed", type=int, default=1, help="seed the users were written with")
    bench.add_argument("--users", type=int, default=1_000_000, help="how many were seeded")
    bench.add_argument("--batch", default="1,8,32,128", help="comma-separated users per call")
    bench.add_argument("--seconds", type=float, default=1.0, help="time per batch size")
    bench.add_argument("--redis-url", default=None)
    bench.set_defaults(func=_bench)

    def _help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_help)


def _redis_url(arg: str | None) -> str:
    return arg or redis_url_default()


def _seed(args: argparse.Namespace) -> int:
    from dsp.offline.seeding import seed_population

    if args.users < 0:
        print("--users must be >= 0", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        written = seed_population(_redis_url(args.redis_url), args.users, args.seed,
                                  ids_out=args.ids_out, data_dir=args.data_dir,
                                  cluster=args.cluster)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(f"seeded {written:,} users (seed {args.seed}) in {elapsed:.1f} s "
          f"({written / max(elapsed, 1e-9):,.0f} users/s)")
    return 0


def _load(args: argparse.Namespace) -> int:
    from dsp.offline.seeding import load_file

    try:
        loaded, errors = load_file(_redis_url(args.redis_url), args.file, cluster=args.cluster)
    except OSError as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    for line_no, message in errors:
        print(f"{args.file}:{line_no}: {message}", file=sys.stderr)
    print(f"loaded {loaded:,} users, rejected {len(errors):,} rows")
    return 1 if errors else 0


def _bench(args: argparse.Namespace) -> int:
    from dsp.offline.bench.features import run

    try:
        sizes = tuple(int(x) for x in args.batch.split(",") if x.strip())
    except ValueError:
        print(f"--batch: expected comma-separated integers, got {args.batch!r}", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 1:
        print("--batch: sizes must be >= 1", file=sys.stderr)
        return 2
    return run(_redis_url(args.redis_url), args.seed, args.users, sizes, args.seconds)
