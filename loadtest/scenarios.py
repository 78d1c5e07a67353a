"""What the Locust users do, as plain functions and a settings object (unit-tested without Locust).

Settings come from the environment so that one locustfile serves every scenario and distributed
workers (which only receive the locustfile) configure themselves the same way:

=====================  ==========================================================  ============
variable               meaning                                                     default
=====================  ==========================================================  ============
DSP_EXCHANGES          ``name=weight,...`` or ``name,...`` of routes /bid/{name}    every profile in
                                                                                   bidder_configs/exchanges
DSP_SHAPES             ``tag=weight,...`` (banner, video, native, audio, site,      all templates equal
                       app, dooh, multi-imp, or e.g. banner-site)
DSP_IDS_FILE           known user ids (JSON lines from ``dsp features seed``)      none: all unknown
DSP_KNOWN_SHARE        share of requests from known users                          0.6
DSP_GZIP_SHARE         share of gzipped request bodies                             0.1
DSP_WIN_SHARE          share of our bids that "win" (nurl, then burl)              0.3
DSP_BILL_SHARE         share of wins that are billed (burl)                        0.9
DSP_LOSS_NOTICES       1: send lurl for the bids that lost                         1
DSP_CLEAR_RATIO        clearing price / bid price for ${AUCTION_PRICE}            0.8
=====================  ==========================================================  ============

Won bids become notices: the notice URL keeps its path and query (the host in the bidder's URL
may be a public name), the auction macros are substituted, and the request goes to the host
under test.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dsp.testing.traffic import TrafficGenerator, TrafficMix, exchange_routes

REPO = Path(__file__).resolve().parent.parent

# OpenRTB 2.x substitution macros (§4.4). Loss reason 102 = "lost to higher bid".
MACROS = ("${AUCTION_PRICE}", "${AUCTION_ID}", "${AUCTION_BID_ID}", "${AUCTION_IMP_ID}",
          "${AUCTION_SEAT_ID}", "${AUCTION_AD_ID}", "${AUCTION_CURRENCY}", "${AUCTION_LOSS}",
          "${AUCTION_MIN_TO_WIN}", "${AUCTION_MBR}")


def _weights(spec: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, _, weight = item.partition("=")
        out[name.strip()] = float(weight) if weight else 1.0
    return out


@dataclass(frozen=True)
class LoadSettings:
    exchanges: dict[str, float]
    shapes: dict[str, float]
    ids_file: str | None
    known_share: float
    gzip_share: float
    win_share: float
    bill_share: float
    loss_notices: bool
    clear_ratio: float

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LoadSettings:
        e = dict(os.environ if env is None else env)
        exchanges = _weights(e.get("DSP_EXCHANGES", ""))
        if not exchanges:
            exchanges = {name: 1.0 for name in exchange_routes(REPO / "bidder_configs" / "exchanges")}
        return cls(
            exchanges=exchanges or {"generic": 1.0},
            shapes=_weights(e.get("DSP_SHAPES", "")),
            ids_file=e.get("DSP_IDS_FILE") or None,
            known_share=float(e.get("DSP_KNOWN_SHARE", "0.6")),
            gzip_share=float(e.get("DSP_GZIP_SHARE", "0.1")),
            win_share=float(e.get("DSP_WIN_SHARE", "0.3")),
            bill_share=float(e.get("DSP_BILL_SHARE", "0.9")),
            loss_notices=e.get("DSP_LOSS_NOTICES", "1") not in ("0", "false", "no"),
            clear_ratio=float(e.get("DSP_CLEAR_RATIO", "0.8")),
        )

    def generator(self, seed: int | None = None, **overrides: Any) -> TrafficGenerator:
        mix = TrafficMix(exchanges=self.exchanges, shapes=self.shapes,
                         known_user_share=overrides.get("known_share", self.known_share),
                         gzip_share=overrides.get("gzip_share", self.gzip_share), seed=seed)
        return TrafficGenerator.from_sources(mix, ids_file=self.ids_file)


@dataclass(frozen=True)
class Notice:
    kind: str  # win | bill | loss
    path: str  # path + query, macros substituted


def fill_macros(url: str, *, price_cpm: float, request_id: str, bid: dict[str, Any], imp_id: str,
                seat: str, currency: str, loss_code: int = 102) -> str:
    """Substitute the OpenRTB auction macros in ``url``."""
    values = {
        "${AUCTION_PRICE}": f"{price_cpm:.6f}".rstrip("0").rstrip("."),
        "${AUCTION_ID}": request_id,
        "${AUCTION_BID_ID}": str(bid.get("id", "")),
        "${AUCTION_IMP_ID}": imp_id,
        "${AUCTION_SEAT_ID}": seat,
        "${AUCTION_AD_ID}": str(bid.get("adid", "")),
        "${AUCTION_CURRENCY}": currency,
        "${AUCTION_LOSS}": str(loss_code),
        "${AUCTION_MIN_TO_WIN}": f"{price_cpm:.6f}".rstrip("0").rstrip("."),
        "${AUCTION_MBR}": "",
    }
    for macro, value in values.items():
        if macro in url:
            url = url.replace(macro, value)
    return url


def path_of(url: str) -> str:
    """Path + query of an absolute or relative URL (the host under test replaces its host)."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def notices_for(body: bytes, settings: LoadSettings, rng: random.Random) -> tuple[int, list[Notice]]:
    """(number of bids, notices to send) for one 200 BidResponse body.

    Each bid wins with ``win_share``: then its nurl (win) and, with ``bill_share``, its burl
    (bill) are sent with ``${AUCTION_PRICE}`` = bid price × ``clear_ratio``; a losing bid sends its
    lurl when ``loss_notices``. Bids without the URL for an outcome send nothing for it.
    """
    try:
        resp = json.loads(body)
    except ValueError:
        return 0, []
    if not isinstance(resp, dict):
        return 0, []
    request_id = str(resp.get("id", ""))
    currency = str(resp.get("cur", "USD"))
    n_bids = 0
    out: list[Notice] = []
    for seatbid in resp.get("seatbid") or []:
        seat = str(seatbid.get("seat", ""))
        for bid in seatbid.get("bid") or []:
            n_bids += 1
            price = float(bid.get("price", 0.0)) * settings.clear_ratio
            kw: dict[str, Any] = {"price_cpm": price, "request_id": request_id, "bid": bid,
                                  "imp_id": str(bid.get("impid", "")), "seat": seat,
                                  "currency": currency}
            if rng.random() < settings.win_share:
                if bid.get("nurl"):
                    out.append(Notice("win", path_of(fill_macros(bid["nurl"], **kw))))
                if bid.get("burl") and rng.random() < settings.bill_share:
                    out.append(Notice("bill", path_of(fill_macros(bid["burl"], **kw))))
            elif settings.loss_notices and bid.get("lurl"):
                out.append(Notice("loss", path_of(fill_macros(bid["lurl"], **kw))))
    return n_bids, out
