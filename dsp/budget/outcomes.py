"""Notice outcomes in Redis: the NOTICE script (dedup + outcome + commit) and their lookups.

Outcome of a bid (field ``<bid id>`` of ``dsp:bo:{campaign}:<day>``):

    absent     nothing heard yet
    W          won, billing notice pending (exchanges that bill on burl)
    L          lost (loss notice)
    C<micros>  committed at that clearing price (``spent`` includes it)

Dedup markers ``<bid id>|<kind>`` make every notice kind count once per bid. The bidding process
looks its outstanding bids up here (:meth:`OutcomeStore.lookup`) to commit or release them.

Durable commits on Redis Cluster (``wait_replicas`` > 0): replication is asynchronous, so a master
killed right after a commit can take it along, and the promoted replica never counts that bill.
A notice that commits spend is therefore sent as ``EVALSHA`` + ``WAIT <replicas> <wait_ms>`` on
one connection of the key's master, and answered only after the replica has it (or ``wait_ms``
has passed: a replica that is down must not stop billing; the window is then open again). If
anything in that path fails (a MOVED/ASK during resharding, NOSCRIPT, a dropped connection) the
notice goes through the client's normal routing instead; the script's dedup makes a repeat
harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dsp.budget.keys import click_key, conversions_key, day_key, outcomes_key, total_key
from dsp.budget.scripts import NOTICE

KINDS = ("w", "b", "l")
_CHUNK = 1000


class Outcome:
    """Decoded outcome value. ``committed_micros`` is set only for committed bids."""

    __slots__ = ("committed_micros", "state")

    def __init__(self, state: str, committed_micros: int = 0) -> None:
        self.state = state  # "" | "W" | "L" | "C"
        self.committed_micros = committed_micros

    @classmethod
    def decode(cls, raw: bytes | None) -> Outcome:
        if not raw:
            return cls("")
        if raw[:1] == b"C":
            try:
                return cls("C", int(raw[1:]))
            except ValueError:
                return cls("")
        return cls(raw[:1].decode("ascii", "replace"))


class OutcomeStore:
    def __init__(self, redis: Any, *, ttl_s: int = 3 * 86_400, wait_replicas: int = 0,
                 wait_ms: int = 100) -> None:
        self._redis = redis
        self._script = redis.register_script(NOTICE)
        self.ttl_s = ttl_s
        self.wait_replicas = wait_replicas
        self.wait_ms = wait_ms

    async def record(self, campaign_id: str, day: int, bid_id: str, kind: str, price_micros: int,
                     *, commits: bool) -> tuple[str, int]:
        """Apply one win (``w``), bill (``b``) or loss (``l``) notice atomically.

        Returns (result, committed micros); result is ok | duplicate | early | late |
        out_of_order | ignored. A duplicate changes nothing.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown notice kind {kind!r}")
        keys = [day_key(campaign_id, day), total_key(campaign_id), outcomes_key(campaign_id, day)]
        args = [bid_id, kind, max(0, price_micros), "1" if commits else "0", self.ttl_s]
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
        node = get_node(keys[0])
        if node is None:
            return None
        conn = node.acquire_connection()
        try:
            await conn.send_packed_command(conn.pack_commands([
                ("EVALSHA", self._script.sha, len(keys), *keys, *args),
                ("WAIT", self.wait_replicas, self.wait_ms)]), check_health=False)
            raw = await conn.read_response()
            await conn.read_response()  # the replicas that have it; fewer after wait_ms is accepted
        except Exception:
            await conn.disconnect()
            return None
        finally:
            node.release(conn)
        return raw

    async def mark_once(self, campaign_id: str, day: int, marker: str) -> bool:
        """Dedup for clicks and conversions: True the first time ``marker`` is seen."""
        key = outcomes_key(campaign_id, day)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(key, marker, "1")
        pipe.expire(key, self.ttl_s)
        first, _ = await pipe.execute()
        return bool(first)

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

    async def lookup(self, campaign_id: str, day: int, bid_ids: Sequence[str]) -> list[Outcome]:
        """Outcomes of many bids in one round trip (HMGETs of at most ``_CHUNK`` fields, pipelined,
        so one large look-up does not hold Redis for long)."""
        if not bid_ids:
            return []
        key = outcomes_key(campaign_id, day)
        ids = list(bid_ids)
        if len(ids) <= _CHUNK:
            raw = await self._redis.hmget(key, ids)
            return [Outcome.decode(r) for r in raw]
        pipe = self._redis.pipeline(transaction=False)
        for i in range(0, len(ids), _CHUNK):
            pipe.hmget(key, ids[i:i + _CHUNK])
        chunks = await pipe.execute()
        return [Outcome.decode(r) for chunk in chunks for r in chunk]
