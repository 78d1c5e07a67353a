"""The compiled invalid-traffic and supply-path rules held by the config snapshot."""

from __future__ import annotations

from typing import Literal

import msgspec

from dsp.traffic.bots import BotMatcher
from dsp.traffic.iprange import IpRanges
from dsp.traffic.supply import AdsTxt, SellersJson

AdsTxtMode = Literal["off", "when_present", "required"]


class TrafficRules(msgspec.Struct, frozen=True):
    """Everything the quality gates read. Built once per config load (see dsp.config.traffic).

    ``ads_txt``: ``off`` never checks; ``when_present`` checks domains whose file was loaded;
    ``required`` also refuses domains without one (nbr 11)."""

    bots: BotMatcher = BotMatcher(None, None, (), 0)
    datacenters: IpRanges = IpRanges.from_lines(())
    block_non_public_ip: bool = True
    sellers: dict[str, SellersJson] = {}  # by ad system domain (the exchange's)
    ads_txt: dict[str, AdsTxt] = {}  # by publisher domain
    app_ads_txt: dict[str, AdsTxt] = {}  # by app developer domain
    ads_txt_mode: AdsTxtMode = "when_present"
    stacking_threshold_30d: float | None = None  # multi-lending: intent stops rising past this
    stacking_threshold_90d: float | None = None
