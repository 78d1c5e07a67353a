"""The outcome report: bids to funded loans, per campaign, exchange (and any grouping).

    report = build_report(open_log(Path("events")), by=("campaign", "day"))
    print(msgspec.json.encode(report))

Shape (``dsp report --json``)::

    {"campaigns": [{"campaign": "quickloan-prime", "currency": "USD", "bids": 12, "wins": 5, ...}],
     "exchanges": [{"exchange": "generic", "currency": "USD", "requests_sampled": 3, ...}],
     "total": {"currency": "USD", ...},
     "rows": [...]}          # only with --by: one row per combination of the named dimensions

Every figure counts each event once (the views dedup by ``event_id``) and leaves ``test`` traffic
out. Money is integer micros in the row's ``currency`` (the campaign's account currency);
``spend_micros`` is what the ledger committed on the exchange's billing notice. Averages are
integers (half away from zero); rates are floats, ``null`` when the denominator is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

DIMENSIONS = ("campaign", "exchange", "day", "creative")

_COUNTS = """
    count(*) AS bids,
    count(*) FILTER (WHERE won) AS wins,
    count(*) FILTER (WHERE impression) AS impressions,
    count(*) FILTER (WHERE billed) AS billed,
    coalesce(sum(spend_micros), 0) AS spend_micros,
    coalesce(sum(clearing_price_micros) FILTER (WHERE won), 0) AS clearing_sum_micros,
    coalesce(sum(bid_price_micros) FILTER (WHERE won), 0) AS won_bid_sum_micros,
    count(*) FILTER (WHERE clicked) AS clicks,
    count(*) FILTER (WHERE submitted) AS applications,
    count(*) FILTER (WHERE approved) AS approvals,
    count(*) FILTER (WHERE funded) AS funded,
    coalesce(sum(funded_micros), 0) AS funded_micros,
    count(*) FILTER (WHERE lost) AS losses
"""


def _div_round(num: int, den: int) -> int | None:
    if den == 0:
        return None
    q, r = divmod(abs(num), den)
    q += 1 if 2 * r >= den else 0
    return q if num >= 0 else -q


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    """Derived figures from the sums of one group."""
    bids, wins, imps = row["bids"], row["wins"], row["impressions"]
    row["win_rate"] = _rate(wins, bids)
    row["avg_clearing_micros"] = _div_round(row.pop("clearing_sum_micros"), wins)
    row["avg_bid_won_micros"] = _div_round(row.pop("won_bid_sum_micros"), wins)
    row["ctr"] = _rate(row["clicks"], imps)
    row["apply_rate"] = _rate(row["applications"], row["clicks"])
    row["approval_rate"] = _rate(row["approvals"], row["applications"])
    row["cost_per_funded_micros"] = _div_round(row["spend_micros"], row["funded"])
    return row


def _query(con: duckdb.DuckDBPyConnection, dims: Sequence[str]) -> list[dict[str, Any]]:
    cols = ", ".join([*dims, "currency"])
    rel = con.sql(f"SELECT {cols}, {_COUNTS} FROM bid_outcomes WHERE NOT test "
                  f"GROUP BY {cols} ORDER BY {cols}")
    names = rel.columns
    out = []
    for values in rel.fetchall():
        row = dict(zip(names, values, strict=True))
        if "day" in row and row["day"] is not None:
            row["day"] = row["day"].isoformat()
        out.append(_finish(row))
    return out


def _samples(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int]]:
    """exchange -> (requests sampled, estimated requests = Σ 1/sample_rate)."""
    rows = con.sql("SELECT exchange, count(*), sum(1.0 / sample_rate) FROM ev_sample "
                   "WHERE NOT test AND sample_rate > 0 GROUP BY exchange").fetchall()
    return {ex: (int(n), round(est)) for ex, n, est in rows}


def build_report(con: duckdb.DuckDBPyConnection, by: Sequence[str] = (), *,
                 configs: Path | None = None) -> dict[str, Any]:
    for dim in by:
        if dim not in DIMENSIONS:
            raise ValueError(f"--by: unknown dimension {dim!r} (choose from {', '.join(DIMENSIONS)})")
    samples = _samples(con)
    campaigns = _query(con, ["campaign"])
    exchanges = _query(con, ["exchange"])
    for row in exchanges:
        row["requests_sampled"], row["requests_estimated"] = samples.get(row["exchange"], (0, 0))
    for ex, (n, est) in samples.items():
        if not any(r["exchange"] == ex for r in exchanges):
            exchanges.append(_finish({"exchange": ex, "currency": None, **_zero(),
                                      "requests_sampled": n, "requests_estimated": est}))
    totals = _query(con, [])
    currencies = sorted({r["currency"] for r in totals})
    if len(totals) == 1:
        total = totals[0]
    elif not totals:
        total = _finish({"currency": None, **_zero()})
    else:  # several account currencies: counts add up, money does not
        total = _finish({"currency": None, **_zero()})
        for r in totals:
            for k in ("bids", "wins", "impressions", "billed", "clicks", "applications",
                      "approvals", "funded", "losses"):
                total[k] += r[k]
        total = _finish({**total, "clearing_sum_micros": 0, "won_bid_sum_micros": 0})
        total["spend_micros_by_currency"] = {r["currency"]: r["spend_micros"] for r in totals}
        total["spend_micros"] = None
        total["currencies"] = currencies
    total["requests_sampled"] = sum(n for n, _ in samples.values())
    total["requests_estimated"] = sum(e for _, e in samples.values())
    from dsp.offline.learning.funnel import estimate, priors_from

    funnel = estimate(con, priors_from(configs) if configs is not None and configs.is_dir() else {})
    for row in campaigns:
        row["funnel"] = funnel.get(row["campaign"])
    report: dict[str, Any] = {"campaigns": campaigns, "exchanges": exchanges, "total": total}
    if by:
        report["rows"] = _query(con, list(by))
    return report


def _zero() -> dict[str, int]:
    return {"bids": 0, "wins": 0, "impressions": 0, "billed": 0, "spend_micros": 0,
            "clearing_sum_micros": 0, "won_bid_sum_micros": 0, "clicks": 0, "applications": 0,
            "approvals": 0, "funded": 0, "funded_micros": 0, "losses": 0}


_COLUMNS = (("bids", "bids"), ("wins", "wins"), ("win%", "win_rate"), ("imps", "impressions"),
            ("spend", "spend_micros"), ("avg clear", "avg_clearing_micros"),
            ("avg bid", "avg_bid_won_micros"), ("clicks", "clicks"), ("CTR%", "ctr"),
            ("apps", "applications"), ("approved", "approvals"), ("funded", "funded"),
            ("cost/funded", "cost_per_funded_micros"))


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key.endswith("_rate") or key == "ctr":
        return f"{100 * value:.2f}"
    if key.endswith("_micros"):
        return f"{value / 1e6:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def render_text(report: dict[str, Any]) -> str:
    """A fixed-width table per section (money in currency units)."""
    lines: list[str] = []
    sections = [("campaign", report["campaigns"]), ("exchange", report["exchanges"])]
    if "rows" in report:
        sections.append(("group", report["rows"]))
    for label, rows in sections:
        keys = [k for k in DIMENSIONS if rows and k in rows[0]] if label == "group" else [label]
        head = [*keys, "cur", *(h for h, _ in _COLUMNS)]
        body = [[str(r.get(k)) for k in keys] + [str(r.get("currency") or "-")]
                + [_cell(k, r.get(k)) for _, k in _COLUMNS] for r in rows]
        widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
        lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in body]
        lines.append("")
    lines.append("funnel (prior -> observed -> estimate)")
    for r in report["campaigns"]:
        f = r.get("funnel") or {}
        parts = []
        for key in ("apply_rate", "p_approve"):
            est = f.get(key) or {}
            parts.append(f"{key} " + " -> ".join(
                "-" if est.get(k) is None else f"{est[k]:.5f}" for k in ("prior", "observed", "estimate")))
        lines.append(f"  {r['campaign']}: " + "; ".join(parts))
    lines.append("")
    t = report["total"]
    lines.append(f"total: {t['bids']:,} bids, {t['wins']:,} wins, {t['impressions']:,} impressions, "
                 f"{t['clicks']:,} clicks, {t['funded']:,} funded loans; "
                 f"{t['requests_sampled']:,} requests sampled (~{t['requests_estimated']:,} requests)")
    return "\n".join(lines)
