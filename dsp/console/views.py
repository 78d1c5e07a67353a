"""The console's HTML pages. Pure functions of plain values; every number the test reads sits in
an element with ``data-campaign`` and ``data-field`` attributes (the rendered text is the value).

Pages: the overview (every configured campaign, even before any event), one campaign (today's
spend against the pacing plan by hour, the funnel, pacing and brake state, fair-lending status),
the config history (every load and reload with what changed), and the forecast view (pick a
proposed config tree, see old vs new side by side).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import msgspec

from dsp.console.charts import line_chart
from dsp.offline.console_data import ConfigChange, DayStats

STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}nav a{margin-right:16px}
.bad{color:#b00020;font-weight:bold}.ok{color:#1b5e20}.muted{color:#777}"""


class CampaignRow(msgspec.Struct):
    """One campaign as the console shows it: config facts, today's events, live state."""

    id: str
    name: str
    currency: str
    daily_budget_micros: int
    plan_weights: list[float]  # 24 hourly weights (normalised here)
    stats: DayStats
    pacing_lambda: float | None
    lambda_source: str  # "bidder" (live gauge) | "last logged bid" | ""
    brake: str  # "off" | "ON" | "unknown"
    redis_spent_micros: int | None
    fairness: str  # "passes (...)", "FAILS (...)", "pending", "unavailable: ..."


def esc(x: object) -> str:
    return html.escape(str(x))


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><nav><a href='/'>campaigns</a>"
            f"<a href='/history'>config history</a><a href='/forecast'>forecast</a></nav>"
            f"<h1>{esc(title)}</h1>{body}</body></html>")


def money(micros: int | float | None) -> str:
    return "–" if micros is None else f"{micros / 1e6:,.2f}"


def _cell(cid: str, field: str, text: str) -> str:
    return f"<td data-campaign='{esc(cid)}' data-field='{field}'>{esc(text)}</td>"


FIELDS = ("bids", "wins", "win_rate", "spend", "clicks", "applications", "approvals", "funded",
          "cost_per_funded", "lambda", "brake", "fair_lending")


def _values(r: CampaignRow) -> dict[str, str]:
    s = r.stats
    return {"bids": f"{s.bids}", "wins": f"{s.wins}",
            "win_rate": "–" if s.win_rate is None else f"{s.win_rate:.1%}",
            "spend": money(s.spend_micros), "clicks": f"{s.clicks}",
            "applications": f"{s.applications}", "approvals": f"{s.approvals}",
            "funded": f"{s.funded}", "cost_per_funded": money(s.cost_per_funded_micros),
            "lambda": "–" if r.pacing_lambda is None else f"{r.pacing_lambda:.3f}",
            "brake": r.brake, "fair_lending": r.fairness}


def overview(rows: Sequence[CampaignRow], day: str, events_dir: str) -> str:
    head = "".join(f"<th>{h}</th>" for h in (
        "bids", "wins", "win rate", "spend", "clicks", "applications", "approvals",
        "funded loans", "cost per funded loan", "pacing λ", "brake", "fair lending"))
    body = [f"<p>Today ({esc(day)}, UTC) from the event log <code>{esc(events_dir)}</code>; "
            f"money in each campaign's currency.</p>",
            f"<table id=campaigns><tr><th class=l>campaign</th><th>currency</th>{head}</tr>"]
    for r in rows:
        v = _values(r)
        cells = "".join(_cell(r.id, f, v[f]) for f in FIELDS)
        body.append(f"<tr><td class=l><a href='/campaign/{esc(r.id)}'>{esc(r.id)}</a></td>"
                    f"<td>{esc(r.currency)}</td>{cells}</tr>")
    body.append("</table>")
    return page("Campaigns", "".join(body))


def campaign(r: CampaignRow, day: str) -> str:
    total = sum(r.plan_weights) or 1.0
    plan, cum = [0.0], 0.0
    for w in r.plan_weights:
        cum += w / total
        plan.append(r.daily_budget_micros * cum / 1e6)
    spent, acc = [0.0], 0
    for hour_micros in r.stats.spend_by_hour_micros:
        acc += hour_micros
        spent.append(acc / 1e6)
    chart = line_chart([("pacing plan", "#888", plan), ("spend", "#1565c0", spent)],
                       x_labels=[f"{h:02d}" for h in range(25)],
                       y_label=f"cumulative {r.currency}", title=f"{r.id}: spend vs plan, {day}")
    v = _values(r)
    facts = "".join(f"<tr><th class=l>{esc(label)}</th>{_cell(r.id, f, v[f])}</tr>" for label, f in (
        ("bids", "bids"), ("wins", "wins"), ("win rate", "win_rate"),
        (f"spend ({r.currency})", "spend"), ("clicks", "clicks"),
        ("applications", "applications"), ("approvals", "approvals"),
        ("funded loans", "funded"), (f"cost per funded loan ({r.currency})", "cost_per_funded"),
        (f"pacing λ ({r.lambda_source or 'no data'})", "lambda"), ("budget brake", "brake"),
        ("fair-lending gate", "fair_lending")))
    redis_line = ("" if r.redis_spent_micros is None else
                  f"<p>Live Redis ledger: committed today {money(r.redis_spent_micros)} of "
                  f"{money(r.daily_budget_micros)} {esc(r.currency)}.</p>")
    hours = "".join(f"<td data-campaign='{esc(r.id)}' data-field='spend_h{h:02d}'>"
                    f"{money(x)}</td>" for h, x in enumerate(r.stats.spend_by_hour_micros))
    return page(f"{r.name or r.id}", f"""
<p>Daily budget {money(r.daily_budget_micros)} {esc(r.currency)}; today = {esc(day)} (UTC).</p>
{chart}{redis_line}<table>{facts}</table>
<h2>Spend by hour ({esc(r.currency)})</h2>
<table><tr>{"".join(f"<th>{h:02d}</th>" for h in range(24))}</tr><tr>{hours}</tr></table>""")


def history(changes: Sequence[ConfigChange]) -> str:
    import datetime as dt

    if not changes:
        return page("Config history", "<p class=muted>No config events in the log yet.</p>")
    rows = []
    for c in changes:
        when = dt.datetime.fromtimestamp(c.ts_us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        status = "ok" if c.ok else f"<span class=bad>rejected ({c.problems} problems)</span>"
        diff = "<br>".join(esc(x) for x in c.changed) or "<span class=muted>(no change)</span>"
        rows.append(f"<tr><td class=l>{when}</td><td class=l>{esc(c.trigger)}</td>"
                    f"<td class=l>{esc(c.actor)}</td><td class=l><code>{esc(c.previous_version)}"
                    f"</code> → <code>{esc(c.config_version)}</code></td><td class=l>{status}</td>"
                    f"<td class=l>{diff}</td></tr>")
    return page("Config history", "<table id=history><tr><th class=l>time (UTC)</th><th class=l>"
                "trigger</th><th class=l>who</th><th class=l>version</th><th class=l>result</th>"
                "<th class=l>what changed</th></tr>" + "".join(rows) + "</table>")


def forecast_form(proposals: Sequence[str], chosen: str | None, result_html: str) -> str:
    options = "".join(f"<option{' selected' if p == chosen else ''}>{esc(p)}</option>"
                      for p in proposals)
    form = ("<p class=muted>No proposed config trees found.</p>" if not proposals else
            f"<form method=get action='/forecast'><label>proposed config tree "
            f"<select name=proposal>{options}</select></label> <button>forecast</button></form>")
    return page("Forecast a change", form + result_html)


def forecast_result(text: str, fairness: str) -> str:
    return (f"<h2>Old vs new on the logged traffic</h2><pre id=forecast>{esc(text)}</pre>"
            f"<h2>Fair-lending gate</h2><pre id=fairness>{esc(fairness)}</pre>")
