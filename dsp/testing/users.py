"""Feature rows and requests shared by the end-to-end tests (never imported by the bid path)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from dsp.features.contract import DEFAULTS, FEATURE_INDEX
from dsp.features.writer import write_rows


def interested_user_row() -> npt.NDArray[np.float32]:
    """A (1, N_FEATURES) row the shipped models score as interested with moderate risk: both demo
    campaigns' gates pass, so a desktop banner request for this user gets a bid."""
    row = np.asarray(DEFAULTS, dtype=np.float32).copy()
    row[FEATURE_INDEX["loan_app_installs"]] = 6
    row[FEATURE_INDEX["lenders_applied_30d"]] = 2
    row[FEATURE_INDEX["applications_7d"]] = 2
    row[FEATURE_INDEX["late_night_share"]] = 0.3
    return row.reshape(1, -1)


def seed_interested(redis_url: str, *user_ids: str) -> None:
    """Write :func:`interested_user_row` for each raw id into the Redis at ``redis_url`` (keyed
    with the development user-hash key, as an in-process bidder under test reads them)."""
    import redis as sync_redis

    r = sync_redis.Redis.from_url(redis_url)
    try:
        write_rows(r, list(user_ids), np.repeat(interested_user_row(), len(user_ids), axis=0))
    finally:
        r.close()


def desktop_banner_request(request_id: str, user_id: str, **extra: Any) -> dict[str, Any]:
    """A plain OpenRTB 2.6 site request: one 300x250 imp (floor 0.5 USD), a US desktop user."""
    req: dict[str, Any] = {
        "id": request_id, "tmax": 200,
        "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}],
        "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
        "device": {"devicetype": 2, "os": "Windows", "geo": {"country": "USA"}},
        "user": {"id": user_id}}
    req.update(extra)
    return req
