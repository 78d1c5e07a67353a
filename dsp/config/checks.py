"""Cross-field and cross-file checks that a single Struct cannot express. Pure: returns problems."""

from __future__ import annotations

import urllib.parse

from dsp.config.clickthrough import split_clickthroughs
from dsp.config.loader import RawConfig
from dsp.errors import ConfigProblem
from dsp.exchanges.profile import auth_problems


def cross_check(raw: RawConfig) -> list[ConfigProblem]:
    """Every problem across files: currencies without a rate, unknown exchanges, bad curves, etc.

    Runs on a partial config too (files that did not parse are left out): checks that would only
    repeat a parse problem (a currency file or an exchange profile that failed) are skipped."""
    problems: list[ConfigProblem] = []
    known_cur = {raw.currencies.base, *raw.currencies.rates}
    exchanges = {e.name for e in raw.exchanges} | raw.unparsed_exchanges
    for e in raw.exchanges:
        f = raw.exchange_files[e.name]
        if raw.currencies_parsed and e.currency not in known_cur:
            problems.append(ConfigProblem(f, "currency", f"no rate for {e.currency!r} in currencies.yaml"))
        if e.auth is not None:
            problems.extend(ConfigProblem(f, path, msg) for path, msg in auth_problems(e.auth))
        sent = {"adomain", "crid", "cat", "w", "h", "adm", *e.notices}
        if e.openrtb_version == "2.6":
            sent.add("mtype")  # a 2.5 answer carries no mtype
        if e.send_cid:
            sent.add("cid")
        if e.seat:
            sent.add("seat")
        for field in e.required_bid_fields:
            if field not in sent:
                problems.append(ConfigProblem(f, "required_bid_fields",
                                              f"the exchange requires bid.{field}, which this profile "
                                              "does not send (notices, send_cid or seat)"))
    for c in raw.campaigns:
        f = raw.campaign_files[c.id]
        if raw.currencies_parsed and c.currency not in known_cur:
            problems.append(ConfigProblem(f, "currency", f"no rate for {c.currency!r} in currencies.yaml"))
        if c.pacing.mode == "curve":
            curve = c.pacing.curve or []
            if len(curve) != 24:
                problems.append(ConfigProblem(f, "pacing.curve",
                                              f"needs 24 hourly weights, got {len(curve)}"))
            elif sum(curve) <= 0:
                problems.append(ConfigProblem(f, "pacing.curve", "weights must not all be zero"))
        elif c.pacing.curve is not None:
            problems.append(ConfigProblem(f, "pacing.curve", "a curve needs mode: curve"))
        s = c.schedule
        if s.start is not None and s.end is not None and s.start > s.end:
            problems.append(ConfigProblem(f, "schedule.end", f"ends ({s.end}) before it starts ({s.start})"))
        if s.hours is not None and not s.hours:
            problems.append(ConfigProblem(f, "schedule.hours",
                                          "an empty list never bids; omit it for all hours"))
        if c.budget.total is not None and c.budget.total < c.budget.daily:
            problems.append(ConfigProblem(f, "budget.total", "total budget is below the daily budget"))
        for name in c.targeting.exchanges or ():
            if name not in exchanges:
                problems.append(ConfigProblem(f, "targeting.exchanges",
                                              f"no exchange profile named {name!r}"))
        seen: set[str] = set()
        for i, cr in enumerate(c.creatives):
            if cr.id in seen:
                problems.append(ConfigProblem(f, f"creatives[{i}].id", f"duplicate creative id {cr.id!r}"))
            seen.add(cr.id)
            if cr.format == "banner" and (cr.w is None or cr.h is None):
                problems.append(ConfigProblem(f, f"creatives[{i}]", "a banner creative needs w and h"))
            if cr.format in ("banner", "audio") and cr.markup is None:
                problems.append(ConfigProblem(f, f"creatives[{i}].markup",
                                              f"a {cr.format} creative needs markup"))
            if cr.format == "video" and cr.video is None:
                problems.append(ConfigProblem(f, f"creatives[{i}].video",
                                              "a video creative declares duration_s, title and media"))
            if cr.format == "native" and cr.native is None:
                problems.append(ConfigProblem(f, f"creatives[{i}].native",
                                              "a native creative declares titles, images and data"))
            if (cr.video is not None or cr.native is not None) and c.landing_url is None:
                problems.append(ConfigProblem(f, "landing_url", "video and native ads click through "
                                              "the click notice, which redirects to landing_url"))
            if (c.landing_url is None and cr.markup is not None
                    and len(split_clickthroughs(cr.markup, cr.format)) > 1):
                problems.append(ConfigProblem(
                    f, f"creatives[{i}].markup",
                    "has click-throughs but the campaign has no landing_url (clicks go through "
                    "/notice/click to the landing_url)"))
        if c.landing_url is not None:
            url = urllib.parse.urlsplit(c.landing_url)
            if url.scheme not in ("http", "https") or not url.netloc:
                problems.append(ConfigProblem(f, "landing_url",
                                              f"must be an absolute http(s) URL, got {c.landing_url!r}"))
        if not c.targeting.open_auction and not c.targeting.deals:
            problems.append(ConfigProblem(f, "targeting.open_auction",
                                          "open_auction is false and no deals are listed: never bids"))
    return problems
