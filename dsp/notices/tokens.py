"""Signed notice tokens carried in nurl/burl/lurl.

Format: ``base64url(msgpack(payload)) + "." + base64url(hmac_sha256(key, body)[:16])``.
The payload is compact (msgpack array), carries an expiry, and the MAC covers every byte, so a
token cannot be forged or altered without the key. ``verify`` raises :class:`TokenInvalid`
(forged, malformed, wrong key) or :class:`TokenExpired`; callers answer 4xx and change nothing.

Keys rotate: ``TokenSigner(keys={"k2": b"...", "k1": b"..."}, active="k2")`` signs with k2 and
accepts both. The key id travels in the payload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

import msgspec

from dsp.clock import wall_time
from dsp.errors import RequestRejected


class NoticeToken(msgspec.Struct, array_like=True, frozen=True):
    """What a notice needs to settle one bid without any lookup.

    ``bid_id`` is unique per bid and is the idempotency key for every notice of that bid.
    ``user_key`` is the hashed user key (for frequency caps), empty for unknown users.
    ``bid_price_micros`` is in the campaign (account) ``currency``. When the auction ran in another
    currency, ``auction_currency`` names it and ``auction_bid_micros`` is the same bid in it: the
    exchange's ``${AUCTION_PRICE}`` is in the auction currency, and the notice converts it at the
    exact rate used at bid time (``bid_price_micros / auction_bid_micros``), needing no rate table.
    """

    kid: str
    bid_id: str
    request_id: str
    imp_id: str
    campaign_id: str
    exchange: str
    bid_price_micros: int  # our bid for one impression, in account-currency micros
    currency: str
    user_key: str
    issued_at_s: int
    expires_at_s: int
    test: bool = False
    auction_currency: str = ""
    auction_bid_micros: int = 0  # 0: the auction ran in ``currency``


class TokenInvalid(RequestRejected):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=403)


class TokenExpired(RequestRejected):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=410)


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(NoticeToken)
_MAC_BYTES = 16


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + pad)


class TokenSigner:
    """Signs and verifies :class:`NoticeToken` values with HMAC-SHA256 (truncated to 128 bits)."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if active not in keys:
            raise ValueError(f"active key id {active!r} not among keys")
        if any(len(k) < 16 for k in keys.values()):
            raise ValueError("token keys must be at least 16 bytes")
        self._keys = dict(keys)
        self.active = active

    def sign(self, token: NoticeToken) -> str:
        if token.kid != self.active:
            token = msgspec.structs.replace(token, kid=self.active)
        body = _b64e(_ENC.encode(token))
        mac = hmac.new(self._keys[self.active], body.encode("ascii"), hashlib.sha256).digest()
        return body + "." + _b64e(mac[:_MAC_BYTES])

    def verify(self, text: str, *, now_s: float | None = None) -> NoticeToken:
        """Return the token if authentic and unexpired; raise TokenInvalid / TokenExpired otherwise."""
        body, sep, mac_text = text.partition(".")
        if not sep or not body or not mac_text or len(text) > 2048:
            raise TokenInvalid("malformed token")
        try:
            token = _DEC.decode(_b64d(body))
            mac = _b64d(mac_text)
        except (ValueError, msgspec.DecodeError) as exc:
            raise TokenInvalid("malformed token") from exc
        key = self._keys.get(token.kid)
        if key is None:
            raise TokenInvalid("unknown token key")
        expected = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(expected, mac):
            raise TokenInvalid("bad token signature")
        if (wall_time() if now_s is None else now_s) > token.expires_at_s:
            raise TokenExpired("token expired")
        return token
