"""Batched writes of user feature records (seeding, loading files). Not on the bid path.

Single node: ``MSET`` in chunks (one command carries thousands of keys: the cheapest way to push
a million records through redis-py). Cluster: a cluster pipeline of ``SET`` (it groups by slot).
Uses the synchronous client: writers run in CLIs and fixtures, not in the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import redis
from redis.cluster import RedisCluster

from dsp.features.connect import sync_client
from dsp.features.keys import DEV_USER_HASH_KEY, user_key
from dsp.features.record import RecordCodec

FloatArray = npt.NDArray[np.float32]

DEFAULT_CHUNK = 5000


def connect(url: str, cluster: bool = False) -> redis.Redis | RedisCluster:
    """A synchronous client for bulk writes: one node, or Redis Cluster via any of its nodes."""
    return sync_client(url, cluster=cluster)


def write_rows(client: redis.Redis | RedisCluster, raw_ids: Sequence[str], rows: FloatArray, *,
               chunk: int = DEFAULT_CHUNK, hash_key: bytes = DEV_USER_HASH_KEY) -> int:
    """Write one record per raw id (row ``i`` of ``rows`` for ``raw_ids[i]``, keyed with
    ``hash_key``: the server's ``DSP_USER_HASH_KEY``); returns the count."""
    if len(raw_ids) != rows.shape[0]:
        raise ValueError(f"{len(raw_ids)} ids but {rows.shape[0]} rows")
    codec = RecordCodec()
    keys = (user_key(r, hash_key) for r in raw_ids)
    return write_blobs(client, zip(keys, codec.encode_rows(rows), strict=True), chunk=chunk)


def write_blobs(client: redis.Redis | RedisCluster, items: Iterable[tuple[str, bytes]], *,
                chunk: int = DEFAULT_CHUNK) -> int:
    """Write ``(key, encoded record)`` pairs in chunks; returns how many were written."""
    written = 0
    batch: dict[str, bytes] = {}
    for key, blob in items:
        if not key:
            raise ValueError("empty user key")
        batch[key] = blob
        if len(batch) >= chunk:
            written += _flush(client, batch)
            batch = {}
    if batch:
        written += _flush(client, batch)
    return written


def _flush(client: redis.Redis | RedisCluster, batch: dict[str, bytes]) -> int:
    if isinstance(client, RedisCluster):
        pipe = client.pipeline()  # type: ignore[no-untyped-call]
        for key, blob in batch.items():
            pipe.set(key, blob)
        pipe.execute()
    else:
        client.mset(batch)
    return len(batch)
