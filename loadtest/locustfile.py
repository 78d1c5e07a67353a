"""Locust load test of the bidder: realistic OpenRTB traffic and win/bill/loss notices.

    DSP_IDS_FILE=/tmp/ids.jsonl .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 \\
        --headless -u 50 -r 25 -t 60s --csv /tmp/dsp --html /tmp/dsp.html

Traffic settings come from ``DSP_*`` environment variables (see :mod:`loadtest.scenarios`).
Request names in the statistics:

* ``/bid/<exchange> [bid]`` — a 200 with at least one bid;
* ``/bid/<exchange> [nobid]`` — a 204, or a 200 carrying only ``nbr``;
* ``/notice/win|bill|loss`` — notices for the bids this run "won" or "lost".

Any other status, or a 200 whose body is not a BidResponse, is a failure. Each simulated user
sends back to back (closed loop) unless ``DSP_USER_RPS`` sets a per-user rate.
"""

from __future__ import annotations

import collections
import functools
import os
import random
import sys
from pathlib import Path

from locust import FastHttpUser, constant, constant_throughput, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from loadtest.scenarios import LoadSettings, Notice, notices_for


@functools.lru_cache(maxsize=1)
def _settings() -> LoadSettings:
    return LoadSettings.from_env()


@functools.lru_cache(maxsize=1)
def _generator():  # type: ignore[no-untyped-def]
    # One per worker process; gevent is cooperative and next() never yields, so sharing is safe.
    return _settings().generator()


_USER_RPS = float(os.environ.get("DSP_USER_RPS", "0") or 0)


class ExchangeTraffic(FastHttpUser):
    """One exchange connection's worth of traffic: bid requests, then notices for won bids."""

    wait_time = constant_throughput(_USER_RPS) if _USER_RPS > 0 else constant(0)
    network_timeout = 5.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.settings = _settings()
        self.gen = _generator()
        self.rng = random.Random()
        self.pending: collections.deque[Notice] = collections.deque(maxlen=1000)

    @task
    def bid_or_notice(self) -> None:
        if self.pending:
            self._notice(self.pending.popleft())
        else:
            self._bid()

    def _bid(self) -> None:
        sample = self.gen.next()
        name = f"/bid/{sample.exchange}"
        with self.client.post(sample.path, data=sample.body, headers=sample.headers, name=name,
                              catch_response=True) as resp:
            if resp.status_code == 204:
                resp.request_meta["name"] = f"{name} [nobid]"
                resp.success()
                return
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}: {(resp.text or '')[:200]}")
                return
            n_bids, notices = notices_for(resp.content or b"", self.settings, self.rng)
            if n_bids == 0 and b'"nbr"' not in (resp.content or b""):
                resp.failure("200 without bids or nbr")
                return
            resp.request_meta["name"] = f"{name} [{'bid' if n_bids else 'nobid'}]"
            resp.success()
            self.pending.extend(notices)

    def _notice(self, notice: Notice) -> None:
        with self.client.get(notice.path, name=f"/notice/{notice.kind}", catch_response=True) as resp:
            if resp.status_code in (200, 204):
                resp.success()
            else:
                resp.failure(f"status {resp.status_code}: {(resp.text or '')[:200]}")
