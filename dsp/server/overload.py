"""Overload sheds, it does not queue: which bid requests get the cheapest no-bid instead of a bid.

    guard = LoadGuard()                     # one per worker, built by the app
    guard.start()                           # inside the event loop: the lag probe
    reason = guard.shed_reason(age_s, budget_s, inflight)   # None: answer it properly

When a worker receives more than it can process, requests wait: in the kernel's socket buffers
while the event loop is busy, in the front's buffers, in the audience micro-batch queue. Answering
them all makes every answer late, and an exchange drops a bidder whose answers come after tmax.
So a request is answered with a 204 before it is decoded (a few µs instead of ~70 µs of work)
when any of these holds:

* ``late``  — it has already waited more than ``late_share`` of its budget (``age_s`` counts from
  when its first bytes were read: the transports pass that time as ``t0``);
* ``lag``   — the event loop is behind: its sustained lag (how late a 10 ms timer fires, the
  smallest of the last three probes: about how long bytes now sit unread in the kernel; one
  stall, a garbage collection or a neighbour taking the CPU, does not count) exceeds
  ``lag_share`` of the budget, or the request's wait plus that lag exceeds ``late_share``. Why a
  share as small as 0.15: a request needs several turns of the loop (read and prepare, the
  audience batch's Redis reply, the model run, the write), each as long as the lag; waiting
  until one turn alone costs half the budget lets every answer arrive late (measured: at 1.5x
  capacity 0% shed and 12–40% of answers after tmax with ``late_share`` alone; docs/operations.md).
  While the lag is above the target every new request is shed (a few µs each), which shortens the
  turns until the lag is back under it: the policy of CoDel, applied to the loop;
* ``queue`` — ``max_inflight`` requests are already inside the bid flow (waiting for audience
  batches: a backlog that every new request would join).

Shedding frees the CPU that the rest needs, so what is answered arrives inside tmax; the shed
share and reasons are counted (``dsp_shed_total{reason}``, ``dsp_nobids_total{reason=overloaded}``)
and on the dashboard. ``docs/operations.md`` has the measurements at 1.5x and 2x capacity.
"""

from __future__ import annotations

import asyncio

from dsp.clock import monotonic

PROBE_INTERVAL_S = 0.01


class LoadGuard:
    """Shedding policy of one worker (module docstring). Not thread-safe: one event loop."""

    __slots__ = ("_expected_s", "_handle", "_recent", "enabled", "lag_s", "lag_share",
                 "late_share", "max_inflight", "max_lag_s")

    def __init__(self, *, late_share: float = 0.5, lag_share: float = 0.15,
                 max_inflight: int = 1024, enabled: bool = True) -> None:
        if not 0.0 < late_share <= 1.0 or not 0.0 < lag_share <= late_share or max_inflight < 1:
            raise ValueError("0 < lag_share <= late_share <= 1 and max_inflight >= 1 required")
        self.enabled = enabled  # False: never shed (tests of pipelining, A/B measurements)
        self.late_share = late_share
        self.lag_share = lag_share
        self.max_inflight = max_inflight
        self.lag_s = 0.0  # sustained lag: the smallest of the last three probes
        self._recent = [0.0, 0.0, 0.0]
        self.max_lag_s = 0.0  # worst probe since the last read_max_lag() (for the gauge)
        self._handle: asyncio.TimerHandle | None = None
        self._expected_s = 0.0

    def shed_reason(self, age_s: float, budget_s: float, inflight: int) -> str | None:
        """Why this request should be shed now, or None to process it. ``age_s``: seconds since
        its first bytes were read; ``budget_s``: its deadline budget (tmax minus allowances)."""
        if not self.enabled:
            return None
        limit_s = budget_s * self.late_share
        if age_s > limit_s:
            return "late"
        lag_s = self.lag_s
        if lag_s > budget_s * self.lag_share or age_s + lag_s > limit_s:
            return "lag"
        if inflight >= self.max_inflight:
            return "queue"
        return None

    # -- the lag probe ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start probing the loop's lag every 10 ms (about 0.02% of a core)."""
        self._expected_s = monotonic() + PROBE_INTERVAL_S
        self._handle = asyncio.get_running_loop().call_later(PROBE_INTERVAL_S, self._probe)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _probe(self) -> None:
        now = monotonic()
        lag = max(0.0, now - self._expected_s)
        recent = self._recent
        recent.pop(0)
        recent.append(lag)
        self.lag_s = min(recent)
        if lag > self.max_lag_s:
            self.max_lag_s = lag
        self._expected_s = now + PROBE_INTERVAL_S
        self._handle = asyncio.get_running_loop().call_later(PROBE_INTERVAL_S, self._probe)

    def read_max_lag(self) -> float:
        """The worst lag since the last call (the metrics flush reads it once a second)."""
        worst, self.max_lag_s = self.max_lag_s, self.lag_s
        return worst
