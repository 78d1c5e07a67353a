"""A synthetic population with a documented ground truth (numpy only; deterministic in a seed).

Why synthetic: no public data carries lending-intent labels. The world below is built from the
signals lenders report as predictive (late-night activity, device tier and memory, Wi-Fi
switching, loan-app installs, multi-lending, recent applications) and every synthetic user is
anchored on a *real* UCI Taiwan row, so credit history and the default outcome are real.

Ground-truth process for user ``i`` (all draws from ``SeedSequence([seed, chunk])``):

1. **Anchor**: a Taiwan row ``r`` drawn uniformly from the given pool (training users draw from
   the training split, held-out users from the test split). ``r`` supplies the credit block,
   the realised default label, and SEX/AGE (used *only* by the world and the fairness report).
2. **Thin file**: with probability 0.40 if age < 25, 0.25 if 25-34, else 0.12, the lender does not
   see the credit block: ``has_credit_history = 0`` and the credit features take their defaults.
3. **Latents** (unobserved): financial stress ``s = 0.55·z_delinquency + 0.35·z_utilisation +
   0.6·N(0,1)`` from the (possibly hidden) Taiwan row; being "in market" for credit
   ``m ~ Bernoulli(sigmoid(-1.6 + 0.9·s))``; youth ``y = clip((35 - age) / 15, -1, 1)``.
4. **Behaviour** given the latents: device tier from income (log limit) plus noise; memory from the
   tier; late-night share ~ Beta with mean rising with youth and stress; Wi-Fi switches ~ Gamma
   rising with stress; loan-app installs ~ Poisson(0.4 + 0.8·s⁺ + 2.2·m); lenders applied in 90
   days ~ Poisson(0.15 + 0.5·s⁺ + 1.8·m), of which those in the last 30 days ~ Binomial(n90,
   0.35 + 0.4·m); applications in 7 days ~ Poisson(0.03 + 0.7·m).
5. **Intent truth** is a fixed function of the *observed* features only (:func:`true_intent`), so
   the best achievable model is the truth itself and its AUC is the oracle AUC. The per-impression
   probability of a loan application averages about 2 %, from ~0.3 % for settled users to > 20 %
   for active multi-lenders. Labels are one Bernoulli(p) impression per user.
6. **Risk reference** (``pd_ref``): the Taiwan default rate of the anchor row's max-delinquency
   bucket (a coarse, real-data reference, not an oracle); thin-file users get the base rate.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.features.contract import CREDIT_FEATURES, DEFAULTS, FEATURE_INDEX, N_FEATURES
from dsp.offline.taiwan import TaiwanData

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CHUNK_USERS = 100_000  # generation unit; fixed so results do not depend on the caller's batching
_CREDIT_START = FEATURE_INDEX[CREDIT_FEATURES[0]]
_I = FEATURE_INDEX


class Population:
    """A block of users: ids, contract feature rows, truths and the protected attributes."""

    __slots__ = ("age", "defaulted", "features", "ids", "pd_ref", "sex", "taiwan_row",
                 "true_intent")

    def __init__(self, ids: list[str], features: FloatArray, true_intent: F64, pd_ref: F64,
                 defaulted: IntArray, taiwan_row: IntArray, sex: IntArray, age: IntArray) -> None:
        self.ids = ids
        self.features = features
        self.true_intent = true_intent
        self.pd_ref = pd_ref
        self.defaulted = defaulted
        self.taiwan_row = taiwan_row
        self.sex = sex
        self.age = age

    def __len__(self) -> int:
        return len(self.ids)


def _sigmoid(x: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-x))
    return out


def true_intent(features: npt.NDArray[np.floating]) -> F64:
    """Ground-truth per-impression application probability from contract-order features."""
    x = np.asarray(features, dtype=np.float64)

    def f(name: str) -> F64:
        col: F64 = x[:, _I[name]]
        return col

    l30, l90 = f("lenders_applied_30d"), f("lenders_applied_90d")
    hist = f("has_credit_history")
    util = np.clip(f("utilization"), 0.0, 1.5)
    delinquent = np.clip(f("max_delinquency_6m"), 0.0, 3.0)
    logit = (-5.50
             + 0.85 * np.log1p(l30)
             + 0.30 * np.log1p(np.maximum(l90 - l30, 0.0))
             + 0.60 * np.minimum(f("applications_7d"), 3.0)
             + 0.35 * np.log1p(f("loan_app_installs"))
             + 1.60 * (f("late_night_share") - 0.10)
             + 0.06 * np.minimum(f("wifi_switches_per_day"), 10.0)
             - 0.20 * (f("device_tier") == 2.0)
             + hist * (0.45 * util + 0.22 * delinquent - 0.10 * (f("limit_bal") >= 300_000))
             + (1.0 - hist) * 0.25
             + 0.40 * np.log1p(l30) * (util > 0.8) * hist)
    return _sigmoid(logit)


def _pd_reference(data: TaiwanData) -> F64:
    """Default rate per max-delinquency bucket (-2, -1, 0, 1, 2, 3+) over all Taiwan rows."""
    bucket = np.clip(data.credit[:, CREDIT_FEATURES.index("max_delinquency_6m")], -2, 3).astype(int) + 2
    rates = np.bincount(bucket, weights=data.label, minlength=6) / np.maximum(
        np.bincount(bucket, minlength=6), 1)
    ref: F64 = rates[bucket]
    return ref


def generate(n: int, seed: int, data: TaiwanData, pool: IntArray | None = None, *,
             start: int = 0, id_prefix: str | None = None) -> Population:
    """Users ``start .. start+n-1`` of the population for ``seed`` (chunks are independent)."""
    pool_idx = np.arange(len(data)) if pool is None else np.asarray(pool)
    prefix = id_prefix if id_prefix is not None else f"syn{seed}-"
    parts: list[Population] = []
    first_chunk, last_chunk = start // CHUNK_USERS, (start + n - 1) // CHUNK_USERS
    base_pd = float(data.label.mean())
    pd_ref_all = _pd_reference(data)
    for chunk in range(first_chunk, last_chunk + 1):
        block = _generate_chunk(chunk, seed, data, pool_idx, pd_ref_all, base_pd, prefix)
        lo = max(start - chunk * CHUNK_USERS, 0)
        hi = min(start + n - chunk * CHUNK_USERS, CHUNK_USERS)
        parts.append(_slice(block, lo, hi))
    return _concat(parts) if n > 0 else _slice(parts[0], 0, 0)


def _generate_chunk(chunk: int, seed: int, data: TaiwanData, pool: IntArray, pd_ref_all: F64,
                    base_pd: float, prefix: str) -> Population:
    rng = np.random.default_rng(np.random.SeedSequence([seed, chunk]))
    n = CHUNK_USERS
    row = pool[rng.integers(0, pool.shape[0], size=n)]
    credit = data.credit[row].astype(np.float64)
    age = data.age[row]
    youth = np.clip((35.0 - age) / 15.0, -1.0, 1.0)

    def ccol(name: str) -> F64:
        out: F64 = credit[:, CREDIT_FEATURES.index(name)]
        return out

    # Latents from the (possibly hidden) real credit row.
    z_del = (np.clip(ccol("max_delinquency_6m"), -2, 4) - 0.0) / 1.2
    z_util = (np.clip(ccol("utilization"), -0.5, 1.5) - 0.42) / 0.4
    stress = 0.55 * z_del + 0.35 * z_util + 0.6 * rng.standard_normal(n)
    stress_pos = np.maximum(stress, 0.0)
    in_market = (rng.random(n) < _sigmoid(-1.6 + 0.9 * stress)).astype(np.float64)

    thin_p = np.where(age < 25, 0.40, np.where(age < 35, 0.25, 0.12))
    thin = rng.random(n) < thin_p

    x = np.empty((n, N_FEATURES), dtype=np.float64)
    income = (np.log(np.maximum(ccol("limit_bal"), 10_000.0)) - 11.7) / 0.8
    tier_score = 0.7 * income - 0.2 * stress + 0.7 * rng.standard_normal(n)
    tier = np.digitize(tier_score, [-0.5, 0.8]).astype(np.float64)
    memory_choices = np.array([[2.0, 3.0, 4.0], [4.0, 6.0, 8.0], [8.0, 12.0, 16.0]])
    memory = memory_choices[tier.astype(int), rng.integers(0, 3, size=n)]
    night_mean = np.clip(0.10 + 0.05 * youth + 0.03 * stress, 0.02, 0.5)
    night = rng.beta(night_mean * 12.0, (1.0 - night_mean) * 12.0)
    wifi = rng.gamma(2.0, (1.0 + 0.35 * stress_pos) / 1.0)
    installs = rng.poisson(0.4 + 0.8 * stress_pos + 2.2 * in_market).astype(np.float64)
    l90 = rng.poisson(0.15 + 0.5 * stress_pos + 1.8 * in_market)
    l30 = rng.binomial(l90, 0.35 + 0.4 * in_market).astype(np.float64)
    apps7 = rng.poisson(0.03 + 0.7 * in_market).astype(np.float64)

    x[:, _I["late_night_share"]] = night
    x[:, _I["device_tier"]] = tier
    x[:, _I["device_memory_gb"]] = memory
    x[:, _I["wifi_switches_per_day"]] = np.round(wifi, 2)
    x[:, _I["loan_app_installs"]] = installs
    x[:, _I["lenders_applied_30d"]] = l30
    x[:, _I["lenders_applied_90d"]] = l90.astype(np.float64)
    x[:, _I["applications_7d"]] = apps7
    x[:, _CREDIT_START:] = credit
    x[thin, _CREDIT_START:] = DEFAULTS[_CREDIT_START:]
    features = x.astype(np.float32)

    first = chunk * CHUNK_USERS
    ids = [f"{prefix}{i:08d}" for i in range(first, first + n)]
    pd_ref = np.where(thin, base_pd, pd_ref_all[row])
    return Population(ids, features, true_intent(features), pd_ref, data.label[row], row,
                      data.sex[row], age)


def _slice(p: Population, lo: int, hi: int) -> Population:
    return Population(p.ids[lo:hi], p.features[lo:hi], p.true_intent[lo:hi], p.pd_ref[lo:hi],
                      p.defaulted[lo:hi], p.taiwan_row[lo:hi], p.sex[lo:hi], p.age[lo:hi])


def _concat(parts: list[Population]) -> Population:
    if len(parts) == 1:
        return parts[0]
    return Population(
        [i for p in parts for i in p.ids],
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.true_intent for p in parts]),
        np.concatenate([p.pd_ref for p in parts]),
        np.concatenate([p.defaulted for p in parts]),
        np.concatenate([p.taiwan_row for p in parts]),
        np.concatenate([p.sex for p in parts]),
        np.concatenate([p.age for p in parts]),
    )


def sample_labels(p_true: F64, seed: int) -> IntArray:
    """One Bernoulli(p) impression outcome per user, deterministic in ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1AB]))
    labels: IntArray = (rng.random(p_true.shape[0]) < p_true).astype(np.int64)
    return labels
