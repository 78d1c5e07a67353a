"""The fair-lending gate of ``dsp config validate``: selection through the real pricing, the
adverse-impact ratio per group, and a failing campaign failing the command."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dsp.bidding.pricing import price
from dsp.cli import main
from dsp.config.snapshot import load_snapshot
from dsp.offline.fairlending import Reference, assess, gate_problems, selected

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "bidder_configs"


def test_selection_mirrors_the_bid_path_pricing() -> None:
    snap = load_snapshot(CONFIGS)
    rng = np.random.default_rng(3)
    p_intent = rng.uniform(0.0, 0.05, 2_000)
    pd = rng.uniform(0.0, 0.5, 2_000)
    for c in snap.campaigns:
        sel = selected(c, p_intent, pd)
        # the score gates (rows intent_min and pd_max of dsp.bidding.filters), then pricing
        expected = [a >= c.intent_min and b <= c.pd_max
                    and price(c, float(a), float(b), pacing_lambda=0.0, floor_cpm_micros=0,
                              auction_type=2, shading=1.0).stopped is None
                    for a, b in zip(p_intent, pd, strict=True)]
        assert sel.tolist() == expected
        assert 0 < sel.sum() < sel.shape[0]


def test_ratio_and_problem_name_the_group() -> None:
    snap = load_snapshot(CONFIGS)
    # 4 users per age band: the young pass 1 in 4, everyone else 4 in 4 -> AIR 0.25
    ages = np.array(["<25"] * 4 + ["25-34"] * 4 + ["35-44"] * 4)
    p_intent = np.full(12, 0.05)
    pd = np.array([0.05, 0.9, 0.9, 0.9] + [0.05] * 8)
    ref = Reference(p_intent, pd, np.zeros(12, dtype=np.int64), np.array(["female"] * 12),
                    ages, "test")
    results = assess(snap, ref)
    for r in results:
        assert r.age_air == pytest.approx(0.25) and not r.passes
        assert r.lending.selected_share == pytest.approx(9 / 12)
    problems = gate_problems(results, snap.files)
    assert len(problems) == len(results)
    assert "adverse-impact ratio by age band 0.250 < 0.8" in str(problems[0])
    assert "<25 selected 25.0%" in str(problems[0])


def test_validate_prints_the_ratios_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", "--configs", str(CONFIGS)]) == 0
    out = capsys.readouterr().out
    for campaign in ("cashbridge-starter", "quickloan-prime"):
        assert f"campaign {campaign}: passes; adverse-impact ratio by sex" in out


def test_validate_fails_a_campaign_below_four_fifths(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    edited = tmp_path / "configs"
    shutil.copytree(CONFIGS, edited)
    path = edited / "campaigns" / "quickloan-prime.yaml"
    text = path.read_text()
    path.write_text(text.replace("intent_min: 0.004", "intent_min: 0.01"))  # the old threshold
    assert main(["config", "validate", "--configs", str(edited)]) == 2
    captured = capsys.readouterr()
    assert "campaign quickloan-prime: FAILS" in captured.out
    assert "quickloan-prime.yaml: pd_max/intent_min: adverse-impact ratio by age band" in captured.err
