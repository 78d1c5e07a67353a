"""What the money side keeps per bid is bounded and small: the ledger's per-bid state is pruned
once a bid is settled, and the late re-check queue (every bid released in the last
``late_recheck_s``, 600 s) is compact. The soak (loadtest/soak.py) found that queue to be what
grew a worker's RSS: ~240 bytes a released bid as tuples of Python objects."""

from __future__ import annotations

import gc
import tracemalloc

from dsp.budget.ledger import RECHECK_BATCH_MAX, Ledger

N = 20_000


def _ledger_with_released(n: int, *, bucket: int = 490_000) -> Ledger:
    led = Ledger("c1", 1)
    led.available_micros = led.leased_micros = 10**15
    for i in range(n):
        assert led.reserve(f"a1b2c3{i:x}-{i:x}", 1_000 + i, now_s=0.0, first_check_s=2.0,
                           final_check_at_s=35.0, bucket=bucket)
    for i in range(n):
        assert led.release(f"a1b2c3{i:x}-{i:x}", recheck_at_s=600.0 + i * 1e-4)
    return led


def test_released_bids_wait_once_for_their_late_look_up_then_leave() -> None:
    led = _ledger_with_released(N)
    assert led.outstanding == 0 and led.rechecks_pending == N and led.drift_micros() == 0
    assert led.due_rechecks(599.0) == []
    due = led.due_rechecks(700.0)
    assert [b for b, _, _ in due] == [f"a1b2c3{i:x}-{i:x}" for i in range(N)]
    assert [p for _, p, _ in due] == [1_000 + i for i in range(N)]
    assert {k for _, _, k in due} == {490_000}
    assert led.rechecks_pending == 0 and led.due_rechecks(10**9) == []
    # nothing per bid is left anywhere in the ledger once the heaps' stale entries are popped
    assert led.due(10**9) == ([], [])
    assert not led._prices and not led._buckets and not led._deadline
    assert not led._first and not led._final and not led._rechecks


def test_a_failed_late_look_up_is_requeued_whole_and_in_order() -> None:
    led = _ledger_with_released(RECHECK_BATCH_MAX + 10)
    due = led.due_rechecks(700.0)
    led.requeue_rechecks(due, 800.0)
    assert led.rechecks_pending == len(due)
    assert led.due_rechecks(799.0) == []
    assert led.due_rechecks(800.0) == due


def test_buckets_are_kept_apart() -> None:
    led = Ledger("c1", 1)
    led.available_micros = led.leased_micros = 10**9
    for i, bucket in enumerate((7, 7, 8, 7)):
        led.reserve(f"b{i}", 10, now_s=0.0, first_check_s=1.0, final_check_at_s=2.0, bucket=bucket)
        assert led.bucket_of(f"b{i}") == bucket
        led.release(f"b{i}", recheck_at_s=5.0)
    assert led.due_rechecks(5.0) == [("b0", 10, 7), ("b1", 10, 7), ("b2", 10, 8), ("b3", 10, 7)]


def test_the_late_recheck_queue_holds_under_40_bytes_a_bid() -> None:
    # Measured, not timed: what draining the queue frees is what it held (tracemalloc). As
    # tuples of (float, str, int, int) that was ~200 bytes a bid (the soak's RSS slope).
    tracemalloc.start()  # (before the queue is built: only traced allocations count when freed)
    try:
        led = _ledger_with_released(N)
        led._first.clear()  # the heaps' stale entries (popped later in a real run) share the ids
        led._final.clear()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        assert len(led.due_rechecks(10**9)) == N  # (the returned list is dropped at once)
        gc.collect()
        held -= tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert led.rechecks_pending == 0
    assert held / N < 40, f"{held / N:.0f} bytes per queued bid"
