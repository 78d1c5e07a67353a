"""``dsp forecast``: old vs new config on the logged traffic, per campaign, with intervals.

    fc = forecast(old, new, Path("events"))          # raises TooThin when the log says nothing
    print(render(fc)) / msgspec.json.encode(fc)

Steps: read the request sample and the bid outcomes (:mod:`.eventfiles`); refuse below
:data:`MIN_SAMPLES` sampled requests or :data:`MIN_OUTCOMES` resolved bids (a campaign with fewer
than :data:`MIN_CAMPAIGN_OUTCOMES` of its own is reported as too thin, not forecast); fit the
censored landscape and the click model (:mod:`.market`); replay the sample through each config
with the real bid path and simulated budgets and pacing (:mod:`.simulate`); intervals from market
noise and bootstrap refits (:mod:`.intervals`). The funnel after the click uses the log's own
rates, each shrunk toward the old config's constants by one pseudo-observation:

    applications = Σ P(win) · p_intent · a,   a = (apps + 1) / (Σ_logged wins p_intent + 1 / apply_rate)
    approvals    = applications · (approved + p_approve) / (apps + 1)
    funded       = approvals · (funded + 1) / (approved + 1)
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np

from dsp.config.snapshot import Snapshot
from dsp.offline.forecast.eventfiles import read_log
from dsp.offline.forecast.intervals import COVERAGE, Estimate, Z, estimates
from dsp.offline.forecast.market import fit_market
from dsp.offline.forecast.simulate import BidRecord, CampaignTotals, simulate

MIN_SAMPLES = 500
MIN_OUTCOMES = 200
MIN_CAMPAIGN_OUTCOMES = 50
N_BOOT = 20


class TooThin(Exception):
    """The log cannot support a forecast; the message says what is missing."""


class Side(msgspec.Struct):
    """One config's forecast for one campaign (money in micros of the campaign currency)."""

    bids: float
    wins: Estimate
    spend_micros: Estimate
    impressions: Estimate
    clicks: Estimate
    applications: Estimate
    approvals: Estimate
    funded: Estimate
    cost_per_funded_micros: float | None
    budget_out_days: int
    days: int
    budget_out_share: float | None  # mean share of the day's traffic seen when it ran out


class CampaignForecast(msgspec.Struct):
    campaign: str
    currency: str
    status: str  # "ok" | "too thin: ..." | "new campaign" | "removed"
    old: Side | None = None
    new: Side | None = None


class Forecast(msgspec.Struct):
    samples: int
    outcomes: int
    coverage: float
    campaigns: list[CampaignForecast]


def _scaled(e: Estimate, f: float) -> Estimate:
    return Estimate(e.mean * f, e.low * f, e.high * f, e.coverage)


def _funnel(mean: float, n_obs: float) -> Estimate:
    """Counts downstream of clicks: Poisson noise plus a rate known from ``n_obs`` events."""
    half = Z[COVERAGE] * math.sqrt(max(mean, 0.0) + mean * mean / (n_obs + 1.0))
    return Estimate(mean, max(mean - half, 0.0), mean + half)


class _Funnel(msgspec.Struct):
    apps: float = 0.0
    approved: float = 0.0
    funded: float = 0.0
    intent_won: float = 0.0


def _logged_funnel(events: Path) -> dict[str, _Funnel]:
    import duckdb

    out: dict[str, _Funnel] = {}
    conv = list((events / "kind=conversion").glob("**/*.parquet"))
    if not conv:
        return out
    con = duckdb.connect()
    glob = str(events / "kind=conversion" / "**" / "*.parquet")
    for campaign, stage, n in con.execute(f"""
            SELECT campaign, stage, count(DISTINCT event_id) FROM read_parquet('{glob}',
              hive_partitioning = true, union_by_name = true)
            WHERE NOT coalesce(test, false) GROUP BY campaign, stage""").fetchall():
        f = out.setdefault(str(campaign), _Funnel())
        if stage == "submitted":
            f.apps = float(n)
        elif stage == "approved":
            f.approved = float(n)
        elif stage == "funded":
            f.funded = float(n)
    return out


def _side(snap: Snapshot, cid: str, t: CampaignTotals, est: dict[str, Estimate],
          logged: _Funnel, prior: Snapshot) -> Side:
    c = next(x for x in prior.campaigns if x.id == cid) if any(
        x.id == cid for x in prior.campaigns) else next(x for x in snap.campaigns if x.id == cid)
    wins, clicks = est["wins"], est["clicks"]
    a = (logged.apps + 1.0) / (logged.intent_won + 1.0 / max(c.apply_rate, 1e-9))
    apps = t.intent_won * a
    approvals = apps * (logged.approved + c.p_approve) / (logged.apps + 1.0)
    funded = approvals * (logged.funded + 1.0) / (logged.approved + 1.0)
    spend = est["spend_micros"]
    return Side(bids=t.bids, wins=wins, spend_micros=spend, impressions=wins, clicks=clicks,
                applications=_funnel(apps, logged.apps), approvals=_funnel(approvals, logged.approved),
                funded=_funnel(funded, logged.funded),
                cost_per_funded_micros=spend.mean / funded if funded > 0 else None,
                budget_out_days=t.days_out, days=t.days,
                budget_out_share=t.out_share_sum / t.days_out if t.days_out else None)


def forecast(old: Snapshot, new: Snapshot, events: Path, *, n_boot: int = N_BOOT,
             seed: int = 7) -> Forecast:
    rows, outcomes, lambdas = read_log(events)
    n_out = int(outcomes.resolved.sum())
    if len(rows) < MIN_SAMPLES:
        raise TooThin(f"{events}: {len(rows)} sampled requests; a forecast needs at least "
                      f"{MIN_SAMPLES} (raise the request sample rate or wait for more traffic)")
    if n_out < MIN_OUTCOMES:
        raise TooThin(f"{events}: {n_out} bids with a known win or loss; a forecast needs at "
                      f"least {MIN_OUTCOMES} to fit the bid landscape")
    market, boots = fit_market(outcomes, n_boot=n_boot, seed=seed)
    camps = np.asarray(outcomes.campaign)
    logged = _logged_funnel(events)
    for cid in set(outcomes.campaign):
        m = (camps == cid) & outcomes.won & outcomes.resolved
        logged.setdefault(cid, _Funnel()).intent_won = float(outcomes.p_intent[m].sum())
    sides: dict[str, dict[str, tuple[CampaignTotals, dict[str, Estimate]]]] = {}
    for label, snap in (("old", old), ("new", new)):
        recs: list[BidRecord] = []
        totals = simulate(snap, rows, market, initial_lambda=lambdas, record=recs)
        ests = estimates(market, boots, recs)
        empty = {k: Estimate(0.0, 0.0, 0.0) for k in ("wins", "spend_micros", "clicks")}
        sides[label] = {cid: (t, ests.get(cid, empty)) for cid, t in totals.items()}
    out: list[CampaignForecast] = []
    currency = {c.id: c.currency for c in (*old.campaigns, *new.campaigns)}
    for cid in sorted(set(sides["old"]) | set(sides["new"])):
        own = int(((camps == cid) & outcomes.resolved).sum())
        fc = CampaignForecast(cid, currency[cid], "ok")
        if cid in sides["old"] and own < MIN_CAMPAIGN_OUTCOMES:
            fc.status = (f"too thin: {own} resolved bids of this campaign in the log (a forecast "
                         f"needs {MIN_CAMPAIGN_OUTCOMES})")
            out.append(fc)
            continue
        lf = logged.get(cid, _Funnel())
        if cid in sides["old"]:
            t, e = sides["old"][cid]
            fc.old = _side(old, cid, t, e, lf, old)
        else:
            fc.status = "new campaign (no history: forecast from the other campaigns' market)"
        if cid in sides["new"]:
            t, e = sides["new"][cid]
            fc.new = _side(new, cid, t, e, lf, old)
        else:
            fc.status = "removed (not in the new config)"
        out.append(fc)
    return Forecast(len(rows), n_out, COVERAGE, out)
