"""Inference cost of the shipped models: µs per row at batch 1, 8, 32, 128, single-threaded.

    .venv/bin/python benchmarks/bench_inference.py [--seconds 1.0] [--write]

``--write`` replaces the "Inference cost" section of models/{intent,risk}/EVALUATION.md.
Timing lives here, never in tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsp.scoring.bench import run_bench

MODELS = Path(__file__).resolve().parent.parent / "models"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=MODELS)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per batch size")
    parser.add_argument("--write", action="store_true", help="update EVALUATION.md")
    args = parser.parse_args()
    return run_bench(args.models_dir, args.seconds, args.write)


if __name__ == "__main__":
    sys.exit(main())
