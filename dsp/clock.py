"""Time: one monotonic clock for deadlines, wall-clock seconds for tokens and budgets.

A :class:`Deadline` is created once per request from ``tmax`` and passed down; every await on the
hot path asks it for ``remaining_s()`` and gives up (no-bid) when it is spent.
"""

from __future__ import annotations

import time

monotonic = time.monotonic
wall_time = time.time


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
