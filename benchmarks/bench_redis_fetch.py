"""CPU cost of one audience batch's Redis read: redis-py (what the bidder uses) vs a bare protocol.

    .venv/bin/python -m benchmarks.bench_redis_fetch [--users 32] [--calls 3000] [--rounds 3]

Starts a throwaway redis-server, writes ``--users`` feature records and measures, in this process,
CPU microseconds (``time.process_time``: user + system, so the socket syscalls count) per call of:

* ``feature-store``  ``FeatureStore.fetch``, the whole read: user keys, the EVALSHA, record assembly;
* its parts: ``  user keys`` (``user_key`` per id), ``  pack`` (``pack_evalsha``), ``  evalsha``
  (the store's call on its own pool, packing included), ``  assembly`` (``_assemble`` of a reply);
* ``redis-py``       the same EVALSHA through ``redis.asyncio`` ``execute_command`` alone, and
  ``  pack_command`` (redis-py's packing of it);
* ``bare``           the same EVALSHA bytes on an ``asyncio.Protocol`` parsed by ``hiredis.Reader``
                     (the floor: one send, one receive, one parse).

Rounds alternate the three and the best round per row is kept (the machine is shared). The gap
between ``redis-py`` and ``bare`` is what a lean read path for this one command would save per
batch (docs/bidpath.md, "Performance"). Timing lives here, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis
import numpy as np
import redis as sync_redis
import redis.asyncio as aioredis
import uvloop
from redis.asyncio.connection import Connection

from dsp.clock import Deadline
from dsp.features.contract import N_FEATURES
from dsp.features.keys import CAPS_SUFFIX, user_key
from dsp.features.store import _FETCH_LUA, FeatureStore, _pairs, pack_evalsha
from dsp.features.writer import write_rows
from dsp.testing.redis_server import RedisServer


class _Bare(asyncio.Protocol):
    """Pipelined RESP client: FIFO of futures, replies parsed by hiredis."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.waiting.popleft().set_result(reply)


def _pack(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def _measure(url: str, host: str, port: int, n_users: int, calls: int,
                   rounds: int) -> dict[str, float]:
    ids = [f"bench-user-{i}" for i in range(n_users)]
    rng = np.random.default_rng(1)
    with sync_redis.Redis.from_url(url) as client:
        write_rows(client, ids, rng.uniform(0, 3, size=(n_users, N_FEATURES)).astype(np.float32))
        sha = client.script_load(_FETCH_LUA)
    redis = aioredis.Redis.from_url(url, decode_responses=False, socket_timeout=1.0,
                                    socket_connect_timeout=1.0)
    store = FeatureStore(redis)
    keys = [user_key(i) for i in ids]
    loop = asyncio.get_running_loop()
    _, bare = await loop.create_connection(_Bare, host, port)
    packed = _pack(b"EVALSHA", sha.encode(), str(len(keys)).encode(),
                   *(k.encode() for k in keys), CAPS_SUFFIX.encode())

    async def via_store() -> object:
        return await store.fetch(ids, Deadline.after_ms(1000))

    async def via_redis_py() -> Any:
        return await redis.execute_command("EVALSHA", sha, len(keys), *keys, CAPS_SUFFIX)

    async def via_bare() -> object:
        fut: asyncio.Future[Any] = loop.create_future()
        bare.waiting.append(fut)
        assert bare.transport is not None
        bare.transport.write(packed)
        return await fut

    assert store._pool is not None
    pool = store._pool
    reply = await via_redis_py()
    blobs, caps = reply[0::2], [_pairs(flat) for flat in reply[1::2]]
    conn = Connection()

    async def user_keys() -> object:
        return [user_key(i) for i in ids]

    async def pack_ours() -> object:
        return pack_evalsha(sha, keys, CAPS_SUFFIX)

    async def store_call() -> object:
        return await FeatureStore._evalsha(pool, sha, keys)

    async def assembly() -> object:
        return store._assemble(keys, blobs, caps)

    async def pack_redis_py() -> object:
        return conn.pack_command("EVALSHA", sha, len(keys), *keys, CAPS_SUFFIX)

    cases: dict[str, Callable[[], Awaitable[object]]] = {
        "feature-store": via_store, "  user keys": user_keys, "  pack": pack_ours,
        "  evalsha": store_call, "  assembly": assembly,
        "redis-py": via_redis_py, "  pack_command": pack_redis_py, "bare": via_bare}
    for name in ("feature-store", "  evalsha", "redis-py", "bare"):  # warm up; same reply size
        out = await cases[name]()
        assert len(out) in (n_users, 2 * n_users), (name, len(out))  # type: ignore[arg-type]
    best = {name: float("inf") for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            t0 = time.process_time()
            for _ in range(calls):
                await fn()
            best[name] = min(best[name], (time.process_time() - t0) / calls * 1e6)
    await store.aclose()
    await redis.aclose()
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=32, help="users per batch (32: 64 connections)")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with RedisServer() as server:
        hostport = server.url.split("//", 1)[1].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        best = uvloop.run(_measure(server.url, host, int(port), args.users, args.calls, args.rounds))
    print(f"{args.users} users per call, {args.calls} calls x {args.rounds} rounds, best round")
    print(f"{'path':<16}{'cpu us/call':>12}{'us/user':>9}")
    for name, us in best.items():
        print(f"{name:<16}{us:>12.1f}{us / args.users:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
