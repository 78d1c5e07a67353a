"""Make a bid request safe to keep: the request sample's body, with no personal data left.

:func:`sanitize_request` works on the raw JSON (any OpenRTB 2.5/2.6 shape; unknown fields kept
unless listed here) and returns new JSON bytes:

* ids that name a person or a device (``user.id``, ``user.buyeruid``, ``device.ifa`` and the
  hashed/raw device and MAC ids) are replaced by the keyed hash (:func:`keyed_user_hash`), so a
  replay still sees "the same user" without the log holding the id;
* ``device.ip`` is cut to its /24 (``203.0.113.0``), ``device.ipv6`` to its /48;
* precise geo (``lat``, ``lon``, ``accuracy``, ``lastfix``, ``zip``) is dropped from
  ``device.geo`` and ``user.geo``; country, region, city, metro and the UTC offset stay;
* extended ids (``user.eids``, ``user.ext.eids``), ``user.yob``, ``user.gender``,
  ``user.keywords`` and ``user.customdata`` are dropped.

Targeting, floors, formats, consent strings and the test flag are untouched, so a forecast can
replay the request through today's campaigns.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec

from dsp.events.schema import keyed_user_hash

_HASHED_DEVICE_IDS = ("ifa", "didsha1", "didmd5", "dpidsha1", "dpidmd5", "macsha1", "macmd5")
_HASHED_USER_IDS = ("id", "buyeruid")
_PRECISE_GEO = ("lat", "lon", "accuracy", "lastfix", "zip")
_DROPPED_USER = ("eids", "yob", "gender", "keywords", "customdata")

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def truncate_ip(ip: str, v6: bool) -> str:
    """``203.0.113.77`` -> ``203.0.113.0``; an IPv6 address -> its /48 network address.
    Anything that does not parse becomes "" (it cannot be kept safely)."""
    try:
        net = ipaddress.ip_network(f"{ip}/{48 if v6 else 24}", strict=False)
    except ValueError:
        return ""
    return str(net.network_address)


def _geo(geo: Any) -> None:
    if isinstance(geo, dict):
        for name in _PRECISE_GEO:
            geo.pop(name, None)


def sanitize_request(body: bytes, hash_key: bytes) -> bytes | None:
    """The sanitized JSON of ``body``; None when the body is not a JSON object."""
    try:
        req = _decoder.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(req, dict):
        return None
    device = req.get("device")
    if isinstance(device, dict):
        for name in _HASHED_DEVICE_IDS:
            value = device.get(name)
            if isinstance(value, str) and value:
                device[name] = keyed_user_hash(value, hash_key)
        if isinstance(device.get("ip"), str):
            device["ip"] = truncate_ip(device["ip"], v6=False)
        if isinstance(device.get("ipv6"), str):
            device["ipv6"] = truncate_ip(device["ipv6"], v6=True)
        _geo(device.get("geo"))
    user = req.get("user")
    if isinstance(user, dict):
        for name in _HASHED_USER_IDS:
            value = user.get(name)
            if isinstance(value, str) and value:
                user[name] = keyed_user_hash(value, hash_key)
        for name in _DROPPED_USER:
            user.pop(name, None)
        ext = user.get("ext")
        if isinstance(ext, dict):
            ext.pop("eids", None)
        _geo(user.get("geo"))
    return _encoder.encode(req)
