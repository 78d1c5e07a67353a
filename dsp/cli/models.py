"""``dsp models``: train, evaluate and benchmark the ONNX models.

    dsp models train [--seed 7] [--data-dir ../shared/datasets] [--models-dir models]
    dsp models evaluate [--models-dir models]      # recompute held-out figures from the data
    dsp models bench [--models-dir models] [--write]

Heavy libraries (lightgbm, scikit-learn, onnxmltools) are imported inside the commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SEED = 7


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    train = sub.add_parser("train", help="train both models, export ONNX, write EVALUATION.md")
    train.add_argument("--seed", type=int, default=DEFAULT_SEED)
    train.add_argument("--data-dir", type=Path, default=None,
                       help="datasets directory (default: $DSP_DATASETS_DIR, else ../shared/datasets)")
    train.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    train.add_argument("--campaigns-dir", type=Path, default=REPO_ROOT / "bidder_configs" / "campaigns",
                       help="campaign YAMLs whose pd_max/intent_min the fairness check applies")
    train.add_argument("--split-seeds", default="",
                       help="comma-separated extra seeds: report the risk model's held-out AUC "
                            "under other splits (about 2 s each)")
    train.set_defaults(func=_train)
    evaluate = sub.add_parser("evaluate", help="recompute held-out AUC/ECE of the shipped models")
    evaluate.add_argument("--data-dir", type=Path, default=None)
    evaluate.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    evaluate.set_defaults(func=_evaluate)
    bench = sub.add_parser("bench", help="µs per row at batch 1, 8, 32, 128 (single thread)")
    bench.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    bench.add_argument("--seconds", type=float, default=1.0, help="time per batch size")
    bench.add_argument("--write", action="store_true", help="write the table into EVALUATION.md")
    bench.set_defaults(func=_bench)

    def _help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_help)


def _train(args: argparse.Namespace) -> int:
    from dsp.offline.training.pipeline import train_all

    try:
        split_seeds = tuple(int(x) for x in args.split_seeds.split(",") if x.strip())
    except ValueError:
        print(f"--split-seeds: expected comma-separated integers, got {args.split_seeds!r}")
        return 2
    train_all(args.seed, args.data_dir, args.models_dir, args.campaigns_dir,
              split_seeds=split_seeds)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dsp.offline.training.evaluate import evaluate_shipped

    ok = True
    for line, passed in evaluate_shipped(args.models_dir, args.data_dir):
        print(line)
        ok = ok and passed
    return 0 if ok else 1


def _bench(args: argparse.Namespace) -> int:
    from dsp.offline.bench.models import run_bench

    return run_bench(args.models_dir, args.seconds, args.write)
