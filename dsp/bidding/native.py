"""Native: fit a creative's assets to a Native 1.2 request, and the Native 1.2 response.

    plan = native_fit(creative.native, native_request)     # NativePlan | None
    adm = native_adm(plan, urls, wrapped=False)             # the response JSON, as a string

Fit, asset by asset (Native 1.2 §4): a *title* asset takes the first of our titles that is at
most ``len`` characters; an *img* asset the first image of the same type (1 icon, 3 main) whose
size meets ``wmin``/``hmin`` (or equals ``w``/``h`` when only those are given) and whose MIME
type is allowed; a *data* asset our text of that data type, at most ``len`` characters. Video
assets are not served. Every ``required`` asset must be answered or the creative does not fit;
optional assets are answered when we can.

The response answers each asset with the *same id* and the same kind (title/img/data), carries
``link.url`` = our click notice (which redirects to the landing page) and the impression tracker
= our impression event notice (counted, never billed: markup carries no billing token): as an
``eventtrackers`` entry (event 1, method 1 image) when the request lists event trackers, else in
the 1.0-style ``imptrackers``.
"""

from __future__ import annotations

import msgspec

from dsp.config.schema import NativeImage, NativeSpec
from dsp.openrtb.native import AssetReq, ImageReq, NativeRequest


class _O(msgspec.Struct, omit_defaults=True, gc=False):
    pass


class TitleOut(_O):
    text: str


class ImageOut(_O):
    url: str
    w: int
    h: int


class DataOut(_O):
    value: str


class AssetOut(_O):
    id: int
    required: int | None = None
    title: TitleOut | None = None
    img: ImageOut | None = None
    data: DataOut | None = None


class Link(_O):
    url: str
    clicktrackers: list[str] | None = None


class EventTracker(_O):
    event: int
    method: int
    url: str


class NativeResponse(_O):
    ver: str
    assets: list[AssetOut]
    link: Link
    eventtrackers: list[EventTracker] | None = None
    imptrackers: list[str] | None = None


class _Wrapper(_O):
    native: NativeResponse


class NativePlan(msgspec.Struct, frozen=True, gc=False):
    """The answered assets (no URLs yet) and how impressions are tracked."""

    assets: tuple[AssetOut, ...]
    event_trackers: bool  # the request lists eventtrackers supporting impression by image


def _image(images: list[NativeImage], want: ImageReq) -> NativeImage | None:
    kind = want.type if want.type is not None else 3
    for img in images:
        if img.type != kind or (want.mimes and img.mime not in want.mimes):
            continue
        if want.wmin or want.hmin:
            if img.w >= (want.wmin or 0) and img.h >= (want.hmin or 0):
                return img
        elif want.w and want.h:
            if img.w == want.w and img.h == want.h:
                return img
        else:
            return img
    return None


def _answer(spec: NativeSpec, a: AssetReq) -> AssetOut | None:
    if a.title is not None:
        limit = a.title.len
        for text in spec.titles:
            if not limit or len(text) <= limit:
                return AssetOut(a.id, title=TitleOut(text))
        return None
    if a.img is not None:
        img = _image(spec.images, a.img)
        return None if img is None else AssetOut(a.id, img=ImageOut(img.url, img.w, img.h))
    if a.data is not None:
        value = spec.data.get(a.data.type)
        if value is None or (a.data.len and len(value) > a.data.len):
            return None
        return AssetOut(a.id, data=DataOut(value))
    return None  # video or unknown asset kinds are not served


def native_fit(spec: NativeSpec | None, nreq: NativeRequest | None) -> NativePlan | None:
    """The plan when every required asset can be answered, else None."""
    if spec is None or nreq is None:
        return None
    out: list[AssetOut] = []
    for a in nreq.assets:
        got = _answer(spec, a)
        if got is None:
            if a.required == 1:
                return None
            continue
        out.append(got)
    if not out:
        return None
    trackers = bool(nreq.eventtrackers) and any(
        t.event == 1 and (not t.methods or 1 in t.methods) for t in nreq.eventtrackers or ())
    return NativePlan(tuple(out), trackers)


_ENCODER = msgspec.json.Encoder()


def native_adm(plan: NativePlan, click_url: str, impression_url: str, *, wrapped: bool = False) -> str:
    """The Native 1.2 response for ``plan`` as a JSON string (``adm``); ``wrapped`` puts it under
    ``{"native": ...}`` for exchanges that still expect the 1.0/1.1 envelope."""
    resp = NativeResponse(
        ver="1.2", assets=list(plan.assets), link=Link(click_url),
        eventtrackers=[EventTracker(1, 1, impression_url)] if plan.event_trackers else None,
        imptrackers=None if plan.event_trackers else [impression_url])
    return (_ENCODER.encode(_Wrapper(resp)) if wrapped else _ENCODER.encode(resp)).decode()
