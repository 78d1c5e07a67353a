"""Find the click-throughs in creative markup once, at config load, so each bid can route them
through ``/notice/click`` with one ``str.join``.

    parts = split_clickthroughs(markup, "banner")   # literal pieces around every click-through URL
    adm = click_url.join(parts)                     # at response time (dsp.bidding.respond)

What counts as a click-through, per format:

* ``banner`` (HTML): the value of every ``href`` attribute with an ``http(s)`` URL
  (``<a href="https://lender.example/apply">``); other hrefs (``#``, ``mailto:``) are left alone.
* ``native`` (OpenRTB Native JSON): the ``url`` of every ``link`` object (the ad's main link
  and asset links).
* ``video`` (VAST XML): the content of every ``<ClickThrough>`` element (``<![CDATA[...]]>`` or
  plain text).

The URL that replaces them (``https://bidder/notice/click?t=<click token>``) contains only
characters that need no escaping in an HTML attribute, a JSON string or CDATA. The user lands on
the campaign's ``landing_url`` (config), never on a URL taken from a request; a campaign whose
markup has click-throughs must therefore have a ``landing_url`` (:func:`dsp.config.checks`).
Markup with no click-through is one part: served as is.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"']*)\2""", re.IGNORECASE)
_CLICK_THROUGH = re.compile(r"(<ClickThrough\b[^>]*>)(.*?)(</ClickThrough\s*>)",
                            re.IGNORECASE | re.DOTALL)
_MARK = "\x00dsp-click\x00"  # never in valid markup; JSON-encoded as "\u0000dsp-click\u0000"


def _split_html(markup: str) -> tuple[str, ...]:
    marked = _HREF.sub(lambda m: f"{m.group(1)}{m.group(2)}{_MARK}{m.group(2)}", markup)
    return tuple(marked.split(_MARK))


def _split_vast(markup: str) -> tuple[str, ...]:
    marked = _CLICK_THROUGH.sub(lambda m: f"{m.group(1)}<![CDATA[{_MARK}]]>{m.group(3)}", markup)
    return tuple(marked.split(_MARK))


def _mark_links(node: Any, in_link: bool = False) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if in_link and key == "url" and isinstance(value, str):
                out[key] = _MARK
            else:
                out[key] = _mark_links(value, key == "link")
        return out
    if isinstance(node, list):
        return [_mark_links(v) for v in node]
    return node


def _split_native(markup: str) -> tuple[str, ...]:
    try:
        doc = msgspec.json.decode(markup)
    except msgspec.DecodeError:
        return (markup,)  # not JSON: served as is (the config check reports it)
    encoded = msgspec.json.encode(_mark_links(doc)).decode()
    return tuple(encoded.split(msgspec.json.encode(_MARK).decode()[1:-1]))


def split_clickthroughs(markup: str, kind: str) -> tuple[str, ...]:
    """The markup cut at every click-through URL (see the module docstring); one part if none."""
    if kind == "banner":
        return _split_html(markup)
    if kind == "video":
        return _split_vast(markup)
    if kind == "native":
        return _split_native(markup)
    return (markup,)
