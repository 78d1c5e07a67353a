"""Video: does a creative fit the imp's video object, and its VAST 4 inline document.

    plan = video_fit(creative.video, imp.video)          # VastPlan | None
    adm = vast_xml(plan, ad_id, spec, urls)               # str: <VAST version="4.2">...</VAST>

Fit (OpenRTB 2.6 §3.2.7, AdCOM creative subtypes), every rule a reason a player would refuse:

* ``protocols``: we serve VAST 4 *inline* (subtypes 7 = 4.0, 11 = 4.1, 13 = 4.2); the document
  carries the highest version the imp accepts; an imp without ``protocols`` gets 4.0;
* ``linearity`` 2 (non-linear only) does not fit (our creatives are linear);
* duration: within ``minduration``/``maxduration``, and one of ``rqddurs`` when given;
* ``plcmt`` (or 2.5 ``placement``) must be one the creative accepts, when it lists any;
* media files: only those whose MIME type is in ``mimes``, whose bitrate is within
  ``minbitrate``/``maxbitrate`` and whose delivery is allowed (``delivery``); with
  ``boxingallowed`` = 0 only renditions with the player's aspect ratio (±2%). No file left: no fit.

The document (IAB VAST 4.x): ``<Ad id>`` / ``<InLine>`` with ``AdSystem``, ``AdTitle``,
``Impression`` (our impression event notice: counted, never billed; markup carries no billing
token), ``AdServingId`` (the bid id),
``Creatives/Creative`` (``UniversalAdId``) / ``Linear`` with ``Duration``, ``TrackingEvents``
(start, quartiles, complete: our event notice), ``VideoClicks/ClickThrough`` (our click notice,
which redirects to the campaign's landing page) and ``MediaFiles`` (the files that fit, larger
first). Every URL sits in CDATA; every attribute value is escaped.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import msgspec

from dsp.config.schema import MediaFile, VideoSpec
from dsp.openrtb.request import Video

# AdCOM creative subtype -> VAST version string (inline documents only; wrappers are not served).
VAST_INLINE = {13: "4.2", 11: "4.1", 7: "4.0"}
EVENTS = ("start", "firstQuartile", "midpoint", "thirdQuartile", "complete")
_DELIVERY = {"streaming": 1, "progressive": 2}


class VastPlan(msgspec.Struct, frozen=True, gc=False):
    """What the VAST document for one imp will hold."""

    version: str
    media: tuple[MediaFile, ...]


class VastUrls(msgspec.Struct, frozen=True, gc=False):
    impression: str
    click: str
    event: str  # the event notice URL without its event name: ``...&e=`` is appended


def _version(v: Video) -> str | None:
    protocols = v.protocols
    if protocols is None and v.protocol is not None:
        protocols = v.protocol if isinstance(v.protocol, list) else [v.protocol]
    if protocols is None:
        return "4.0"
    for subtype, version in VAST_INLINE.items():
        if subtype in protocols:
            return version
    return None


def _media_fits(m: MediaFile, v: Video) -> bool:
    if v.mimes and m.type not in v.mimes:
        return False
    if v.minbitrate and m.bitrate_kbps < v.minbitrate:
        return False
    if v.maxbitrate and m.bitrate_kbps > v.maxbitrate:
        return False
    if v.delivery and _DELIVERY[m.delivery] not in v.delivery:
        return False
    if v.boxingallowed == 0 and v.w and v.h:
        return abs(m.w * v.h - m.h * v.w) <= 0.02 * m.h * v.w
    return True


def video_fit(spec: VideoSpec | None, v: Video) -> VastPlan | None:
    """The plan when the creative ``spec`` can play in ``v``, else None."""
    if spec is None or v.linearity == 2:
        return None
    version = _version(v)
    if version is None:
        return None
    d = spec.duration_s
    if (v.minduration and d < v.minduration) or (v.maxduration and d > v.maxduration):
        return None
    if v.rqddurs and d not in v.rqddurs:
        return None
    plcmt = v.plcmt if v.plcmt is not None else v.placement
    if spec.placements is not None and plcmt is not None and plcmt not in spec.placements:
        return None
    media = tuple(sorted((m for m in spec.media if _media_fits(m, v)),
                         key=lambda m: (m.w * m.h, m.bitrate_kbps), reverse=True))
    if not media:
        return None
    return VastPlan(version, media)


def _cdata(url: str) -> str:
    return "<![CDATA[" + url.replace("]]>", "]]%3E") + "]]>"


def _duration(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}.000"


def vast_xml(plan: VastPlan, ad_id: str, creative_id: str, spec: VideoSpec, urls: VastUrls,
             ad_system: str = "lender-dsp") -> str:
    """The VAST inline document (a string; ``adm`` of the bid)."""
    tracking = "".join(f'<Tracking event="{e}">{_cdata(urls.event + e)}</Tracking>' for e in EVENTS)
    files = "".join(
        f'<MediaFile delivery="{m.delivery}" type={quoteattr(m.type)} width="{m.w}" height="{m.h}" '
        f'bitrate="{m.bitrate_kbps}" scalable="true" maintainAspectRatio="true">{_cdata(m.url)}</MediaFile>'
        for m in plan.media)
    title = spec.title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        f'<VAST version="{plan.version}" xmlns="http://www.iab.com/VAST">'
        f"<Ad id={quoteattr(ad_id)}><InLine>"
        f"<AdSystem>{ad_system}</AdSystem><AdTitle>{title}</AdTitle>"
        f"<AdServingId>{_cdata(ad_id)}</AdServingId>"
        f"<Impression id=\"imp\">{_cdata(urls.impression)}</Impression>"
        f"<Creatives><Creative id={quoteattr(creative_id)} adId={quoteattr(creative_id)}>"
        f'<UniversalAdId idRegistry="unknown">{_cdata(creative_id)}</UniversalAdId>'
        f"<Linear><Duration>{_duration(spec.duration_s)}</Duration>"
        f"<TrackingEvents>{tracking}</TrackingEvents>"
        f"<VideoClicks><ClickThrough id=\"click\">{_cdata(urls.click)}</ClickThrough></VideoClicks>"
        f"<MediaFiles>{files}</MediaFiles>"
        f"</Linear></Creative></Creatives></InLine></Ad></VAST>")
