"""The feature contract: the one declared list of user features shared by the store and the models.

Every user record in Redis is a float32 vector in :data:`FEATURE_NAMES` order; every model config
names the features it reads (a subset, in its own order) and is rejected at load time when it names
a feature missing from this list or one in :data:`PROHIBITED_FEATURES`.

Two groups of features:

* **behavioural** (synthetic world, see ``dsp.offline.population``): signals lenders report as
  predictive of loan intent and default — late-night activity, device tier and memory, Wi-Fi
  switching, loan-app installs, multi-lending, recent applications;
* **credit history** (UCI Taiwan credit-default columns, Yeh & Lien 2009): credit limit, six
  months of repayment status, bill and payment amounts, and four derived ratios/counts, plus a
  ``has_credit_history`` flag (0 for thin-file users, whose credit columns hold the defaults).

Excluded on purpose:

* ``SEX``, ``MARRIAGE``, ``AGE`` — protected characteristics under ECOA / Regulation B; they are
  in :data:`PROHIBITED_FEATURES` so no model can use them.
* ``EDUCATION`` — not a protected class, but a documented proxy risk (correlates with age and
  national origin) and it adds < 0.002 held-out AUC to the risk model on the Taiwan data; left
  out of the contract (and therefore out of every model). See models/risk/EVALUATION.md.

Defaults are what an unknown user (no record in Redis) gets: typical behavioural values (close to
the synthetic population's medians; no recent lending activity) and "no credit history" for the
credit block. Scored by the shipped models, the defaults give pd ≈ 0.22 (the Taiwan base rate)
and p_intent ≈ 1 %. Changing names, order or meaning here
requires bumping ``dsp.features.keys.SCHEMA_VERSION`` (a test pins the fingerprint).
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

import msgspec
import numpy as np
import numpy.typing as npt


class FeatureKind(StrEnum):
    """How a value is interpreted (all are stored as float32)."""

    FRACTION = "fraction"   # in [0, 1]
    COUNT = "count"         # non-negative integer
    ORDINAL = "ordinal"     # small ordered integer code
    BINARY = "binary"       # 0 or 1
    AMOUNT = "amount"       # real number (money or GB or rate), may be negative for bill amounts
    STATUS = "status"       # Taiwan repayment status code, -2..9


class FeatureSpec(msgspec.Struct, frozen=True):
    """One feature: its name, kind, the value unknown users get, its unit and meaning.

    ``lo``/``hi`` bound accepted values when users are loaded from files (inclusive).
    """

    name: str
    kind: FeatureKind
    default: float
    unit: str
    description: str
    lo: float = -1e12
    hi: float = 1e12
    group: str = "behaviour"  # "behaviour" | "credit"


_PAY_STATUS_DOC = ("repayment status {m} (Taiwan code: -2 no consumption, -1 paid duly, "
                   "0 revolving, k = k months late)")

_BEHAVIOUR: tuple[FeatureSpec, ...] = (
    FeatureSpec("late_night_share", FeatureKind.FRACTION, 0.10, "fraction",
                "share of app sessions between 00:00 and 05:00 local time, last 30 days", 0.0, 1.0),
    FeatureSpec("device_tier", FeatureKind.ORDINAL, 1.0, "tier",
                "device price tier: 0 low, 1 mid, 2 high", 0.0, 2.0),
    FeatureSpec("device_memory_gb", FeatureKind.AMOUNT, 4.0, "GB",
                "device RAM", 0.5, 64.0),
    FeatureSpec("wifi_switches_per_day", FeatureKind.AMOUNT, 2.0, "1/day",
                "distinct Wi-Fi network changes per day, 30-day average", 0.0, 100.0),
    FeatureSpec("loan_app_installs", FeatureKind.COUNT, 1.0, "apps",
                "lending apps installed on the device", 0.0, 200.0),
    FeatureSpec("lenders_applied_30d", FeatureKind.COUNT, 0.0, "lenders",
                "distinct lenders applied to in the last 30 days", 0.0, 200.0),
    FeatureSpec("lenders_applied_90d", FeatureKind.COUNT, 0.0, "lenders",
                "distinct lenders applied to in the last 90 days (>= 30-day count)", 0.0, 500.0),
    FeatureSpec("applications_7d", FeatureKind.COUNT, 0.0, "applications",
                "credit applications submitted in the last 7 days", 0.0, 200.0),
)

_PAY_MONTHS = ("pay_0", "pay_2", "pay_3", "pay_4", "pay_5", "pay_6")

_CREDIT: tuple[FeatureSpec, ...] = (
    FeatureSpec("has_credit_history", FeatureKind.BINARY, 0.0, "flag",
                "1 if the credit-history block below is real, 0 if it holds defaults", 0.0, 1.0,
                "credit"),
    FeatureSpec("limit_bal", FeatureKind.AMOUNT, 0.0, "NT$",
                "amount of given credit (individual and family)", 0.0, 1e8, "credit"),
    *(FeatureSpec(name, FeatureKind.STATUS, -2.0, "status code",
                  _PAY_STATUS_DOC.format(m=f"{i} month(s) before the reference month"
                                         if i else "in the reference month"),
                  -2.0, 9.0, "credit")
      for i, name in enumerate(_PAY_MONTHS)),
    *(FeatureSpec(f"bill_amt{i}", FeatureKind.AMOUNT, 0.0, "NT$",
                  f"bill statement amount {i} month(s) back", -1e8, 1e8, "credit")
      for i in range(1, 7)),
    *(FeatureSpec(f"pay_amt{i}", FeatureKind.AMOUNT, 0.0, "NT$",
                  f"amount paid {i} month(s) back", 0.0, 1e8, "credit")
      for i in range(1, 7)),
    FeatureSpec("utilization", FeatureKind.AMOUNT, 0.0, "ratio",
                "bill_amt1 / limit_bal (0 without history)", -100.0, 100.0, "credit"),
    FeatureSpec("pay_ratio_1", FeatureKind.AMOUNT, 0.0, "ratio",
                "pay_amt1 / max(bill_amt1, 1)", 0.0, 1e8, "credit"),
    FeatureSpec("max_delinquency_6m", FeatureKind.STATUS, -2.0, "status code",
                "max of pay_0..pay_6", -2.0, 9.0, "credit"),
    FeatureSpec("delinquent_months_6m", FeatureKind.COUNT, 0.0, "months",
                "number of months among pay_0..pay_6 with status > 0", 0.0, 6.0, "credit"),
)

FEATURES: tuple[FeatureSpec, ...] = _BEHAVIOUR + _CREDIT
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
N_FEATURES: int = len(FEATURES)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}
BEHAVIOUR_FEATURES: tuple[str, ...] = tuple(f.name for f in _BEHAVIOUR)
CREDIT_FEATURES: tuple[str, ...] = tuple(f.name for f in _CREDIT)
PAY_STATUS_FEATURES: tuple[str, ...] = _PAY_MONTHS

#: Characteristics credit marketing may not turn on (ECOA / Regulation B: sex, marital status,
#: race, colour, religion, national origin, age; plus receipt of public assistance) and the
#: aliases under which they show up in data sets (Taiwan: SEX, MARRIAGE, AGE). Compared
#: case-insensitively. A model config naming any of these fails to load and to train.
PROHIBITED_FEATURES: frozenset[str] = frozenset({
    "sex", "gender", "is_female", "is_male",
    "marriage", "marital_status", "married", "is_married",
    "age", "age_years", "age_band", "birth_year", "date_of_birth", "dob", "year_of_birth",
    "race", "ethnicity", "color", "colour",
    "religion", "national_origin", "nationality", "country_of_birth", "citizenship",
    "public_assistance",
})


def is_prohibited(name: str) -> bool:
    """True if ``name`` (any case) is a protected characteristic or a known alias of one."""
    return name.strip().lower() in PROHIBITED_FEATURES


# Defaults vector. Kept private and copied on access so callers cannot mutate the shared one.
_DEFAULTS = np.array([f.default for f in FEATURES], dtype=np.float32)
_DEFAULTS.setflags(write=False)
DEFAULTS: npt.NDArray[np.float32] = _DEFAULTS  # read-only; np.array(DEFAULTS) for a mutable copy


def contract_fingerprint() -> str:
    """Short hash of names, kinds and defaults, in order; pinned per schema version by a test."""
    text = "|".join(f"{f.name}:{f.kind.value}:{f.default!r}" for f in FEATURES)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

