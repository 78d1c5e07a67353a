"""Multi-process Prometheus setup: N bidder processes, one ``/metrics`` that sums them all.

prometheus-client picks its value storage when the first collector is built, from the
``PROMETHEUS_MULTIPROC_DIR`` environment variable. ``dsp serve`` therefore calls
:func:`enable_multiprocess` in the parent *before* it starts workers (``clean=True`` wipes files
left by an earlier run: stale counters would otherwise be added to the new ones); workers inherit
the variable. Any process may serve ``/metrics``: :func:`dsp.observability.metrics.render`
aggregates every process's files. When a worker exits, call :func:`mark_worker_dead` so its
``livesum`` gauges (in-flight requests) stop counting.

    enable_multiprocess("/tmp/dsp-prom", clean=True)   # parent, before forking/spawning workers
    ...
    mark_worker_dead(pid)                              # parent, after a worker exited
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client import values as prom_values

ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable_multiprocess(path: str | os.PathLike[str], *, clean: bool) -> Path:
    """Create ``path``, optionally delete old ``*.db`` files, and switch this process to it.

    Safe to call after prometheus_client was imported: the value class is re-selected, so
    collectors built *after* this call write to ``path``. Returns the directory.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    if clean:
        for f in directory.glob("*.db"):
            f.unlink(missing_ok=True)
    os.environ[ENV] = str(directory)
    prom_values.ValueClass = prom_values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def multiprocess_dir() -> Path | None:
    """The active multiprocess directory, or None in single-process mode."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (no-op in single-process mode)."""
    directory = multiprocess_dir()
    if directory is not None:
        prom_multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
