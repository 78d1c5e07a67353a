"""The event log in DuckDB: one view per kind (each event once) and ``bid_outcomes``.

    con = open_log(Path("events"))
    con.sql("SELECT campaign, count(*) FROM bid_outcomes WHERE won GROUP BY 1").fetchall()

Views (over ``root/kind=<kind>/**/*.parquet``; a kind with no file yet is an empty view with the
same columns):

* ``ev_<kind>`` — the kind's columns, one row per ``event_id`` (the first by ``ts_us``);
* ``bid_outcomes`` — one row per bid (the ``ev_bid`` columns) with its outcome: ``won``,
  ``clearing_price_micros`` (the bill's price, else the win's), ``spend_micros`` (what the ledger
  committed on the billing notice), ``billed``, ``impression`` (the exchange's billing notice
  arrived: the bill, or the win where the exchange bills on win), ``clicked`` + ``click_id``, ``submitted``,
  ``approved``, ``funded`` + ``funded_micros``, ``lost`` + ``loss_reason`` + ``min_to_win_micros``,
  ``day`` (UTC date of the bid).

Outcomes whose bid is not in the log (the bid event was dropped, or belongs to a day not loaded)
are not in ``bid_outcomes``; ``ev_win`` etc. still have them.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from dsp.events.schema import KINDS
from dsp.offline.eventlog.parquet import arrow_schema

BID_OUTCOMES = """
CREATE OR REPLACE VIEW bid_outcomes AS
SELECT b.*,
       CAST(to_timestamp(b.ts_us / 1e6) AT TIME ZONE 'UTC' AS DATE) AS day,
       (w.bid_id IS NOT NULL OR bl.bid_id IS NOT NULL) AS won,
       coalesce(bl.price_micros, w.price_micros) AS clearing_price_micros,
       coalesce(w.committed_micros, 0) + coalesce(bl.committed_micros, 0) AS spend_micros,
       bl.bid_id IS NOT NULL AS billed,
       (bl.bid_id IS NOT NULL OR coalesce(w.bills, false)) AS impression,
       c.bid_id IS NOT NULL AS clicked,
       c.click_id AS click_id,
       cs.bid_id IS NOT NULL AS submitted,
       ca.bid_id IS NOT NULL AS approved,
       cf.bid_id IS NOT NULL AS funded,
       coalesce(cf.amount_micros, 0) AS funded_micros,
       l.bid_id IS NOT NULL AND w.bid_id IS NULL AND bl.bid_id IS NULL AS lost,
       l.loss_reason AS loss_reason,
       l.min_to_win_micros AS min_to_win_micros
FROM ev_bid b
LEFT JOIN ev_win w ON w.bid_id = b.bid_id
LEFT JOIN ev_bill bl ON bl.bid_id = b.bid_id
LEFT JOIN ev_loss l ON l.bid_id = b.bid_id
LEFT JOIN ev_click c ON c.bid_id = b.bid_id
LEFT JOIN (SELECT * FROM ev_conversion WHERE stage = 'submitted') cs ON cs.bid_id = b.bid_id
LEFT JOIN (SELECT * FROM ev_conversion WHERE stage = 'approved') ca ON ca.bid_id = b.bid_id
LEFT JOIN (SELECT * FROM ev_conversion WHERE stage = 'funded') cf ON cf.bid_id = b.bid_id
"""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def open_log(root: Path, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views above over the files under ``root``."""
    con = con if con is not None else duckdb.connect()
    for kind in KINDS:
        base = root / f"kind={kind}"
        if base.exists() and any(base.rglob("*.parquet")):
            source = (f"read_parquet({_quote(str(base) + '/**/*.parquet')}, "
                      "hive_partitioning = false, union_by_name = true)")
        else:
            con.register(f"_empty_{kind}", arrow_schema(kind).empty_table())
            source = f"_empty_{kind}"
        con.execute(f"""CREATE OR REPLACE VIEW ev_{kind} AS
            SELECT * FROM {source}
            QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ts_us) = 1""")
    con.execute(BID_OUTCOMES)
    return con
