"""Time: one monotonic clock for deadlines, wall-clock seconds for tokens and budgets.

A :class:`Deadline` is created once per request from ``tmax`` and passed down; every await on the
hot path asks it for ``remaining_s()`` and gives up (no-bid) when it is spent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

#: Rehearsals and tests only: shift this process's wall clock by this many seconds (e.g. to run
#: a campaign's midnight inside a one-minute test). Everything that reads wall time (budgets,
#: pacing, notice tokens) goes through :data:`wall_time`, so the process stays consistent with
#: itself; Redis-side lease expiry uses Redis ``TIME`` and is unaffected. Every process that
#: issues or checks tokens must run with the same offset. ``dsp serve`` warns when it is set.
CLOCK_OFFSET_ENV = "DSP_CLOCK_OFFSET_S"
CLOCK_OFFSET_S = float(os.environ.get(CLOCK_OFFSET_ENV, "0") or 0)

monotonic = time.monotonic
wall_time: Callable[[], float] = time.time
if CLOCK_OFFSET_S:
    def wall_time() -> float:
        return time.time() + CLOCK_OFFSET_S


class Deadline:
    """An absolute point on the monotonic clock.

    >>> d = Deadline.after_ms(50.0)
    >>> 0.0 < d.remaining_s() <= 0.05
    True
    """

    __slots__ = ("at_s",)

    def __init__(self, at_s: float) -> None:
        self.at_s = at_s

    @classmethod
    def after_ms(cls, budget_ms: float, *, start_s: float | None = None) -> Deadline:
        start = monotonic() if start_s is None else start_s
        return cls(start + budget_ms / 1000.0)

    def remaining_s(self) -> float:
        """Seconds left (negative once expired)."""
        return self.at_s - monotonic()

    def expired(self) -> bool:
        return monotonic() >= self.at_s

    def __repr__(self) -> str:
        return f"Deadline(remaining_ms={self.remaining_s() * 1000:.2f})"
