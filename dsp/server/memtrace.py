"""Debug hook: what grows in a worker's heap, from tracemalloc snapshots diffed over time.

Off unless ``DSP_DEBUG_TRACEMALLOC`` names a directory (``loadtest/soak.py --tracemalloc`` sets
it); never enable it in production: tracing every allocation slows the worker 2-3x and each
report blocks its event loop for a second or more.

    DSP_DEBUG_TRACEMALLOC=/tmp/mt            # where reports go (one file per worker pid)
    DSP_DEBUG_TRACEMALLOC_BASE_S=180         # the base snapshot, this long after start (warm-up)
    DSP_DEBUG_TRACEMALLOC_S=60               # then a report against the base this often
    DSP_DEBUG_TRACEMALLOC_FRAMES=8           # frames kept per allocation

Each report (``memtrace-<pid>.json``, rewritten) holds the traced total at the base and now, the
allocation sites (grouped by traceback) that grew most since the base, the Python object types
whose live count grew most (``gc.get_objects``), and the number of asyncio tasks: enough to name
what grows with numbers instead of guessing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import logging
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV_DIR = "DSP_DEBUG_TRACEMALLOC"
TOP = 25


def _type_counts() -> collections.Counter[str]:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


class MemTrace:
    """One worker's tracer (module docstring). ``start()`` inside the event loop."""

    def __init__(self, directory: Path, *, base_after_s: float = 180.0, every_s: float = 60.0,
                 frames: int = 8) -> None:
        self.path = directory / f"memtrace-{os.getpid()}.json"
        self.base_after_s = base_after_s
        self.every_s = every_s
        self.frames = frames
        self._base: tracemalloc.Snapshot | None = None
        self._base_types: collections.Counter[str] = collections.Counter()
        self._base_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._filters = [tracemalloc.Filter(False, tracemalloc.__file__),
                         tracemalloc.Filter(False, __file__)]

    @classmethod
    def from_env(cls) -> MemTrace | None:
        directory = os.environ.get(ENV_DIR, "")
        if not directory:
            return None
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, base_after_s=float(os.environ.get(f"{ENV_DIR}_BASE_S", "180")),
                   every_s=float(os.environ.get(f"{ENV_DIR}_S", "60")),
                   frames=int(os.environ.get(f"{ENV_DIR}_FRAMES", "8")))

    def start(self) -> None:
        log.warning("tracemalloc debug hook on (slow; never in production)",
                    extra={"fields": {"report": str(self.path)}})
        tracemalloc.start(self.frames)
        self._task = asyncio.create_task(self._run(), name="memtrace")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        tracemalloc.stop()

    async def _run(self) -> None:
        await asyncio.sleep(self.base_after_s)
        gc.collect()
        self._base = tracemalloc.take_snapshot().filter_traces(self._filters)
        self._base_types = _type_counts()
        self._base_at = time.monotonic()
        while True:
            await asyncio.sleep(self.every_s)
            try:
                self.report()
            except Exception:  # a debug aid must not take the worker down
                log.exception("memtrace report failed")

    def report(self) -> dict[str, Any]:
        """Diff the heap now against the base; write and return the report."""
        assert self._base is not None
        gc.collect()
        snap = tracemalloc.take_snapshot().filter_traces(self._filters)
        diff = snap.compare_to(self._base, "traceback")
        types = _type_counts()
        grown_types = sorted(((n - self._base_types.get(t, 0), t, n) for t, n in types.items()),
                             reverse=True)[:TOP]
        out = {
            "pid": os.getpid(),
            "minutes_since_base": round((time.monotonic() - self._base_at) / 60, 2),
            "traced_base_mb": round(sum(s.size for s in self._base.statistics("filename")) / 2**20,
                                    3),
            "traced_now_mb": round(sum(s.size for s in snap.statistics("filename")) / 2**20, 3),
            "asyncio_tasks": len(asyncio.all_tasks()),
            "sites": [{"size_diff_kb": round(d.size_diff / 1024, 1), "count_diff": d.count_diff,
                       "size_kb": round(d.size / 1024, 1),
                       "traceback": [f"{f.filename}:{f.lineno}" for f in d.traceback]}
                      for d in diff[:TOP]],
            "types": [{"type": t, "grown": g, "now": n} for g, t, n in grown_types],
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(self.path)
        return out
