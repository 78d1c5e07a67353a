"""A smaller version of the forecast-accuracy table of docs/forecast.md (iPinYou, data we did not
make): one campaign, 40 episodes (fit on 1–20, forecast 21–40), three changes. The full table:
``dsp forecast --ipinyou ../shared/datasets/ipinyou-rtb-logs-rlb-dp``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsp.offline.forecast.ipinyou import CHANGES, evaluate_campaign, within
from dsp.offline.taiwan import default_data_dir

DATA = default_data_dir() / "ipinyou-rtb-logs-rlb-dp"
pytestmark = pytest.mark.skipif(not (DATA / "validation_100k").is_dir(),
                                reason="iPinYou logs not in the shared datasets")


def test_wins_and_spend_within_ten_percent_on_later_episodes() -> None:
    changes = tuple(c for c in CHANGES if c[0] in ("policy", "bid x0.5", "budget 1/8"))
    results = evaluate_campaign(Path(DATA), "2259", episodes=40, n_boot=5, changes=changes)
    assert [r.change for r in results] == ["policy", "bid x0.5", "budget 1/8"]
    for r in results:
        assert within(r.wins.mean, r.truth_wins), (r.change, r.wins.mean, r.truth_wins)
        assert within(r.spend.mean, r.truth_spend_micros), (r.change, r.spend.mean,
                                                            r.truth_spend_micros)
        assert r.clicks.low <= r.truth_clicks <= r.clicks.high, r.change
    # a bigger budget is forecast to buy more: the forecast moves with the change
    assert results[2].wins.mean > 2 * results[0].wins.mean
