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
    dsp:bo:{c42}:20415     notice outcomes of that day's bids: <bid id> -> W | L | C<micros>,
                           and <bid id>|<kind> dedup markers (kinds w b l)
    dsp:bc:{c42}:20415     conversion dedup markers <bid id>|<event> of that day's bids
    dsp:ck:{<click id>}    one click: campaign, day, bid id, times (msgpack; the conversion that
                           names the click id reads it). Its own slot: looked up by click id alone.

The day of a bid is the campaign-local day of the token's ``issued_at_s``, so a notice arriving
after midnight still settles against the day its bid was made.
"""

from __future__ import annotations

SECONDS_PER_DAY = 86_400


def campaign_day(now_s: float, utc_offset_minutes: int) -> int:
    """Campaign-local day number (days since the epoch in the campaign's time zone)."""
    return int((now_s + utc_offset_minutes * 60) // SECONDS_PER_DAY)


def day_key(campaign_id: str, day: int) -> str:
    return f"dsp:bd:{{{campaign_id}}}:{day}"


def total_key(campaign_id: str) -> str:
    return f"dsp:bt:{{{campaign_id}}}"


def pacing_key(campaign_id: str) -> str:
    return f"dsp:bp:{{{campaign_id}}}"


def outcomes_key(campaign_id: str, day: int) -> str:
    return f"dsp:bo:{{{campaign_id}}}:{day}"


def conversions_key(campaign_id: str, day: int) -> str:
    """Conversion dedup markers ``<bid id>|<event>`` of that day's bids (long TTL)."""
    return f"dsp:bc:{{{campaign_id}}}:{day}"


def click_key(click_id: str) -> str:
    """The record of one click, found by the click id the landing page received."""
    return f"dsp:ck:{{{click_id}}}"
