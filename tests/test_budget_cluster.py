"""Money scripts on Redis Cluster (one node owning every slot: CROSSSLOT rules still apply)."""

from __future__ import annotations

import time

import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from dsp.budget.freqcap import CapRecorder, is_capped
from dsp.budget.keys import campaign_day, conversions_key, day_key, outcomes_key, total_key
from dsp.budget.outcomes import OutcomeStore
from dsp.budget.runtime import MoneyRuntime, MoneySettings
from dsp.budget.spec import CampaignBudget, FrequencyCap
from dsp.features.keys import caps_key, user_key
from dsp.observability.metrics import Metrics
from dsp.testing.redis_server import reply_hash


def test_one_campaigns_keys_share_a_slot(cluster_port: int) -> None:
    client = redis.Redis(port=cluster_port)
    for cid in ("c1", "quickloan-prime", "x"):
        keys = [day_key(cid, 1), total_key(cid), outcomes_key(cid, 1), conversions_key(cid, 1)]
        assert len({client.execute_command("CLUSTER", "KEYSLOT", k) for k in keys}) == 1
    client.close()


async def test_leases_notices_and_caps_through_the_cluster_client(cluster_port: int) -> None:
    client = AsyncRedisCluster(host="127.0.0.1", port=cluster_port)
    settings = MoneySettings(first_check_s=0.0, settle_grace_s=0.0)
    # Guard on (its four keys share the campaign's slot), with an allowance that never binds here.
    spec = CampaignBudget("c1", 100_000, max_lease_micros=20_000, allowance_micros=100_000)
    rt = MoneyRuntime(client, Metrics(), [spec], settings=settings)
    await rt.tick()
    assert rt.reserve("c1", "b1", 3_000, time.time() + 60)
    day = campaign_day(time.time(), 0)
    assert await OutcomeStore(client).record("c1", day, "b1", "b", 2_000, commits=True) == ("early", 2_000)
    await rt.tick()
    led = rt.ledger("c1")
    assert led is not None and not led.is_reserved("b1") and led.drift_micros() == 0
    cap = FrequencyCap(max_impressions=1, window_s=60)
    key = caps_key(user_key("cluster-user"))
    await CapRecorder(client).record_impression(key, "c1", cap, time.time())
    caps = reply_hash(await client.hgetall(key))
    assert is_capped(caps, "c1", cap, time.time())
    await rt.stop()
    await client.aclose()
