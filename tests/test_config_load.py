"""Config loading: the demo config compiles; bad configs list every problem with file and path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dsp.config.reloader import SnapshotHolder
from dsp.config.snapshot import load_snapshot
from dsp.errors import ConfigInvalid

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "tests" / "fixtures" / "configs" / "demo"


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "configs"
    shutil.copytree(CONFIGS, dst)
    return dst


def test_demo_fixture_config_compiles() -> None:
    snap = load_snapshot(CONFIGS)
    ids = {c.id for c in snap.campaigns}
    assert {"quickloan-prime", "cashbridge-starter"} <= ids
    assert "generic" in snap.exchanges and any(e.lax_numbers for e in snap.exchanges.values())
    ql = next(c for c in snap.campaigns if c.id == "quickloan-prime")
    assert (ql.pd_max, ql.intent_min, ql.max_cpm_micros) == (0.30, 0.004, 6_000_000)
    assert ql.banners[(300, 250)].cat == ("IAB13-2",)
    budget = next(b for b in snap.budgets if b.campaign_id == "quickloan-prime")
    assert budget.daily_budget_micros == 500_000_000 and len(budget.pacing_curve) == 24
    assert budget.frequency_cap is not None and budget.frequency_cap.window_s == 86_400
    cb = next(b for b in snap.budgets if b.campaign_id == "cashbridge-starter")
    assert cb.active_from_s is not None and cb.active_until_s is None


def test_every_problem_is_listed_with_file_and_path(config_dir: Path) -> None:
    path = config_dir / "campaigns" / "quickloan-prime.yaml"
    text = path.read_text()
    text = text.replace("max_cpm: 6.00", "max_cpm: -1").replace("pd_max: 0.30", "pd_max: 0.30\npd_maxx: 1")
    text = text.replace("  daily: 500.00", "  daily: lots")
    path.write_text(text)
    (config_dir / "exchanges" / "generic.yaml").write_text("name: generic\ncurrency: XXX\nlax: true\n")
    with pytest.raises(ConfigInvalid) as info:
        load_snapshot(config_dir)
    found = {(Path(p.file).name, p.path) for p in info.value.problems}
    assert ("quickloan-prime.yaml", "max_cpm") in found
    assert ("quickloan-prime.yaml", "pd_maxx") in found
    assert ("quickloan-prime.yaml", "budget.daily") in found
    assert ("generic.yaml", "lax") in found


def test_cross_file_problems(config_dir: Path) -> None:
    path = config_dir / "campaigns" / "cashbridge-starter.yaml"
    text = path.read_text().replace("currency: USD", "currency: ZZZ")
    text = text.replace("targeting:\n", "targeting:\n  exchanges: [nowhere]\n")
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as info:
        load_snapshot(config_dir)
    messages = " | ".join(str(p) for p in info.value.problems)
    assert "currency" in messages and "nowhere" in messages and "cashbridge-starter.yaml" in messages


def test_yaml_syntax_error_is_a_problem(config_dir: Path) -> None:
    (config_dir / "campaigns" / "broken.yaml").write_text("id: [unclosed\n")
    with pytest.raises(ConfigInvalid) as info:
        load_snapshot(config_dir)
    assert any("broken.yaml" in p.file and "YAML" in p.message for p in info.value.problems)


def test_failed_reload_keeps_last_good_snapshot(config_dir: Path) -> None:
    holder = SnapshotHolder.load(config_dir)
    good = holder.current
    assert not holder.changed()
    path = config_dir / "campaigns" / "quickloan-prime.yaml"
    original = path.read_text()
    path.write_text(original.replace("max_cpm: 6.00", "max_cpm: nope"))
    assert holder.changed()
    result = holder.reload()
    assert not result.ok and holder.current is good
    assert any("quickloan-prime.yaml: max_cpm" in p for p in result.problems)
    path.write_text(original.replace("max_cpm: 6.00", "max_cpm: 7.25"))
    seen: list[object] = []
    holder.subscribe(seen.append)
    result = holder.reload()
    assert result.ok and result.changed and holder.current is not good
    ql = next(c for c in holder.current.campaigns if c.id == "quickloan-prime")
    assert ql.max_cpm_micros == 7_250_000 and seen == [holder.current]


def test_an_alias_inherits_its_parent_and_overrides_a_few_keys() -> None:
    snap = load_snapshot(ROOT / "tests" / "fixtures" / "configs" / "demo")
    parent, alias = snap.exchanges["bidswitch"], snap.exchanges["bidswitch-eu"]
    assert alias.currency == "EUR" and parent.currency == "USD"
    assert (alias.auction_type, alias.first_price_shading, alias.seat, alias.nobid_body) == (
        parent.auction_type, parent.first_price_shading, parent.seat, parent.nobid_body)
    assert alias.hook_name == "bidswitch"
    assert snap.campaigns_for("bidswitch-eu")  # its own route, with the campaigns of any exchange


def test_alias_problems_name_the_alias_file(config_dir: Path) -> None:
    (config_dir / "exchanges" / "ghost.yaml").write_text("name: ghost\nalias_of: nowhere\n")
    (config_dir / "exchanges" / "a1.yaml").write_text("name: a1\nalias_of: generic\n")
    (config_dir / "exchanges" / "a2.yaml").write_text("name: a2\nalias_of: a1\n")
    (config_dir / "exchanges" / "a3.yaml").write_text("name: a3\nalias_of: generic\ntmax_default_ms: -1\n")
    with pytest.raises(ConfigInvalid) as err:
        load_snapshot(config_dir)
    text = "\n".join(str(p) for p in err.value.problems)
    assert "ghost.yaml" in text and "no exchange profile named 'nowhere'" in text
    assert "a2.yaml" in text and "'a1' is itself an alias" in text
    assert "a3.yaml" in text and "tmax_default_ms" in text
    assert "a1.yaml" not in text
