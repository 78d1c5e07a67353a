"""``dsp explain``: per imp and campaign, the filter that dropped it or the price it would bid."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsp.cli import main

ROOT = Path(__file__).resolve().parent.parent
STORIES = ROOT / "tests" / "fixtures" / "bidding"
DEMO = str(ROOT / "tests" / "fixtures" / "configs" / "demo")
MODELS = str(ROOT / "models")


def test_explain_a_bid(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explain", str(STORIES / "bid-known-user.json"), "--configs", DEMO,
                 "--models", MODELS, "--p-intent", "0.05", "--pd", "0.2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "campaign cashbridge-starter:" in out and "device type 2 not targeted" in out
    assert "imp 1: bid" in out and "decision: bid: imp 1 -> quickloan-prime 6.000000 USD CPM" in out


def test_explain_a_gate(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explain", str(STORIES / "nobid-coppa.json"), "--models", MODELS, "--configs", DEMO])
    assert code == 1
    assert "decision: no-bid: coppa (nbr 7)" in capsys.readouterr().out


def test_explain_an_invalid_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "x", "imp": [{"id": "1", "banner": {"w": "300"}}]}')
    assert main(["explain", str(bad), "--models", MODELS, "--configs", DEMO]) == 2
    assert "imp[0].banner.w" in capsys.readouterr().out
    assert main(["explain", str(bad), "--exchange", "smaato", "--models", MODELS, "--configs", DEMO]) == 1


def test_explain_shows_the_privacy_decision(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explain", str(STORIES / "nobid-gdpr-vendor-denied.json"), "--models", MODELS,
                 "--configs", DEMO])
    out = capsys.readouterr().out
    assert code == 1
    assert "privacy: gdpr_no_consent (no user data) — no consent for vendor 1234, GDPR applies" in out
    assert "decision: no-bid: no_consent" in out
