"""``dsp models``: train, evaluate and benchmark the ONNX models.

    dsp models train [--seed 7] [--data-dir ../shared/datasets] [--models-dir models]
    dsp models evaluate [--models-dir models]      # recompute held-out figures from the data
    dsp models bench [--models-dir models] [--write]
    dsp models train --events DIR [--out models-candidate/intent]   # retrain intent from the log
    dsp models shading --events DIR [--out bidder_configs/learned/shading.json]
    dsp models funnel --events DIR [--configs bidder_configs] [--out .../learned/funnel.yaml]
    dsp models shading-eval [--data-dir ../shared/datasets]   # learned shading on iPinYou
    dsp models explore-experiment [--users 1000000]           # exploration share vs retraining

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
    train.add_argument("--events", type=Path, default=None,
                       help="retrain the intent model from this event log instead (IPW; writes a "
                            "candidate to --out with its evaluation against the serving model)")
    train.add_argument("--out", type=Path, default=REPO_ROOT / "models-candidate" / "intent")
    train.set_defaults(func=_train)
    shading = sub.add_parser("shading", help="fit learned first-price shading from the event log")
    shading.add_argument("--events", type=Path, required=True)
    shading.add_argument("--out", type=Path,
                         default=REPO_ROOT / "bidder_configs" / "learned" / "shading.json")
    shading.add_argument("--min-bids", type=int, default=2000,
                         help="first-price bids needed per exchange, format and currency")
    shading.set_defaults(func=_shading)
    funnel = sub.add_parser("funnel", help="re-estimate funnel rates from the event log (Beta prior)")
    funnel.add_argument("--events", type=Path, required=True)
    funnel.add_argument("--configs", type=Path, default=REPO_ROOT / "bidder_configs")
    funnel.add_argument("--out", type=Path,
                        default=REPO_ROOT / "bidder_configs" / "learned" / "funnel.yaml")
    funnel.set_defaults(func=_funnel)
    seval = sub.add_parser("shading-eval",
                           help="learned vs best fixed shading on iPinYou replayed as first price")
    seval.add_argument("--data-dir", type=Path, default=None)
    seval.add_argument("--buckets", type=int, default=4, help="value-quantile landscapes per campaign")
    seval.set_defaults(func=_shading_eval)
    explore = sub.add_parser("explore-experiment",
                             help="synthetic world: retraining from won-only logs at 0/1/5%% exploration")
    explore.add_argument("--users", type=int, default=1_000_000)
    explore.add_argument("--seed", type=int, default=DEFAULT_SEED)
    explore.add_argument("--data-dir", type=Path, default=None)
    explore.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    explore.set_defaults(func=_explore)
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


def _data_dir(arg: Path | None) -> Path:
    from dsp.offline.taiwan import default_data_dir

    return arg if arg is not None else default_data_dir()


def _train(args: argparse.Namespace) -> int:
    if args.events is not None:
        return _train_from_events(args)
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


def _train_from_events(args: argparse.Namespace) -> int:
    import json

    from dsp.offline.learning.commands import retrain_from_events

    try:
        report = retrain_from_events(args.events, args.models_dir, args.out, args.seed)
    except ValueError as exc:
        print(f"dsp models train: {exc}")
        return 2
    print(json.dumps(report, indent=2))
    verdict = "may be promoted" if report["later_slice"]["promote"] else "must not be promoted"
    print(f"candidate in {args.out}: {verdict} (copy it over {args.models_dir / 'intent'})")
    return 0


def _shading(args: argparse.Namespace) -> int:
    from dsp.offline.learning.commands import fit_shading

    n = fit_shading(args.events, args.out, args.min_bids)
    print(f"{n} shading table(s) written to {args.out}")
    return 0


def _funnel(args: argparse.Namespace) -> int:
    import json

    from dsp.offline.learning.commands import fit_funnel

    print(json.dumps(fit_funnel(args.events, args.configs, args.out), indent=2))
    print(f"written to {args.out}")
    return 0


def _shading_eval(args: argparse.Namespace) -> int:
    from dsp.offline.learning.commands import shading_eval

    table, _ = shading_eval(_data_dir(args.data_dir), args.buckets)
    print(table)
    return 0


def _explore(args: argparse.Namespace) -> int:
    import tempfile

    from dsp.offline.learning.commands import explore_experiment

    with tempfile.TemporaryDirectory(prefix="dsp-explore-") as work:
        table, _ = explore_experiment(Path(work), args.users, args.seed, args.data_dir,
                                      args.models_dir)
    print(table)
    return 0
