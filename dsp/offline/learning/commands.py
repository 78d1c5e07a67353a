"""What the ``dsp models`` learning subcommands do (the CLI module only parses arguments).

    shading_eval(data_dir, buckets)                      -> Markdown table (iPinYou, first price)
    fit_shading(events, out, min_bids)                   -> bidder_configs/learned/shading.json
    fit_funnel(events, configs, out)                     -> bidder_configs/learned/funnel.yaml
    retrain_from_events(events, models_dir, out, seed)   -> candidate model dir + evaluation
    explore_experiment(work, users, seed)                -> Markdown table (synthetic world)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np


def shading_eval(data_dir: Path, buckets: int) -> tuple[str, list[Any]]:
    from dsp.offline.learning.shading_eval import evaluate_all, render

    results = evaluate_all(data_dir, buckets=buckets)
    return render(results), results


def fit_shading(events: Path, out: Path, min_bids: int) -> int:
    from dsp.offline.eventlog.join import open_log
    from dsp.offline.learning.shading_fit import fit_tables, write_shading

    tables = fit_tables(open_log(events), min_bids=min_bids)
    write_shading(tables, out, source=str(events))
    for t in tables:
        print(f"{t.exchange}/{t.format}/{t.currency}: {t.observations:,} bids, "
              f"{len(t.buckets)} value bucket(s)")
    return len(tables)


def fit_funnel(events: Path, configs: Path, out: Path) -> dict[str, Any]:
    from dsp.offline.eventlog.join import open_log
    from dsp.offline.learning.funnel import estimate, funnel_file, priors_from, write_funnel

    est = estimate(open_log(events), priors_from(configs))
    write_funnel(funnel_file(est, str(events)), out)
    return est


def retrain_from_events(events: Path, models_dir: Path, out: Path, seed: int,
                        holdout_share: float = 0.2) -> dict[str, Any]:
    """Train on the earlier (1 − holdout_share) of the logged time span, compare with the
    serving model on the later slice, write the candidate (ONNX + config + evaluation) to
    ``out``. Promotion is copying ``out`` over ``models_dir/intent``, only when ``promote``."""
    from dsp.features.contract import N_FEATURES
    from dsp.offline.eventlog.join import open_log
    from dsp.offline.learning.retrain import compare_on_slice, fit_weighted, training_set
    from dsp.offline.training.export import to_onnx

    con = open_log(events)
    span = con.sql("SELECT min(ts_us), max(ts_us) FROM ev_bid WHERE NOT test").fetchall()[0]
    if span[0] is None:
        raise ValueError(f"--events {events}: no bid events")
    cut = int(span[0] + (span[1] - span[0]) * (1.0 - holdout_share))
    train = training_set(con, until_us=cut)
    later = training_set(con, since_us=cut)
    if len(train.y) < 1000 or train.y.sum() < 20:
        raise ValueError(f"too little to train on: {len(train.y)} won impressions, "
                         f"{int(train.y.sum())} applications before the cut")
    model = fit_weighted(train.x, train.y, train.weight, seed)
    comparison = compare_on_slice(model, later)
    out.mkdir(parents=True, exist_ok=True)
    serving_cfg = json.loads((models_dir / "intent" / "config.json").read_text())
    cfg = {**serving_cfg, "version": f"{serving_cfg['version']}+events{cut // 1_000_000}",
           "calibration": {**serving_cfg["calibration"], "a": model.a, "b": model.b,
                           "fitted_on": "weighted 20% of the logged won impressions"},
           "description": "Intent model retrained from the event log (IPW: exploration x win).",
           "training": {"seed": seed, "events": str(events), "train_rows": len(train.y),
                        "train_positives": int(train.y.sum()), "cut_ts_us": cut}}
    (out / "model.onnx").write_bytes(to_onnx(model.booster, N_FEATURES, model.a, model.b,
                                             name="intent"))
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    for extra in ("train.py",):
        if (models_dir / "intent" / extra).exists():
            shutil.copy(models_dir / "intent" / extra, out / extra)
    report = {"train": {"rows": len(train.y), "positives": int(train.y.sum()),
                        "explored_rows": int(train.explored.sum()),
                        "mean_weight": float(np.mean(train.weight)) if len(train.y) else 0.0},
              "later_slice": comparison}
    (out / "EVALUATION.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def explore_experiment(work: Path, users: int, seed: int, data_dir: Path | None,
                       models_dir: Path) -> tuple[str, dict[str, Any]]:
    from dsp.offline.learning.exploration import render, run

    result = run(work, users=users, seed=seed, data_dir=data_dir, models_dir=models_dir)
    return render(result), result
