"""OpenRTB BidResponse Structs and the encoder (built once). Prices are CPM floats at this edge only.

Inside the bidder every amount is integer micros; :func:`dsp.money.micros_per_imp_to_cpm` style
conversion happens when a :class:`Bid` is built. ``omit_defaults`` keeps absent optional fields out
of the JSON (``dealid`` only on deal bids, ``nbr`` only on no-bid bodies).
"""

from __future__ import annotations

import msgspec


class Bid(msgspec.Struct, gc=False, omit_defaults=True):
    id: str
    impid: str
    price: float
    adm: str | None = None
    adomain: list[str] | None = None
    crid: str | None = None
    cid: str | None = None
    cat: list[str] | None = None
    w: int | None = None
    h: int | None = None
    mtype: int | None = None
    dealid: str | None = None
    nurl: str | None = None
    burl: str | None = None
    lurl: str | None = None


class SeatBid(msgspec.Struct, gc=False, omit_defaults=True):
    bid: list[Bid]
    seat: str | None = None


class BidResponse(msgspec.Struct, gc=False, omit_defaults=True):
    id: str
    seatbid: list[SeatBid] | None = None
    bidid: str | None = None
    cur: str | None = None
    nbr: int | None = None


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(BidResponse)


def encode_response(resp: BidResponse) -> bytes:
    """Serialise a response (the encoder is stateless and reused)."""
    return _ENCODER.encode(resp)


def decode_response(body: bytes) -> BidResponse:
    """Parse a response (tests, tooling): unknown fields are skipped, types checked."""
    return _DECODER.decode(body)
