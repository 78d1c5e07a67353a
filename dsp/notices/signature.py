"""Signed server-to-server posts from a lender: the scheme payment webhooks use.

The lender's server sends ``POST /conversion`` with one header::

    X-DSP-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

``v1`` is the lower-case hex HMAC-SHA256, keyed with the lender's secret, of the ASCII timestamp,
a ``.``, and the exact body bytes (``"1767225600." + body``). Several ``v1=`` entries may be sent
while a secret is being rotated; one matching is enough. ``t`` must be within
:data:`REPLAY_WINDOW_S` of our clock (either side), so a captured post cannot be replayed later;
within the window a replay names the same click and event and is counted once (the conversion's
own dedup). Everything fails as :class:`Unauthorized` (401) before the body is decoded.

    header = sign(secret, body, now_s)            # what the lender computes (tests, docs)
    matched = verify(secrets, header, body, now_s)  # the secrets (of ``secrets``) that signed it
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from dsp.errors import RequestRejected

SIGNATURE_HEADER = "X-DSP-Signature"
REPLAY_WINDOW_S = 300
_MAX_HEADER_CHARS = 1024


class Unauthorized(RequestRejected):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=401)


def sign(secret: bytes, body: bytes, t: int) -> str:
    """The header value for ``body`` signed at unix time ``t``."""
    mac = hmac.new(secret, str(t).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def parse(header: str | None) -> tuple[int, list[bytes]]:
    """``(t, [v1 digests])`` from a header value; raises Unauthorized naming what is wrong."""
    if not header:
        raise Unauthorized(f"{SIGNATURE_HEADER}: missing")
    if len(header) > _MAX_HEADER_CHARS or not header.isascii():
        raise Unauthorized(f"{SIGNATURE_HEADER}: malformed")
    t: int | None = None
    digests: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            t = int(value)
        elif key == "v1" and len(value) == 64:
            try:
                digests.append(bytes.fromhex(value))
            except ValueError:
                continue
    if t is None or not digests:
        raise Unauthorized(f"{SIGNATURE_HEADER}: expected t=<unix seconds>,v1=<hex sha256>")
    return t, digests


def verify(secrets: Iterable[bytes], header: str | None, body: bytes, now_s: float) -> list[bytes]:
    """The secrets that signed ``body``; raises Unauthorized when none did, the header is
    missing or malformed, or ``t`` is outside the replay window."""
    t, digests = parse(header)
    if abs(now_s - t) > REPLAY_WINDOW_S:
        raise Unauthorized(f"{SIGNATURE_HEADER}: timestamp outside the {REPLAY_WINDOW_S} s window")
    signed = str(t).encode("ascii") + b"." + body
    matched = []
    for secret in secrets:
        expected = hmac.new(secret, signed, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, d) for d in digests):
            matched.append(secret)
    if not matched:
        raise Unauthorized(f"{SIGNATURE_HEADER}: signature does not match")
    return matched
