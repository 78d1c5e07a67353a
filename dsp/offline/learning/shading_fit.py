"""Fit the bidder's learned first-price shading from its own event log.

    dsp models shading --events events/ --out bidder_configs/learned/shading.json

For every (exchange, format, currency) with enough first-price bids (``min_bids``), the bid
landscape is fitted to the logged outcomes (:func:`dsp.offline.learning.landscape.fit_landscape`):
a win says market price ≤ bid; a loss with ``${AUCTION_MIN_TO_WIN}`` gives the price exactly; a
loss without it, or a bid with no notice at all, says market price > bid. The table then holds the
surplus-maximising bid for a grid of values (the unshaded bid ``bid_cpm_micros / shading``), per
value-quantile bucket. Test traffic and exploration bids (priced apart from value) are left out.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from dsp.config.learned import ShadingFile, ShadingTable, ValueBucket
from dsp.offline.learning.landscape import fit_landscape

VALUE_POINTS = 64
GRID_POINTS = 400

QUERY = """
SELECT exchange, format, currency, bid_cpm_micros,
       CASE WHEN shading > 0 THEN bid_cpm_micros / shading ELSE bid_cpm_micros END AS value_cpm,
       won, CASE WHEN lost AND min_to_win_micros >= 0 THEN min_to_win_micros * 1000 END AS exact_cpm
FROM bid_outcomes
WHERE NOT test AND NOT explore AND auction_type = 1
"""


def fit_tables(con: duckdb.DuckDBPyConnection, *, min_bids: int = 2000,
               buckets: int = 4) -> list[ShadingTable]:
    rows = con.sql(QUERY).fetchall()
    groups: dict[tuple[str, str, str], list[tuple[float, float, bool, float]]] = {}
    for ex, fmt, cur, bid, value, won, exact in rows:
        groups.setdefault((ex, fmt, cur), []).append(
            (float(bid), float(value), bool(won), float("nan") if exact is None else float(exact)))
    tables = []
    for (ex, fmt, cur), obs in sorted(groups.items()):
        if len(obs) < min_bids:
            continue
        arr = np.asarray(obs, dtype=np.float64)
        bids, values, won, exact = arr[:, 0], arr[:, 1], arr[:, 2] > 0, arr[:, 3]
        top = float(np.nanmax(np.concatenate([bids, exact[~np.isnan(exact)], [1.0]])))
        grid = np.linspace(0.0, top * 1.05, GRID_POINTS)
        n_buckets = buckets if len(obs) >= buckets * min_bids // 2 else 1
        edges = (np.quantile(values, np.linspace(0, 1, n_buckets + 1)[1:-1])
                 if n_buckets > 1 else np.asarray([]))
        k = np.searchsorted(edges, values)
        out_buckets = []
        for b in range(n_buckets):
            sel = k == b
            land = fit_landscape(bids[sel], won[sel], grid, exact=exact[sel])
            hi = float(values[sel].max()) if sel.any() else top
            vgrid = np.linspace(0.0, hi * 1.2, VALUE_POINTS)
            table = land.bid_table(vgrid)
            out_buckets.append(ValueBucket([round(v) for v in vgrid], [round(x) for x in table]))
        tables.append(ShadingTable(exchange=ex, format=fmt, currency=cur,
                                   edges_cpm_micros=[round(e) for e in edges], buckets=out_buckets,
                                   observations=len(obs)))
    return tables


def write_shading(tables: list[ShadingTable], out: Path, source: str) -> None:
    import msgspec

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(ShadingFile(tables=tables, source=source))))
    tmp.replace(out)
