"""Batched reads of user features and frequency-cap state from Redis (the FeatureSource).

One :meth:`FeatureStore.fetch` call is one round trip for the whole list of users. On a single
node it is one ``EVALSHA`` of a read-only Lua script that does ``GET`` + ``HGETALL`` per user
server-side (measured 2-4x cheaper in Python than a pipeline of ``MGET`` + n ``HGETALL``, whose
per-command packing and parsing dominate at 32-128 users), sent on the store's own connection
pool (the client's address, credentials, database and TLS; no socket timeout: the request
deadline bounds the call) without redis-py's per-command wrapper. On Redis Cluster, where one script may
only touch one slot, it is ``GET`` + ``HGETALL`` per user (one user's two keys share a slot), one
cluster pipeline per master that owns users of the batch, all sent at once. The whole call runs
under the request deadline.

Outcomes per user (list in, list out, same order):

* ``""`` id           -> unknown record with defaults, ``user_key == ""``; Redis is not touched;
* no features key     -> unknown, defaults; caps are still returned (a user may have caps only);
* malformed record, other schema version, non-finite values -> unknown, defaults, and the
  optional ``on_malformed(count)`` callback is told how many such records one fetch saw;
* Redis error, connection failure or deadline -> ``DependencyUnavailable`` for the whole call;
* on Redis Cluster, a shard that fails or misses the deadline while others answer (a master
  killed and not yet replaced, a node behind a slow link) -> only the users on that shard are
  unknown (as if Redis were down for them: empty user key, no caps); the optional
  ``on_unavailable(exc)`` callback is told once per failed shard. Only when every shard failed
  does the call raise. Why: a cluster at scale has tens of shards; one shard's failover (1-3 s)
  must not make every user of every batch unknown.

The client must be created with ``decode_responses=False`` (records are binary).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

from dsp.clock import Deadline
from dsp.errors import DependencyUnavailable
from dsp.features.contract import DEFAULTS
from dsp.features.keys import CAPS_SUFFIX, DEV_USER_HASH_KEY, caps_key, user_key
from dsp.features.record import MalformedCallback, RecordCodec

FloatArray = npt.NDArray[np.float32]
UnavailableCallback = Callable[[DependencyUnavailable], None]
#: A user whose shard did not answer (Redis Cluster): unknown, like a batch when Redis is down.
_UNAVAILABLE = object()

# KEYS = features keys; ARGV[1] = the caps-key suffix (dsp.features.keys.CAPS_SUFFIX). The caps
# key is derived in the script (same hash tag, so the same slot): half the arguments to pack in
# Python than declaring both keys. Reply: [blob-or-nil, {flat caps}, ...]. Read-only; `false`
# keeps nil slots in the Lua table. A key of the wrong type must not fail the whole batch: pcall
# turns it into "" (a malformed record) or empty caps for that user only.
_FETCH_LUA = """
local out = {}
for i = 1, #KEYS do
  local blob = redis.pcall('GET', KEYS[i])
  if type(blob) == 'table' and blob.err then blob = '' end
  out[#out + 1] = blob or false
  local caps = redis.pcall('HGETALL', KEYS[i] .. ARGV[1])
  if caps.err then caps = {} end
  out[#out + 1] = caps
end
return out
"""


class UserRecord:
    """One resolved user (satisfies ``dsp.bidding.ports.UserRecord``).

    ``features`` is a float32 vector in contract order; for unknown users it is the shared
    read-only :data:`dsp.features.contract.DEFAULTS` array — copy before mutating.
    """

    __slots__ = ("caps", "features", "known", "user_key")

    def __init__(self, user_key: str, known: bool, features: FloatArray,
                 caps: dict[str, bytes]) -> None:
        self.user_key = user_key
        self.known = known
        self.features = features
        self.caps = caps

    def __repr__(self) -> str:
        return f"UserRecord({self.user_key!r}, known={self.known}, caps={len(self.caps)})"


def unknown_record(key: str = "", caps: dict[str, bytes] | None = None) -> UserRecord:
    """An unknown user: defaults, empty caps unless given."""
    return UserRecord(key, False, DEFAULTS, caps if caps is not None else {})


class FeatureStore:
    """Reads users from Redis in one round trip per call. Owns no connection: the app does."""

    __slots__ = ("_codec", "_hash_key", "_is_cluster", "_on_malformed", "_on_unavailable", "_pool",
                 "_redis", "_script")

    def __init__(self, redis: Redis | RedisCluster, *,
                 on_malformed: MalformedCallback | None = None,
                 on_unavailable: UnavailableCallback | None = None,
                 hash_key: bytes = DEV_USER_HASH_KEY) -> None:
        self._redis = redis
        self._hash_key = hash_key  # DSP_USER_HASH_KEY (dsp.features.keys)
        self._is_cluster = isinstance(redis, RedisCluster)
        self._codec = RecordCodec()
        self._on_malformed = on_malformed
        self._on_unavailable = on_unavailable
        # Script objects re-load themselves on NOSCRIPT; no round trip at construction.
        self._script = None if self._is_cluster else redis.register_script(_FETCH_LUA)
        self._pool = _untimed_pool(redis) if isinstance(redis, Redis) else None

    async def aclose(self) -> None:
        """Close the store's own connections (the client passed in stays the caller's)."""
        if self._pool is not None:
            await self._pool.disconnect()

    async def fetch(self, user_ids: Sequence[str], deadline: Deadline) -> list[UserRecord]:
        """Resolve raw user ids to records. See the module docstring for every outcome."""
        hash_key = self._hash_key
        keys = [user_key(raw, hash_key) for raw in user_ids]
        wanted = [k for k in keys if k]
        if not wanted:
            return [unknown_record() for _ in keys]
        remaining_s = deadline.remaining_s()
        if remaining_s <= 0:
            raise DependencyUnavailable("feature fetch: deadline already passed")
        try:
            if self._is_cluster:
                blobs, caps = await self._cluster_round_trip(wanted, remaining_s)
            else:
                async with asyncio.timeout(remaining_s):
                    blobs, caps = await self._round_trip(wanted)
        except TimeoutError as exc:
            raise DependencyUnavailable("feature fetch: deadline passed waiting for Redis") from exc
        except (RedisError, RedisClusterException, OSError) as exc:
            raise DependencyUnavailable(f"feature fetch: Redis failed: {exc}") from exc
        return self._assemble(keys, blobs, caps)

    async def _cluster_round_trip(self, wanted: list[str],
                                  remaining_s: float) -> tuple[list[Any], list[Any]]:
        """One pipeline per master owning users of the batch, concurrently, each under the
        deadline; a shard that fails or is late leaves its users ``_UNAVAILABLE`` (module
        docstring). Raises when every shard failed."""
        cluster = self._redis
        assert isinstance(cluster, RedisCluster)
        shards: dict[str, list[int]] = {}
        try:
            for i, key in enumerate(wanted):
                node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))
                shards.setdefault(node.name, []).append(i)
        except (RedisClusterException, KeyError, IndexError):
            shards = {"": list(range(len(wanted)))}  # no slot map yet: one pipeline, redis-py routes
        n = len(wanted)
        blobs: list[Any] = [_UNAVAILABLE] * n
        caps: list[Any] = [{}] * n
        tasks = {asyncio.ensure_future(self._pipeline([wanted[i] for i in idx])): idx
                 for idx in shards.values()}
        done, late = await asyncio.wait(tasks, timeout=remaining_s)
        for task in late:
            task.cancel()
        failures: list[DependencyUnavailable] = []
        if late:
            failures.append(DependencyUnavailable(
                f"feature fetch: {len(late)} of {len(tasks)} shard(s) missed the deadline"))
        for task in done:
            exc = task.exception()
            if exc is not None:
                if not isinstance(exc, RedisError | RedisClusterException | OSError):
                    raise exc
                failures.append(DependencyUnavailable(f"feature fetch: a shard failed: {exc}"))
                continue
            shard_blobs, shard_caps = task.result()
            for pos, i in enumerate(tasks[task]):
                blobs[i] = shard_blobs[pos]
                caps[i] = shard_caps[pos]
        if len(failures) == len(tasks):
            raise failures[0]
        if failures and self._on_unavailable is not None:
            for failure in failures:
                self._on_unavailable(failure)
        return blobs, caps

    async def _pipeline(self, keys: list[str]) -> tuple[list[Any], list[Any]]:
        """``GET`` + ``HGETALL`` per key in one cluster pipeline."""
        pipe = self._redis.pipeline()
        for k in keys:
            pipe.get(k)
            pipe.hgetall(caps_key(k))
        out = await pipe.execute(raise_on_error=False)
        # Per-key errors (a key of the wrong type) spoil only their own user, as on one node;
        # connection-level failures still raise from execute().
        blobs = [b"" if isinstance(b, Exception) else b for b in out[0::2]]
        caps = [{} if isinstance(c, Exception) else c for c in out[1::2]]
        return blobs, caps

    async def _round_trip(self, wanted: list[str]) -> tuple[list[Any], list[Any]]:
        n = len(wanted)
        assert self._script is not None and self._pool is not None
        try:
            out = await self._evalsha(self._pool, self._script.sha, wanted)
        except NoScriptError:  # a restarted or different server: load once, then again EVALSHA
            out = await self._script(keys=wanted, args=[CAPS_SUFFIX])
        if not isinstance(out, list) or len(out) != 2 * n:  # defensive: a mangled reply
            raise DependencyUnavailable("feature fetch: Redis reply has the wrong shape")
        return out[0::2], [_pairs(flat) for flat in out[1::2]]

    @staticmethod
    async def _evalsha(pool: ConnectionPool, sha: str, keys: list[str]) -> Any:
        """One EVALSHA on a pooled connection, without redis-py's per-command machinery.

        ``benchmarks/bench_redis_fetch.py`` compares it with ``execute_command`` on a client with
        a socket timeout (retry wrapper, ``wait_for`` around each send): 47.5 vs 81.6 µs of CPU
        for 32 keys in one run. The deadline is the caller's
        ``asyncio.timeout`` (tighter than any socket timeout). A connection interrupted between
        send and reply (deadline, cancel, error) may still receive that reply, so it is
        disconnected before it goes back to the pool: a later fetch never reads another's reply
        (redis-py's pool also refuses a connection with unread data: two guards;
        tests/test_features_store.py checks the outcome)."""
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(pack_evalsha(sha, keys, CAPS_SUFFIX), check_health=False)
            return await conn.read_response()
        except ResponseError:
            raise  # the reply was read whole (NOSCRIPT, WRONGTYPE...): the connection is clean
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)

    def _assemble(self, keys: list[str], blobs: list[Any], caps: list[Any]) -> list[UserRecord]:
        """Decode in two passes: per-record envelope checks, then one vectorised matrix for all
        well-formed records (one ``frombuffer`` and one finiteness check for the batch)."""
        records: list[UserRecord] = []
        payloads: list[bytes] = []
        pending: list[int] = []  # positions in ``records`` waiting for their feature vector
        malformed = 0
        j = 0
        payload = self._codec.payload
        for key in keys:
            if not key:
                records.append(unknown_record())
                continue
            blob, raw_caps = blobs[j], caps[j]
            j += 1
            if blob is _UNAVAILABLE:
                records.append(unknown_record())
                continue
            user_caps = _decode_caps(raw_caps)
            body = payload(blob) if isinstance(blob, bytes) else None
            if body is None:
                malformed += blob is not None
                records.append(unknown_record(key, user_caps))
            else:
                pending.append(len(records))
                payloads.append(body)
                records.append(UserRecord(key, True, DEFAULTS, user_caps))
        if payloads:
            matrix = self._codec.matrix(payloads)
            finite = np.asarray(np.isfinite(matrix).all(axis=1), dtype=bool)
            for row, pos in enumerate(pending):
                rec = records[pos]
                if finite[row]:
                    rec.features = matrix[row]
                else:
                    malformed += 1
                    rec.known = False
        if malformed and self._on_malformed is not None:
            self._on_malformed(malformed)
        return records


def pack_evalsha(sha: str, keys: Sequence[str], *args: str) -> bytes:
    """``EVALSHA sha len(keys) *keys *args`` as one RESP array (what redis-py's ``pack_command``
    produces; 4.7 vs 17.7 µs for 32 keys in ``benchmarks/bench_redis_fetch.py``)."""
    n = str(len(keys))
    parts = [b"*%d\r\n$7\r\nEVALSHA\r\n" % (len(keys) + len(args) + 3)]
    for item in (sha, n, *keys, *args):
        data = item.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _untimed_pool(redis: Redis) -> ConnectionPool:
    """A pool like ``redis``'s (same address, credentials, database, TLS, connection class) but
    without a socket timeout: fetches run under the request deadline instead."""
    base = redis.connection_pool
    kwargs = dict(base.connection_kwargs)
    kwargs["socket_timeout"] = None
    return ConnectionPool(connection_class=base.connection_class, **kwargs)


def _pairs(flat: Any) -> dict[Any, Any]:
    """A Lua HGETALL reply (flat [field, value, ...]) as a dict."""
    if not flat:
        return {}
    return dict(zip(flat[0::2], flat[1::2], strict=True))


def _decode_caps(raw: Any) -> dict[str, bytes]:
    """HGETALL reply (bytes -> bytes) to ``{campaign_id: opaque bytes}``."""
    if not raw:
        return {}
    out: dict[str, bytes] = {}
    for field, value in raw.items():
        name = field.decode("utf-8", "replace") if isinstance(field, bytes) else str(field)
        out[name] = value if isinstance(value, bytes) else str(value).encode()
    return out
