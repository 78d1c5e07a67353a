"""Editor schema and complete validation: committed schemas match the Structs, shipped files point
at them, dates arrive as a YAML parser hands them, and every problem is listed at any depth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import pytest

from dsp.cli import main
from dsp.config.jsonschema import FIELD_DOCS, KINDS, STRUCTS, build_schemas, render
from dsp.config.snapshot import load_snapshot
from dsp.errors import ConfigInvalid

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "bidder_configs"


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "configs"
    shutil.copytree(CONFIGS, dst)
    return dst


def test_committed_schemas_match_the_structs() -> None:
    for kind, schema in build_schemas().items():
        committed = (CONFIGS / "schema" / f"{kind}.json").read_text(encoding="utf-8")
        assert committed == render(schema), (
            f"bidder_configs/schema/{kind}.json is stale: run `dsp config schema`")


def test_every_field_has_a_description_and_no_stale_entries() -> None:
    fields = {f"{s.__name__}.{f.name}" for s in STRUCTS for f in msgspec.structs.fields(s)}
    assert fields == set(FIELD_DOCS)
    campaign = build_schemas()["campaign"]["$defs"]["CampaignFile"]
    assert campaign["additionalProperties"] is False
    assert "CPM" in campaign["properties"]["max_cpm"]["description"]
    assert campaign["properties"]["max_cpm"]["examples"] == [6.0]


def test_shipped_files_reference_their_schema() -> None:
    files = [(p, "campaign") for p in (CONFIGS / "campaigns").glob("*.yaml")]
    files += [(p, "exchange") for p in (CONFIGS / "exchanges").glob("*.yaml")]
    files += [(CONFIGS / "currencies.yaml", "currency")]
    assert len(files) >= 4
    for path, kind in files:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), path
        target = (path.parent / first[len(prefix):]).resolve()
        assert target == (CONFIGS / "schema" / f"{kind}.json").resolve(), path
        schema = json.loads(target.read_text())
        assert schema["title"] == f"dsp {kind} config"
    assert set(KINDS) == {"campaign", "exchange", "currency"}


@pytest.mark.parametrize("start", ["2026-01-01", '"2026-01-01"'])
def test_dates_quoted_or_not(config_dir: Path, start: str) -> None:
    path = config_dir / "campaigns" / "quickloan-prime.yaml"
    path.write_text(path.read_text().replace('start: "2026-01-01"', f"start: {start}"))
    snap = load_snapshot(config_dir)
    budget = next(b for b in snap.budgets if b.campaign_id == "quickloan-prime")
    assert budget.active_from_s == 1_767_225_600  # 2026-01-01T00:00:00Z


def test_two_bad_creatives_are_two_problems(config_dir: Path) -> None:
    path = config_dir / "campaigns" / "quickloan-prime.yaml"
    text = path.read_text()
    text = text.replace("    w: 300\n    h: 250\n", "    w: -300\n    h: 250\n", 1)
    text = text.replace("    adomain: [quickloan.example]\n", "    adomain: []\n    colour: red\n", 2)
    text = text.replace("  apply_rate: 0.002", "  apply_rate: 2.0")
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as info:
        load_snapshot(config_dir)
    where = {(Path(p.file).name, p.path) for p in info.value.problems}
    assert ("quickloan-prime.yaml", "creatives[0].w") in where
    assert ("quickloan-prime.yaml", "creatives[0].adomain") in where
    assert ("quickloan-prime.yaml", "creatives[1].adomain") in where
    assert ("quickloan-prime.yaml", "creatives[1].colour") in where
    assert ("quickloan-prime.yaml", "funnel.apply_rate") in where


def test_cross_file_checks_run_on_what_parsed(config_dir: Path) -> None:
    bad = config_dir / "campaigns" / "quickloan-prime.yaml"
    bad.write_text(bad.read_text().replace("max_cpm: 6.00", "max_cpm: lots"))
    other = config_dir / "campaigns" / "cashbridge-starter.yaml"
    other.write_text(other.read_text().replace("currency: USD", "currency: ZZZ"))
    with pytest.raises(ConfigInvalid) as info:
        load_snapshot(config_dir)
    where = {(Path(p.file).name, p.path) for p in info.value.problems}
    assert ("quickloan-prime.yaml", "max_cpm") in where
    assert ("cashbridge-starter.yaml", "currency") in where


def test_a_broken_exchange_file_is_not_also_reported_as_missing(config_dir: Path) -> None:
    (config_dir / "exchanges" / "smaato.yaml").write_text("name: smaato\ntmax_default_ms: -1\n")
    camp = config_dir / "campaigns" / "cashbridge-starter.yaml"
    camp.write_text(camp.read_text().replace("targeting:\n", "targeting:\n  exchanges: [smaato]\n"))
    with pytest.raises(ConfigInvalid) as info:
        load_snapshot(config_dir)
    messages = [str(p) for p in info.value.problems]
    assert any("smaato.yaml: tmax_default_ms" in m for m in messages)
    assert not any("no exchange profile" in m for m in messages)


def test_schema_command_writes_every_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaign.json", "currency.json",
                                                          "exchange.json"]
    assert (tmp_path / "campaign.json").read_text() == (CONFIGS / "schema" / "campaign.json").read_text()
