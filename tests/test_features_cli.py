"""``dsp features seed`` and ``dsp features load`` against the real redis-server fixture."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis

from dsp.cli import main
from dsp.clock import Deadline
from dsp.features.contract import DEFAULTS, FEATURE_INDEX
from dsp.features.store import FeatureStore
from dsp.offline.population import generate, true_intent
from dsp.offline.taiwan import default_data_dir, load_taiwan

Stores = Callable[..., FeatureStore]  # the conftest `stores` fixture

needs_taiwan = pytest.mark.skipif(
    not (default_data_dir() / "uci-taiwan-default-credit-card").is_dir(),
    reason="shared datasets not available")


@needs_taiwan
async def test_seed_writes_the_deterministic_population(stores: Stores, tmp_path: Path, redis_url: str,
                                                        redis_client: aioredis.Redis) -> None:
    ids_file = tmp_path / "ids.jsonl"
    code = main(["features", "seed", "--users", "2500", "--seed", "3", "--ids-out", str(ids_file),
                 "--redis-url", redis_url])
    assert code == 0
    assert await redis_client.dbsize() == 2500
    lines = [json.loads(x) for x in ids_file.read_text().splitlines()]
    assert len(lines) == 2500 and lines[0]["id"] == "syn3-00000000"
    assert set(lines[0]) == {"id", "true_intent", "true_pd", "has_credit_history", "defaulted"}

    expected = generate(2500, 3, load_taiwan())
    store = stores(redis_client)
    picked = list(range(0, 2500, 7))
    records = await store.fetch([lines[i]["id"] for i in picked], Deadline.after_ms(5000))
    got = np.stack([r.features for r in records])
    assert all(r.known for r in records)
    np.testing.assert_array_equal(got, expected.features[picked])
    # the ids file's truth is the ground truth of exactly these stored features
    truth = np.array([lines[i]["true_intent"] for i in picked])
    np.testing.assert_allclose(truth, true_intent(got), atol=1e-6)
    assert 0.005 < float(np.mean([x["true_intent"] for x in lines])) < 0.05


def test_load_loads_good_rows_and_names_bad_ones(tmp_path: Path, redis_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"id": "alice", "features": {"late_night_share": 0.4, "lenders_applied_30d": 2,
                                     "lenders_applied_90d": 3}},
        "{not json",
        {"id": "bob", "features": {"credit_score": 700}},
        {"id": "carol", "features": {"late_night_share": 1.5}},
        {"id": "dave", "features": {"device_tier": "high"}},
        {"features": {}},
        {"id": "erin", "features": {"limit_bal": 100000, "bill_amt1": 50000, "pay_0": 2}},
        {"id": "frank", "features": {"lenders_applied_30d": 5, "lenders_applied_90d": 1}},
        {"id": "gina", "features": {"applications_7d": 1.5}},
        {"id": "", "features": {}},
    ]
    path = tmp_path / "users.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    code = main(["features", "load", str(path), "--redis-url", redis_url])
    out = capsys.readouterr()
    assert code == 1
    assert "loaded 2 users, rejected 8 rows" in out.out
    errors = out.err.splitlines()
    assert [e.split(":")[1] for e in errors] == ["2", "3", "4", "5", "6", "8", "9", "10"]
    assert "credit_score" in errors[1] and "unknown feature" in errors[1]
    assert "late_night_share" in errors[2]
    assert "device_tier" in errors[3]
    assert "id" in errors[4]
    assert "lenders_applied_30d" in errors[5]
    assert "applications_7d" in errors[6]


async def test_loaded_rows_read_back_with_defaults_and_derived_credit(stores: Stores,
        tmp_path: Path, redis_url: str, redis_client: aioredis.Redis) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text(json.dumps({"id": "erin", "features": {"limit_bal": 100000, "bill_amt1": 50000,
                                                           "pay_0": 2, "late_night_share": 0.3}}))
    assert main(["features", "load", str(path), "--redis-url", redis_url]) == 0
    [rec] = await stores(redis_client).fetch(["erin"], Deadline.after_ms(2000))
    f = rec.features
    assert rec.known
    assert f[FEATURE_INDEX["late_night_share"]] == pytest.approx(0.3)
    assert f[FEATURE_INDEX["has_credit_history"]] == 1.0
    assert f[FEATURE_INDEX["utilization"]] == pytest.approx(0.5)
    assert f[FEATURE_INDEX["max_delinquency_6m"]] == 2.0
    assert f[FEATURE_INDEX["delinquent_months_6m"]] == 1.0
    assert f[FEATURE_INDEX["device_tier"]] == DEFAULTS[FEATURE_INDEX["device_tier"]]


@needs_taiwan
def test_bench_reads_seeded_users(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", "seed", "--users", "200", "--seed", "4", "--redis-url", redis_url]) == 0
    code = main(["features", "bench", "--seed", "4", "--users", "200", "--batch", "1,4",
                 "--seconds", "0.02", "--redis-url", redis_url])
    out = capsys.readouterr().out
    assert code == 0
    assert "| 4 |" in out and "100%" in out  # every benchmarked user was found
    assert main(["features", "bench", "--batch", "0", "--redis-url", redis_url]) == 2
