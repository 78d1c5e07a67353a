"""Fair-lending report mechanics: campaign thresholds, group pass rates, adverse-impact ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsp.offline.training.fairness import DEFAULT_GATES, Gate, gate_reports, load_gates, markdown


def test_gates_come_from_campaign_yaml_else_defaults(tmp_path: Path) -> None:
    assert load_gates(tmp_path / "missing") == list(DEFAULT_GATES)
    (tmp_path / "a.yaml").write_text("id: camp-a\npd_max: 0.2\nintent_min: 0.03\nname: A\n")
    (tmp_path / "b.yaml").write_text("id: camp-b\nname: no thresholds\n")
    (tmp_path / "c.yaml").write_text(": not yaml : [\n")
    gates = load_gates(tmp_path)
    assert [(g.campaign, g.pd_max, g.intent_min) for g in gates] == [("camp-a", 0.2, 0.03)]


def test_pass_rates_and_adverse_impact_ratio() -> None:
    # 4 users per sex; men pass 3/4, women 1/4 -> AIR 1/3 (fails the four-fifths rule)
    sex = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    age = np.array([20, 30, 40, 50, 20, 30, 40, 60])
    pd = np.array([0.1, 0.1, 0.1, 0.5, 0.1, 0.5, 0.5, 0.5])
    p_intent = np.full(8, 0.05)
    [rep] = gate_reports([Gate("g", 0.3, 0.01)], pd, p_intent, sex, age)
    assert rep.overall == pytest.approx(0.5)
    assert {r.group: r.pass_rate for r in rep.by_sex} == {"male": 0.75, "female": 0.25}
    assert rep.sex_air == pytest.approx(1 / 3)
    assert {r.group: r.pass_rate for r in rep.by_age}["55+"] == 0.0
    assert rep.age_air == 0.0
    text = markdown([rep])
    assert "AIR by sex | | 0.333 (**FAILS** four-fifths)" in text


def test_retraining_keeps_the_documented_policy_section(tmp_path: Path) -> None:
    from dsp.offline.training.pipeline import POLICY_END, POLICY_START, keep_policy_block

    old = tmp_path / "EVALUATION.md"
    old.write_text(f"# old\n{POLICY_START}\n## Policy\nwhy and what it costs\n{POLICY_END}\n")
    new = keep_policy_block(old, "# new\n\n## Inference cost\nnumbers\n")
    assert new.index("why and what it costs") < new.index("## Inference cost")
    assert keep_policy_block(tmp_path / "missing.md", "# new\n") == "# new\n"
