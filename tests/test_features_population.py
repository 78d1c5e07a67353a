"""The synthetic population: deterministic, chunk-independent, documented rates."""

from __future__ import annotations

import numpy as np
import pytest

from dsp.features.contract import FEATURE_INDEX, FEATURES
from dsp.offline.population import generate
from dsp.offline.taiwan import TaiwanData, default_data_dir, load_taiwan, split_indices


@pytest.fixture(scope="module")
def taiwan() -> TaiwanData:
    if not (default_data_dir() / "uci-taiwan-default-credit-card").is_dir():
        pytest.skip("shared datasets not available")
    return load_taiwan()


def test_taiwan_rows_and_split_are_stable(taiwan: TaiwanData) -> None:
    assert len(taiwan) == 30_000 and int(taiwan.label.sum()) == 6_636
    train, test = split_indices(taiwan.label, test_fraction=0.3, seed=7)
    assert len(test) == 9_000 and not set(train) & set(test)
    again_train, again_test = split_indices(taiwan.label, test_fraction=0.3, seed=7)
    assert np.array_equal(test, again_test) and np.array_equal(train, again_train)
    assert abs(taiwan.label[test].mean() - taiwan.label.mean()) < 0.001  # stratified


def test_generation_is_deterministic_and_independent_of_batching(taiwan: TaiwanData) -> None:
    whole = generate(100_015, 5, taiwan)
    part = generate(20, 5, taiwan, start=99_995)  # straddles a chunk boundary
    assert part.ids == whole.ids[99_995:100_015]
    np.testing.assert_array_equal(part.features, whole.features[99_995:100_015])
    np.testing.assert_array_equal(generate(50, 6, taiwan).features[:5],
                                  generate(5, 6, taiwan).features)
    assert not np.array_equal(generate(5, 6, taiwan).features, generate(5, 5, taiwan).features)


def test_population_matches_the_documented_world(taiwan: TaiwanData) -> None:
    pop = generate(100_000, 11, taiwan)
    x = pop.features
    for i, spec in enumerate(FEATURES):  # every value within the contract's declared bounds
        assert spec.lo <= x[:, i].min() and x[:, i].max() <= spec.hi, spec.name
    assert 0.01 <= pop.true_intent.mean() <= 0.03  # per-impression application rate
    assert np.percentile(pop.true_intent, 99) > 5 * np.median(pop.true_intent)  # real spread
    thin = x[:, FEATURE_INDEX["has_credit_history"]] == 0
    assert 0.12 < thin.mean() < 0.30
    young = pop.age < 25
    assert thin[young].mean() > thin[~young].mean()  # thin files skew young, as documented
    assert (x[:, FEATURE_INDEX["lenders_applied_30d"]]
            <= x[:, FEATURE_INDEX["lenders_applied_90d"]]).all()
