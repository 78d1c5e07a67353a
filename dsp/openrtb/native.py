"""The OpenRTB Native 1.2 request (``imp.native.request``) as Structs, parsed once per imp.

    nreq = parse_native(imp.native)      # NativeRequest | None (None: missing or malformed)

The request arrives as a JSON *string* (the spec), sometimes as an object, and older exchanges
wrap it as ``{"native": {...}}`` (Native 1.0/1.1); all three are accepted. A malformed request is
not an invalid bid request: no native creative can fit it, and the imp gets no native bid.

Asset ids are unique per request (the response answers each by id); duplicates make the request
malformed here, since a response could not say which asset it answers.
"""

from __future__ import annotations

from typing import Any

import msgspec

from dsp.openrtb.request import Native

MAX_ASSETS = 64


class _S(msgspec.Struct, gc=False, omit_defaults=True):
    pass


class TitleReq(_S):
    len: int | None = None  # maximum characters


class ImageReq(_S):
    type: int | None = None  # 1 icon, 3 main
    w: int | None = None
    h: int | None = None
    wmin: int | None = None
    hmin: int | None = None
    mimes: list[str] | None = None


class DataReq(_S):
    type: int
    len: int | None = None


class VideoReq(_S):
    mimes: list[str] | None = None


class AssetReq(_S):
    id: int
    required: int = 0
    title: TitleReq | None = None
    img: ImageReq | None = None
    data: DataReq | None = None
    video: VideoReq | None = None


class EventTrackerReq(_S):
    event: int
    methods: list[int] = []


class NativeRequest(_S):
    ver: str | None = None
    context: int | None = None
    plcmttype: int | None = None
    assets: list[AssetReq] = []
    eventtrackers: list[EventTrackerReq] | None = None
    privacy: int | None = None
    native: NativeRequest | None = None  # the 1.0/1.1 wrapper form: {"native": {...}}


_DECODER = msgspec.json.Decoder(NativeRequest)


def parse_native(native: Native | None) -> NativeRequest | None:
    """The imp's native request, or None when absent or malformed."""
    if native is None or native.request is None:
        return None
    raw: Any = native.request
    try:
        got = _DECODER.decode(raw) if isinstance(raw, str) else msgspec.convert(raw, NativeRequest)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    req = got.native if got.native is not None else got
    ids = [a.id for a in req.assets]
    if not ids or len(ids) > MAX_ASSETS or len(set(ids)) != len(ids):
        return None
    return req
