"""Event-log files for forecasts: read the request sample and the bid outcomes (DuckDB over the
Parquet layout of docs/events.md), and write events in that layout (for converted logs).

    rows, outcomes = read_log(Path("events"), fit_days=None, replay_days=None)

* ``rows``: the ``sample`` events (time order), each a :class:`~dsp.offline.forecast.simulate.Row`
  with the logged named scores (``p_intent``, ``pd`` and any gate score) and the weight
  ``1 / sample_rate``;
* ``outcomes``: one row per ``bid`` with its win (or bill) price, loss and click — the censored
  observations the landscape is fitted on. Test traffic is left out; each event counts once.

``fit_days`` / ``replay_days`` restrict each part to a range of UTC days (days since 1970-01-01,
inclusive bounds), so a forecast can be fitted on the past and checked on later traffic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dsp.config.snapshot import Snapshot
from dsp.events.schema import (
    BidEvent,
    ClickEvent,
    Event,
    LossEvent,
    SampleEvent,
    WinEvent,
    kind_of,
)
from dsp.offline.forecast.market import Outcomes, TruthMarket
from dsp.offline.forecast.simulate import BidRecord, Row, simulate

DayRange = tuple[int, int] | None
P_INTENT, PD = "p_intent", "pd"  # the value formula's named scores (models/*/config.json "score")
_US_PER_DAY = 86_400 * 1_000_000


def _glob(root: Path, kind: str) -> str | None:
    files = list((root / f"kind={kind}").glob("**/*.parquet"))
    return str(root / f"kind={kind}" / "**" / "*.parquet") if files else None


def _where_days(days: DayRange) -> str:
    if days is None:
        return ""
    return f" AND ts_us >= {days[0] * _US_PER_DAY} AND ts_us < {(days[1] + 1) * _US_PER_DAY}"


def _read(con: Any, sql: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = con.execute(sql).fetchall()
    return rows


def read_log(root: Path, *, fit_days: DayRange = None, replay_days: DayRange = None
             ) -> tuple[list[Row], Outcomes, dict[str, float]]:
    """The replayable sample, the fitted-on outcomes, and each campaign's pacing λ where the
    replay starts (the λ of its first logged bid in the replay window, else its last before)."""
    import duckdb

    con = duckdb.connect()
    rows: list[Row] = []
    sample = _glob(root, "sample")
    if sample:
        for ts, exchange, body, scores, known, rate in _read(con, f"""
                SELECT ts_us, exchange, body, scores, user_known, sample_rate FROM (
                  SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY ts_us) AS n
                  FROM read_parquet('{sample}', hive_partitioning = true, union_by_name = true))
                WHERE n = 1 AND NOT coalesce(test, false){_where_days(replay_days)}
                ORDER BY ts_us, event_id"""):
            sc = {str(k): float(v) for k, v in dict(scores).items()} if scores else {}
            rows.append(Row(int(ts), str(exchange), bytes(body), sc.get(P_INTENT, 0.0),
                            sc.get(PD, float("nan")), bool(known),
                            1.0 / float(rate) if rate else 1.0, sc))
    return rows, _outcomes(con, root, fit_days), _start_lambdas(con, root, replay_days)


def _start_lambdas(con: Any, root: Path, days: DayRange) -> dict[str, float]:
    bid = _glob(root, "bid")
    if bid is None:
        return {}
    start = days[0] * _US_PER_DAY if days is not None else 0
    got = _read(con, f"""
        SELECT campaign, arg_min(pacing_lambda, ts_us) FILTER (WHERE ts_us >= {start}),
               arg_max(pacing_lambda, ts_us) FILTER (WHERE ts_us < {start})
        FROM read_parquet('{bid}', hive_partitioning = true, union_by_name = true)
        WHERE NOT coalesce(test, false) GROUP BY campaign""")
    out: dict[str, float] = {}
    for campaign, first_in, last_before in got:
        lam = first_in if first_in is not None else last_before
        if lam is not None:
            out[str(campaign)] = float(lam)
    return out


def _outcomes(con: Any, root: Path, days: DayRange) -> Outcomes:
    bid = _glob(root, "bid")
    empty = Outcomes([], [], [], np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0),
                     np.zeros(0, dtype=bool), np.zeros(0), np.zeros(0, dtype=bool),
                     np.zeros(0, dtype=np.int64))
    if bid is None:
        return empty

    def once(kind: str, cols: str) -> str:
        g = _glob(root, kind)
        if g is None:
            return f"(SELECT NULL::VARCHAR AS bid_id, {cols} WHERE false)"
        names = ", ".join(c.split(" AS ")[-1].split("::")[0] for c in cols.split(", "))
        return (f"(SELECT bid_id, {names} FROM (SELECT *, row_number() OVER (PARTITION BY event_id"
                f" ORDER BY ts_us) AS n FROM read_parquet('{g}', hive_partitioning = true,"
                f" union_by_name = true)) WHERE n = 1)")

    win = once("win", "NULL::BIGINT AS price_micros")
    bill = once("bill", "NULL::BIGINT AS price_micros")
    loss = once("loss", "NULL::BIGINT AS loss_reason")
    click = once("click", "NULL::VARCHAR AS click_id")
    got = _read(con, f"""
        WITH b AS (SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY event_id
                     ORDER BY ts_us) AS n FROM read_parquet('{bid}', hive_partitioning = true,
                     union_by_name = true))
                   WHERE n = 1 AND NOT coalesce(test, false){_where_days(days)})
        SELECT b.campaign, b.exchange, coalesce(b.w, 0), coalesce(b.h, 0), b.bid_price_micros,
               coalesce(bl.price_micros, wn.price_micros) AS price,
               (bl.bid_id IS NOT NULL OR wn.bid_id IS NOT NULL) AS won,
               ls.bid_id IS NOT NULL AS lost, ck.bid_id IS NOT NULL AS clicked,
               coalesce(b.scores['p_intent'], 0.0), b.ts_us
        FROM b
        LEFT JOIN {win} wn ON wn.bid_id = b.bid_id
        LEFT JOIN {bill} bl ON bl.bid_id = b.bid_id
        LEFT JOIN {loss} ls ON ls.bid_id = b.bid_id
        LEFT JOIN {click} ck ON ck.bid_id = b.bid_id
        ORDER BY b.ts_us""")
    if not got:
        return empty
    won = np.array([bool(g[6]) for g in got])
    return Outcomes(
        campaign=[str(g[0]) for g in got], exchange=[str(g[1]) for g in got],
        size=[(int(g[2]), int(g[3])) for g in got],
        bid_micros=np.array([float(g[4]) for g in got]), won=won,
        price_micros=np.array([float(g[5]) if g[5] is not None else np.nan for g in got]),
        clicked=np.array([bool(g[8]) for g in got]),
        p_intent=np.array([float(g[9]) if g[9] is not None else 0.0 for g in got]),
        resolved=won | np.array([bool(g[7]) for g in got]),
        ts_us=np.array([int(g[10]) for g in got], dtype=np.int64))


def write_events(root: Path, events: Sequence[Event], part: str) -> int:
    """Write ``events`` in the log's layout (one file per kind and hour, named ``part-<part>``),
    through the sink's own writer (:func:`dsp.offline.eventlog.parquet.write_events`)."""
    from dsp.offline.eventlog.parquet import partition_of
    from dsp.offline.eventlog.parquet import write_events as write_file

    groups: dict[tuple[str, str, int], list[Event]] = {}
    for e in events:
        date, hour = partition_of(e.ts_us)
        groups.setdefault((kind_of(e), date, hour), []).append(e)
    for (kind, date, hour), group in sorted(groups.items()):
        write_file(root, kind, date, hour, f"part-{part}", group)
    return len(groups)


def log_policy(snap: Snapshot, rows: Sequence[Row], price_micros: npt.NDArray[np.float64],
               clicks: npt.NDArray[np.int8], out: Path, *, initial_lambda: dict[str, float],
               part: str) -> int:
    """Serve ``rows`` with ``snap`` on a market whose prices and clicks are known (a converted
    log, or a synthetic one in tests) and write what a bidder would have logged: a ``sample``
    per row, a ``bid`` per bid, then a ``win`` (paying the market price, billing) or a ``loss``
    (no price: censored), and a ``click`` on clicked wins. Returns the number of events."""
    recs: list[BidRecord] = []
    simulate(snap, rows, TruthMarket(price_micros, clicks), record=recs,
             initial_lambda=initial_lambda)
    currency = {c.id: c.currency for c in snap.campaigns}
    events: list[Event] = [
        SampleEvent(ts_us=r.ts_us, exchange=r.exchange, sample_id=f"{part}-s{i}", body=r.body,
                    sample_rate=1.0 / r.weight, outcome="nobid", user_known=r.user_known,
                    scores={P_INTENT: r.p_intent, PD: r.pd})
        for i, r in enumerate(rows)]
    for n, rec in enumerate(recs):
        ts, bid_id, cur = rows[rec.row].ts_us, f"{part}-b{n}", currency[rec.campaign]
        bid_price = math.ceil(rec.bid_micros)
        ex, cid = rec.exchange, rec.campaign
        events.append(BidEvent(ts_us=ts, exchange=ex, campaign=cid, bid_id=bid_id,
                               request_id=f"{part}-s{rec.row}", imp_id="1",
                               creative="", format="banner", w=rec.size[0], h=rec.size[1],
                               bid_cpm_micros=round(rec.bid_micros * 1000),
                               bid_price_micros=bid_price, currency=cur, auction_type=2,
                               pacing_lambda=rec.pacing_lambda,
                               scores={P_INTENT: rec.p_intent}))
        if rec.bid_micros >= price_micros[rec.row]:
            events.append(WinEvent(ts_us=ts + 1, exchange=ex, campaign=cid, bid_id=bid_id,
                                   price_micros=int(price_micros[rec.row]),
                                   currency=cur, bid_price_micros=bid_price, bills=True))
            if clicks[rec.row]:
                events.append(ClickEvent(ts_us=ts + 2, exchange=ex, campaign=cid,
                                         bid_id=bid_id))
        else:
            events.append(LossEvent(ts_us=ts + 1, exchange=ex, campaign=cid, bid_id=bid_id,
                                    bid_price_micros=bid_price,
                                    currency=cur))
    write_events(out, events, part)
    return len(events)
