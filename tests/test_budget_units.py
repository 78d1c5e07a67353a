"""Pure money code: local ledger, frequency-cap decoding, pacing plan and controller."""

from __future__ import annotations

import itertools
import math

import pytest

from dsp.budget.freqcap import encode_impressions, impressions_in_window, is_capped
from dsp.budget.ledger import Ledger
from dsp.budget.pacing import PacingController, PacingPlan, PacingSettings
from dsp.budget.spec import FrequencyCap


def funded(amount: int) -> Ledger:
    led = Ledger("c1", 1)
    led.lease_synced(settled_micros=0, return_asked_micros=0, returned_micros=0,
                     granted_micros=amount, lease_micros=amount)
    return led


def test_reserve_commit_release_keep_the_invariant() -> None:
    led = funded(10_000)
    assert led.reserve("a", 4_000, now_s=0, first_check_s=1, final_check_at_s=5)
    assert led.reserve("b", 5_000, now_s=0, first_check_s=1, final_check_at_s=5)
    assert not led.reserve("c", 2_000, now_s=0, first_check_s=1, final_check_at_s=5)  # does not fit
    assert not led.reserve("a", 1, now_s=0, first_check_s=1, final_check_at_s=5)  # same bid twice
    assert led.drift_micros() == 0
    assert led.commit("a", 3_000) == 3_000
    assert led.available_micros == 1_000 + 1_000
    assert led.commit("a", 3_000) == 0  # second commit of the same bid changes nothing
    assert led.release("b") and not led.release("b")
    assert (led.committed_micros, led.reserved_micros, led.available_micros) == (3_000, 0, 7_000)
    assert led.drift_micros() == 0


def test_commit_is_capped_at_the_reservation() -> None:
    led = funded(10_000)
    led.reserve("a", 4_000, now_s=0, first_check_s=1, final_check_at_s=5)
    assert led.commit("a", 9_999) == 4_000
    assert led.drift_micros() == 0


def test_due_returns_first_then_final_checks_once() -> None:
    led = funded(10_000)
    led.reserve("a", 1_000, now_s=0, first_check_s=1, final_check_at_s=5)
    led.reserve("b", 1_000, now_s=0, first_check_s=2, final_check_at_s=6)
    assert led.due(0.5) == ([], [])
    assert led.due(1.5) == (["a"], [])
    assert led.due(2.0) == (["b"], [])
    assert led.due(3.6) == (["a"], [])  # a again after twice the delay
    led.release("b")
    assert led.due(10) == ([], ["a"])  # b already settled: not returned
    led.release("a")
    assert led.due(100) == ([], [])


def test_sync_with_return_and_settle_balances() -> None:
    led = funded(10_000)
    led.reserve("a", 4_000, now_s=0, first_check_s=1, final_check_at_s=5)
    led.commit("a", 1_000)
    asked = led.take_for_return(5_000)
    assert asked == 5_000 and led.drift_micros() == 0
    led.lease_synced(settled_micros=1_000, return_asked_micros=asked, returned_micros=asked,
                     granted_micros=0, lease_micros=4_000)
    assert led.drift_micros() == 0 and led.available_micros == 4_000
    led.take_for_return(1_000)
    led.sync_failed(1_000)
    assert led.available_micros == 4_000 and led.drift_micros() == 0


def test_lease_lost_drops_everything() -> None:
    led = funded(10_000)
    led.reserve("a", 4_000, now_s=0, first_check_s=1, final_check_at_s=5)
    assert led.lease_lost() == ["a"]
    assert led.available_micros == 0 and led.drift_micros() == 0 and not led.is_reserved("a")


def test_frequency_cap_counts_only_the_window() -> None:
    cap = FrequencyCap(max_impressions=2, window_s=100)
    raw = encode_impressions([800, 950, 990])
    assert impressions_in_window(raw, 1000, 100) == 2
    assert is_capped({"c1": raw}, "c1", cap, 1000)
    assert not is_capped({"c1": raw}, "c1", cap, 1060)  # 950 has left the window
    assert not is_capped({}, "c1", cap, 1000)
    assert impressions_in_window(b"garbage,,12x", 1000, 100) == 0


def test_even_plan_and_target_rate() -> None:
    plan = PacingPlan((1.0,) * 24)
    assert plan.elapsed_fraction(0) == 0
    assert plan.elapsed_fraction(43_200) == pytest.approx(0.5)
    # half the day left, 864 units left: 864/43200 per second
    assert plan.target_rate(864_000_000, 43_200) == pytest.approx(864_000_000 / 43_200)


def test_curve_plan_schedule_and_offset() -> None:
    curve = tuple([0.0] * 8 + [1.0] * 12 + [0.0] * 4)  # 08:00-20:00 local
    plan = PacingPlan(curve, utc_offset_minutes=120)
    assert not plan.in_schedule(5 * 3600)  # 07:00 local
    assert plan.in_schedule(7 * 3600)  # 09:00 local
    assert plan.target_rate(1_000, 5 * 3600) == 0.0
    with pytest.raises(ValueError):
        PacingPlan((1.0,) * 23)


def simulate(ctrl: PacingController, target: float, base: float, steps: int) -> list[float]:
    """Market where spend rate falls with λ: rate = base / (1 + λ)^2."""
    lams = []
    for _ in range(steps):
        rate = base / (1.0 + ctrl.lam) ** 2
        ctrl.update(rate, target)
        lams.append(ctrl.lam)
    return lams


def test_controller_converges_without_oscillation() -> None:
    ctrl = PacingController()  # the defaults the bidder uses
    lams = simulate(ctrl, target=100.0, base=900.0, steps=60)  # equilibrium: λ = 2
    assert lams[-1] == pytest.approx(2.0, rel=0.06)
    settled = lams[20:]
    diffs = [b - a for a, b in itertools.pairwise(settled) if abs(b - a) > 1e-9]
    sign_changes = sum(1 for a, b in itertools.pairwise(diffs) if a * b < 0)
    assert sign_changes <= 2
    assert max(lams) < 2.0 * 1.3  # no big overshoot


def test_controller_underspend_lowers_lambda_to_zero() -> None:
    ctrl = PacingController(initial_lambda=3.0)
    lams = simulate(ctrl, target=1_000.0, base=100.0, steps=40)
    assert lams[-1] == 0.0


def test_throttle_engages_at_lambda_max_and_releases_first() -> None:
    ctrl = PacingController(PacingSettings(lambda_max=1.0), initial_lambda=1.0)
    for _ in range(10):
        ctrl.update(1_000.0, 10.0)
    assert ctrl.lam == pytest.approx(1.0) and ctrl.throttle > 0.5
    before = ctrl.throttle
    for _ in range(6):
        ctrl.update(0.0, 10.0)
    assert ctrl.throttle < before and ctrl.lam == pytest.approx(1.0)
    assert math.isfinite(ctrl.lam)


def test_due_in_slices_returns_every_id_once_final_checks_first() -> None:
    led = funded(10**9)
    for i in range(1000):
        # 0..299 are past their final check; the rest only need an interim check.
        final_at = 5.0 if i < 300 else 50.0
        led.reserve(f"b{i}", 10, now_s=0, first_check_s=1, final_check_at_s=final_at)
    slices = []
    while True:
        first, final = led.due(10.0, limit=256)
        if not first and not final:
            break
        assert len(first) + len(final) <= 256
        slices.append((first, final))
        for bid_id in final:  # the runtime settles each slice before asking for the next
            assert led.release(bid_id)
    finals = [b for _, fin in slices for b in fin]
    firsts = [b for fst, _ in slices for b in fst]
    assert sorted(finals) == sorted(f"b{i}" for i in range(300))
    assert sorted(firsts) == sorted(f"b{i}" for i in range(300, 1000))  # each once, this moment
    assert slices[0][1] and not slices[0][0]  # final checks come first
    assert led.due(10.0) == ([], [])
    first, final = led.due(12.0)  # interim checks come back after twice the delay (1 s -> 2 s)
    assert final == [] and sorted(first) == sorted(f"b{i}" for i in range(300, 1000))


def test_a_zero_first_delay_is_not_returned_twice_in_one_moment() -> None:
    led = funded(10_000)
    led.reserve("a", 1_000, now_s=0, first_check_s=0, final_check_at_s=5)
    assert led.due(0.0, limit=10) == (["a"], [])
    assert led.due(0.0, limit=10) == ([], [])
    assert led.due(0.5) == (["a"], [])  # next tick: checked again


def test_the_cached_schedule_answers_like_the_plan_at_every_boundary() -> None:
    from dsp.budget.runtime import MoneySettings, _Campaign
    from dsp.budget.spec import CampaignBudget

    day0 = 20_000 * 86_400.0
    curve = tuple(0.0 if h == 3 else 1.0 for h in range(24))
    spec = CampaignBudget("s", 1_000_000, pacing_curve=curve, utc_offset_minutes=90,
                          active_from_s=day0 + 1_000.0, active_until_s=day0 + 86_400 + 50_000.0)
    c = _Campaign(spec, MoneySettings(), 20_000)

    def uncached(t: float) -> bool:
        return (spec.active_from_s <= t < spec.active_until_s  # type: ignore[operator]
                and c.plan.in_schedule(t))

    times = [day0 + k * 97.3 for k in range(2_000)]  # forwards through both days' boundaries
    times += [day0 + 86_400 + 50_000.0 - 0.001, day0 + 86_400 + 50_000.0, day0 + 999.999,
              day0 + 1_000.0, day0 + 3 * 3600 - 5_400 - 0.001, day0 + 3 * 3600 - 5_400]
    times += list(reversed(times[:300]))  # and backwards (test clocks do that)
    for t in times:
        assert c.bidding_at(t) == uncached(t), t
