"""Config facts the notice endpoints read: landing pages and which notice bills, per exchange."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dsp.config.snapshot import load_snapshot
from dsp.errors import ConfigInvalid

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "fixtures" / "configs" / "demo"


def _copy_configs(tmp_path: Path) -> Path:
    dst = tmp_path / "configs"
    shutil.copytree(DEMO, dst)
    return dst


def test_demo_campaigns_have_landing_pages() -> None:
    snap = load_snapshot(DEMO)
    for c in snap.campaigns:
        assert (snap.landing_url(c.id) or "").startswith("https://")
    assert snap.landing_url("no-such-campaign") is None


def test_bills_on_follows_the_profile_notice_list(tmp_path: Path) -> None:
    cfg = _copy_configs(tmp_path)
    (cfg / "exchanges" / "winbilled.yaml").write_text("name: winbilled\nnotices: [nurl, lurl]\n")
    snap = load_snapshot(cfg)
    assert snap.bills_on("generic") == "burl"
    assert snap.bills_on("winbilled") == "nurl"
    assert snap.bills_on("unknown-exchange") is None


def test_landing_url_must_be_http(tmp_path: Path) -> None:
    cfg = _copy_configs(tmp_path)
    path = cfg / "campaigns" / "quickloan-prime.yaml"
    text = path.read_text().replace("landing_url: https://quickloan.example/apply?src=dsp",
                                    "landing_url: javascript:alert(1)")
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as err:
        load_snapshot(cfg)
    assert any(p.path == "landing_url" and "quickloan-prime.yaml" in p.file for p in err.value.problems)
