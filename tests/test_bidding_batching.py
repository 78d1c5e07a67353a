"""The generic micro-batcher: list in/list out, shared calls, deadlines, failures."""

from __future__ import annotations

import asyncio

import pytest

from dsp.batching import DeadlineExceeded, MicroBatcher
from dsp.clock import Deadline
from dsp.errors import DependencyUnavailable


async def test_concurrent_items_share_one_call_and_keep_order() -> None:
    calls: list[list[int]] = []

    async def double(items: list[int], _deadline: Deadline) -> list[int]:
        calls.append(list(items))
        await asyncio.sleep(0)
        return [2 * x for x in items]

    b: MicroBatcher[int, int] = MicroBatcher(double, max_batch_size=64)
    results = await asyncio.gather(*(b.submit(i, Deadline.after_ms(1000)) for i in range(10)))
    assert results == [2 * i for i in range(10)]
    assert calls == [list(range(10))]


async def test_batches_respect_max_size_and_queue_while_one_is_in_flight() -> None:
    calls: list[int] = []
    gate = asyncio.Event()

    async def slow(items: list[int], _deadline: Deadline) -> list[int]:
        calls.append(len(items))
        await gate.wait()
        return items

    b: MicroBatcher[int, int] = MicroBatcher(slow, max_batch_size=4)
    futs = [b.submit(i, Deadline.after_ms(1000)) for i in range(3)]
    await asyncio.sleep(0.01)
    futs += [b.submit(i, Deadline.after_ms(1000)) for i in range(3, 10)]
    await asyncio.sleep(0.01)
    assert calls == [3]  # the rest waits for the first batch
    gate.set()
    assert await asyncio.gather(*futs) == list(range(10))
    assert calls == [3, 4, 3]


async def test_error_fails_every_future_of_the_batch() -> None:
    async def boom(items: list[int], _deadline: Deadline) -> list[int]:
        raise RuntimeError("model exploded")

    b: MicroBatcher[int, int] = MicroBatcher(boom)
    futs = [b.submit(i, Deadline.after_ms(1000)) for i in range(3)]
    results = await asyncio.gather(*futs, return_exceptions=True)
    assert all(isinstance(r, DependencyUnavailable) and "exploded" in str(r) for r in results)


async def test_wrong_length_result_is_an_error() -> None:
    async def short(items: list[int], _deadline: Deadline) -> list[int]:
        return items[:-1]

    b: MicroBatcher[int, int] = MicroBatcher(short)
    with pytest.raises(DependencyUnavailable):
        await asyncio.gather(b.submit(1, Deadline.after_ms(1000)), b.submit(2, Deadline.after_ms(1000)))


async def test_expired_items_are_rejected_not_served_late() -> None:
    seen: list[list[str]] = []

    async def echo(items: list[str], deadline: Deadline) -> list[str]:
        seen.append(items)
        assert deadline.remaining_s() > 0
        return items

    b: MicroBatcher[str, str] = MicroBatcher(echo)
    late = b.submit("late", Deadline.after_ms(-1))
    ok = b.submit("ok", Deadline.after_ms(1000))
    assert await ok == "ok"
    with pytest.raises(DeadlineExceeded):
        await late
    assert seen == [["ok"]]


async def test_max_wait_gathers_items_submitted_later() -> None:
    calls: list[int] = []

    async def count(items: list[int], _deadline: Deadline) -> list[int]:
        calls.append(len(items))
        return items

    b: MicroBatcher[int, int] = MicroBatcher(count, max_wait_us=20_000)
    first = b.submit(1, Deadline.after_ms(1000))
    await asyncio.sleep(0.002)
    second = b.submit(2, Deadline.after_ms(1000))
    assert list(await asyncio.gather(first, second)) == [1, 2]
    assert calls == [2]


async def test_close_fails_queued_items() -> None:
    async def never(items: list[int], _deadline: Deadline) -> list[int]:
        await asyncio.sleep(10)
        return items

    b: MicroBatcher[int, int] = MicroBatcher(never, max_wait_us=500_000)
    fut = b.submit(1, Deadline.after_ms(1000))
    await b.close()
    with pytest.raises(DependencyUnavailable):
        await fut


async def test_a_stalled_batch_holds_no_item_past_its_own_deadline() -> None:
    # The first batch hangs (a Redis that answers nobody); items in it and items queued behind it
    # are answered with the fallback when their own deadline passes, each at its own time, while
    # the batch is still out. The late result is then dropped.
    gate = asyncio.Event()
    calls: list[list[int]] = []

    async def stalled(items: list[int], _deadline: Deadline) -> list[int]:
        calls.append(list(items))
        await gate.wait()
        return [10 * x for x in items]

    b: MicroBatcher[int, int] = MicroBatcher(stalled, on_expire=lambda x: -x)
    in_flight = b.submit(1, Deadline.after_ms(30))
    await asyncio.sleep(0)  # the first batch leaves with item 1
    queued_late = b.submit(2, Deadline.after_ms(5000))
    queued_soon = b.submit(3, Deadline.after_ms(60))
    assert await asyncio.wait_for(in_flight, 2) == -1
    assert await asyncio.wait_for(queued_soon, 2) == -3
    assert not queued_late.done() and calls == [[1]]
    gate.set()  # the stall ends: the queued item still in time is served normally
    assert await asyncio.wait_for(queued_late, 2) == 20
    assert calls == [[1], [2]]


async def test_without_a_fallback_an_expired_item_gets_deadline_exceeded() -> None:
    gate = asyncio.Event()

    async def stalled(items: list[int], _deadline: Deadline) -> list[int]:
        await gate.wait()
        return items

    b: MicroBatcher[int, int] = MicroBatcher(stalled)
    fut = b.submit(1, Deadline.after_ms(20))
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(fut, 2)
    gate.set()
    await b.close()
