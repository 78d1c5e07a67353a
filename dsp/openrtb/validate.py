"""Semantic checks that a type system cannot express; each failure names the JSON path.

Run after decoding and normalisation (so 2.5 and 2.6 shapes are checked alike). Checks, in order:
site/app/dooh exclusivity, unique non-empty imp ids, a media type per imp, banner sizes not
negative (0 is read as "unspecified", as the IAB 2.5 mobile example sends it). Type and range
checks (``tmax >= 0``, floors ``>= 0``, ``regs.gdpr`` in {0,1}, deal ids) happen while decoding.
"""

from __future__ import annotations

from dsp.errors import InvalidRequest
from dsp.openrtb.request import Banner, BidRequest


def _check_banner(banner: Banner, where: str) -> None:
    if banner.w is not None and banner.w < 0:
        raise InvalidRequest(f"{where}.w must be a positive number, got {banner.w}", f"{where}.w")
    if banner.h is not None and banner.h < 0:
        raise InvalidRequest(f"{where}.h must be a positive number, got {banner.h}", f"{where}.h")
    if banner.format:
        for k, fmt in enumerate(banner.format):
            if (fmt.w is not None and fmt.w < 0) or (fmt.h is not None and fmt.h < 0):
                bad = "w" if fmt.w is not None and fmt.w < 0 else "h"
                path = f"{where}.format[{k}].{bad}"
                raise InvalidRequest(f"{path} must be a positive number", path)


def check_request(req: BidRequest) -> None:
    """Raise :class:`InvalidRequest` for the first semantic problem found; return None if valid."""
    n_inventory = (req.site is not None) + (req.app is not None) + (req.dooh is not None)
    if n_inventory > 1:
        raise InvalidRequest("no more than one of site, app or dooh may be present", "site")
    seen: dict[str, int] = {}
    for i, imp in enumerate(req.imp):
        if not imp.id:
            raise InvalidRequest(f"imp[{i}].id is required", f"imp[{i}].id")
        first = seen.setdefault(imp.id, i)
        if first != i:
            raise InvalidRequest(
                f"imp[{first}].id and imp[{i}].id are both {imp.id!r}: imp ids must be unique",
                f"imp[{i}].id")
        if imp.banner is None and imp.video is None and imp.audio is None and imp.native is None:
            raise InvalidRequest(
                f'imp[{i}] must contain at least one of "banner", "video", "audio" or "native"',
                f"imp[{i}]")
        if imp.banner is not None:
            _check_banner(imp.banner, f"imp[{i}].banner")
