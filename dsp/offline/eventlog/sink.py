"""``dsp events sink``: Redis streams -> hourly Parquet files, every event exactly once.

    sink = EventSink(StreamReader(redis, consumer="host-a"), Path("events"), shards=16)
    sink.run(drain=True)       # until every shard is empty; or forever (drain=False)

One batch = up to ``count`` entries of one shard (:class:`dsp.events.reader.StreamReader`):

1. decode; keep the first event of each ``event_id`` in the batch (stream order);
2. group by (kind, UTC date, UTC hour) and write one file per group, named by the batch
   (``part-<shard>-<first entry id>-<last entry id>``): write, fsync, rename, fsync the directory;
3. only then ``XACK`` the batch.

A sink killed anywhere in 1–3 restarts, gets the same batch back (own pending entries first) and
writes the same file names again: a rename replaces, never duplicates. Several sinks share the
work through the consumer group; each takes whole batches.

Ids are unique in the streams by construction (a bid event per bid id, outcome events only for
the first notice of each kind per bid, decided atomically in Redis); the per-batch check is the
guard against a writer's own mistakes, and readers of the files may rely on ``event_id`` being
unique.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from dsp.events.reader import StreamBatch, StreamReader
from dsp.events.schema import Event, kind_of
from dsp.observability.metrics import SinkMetrics
from dsp.offline.eventlog.parquet import partition_dir, partition_of, write_events

log = logging.getLogger(__name__)


class BatchResult(msgspec.Struct):
    entries: int
    events: int
    duplicates: int
    files: list[str]
    bytes: int


def _safe_id(entry_id: str) -> str:
    return entry_id.replace("-", "_")


class EventSink:
    def __init__(self, reader: StreamReader, root: Path, *, shards: int = 16,
                 metrics: SinkMetrics | None = None,
                 after_write: Callable[[StreamBatch], None] | None = None) -> None:
        self.reader = reader
        self.root = root
        self.shards = shards
        self.metrics = metrics
        self._after_write = after_write  # test hook: runs between the renames and the XACK
        self.totals = BatchResult(0, 0, 0, [], 0)

    def process(self, batch: StreamBatch) -> BatchResult:
        """Write one batch durably, then acknowledge it."""
        t0 = time.monotonic()
        seen: set[str] = set()
        groups: dict[tuple[str, str, int], list[Event]] = {}
        duplicates: dict[str, int] = {}
        for ev in batch.events:
            eid = ev.event_id
            kind = kind_of(ev)
            if eid in seen:
                duplicates[kind] = duplicates.get(kind, 0) + 1
                continue
            seen.add(eid)
            date, hour = partition_of(ev.ts_us)
            groups.setdefault((kind, date, hour), []).append(ev)
        name = f"part-{batch.shard:02d}-{_safe_id(batch.first_id)}-{_safe_id(batch.last_id)}"
        files: list[str] = []
        size = 0
        written: dict[str, int] = {}
        for (kind, date, hour), events in sorted(groups.items()):
            path, n_bytes = write_events(self.root, kind, date, hour, name, events)
            files.append(str(path))
            size += n_bytes
            written[kind] = written.get(kind, 0) + len(events)
            self._observe_file(kind, n_bytes, len(events), date, hour)
        if self._after_write is not None:
            self._after_write(batch)
        self.reader.ack(batch)
        if batch.rejected or batch.lost:
            log.warning("sink: %d entries rejected, %d lost (trimmed) in %s",
                        batch.rejected, batch.lost, batch.key)
        result = BatchResult(len(batch.ids), len(seen), sum(duplicates.values()), files, size)
        m = self.metrics
        if m is not None:
            for kind, n in duplicates.items():
                m.duplicates.labels(kind).inc(n)
            m.entries.labels("ok").inc(len(batch.ids) - batch.rejected - batch.lost)
            if batch.rejected:
                m.entries.labels("rejected").inc(batch.rejected)
            if batch.lost:
                m.entries.labels("lost").inc(batch.lost)
            m.batch_seconds.observe(time.monotonic() - t0)
        t = self.totals
        t.entries += result.entries
        t.events += result.events
        t.duplicates += result.duplicates
        t.files.extend(files)
        t.bytes += size
        return result

    def _observe_file(self, kind: str, n_bytes: int, n_events: int, date: str, hour: int) -> None:
        m = self.metrics
        if m is None:
            return
        m.events.labels(kind).inc(n_events)
        m.files.labels(kind).inc()
        m.bytes.labels(kind).inc(n_bytes)
        directory = partition_dir(self.root, kind, date, hour)
        m.partition_files.labels(kind).set(
            sum(1 for p in directory.iterdir() if p.suffix == ".parquet"))

    def step(self) -> int:
        """One pass over every shard: at most one batch each. Returns entries processed."""
        done = 0
        for shard in range(self.shards):
            batch = self.reader.next_batch(shard)
            if batch is not None:
                done += self.process(batch).entries
        return done

    def observe_lag(self) -> None:
        m = self.metrics
        if m is None:
            return
        for shard in range(self.shards):
            lag = self.reader.lag(shard)
            m.lag_entries.labels(lag.key).set(lag.lag_entries)
            m.pending_entries.labels(lag.key).set(lag.pending_entries)
            m.oldest_age_seconds.labels(lag.key).set(lag.oldest_unread_s)

    def run(self, *, drain: bool = False, idle_sleep_s: float = 0.2,
            should_stop: Callable[[], bool] = lambda: False, lag_every_s: float = 5.0) -> BatchResult:
        """Process batches until stopped; with ``drain``, until a pass over every shard finds
        nothing (an empty stream: returns at once, having written nothing)."""
        next_lag = 0.0
        while not should_stop():
            done = self.step()
            if time.monotonic() >= next_lag:
                self.observe_lag()
                next_lag = time.monotonic() + lag_every_s
            if done == 0:
                if drain:
                    break
                time.sleep(idle_sleep_s)
        return self.totals
