"""Bytes -> a validated, normalised :class:`BidRequest`, or :class:`InvalidRequest` with a path.

    decoder = RequestDecoder()
    req = decoder.decode(body, lax_numbers=False)   # raises InvalidRequest("...", path="imp[0].banner.w")

Two msgspec decoders are built once: a strict one (``generic`` and most exchanges) and a lax one
(``strict=False``: numeric strings such as ``"728"`` are accepted for numeric fields) for exchange
profiles with ``lax_numbers: true``. After decoding, 2.5 ``ext`` locations are copied to their 2.6
places (the 2.6 value wins when both are present), the exchange's own hook runs if it has one,
and the semantic checks of :mod:`dsp.openrtb.validate` run.

Malformed bodies, each a 400 naming the problem: not UTF-8 anywhere (:func:`check_encoding`, even
in fields the decoder skips), nested deeper than :func:`depth_limit`, numbers out of range (ints
are 32-bit, ``tmax`` at most ``TMAX_LIMIT_MS``, floors at most 1e9: dsp.openrtb.request). Whatever
else the decoder raises (it should not) becomes an :class:`InvalidRequest` naming the exception
type: a body never escapes as a 5xx.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import msgspec

from dsp.errors import InvalidRequest
from dsp.openrtb.request import BidRequest
from dsp.openrtb.validate import check_request

_PATH_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _path_of(message: str) -> tuple[str, str]:
    """Split a msgspec message ``"Expected `int`, got `str` - at `$.imp[0].banner.w`"``."""
    m = _PATH_RE.search(message)
    if m is None:
        return message, ""
    return message[: m.start()], m.group("path").lstrip(".")


def normalise(req: BidRequest) -> BidRequest:
    """Copy 2.5 ``ext`` locations to their 2.6 places, in place; the 2.6 value wins."""
    regs = req.regs
    if regs is not None and regs.ext is not None:
        ext = regs.ext
        if regs.gdpr is None:
            regs.gdpr = ext.gdpr
        if regs.us_privacy is None:
            regs.us_privacy = ext.us_privacy
        if regs.gpp is None:
            regs.gpp = ext.gpp
        if regs.gpp_sid is None:
            regs.gpp_sid = ext.gpp_sid
        if regs.gpc is None:
            regs.gpc = ext.gpc
    user = req.user
    if user is not None and user.ext is not None:
        uext = user.ext
        if user.consent is None:
            user.consent = uext.consent
        if user.eids is None:
            user.eids = uext.eids
    source = req.source
    if source is not None and source.ext is not None and source.schain is None:
        source.schain = source.ext.schain
    return req


def check_encoding(body: bytes) -> None:
    """Raise InvalidRequest unless ``body`` is UTF-8 (RFC 8259 section 8.1), also in fields the
    decoder would skip. ASCII bodies (nearly all traffic) pass with one C pass (0.1 µs per KB)."""
    if body.isascii():
        return
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"body is not valid UTF-8 (byte {exc.start}: {exc.reason})", "") from None


def depth_limit() -> int:
    """How deep arrays/objects may nest: msgspec recurses once per level and stops at Python's
    recursion limit (1,000 by default) with RecursionError, which :meth:`RequestDecoder.decode`
    turns into a 400. A pre-scan with a smaller limit would cost every request a pass over its
    body (1.5 µs per KB measured); the recursion guard costs nothing until it fires."""
    return sys.getrecursionlimit()


_COMPANION_KEY = b'"companionad"'


def _check_duplicate_companionad(body: bytes, req: BidRequest) -> None:
    """Reject a video object that carries ``companionad`` twice (RFC 8259 names SHOULD be unique).

    A JSON decoder keeps the last value silently, so the two forms (array, then 2.1-era object)
    would be merged without a word. Checking every key of every request would cost a full Python
    parse; this field is the one where it has been seen, so only it is counted (a C substring scan).
    """
    n_keys = body.count(_COMPANION_KEY)
    if not n_keys:
        return
    with_companions = [i for i, imp in enumerate(req.imp)
                       if imp.video is not None and imp.video.companionad is not None]
    if n_keys > len(with_companions):
        where = f"imp[{with_companions[0]}].video.companionad" if with_companions else "imp"
        raise InvalidRequest(f"{where} is given more than once (duplicate JSON key)", where)


class RequestDecoder:
    """Decodes OpenRTB request bodies; thread-compatible, built once per process."""

    __slots__ = ("_lax", "_strict")

    def __init__(self) -> None:
        self._strict = msgspec.json.Decoder(BidRequest)
        self._lax = msgspec.json.Decoder(BidRequest, strict=False)

    def decode(self, body: bytes, *, lax_numbers: bool = False,
               hook: Callable[[BidRequest], None] | None = None) -> BidRequest:
        """Decode, normalise and check one request. Raises :class:`InvalidRequest` naming the path.

        ``hook`` (an exchange's ``normalise_request``, see dsp.exchanges.hooks) runs after the
        generic normalisation and before the semantic checks. Whatever the bytes, nothing but
        InvalidRequest is raised."""
        check_encoding(body)
        try:
            req = (self._lax if lax_numbers else self._strict).decode(body)
        except msgspec.ValidationError as exc:
            message, path = _path_of(str(exc))
            raise InvalidRequest(f"invalid request: {path or 'request'}: {message}", path) from None
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"malformed JSON: {exc}", "") from None
        except RecursionError:
            raise InvalidRequest(f"JSON nested too deeply (limit about {depth_limit()} levels)",
                                 "") from None
        except (ValueError, OverflowError, MemoryError) as exc:  # UnicodeDecodeError is a ValueError
            raise InvalidRequest(f"undecodable body: {type(exc).__name__}", "") from None
        _check_duplicate_companionad(body, req)
        normalise(req)
        if hook is not None:
            hook(req)
        check_request(req)
        return req
