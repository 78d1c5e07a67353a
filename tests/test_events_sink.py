"""The event log's transport: writer -> real Redis streams -> sink -> Parquet, exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from dsp.events.keys import stream_key, stream_keys
from dsp.events.reader import StreamBatch, StreamReader
from dsp.events.schema import BidEvent, ClickEvent, Event, WinEvent
from dsp.events.writer import EventWriter
from dsp.offline.eventlog.parquet import read_kind
from dsp.offline.eventlog.sink import EventSink
from dsp.testing.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent
T0_US = 1_764_748_800_000_000  # 2025-12-03 08:00:00 UTC


def bid(i: int, ts_us: int = T0_US) -> BidEvent:
    return BidEvent(ts_us=ts_us + i, exchange="generic", campaign="c1", bid_id=f"b{i}",
                    request_id=f"r{i}", imp_id="1", creative="cr", format="banner", w=300, h=250,
                    bid_cpm_micros=2_000_000 + i, bid_price_micros=2000, currency="USD",
                    auction_type=1, scores={"intent": 0.25, "risk": 0.01},
                    features=b"\x00\x00\x80?" * 4, model_versions={"intent": "1"})


async def write_all(redis_url: str, events: list[Event], **kw: object) -> EventWriter:
    client = aioredis.Redis.from_url(redis_url)
    writer = EventWriter(client, tick_s=0.005, **kw)  # type: ignore[arg-type]
    writer.start()
    for ev in events:
        writer.append(ev)
    await writer.stop()
    await client.aclose()
    return writer


def sink_for(redis_url: str, root: Path, consumer: str = "t", **kw: object) -> EventSink:
    return EventSink(StreamReader(sync_redis.Redis.from_url(redis_url), consumer, count=4),
                     root, **kw)  # type: ignore[arg-type]


async def test_writer_flushes_into_sharded_streams_and_sink_writes_each_event_once(
        redis_url: str, tmp_path: Path) -> None:
    events: list[Event] = [bid(i) for i in range(1500)]
    events += [WinEvent(ts_us=T0_US + 3_600_000_000, exchange="generic", campaign="c1",
                        bid_id=f"b{i}", price_micros=1500, currency="USD", bills=True)
               for i in range(0, 1500, 3)]
    writer = await write_all(redis_url, events)
    assert writer.total_written == len(events) and writer.total_dropped == 0
    r = sync_redis.Redis.from_url(redis_url)
    used = [k for k in stream_keys() if r.exists(k)]
    assert len(used) >= 1 and all("{" in k for k in used)
    totals = sink_for(redis_url, tmp_path).run(drain=True)
    assert totals.events == len(events) and totals.duplicates == 0
    bids = read_kind(tmp_path, "bid")
    assert sorted(bids.column("event_id").to_pylist()) == sorted(f"b{i}|bid" for i in range(1500))
    assert bids.column("bid_cpm_micros").to_pylist()[0] >= 2_000_000
    wins = read_kind(tmp_path, "win")
    assert wins.num_rows == 500 and set(wins.column("price_micros").to_pylist()) == {1500}
    # hourly partitions from ts_us (UTC): bids at 08:xx, wins an hour later
    assert {p.name for p in (tmp_path / "kind=bid" / "date=2025-12-03").iterdir()} == {"hour=08"}
    assert {p.name for p in (tmp_path / "kind=win" / "date=2025-12-03").iterdir()} == {"hour=09"}
    # everything acknowledged: a second drain writes nothing
    assert sink_for(redis_url, tmp_path).run(drain=True).entries == 0
    r.close()


async def test_buffer_is_bounded_and_drops_are_counted(redis_url: str) -> None:
    writer = await write_all(redis_url, [bid(i) for i in range(100)], max_buffer=30)
    assert writer.total_written == 30 and writer.total_dropped == 70


async def test_redis_down_never_blocks_append_and_counts_drops() -> None:
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    writer = EventWriter(dead, tick_s=0.005, flush_timeout_s=0.3, max_buffer=1000)
    writer.start()
    t0 = time.perf_counter()
    for i in range(5000):
        writer.append(bid(i))
    assert time.perf_counter() - t0 < 1.0  # appends are list appends, not I/O
    await asyncio.sleep(0.5)
    await writer.stop()
    await dead.aclose()
    assert writer.total_written == 0
    assert writer.total_dropped == 5000  # 4000 at the full buffer, 1000 in failed flushes


def test_drain_on_empty_streams_exits_zero_and_writes_nothing(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    proc = subprocess.run([sys.executable, "-m", "dsp.cli", "events", "sink", "--redis-url", redis_url,
                           "--events", str(out), "--drain"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not out.exists() or not any(out.rglob("*.parquet"))


async def test_crash_after_rename_before_ack_rewrites_the_same_files(redis_url: str,
                                                                     tmp_path: Path) -> None:
    await write_all(redis_url, [bid(i) for i in range(600)] +
                    [ClickEvent(ts_us=T0_US, exchange="generic", campaign="c1", bid_id="b1")])

    class Crash(Exception):
        pass

    def crash(_batch: StreamBatch) -> None:
        raise Crash()

    with pytest.raises(Crash):
        sink_for(redis_url, tmp_path, consumer="same", after_write=crash).run(drain=True)
    first_files = sorted(tmp_path.rglob("*.parquet"))
    assert first_files  # renamed, not acknowledged
    totals = sink_for(redis_url, tmp_path, consumer="same").run(drain=True)
    assert totals.events == 601
    ids = read_kind(tmp_path, "bid").column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 600
    assert read_kind(tmp_path, "click").num_rows == 1


def _sink_cmd(redis_url: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dsp.cli", "events", "sink", "--redis-url", redis_url,
            "--events", str(out), "--consumer", "killed", "--count", "1", *extra]


@pytest.mark.timeout(900)  # four sink processes start; slow on a busy machine
async def test_sink_sigkilled_mid_batch_restarts_and_files_hold_each_event_once(
        redis_url: str, tmp_path: Path) -> None:
    n = 20_000
    client = aioredis.Redis.from_url(redis_url)
    writer = EventWriter(client)
    for start in range(0, n, 1000):  # 20 flushes: entries on many shards
        writer.extend([bid(i, T0_US + (i % 3) * 3_600_000_000) for i in range(start, start + 1000)])
        await writer.flush()
    await client.aclose()
    out = tmp_path / "ev"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills = 0
    for delay_s in (0.4, 0.2, 0.3):
        proc = subprocess.Popen(_sink_cmd(redis_url, out), cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not any(out.rglob("*.parquet")) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # wait until it is writing
        await asyncio.sleep(delay_s)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            if read_kind(out, "bid").num_rows < n:  # killed with work left (usually mid-batch)
                kills += 1
        proc.wait(timeout=30)
    assert kills >= 1
    r = sync_redis.Redis.from_url(redis_url)
    done = subprocess.run(_sink_cmd(redis_url, out, "--drain"), cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = read_kind(out, "bid").column("event_id").to_pylist()
    assert len(ids) == n and len(set(ids)) == n  # every event, once
    assert not list(out.rglob("*.tmp"))  # the replayed batch reused (and renamed) its temp file
    for k in stream_keys():
        if r.exists(k):
            assert r.xpending(k, "sink")["pending"] == 0
    r.close()


def test_parquet_columns_follow_the_schema(tmp_path: Path, redis_url: str) -> None:
    asyncio.run(write_all(redis_url, [bid(1)]))
    sink_for(redis_url, tmp_path).run(drain=True)
    f = next(tmp_path.rglob("*.parquet"))
    schema = pq.read_schema(f)
    assert str(schema.field("scores").type).startswith("map<string, double")
    assert str(schema.field("features").type) == "binary"
    assert schema.field("ts_us").type.bit_width == 64
    assert stream_key(3) == "dsp:ev:{03}"


async def test_streams_on_a_redis_cluster(cluster_port: int, tmp_path: Path) -> None:
    """Hash-tagged shard keys work through the cluster clients (each stream on its own slot)."""
    from dsp.features.connect import async_client, sync_client

    url = f"redis://127.0.0.1:{cluster_port}/0"
    client = async_client(url, cluster=True)
    writer = EventWriter(client, first_shard=0)
    for start in range(0, 300, 100):
        writer.extend([bid(i) for i in range(start, start + 100)])
        await writer.flush()
    await client.aclose()
    assert writer.total_written == 300
    sync = sync_client(url, cluster=True)
    totals = EventSink(StreamReader(sync, "c1", count=4), tmp_path).run(drain=True)
    assert totals.events == 300
    assert sorted(read_kind(tmp_path, "bid").column("bid_id").to_pylist()) == sorted(
        f"b{i}" for i in range(300))
    sync.close()
