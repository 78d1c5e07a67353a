"""What the campaign console shows, read from the event log with DuckDB (offline code).

    day = campaign_day_stats(Path("events"), "2026-12-03")     # {campaign: DayStats}
    history = config_history(Path("events"))                   # newest first

Counting rules are the event log's (docs/events.md): each ``event_id`` counts once, test traffic
is left out, spend is committed spend — the price of the notice that bills on the bid's exchange
(``bills``) in the campaign's currency — and a day is a UTC day of the event's ``ts_us``. Funnel
steps (submitted, approved, funded) count distinct bids that reached the stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec


class DayStats(msgspec.Struct):
    campaign: str
    bids: int = 0
    wins: int = 0
    spend_micros: int = 0
    clicks: int = 0
    applications: int = 0
    approvals: int = 0
    funded: int = 0
    funded_micros: int = 0
    spend_by_hour_micros: list[int] = msgspec.field(default_factory=lambda: [0] * 24)
    last_lambda: float | None = None  # pacing λ of the campaign's newest logged bid

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.bids if self.bids else None

    @property
    def cost_per_funded_micros(self) -> int | None:
        return self.spend_micros // self.funded if self.funded else None


class ConfigChange(msgspec.Struct):
    ts_us: int
    config_version: str
    previous_version: str
    trigger: str
    actor: str
    changed: list[str]
    ok: bool
    problems: int


def _glob(root: Path, kind: str) -> str | None:
    base = root / f"kind={kind}"
    if not base.is_dir() or not any(base.rglob("*.parquet")):
        return None
    return str(base / "**" / "*.parquet")


def _once(g: str, day: str | None) -> str:
    where = f" AND date = '{day}'" if day else ""
    return (f"(SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY ts_us) "
            f"AS n_ FROM read_parquet('{g}', hive_partitioning = true, union_by_name = true)) "
            f"WHERE n_ = 1 AND NOT coalesce(test, false){where})")


def _rows(con: Any, sql: str) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = con.execute(sql).fetchall()
    return out


def _is_day(day: str) -> bool:
    return len(day) == 10 and day[4] == "-" and day[7] == "-" and day.replace("-", "").isdigit()


def campaign_day_stats(root: Path, day: str) -> dict[str, DayStats]:
    """Per campaign, the day's counters (UTC ``YYYY-MM-DD``). Campaigns without events are absent."""
    import duckdb

    if not _is_day(day):
        raise ValueError(f"day must be YYYY-MM-DD, got {day!r}")
    con = duckdb.connect()
    out: dict[str, DayStats] = {}

    def get(cid: str) -> DayStats:
        return out.setdefault(cid, DayStats(cid))

    bid = _glob(root, "bid")
    if bid:
        for cid, n, lam in _rows(con, f"SELECT campaign, count(*), arg_max(pacing_lambda, ts_us) "
                                      f"FROM {_once(bid, day)} GROUP BY campaign"):
            s = get(str(cid))
            s.bids, s.last_lambda = int(n), float(lam) if lam is not None else None
    won = [g for g in (_glob(root, "win"), _glob(root, "bill")) if g]
    if won:
        union = " UNION ALL ".join(f"SELECT bid_id, campaign, ts_us, price_micros, bills "
                                   f"FROM {_once(g, day)}" for g in won)
        for cid, n in _rows(con, f"SELECT campaign, count(DISTINCT bid_id) FROM ({union}) "
                                 f"GROUP BY campaign"):
            get(str(cid)).wins = int(n)
        for cid, hour, spend in _rows(con, f"""
                SELECT campaign, hour(make_timestamp(ts_us)) AS h, sum(price_micros)
                FROM ({union}) WHERE bills GROUP BY campaign, h"""):
            s = get(str(cid))
            s.spend_by_hour_micros[int(hour)] += int(spend)
            s.spend_micros += int(spend)
    click = _glob(root, "click")
    if click:
        for cid, n in _rows(con, f"SELECT campaign, count(DISTINCT bid_id) FROM {_once(click, day)} "
                                 f"GROUP BY campaign"):
            get(str(cid)).clicks = int(n)
    conv = _glob(root, "conversion")
    if conv:
        for cid, stage, n, amount in _rows(con, f"""
                SELECT campaign, stage, count(DISTINCT bid_id), sum(amount_micros)
                FROM {_once(conv, day)} GROUP BY campaign, stage"""):
            s = get(str(cid))
            if stage == "submitted":
                s.applications = int(n)
            elif stage == "approved":
                s.approvals = int(n)
            elif stage == "funded":
                s.funded, s.funded_micros = int(n), int(amount or 0)
    return out


def latest_day(root: Path) -> str | None:
    """The newest UTC date that holds any bid (None for an empty log)."""
    base = root / "kind=bid"
    days = sorted(p.name.split("=", 1)[1] for p in base.glob("date=*")) if base.is_dir() else []
    return days[-1] if days else None


def config_history(root: Path, limit: int = 200) -> list[ConfigChange]:
    """Config loads and reloads, newest first (at most ``limit``)."""
    import duckdb

    g = _glob(root, "config")
    if g is None:
        return []
    con = duckdb.connect()
    return [ConfigChange(int(ts), str(v or ""), str(prev or ""), str(trig or ""), str(actor or ""),
                         list(changed or []), bool(ok), int(problems or 0))
            for ts, v, prev, trig, actor, changed, ok, problems in _rows(con, f"""
                SELECT ts_us, config_version, previous_version, trigger, actor, changed, ok,
                       problems FROM {_once(g, None)} ORDER BY ts_us DESC LIMIT {int(limit)}""")]
