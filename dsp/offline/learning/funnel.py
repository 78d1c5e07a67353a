"""Funnel rates re-estimated from the event log, shrunk toward the configured priors (Beta).

The value formula prices an impression with ``p_intent · apply_rate · p_approve · NPV``. The
campaign file states ``apply_rate`` and ``p_approve`` as constants; the log shows what happened:

    apply_rate  = applications / Σ p_intent over the campaign's impressions
                  (applications per unit of predicted intent: the model's score is the exposure)
    p_approve   = approvals / applications

Each is shrunk toward the configured value ``μ`` with a Beta prior of strength ``n₀``
(pseudo-observations): ``(successes + μ·n₀) / (trials + n₀)``. ``n₀`` is set so the prior weighs
as much as ``PRIOR_APPLICATIONS`` applications (``n₀ = 20 / μ`` intent units for the apply rate,
20 applications for approval), so one lucky day cannot move the bid much, and a few hundred
applications mostly replace the prior. ``dsp report`` shows prior, observed and estimate;
``dsp models funnel`` writes ``learned/funnel.yaml``, used by campaigns with ``learning.funnel``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import msgspec

from dsp.config.learned import FunnelEstimate, FunnelFile

PRIOR_APPLICATIONS = 20.0

QUERY = """
SELECT campaign,
       count(*) FILTER (WHERE impression) AS impressions,
       coalesce(sum(coalesce(scores['p_intent'], 0.0)) FILTER (WHERE impression), 0.0) AS intent_sum,
       count(*) FILTER (WHERE clicked) AS clicks,
       count(*) FILTER (WHERE submitted) AS applications,
       count(*) FILTER (WHERE approved) AS approvals,
       count(*) FILTER (WHERE funded) AS funded
FROM bid_outcomes WHERE NOT test AND NOT explore GROUP BY campaign ORDER BY campaign
"""


def shrink(successes: float, trials: float, prior_mean: float, prior_strength: float) -> float:
    """Posterior mean of a Beta(μ·n₀, (1−μ)·n₀) prior after ``successes`` in ``trials``."""
    return (successes + prior_mean * prior_strength) / (trials + prior_strength)


def estimate(con: duckdb.DuckDBPyConnection, priors: dict[str, tuple[float, float]]
             ) -> dict[str, dict[str, Any]]:
    """Per campaign: counts, and for each rate the prior, the observed value and the estimate.
    ``priors``: campaign id -> (apply_rate, p_approve) from its config (campaigns without one get
    observed rates only)."""
    out: dict[str, dict[str, Any]] = {}
    for cid, imps, intent_sum, clicks, apps, approvals, funded in con.sql(QUERY).fetchall():
        row: dict[str, Any] = {"impressions": imps, "intent_sum": round(float(intent_sum), 6),
                               "clicks": clicks, "applications": apps, "approvals": approvals,
                               "funded": funded}
        prior = priors.get(cid)
        observed_apply = apps / intent_sum if intent_sum > 0 else None
        observed_approve = approvals / apps if apps else None
        if prior is not None:
            mu_a, mu_p = prior
            row["apply_rate"] = {"prior": mu_a, "observed": observed_apply,
                                 "estimate": shrink(apps, float(intent_sum), mu_a,
                                                    PRIOR_APPLICATIONS / mu_a if mu_a > 0 else 0.0)}
            row["p_approve"] = {"prior": mu_p, "observed": observed_approve,
                                "estimate": shrink(approvals, apps, mu_p, PRIOR_APPLICATIONS)}
        else:
            row["apply_rate"] = {"prior": None, "observed": observed_apply, "estimate": observed_apply}
            row["p_approve"] = {"prior": None, "observed": observed_approve,
                                "estimate": observed_approve}
        row["funded_rate"] = funded / approvals if approvals else None
        out[cid] = row
    return out


def priors_from(configs: Path) -> dict[str, tuple[float, float]]:
    """(apply_rate, p_approve) of every campaign file under ``configs`` (the configured priors)."""
    from dsp.config.loader import load_dir

    raw, _problems = load_dir(configs)
    if raw is None:
        return {}
    return {c.id: (c.funnel.apply_rate, c.funnel.p_approve) for c in raw.campaigns}


def funnel_file(estimates: dict[str, dict[str, Any]], source: str) -> FunnelFile:
    campaigns = {}
    for cid, row in estimates.items():
        a, p = row["apply_rate"]["estimate"], row["p_approve"]["estimate"]
        if a is None or p is None or row["apply_rate"]["prior"] is None:
            continue
        campaigns[cid] = FunnelEstimate(apply_rate=min(1.0, a), p_approve=min(1.0, p),
                                        impressions=row["impressions"], clicks=row["clicks"],
                                        applications=row["applications"],
                                        approvals=row["approvals"], funded=row["funded"])
    return FunnelFile(campaigns=campaigns, source=source)


def write_funnel(ff: FunnelFile, out: Path) -> None:
    import yaml

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("# Written by `dsp models funnel`; do not edit by hand.\n"
                   + yaml.safe_dump(msgspec.to_builtins(ff), sort_keys=True))
    tmp.replace(out)
