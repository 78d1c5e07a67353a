"""Decoding and validation against the shared corpus and hand-made edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsp.errors import InvalidRequest
from dsp.openrtb.decode import RequestDecoder

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "openrtb-corpus"
VALID = sorted(CORPUS.glob("*/*.json"))
BAD = sorted(p for p in (CORPUS / "bad").rglob("*") if p.is_file())

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "invalid"
# What each bad corpus file must be blamed for (a path fragment or message words), and hand-made
# invalid requests with the exact path the 400 must name: data in fixture files, not in this test.
BLAME: dict[str, str] = json.loads((FIXTURES / "corpus-blame.json").read_text())["blame"]
INVALID = sorted(p for p in FIXTURES.glob("*.json") if p.name != "corpus-blame.json")


@pytest.fixture(scope="module")
def decoder() -> RequestDecoder:
    return RequestDecoder()


def test_corpus_is_there() -> None:
    assert len(VALID) >= 70 and len(BAD) >= 14
    assert sorted(BLAME) == sorted(p.name for p in BAD)  # every bad file has its expected blame


@pytest.mark.parametrize("path", VALID, ids=[f"{p.parent.name}/{p.stem}" for p in VALID])
def test_valid_corpus_decodes(path: Path, decoder: RequestDecoder) -> None:
    req = decoder.decode(path.read_bytes())
    assert req.id and req.imp


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_corpus_is_rejected_naming_the_problem(path: Path, decoder: RequestDecoder) -> None:
    with pytest.raises(InvalidRequest) as info:
        decoder.decode(path.read_bytes())
    blame = BLAME[path.name]
    assert blame in info.value.path or blame in info.value.message


def test_lax_numbers_accept_numeric_strings(decoder: RequestDecoder) -> None:
    body = (CORPUS / "bad/invalid-openrtb/rtb4free--banner-w-h-as-strings.json").read_bytes()
    req = decoder.decode(body, lax_numbers=True)
    assert req.imp[0].banner is not None and (req.imp[0].banner.w, req.imp[0].banner.h) == (728, 90)


def test_25_and_26_shapes_normalise_to_the_same_values(decoder: RequestDecoder) -> None:
    pair = CORPUS / "prebid-server"
    a = decoder.decode((pair / "pair-same-auction-as-sent-to-ortb25-bidder.json").read_bytes())
    b = decoder.decode((pair / "pair-same-auction-as-sent-to-ortb26-bidder.json").read_bytes())
    assert a.regs is not None and a.user is not None and b.regs is not None and b.user is not None
    assert (a.regs.gdpr, a.regs.us_privacy) == (b.regs.gdpr, b.regs.us_privacy)
    assert a.user.consent == b.user.consent
    assert a.regs.gdpr is not None and a.user.consent


def _req(**over: object) -> bytes:
    base: dict[str, object] = {"id": "r", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]}
    base.update(over)
    return json.dumps(base).encode()


@pytest.mark.parametrize("fixture", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_requests_name_the_path(fixture: Path, decoder: RequestDecoder) -> None:
    case = json.loads(fixture.read_text())
    body = json.dumps(case["request"]).encode() if "request" in case else case["raw"].encode()
    assert case["expect"]["status"] == 400
    with pytest.raises(InvalidRequest) as info:
        decoder.decode(body)
    assert info.value.path == case["expect"]["path"]


def test_real_world_oddities_are_accepted(decoder: RequestDecoder) -> None:
    body = _req(
        imp=[{"id": "ü-1", "banner": {"w": 0, "h": 0}, "bidfloor": 0, "ext": {"x": [1, {"y": None}]}}],
        site={"domain": "例え.jp", "cat": []}, device={"geo": {"country": "de"}, "ua": "x" * 5000},
        user={"keywords": ["a", "b"], "ext": {"eids": [{"source": "s", "uids": [{"id": "1"}]}]}},
        tmax=0, unknown_top={"deep": [1, 2, 3]})
    req = decoder.decode(body)
    assert req.user is not None and req.user.eids and req.imp[0].id == "ü-1"


def test_strict_profile_rejects_numeric_strings(decoder: RequestDecoder) -> None:
    with pytest.raises(InvalidRequest) as info:
        decoder.decode(_req(tmax="100"))
    assert info.value.path == "tmax"
    assert decoder.decode(_req(tmax="100"), lax_numbers=True).tmax == 100
