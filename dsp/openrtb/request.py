"""OpenRTB 2.5/2.6 bid request as lean msgspec Structs (only the fields the bidder reads or checks).

Decoding skips unknown fields cheaply (never ``forbid_unknown_fields`` for inbound traffic). Every
field that is declared is typed, so a wrong type is a 400 naming its JSON path (e.g.
``imp[0].banner.w`` given as ``"728"``, ``bcat`` given as integers, ``user.ext.consent`` as an int).
Constraints that msgspec checks while decoding (``0 <= tmax <= TMAX_LIMIT_MS``, integers within
32 bits, ``0 <= bidfloor <= 1e9``, ``regs.gdpr`` in
{0, 1}, non-empty ``imp``, deal ``id`` non-empty) fail at the exact path too; cross-field checks
live in :mod:`dsp.openrtb.validate`.

Only fields the bidder reads are declared (everything else is skipped at C speed): declaring a
field means rejecting the request when it has the wrong type, which is right for what we use and
needlessly strict for what we do not.

The 2.5 ``ext`` locations (``regs.ext.gdpr``, ``regs.ext.us_privacy``, ``user.ext.consent``,
``user.ext.eids``, ``source.ext.schain``) are decoded into the small ``*Ext`` structs and copied to
their 2.6 places by :func:`dsp.openrtb.decode.normalise`; the flow reads only the 2.6 places.

Structs are ``gc=False`` (decoded trees have no cycles) and mutable only so that normalisation can
fill the 2.6 fields in place; nothing after decoding mutates them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

#: The largest ``tmax`` accepted from any exchange (ms). Larger values are a 400 naming ``tmax``;
#: each exchange profile caps the deadline further (``tmax_max_ms``).
TMAX_LIMIT_MS = 10_000
#: Integers are 32-bit signed (every OpenRTB integer field fits): JSON allows any size, Python
#: decodes any size, and a 400-digit ``tmax`` used to overflow float arithmetic later.
Int = Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)]
Tmax = Annotated[int, Meta(ge=0, le=TMAX_LIMIT_MS)]
#: Prices in the request's currency per mille; 1e9 keeps micros (x 1e6) inside int64.
NonNegFloat = Annotated[float, Meta(ge=0.0, le=1e9)]
Flag = Annotated[int, Meta(ge=0, le=1)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]


class _S(msgspec.Struct, gc=False, omit_defaults=True):
    """Base: no GC tracking, defaults omitted when re-encoded (explain output)."""


class Format(_S):
    w: Int | None = None
    h: Int | None = None


class Banner(_S):
    w: Int | None = None
    h: Int | None = None
    format: list[Format] | None = None


class CompanionAd(_S):
    """A companion banner of a video imp (2.5/2.6: ``companionad`` is an array of Banner)."""

    w: Int | None = None
    h: Int | None = None


class CompanionAdWrapper(_S):
    """The OpenRTB 2.1-era object form ``"companionad": {"banner": [...]}`` still sent in the wild."""

    banner: list[CompanionAd] | None = None


class Video(_S):
    """The fields creative eligibility reads (OpenRTB 2.6 §3.2.7; 2.5 names kept)."""

    mimes: list[str] | None = None
    minduration: Int | None = None  # seconds
    maxduration: Int | None = None
    rqddurs: list[Int] | None = None  # 2.6: exact durations allowed (seconds)
    protocols: list[Int] | None = None  # AdCOM creative subtypes: 7 VAST 4.0, 11 4.1, 13 4.2, ...
    protocol: Int | list[Int] | None = None  # 2.2-era single value (a list in some dialects)
    w: Int | None = None
    h: Int | None = None
    startdelay: Int | None = None
    placement: Int | None = None  # 2.5
    plcmt: Int | None = None  # 2.6 (1 instream, 2 accompanying, 3 interstitial, 4 no content)
    linearity: Int | None = None  # 1 linear, 2 non-linear
    skip: Int | None = None
    api: list[Int] | None = None
    boxingallowed: Int | None = None  # 0: no letter-boxing, media must keep the player's ratio
    minbitrate: Int | None = None  # Kbps
    maxbitrate: Int | None = None
    delivery: list[Int] | None = None  # 1 streaming, 2 progressive, 3 download
    companionad: list[CompanionAd] | CompanionAdWrapper | None = None


class Audio(_S):
    """Presence is what matters (a media type); its fields are not read."""


class Native(_S):
    """``request`` is the Native 1.x request, as a JSON string (the spec) or an object (seen in
    the wild); :mod:`dsp.openrtb.native` parses it (malformed: no native creative fits)."""

    request: str | dict[str, object] | None = None
    ver: str | None = None


class Deal(_S):
    id: NonEmptyStr
    bidfloor: NonNegFloat = 0.0
    bidfloorcur: str | None = None  # None means "USD" per spec; it does NOT inherit imp.bidfloorcur
    at: Int | None = None
    wseat: list[str] | None = None


class Pmp(_S):
    private_auction: Int = 0
    deals: list[Deal] | None = None


class Imp(_S):
    id: str
    banner: Banner | None = None
    video: Video | None = None
    audio: Audio | None = None
    native: Native | None = None
    pmp: Pmp | None = None
    bidfloor: NonNegFloat = 0.0
    bidfloorcur: str | None = None
    bcat: list[str] | None = None  # non-standard per-imp block list seen in the wild


class Publisher(_S):
    id: str | None = None
    domain: str | None = None


class Content(_S):
    cat: list[str] | None = None


class Site(_S):
    id: str | None = None
    domain: str | None = None
    cat: list[str] | None = None
    sectioncat: list[str] | None = None
    pagecat: list[str] | None = None
    publisher: Publisher | None = None
    content: Content | None = None


class App(_S):
    id: str | None = None
    bundle: str | None = None
    domain: str | None = None
    cat: list[str] | None = None
    sectioncat: list[str] | None = None
    pagecat: list[str] | None = None
    publisher: Publisher | None = None
    content: Content | None = None


class Dooh(_S):
    id: str | None = None
    publisher: Publisher | None = None
    content: Content | None = None


class Geo(_S):
    country: str | None = None
    region: str | None = None  # ISO 3166-2 (dialects normalised by dsp.openrtb.geo)
    metro: str | None = None  # Nielsen DMA code as a string, e.g. "807"
    utcoffset: Int | None = None


class Device(_S):
    ua: str | None = None
    ip: str | None = None
    ipv6: str | None = None
    geo: Geo | None = None
    dnt: Int | None = None
    lmt: Int | None = None
    devicetype: Int | None = None
    os: str | None = None
    ifa: str | None = None


class Uid(_S):
    id: str | None = None
    atype: Int | None = None


class Eid(_S):
    source: str | None = None
    uids: list[Uid] | None = None


class UserExt(_S):
    consent: str | None = None
    eids: list[Eid] | None = None


class User(_S):
    id: str | None = None
    buyeruid: str | None = None
    geo: Geo | None = None
    consent: str | None = None
    eids: list[Eid] | None = None
    ext: UserExt | None = None


# Privacy strings and flags arrive in every shape in the wild (``"gpp_sid": "2"``, ``"gpc": "1"``):
# these fields take what comes and :mod:`dsp.privacy.policy` treats a bad value as "no consent",
# never as an invalid request.
GppSid = list[int | str] | str | None
GpcFlag = int | str | None


class RegsExt(_S):
    gdpr: Flag | None = None
    us_privacy: str | None = None
    gpp: str | None = None
    gpp_sid: GppSid = None
    gpc: GpcFlag = None  # Global Privacy Control as Prebid forwards it ("1")


class Regs(_S):
    coppa: Flag | None = None
    gdpr: Flag | None = None
    us_privacy: str | None = None
    gpp: str | None = None
    gpp_sid: GppSid = None
    gpc: GpcFlag = None
    ext: RegsExt | None = None


class SupplyChainNode(_S):
    asi: str | None = None
    sid: str | None = None
    hp: Int | None = None


class SupplyChain(_S):
    complete: Int | None = None
    ver: str | None = None
    nodes: list[SupplyChainNode] | None = None


class SourceExt(_S):
    schain: SupplyChain | None = None


class Source(_S):
    schain: SupplyChain | None = None
    ext: SourceExt | None = None


class Udi(_S):
    """Smaato's 2.x-era unique device ids (``ext.udi``): the advertising id arrives here instead
    of ``device.ifa`` (the Smaato hook in :mod:`dsp.exchanges.smaato` moves it)."""

    idfa: str | None = None
    googleadid: str | None = None


class RequestExt(_S):
    """Request-level ``ext`` keys some exchange hook reads; everything else is skipped."""

    udi: Udi | None = None


class BidRequest(_S):
    """The request. ``imp`` must be non-empty; ``tmax`` (ms) non-negative when present."""

    id: NonEmptyStr
    imp: Annotated[list[Imp], Meta(min_length=1)]
    site: Site | None = None
    app: App | None = None
    dooh: Dooh | None = None
    device: Device | None = None
    user: User | None = None
    test: Int = 0
    at: Int | None = None  # None: the exchange profile's auction_type
    tmax: Tmax | None = None
    wseat: list[str] | None = None
    bseat: list[str] | None = None
    allimps: Int | None = None
    cur: list[str] | None = None
    bcat: list[str] | None = None
    badv: list[str] | None = None
    bapp: list[str] | None = None
    source: Source | None = None
    regs: Regs | None = None
    ext: RequestExt | None = None
