"""The consumer side of the event streams: read a batch, acknowledge it, report lag.

    reader = StreamReader(redis.Redis.from_url(url), consumer="sink-a")
    batch = reader.next_batch(shard)          # StreamBatch | None
    ...write it durably...
    reader.ack(batch)

Delivery rules that make the sink exactly-once (with :mod:`dsp.offline.eventlog.sink`):

1. A consumer first re-reads **its own pending entries** (``XREADGROUP … 0``): after a crash, a
   restarted sink with the same name gets back exactly the batch it had not acknowledged, in the
   same order and the same size (it never reads a new batch of a shard before acking the last).
2. Then it claims entries pending for longer than ``claim_idle_ms`` at other consumers
   (``XAUTOCLAIM``): a sink that never comes back hands its batch over, whole.
3. Only then it reads new entries (``>``).

Entries trimmed from the stream before they were read (MAXLEN reached while no sink ran) come
back without fields; they are counted as ``lost`` and acknowledged.
Uses the synchronous redis-py client: the sink is a batch process, not the bid path.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from dsp.events.codec import FIELD_COUNT, decode_entry
from dsp.events.keys import GROUP, stream_key
from dsp.events.schema import AnyEvent


class StreamBatch(msgspec.Struct):
    """Entries of one shard read together. ``events`` keeps stream order; ``rejected`` counts
    entries that could not be decoded (kept out, acknowledged, logged by the sink)."""

    shard: int
    key: str
    ids: list[bytes]
    events: list[AnyEvent]
    rejected: int = 0
    lost: int = 0
    source: str = "new"  # own-pending | claimed | new

    @property
    def first_id(self) -> str:
        return self.ids[0].decode()

    @property
    def last_id(self) -> str:
        return self.ids[-1].decode()


class StreamLag(msgspec.Struct):
    key: str
    lag_entries: int  # entries not yet delivered to the group (-1 when Redis cannot tell)
    pending_entries: int  # delivered, not acknowledged
    oldest_unread_s: float  # age of the oldest undelivered entry (0 when none)


def _ms_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


class StreamReader:
    def __init__(self, redis: Any, consumer: str, *, count: int = 64,
                 claim_idle_ms: int = 60_000) -> None:
        self._redis = redis
        self.consumer = consumer
        self.count = count
        self.claim_idle_ms = claim_idle_ms
        self._groups: set[str] = set()

    def ensure_group(self, key: str) -> None:
        if key in self._groups:
            return
        try:
            self._redis.xgroup_create(key, GROUP, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(key)

    def next_batch(self, shard: int) -> StreamBatch | None:
        key = stream_key(shard)
        self.ensure_group(key)
        r = self._redis
        raw = r.xreadgroup(GROUP, self.consumer, {key: "0"}, count=self.count)
        entries = raw[0][1] if raw else []
        source = "own-pending"
        if not entries:
            claimed = r.xautoclaim(key, GROUP, self.consumer, self.claim_idle_ms, "0-0",
                                   count=self.count)
            entries = claimed[1] if claimed else []
            source = "claimed"
        if not entries:
            raw = r.xreadgroup(GROUP, self.consumer, {key: ">"}, count=self.count)
            entries = raw[0][1] if raw else []
            source = "new"
        if not entries:
            return None
        batch = StreamBatch(shard=shard, key=key, ids=[], events=[], source=source)
        for entry_id, fields in entries:
            batch.ids.append(entry_id)
            if not fields:
                batch.lost += 1
                continue
            try:
                batch.events.extend(decode_entry(fields))
            except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
                batch.rejected += 1
        return batch

    def ack(self, batch: StreamBatch) -> None:
        """Acknowledge the whole batch in one XACK (atomic: all or none)."""
        if batch.ids:
            self._redis.xack(batch.key, GROUP, *batch.ids)

    def lag(self, shard: int, now_ms: int | None = None) -> StreamLag:
        key = stream_key(shard)
        self.ensure_group(key)
        r = self._redis
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        lag, pending, last = -1, 0, b"0-0"
        for group in r.xinfo_groups(key):
            name = group.get("name")
            if name in (GROUP, GROUP.encode()):
                lag_value = group.get("lag")
                lag = int(lag_value) if lag_value is not None else -1
                pending = int(group.get("pending", 0))
                last = group.get("last-delivered-id", b"0-0")
        oldest = 0.0
        after = r.xrange(key, min=b"(" + (last if isinstance(last, bytes) else last.encode()),
                         count=1)
        if after:
            oldest = max(0.0, (now_ms - _ms_of(after[0][0])) / 1000.0)
        return StreamLag(key, lag, pending, oldest)

    def entry_events(self, fields: dict[bytes, bytes]) -> int:
        """The event count an entry declares (without decoding it)."""
        try:
            return int(fields.get(FIELD_COUNT, b"0"))
        except ValueError:
            return 0
