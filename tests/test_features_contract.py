"""Feature contract and key layout."""

from __future__ import annotations

import numpy as np

from dsp.features.contract import (
    DEFAULTS,
    FEATURE_NAMES,
    FEATURES,
    N_FEATURES,
    contract_fingerprint,
    is_prohibited,
)
from dsp.features.keys import CONTRACT_FINGERPRINT, caps_key, is_user_key, user_key


def test_contract_fingerprint_is_pinned_to_the_schema_version() -> None:
    # Changing names/order/kinds/defaults must come with a SCHEMA_VERSION bump in keys.py.
    assert contract_fingerprint() == CONTRACT_FINGERPRINT


def test_contract_has_no_prohibited_or_duplicate_features() -> None:
    assert len(set(FEATURE_NAMES)) == N_FEATURES == len(FEATURES)
    assert not [f for f in FEATURE_NAMES if is_prohibited(f)]
    for name in ("SEX", "marriage", "AGE", "Race", " religion "):
        assert is_prohibited(name)
    assert not is_prohibited("education")  # not protected; left out of the contract by choice
    assert "education" not in FEATURE_NAMES


def test_defaults_are_float32_read_only_and_in_declared_bounds() -> None:
    assert DEFAULTS.dtype == np.float32 and DEFAULTS.shape == (N_FEATURES,)
    assert not DEFAULTS.flags.writeable
    for spec, value in zip(FEATURES, DEFAULTS, strict=True):
        assert spec.lo <= value <= spec.hi, spec.name


def test_user_and_caps_keys_share_a_cluster_hash_tag() -> None:
    key = user_key("exchange-user-42")
    assert is_user_key(key)
    assert key == user_key("exchange-user-42") != user_key("exchange-user-43")
    assert "exchange-user-42" not in key
    tag = key[key.index("{"):key.index("}") + 1]
    assert caps_key(key).startswith(key) and tag in caps_key(key)
    assert user_key("") == ""
