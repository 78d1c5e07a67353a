"""The event log's schema: one msgspec Struct per kind, versioned, money in integer micros.

Every event the bidder writes is one of the Structs below (a tagged union on ``kind``). They travel
through Redis Streams as msgpack (:mod:`dsp.events.codec`) and land as Parquet columns with the
same names (docs/events.md gives the layout and the join). Rules every kind keeps:

* ``v`` is :data:`SCHEMA_VERSION`. Adding a field with a default is compatible (old readers skip
  it, new readers fill the default) and keeps the version; renaming, removing or changing the
  meaning or unit of a field bumps it, and readers keep decoding the versions they know.
* ``ts_us``: when it happened, integer microseconds since the Unix epoch, UTC.
* money: integer micros (1 unit = 1,000,000) with the currency beside it (ISO 4217). Per-impression
  amounts end in ``_micros``; CPM amounts (per 1000 impressions) end in ``_cpm_micros``.
* people: the only user identifier is ``user_hash``, a keyed BLAKE2b-64 of the raw id
  (:func:`keyed_user_hash`); raw device or user ids, full IPs and precise geo never appear.
* ``event_id`` identifies the event for deduplication: ``<bid_id>|<kind>`` for the outcome of a
  bid (``<bid_id>|conversion|<stage>`` for conversions), ``bid_id|bid`` for the bid itself, and
  the event's own id for ``config`` and ``sample`` events.
"""

from __future__ import annotations

import hashlib

import msgspec

#: Bump when a field is renamed, removed, or changes meaning or unit (not for added fields).
SCHEMA_VERSION: int = 1

KINDS: tuple[str, ...] = ("bid", "win", "bill", "loss", "click", "conversion", "config", "sample")
CONVERSION_STAGES: tuple[str, ...] = ("submitted", "approved", "funded")
NO_LOSS_REASON = -1  # loss notice without ${AUCTION_LOSS}
NO_PRICE = -1  # loss notice without a price (${AUCTION_MIN_TO_WIN} not sent)


class Event(msgspec.Struct, tag_field="kind", kw_only=True, omit_defaults=True, gc=False):
    """Fields every kind carries. ``campaign`` is "" for events that belong to no campaign."""

    v: int = SCHEMA_VERSION
    ts_us: int
    exchange: str = ""
    campaign: str = ""
    test: bool = False  # OpenRTB test=1 traffic: logged, excluded from reports and training

    @property
    def event_id(self) -> str:
        raise NotImplementedError


class BidEvent(Event, tag="bid", kw_only=True):
    """One bid we sent (one per imp). Everything the decision used, so it can be replayed."""

    bid_id: str
    request_id: str
    imp_id: str
    creative: str
    format: str  # banner | video | native | audio
    w: int = 0
    h: int = 0
    deal_id: str = ""
    floor_cpm_micros: int = 0  # the imp's floor, in floor_currency
    floor_currency: str = "USD"
    bid_cpm_micros: int  # our price, CPM micros in ``currency`` (the campaign's account currency)
    bid_price_micros: int  # one impression, ceil(bid_cpm_micros / 1000): what is reserved
    currency: str
    response_cpm_micros: int = 0  # the price on the wire, in response_currency
    response_currency: str = ""
    auction_type: int  # 1 first price, 2 second price
    shading: float = 1.0  # factor applied to the unshaded bid (first price); 1.0 otherwise
    value_cpm_micros: int = 0  # the impression's expected value (before pacing and caps)
    pacing_lambda: float = 0.0
    user_hash: str = ""  # keyed hash; "" when the request named no user we may look up
    user_known: bool = False  # True when the feature store had the user
    features: bytes = b""  # the model input vector, little-endian float32 (contract order)
    scores: dict[str, float] = {}  # every model's output, by model name
    model_versions: dict[str, str] = {}
    config_version: str = ""
    explore: bool = False  # placed by the exploration policy (see propensity)
    propensity: float = 1.0  # probability the logging policy placed this bid

    @property
    def event_id(self) -> str:
        return f"{self.bid_id}|bid"


class WinEvent(Event, tag="win", kw_only=True):
    """A win notice (nurl). ``price_micros`` is the clearing price of one impression converted
    into the campaign ``currency`` at ``rate`` (campaign units per auction-currency unit);
    ``bills`` says whether this notice commits spend on this exchange (the profile's notice);
    ``committed_micros`` is what the ledger committed for it (0 when it does not bill, or when the
    ledger refused it: ``result`` early | late | out_of_order | ignored)."""

    bid_id: str
    price_micros: int
    currency: str
    auction_price_micros: int = 0  # as the exchange sent it, in auction_currency
    auction_currency: str = ""
    rate: float = 1.0
    bid_price_micros: int = 0
    bills: bool = False
    committed_micros: int = 0
    result: str = "ok"

    @property
    def event_id(self) -> str:
        return f"{self.bid_id}|win"


class BillEvent(WinEvent, tag="bill", kw_only=True):
    """A billing notice (burl): the impression was rendered. Same fields as :class:`WinEvent`."""

    @property
    def event_id(self) -> str:
        return f"{self.bid_id}|bill"


class LossEvent(Event, tag="loss", kw_only=True):
    """A loss notice (lurl). ``loss_reason``: the OpenRTB loss reason code (``${AUCTION_LOSS}``),
    -1 when absent. ``min_to_win_micros``: the price that would have won one impression
    (``${AUCTION_MIN_TO_WIN}``), in ``currency``, -1 when the exchange sent none."""

    bid_id: str
    loss_reason: int = NO_LOSS_REASON
    min_to_win_micros: int = NO_PRICE
    bid_price_micros: int = 0
    currency: str = ""

    @property
    def event_id(self) -> str:
        return f"{self.bid_id}|loss"


class ClickEvent(Event, tag="click", kw_only=True):
    """A click through our click URL. ``click_id`` names it for conversions ("" if none)."""

    bid_id: str
    click_id: str = ""

    @property
    def event_id(self) -> str:
        return f"{self.bid_id}|click"


class ConversionEvent(Event, tag="conversion", kw_only=True):
    """A funnel step reported by the lender: ``stage`` is submitted | approved | funded;
    ``amount_micros`` (e.g. the funded principal) is in ``currency``, 0 when not sent."""

    bid_id: str
    stage: str
    amount_micros: int = 0
    currency: str = ""
    click_id: str = ""

    @property
    def event_id(self) -> str:
        return f"{self.bid_id}|conversion|{self.stage}"


class ConfigEvent(Event, tag="config", kw_only=True):
    """A config (re)load: the new ``config_version`` (a content hash of the files), the previous
    one, what triggered it (start | SIGHUP | admin | file-watch) and which items changed."""

    config_id: str  # unique per load: "<host>:<pid>:<ts_us>"
    config_version: str
    previous_version: str = ""
    trigger: str = ""
    actor: str = ""  # who asked, when known (the admin credential's name)
    changed: list[str] = []
    ok: bool = True
    problems: int = 0

    @property
    def event_id(self) -> str:
        return self.config_id


class SampleEvent(Event, tag="sample", kw_only=True):
    """A sampled bid request (no-bids included), ready to replay: the body after
    :func:`dsp.events.sanitize.sanitize_request` (ids hashed, IP truncated, precise geo dropped),
    the outcome, and the scores the models gave it."""

    sample_id: str
    request_id: str = ""
    body: bytes  # sanitized OpenRTB JSON
    sample_rate: float
    outcome: str  # bid | nobid
    reason: str = ""  # the no-bid reason
    user_hash: str = ""
    user_known: bool = False
    scores: dict[str, float] = {}
    bid_ids: list[str] = []
    config_version: str = ""

    @property
    def event_id(self) -> str:
        return self.sample_id


AnyEvent = BidEvent | WinEvent | BillEvent | LossEvent | ClickEvent | ConversionEvent \
    | ConfigEvent | SampleEvent

BY_KIND: dict[str, type[Event]] = {
    "bid": BidEvent, "win": WinEvent, "bill": BillEvent, "loss": LossEvent, "click": ClickEvent,
    "conversion": ConversionEvent, "config": ConfigEvent, "sample": SampleEvent}


KIND_OF: dict[type[Event], str] = {cls: kind for kind, cls in BY_KIND.items()}


def kind_of(event: Event) -> str:
    """The ``kind`` tag of an event (a dict lookup; the bid path calls it)."""
    return KIND_OF[type(event)]


def keyed_user_hash(raw_id: str, key: bytes) -> str:
    """16 hex digits of keyed BLAKE2b-64 of the raw id ("" for ""). Without the key the hash
    cannot be recomputed from a list of device ids, so the log holds no re-identifiable id."""
    if not raw_id:
        return ""
    return hashlib.blake2b(raw_id.encode("utf-8", "surrogatepass"), digest_size=8,
                           key=key).hexdigest()
