"""The fair-lending gate: each campaign's adverse-impact ratio on a reference population.

    ref = load_reference(Path("models"))                 # held-out users, scored by the real models
    results = assess(snapshot, ref)                      # one CampaignFairness per campaign
    problems = gate_problems(results, snapshot.files)    # a ConfigProblem per group below 0.8

**Reference population**: the 200,000 held-out synthetic users anchored on UCI Taiwan *test* rows
(:func:`dsp.offline.training.intent.holdout`, the split seed of the shipped models), which carry
SEX and AGE; the models never see those columns. Each user is scored by the shipped ONNX models
(``p_intent``, ``pd``) exactly as the bidder scores a known user.

**Selected** means the campaign would bid for this user at all: its own gates (``p_intent >=
intent_min``, ``pd <= pd_max``) and its own pricing (the value formula of
:mod:`dsp.bidding.pricing` with pacing λ = 0, capped at ``max_cpm``, a positive bid, no floor).
The adverse-impact ratio of a grouping (sex; age band <25, 25-34, 35-44, 45-54, 55+) is the lowest
group's selection rate over the highest group's; the four-fifths rule fails a campaign below 0.8.

**Lending terms** (the price of a threshold, per campaign): the share of users selected, their mean
pd, their realised default rate (the anchor rows' real labels), applications and funded loans per
million impressions (mean ``p_intent · apply_rate`` · 1e6, times ``p_approve``), and the expected
NPV per booked loan (intent-weighted mean NPV, campaign currency).

Offline only: the serving process has no reference data and never recomputes this; ``dsp config
validate`` runs it, and the deployment path runs validate before configs ship.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from dsp.config.snapshot import CompiledCampaign, Snapshot
from dsp.errors import ConfigProblem
from dsp.offline.training.fairness import AGE_BANDS, FOUR_FIFTHS, SEX_NAMES, GroupRate, group_rates

F64 = npt.NDArray[np.float64]
DEFAULT_SEED = 7  # the split seed of the shipped models (models/*/config.json training.seed)


class Reference(msgspec.Struct, frozen=True):
    """Scored reference users (aligned arrays) and where they came from."""

    p_intent: F64
    pd: F64
    defaulted: npt.NDArray[np.int64]
    sex_group: npt.NDArray[np.str_]
    age_group: npt.NDArray[np.str_]
    source: str


class LendingTerms(msgspec.Struct, frozen=True):
    selected_share: float
    mean_pd: float
    default_rate: float
    applications_per_million: float
    funded_per_million: float
    npv_per_loan: float


class CampaignFairness(msgspec.Struct, frozen=True):
    campaign: str
    overall: float
    by_sex: list[GroupRate]
    sex_air: float
    by_age: list[GroupRate]
    age_air: float
    lending: LendingTerms

    @property
    def passes(self) -> bool:
        return self.sex_air >= FOUR_FIFTHS and self.age_air >= FOUR_FIFTHS


def _seed(models_dir: Path) -> int:
    try:
        cfg = json.loads((models_dir / "risk" / "config.json").read_text(encoding="utf-8"))
        return int(cfg.get("training", {}).get("seed", DEFAULT_SEED))
    except (OSError, ValueError):
        return DEFAULT_SEED


def load_reference(models_dir: Path, data_dir: Path | None = None, *,
                   n_users: int | None = None) -> Reference:
    """Generate and score the held-out users. Raises FileNotFoundError without the Taiwan data."""
    from dsp.offline.taiwan import age_band, load_taiwan
    from dsp.offline.training import intent
    from dsp.scoring.model import load_models

    seed = _seed(models_dir)
    data = load_taiwan(data_dir)
    pop, _ = intent.holdout(data, seed, n_users or intent.N_HOLDOUT_USERS)
    runners = load_models(models_dir, ("intent", "risk"))
    p_intent = runners["intent"].predict(pop.features).astype(np.float64)
    pd = runners["risk"].predict(pop.features).astype(np.float64)
    sex = np.array([SEX_NAMES.get(int(s), "other") for s in pop.sex])
    return Reference(p_intent, pd, pop.defaulted, sex, age_band(pop.age),
                     f"{len(pop):,} held-out users (Taiwan test rows, seed {seed}), "
                     f"models {runners['intent'].config.version} / {runners['risk'].config.version}")


def selected(c: CompiledCampaign, p_intent: F64, pd: F64) -> npt.NDArray[np.bool_]:
    """Would ``c`` bid for each user (gates and pricing at λ = 0, no floor)? Mirrors
    :func:`dsp.bidding.pricing.price` (a test checks the two agree row by row)."""
    # The formula of dsp.bidding.pricing.impression_value over arrays (that function is typed for
    # floats and compiled with mypyc, which refuses arrays).
    npv = c.margin * (1.0 - pd) - pd * c.lgd * c.ead - c.cost
    value = p_intent * c.apply_rate * c.p_approve * npv
    bid_cpm_micros = np.minimum(np.round(value * 1e9), c.max_cpm_micros)
    out: npt.NDArray[np.bool_] = ((p_intent >= c.intent_min) & (pd <= c.pd_max)
                                  & (np.round(value * 1e9) > 0) & (bid_cpm_micros > 0))
    return out


def assess_campaign(c: CompiledCampaign, ref: Reference) -> CampaignFairness:
    sel = selected(c, ref.p_intent, ref.pd)
    by_sex, sex_air = group_rates(sel, ref.sex_group, ("male", "female", "other"))
    by_age, age_air = group_rates(sel, ref.age_group, AGE_BANDS)
    n = int(sel.sum())
    if n:
        npv = c.margin * (1.0 - ref.pd[sel]) - ref.pd[sel] * c.lgd * c.ead - c.cost
        weights = ref.p_intent[sel]
        terms = LendingTerms(n / sel.shape[0], float(ref.pd[sel].mean()),
                             float(ref.defaulted[sel].mean()),
                             float(1e6 * c.apply_rate * weights.mean()),
                             float(1e6 * c.apply_rate * c.p_approve * weights.mean()),
                             float((weights * npv).sum() / weights.sum()))
    else:
        terms = LendingTerms(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    return CampaignFairness(c.id, n / max(sel.shape[0], 1), by_sex, sex_air, by_age, age_air, terms)


def assess(snapshot: Snapshot, ref: Reference) -> list[CampaignFairness]:
    """Every enabled campaign of the snapshot, in snapshot order."""
    return [assess_campaign(c, ref) for c in snapshot.campaigns]


def gate_problems(results: Sequence[CampaignFairness], files: dict[str, str]) -> list[ConfigProblem]:
    """One problem per campaign and grouping below the four-fifths rule, naming the group."""
    problems: list[ConfigProblem] = []
    for r in results:
        for label, air, rates in (("sex", r.sex_air, r.by_sex), ("age band", r.age_air, r.by_age)):
            if air >= FOUR_FIFTHS:
                continue
            low = min(rates, key=lambda g: g.pass_rate)
            high = max(rates, key=lambda g: g.pass_rate)
            problems.append(ConfigProblem(
                files.get(r.campaign, r.campaign), "pd_max/intent_min",
                f"adverse-impact ratio by {label} {air:.3f} < {FOUR_FIFTHS} (fair-lending gate): "
                f"{low.group} selected {low.pass_rate:.1%} vs {high.group} {high.pass_rate:.1%}"))
    return problems


def render(results: Sequence[CampaignFairness], source: str) -> str:
    """The table ``dsp config validate`` prints: adverse-impact ratio per campaign and group."""
    lines = [f"fair-lending gate (four-fifths rule, reference: {source}):"]
    for r in results:
        verdict = "passes" if r.passes else "FAILS"
        t = r.lending
        lines.append(f"  campaign {r.campaign}: {verdict}; adverse-impact ratio by sex {r.sex_air:.3f}, "
                     f"by age band {r.age_air:.3f}; selected {r.overall:.1%}")
        groups = ", ".join(f"{g.group} {g.pass_rate:.1%}" for g in r.by_sex + r.by_age)
        lines.append(f"    selection rate per group: {groups}")
        lines.append(f"    lending terms: mean pd {t.mean_pd:.3f}, realised default rate "
                     f"{t.default_rate:.1%}; per million impressions {t.applications_per_million:.1f} "
                     f"applications, {t.funded_per_million:.1f} funded loans; expected NPV per "
                     f"booked loan {t.npv_per_loan:.2f}")
    return "\n".join(lines)
