"""Locust scenario logic: settings from the environment, macro substitution, notices for won bids."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the loadtest/ package

from loadtest.scenarios import LoadSettings, fill_macros, notices_for, path_of

RESP: dict[str, Any] = {
    "id": "req-1", "cur": "USD",
    "seatbid": [{"seat": "lender-dsp", "bid": [
        {"id": "b1", "impid": "1", "price": 2.5, "adid": "ad9",
         "nurl": "https://dsp.example/notice/win?t=TOK1&p=${AUCTION_PRICE}",
         "burl": "https://dsp.example/notice/bill?t=TOK1&p=${AUCTION_PRICE}",
         "lurl": "https://dsp.example/notice/loss?t=TOK1&p=${AUCTION_PRICE}&r=${AUCTION_LOSS}"},
    ]}],
}


def _settings(**kw: str) -> LoadSettings:
    return LoadSettings.from_env({"DSP_EXCHANGES": "generic=3,smaato", **kw})


def test_settings_from_env() -> None:
    s = _settings(DSP_SHAPES="banner=2,video", DSP_KNOWN_SHARE="0.25", DSP_LOSS_NOTICES="0")
    assert s.exchanges == {"generic": 3.0, "smaato": 1.0}
    assert s.shapes == {"banner": 2.0, "video": 1.0}
    assert s.known_share == 0.25 and s.loss_notices is False and s.ids_file is None
    default = LoadSettings.from_env({})
    assert "generic" in default.exchanges  # read from bidder_configs/exchanges/*.yaml


def test_fill_macros_and_path() -> None:
    url = fill_macros(RESP["seatbid"][0]["bid"][0]["lurl"], price_cpm=2.0, request_id="req-1",
                      bid=RESP["seatbid"][0]["bid"][0], imp_id="1", seat="s", currency="USD")
    assert url == "https://dsp.example/notice/loss?t=TOK1&p=2&r=102"
    assert path_of(url) == "/notice/loss?t=TOK1&p=2&r=102"


def test_won_bids_send_win_and_bill_lost_bids_send_loss() -> None:
    body = json.dumps(RESP).encode()
    won = _settings(DSP_WIN_SHARE="1", DSP_BILL_SHARE="1")
    n, notices = notices_for(body, won, random.Random(1))
    assert n == 1 and [x.kind for x in notices] == ["win", "bill"]
    assert notices[0].path == "/notice/win?t=TOK1&p=2"  # 2.5 × clear ratio 0.8
    lost = _settings(DSP_WIN_SHARE="0")
    n, notices = notices_for(body, lost, random.Random(1))
    assert [x.kind for x in notices] == ["loss"] and notices[0].path.endswith("&r=102")


def test_nobid_bodies_and_garbage_give_no_notices() -> None:
    s = _settings()
    assert notices_for(b'{"id":"x","nbr":2}', s, random.Random()) == (0, [])
    assert notices_for(b"not json", s, random.Random()) == (0, [])
