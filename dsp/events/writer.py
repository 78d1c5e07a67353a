"""The bidder's side of the event log: append without waiting, flush once per tick.

    writer = EventWriter(redis, stats=EventStats(metrics))
    writer.start()                       # the flush task (inside the event loop)
    writer.append(BidEvent(...))         # O(1), never awaits, never raises
    await writer.stop()                  # last flush, bounded by flush_timeout_s

Contract for the bid path: :meth:`append` is a list append and a length check. When the buffer
holds ``max_buffer`` events (Redis slow or down, flushes failing), new events are dropped and
counted (``dsp_events_dropped_total{reason="buffer_full"}``); memory stays bounded at about
``max_buffer`` × ~0.5 kB. The bid path never waits for Redis.

Each tick (``tick_s``, default 20 ms) the task takes the whole buffer, packs it into entries of
at most :data:`dsp.events.codec.MAX_EVENTS_PER_ENTRY` events and sends them in one pipeline of
``XADD dsp:ev:{NN} MAXLEN ~ maxlen_entries * v n e`` to the next shard (``NN`` rotates per flush so
the shards fill evenly and a Redis Cluster spreads them). A flush that fails or takes longer than
``flush_timeout_s`` counts its events as dropped (``reason="redis_error"``): they are not retried,
because a timed-out XADD may have been applied and a retry would duplicate it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

from dsp.events.codec import MAX_EVENTS_PER_ENTRY, encode_entry
from dsp.events.keys import DEFAULT_SHARDS, stream_key
from dsp.events.schema import Event, kind_of

log = logging.getLogger(__name__)

#: Entries kept per shard stream (approximate trimming): the buffer that covers a sink outage.
#: One entry is one process's tick (20 ms) of events, so 16 shards × 2,000 entries hold about
#: 32,000 ticks (10 process-minutes); the sink normally keeps the streams near empty. Sizing for
#: a fleet (and the memory it takes): docs/operations.md.
DEFAULT_MAXLEN_ENTRIES = 2_000


class EventStats:
    """Counters the writer keeps (plain ints on the hot path) and flushes into Prometheus.

    ``metrics`` is a :class:`dsp.observability.metrics.Metrics` (or None in tools and tests)."""

    __slots__ = ("dropped_buffer", "dropped_redis", "flushes", "metrics", "written")

    def __init__(self, metrics: Any = None) -> None:
        self.metrics = metrics
        self.dropped_buffer = 0
        self.dropped_redis = 0
        self.flushes = 0
        self.written: dict[str, int] = {}

    def publish(self, buffered: int) -> None:
        m = self.metrics
        if m is None:
            return
        if self.dropped_buffer:
            m.events_dropped.labels("buffer_full").inc(self.dropped_buffer)
            self.dropped_buffer = 0
        if self.dropped_redis:
            m.events_dropped.labels("redis_error").inc(self.dropped_redis)
            self.dropped_redis = 0
        for kind, n in self.written.items():
            m.events_written.labels(kind).inc(n)
        self.written = {}
        m.events_buffered.set(buffered)


class EventWriter:
    """Buffered stream writer; one per process (module docstring)."""

    __slots__ = ("_buf", "_redis", "_shard", "_stopping", "_task", "flush_timeout_s", "max_buffer",
                 "maxlen_entries", "shards", "stats", "tick_s", "total_dropped", "total_written")

    def __init__(self, redis: Any, *, stats: EventStats | None = None, shards: int = DEFAULT_SHARDS,
                 max_buffer: int = 200_000, maxlen_entries: int = DEFAULT_MAXLEN_ENTRIES,
                 tick_s: float = 0.02, flush_timeout_s: float = 1.0,
                 first_shard: int | None = None) -> None:
        if shards < 1 or max_buffer < 1 or maxlen_entries < 1 or tick_s <= 0:
            raise ValueError("shards, max_buffer, maxlen_entries and tick_s must be positive")
        self._redis = redis
        self.stats = stats if stats is not None else EventStats()
        self.shards = shards
        self.max_buffer = max_buffer
        self.maxlen_entries = maxlen_entries
        self.tick_s = tick_s
        self.flush_timeout_s = flush_timeout_s
        self._buf: list[Event] = []
        self._shard = random.randrange(shards) if first_shard is None else first_shard % shards
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.total_written = 0
        self.total_dropped = 0

    def append(self, event: Event) -> None:
        """Queue one event. Never awaits, never raises; drops (counted) when the buffer is full."""
        buf = self._buf
        if len(buf) < self.max_buffer:
            buf.append(event)
        else:
            self.stats.dropped_buffer += 1
            self.total_dropped += 1

    def extend(self, events: Sequence[Event]) -> None:
        for event in events:
            self.append(event)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="events-flush")

    async def stop(self) -> None:
        """Stop the tick and flush what is buffered (bounded by ``flush_timeout_s``).

        The loop also checks a flag: on Python 3.11 a cancellation that arrives just as an
        awaited Redis reply completes can be lost, and the task would tick on forever."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=self.tick_s + self.flush_timeout_s + 1.0)
            if not task.done():
                log.warning("event flush task did not stop")
        await self.flush()
        self.stats.publish(0)

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.tick_s)
            try:
                await self.flush()
            except Exception:  # never let the task die: the next tick tries again
                log.exception("event flush failed")

    async def flush(self) -> int:
        """Send everything buffered now in one pipeline. Returns the number of events written."""
        events = self._buf
        if not events:
            self.stats.publish(0)
            return 0
        self._buf = []
        key = stream_key(self._shard)
        self._shard = (self._shard + 1) % self.shards
        written: dict[str, int] = {}
        for event in events:
            kind = kind_of(event)
            written[kind] = written.get(kind, 0) + 1
        pipe = self._redis.pipeline(transaction=False)
        for i in range(0, len(events), MAX_EVENTS_PER_ENTRY):
            pipe.xadd(key, encode_entry(events[i:i + MAX_EVENTS_PER_ENTRY]),
                      maxlen=self.maxlen_entries, approximate=True)
        stats = self.stats
        try:
            async with asyncio.timeout(self.flush_timeout_s):  # not wait_for: see stop()
                await pipe.execute()
        except Exception as exc:  # timeout or Redis error: drop, count, carry on
            stats.dropped_redis += len(events)
            self.total_dropped += len(events)
            log.warning("event flush dropped %d events: %s", len(events), type(exc).__name__)
            stats.publish(len(self._buf))
            return 0
        stats.flushes += 1
        for kind, n in written.items():
            stats.written[kind] = stats.written.get(kind, 0) + n
        self.total_written += len(events)
        stats.publish(len(self._buf))
        return len(events)
