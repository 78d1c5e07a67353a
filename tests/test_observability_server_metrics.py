"""/metrics of the real bidder (dsp serve, 2 worker processes): a known set of requests shows up
exactly, summed across both processes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dsp.testing.serve import running_bidder

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "openrtb-corpus"


@pytest.fixture()
def two_worker_bidder(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    prom = tmp_path / "prom"
    with running_bidder(redis_url, tmp_path / "serve.log", workers=2,
                        env={"PROMETHEUS_MULTIPROC_DIR": str(prom)}) as url:
        yield url, prom


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(getattr(url, "admin", url) + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, frozenset((k, v) for k, v in s.labels.items() if k != "pid"))
            out[key] = out.get(key, 0.0) + s.value
    return out


def _wait_for(url: str, at_least: float, timeout_s: float, name: str,
              **labels: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Scrape until ``name`` (with ``labels``) sums to ``at_least`` or ``timeout_s`` passes (workers
    flush their tallies once a second); the last scrape either way."""
    end = time.monotonic() + timeout_s
    got = _samples(url)
    while _sum(got, name, **labels) < at_least and time.monotonic() < end:
        time.sleep(0.2)
        got = _samples(url)
    return got


def _sum(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def test_known_requests_are_counted_across_workers(two_worker_bidder: tuple[str, Path]) -> None:
    url, prom = two_worker_bidder
    good = (CORPUS / "iab-openrtb-2.6" / "simple-banner.json").read_bytes()
    statuses = [_post(f"{url}/bid/generic", good) for _ in range(24)]
    statuses += [_post(f"{url}/bid/generic", json.dumps({"id": "x", "imp": []}).encode()) for _ in range(6)]
    assert statuses.count(400) == 6 and all(s in (200, 204) for s in statuses[:24])
    # The scraped worker flushes its tallies first; the other one flushes once a second
    # (dsp.server.recorder), so its counts may arrive a moment later, never twice.
    got = _wait_for(url, 30, 10.0, "dsp_bid_requests_total", exchange="generic")
    assert _sum(got, "dsp_bid_requests_total", exchange="generic") == 30
    assert _sum(got, "dsp_bid_requests_total", exchange="generic", outcome="invalid") == 6
    # every answer counted once, by outcome: 200s as bids, 204s as no-bids
    assert _sum(got, "dsp_bid_requests_total", exchange="generic", outcome="bid") == statuses.count(200)
    assert _sum(got, "dsp_bid_requests_total", exchange="generic", outcome="nobid") == statuses.count(204)
    assert _sum(got, "dsp_request_latency_seconds_count", exchange="generic") == 30
    assert _sum(got, "dsp_request_latency_seconds_bucket", exchange="generic", le="+Inf") == 30
    assert _sum(got, "dsp_inflight_requests") == 0  # every request finished
    # Both workers served requests (fresh connection per request) and wrote their own files.
    pids = {p.stem.rsplit("_", 1)[-1] for p in prom.glob("counter_*.db")}
    assert len(pids) >= 2


def test_supervisor_admin_port_reloads_every_worker(two_worker_bidder: tuple[str, Path]) -> None:
    url, _ = two_worker_bidder
    admin = getattr(url, "admin", "")
    assert admin and _post(f"{url}/admin/reload", b"") == 404  # not on the bid port
    req = urllib.request.Request(admin + "/admin/reload", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.loads(r.read())
    assert answer["ok"] is True and answer["workers_signalled"] == 2
    # every worker reloads (each counts its own dsp_config_reloads_total{result="ok"})
    got = _wait_for(url, 2, 15.0, "dsp_config_reloads_total", result="ok")
    assert _sum(got, "dsp_config_reloads_total", result="ok") == 2
