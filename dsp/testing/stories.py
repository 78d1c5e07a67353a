"""Read the story fixtures (``tests/fixtures/bidding/*.json``): the resolved user as an Audience.

A story's ``user`` is ``{"known": true, "p_intent": .., "pd": .., "scores": {..}, "caps": {..}}``
(``scores``: gate scores of the scoring plan, optional; or unknown, with
the optional ``population`` scores); tests, ``benchmarks/bench_decide.py`` and docs read stories
through this one helper so the format has one reader.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dsp.bidding.audience import Audience

DEFAULT_NOW = "2026-06-01T12:00:00Z"
STORY_USER_KEY = "u:{0000000000000001}"


def story_now_s(story: dict[str, Any]) -> float:
    """The story's wall clock (``now``, ISO 8601), seconds since the epoch."""
    text = str(story.get("now", DEFAULT_NOW)).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


def audience_of(story: dict[str, Any]) -> Audience:
    """The story's resolved user: known with its scores, or unknown with the population's."""
    user = story["user"]
    pop = story.get("population", {"p_intent": 0.0, "pd": 1.0})
    caps = {k: v.encode() for k, v in user.get("caps", {}).items()}
    if user.get("known"):
        scores = {"p_intent": user["p_intent"], "pd": user["pd"], **user.get("scores", {})}
        return Audience(STORY_USER_KEY, True, user["p_intent"], user["pd"], caps,
                        scores if user.get("scores") else {})
    return Audience("", False, pop["p_intent"], pop["pd"], caps)
