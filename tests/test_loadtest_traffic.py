"""dsp.testing.traffic: templates from the real corpus, fresh ids, user mix, gzip, shape weights."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from dsp.testing.traffic import TrafficGenerator, TrafficMix, load_known_ids

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "openrtb-corpus"


def _gen(tmp_path: Path, **kw: object) -> TrafficGenerator:
    ids = tmp_path / "ids.jsonl"
    ids.write_text("".join(json.dumps({"id": f"user-{i}", "segment": "x"}) + "\n" for i in range(50)))
    mix = TrafficMix(**{"exchanges": {"alpha": 3.0, "beta": 1.0}, "seed": 7, **kw})  # type: ignore[arg-type]
    return TrafficGenerator.from_sources(mix, corpus_dir=CORPUS, fixtures_dir=tmp_path / "none",
                                         ids_file=ids)


def test_every_request_parses_and_has_fresh_ids(tmp_path: Path) -> None:
    gen = _gen(tmp_path)
    assert len(gen.templates) >= 60  # the corpus holds 70 requests
    seen: set[str] = set()
    for s in gen.batch(300):
        req = json.loads(s.body)
        assert req["id"] == s.request_id and s.request_id not in seen
        seen.add(s.request_id)
        assert s.path == f"/bid/{s.exchange}" and req["imp"]
        if isinstance(req.get("source"), dict):
            assert req["source"]["tid"] == s.request_id


def test_known_users_come_from_ids_file_in_all_id_fields(tmp_path: Path) -> None:
    gen = _gen(tmp_path, known_user_share=0.5, no_user_share=0.2)
    kinds: Counter[str] = Counter()
    for s in gen.batch(1000):
        req = json.loads(s.body)
        if s.user_id is None:
            kinds["absent"] += 1
            assert "ifa" not in req.get("device", {}) and "id" not in req.get("user", {})
            continue
        assert req["device"]["ifa"] == req["user"]["buyeruid"] == req["user"]["id"] == s.user_id
        if s.known_user:
            kinds["known"] += 1
            assert s.user_id.startswith("user-")
        else:
            kinds["unknown"] += 1
            assert not s.user_id.startswith("user-")
    assert 400 < kinds["known"] < 600 and 130 < kinds["absent"] < 270 and kinds["unknown"] > 200


def test_exchange_weights_and_gzip(tmp_path: Path) -> None:
    gen = _gen(tmp_path, gzip_share=0.3)
    samples = gen.batch(2000)
    by_ex = Counter(s.exchange for s in samples)
    assert 1300 < by_ex["alpha"] < 1700
    zipped = [s for s in samples if s.gzipped]
    assert 450 < len(zipped) < 750
    for s in zipped[:20]:
        assert s.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(s.body))["id"] == s.request_id


def test_shape_weights_select_templates(tmp_path: Path) -> None:
    gen = _gen(tmp_path, shapes={"video": 1.0})
    assert all("video" in json.dumps(json.loads(s.body)["imp"]) for s in gen.batch(100))
    with pytest.raises(ValueError, match="match no template"):
        _gen(tmp_path, shapes={"hologram": 1.0})


def test_fixture_story_files_are_templates(tmp_path: Path) -> None:
    fx = tmp_path / "fixtures" / "stories"
    fx.mkdir(parents=True)
    (fx / "one.json").write_text(json.dumps({"request": {"id": "x", "imp": [{"id": "1", "banner": {}}],
                                                          "app": {"id": "a"}}}))
    bad = tmp_path / "fixtures" / "invalid"
    bad.mkdir()
    (bad / "no.json").write_text(json.dumps({"id": "x", "imp": [{"id": "1"}]}))
    gen = TrafficGenerator.from_sources(TrafficMix(exchanges={"a": 1}, seed=1),
                                        corpus_dir=tmp_path / "empty", fixtures_dir=tmp_path / "fixtures")
    assert [t.name for t in gen.templates] == ["fixtures/stories/one.json"]
    assert gen.templates[0].shape == "banner-app"


def test_bad_ids_file_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "ids.jsonl"
    p.write_text('{"id": "a"}\n{"nope": 1}\n')
    with pytest.raises(ValueError, match=r"ids.jsonl:2"):
        load_known_ids(p)
