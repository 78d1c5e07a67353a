"""One process's local ledger for one campaign day: reserve, commit, release. Pure and synchronous.

Invariant, checked by :meth:`Ledger.drift_micros` (exported as ``dsp_ledger_drift_micros``)::

    leased = committed + reserved + available (+ returning, only while a LEASE call is in flight)

* ``leased``    money this process holds in its Redis lease (as of the last LEASE script);
* ``committed`` clearing prices of our bids that the notices committed, not yet settled into the
                lease (the next LEASE call subtracts them from the lease: they are spent);
* ``reserved``  bid prices of outstanding bids (won or lost, we do not know yet);
* ``available`` what the bid path may still reserve.

A bid reserves its price; when its outcome is known (looked up in Redis by the runtime, see
:mod:`dsp.budget.runtime`) it is committed at the clearing price (the rest of the reservation
becomes available again) or released. A bid without outcome is looked up ``first_check_s`` after the bid, then
again at doubling intervals (so a late loss notice frees money early, and each bid costs only a
few look-ups), and a last time after its expiry plus a grace; then it is released.
"""

from __future__ import annotations

import heapq
from array import array
from collections import deque

#: Released bids whose late look-ups fall due within this many seconds of each other share one
#: batch of the re-check queue (the later ones are then looked up up to this much early).
RECHECK_MERGE_S = 1.0
#: At most this many bids per batch (one look-up round trip takes a batch at a time).
RECHECK_BATCH_MAX = 4_096


class _RecheckBatch:
    """Released bids whose late look-up is due at ``due_s``, all in one outcome bucket, stored
    compactly: the bid ids length-prefixed in one ``bytearray`` and their prices in one
    ``array('q')`` — about 25 bytes per bid instead of ~240 for a tuple of Python objects. The
    queue holds every bid released in the last ``late_recheck_s`` (600 s): at 3,000 releases a
    second that is 1.8 M bids, 45 MB this way, 430 MB as tuples."""

    __slots__ = ("bucket", "due_s", "ids", "n", "prices")

    def __init__(self, due_s: float, bucket: int) -> None:
        self.due_s = due_s
        self.bucket = bucket
        self.ids = bytearray()
        self.prices = array("q")
        self.n = 0

    def add(self, bid_id: str, price_micros: int) -> None:
        raw = bid_id.encode()
        self.ids += len(raw).to_bytes(2, "little") + raw
        self.prices.append(price_micros)
        self.n += 1

    def items(self) -> list[tuple[str, int, int]]:
        out: list[tuple[str, int, int]] = []
        ids, i = self.ids, 0
        for price in self.prices:
            size = int.from_bytes(ids[i:i + 2], "little")
            out.append((ids[i + 2:i + 2 + size].decode(), price, self.bucket))
            i += 2 + size
        return out


class Ledger:
    """Local money of one campaign day. Not thread-safe; lives on one event loop."""

    __slots__ = ("_buckets", "_deadline", "_final", "_first", "_n_rechecks", "_prices", "_rechecks",
                 "available_micros",
                 "campaign_id", "committed_micros", "day", "leased_micros", "reserved_micros",
                 "returning_micros")

    def __init__(self, campaign_id: str, day: int) -> None:
        self.campaign_id = campaign_id
        self.day = day
        self.leased_micros = 0
        self.committed_micros = 0
        self.reserved_micros = 0
        self.available_micros = 0
        self.returning_micros = 0  # taken out of available, on its way back to Redis
        self._prices: dict[str, int] = {}
        self._buckets: dict[str, int] = {}  # bid id -> its outcome bucket (dsp.budget.keys)
        self._deadline: dict[str, float] = {}  # bid id -> when its final look-up is due
        # released bids awaiting their late look-up, in batches by due time (compact: see
        # _RecheckBatch); the number of bids in them
        self._rechecks: deque[_RecheckBatch] = deque()
        self._n_rechecks = 0
        self._first: list[tuple[float, str, float]] = []  # heap of (due s, bid id, delay s)
        self._final: list[tuple[float, str]] = []

    # --- the bid path -------------------------------------------------------------------------
    def reserve(self, bid_id: str, price_micros: int, *, now_s: float, first_check_s: float,
                final_check_at_s: float, bucket: int = 0) -> bool:
        """Move ``price_micros`` from available to reserved. False if it does not fit or the bid id
        is already reserved (nothing changes then). ``bucket``: where its outcome will be."""
        if price_micros <= 0 or price_micros > self.available_micros or bid_id in self._prices:
            # (available may be negative after a late charge: nothing fits then)
            return False
        self.available_micros -= price_micros
        self.reserved_micros += price_micros
        self._prices[bid_id] = price_micros
        self._buckets[bid_id] = bucket
        heapq.heappush(self._first, (now_s + first_check_s, bid_id, first_check_s))
        self._deadline[bid_id] = final_check_at_s
        heapq.heappush(self._final, (final_check_at_s, bid_id))
        return True

    def extend(self, bid_id: str, final_check_at_s: float) -> None:
        """Move a reserved bid's final look-up later (e.g. won, billing notice still to come)."""
        if bid_id in self._prices and final_check_at_s > self._deadline[bid_id]:
            self._deadline[bid_id] = final_check_at_s
            heapq.heappush(self._final, (final_check_at_s, bid_id))

    # --- outcomes -----------------------------------------------------------------------------
    def commit(self, bid_id: str, cost_micros: int) -> int:
        """Settle a won bid at ``cost_micros`` (capped at its reservation). Returns the amount
        committed; 0 if the bid is not (or no longer) reserved here."""
        price = self._prices.pop(bid_id, None)
        if price is None:
            return 0
        del self._deadline[bid_id]
        del self._buckets[bid_id]
        cost = max(0, min(cost_micros, price))
        self.reserved_micros -= price
        self.committed_micros += cost
        self.available_micros += price - cost
        return cost

    def release(self, bid_id: str, *, recheck_at_s: float | None = None) -> bool:
        """Return a lost or expired bid's reservation to available. False if unknown here.

        With ``recheck_at_s``, the bid is looked up once more then (:meth:`due_rechecks`): a
        notice that still commits it is charged with :meth:`charge_late`."""
        price = self._prices.pop(bid_id, None)
        if price is None:
            return False
        del self._deadline[bid_id]
        bucket = self._buckets.pop(bid_id)
        self.reserved_micros -= price
        self.available_micros += price
        if recheck_at_s is not None:
            self._queue_recheck(recheck_at_s, bucket, bid_id, price)
        return True

    def _queue_recheck(self, due_s: float, bucket: int, bid_id: str, price_micros: int) -> None:
        q = self._rechecks
        last = q[-1] if q else None
        if (last is None or last.bucket != bucket or last.n >= RECHECK_BATCH_MAX
                or not 0 <= due_s - last.due_s <= RECHECK_MERGE_S):
            last = _RecheckBatch(due_s, bucket)
            q.append(last)
        last.add(bid_id, price_micros)
        self._n_rechecks += 1

    def due_rechecks(self, now_s: float) -> list[tuple[str, int, int]]:
        """Released bids whose late look-up is due: (bid id, its former reservation, bucket).
        Each is returned once: the queue holds a released bid only until this call, so it
        holds at most the bids released in the last ``late_recheck_s`` (+ one batch's merge)."""
        out: list[tuple[str, int, int]] = []
        while self._rechecks and self._rechecks[0].due_s <= now_s:
            batch = self._rechecks.popleft()
            self._n_rechecks -= batch.n
            out.extend(batch.items())
        return out

    def requeue_rechecks(self, items: list[tuple[str, int, int]], at_s: float) -> None:
        """Put late look-ups back (their look-up failed); due again at ``at_s``."""
        front: deque[_RecheckBatch] = deque()
        for bid_id, price, bucket in items:
            if not front or front[-1].bucket != bucket or front[-1].n >= RECHECK_BATCH_MAX:
                front.append(_RecheckBatch(at_s, bucket))
            front[-1].add(bid_id, price)
        self._n_rechecks += len(items)
        self._rechecks.extendleft(reversed(front))

    def charge_late(self, cost_micros: int, price_micros: int) -> int:
        """A released bid turned out won and billed (a late notice): the spend is real, so take it
        from this lease (available may go negative: no reservations until new money arrives).
        Returns the amount charged (capped at the former reservation)."""
        cost = max(0, min(cost_micros, price_micros))
        self.committed_micros += cost
        self.available_micros -= cost
        return cost

    def is_reserved(self, bid_id: str) -> bool:
        return bid_id in self._prices

    def bucket_of(self, bid_id: str) -> int:
        """The outcome bucket of a reserved bid (KeyError if it is not reserved here)."""
        return self._buckets[bid_id]

    def due(self, now_s: float, limit: int | None = None) -> tuple[list[str], list[str]]:
        """Bid ids whose outcome should be looked up now: (interim checks, final checks).

        After a final check the caller must commit or release each id: it is not returned again.
        An interim check is rescheduled here (doubling delay) if it falls before the final one.
        ``limit`` caps how many ids one call returns (final checks first); the rest stay due and
        come back from the next call, so a caller can settle a large backlog in slices.
        """
        cap = limit if limit is not None else len(self._final) + len(self._first)
        final: list[str] = []
        while self._final and self._final[0][0] <= now_s and len(final) < cap:
            at_s, bid_id = heapq.heappop(self._final)
            if bid_id in self._prices and at_s >= self._deadline[bid_id]:
                final.append(bid_id)
        closing = set(final)
        first: list[str] = []
        again: list[tuple[float, str, float]] = []
        while self._first and self._first[0][0] <= now_s and len(final) + len(first) < cap:
            _, bid_id, delay = heapq.heappop(self._first)
            if bid_id in self._prices and bid_id not in closing:
                first.append(bid_id)
                # Strictly later than now (even with a zero first delay): a caller slicing one
                # moment's backlog must not get the same interim check back in the next slice.
                again.append((now_s + max(2 * delay, 1e-6), bid_id, 2 * delay))
        for item in again:
            heapq.heappush(self._first, item)
        return first, final

    def requeue(self, bid_ids: list[str], at_s: float, *, final: bool) -> None:
        """Put ids returned by :meth:`due` back (their look-up failed); checked again at ``at_s``."""
        for bid_id in bid_ids:
            if final:
                if bid_id in self._deadline:
                    self._deadline[bid_id] = at_s
                heapq.heappush(self._final, (at_s, bid_id))
            else:
                heapq.heappush(self._first, (at_s, bid_id, 0.0))

    @property
    def outstanding(self) -> int:
        """Reserved bids."""
        return len(self._prices)

    @property
    def rechecks_pending(self) -> int:
        """Released bids still awaiting their late look-up."""
        return self._n_rechecks

    # --- the lease ----------------------------------------------------------------------------
    def take_for_return(self, amount_micros: int) -> int:
        """Set aside up to ``amount_micros`` of available money to hand back in the next LEASE call
        (before awaiting it, so the bid path cannot reserve it meanwhile). Returns the amount."""
        amount = max(0, min(amount_micros, self.available_micros))
        self.available_micros -= amount
        self.returning_micros += amount
        return amount

    def lease_synced(self, *, settled_micros: int, return_asked_micros: int, returned_micros: int,
                     granted_micros: int, lease_micros: int) -> None:
        """Apply one LEASE script result: ``settled`` commits and ``returned`` money left the
        lease, ``granted`` came in; ``lease_micros`` is what Redis now says we hold."""
        self.committed_micros -= settled_micros
        self.returning_micros -= return_asked_micros
        self.available_micros += return_asked_micros - returned_micros + granted_micros
        self.leased_micros = lease_micros

    def sync_failed(self, return_asked_micros: int) -> None:
        """The LEASE call failed: the money set aside for return is available again."""
        self.returning_micros -= return_asked_micros
        self.available_micros += return_asked_micros

    def lease_lost(self) -> list[str]:
        """Redis reclaimed our lease (we were cut off past its TTL): start from zero. Returns the
        orphaned bid ids; any of them that still wins is overspend the docs' bound covers."""
        orphans = list(self._prices)
        self._prices.clear()
        self._buckets.clear()
        self._deadline.clear()
        self._rechecks.clear()
        self._n_rechecks = 0
        self._first.clear()
        self._final.clear()
        self.leased_micros = self.committed_micros = self.reserved_micros = 0
        self.available_micros = self.returning_micros = 0
        return orphans

    def drift_micros(self) -> int:
        """leased - (committed + reserved + available); 0 when the books balance."""
        return self.leased_micros - (self.committed_micros + self.reserved_micros
                                     + self.available_micros + self.returning_micros)
