"""Users from JSON lines (``dsp features load``): parse, validate, fill defaults, derive ratios.

One line per user::

    {"id": "user-123", "features": {"late_night_share": 0.3, "lenders_applied_30d": 2,
                                    "limit_bal": 50000, "pay_0": 1, "bill_amt1": 42000}}

* ``id``: non-empty string. ``features``: mapping of contract feature names to finite numbers
  within the declared bounds (``FeatureSpec.lo``/``hi``); unknown names are errors (typos must
  not pass silently); absent features take the contract defaults.
* If any credit-history feature is given, ``has_credit_history`` defaults to 1 and the derived
  credit features (utilization, pay_ratio_1, max_delinquency_6m, delinquent_months_6m) are
  computed from the given columns unless given explicitly.

:func:`parse_row` raises :class:`RowError` with a message naming the field; callers add the line
number.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from dsp.features.contract import (
    CREDIT_FEATURES,
    DEFAULTS,
    FEATURE_INDEX,
    FEATURES,
    PAY_STATUS_FEATURES,
    FeatureKind,
)

FloatArray = npt.NDArray[np.float32]

_DERIVED = ("utilization", "pay_ratio_1", "max_delinquency_6m", "delinquent_months_6m")
_INTEGRAL_KINDS = (FeatureKind.COUNT, FeatureKind.ORDINAL, FeatureKind.BINARY, FeatureKind.STATUS)


class RowError(ValueError):
    """A JSON line that cannot be loaded; the message names the offending field."""


class UserRow(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    features: dict[str, Any] = msgspec.field(default_factory=dict)


_DECODER = msgspec.json.Decoder(UserRow)


def parse_row(line: bytes | str) -> tuple[str, FloatArray]:
    """(raw user id, contract-order float32 vector) or RowError."""
    try:
        row = _DECODER.decode(line)
    except msgspec.ValidationError as exc:
        raise RowError(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise RowError(f"invalid JSON: {exc}") from exc
    if not row.id.strip():
        raise RowError("`$.id` must be a non-empty string")
    vec = np.array(DEFAULTS, dtype=np.float64)
    for name, value in row.features.items():
        idx = FEATURE_INDEX.get(name)
        if idx is None:
            raise RowError(f"`$.features.{name}`: unknown feature (not in the feature contract)")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RowError(f"`$.features.{name}`: expected a number, got {type(value).__name__}")
        spec = FEATURES[idx]
        fval = float(value)
        if not math.isfinite(fval) or not spec.lo <= fval <= spec.hi:
            raise RowError(f"`$.features.{name}`: {value} is outside [{spec.lo:g}, {spec.hi:g}]")
        if spec.kind in _INTEGRAL_KINDS and not fval.is_integer():
            raise RowError(f"`$.features.{name}`: expected a whole number ({spec.kind.value})")
        vec[idx] = fval
    given = set(row.features)
    if given & set(CREDIT_FEATURES) - {"has_credit_history"}:
        _fill_credit(vec, given)
    if vec[FEATURE_INDEX["lenders_applied_30d"]] > vec[FEATURE_INDEX["lenders_applied_90d"]]:
        raise RowError("`$.features.lenders_applied_30d` exceeds lenders_applied_90d")
    return row.id, vec.astype(np.float32)


def _fill_credit(vec: npt.NDArray[np.float64], given: set[str]) -> None:
    def v(name: str) -> float:
        return float(vec[FEATURE_INDEX[name]])

    if "has_credit_history" not in given:
        vec[FEATURE_INDEX["has_credit_history"]] = 1.0
    pays = [v(p) for p in PAY_STATUS_FEATURES]
    derived = {
        "utilization": v("bill_amt1") / max(v("limit_bal"), 1.0),
        "pay_ratio_1": v("pay_amt1") / max(v("bill_amt1"), 1.0),
        "max_delinquency_6m": max(pays),
        "delinquent_months_6m": float(sum(p > 0 for p in pays)),
    }
    for name in _DERIVED:
        if name not in given:
            spec = FEATURES[FEATURE_INDEX[name]]
            vec[FEATURE_INDEX[name]] = min(max(derived[name], spec.lo), spec.hi)
