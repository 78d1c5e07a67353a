"""Redis key layout of the money side. Every key of one campaign shares the hash tag ``{<id>}``.

One campaign's keys live on one Redis Cluster slot, so one Lua script may touch all of them::

    dsp:bd:{c42}:20415     day ledger hash (campaign-local day number, days since 1970-01-01):
                           budget, pinned, out (money held by live leases), spent (committed),
                           lease:<lease id> (micros held), lexp:<lease id> (expiry, Redis ms),
                           plan / plan_ms / allow (the plan guard: plan-to-date, its last advance
                           in Redis ms, the allowance)
    dsp:bt:{c42}           lifetime hash: budget (total, if any), out, spent
    dsp:bp:{c42}           pacing state "λ throttle value_floor" (continued by restarts, new
                           workers and the next day)
    dsp:bo:{c42}:h490608   notice outcomes of the bids issued in that UTC hour (hours since
                           the epoch): <bid id> -> <kinds seen><W | L | C<micros>>, one field
                           per bid (dsp.budget.outcomes); the key expires whole, shortly after
                           the last of its bids' notice tokens
    dsp:bc:{c42}:20415     conversion dedup markers <bid id>|<event> of that day's bids
    dsp:ck:{<click id>}    one click: campaign, day, bid id, times (msgpack; the conversion that
                           names the click id reads it). Its own slot: looked up by click id alone.

The day of a bid is the campaign-local day of the token's ``issued_at_s``, so a notice arriving
after midnight still settles against the day its bid was made; its outcome bucket is the UTC
hour of the same ``issued_at_s`` (:func:`outcome_bucket`), known to the notice (the token) and to
the bidding process (the reservation) alike.
"""

from __future__ import annotations

SECONDS_PER_DAY = 86_400
#: Width of an outcome bucket: bids issued in one UTC hour share one hash, which expires whole.
OUTCOME_BUCKET_S = 3_600


def campaign_day(now_s: float, utc_offset_minutes: int) -> int:
    """Campaign-local day number (days since the epoch in the campaign's time zone)."""
    return int((now_s + utc_offset_minutes * 60) // SECONDS_PER_DAY)


def day_key(campaign_id: str, day: int) -> str:
    return f"dsp:bd:{{{campaign_id}}}:{day}"


def total_key(campaign_id: str) -> str:
    return f"dsp:bt:{{{campaign_id}}}"


def pacing_key(campaign_id: str) -> str:
    return f"dsp:bp:{{{campaign_id}}}"


def outcome_bucket(issued_at_s: float) -> int:
    """The outcome bucket of a bid issued at ``issued_at_s``: its UTC hour since the epoch. The
    same for the token's integer ``issued_at_s`` and the float it was truncated from."""
    return int(issued_at_s // OUTCOME_BUCKET_S)


def outcomes_key(campaign_id: str, bucket: int) -> str:
    """The outcomes of the campaign's bids issued in ``bucket`` (:func:`outcome_bucket`)."""
    return f"dsp:bo:{{{campaign_id}}}:h{bucket}"


def conversions_key(campaign_id: str, day: int) -> str:
    """Conversion dedup markers ``<bid id>|<event>`` of that day's bids (long TTL)."""
    return f"dsp:bc:{{{campaign_id}}}:{day}"


def click_key(click_id: str) -> str:
    """The record of one click, found by the click id the landing page received."""
    return f"dsp:ck:{{{click_id}}}"
