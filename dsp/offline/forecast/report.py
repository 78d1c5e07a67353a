"""Text rendering of a :class:`~dsp.offline.forecast.run.Forecast` (``dsp forecast``)."""

from __future__ import annotations

from dsp.offline.forecast.intervals import Estimate
from dsp.offline.forecast.run import Forecast, Side


def _n(e: Estimate, money: bool = False) -> str:
    if money:
        return f"{e.mean / 1e6:,.2f} [{e.low / 1e6:,.2f}-{e.high / 1e6:,.2f}]"
    return f"{e.mean:,.1f} [{e.low:,.1f}-{e.high:,.1f}]"


def _rows(s: Side | None) -> list[str]:
    if s is None:
        return ["-"] * 11
    out = "never" if not s.budget_out_days else (
        f"{s.budget_out_days}/{s.days} days, at {s.budget_out_share:.0%} of the day")
    cpf = f"{s.cost_per_funded_micros / 1e6:,.2f}" if s.cost_per_funded_micros else "-"
    return [f"{s.bids:,.0f}", _n(s.wins), _n(s.spend_micros, True), _n(s.impressions),
            _n(s.clicks), _n(s.applications), _n(s.approvals), _n(s.funded), cpf, out, ""]


LABELS = ("bids", "wins", "spend", "impressions", "clicks", "applications", "approvals",
          "funded loans", "cost per funded loan", "budget runs out", "")


def render(fc: Forecast) -> str:
    lines = [f"forecast on {fc.samples:,} sampled requests and {fc.outcomes:,} resolved bids; "
             f"[low-high] = {fc.coverage:.0%} interval"]
    for c in fc.campaigns:
        lines.append(f"\ncampaign {c.campaign} ({c.currency}): {c.status}")
        if c.old is None and c.new is None:
            continue
        old, new = _rows(c.old), _rows(c.new)
        width = max(len(x) for x in [*old, "old"])
        lines.append(f"  {'':22s} {'old':>{width}s}   new")
        for label, a, b in zip(LABELS, old, new, strict=True):
            if label:
                lines.append(f"  {label:22s} {a:>{width}s}   {b}")
    return "\n".join(lines)
