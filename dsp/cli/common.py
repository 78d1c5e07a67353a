"""What several commands share: option defaults (each written once) and the loaders.

    add_configs(parser); add_models(parser); add_redis_url(parser)
    snapshot = snapshot_or_none(args.configs)      # prints every problem, None when invalid
    scorer = scoring_plan(args.models)             # the server's scoring plan (models/plan.json)

Defaults come from the environment first (``DSP_CONFIGS``, ``DSP_MODELS``, ``REDIS_URL``), then
the repository layout; the Redis URL default is :data:`dsp.features.connect.DEFAULT_REDIS_URL`.
Loaders import their libraries lazily so that ``dsp --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dsp.features.connect import DEFAULT_REDIS_URL

if TYPE_CHECKING:
    from dsp.config.snapshot import Snapshot
    from dsp.scoring.plan import PlanScorer

CONFIGS_DEFAULT = "bidder_configs"
MODELS_DEFAULT = "models"


def configs_default() -> str:
    return os.environ.get("DSP_CONFIGS", CONFIGS_DEFAULT)


def redis_url_default() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def add_configs(parser: argparse.ArgumentParser, flag: str = "--configs", **kw: str) -> None:
    parser.add_argument(flag, default=configs_default(), **kw)  # type: ignore[arg-type]


def add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=os.environ.get("DSP_MODELS", MODELS_DEFAULT),
                        help="models folder: plan.json and one folder per model")


def add_redis_url(parser: argparse.ArgumentParser, flag: str = "--redis-url", *,
                  optional: bool = False) -> None:
    """``optional``: no default unless REDIS_URL is set (the command works without Redis)."""
    if optional:
        parser.add_argument(flag, default=os.environ.get("REDIS_URL"),
                            help="Redis URL (default $REDIS_URL; none: no lookup)")
    else:
        parser.add_argument(flag, default=redis_url_default(),
                            help=f"Redis URL (default $REDIS_URL, else {DEFAULT_REDIS_URL})")


def snapshot_or_none(path: str | Path) -> Snapshot | None:
    """Load and compile a config tree; on failure print every problem to stderr and return None."""
    from dsp.config.snapshot import load_snapshot
    from dsp.errors import ConfigInvalid

    try:
        return load_snapshot(Path(path))
    except ConfigInvalid as exc:
        print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def scoring_plan(models_dir: str | Path) -> PlanScorer:
    """The scoring plan and its models, exactly as the server loads them (ModelContractError on
    any problem)."""
    from dsp.scoring.plan import load_plan

    scorer, _ = load_plan(Path(models_dir))
    return scorer
