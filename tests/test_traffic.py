"""Invalid traffic and supply path: bot matcher, IP ranges, ads.txt / sellers.json, the gates, refresh."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dsp.bidding.quality import NO_FACTS, SupplyFacts, quality_gate
from dsp.cli import main
from dsp.config.snapshot import Snapshot, load_snapshot
from dsp.openrtb.decode import normalise
from dsp.openrtb.nobid import NoBidReason
from dsp.openrtb.request import BidRequest
from dsp.traffic import bots as bots_module
from dsp.traffic.bots import BotMatcher, expand
from dsp.traffic.iprange import IpRanges, RangeProblem, non_public, parse_ip
from dsp.traffic.supply import parse_ads_txt, parse_sellers_json

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "bidder_configs"

# Real browser and app user agents that must pass (phones named like bots included: CUBOT).
HUMANS = [
    "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/96.0.4664.45 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/123.0.6312.118 Mobile Safari/537.36",
    "Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 Build/TQ3A.230901.001)",
    "Mozilla/5.0",
]
BOTS = [
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot/"),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 "
     "Safari/537.36", "HeadlessChrome"),
    ("curl/8.4.0", "curl"),
    ("python-requests/2.31.0", "python-requests"),
    ("Wget/1.21", "Wget"),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "AhrefsBot"),
]


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return load_snapshot(CONFIGS)


def test_shipped_bot_list_catches_bots_and_passes_people(snapshot: Snapshot) -> None:
    bots = snapshot.traffic.bots
    assert bots.size > 1000
    for ua in HUMANS:
        assert bots.match(ua) is None, ua
    for ua, token in BOTS:
        hit = bots.match(ua)
        assert hit is not None and token.lower() in hit.lower(), (ua, hit)


def test_simple_regexes_expand_into_the_trie() -> None:
    assert expand("[wW]get") == ["wget", "Wget"]
    assert expand("Ahrefs(Bot|SiteAudit)") == ["AhrefsBot", "AhrefsSiteAudit"]
    assert expand("Chirp|gotosocial") == ["Chirp", "gotosocial"]
    assert expand(r"Googlebot\/") == ["Googlebot/"]
    assert expand("^curl") is None and expand("a.*b") is None


def test_bot_matcher_semantics_and_bounded_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    m = BotMatcher.from_patterns(["^curl", "(^| )sentry\\/", "Spider[\\s\\S]*spider\\.com", "Bot(X|Y)"])
    assert m.match("curl/8") == "curl" and m.match("not curl/8") is None  # anchored
    assert m.match("x sentry/1") == "sentry/" and m.match("xsentry/1") is None
    assert m.match("Spider 2 (spider.com)") and m.match("BotY") == "BotY" and m.match("BotZ") is None
    monkeypatch.setattr(bots_module, "CACHE_SIZE", 3)
    for i in range(10):
        m.match(f"Mozilla/5.0 #{i}")
    assert len(m._cache) <= 3  # memory cannot grow with distinct user agents


def test_ip_parsing_and_non_public_blocks() -> None:
    assert parse_ip("203.0.113.7") == (4, 0xCB007107)
    assert parse_ip("1") is None and parse_ip("999.1.1.1") is None and parse_ip("") is None
    assert parse_ip("2001:db8::1") is not None and parse_ip("[2001:db8::1]") is not None
    cases = {"10.1.2.3": "private", "172.16.0.1": "private", "172.31.255.255": "private",
             "192.168.0.9": "private", "127.0.0.1": "loopback", "169.254.1.1": "link-local",
             "::1": "loopback", "fe80::1": "link-local", "fd00::5": "private", "0.0.0.0": "unspecified"}
    for ip, kind in cases.items():
        assert non_public(parse_ip(ip)) == kind, ip
    for ip in ("172.32.0.1", "8.8.8.8", "2001:4860::8888", "100.64.0.1"):
        assert non_public(parse_ip(ip)) is None, ip


def test_ranges_merge_and_lookup() -> None:
    r = IpRanges.from_lines(["# comment", "3.0.0.0,3.1.255.255,Amazon AWS,http://x",
                             "3.1.0.0/16,dup", "5.0.0.0/8, Five", "2600:1f00::/24,AWS v6", ""])
    assert len(r) == 3
    assert r.lookup(parse_ip("3.1.200.1")) == "Amazon AWS"
    assert r.lookup(parse_ip("3.2.0.0")) is None and r.lookup(parse_ip("4.255.255.255")) is None
    assert r.lookup(parse_ip("5.255.255.255")) == "Five"
    assert r.lookup(parse_ip("2600:1f00::1")) == "AWS v6"
    with pytest.raises(RangeProblem, match="line 2"):
        IpRanges.from_lines(["1.0.0.0/8", "not an ip"])
    with pytest.raises(RangeProblem):
        IpRanges.from_lines(["9.0.0.0,8.0.0.0"])


def test_shipped_datacenter_list(snapshot: Snapshot) -> None:
    dc = snapshot.traffic.datacenters
    assert len(dc) > 3000
    assert dc.lookup(parse_ip("3.0.4.5")) == "Amazon AWS"
    assert dc.lookup(parse_ip("203.0.113.7")) is None


def test_ads_txt_parsing() -> None:
    ads = parse_ads_txt("# c\ncontact=x@y\nsubdomain=m.example\nGoogle.com, pub-1, DIRECT, f08c47fec0942fa0\n"
                        "exchange.example,  77 ,reseller # note\nbad line\nx.com, 1, OTHER\n"
                        "exchange.example, 77, DIRECT\n")
    assert ads.relationship("google.com", "pub-1") == "DIRECT"
    assert ads.relationship("EXCHANGE.example", "77") == "DIRECT"  # DIRECT wins over RESELLER
    assert ads.relationship("google.com", "pub-2") is None and ads.skipped == 2


def test_sellers_json_parsing() -> None:
    s = parse_sellers_json(b'{"sellers": [{"seller_id": "a", "seller_type": "publisher"}, {"seller_id": 7, '
                           b'"seller_type": "BOTH"}, {"seller_type": "PUBLISHER"}, {"seller_id": "z"}]}')
    assert s.sellers == {"a": "PUBLISHER", "7": "BOTH"} and s.skipped == 2
    with pytest.raises(msgspec.DecodeError):
        parse_sellers_json(b"<html>")


def _req(**parts: Any) -> BidRequest:
    body = {"id": "r", "imp": [{"id": "1"}], **parts}
    return normalise(msgspec.json.decode(msgspec.json.encode(body), type=BidRequest))


def test_quality_gate_order_and_facts(snapshot: Snapshot) -> None:
    rules = snapshot.traffic
    generic = snapshot.exchanges["generic"]
    strict = msgspec.structs.replace(generic, always_sends_ip=True)
    assert quality_gate(_req(), generic, rules) is NO_FACTS
    assert quality_gate(_req(), strict, rules) == (
        NoBidReason.NON_HUMAN_TRAFFIC, "no device.ip (this exchange always sends one)")
    bad = quality_gate(_req(device={"ip": "12.34"}), strict, rules)
    assert isinstance(bad, tuple) and bad[0] is NoBidReason.NON_HUMAN_TRAFFIC
    assert quality_gate(_req(device={"ip": "12.34"}), generic, rules) is NO_FACTS  # lenient exchange
    got = quality_gate(_req(device={"ip": "127.0.0.1", "ua": "curl/8"}), generic, rules)
    assert isinstance(got, tuple) and got[0] is NoBidReason.NON_HUMAN_TRAFFIC  # IP before UA
    got = quality_gate(_req(device={"ip": "8.8.8.8", "ua": "curl/8"}), generic, rules)
    assert isinstance(got, tuple) and got[0] is NoBidReason.KNOWN_CRAWLER
    facts = quality_gate(_req(device={"ip": "3.0.4.5"}, source={"schain": {"complete": 1, "nodes": [
        {"asi": "exchange.example", "sid": "pub-1001"}, {"asi": "r.example", "sid": "9"}]}}), generic, rules)
    assert facts == SupplyFacts("Amazon AWS", True, 1)


def test_ads_txt_authorisation(snapshot: Snapshot) -> None:
    rules = snapshot.traffic
    generic = snapshot.exchanges["generic"]
    site = {"domain": "www.news.example", "publisher": {"id": "pub-1001"}}
    assert quality_gate(_req(site=site), generic, rules) is NO_FACTS
    app = {"bundle": "com.example.budgetapp", "domain": "apps.example", "publisher": {"id": "pub-1002"}}
    assert quality_gate(_req(app=app), generic, rules) is NO_FACTS  # app-ads.txt lists pub-1002
    wrong = {**app, "publisher": {"id": "pub-1001"}}
    got = quality_gate(_req(app=wrong), generic, rules)
    assert isinstance(got, tuple) and got[0] is NoBidReason.UNAUTHORISED_SELLER and "app-ads.txt" in got[1]
    unknown_domain = {"domain": "elsewhere.example", "publisher": {"id": "pub-1001"}}
    assert quality_gate(_req(site=unknown_domain), generic, rules) is NO_FACTS  # when_present
    required = msgspec.structs.replace(rules, ads_txt_mode="required")
    got = quality_gate(_req(site=unknown_domain), generic, required)
    assert got == (NoBidReason.ADS_TXT_UNAVAILABLE, "no ads.txt for elsewhere.example")
    assert NoBidReason.ADS_TXT_UNAVAILABLE.nbr == 11
    off = msgspec.structs.replace(rules, ads_txt_mode="off")
    assert quality_gate(_req(site={**site, "publisher": {"id": "pub-1002"}}), generic, off) is NO_FACTS
    other = msgspec.structs.replace(generic, ad_system_domain=None)  # no domain: nothing to check
    assert quality_gate(_req(site={**site, "publisher": {"id": "pub-9"}}), other, rules) is NO_FACTS


# -- refresh -----------------------------------------------------------------------------------

@pytest.fixture
def configs(tmp_path: Path) -> Path:
    dst = tmp_path / "configs"
    shutil.copytree(CONFIGS, dst)
    return dst


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(folder), **kw)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def test_refresh_bots_from_a_url(configs: Path, served: tuple[str, Path]) -> None:
    url, folder = served
    items = [{"pattern": f"TestCrawler{i}\\/"} for i in range(150)] + [{"pattern": "[wW]eirdbot"}]
    (folder / "crawlers.json").write_bytes(msgspec.json.encode(items))
    assert main(["traffic", "refresh", "bots", "--source", f"{url}/crawlers.json",
                 "--configs", str(configs)]) == 0
    rules = load_snapshot(configs).traffic
    assert rules.bots.size == 151 and rules.bots.match("Mozilla/5.0 TestCrawler7/1.0") == "TestCrawler7/"
    assert rules.bots.match("weirdbot") == "weirdbot"


def test_refresh_datacenters_from_a_file_and_refusals(configs: Path, tmp_path: Path) -> None:
    target = configs / "ivt" / "datacenters.csv"
    before = target.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("1.0.0.0/8\nnot a range\n")
    assert main(["traffic", "refresh", "datacenters", "--source", str(bad), "--configs", str(configs)]) == 1
    short = tmp_path / "short.csv"
    short.write_text("1.0.0.0/8\n")
    assert main(["traffic", "refresh", "datacenters", "--source", str(short), "--configs", str(configs)]) == 1
    assert target.read_bytes() == before  # refused refreshes leave the file alone
    good = tmp_path / "good.csv"
    good.write_text("".join(f"10.{i}.0.0/16,Cloud {i}\n" for i in range(120)) + "198.51.100.0/24,Test DC\n")
    assert main(["traffic", "refresh", "datacenters", "--source", str(good), "--configs", str(configs)]) == 0
    dc = load_snapshot(configs).traffic.datacenters
    assert dc.lookup(parse_ip("198.51.100.9")) == "Test DC" and dc.lookup(parse_ip("3.0.4.5")) is None
    assert main(["traffic", "refresh", "bots", "--source", str(tmp_path / "missing"),
                 "--configs", str(configs)]) == 1
