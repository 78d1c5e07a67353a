"""Replay on small synthetic logs written in both iPinYou formats (never the real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsp.cli import main
from dsp.offline.replay.engine import LinearBid, PacedBid, episode_budget, replay
from dsp.offline.replay.ipinyou import MarketLog, read_log
from dsp.offline.replay.report import REPLAY_PACING


def synthetic(n: int, seed: int = 1) -> MarketLog:
    rng = np.random.default_rng(seed)
    pctr = rng.beta(1.0, 300.0, n)
    clicks = (rng.random(n) < pctr * 1.5).astype(np.int8)
    prices = np.clip(rng.gamma(2.0, 30.0, n), 1, 300).astype(np.int32)
    return MarketLog(clicks=clicks, prices=prices, pctr=pctr)


def write_validation(path: Path, log: MarketLog, n: int) -> None:
    lines = [f"1000\t{n}"]
    for i in range(len(log)):
        if i % n == 0:
            lines.append(str(i // n + 1))
        lines.append(f"{log.clicks[i]}\t{log.prices[i]}\t{float(log.pctr[i])!r}")
    path.write_text("\n".join(lines) + "\n")


def write_theta(path: Path, log: MarketLog) -> None:
    path.write_text("".join(f"{c} {p} {float(t)!r}\n" for c, p, t in
                            zip(log.clicks, log.prices, log.pctr, strict=True)))


def test_both_formats_read_the_same_auctions(tmp_path: Path) -> None:
    log = synthetic(2_500)
    write_validation(tmp_path / "v.txt", log, 500)
    write_theta(tmp_path / "t.txt", log)
    for name in ("v.txt", "t.txt"):
        back = read_log(tmp_path / name)
        assert np.array_equal(back.prices, log.prices) and np.array_equal(back.clicks, log.clicks)
        assert np.allclose(back.pctr, log.pctr)


def test_second_price_accounting_by_hand() -> None:
    log = MarketLog(clicks=np.array([1, 0, 1, 1], np.int8), prices=np.array([10, 50, 30, 5], np.int32),
                    pctr=np.array([0.01, 0.01, 0.02, 0.001]))
    # Lin: bid = b0 * pctr / 0.01 -> 20, 20, 40, 2; budget 35: wins #1 (pays 10), loses #2,
    # #3 bids min(40, 25 left) = 25 < 30: lost; #4 bid 2 < 5: lost
    r = replay(log, LinearBid(20, 0.01), budget_per_episode=35, n_per_episode=4)
    assert (r.impressions, r.clicks, r.spend) == (1, 1, 10)
    first = replay(log, LinearBid(20, 0.01), budget_per_episode=35, n_per_episode=4, first_price=True)
    assert first.spend == 20  # pays its bid


def test_spend_never_exceeds_budget_and_pacing_spreads_it() -> None:
    log = synthetic(20_000)
    budget = episode_budget(float(log.prices.mean()), 1000, 1 / 16)
    greedy = replay(log, LinearBid(300, float(log.pctr.mean())), budget_per_episode=budget)
    vpc = 4 * float(log.prices.mean() / log.pctr.mean())  # λ = 3 bids about the mean price
    paced = replay(log, PacedBid(vpc, lambda0=3.0, pacing=REPLAY_PACING), budget_per_episode=budget)
    for r in (greedy, paced):
        assert r.spend <= r.budget
        assert r.budget_used_curve == sorted(r.budget_used_curve)
    assert greedy.budget_used_curve[1] > 0.9  # a greedy bidder is broke by 20% of the episode
    assert 0.3 < paced.budget_used_curve[4] < 0.7  # the paced one is near half at mid-episode
    assert paced.budget_used_curve[-1] > 0.9
    assert paced.clicks > greedy.clicks


def test_cli_on_a_synthetic_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_theta(tmp_path / "t.txt", synthetic(3_000))
    assert main(["replay", "--log", str(tmp_path / "t.txt"), "--budget-per-episode", "2000",
                 "--value-per-click", "20000"]) == 0
    out = capsys.readouterr().out
    assert "auctions=3000" in out and "clicks=" in out and "budget used" in out
    assert main(["replay", "--log", str(tmp_path / "t.txt")]) == 2
    assert main(["replay"]) == 2


def test_cli_rejects_a_malformed_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.txt").write_text("0 12 0.1\n0 oops\n")
    assert main(["replay", "--log", str(tmp_path / "bad.txt"), "--budget-per-episode", "2000",
                 "--value-per-click", "20000"]) == 2
    assert "bad.txt:2" in capsys.readouterr().err


def test_table_on_a_synthetic_dataset_folder(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "validation_100k").mkdir()
    (tmp_path / "campaign_info").mkdir()
    write_validation(tmp_path / "validation_100k" / "2997.validation.txt", synthetic(4_000), 1000)
    write_theta(tmp_path / "2997.test.theta.txt", synthetic(3_000, seed=2))
    (tmp_path / "campaign_info" / "2997.info.json").write_text(
        '{"imp_train": 1000, "clk_train": 5, "cost_train": 60000}')
    (tmp_path / "published_bid_performance_N1000_c0_1-32.tsv").write_text(
        "setting\tobjective\tauction\timpression\tclick\n"
        "ipinyou, camp=2997, algo=rlb, N=1000, c0=0.03125\t78\t156063\t39680\t78\n")
    assert main(["replay", "--data-dir", str(tmp_path), "--table"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 2997")]
    assert len(rows) == 2 and "full test set" in rows[1] and rows[1].rstrip().endswith("| 78 |")
    assert main(["replay", "--data-dir", str(tmp_path), "--campaign", "2997", "--set", "test"]) == 0
    assert "auctions=3000" in capsys.readouterr().out
