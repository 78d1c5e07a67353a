"""Inference cost of the shipped models: µs per row at batch 1, 8, 32, 128, single-threaded.

    .venv/bin/python benchmarks/bench_inference.py [--seconds 1.0] [--write]
    .venv/bin/python benchmarks/bench_inference.py --compare OLD_MODELS_DIR [--rounds 3]

``--write`` replaces the "Inference cost" section of models/{intent,risk}/EVALUATION.md.
``--compare`` measures another models directory (e.g. a copy of the previous ``models/``) and
the current one in the same run, alternating them in rounds (best per cell over the rounds), and
prints µs/row of both and the ratio new/old — on a shared, noisy machine only figures taken side
by side are comparable. Timing lives here, never in tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsp.offline.bench.models import BATCH_SIZES, BenchRow, bench_runner, context, run_bench

MODELS = Path(__file__).resolve().parent.parent / "models"
NAMES = ("intent", "risk")


def compare(old_dir: Path, new_dir: Path, seconds_per_size: float, rounds: int) -> str:
    """Markdown table: µs/row of the old and new models per batch size, best over ``rounds``."""
    from dsp.scoring.model import load_models

    runners = {"old": load_models(old_dir), "new": load_models(new_dir)}
    best: dict[tuple[str, str, int], float] = {}
    for _ in range(rounds):
        for name in NAMES:
            for which in ("old", "new"):  # interleaved: both see the same machine state
                rows: list[BenchRow] = bench_runner(runners[which][name],
                                                    seconds_per_size=seconds_per_size)
                for r in rows:
                    key = (which, name, r.batch)
                    best[key] = min(best.get(key, float("inf")), r.us_per_row)
    lines = [f"Old: `{old_dir}` ({_trees(old_dir)}); new: `{new_dir}` ({_trees(new_dir)}). "
             f"Best of {rounds} interleaved rounds; {context()}", "",
             "| model | batch | old µs/row | new µs/row | new / old |", "|---|---:|---:|---:|---:|"]
    for name in NAMES:
        for batch in BATCH_SIZES:
            old, new = best[("old", name, batch)], best[("new", name, batch)]
            lines.append(f"| {name} | {batch} | {old:.2f} | {new:.2f} | {new / old:.2f} |")
    return "\n".join(lines)


def _trees(models_dir: Path) -> str:
    """'intent: 400 trees, risk: 500 trees' read from the ONNX graphs themselves."""
    import onnx

    parts = []
    for name in NAMES:
        graph = onnx.load(str(models_dir / name / "model.onnx")).graph
        trees = {t for node in graph.node if node.op_type.startswith("TreeEnsemble")
                 for a in node.attribute if a.name == "nodes_treeids" for t in a.ints}
        parts.append(f"{name}: {len(trees)} trees")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=MODELS)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per batch size")
    parser.add_argument("--write", action="store_true", help="update EVALUATION.md")
    parser.add_argument("--compare", type=Path, metavar="OLD_MODELS_DIR",
                        help="also measure this models directory, side by side")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds for --compare")
    args = parser.parse_args()
    if args.compare is not None:
        print(compare(args.compare, args.models_dir, args.seconds, args.rounds))
        return 0
    return run_bench(args.models_dir, args.seconds, args.write)


if __name__ == "__main__":
    sys.exit(main())
