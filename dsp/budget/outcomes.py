"""Notice outcomes in Redis: the NOTICE script (dedup + outcome + commit) and their lookups.

Outcome of a bid: ONE field ``<bid id>`` of ``dsp:bo:{campaign}:h<hour>`` (the UTC hour the bid
was issued in, :func:`dsp.budget.keys.outcome_bucket`), value ``<kinds seen><outcome>``:

    <kinds seen>  one digit, the notice kinds already counted for this bid: w = 1, b = 2, l = 4
                  (so every kind counts once per bid: the dedup)
    <outcome>     ""          nothing decided (e.g. a bill on an exchange that bills on the win)
                  W           won, billing notice pending (exchanges that bill on burl)
                  L           lost (loss notice)
                  C<micros>   committed at that clearing price (``spent`` includes it)

The bidding process looks its outstanding bids up here (:meth:`OutcomeStore.lookup`) to commit
or release them.

Bounded memory: one field per notified bid (about 70-90 bytes in Redis; bids nobody notifies
write nothing), in a hash that holds one hour of the campaign's bids and expires whole. Each
notice raises the hash's TTL, never lowers it, to what its own bid still needs: until the token
expires (no notice for the bid can count after that, so the dedup is no longer needed) plus
:data:`KEEP_AFTER_EXPIRY_S` for the owner's last look-ups (the final one at expiry +
``settle_grace_s``, the late re-check ``late_recheck_s`` after a release; MoneyRuntime refuses
settings that do not fit). So a bucket lives at most one hour + the longest notice TTL + 15 min,
and Redis holds the bids of about ``1 h + notice_ttl_s + 15 min`` (docs/operations.md, "Soak").

Durable commits on Redis Cluster (``wait_replicas`` > 0): replication is asynchronous, so a master
killed right after a commit can take it along, and the promoted replica never counts that bill.
A notice that commits spend is therefore sent as ``EVALSHA`` + ``WAIT <replicas> <wait_ms>`` on
one connection of the key's master, and answered only after the replica has it. When ``WAIT``
reports fewer replicas after ``wait_ms``, ``ROLE`` on the same connection tells a replica that
is *down* (the master lists none: billing must not stop, the commit stands unreplicated) from
one that is *behind* (listed, not yet acknowledged): then the notice fails with
``DependencyUnavailable`` (the endpoint answers 503) although the commit was applied — the
exchange retries, and the retry is a ``duplicate`` once the replica has caught up, or commits
anew on a promoted replica that never got the first one: exactly once either way. (Measured
before this rule: 2 of 14 failover runs lost ~0.2–0.5 M micros of acknowledged bills on a loaded
VM; docs/operations.md.) If anything in the path fails (a MOVED/ASK during resharding,
NOSCRIPT, a dropped connection) the notice goes through the client's normal routing instead; the
script's dedup makes a repeat harmless.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from dsp.budget.keys import (
    click_key,
    conversions_key,
    day_key,
    outcome_bucket,
    outcomes_key,
    total_key,
)
from dsp.budget.scripts import NOTICE
from dsp.errors import DependencyUnavailable

KINDS = ("w", "b", "l")
_CHUNK = 1000
#: Outcomes stay this long after their token's expiry: the owner's final look-up (expiry +
#: settle grace) and the late re-check (600 s after a release), with minutes to spare.
KEEP_AFTER_EXPIRY_S = 900
#: A notice without a known token expiry keeps its bucket this long (tools and tests).
DEFAULT_KEEP_S = 3_600 + KEEP_AFTER_EXPIRY_S
#: The day and lifetime ledger hashes (spend) are kept three days.
LEDGER_TTL_S = 3 * 86_400


class Outcome:
    """Decoded outcome value. ``committed_micros`` is set only for committed bids."""

    __slots__ = ("committed_micros", "state")

    def __init__(self, state: str, committed_micros: int = 0) -> None:
        self.state = state  # "" | "W" | "L" | "C"
        self.committed_micros = committed_micros

    @classmethod
    def decode(cls, raw: bytes | None) -> Outcome:
        if raw and raw[:1].isdigit():  # <kinds seen><outcome>
            raw = raw[1:]
        if not raw:
            return cls("")
        if raw[:1] == b"C":
            try:
                return cls("C", int(raw[1:]))
            except ValueError:
                return cls("")
        return cls(raw[:1].decode("ascii", "replace"))


class OutcomeStore:
    def __init__(self, redis: Any, *, ttl_s: int = LEDGER_TTL_S, wait_replicas: int = 0,
                 wait_ms: int = 100) -> None:
        self._redis = redis
        self._script = redis.register_script(NOTICE)
        self.ttl_s = ttl_s  # the day ledger's TTL (commits refresh it)
        self.wait_replicas = wait_replicas
        self.wait_ms = wait_ms

    @staticmethod
    def keep_s(expires_at_s: float | None, now_s: float) -> int:
        """Seconds the outcome of a bid whose token expires at ``expires_at_s`` must still be
        kept, from ``now_s``: to the expiry, plus :data:`KEEP_AFTER_EXPIRY_S`."""
        if expires_at_s is None:
            return DEFAULT_KEEP_S
        return max(0, math.ceil(expires_at_s - now_s)) + KEEP_AFTER_EXPIRY_S

    async def record(self, campaign_id: str, day: int, bid_id: str, kind: str, price_micros: int,
                     *, commits: bool, issued_at_s: float | None = None,
                     expires_at_s: float | None = None) -> tuple[str, int]:
        """Apply one win (``w``), bill (``b``) or loss (``l``) notice atomically.

        ``day`` is the campaign day of the bid (its spend goes there); ``issued_at_s`` (the
        token's; now when omitted) picks the outcome bucket, ``expires_at_s`` (the token's) how
        long the outcome is kept. Returns (result, committed micros); result is ok | duplicate |
        early | late | out_of_order | ignored. A duplicate changes nothing.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown notice kind {kind!r}")
        now = time.time()
        bucket = outcome_bucket(now if issued_at_s is None else issued_at_s)
        keys = [day_key(campaign_id, day), total_key(campaign_id), outcomes_key(campaign_id, bucket)]
        args = [bid_id, kind, max(0, price_micros), "1" if commits else "0",
                self.keep_s(expires_at_s, now), self.ttl_s]
        raw = None
        if commits and self.wait_replicas > 0:
            raw = await self._durable(keys, args)
        if raw is None:
            raw = await self._script(keys=keys, args=args)
        result = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        return result, int(raw[1])

    async def _durable(self, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA + WAIT on one connection of the keys' master; None: use the normal path."""
        get_node = getattr(self._redis, "get_node_from_key", None)
        if get_node is None:
            return None
        try:
            node = get_node(keys[0])
        except Exception:  # no slot map yet (a fresh client) or mid re-initialisation
            return None
        if node is None:
            return None
        conn = node.acquire_connection()
        behind = False
        try:
            await conn.send_packed_command(conn.pack_commands([
                ("EVALSHA", self._script.sha, len(keys), *keys, *args),
                ("WAIT", self.wait_replicas, self.wait_ms)]), check_health=False)
            raw = await conn.read_response()
            acked = await conn.read_response()  # the replicas that have the commit
            if int(acked) < self.wait_replicas:
                await conn.send_packed_command(conn.pack_command("ROLE"), check_health=False)
                behind = _lists_replicas(await conn.read_response())
        except Exception:
            await conn.disconnect()
            return None
        finally:
            node.release(conn)
        if behind:
            raise DependencyUnavailable(
                f"commit not on a replica after {self.wait_ms} ms (replica behind); retry")
        return raw

    async def record_click(self, click_id: str, record: bytes, ttl_s: int) -> bool:
        """Store a click's record under its id, first click wins: True the first time."""
        return bool(await self._redis.set(click_key(click_id), record, nx=True, ex=ttl_s))

    async def click(self, click_id: str) -> bytes | None:
        """The stored record of a click, or None (unknown or expired)."""
        raw = await self._redis.get(click_key(click_id))
        return bytes(raw) if raw is not None else None

    async def mark_conversion(self, campaign_id: str, day: int, marker: str, value: str,
                              ttl_s: int) -> bool:
        """Dedup for conversions (kept ``ttl_s``): True the first time ``marker`` is seen."""
        key = conversions_key(campaign_id, day)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(key, marker, value)
        pipe.expire(key, ttl_s)
        first, _ = await pipe.execute()
        return bool(first)

    async def lookup(self, campaign_id: str, buckets: int | Sequence[int],
                     bid_ids: Sequence[str]) -> list[Outcome]:
        """Outcomes of many bids, in order, in one round trip: ``buckets`` is each bid's outcome
        bucket (or one for all). HMGETs of at most ``_CHUNK`` fields per bucket, pipelined, so one
        large look-up does not hold Redis for long."""
        if not bid_ids:
            return []
        ids = list(bid_ids)
        by_bucket: dict[int, list[int]] = {}
        if isinstance(buckets, int):
            by_bucket[buckets] = list(range(len(ids)))
        else:
            for i, b in enumerate(buckets):
                by_bucket.setdefault(b, []).append(i)
        if len(by_bucket) == 1 and len(ids) <= _CHUNK:
            (bucket,) = by_bucket
            raw = await self._redis.hmget(outcomes_key(campaign_id, bucket), ids)
            return [Outcome.decode(r) for r in raw]
        pipe = self._redis.pipeline(transaction=False)
        order: list[int] = []
        for bucket, idx in by_bucket.items():
            key = outcomes_key(campaign_id, bucket)
            for i in range(0, len(idx), _CHUNK):
                part = idx[i:i + _CHUNK]
                pipe.hmget(key, [ids[j] for j in part])
                order.extend(part)
        chunks = await pipe.execute()
        out: list[Outcome] = [Outcome("")] * len(ids)
        for j, r in zip(order, (r for chunk in chunks for r in chunk), strict=True):
            out[j] = Outcome.decode(r)
        return out


def _lists_replicas(role: Any) -> bool:
    """True when a ``ROLE`` reply is a master's that lists at least one connected replica."""
    if not isinstance(role, list | tuple) or len(role) < 3:
        return False
    kind = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
    return kind == "master" and bool(role[2])
