"""Fair-lending measurement: how often the bid gates pass, per sex and per age band.

The models never see SEX, MARRIAGE or AGE (enforced by the contract and model loading), but other
features can act as proxies. On held-out users (synthetic behaviour anchored on Taiwan *test*
rows, which carry SEX and AGE) we apply each demo campaign's gates — bid only if
``pd <= pd_max`` and ``p_intent >= intent_min`` — and report the pass rate per group and the
adverse-impact ratio ``AIR = lowest group rate / highest group rate`` (four-fifths rule: >= 0.8).

Thresholds come from ``bidder_configs/campaigns/*.yaml`` (top-level ``id``, ``pd_max``,
``intent_min``) when present, else two built-in demo gates.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from dsp.offline.taiwan import age_band

F64 = npt.NDArray[np.float64]

SEX_NAMES = {1: "male", 2: "female"}
AGE_BANDS = ("<25", "25-34", "35-44", "45-54", "55+")
FOUR_FIFTHS = 0.8


class Gate(msgspec.Struct, frozen=True):
    campaign: str
    pd_max: float
    intent_min: float
    source: str = "default"


DEFAULT_GATES = (Gate("demo-broad", 0.30, 0.01), Gate("demo-careful", 0.15, 0.02))


class GroupRate(msgspec.Struct, frozen=True):
    group: str
    users: int
    pass_rate: float


class GateReport(msgspec.Struct, frozen=True):
    gate: Gate
    overall: float
    by_sex: list[GroupRate]
    sex_air: float
    by_age: list[GroupRate]
    age_air: float


def load_gates(campaigns_dir: Path) -> list[Gate]:
    """Gates of every campaign YAML with numeric pd_max and intent_min; defaults when none."""
    import yaml

    gates: list[Gate] = []
    for path in sorted(campaigns_dir.glob("*.yaml")) if campaigns_dir.is_dir() else []:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict):
            continue
        pd_max, intent_min = doc.get("pd_max"), doc.get("intent_min")
        if isinstance(pd_max, int | float) and isinstance(intent_min, int | float):
            gates.append(Gate(str(doc.get("id", path.stem)), float(pd_max), float(intent_min),
                              f"{campaigns_dir.name}/{path.name}"))
    return gates or list(DEFAULT_GATES)


def group_rates(passed: npt.NDArray[np.bool_], groups: npt.NDArray[np.str_],
                order: tuple[str, ...]) -> tuple[list[GroupRate], float]:
    """Selection rate per group (in ``order``, absent groups left out) and the adverse-impact
    ratio ``lowest / highest`` (1.0 when nobody is selected)."""
    rates: list[GroupRate] = []
    for g in order:
        mask = groups == g
        if mask.any():
            rates.append(GroupRate(g, int(mask.sum()), float(passed[mask].mean())))
    values = [r.pass_rate for r in rates]
    air = (min(values) / max(values)) if values and max(values) > 0 else 1.0
    return rates, float(air)


def gate_reports(gates: list[Gate], pd: F64, p_intent: F64, sex: npt.NDArray[np.int64],
                 age: npt.NDArray[np.int64]) -> list[GateReport]:
    """Pass rates per group for each gate. Arrays are aligned per held-out user."""
    sex_names = np.array([SEX_NAMES.get(int(s), "other") for s in sex])
    bands = age_band(age)
    out: list[GateReport] = []
    for gate in gates:
        passed = (pd <= gate.pd_max) & (p_intent >= gate.intent_min)
        by_sex, sex_air = group_rates(passed, sex_names, ("male", "female", "other"))
        by_age, age_air = group_rates(passed, bands, AGE_BANDS)
        out.append(GateReport(gate, float(passed.mean()), by_sex, sex_air, by_age, age_air))
    return out


def markdown(reports: list[GateReport]) -> str:
    """The fair-lending section of an evaluation report."""
    lines: list[str] = []
    for rep in reports:
        g = rep.gate
        lines.append(f"**{g.campaign}** (pd ≤ {g.pd_max:g}, intent ≥ {g.intent_min:g}; from "
                     f"{g.source}): overall pass rate {rep.overall:.1%}")
        lines.append("")
        lines.append("| group | users | pass rate |")
        lines.append("|---|---:|---:|")
        for r in rep.by_sex + rep.by_age:
            lines.append(f"| {r.group} | {r.users:,} | {r.pass_rate:.2%} |")
        for label, air in (("sex", rep.sex_air), ("age band", rep.age_air)):
            verdict = "passes" if air >= FOUR_FIFTHS else "**FAILS**"
            lines.append(f"| AIR by {label} | | {air:.3f} ({verdict} four-fifths) |")
        lines.append("")
    return "\n".join(lines)


def drivers_markdown(pd: F64, p_intent: F64, has_history: F64, sex: npt.NDArray[np.int64],
                     age: npt.NDArray[np.int64]) -> str:
    """Per-group means of what the gates look at, to explain the pass-rate differences."""
    sex_names = np.array([SEX_NAMES.get(int(s), "other") for s in sex])
    bands = age_band(age)
    lines = ["| group | thin-file share | mean pd | mean p_intent | mean pd, users with history |",
             "|---|---:|---:|---:|---:|"]
    for groups, order in ((sex_names, ("male", "female")), (bands, AGE_BANDS)):
        for g in order:
            m = groups == g
            if not m.any():
                continue
            known = m & (has_history > 0)
            pd_known = f"{pd[known].mean():.4f}" if known.any() else "–"
            lines.append(f"| {g} | {1 - has_history[m].mean():.1%} | {pd[m].mean():.4f} | "
                         f"{p_intent[m].mean():.4f} | {pd_known} |")
    return "\n".join(lines)
