"""Learning from the event log: the censored landscape, shading tables, funnel shrinkage, the
config opt-ins, exploration bids and retraining from a logged day."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest

from dsp.bidding.pricing import explore_price, price
from dsp.config.learned import ShadingFile, ShadingTable, ValueBucket
from dsp.config.snapshot import load_snapshot
from dsp.features.contract import DEFAULTS, N_FEATURES
from dsp.offline.eventlog.join import open_log
from dsp.offline.learning.exploration import _day_events, write_log
from dsp.offline.learning.funnel import shrink
from dsp.offline.learning.landscape import fit_landscape
from dsp.offline.learning.retrain import fit_weighted, training_set, weighted_auc

ROOT = Path(__file__).resolve().parent.parent


def test_turnbull_recovers_the_price_distribution_from_wins_and_losses_only() -> None:
    rng = np.random.default_rng(3)
    market = rng.gamma(2.0, 30.0, size=30_000)
    bids = rng.uniform(0, 200, size=30_000)
    land = fit_landscape(bids, bids >= market, np.arange(0, 301.0))
    for b in (20.0, 50.0, 80.0, 120.0):
        assert abs(land.win_prob(b) - float(np.mean(market <= b))) < 0.04
    # a naive fit (win rate of the bids placed near b) is the same here; with bids that depend on
    # the impression it is not: the estimator only ever sees (bid, won)


def test_exact_prices_give_the_empirical_distribution() -> None:
    prices = np.array([10.0, 20.0, 20.0, 40.0])
    land = fit_landscape(np.zeros(4), np.zeros(4, dtype=bool), np.arange(0, 51.0), exact=prices)
    assert land.win_prob(19.0) == pytest.approx(0.25, abs=1e-6)
    assert land.win_prob(20.0) == pytest.approx(0.75, abs=1e-6)
    assert land.win_prob(45.0) == pytest.approx(1.0, abs=1e-6)
    # surplus-maximising bid for value 50: (50 - 20) * 0.75 = 22.5 beats (50 - 40) * 1.0 = 10
    assert land.best_bid(50.0) == 20.0


def test_shading_table_interpolates_and_never_bids_above_value() -> None:
    t = ShadingTable(exchange="x", format="banner", currency="USD", edges_cpm_micros=[1_000_000],
                     buckets=[ValueBucket([0, 1_000_000], [0, 800_000]),
                              ValueBucket([1_000_000, 3_000_000], [700_000, 1_500_000])])
    assert t.bid_for(500_000) == 400_000
    assert t.bid_for(2_000_000) == 1_100_000
    assert t.bid_for(6_000_000) == 3_000_000  # beyond the grid: the last point's ratio
    for v in range(0, 7_000_000, 250_001):
        assert 0 <= t.bid_for(v) <= v


def test_beta_shrinkage() -> None:
    # prior 0.5 with strength 20, observed 9 of 10 -> (9 + 10) / (10 + 20)
    assert shrink(9, 10, 0.5, 20) == pytest.approx(19 / 30)
    assert shrink(0, 0, 0.3, 20) == pytest.approx(0.3)  # no data: the prior


def _configs_with_learning(tmp_path: Path) -> Path:
    cfg = tmp_path / "cfg"
    shutil.copytree(ROOT / "bidder_configs", cfg)
    path = cfg / "campaigns" / "quickloan-prime.yaml"
    path.write_text(path.read_text() + "learning:\n  funnel: true\n  shading: learned\n"
                    "  explore_share: 0.01\n")
    (cfg / "learned").mkdir(exist_ok=True)
    (cfg / "learned" / "funnel.yaml").write_text(
        "campaigns:\n  quickloan-prime: {apply_rate: 0.004, p_approve: 0.5, applications: 40}\n"
        "  cashbridge-starter: {apply_rate: 0.9, p_approve: 0.9}\n")
    table = ShadingTable(exchange="generic", format="banner", currency="USD",
                         buckets=[ValueBucket([0, 10_000_000], [0, 5_000_000])])
    (cfg / "learned" / "shading.json").write_bytes(msgspec.json.encode(ShadingFile(tables=[table])))
    return cfg


def test_learned_parameters_apply_only_where_opted_in(tmp_path: Path) -> None:
    base = load_snapshot(ROOT / "bidder_configs")
    snap = load_snapshot(_configs_with_learning(tmp_path))
    assert snap.version != base.version  # learned files are part of the config version
    by_id = {c.id: c for c in snap.campaigns}
    q, cb = by_id["quickloan-prime"], by_id["cashbridge-starter"]
    assert (q.apply_rate, q.p_approve, q.funnel_learned) == (0.004, 0.5, True)
    base_cb = next(c for c in base.campaigns if c.id == "cashbridge-starter")
    assert cb.apply_rate == base_cb.apply_rate and not cb.funnel_learned  # did not opt in
    generic = snap.exchanges["generic"]
    assert snap.shading_table(q, generic, "banner") is not None
    assert snap.shading_table(cb, generic, "banner") is None  # exchange says fixed
    assert snap.shading_table(q, generic, "video") is None  # no table for the format


def test_first_price_uses_the_learned_table_and_keeps_the_floor(tmp_path: Path) -> None:
    snap = load_snapshot(_configs_with_learning(tmp_path))
    q = next(c for c in snap.campaigns if c.id == "quickloan-prime")
    table = snap.shading_table(q, snap.exchanges["generic"], "banner")
    fixed = price(q, 0.2, 0.05, pacing_lambda=0.0, floor_cpm_micros=0, auction_type=1, shading=0.85)
    learned = price(q, 0.2, 0.05, pacing_lambda=0.0, floor_cpm_micros=0, auction_type=1,
                    shading=0.85, table=table)
    assert fixed.bid_cpm_micros == round(q.max_cpm_micros * 0.85)
    assert learned.bid_cpm_micros == q.max_cpm_micros // 2 and learned.shading == pytest.approx(0.5)
    floored = price(q, 0.2, 0.05, pacing_lambda=0.0, floor_cpm_micros=4_000_000, auction_type=1,
                    shading=0.85, table=table)
    assert floored.bid_cpm_micros == 4_000_000  # shaded below a floor the unshaded bid clears
    second = price(q, 0.2, 0.05, pacing_lambda=0.0, floor_cpm_micros=0, auction_type=2,
                   shading=0.85, table=table)
    assert second.bid_cpm_micros == q.max_cpm_micros and second.shading == 1.0
    explored = explore_price(q, fixed, 1_000_000)
    assert explored is not None
    assert explored.explore and explored.propensity == q.explore_share == 0.01
    assert explored.bid_cpm_micros == max(1_000_000, q.max_cpm_micros // 10)
    # A floor above the campaign's bid cap: exploration does not bid over max_cpm.
    assert explore_price(q, fixed, q.max_cpm_micros) is not None
    assert explore_price(q, fixed, q.max_cpm_micros + 1) is None


def test_retraining_from_a_logged_day_weights_explored_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 40_000
    x = np.tile(np.asarray(DEFAULTS, dtype=np.float32), (n, 1))
    signal = rng.random(n).astype(np.float32)
    x[:, 0] = signal
    true_p = 0.02 + 0.3 * signal ** 2
    labels = (rng.random(n) < true_p).astype(np.int64)
    serving = signal.astype(np.float64)
    write_log(tmp_path, _day_events(x, serving, labels, 0.05, seed=1))
    con = open_log(tmp_path)
    data = training_set(con)
    assert data.x.shape[1] == N_FEATURES and len(data.y) > 1000
    assert data.explored.any() and data.weight[data.explored].min() > data.weight[~data.explored].max()
    assert data.weight.max() <= 10.0  # clipped
    model = fit_weighted(data.x, data.y, data.weight, seed=1)
    fresh = np.tile(np.asarray(DEFAULTS, dtype=np.float32), (5000, 1))
    fresh[:, 0] = np.linspace(0, 1, 5000)
    p = model.predict(fresh)
    assert p[-500:].mean() > p[:500].mean() * 2  # it learned the signal, low end included
    assert weighted_auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8]), np.ones(4)) == 1.0


def _first_price_log(root: Path, n: int = 6000) -> np.ndarray:
    from dsp.events.schema import BidEvent, Event, LossEvent, WinEvent

    rng = np.random.default_rng(11)
    market = rng.gamma(3.0, 700_000.0, size=n)  # CPM micros
    values = rng.uniform(500_000, 6_000_000, size=n)
    bids = values * rng.uniform(0.2, 1.0, size=n)
    events: list[Event] = []
    for i in range(n):
        b = int(bids[i])
        events.append(BidEvent(ts_us=1_764_748_800_000_000 + i, exchange="fp", campaign="c",
                               bid_id=f"f{i}", request_id=f"r{i}", imp_id="1", creative="cr",
                               format="banner", bid_cpm_micros=b, bid_price_micros=b // 1000,
                               currency="USD", auction_type=1, shading=b / values[i]))
        if b >= market[i]:
            events.append(WinEvent(ts_us=1_764_748_800_000_000 + i, exchange="fp", campaign="c",
                                   bid_id=f"f{i}", price_micros=b // 1000, currency="USD"))
        elif i % 2:
            events.append(LossEvent(ts_us=1_764_748_800_000_000 + i, exchange="fp", campaign="c",
                                    bid_id=f"f{i}", loss_reason=102))
    write_log(root, events)
    return market


def test_shading_tables_fitted_from_a_first_price_log(tmp_path: Path) -> None:
    from dsp.offline.learning.shading_fit import fit_tables

    market = _first_price_log(tmp_path)
    (table,) = fit_tables(open_log(tmp_path), min_bids=1000, buckets=2)
    assert (table.exchange, table.format, table.currency, table.observations) == ("fp", "banner",
                                                                                  "USD", 6000)
    # thin data in the left tail (low bids rarely win) costs the low values a little more
    for value, share in ((1_000_000, 0.75), (2_000_000, 0.88), (3_000_000, 0.9), (5_000_000, 0.95)):
        bid = table.bid_for(value)
        assert 0 < bid < value
        # close to the true optimum of (v - b) * P(m <= b)
        grid = np.linspace(0, value, 400)
        true_best = grid[np.argmax((value - grid) * (market[None, :] <= grid[:, None]).mean(1))]
        surplus = (value - bid) * np.mean(market <= bid)
        assert surplus >= share * (value - true_best) * np.mean(market <= true_best)


def test_funnel_estimates_from_the_log_shrink_toward_the_prior(tmp_path: Path) -> None:
    from dsp.offline.learning.funnel import PRIOR_APPLICATIONS, estimate

    rng = np.random.default_rng(2)
    n = 20_000
    x = np.tile(np.asarray(DEFAULTS, dtype=np.float32), (n, 1))
    serving = rng.random(n)
    labels = (rng.random(n) < 0.1).astype(np.int64)
    write_log(tmp_path, _day_events(x, serving, labels, 0.0, seed=3))
    con = open_log(tmp_path)
    apps, intent_sum = con.sql("SELECT count(*) FILTER (WHERE submitted), "
                               "sum(scores['p_intent']) FILTER (WHERE impression) "
                               "FROM bid_outcomes").fetchall()[0]
    est = estimate(con, {"sim": (0.05, 0.5)})["sim"]
    mu = 0.05
    want = (apps + mu * PRIOR_APPLICATIONS / mu) / (intent_sum + PRIOR_APPLICATIONS / mu)
    assert est["apply_rate"]["estimate"] == pytest.approx(want)
    assert est["apply_rate"]["observed"] == pytest.approx(apps / intent_sum)
    # no approvals were logged: 0 of `apps`, pulled toward the prior by 20 pseudo-applications
    want_p = 0.5 * PRIOR_APPLICATIONS / (apps + PRIOR_APPLICATIONS)
    assert est["p_approve"]["estimate"] == pytest.approx(want_p)
    assert est["applications"] == apps


def test_models_train_from_events_writes_a_candidate_with_its_evaluation(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(4)
    n = 60_000
    x = np.tile(np.asarray(DEFAULTS, dtype=np.float32), (n, 1))
    x[:, 0] = rng.random(n)
    labels = (rng.random(n) < 0.02 + 0.4 * x[:, 0] ** 2).astype(np.int64)
    write_log(tmp_path / "ev", _day_events(x, x[:, 0].astype(np.float64), labels, 0.05, seed=9))
    out = tmp_path / "cand"
    proc = subprocess.run([sys.executable, "-m", "dsp.cli", "models", "train", "--events",
                           str(tmp_path / "ev"), "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads((out / "EVALUATION.json").read_text())
    later = report["later_slice"]
    assert later["rows"] > 500 and later["serving"] is not None and "promote" in later
    assert report["train"]["explored_rows"] > 0
    assert (out / "model.onnx").stat().st_size > 1000
    cfg = json.loads((out / "config.json").read_text())
    assert "+events" in cfg["version"] and cfg["score"] == "p_intent"
