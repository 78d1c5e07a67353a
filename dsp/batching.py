"""A generic cross-request micro-batcher: many callers, one call of a list-in/list-out function.

    batcher = MicroBatcher(fetch_and_score, max_batch_size=128, max_wait_us=0)
    result = await batcher.submit(user_id, deadline)      # one await per caller

Contract (the Ray Serve ``@serve.batch`` / Triton dynamic-batcher shape):

* ``fn(items, deadline)`` takes a list and returns a list of the same length and order;
  ``deadline`` is the earliest deadline among the batch's items, and ``fn`` must not outlive it;
* each caller awaits its own future; an exception from ``fn`` (or a wrong-length result) fails
  every future of that batch with :class:`~dsp.errors.DependencyUnavailable`;
* every item keeps its own deadline, queued or in flight: when it passes, the item is answered
  at once — with ``on_expire(value)`` when given (e.g. an "unknown user" fallback), else with
  :class:`DeadlineExceeded` — and a result that comes later is dropped. One timer serves all
  items (it fires at the earliest outstanding deadline; items normally finish long before theirs,
  so it fires about once per deadline length, not once per item). A stalled batch (Redis slow,
  a long model run) therefore never holds a caller past its deadline;
* ``max_batch_size`` bounds one call; ``max_wait_us`` is how long the first queued item may wait
  for company (0: batch whatever is already queued in this event-loop tick);
* at most ``max_in_flight`` calls run at once (default 1): while one batch is out (e.g. waiting on
  Redis), new items queue and leave together when it returns. Under load this forms big batches
  without any fixed delay; when idle, an item leaves on the next tick.

The batcher belongs to one event loop and is owned by the app's lifecycle (``close`` fails
whatever is still queued).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from dsp.clock import Deadline, monotonic
from dsp.errors import DependencyUnavailable

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

BatchFn = Callable[[list[I], Deadline], Awaitable[list[O]]]


class DeadlineExceeded(DependencyUnavailable):
    """The item's deadline passed before its batch could be run."""


class BatcherClosed(DependencyUnavailable):
    """The batcher was closed while the item was queued."""


class _Item(Generic[I, O]):
    __slots__ = ("deadline", "future", "value")

    def __init__(self, value: I, deadline: Deadline, future: asyncio.Future[O]) -> None:
        self.value = value
        self.deadline = deadline
        self.future = future


class MicroBatcher(Generic[I, O]):
    """Gathers ``submit`` calls into calls of ``fn``. See the module docstring for the contract."""

    def __init__(self, fn: BatchFn[I, O], *, max_batch_size: int = 128, max_wait_us: int = 0,
                 max_in_flight: int = 1, on_batch: Callable[[int], None] | None = None,
                 on_expire: Callable[[I], O] | None = None) -> None:
        if max_batch_size < 1 or max_wait_us < 0 or max_in_flight < 1:
            raise ValueError("max_batch_size >= 1, max_wait_us >= 0 and max_in_flight >= 1 required")
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_us / 1e6
        self.max_in_flight = max_in_flight
        self._on_batch = on_batch
        self._on_expire = on_expire
        self._pending: list[_Item[I, O]] = []
        self._running: list[list[_Item[I, O]]] = []  # batches out now (their items' deadlines)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._scheduled = False
        self._in_flight = 0
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # bound on the first submit

    @property
    def queued(self) -> int:
        return len(self._pending)

    def submit(self, value: I, deadline: Deadline) -> asyncio.Future[O]:
        """Queue one item; await the returned future for its result."""
        loop = self._loop_now()
        fut: asyncio.Future[O] = loop.create_future()
        if self._closed:
            fut.set_exception(BatcherClosed("batcher closed"))
            return fut
        self._pending.append(_Item(value, deadline, fut))
        if deadline.at_s < self._timer_at:
            self._arm(loop, deadline.at_s)
        if not self._scheduled and self._in_flight < self.max_in_flight:
            self._scheduled = True
            if self.max_wait_s > 0 and len(self._pending) < self.max_batch_size:
                loop.call_later(self.max_wait_s, self._flush)
            else:
                loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending and self._in_flight < self.max_in_flight:
            now = monotonic()
            batch: list[_Item[I, O]] = []
            pending = self._pending
            take = 0
            for item in pending:
                take += 1
                if item.future.done():  # caller gave up (cancelled)
                    continue
                if item.deadline.at_s <= now:
                    self._expire(item)
                    continue
                batch.append(item)
                if len(batch) >= self.max_batch_size:
                    break
            del pending[:take]
            if not batch:
                continue
            self._in_flight += 1
            self._running.append(batch)
            task = self._loop_now().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _loop_now(self) -> asyncio.AbstractEventLoop:
        """The batcher's loop, looked up once: it belongs to one loop, and on Python 3.11 every
        ``asyncio.get_running_loop()`` also makes a ``getpid()`` system call."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    async def _run(self, batch: list[_Item[I, O]]) -> None:
        try:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            deadline = min((item.deadline for item in batch), key=lambda d: d.at_s)
            try:
                results = await self._fn([item.value for item in batch], deadline)
                if len(results) != len(batch):
                    raise DependencyUnavailable(
                        f"batch function returned {len(results)} results for {len(batch)} items")
            except Exception as exc:
                err = exc if isinstance(exc, DependencyUnavailable) else DependencyUnavailable(
                    f"batch failed: {type(exc).__name__}: {exc}")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(err)
                return
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
        finally:
            self._in_flight -= 1
            self._running.remove(batch)
            if self._pending and not self._scheduled:
                self._scheduled = True
                self._loop_now().call_soon(self._flush)

    # -- deadlines -------------------------------------------------------------------------------

    def _expire(self, item: _Item[I, O]) -> None:
        on_expire = self._on_expire
        if on_expire is None:
            item.future.set_exception(DeadlineExceeded("deadline passed while queued or in flight"))
            return
        try:
            item.future.set_result(on_expire(item.value))
        except Exception as exc:
            item.future.set_exception(DependencyUnavailable(f"on_expire failed: {exc}"))

    def _arm(self, loop: asyncio.AbstractEventLoop, at_s: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at_s
        self._timer = loop.call_later(max(0.0, at_s - monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        """Answer every outstanding item whose deadline has passed; re-arm for the next one."""
        self._timer = None
        self._timer_at = math.inf
        now = monotonic()
        earliest = math.inf
        expired = False
        for items in (self._pending, *self._running):
            for item in items:
                if item.future.done():
                    continue
                at = item.deadline.at_s
                if at <= now:
                    self._expire(item)
                    expired = True
                elif at < earliest:
                    earliest = at
        if expired:
            self._pending = [item for item in self._pending if not item.future.done()]
        if earliest < math.inf:
            self._arm(self._loop_now(), earliest)

    async def close(self) -> None:
        """Fail queued items and wait for running batches."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(BatcherClosed("batcher closed"))
        self._pending.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
