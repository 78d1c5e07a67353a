"""Inference cost of a ModelRunner: microseconds per row at several batch sizes, one thread.

Used by ``benchmarks/bench_inference.py`` and ``dsp models bench``; never by tests (timings are
not assertions). Rows are the contract's defaults perturbed with noise, the same shape the
serving path feeds ``predict``.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import numpy as np

from dsp.features.contract import DEFAULTS, N_FEATURES
from dsp.scoring.model import ModelRunner

BATCH_SIZES: tuple[int, ...] = (1, 8, 32, 128)
REPEATS = 15
BENCH_START = "<!-- bench:start -->"
BENCH_END = "<!-- bench:end -->"


class BenchRow(msgspec.Struct, frozen=True):
    model: str
    batch: int
    calls: int
    us_per_call: float
    us_per_row: float


def bench_runner(runner: ModelRunner, batch_sizes: tuple[int, ...] = BATCH_SIZES,
                 seconds_per_size: float = 1.0, seed: int = 0) -> list[BenchRow]:
    """Best-of-``REPEATS`` timing of ``runner.predict`` per batch size (warm session, one thread).

    The minimum over many short repetitions is the figure least disturbed by other processes on
    a shared machine; it is what one uncontended core does.
    """
    rng = np.random.default_rng(seed)
    out: list[BenchRow] = []
    for batch in batch_sizes:
        rows = (np.asarray(DEFAULTS, dtype=np.float32)[None, :]
                + rng.random((batch, N_FEATURES), dtype=np.float32))
        for _ in range(20):
            runner.predict(rows)
        # calibrate the number of calls per repetition to ~seconds_per_size / REPEATS
        t0 = time.perf_counter()
        runner.predict(rows)
        one = max(time.perf_counter() - t0, 1e-6)
        calls = max(int(seconds_per_size / REPEATS / one), 20)
        samples = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            for _ in range(calls):
                runner.predict(rows)
            samples.append((time.perf_counter() - t0) / calls)
        per_call_us = float(np.min(samples)) * 1e6
        out.append(BenchRow(runner.name, batch, calls * REPEATS, per_call_us, per_call_us / batch))
    return out


def markdown(rows: list[BenchRow], context: str) -> str:
    """The benchmark section, wrapped in markers so it can be replaced in place."""
    lines = [BENCH_START, "", context, "",
             "| model | batch | µs per call | µs per row |", "|---|---:|---:|---:|"]
    lines += [f"| {r.model} | {r.batch} | {r.us_per_call:.1f} | {r.us_per_row:.2f} |" for r in rows]
    lines += ["", BENCH_END]
    return "\n".join(lines)


def replace_section(document: str, section: str) -> str:
    """Swap the text between the bench markers (append the section if there are none)."""
    if BENCH_START in document and BENCH_END in document:
        head, rest = document.split(BENCH_START, 1)
        _, tail = rest.split(BENCH_END, 1)
        return head + section + tail
    return document.rstrip("\n") + "\n\n" + section + "\n"


def context() -> str:
    import platform

    import onnxruntime as ort

    return (f"`ModelRunner.predict` (column selection + one `InferenceSession.run`), one intra-op "
            f"and one inter-op thread, sequential execution, warm session, best of {REPEATS} "
            f"timed repetitions; onnxruntime {ort.__version__}, {platform.machine()}, shared 2-core "
            f"machine (other jobs running), so treat the figures as indicative. Rows per call = batch.")


def run_bench(models_dir: Path, seconds_per_size: float = 1.0, write: bool = False) -> int:
    """Benchmark both shipped models, print the table, optionally write it into EVALUATION.md."""
    from dsp.scoring.model import load_models

    runners = load_models(models_dir)
    rows = [r for name in ("intent", "risk")
            for r in bench_runner(runners[name], seconds_per_size=seconds_per_size)]
    section = markdown(rows, context())
    print(section)
    if write:
        for name in runners:
            path = models_dir / name / "EVALUATION.md"
            if path.is_file():
                path.write_text(replace_section(path.read_text(encoding="utf-8"), section),
                                encoding="utf-8")
                print(f"updated {path}")
    return 0
