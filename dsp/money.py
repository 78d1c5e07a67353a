"""Money is integer micros: 1 currency unit = 1_000_000 micros. Conversions happen at the edges.

CPM prices (per 1000 impressions) in OpenRTB are floats in currency units; one impression costs
``cpm / 1000``. So ``cpm_to_micros_per_imp(2.5) == 2500`` and ``micros_per_imp_to_cpm(2500) == 2.5``.
"""

from __future__ import annotations

import math

MICROS_PER_UNIT = 1_000_000


def round_half_away(x: float) -> int:
    """Round to the nearest integer, halves away from zero (2.5 -> 3, -2.5 -> -3).

    Python's ``round`` rounds halves to even; money conversions here must not depend on parity.
    """
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def units_to_micros(amount: float) -> int:
    """Currency units (float) to integer micros, rounded half away from zero."""
    return round_half_away(amount * MICROS_PER_UNIT)


def micros_to_units(micros: int) -> float:
    return micros / MICROS_PER_UNIT


def cpm_to_micros_per_imp(cpm: float) -> int:
    """A CPM price in currency units to the cost of one impression in micros."""
    return round_half_away(cpm * 1000.0)


def micros_per_imp_to_cpm(micros: int) -> float:
    """Cost of one impression in micros to a CPM price in currency units."""
    return micros / 1000.0


def cpm_micros_to_imp_micros(cpm_micros: int) -> int:
    """A CPM in micros (price of 1000 imps) to one impression's micros (floor division)."""
    return cpm_micros // 1000
