"""The bidder on a real 6-node Redis Cluster (3 masters + 3 replicas on loopback) under steady
load with notices: a slot moved live (clients follow ASK and MOVED), a master SIGKILLed (its
replica takes over). Each case asserts no 5xx, recovery, the brake released, and the books:
every billed notice committed exactly once (``spent`` equals what the exchange was billed),
``out`` equal to the live leases. Latency during a failover is measured over several runs by
``loadtest/failover.py`` (docs/operations.md), not asserted here. Each case stays under 60 s.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from redis.cluster import RedisCluster

from dsp.budget.keys import campaign_day, day_key
from dsp.features.keys import user_key
from dsp.features.writer import write_rows
from dsp.testing.exchange_sim import CAMPAIGNS, USERS, ExchangeSim, SimReport, ledger_check, sim_configs
from dsp.testing.redis_cluster import LocalCluster
from dsp.testing.serve import running_bidder
from dsp.testing.users import interested_user_row

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as c:
        rc = RedisCluster(host="127.0.0.1", port=c.ports[0])
        write_rows(rc, USERS, np.repeat(interested_user_row(), len(USERS), axis=0))
        rc.close()
        yield c


def _books(cluster: LocalCluster, report: SimReport) -> None:
    rc = RedisCluster(host="127.0.0.1", port=cluster.masters()[0])
    try:
        books = ledger_check(rc, CAMPAIGNS, campaign_day(time.time(), 0))
    finally:
        rc.close()
    assert report.lost_notices == 0, report.summary()
    for campaign in CAMPAIGNS:
        b = books[campaign]
        assert b["out"] == b["leases"], (campaign, b)
        assert b["spent"] == report.expected_spend_micros[campaign], (campaign, b, report.summary())
    assert sum(report.expected_spend_micros.values()) > 0, report.summary()


def _brake(url: str) -> float:
    text = urllib.request.urlopen(getattr(url, "admin", url) + "/metrics", timeout=5).read().decode()
    return max([float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("dsp_budget_brake ")] or [0.0])


async def test_slots_moved_under_load(cluster: LocalCluster, tmp_path: Path) -> None:
    configs = sim_configs(ROOT / "bidder_configs", tmp_path / "configs")
    day = campaign_day(time.time(), 0)
    money_slot = cluster.slot(day_key("quickloan-prime", day))
    user_slots = sorted({cluster.slot(user_key(u)) for u in USERS[:5]})
    with running_bidder(cluster.url, tmp_path / "serve.log", configs=configs,
                        env={"DSP_REDIS_CLUSTER": "1"}) as url:
        sim = ExchangeSim(url, USERS, rate=100, tmax_ms=100)
        sim.start()
        await asyncio.sleep(3)
        moved = 0
        for slot in [money_slot, *user_slots]:
            owner = cluster.owner_of_slot(slot)
            target = next(p for p in cluster.masters() if p != owner)
            moved += await asyncio.to_thread(cluster.move_slot, slot, target, pause_s=0.05)
        t_moved = time.monotonic()
        await asyncio.sleep(4)
        report = await sim.stop()
        brake = _brake(url)
    summary = report.summary()
    print("reshard:", summary, f"keys moved {moved}")
    assert moved > 0
    assert summary["server_errors"] == 0, summary
    assert report.bids_between(t_moved, t_moved + 4) > 0
    assert brake == 0.0
    _books(cluster, report)


async def test_master_killed_under_load(cluster: LocalCluster, tmp_path: Path) -> None:
    configs = sim_configs(ROOT / "bidder_configs", tmp_path / "configs")
    day = campaign_day(time.time(), 0)
    with running_bidder(cluster.url, tmp_path / "serve.log", configs=configs,
                        env={"DSP_REDIS_CLUSTER": "1"}) as url:
        sim = ExchangeSim(url, USERS, rate=100, tmax_ms=100)
        sim.start()
        await asyncio.sleep(4)
        victim = cluster.owner(day_key("quickloan-prime", day))  # the money's master
        t_kill = time.monotonic()
        cluster.kill(victim)
        failover_s = await asyncio.to_thread(cluster.wait_failover, victim)
        t_back = time.monotonic()
        await asyncio.sleep(8)  # past the brake's grace, so a brake that engaged has released
        report = await sim.stop()
        brake = _brake(url)
    summary = report.summary()
    worst = max((ms for t, ms in report.latencies_ms if t >= t_kill), default=0.0)
    print("failover:", summary, f"failover {failover_s:.1f} s, worst latency after kill {worst:.0f} ms")
    assert summary["server_errors"] == 0, summary
    assert report.bids_between(t_back + 4, t_back + 8) > 0, "bidding resumed after the failover"
    assert brake == 0.0
    _books(cluster, report)


async def test_one_slow_shard_spoils_only_its_users(cluster: LocalCluster) -> None:
    """A shard that does not answer in time (a master paused, as one failing over or behind a
    slow link is) leaves only its own users unknown; the others' features arrive; the failure is
    reported once per shard; a batch on the live shards alone is untouched."""
    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    from dsp.clock import Deadline, monotonic
    from dsp.errors import DependencyUnavailable
    from dsp.features.store import FeatureStore

    failures: list[DependencyUnavailable] = []
    client = AsyncCluster(host="127.0.0.1", port=cluster.ports[0])
    store = FeatureStore(client, on_unavailable=failures.append)
    try:
        records = await store.fetch(USERS, Deadline(monotonic() + 2.0))
        assert all(r.known for r in records) and not failures
        paused = cluster.owner(user_key(USERS[0]))
        on_paused = [u for u in USERS if cluster.owner(user_key(u)) == paused]
        assert 0 < len(on_paused) < len(USERS)
        with cluster.node(paused) as r:
            # CLIENT PAUSE stops serving clients, not the cluster bus: no failover starts.
            r.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        records = await store.fetch(USERS, Deadline(monotonic() + 0.3))
        by_user = dict(zip(USERS, records, strict=True))
        assert [u for u in USERS if not by_user[u].known] == on_paused
        assert all(by_user[u].user_key == "" and not by_user[u].caps for u in on_paused)
        assert len(failures) == 1 and "deadline" in str(failures[0])
        live = [u for u in USERS if u not in on_paused]
        assert all(r.known for r in await store.fetch(live, Deadline(monotonic() + 0.3)))
        assert len(failures) == 1
    finally:
        await client.aclose()


async def test_a_commit_its_replica_has_not_got_is_refused_then_counted_once(
        cluster: LocalCluster) -> None:
    """A billing notice whose commit the master's replica has not acknowledged within ``wait_ms``
    (the replica busy, not down) fails — the endpoint answers 503, the exchange retries — and the
    retry, once the replica has caught up, is a duplicate: the spend is counted exactly once and
    is on the replica before any notice is acknowledged. A replica that is down (the master lists
    none) does not stop billing."""
    import threading

    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    from dsp.budget.outcomes import OutcomeStore
    from dsp.errors import DependencyUnavailable

    day = campaign_day(time.time(), 0)
    master = cluster.owner(day_key("c1", day))
    master_id = next(n["id"] for n in cluster.nodes() if int(n["port"]) == master)
    replica = next(int(n["port"]) for n in cluster.nodes() if n["master"] == master_id)
    with cluster.node(master) as r:  # a fresh cluster: wait until the replica is attached
        end = time.monotonic() + 20
        while not r.execute_command("ROLE")[2] and time.monotonic() < end:
            time.sleep(0.1)
    client = AsyncCluster(host="127.0.0.1", port=cluster.ports[0])
    store = OutcomeStore(client, wait_replicas=1, wait_ms=100)
    try:
        # win notices that bill (an exchange that bills on the win)
        assert await store.record("c1", day, "bid-1", "w", 5_000, commits=True) == ("ok", 5_000)

        def busy_replica() -> None:  # the replica stalls (under the 1 s node timeout: still listed)
            with cluster.node(replica) as r:
                r.execute_command("DEBUG", "SLEEP", "0.7")

        busy = threading.Thread(target=busy_replica)
        busy.start()
        await asyncio.sleep(0.2)
        with pytest.raises(DependencyUnavailable, match="replica"):
            await store.record("c1", day, "bid-2", "w", 7_000, commits=True)
        busy.join()
        for _ in range(30):  # the exchange retries until it gets an answer
            try:
                retried = await store.record("c1", day, "bid-2", "w", 7_000, commits=True)
                break
            except DependencyUnavailable:
                await asyncio.sleep(0.2)
        assert retried == ("duplicate", 0)
        with cluster.node(replica) as r:
            r.execute_command("READONLY")
            assert int(r.hget(day_key("c1", day), "spent") or 0) == 12_000
        cluster.kill(replica)  # down, not behind: billing goes on unreplicated
        await asyncio.sleep(0.5)
        assert await store.record("c1", day, "bid-3", "w", 1_000, commits=True) == ("ok", 1_000)
    finally:
        await client.aclose()
