"""Parameters learned from the event log, read with the config (``bidder_configs/learned/``).

Written by commands, never by hand, and used only where a campaign or exchange opts in:

* ``learned/funnel.yaml`` (``dsp models funnel``): per campaign, ``apply_rate`` and ``p_approve``
  re-estimated from logged clicks, applications and approvals, shrunk toward the configured
  priors. A campaign with ``learning: {funnel: true}`` prices with them.
* ``learned/shading.json`` (``dsp models shading``): per (exchange, format, currency), the bid
  that maximises expected surplus ``(value − bid) · P(win | bid)`` for a grid of values, from a
  bid landscape fitted to censored wins and losses. Used on first-price auctions when the
  exchange says ``shading: learned`` or the campaign says ``learning: {shading: learned}``.

:meth:`ShadingTable.bid_for` is what the bid path calls: a bisect and a linear interpolation,
never above the value, in integer CPM micros.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Annotated

import msgspec
from msgspec import Meta

from dsp.money import round_half_away

Probability = Annotated[float, Meta(ge=0.0, le=1.0)]


class FunnelEstimate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    apply_rate: Probability
    p_approve: Probability
    impressions: int = 0
    clicks: int = 0
    applications: int = 0
    approvals: int = 0
    funded: int = 0


class FunnelFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    campaigns: dict[str, FunnelEstimate] = {}
    source: str = ""  # what it was estimated from (events directory, dates)


class ValueBucket(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Optimal bids for values in this bucket: ``values_cpm_micros`` ascending, same length."""

    values_cpm_micros: list[int]
    bids_cpm_micros: list[int]


class ShadingTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One landscape's bid table. ``edges_cpm_micros`` split values into ``len(edges) + 1``
    buckets (the landscape may depend on the value: survival regression on its bucket)."""

    exchange: str
    format: str
    currency: str
    edges_cpm_micros: list[int] = []
    buckets: list[ValueBucket]
    observations: int = 0

    def bid_for(self, value_cpm_micros: int) -> int:
        """The surplus-maximising bid for ``value_cpm_micros`` (never above it)."""
        bucket = self.buckets[min(bisect_right(self.edges_cpm_micros, value_cpm_micros),
                                  len(self.buckets) - 1)]
        xs, ys = bucket.values_cpm_micros, bucket.bids_cpm_micros
        if not xs:
            return value_cpm_micros
        j = bisect_right(xs, value_cpm_micros)
        if j == 0:
            bid = ys[0] * value_cpm_micros // xs[0] if xs[0] > 0 else 0
        elif j >= len(xs):
            bid = ys[-1] * value_cpm_micros // xs[-1] if xs[-1] > 0 else 0  # scale the last point
        else:
            x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
            bid = y0 + round_half_away((y1 - y0) * (value_cpm_micros - x0) / (x1 - x0))
        return max(0, min(bid, value_cpm_micros))


class ShadingFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    tables: list[ShadingTable] = []
    source: str = ""


class Learned(msgspec.Struct, frozen=True):
    """What the snapshot keeps: funnel estimates by campaign id, shading tables by
    (exchange, format, currency)."""

    funnel: dict[str, FunnelEstimate]
    shading: dict[tuple[str, str, str], ShadingTable]

    @classmethod
    def empty(cls) -> Learned:
        return cls({}, {})

    @classmethod
    def of(cls, funnel: FunnelFile | None, shading: ShadingFile | None) -> Learned:
        return cls(dict(funnel.campaigns) if funnel else {},
                   {(t.exchange, t.format, t.currency): t for t in shading.tables} if shading else {})
