"""Frequency caps: at most N impressions per user per campaign per rolling window.

State lives in the user's caps hash ``dsp.features.keys.caps_key(user_key)`` (same cluster slot as
the user's features, fetched in the same round trip): field = campaign id, value = ASCII
comma-separated impression timestamps in whole seconds, oldest first, trimmed on every write to
the window and to the last ``max_impressions`` entries (e.g. ``b"1732350000,1732351234"``).

* The bid path calls the pure :func:`is_capped` on the bytes it already has (no Redis call).
* The win notice calls :func:`record_impression` (one Lua script on the user's key): the write is
  per user, never to a shared hot key.
"""

from __future__ import annotations

from typing import Any

from dsp.budget.scripts import CAP_HIT
from dsp.budget.spec import FrequencyCap


def impressions_in_window(raw: bytes | None, now_s: float, window_s: int) -> int:
    """How many recorded impressions fall in ``(now_s - window_s, now_s]``. Garbage counts as 0."""
    if not raw:
        return 0
    cutoff = now_s - window_s
    n = 0
    for part in raw.split(b","):
        try:
            ts = int(part)
        except ValueError:
            continue
        if ts > cutoff:
            n += 1
    return n


def is_capped(caps: dict[str, bytes], campaign_id: str, cap: FrequencyCap, now_s: float) -> bool:
    """True when the user has already seen ``cap.max_impressions`` of this campaign in the window.

    Pure: ``caps`` is the user's caps hash as fetched (field -> raw bytes); a missing field means
    no impressions. A cap of 0 impressions caps everyone.
    """
    return impressions_in_window(caps.get(campaign_id), now_s, cap.window_s) >= cap.max_impressions


def encode_impressions(timestamps_s: list[int]) -> bytes:
    """The stored form of a list of impression timestamps (for tests and seeding)."""
    return ",".join(str(t) for t in timestamps_s).encode("ascii")


class CapRecorder:
    """Counts one impression toward a user's cap. Owns the Lua script; one instance per client."""

    def __init__(self, redis: Any, *, max_window_s: int = 7 * 86_400) -> None:
        self._script = redis.register_script(CAP_HIT)
        self._max_window_s = max_window_s

    async def record_impression(self, caps_key: str, campaign_id: str, cap: FrequencyCap,
                                now_s: float) -> int:
        """Append ``now_s`` to the campaign's field of ``caps_key``; return impressions kept."""
        keep = max(cap.max_impressions, 1)
        ttl_s = min(max(cap.window_s, 60), self._max_window_s)
        n: int = await self._script(keys=[caps_key],
                                    args=[campaign_id, int(now_s), cap.window_s, keep, ttl_s])
        return int(n)
