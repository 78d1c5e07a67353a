"""``dsp config`` validate / diff / preview, run through the real CLI entry point."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dsp.cli import main

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "tests" / "fixtures" / "configs" / "demo"


@pytest.fixture()
def edited(tmp_path: Path) -> Path:
    dst = tmp_path / "edited"
    shutil.copytree(CONFIGS, dst)
    path = dst / "campaigns" / "cashbridge-starter.yaml"
    path.write_text(path.read_text().replace("max_cpm: 3.50", "max_cpm: 4.00"))
    return dst


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", "--configs", str(CONFIGS)]) == 0
    assert "quickloan-prime" in capsys.readouterr().out


def test_validate_lists_problems(edited: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = edited / "campaigns" / "quickloan-prime.yaml"
    path.write_text(path.read_text().replace("pd_max: 0.30", "pd_max: 3.0\nbudgett: 1"))
    assert main(["config", "validate", "--configs", str(edited)]) == 2
    err = capsys.readouterr().err
    assert "quickloan-prime.yaml: pd_max" in err and "quickloan-prime.yaml: budgett" in err


def test_diff_and_preview(edited: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "diff", "--from", str(CONFIGS), "--configs", str(edited)]) == 0
    out = capsys.readouterr().out
    assert "cashbridge-starter: max_cpm_micros 3500000 -> 4000000" in out
    assert main(["config", "preview", "--from", str(CONFIGS), "--configs", str(edited),
                 "--fixtures", str(ROOT / "tests" / "fixtures" / "bidding")]) == 0
    out = capsys.readouterr().out
    assert "requests replayed" in out and "cashbridge-starter" in out and "=>" in out
