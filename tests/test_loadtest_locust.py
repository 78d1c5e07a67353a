"""A bounded headless Locust run against the real bidder (dsp serve, seeded Redis, real models).

Checks from Locust's own CSV: requests succeeded, bids came back, notices for won bids were
accepted. Also checks /metrics on the same server counted exactly the bid requests Locust sent.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dsp.testing.serve import running_bidder

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadtest.seed import seed_users  # noqa: E402

LOCUST = Path(sys.executable).parent / "locust"


@pytest.fixture()
def bidder(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ids = tmp_path / "ids.jsonl"
    seed_users(redis_url, 2000, 11, ids)
    with running_bidder(redis_url, tmp_path / "serve.log") as url:
        yield url, ids


def _bid_requests_counted(url: str) -> float:
    with urllib.request.urlopen(getattr(url, "admin", url) + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "dsp_bid_requests_total")


def test_bounded_locust_run_gets_bids_and_sends_notices(bidder: tuple[str, Path], tmp_path: Path) -> None:
    url, ids = bidder
    before = _bid_requests_counted(url)
    env = {**os.environ, "DSP_IDS_FILE": str(ids), "DSP_KNOWN_SHARE": "0.9", "DSP_GZIP_SHARE": "0.2",
           "DSP_WIN_SHARE": "0.5", "PYTHONPATH": str(REPO)}
    prefix = tmp_path / "run"
    done = subprocess.run([str(LOCUST), "-f", str(REPO / "loadtest" / "locustfile.py"), "--host", url,
                           "--headless", "-u", "4", "-r", "4", "-t", "8s", "--csv", str(prefix),
                           "--html", str(tmp_path / "report.html"), "--json-file", str(tmp_path / "final"),
                           "--stop-timeout", "2", "--exit-code-on-error", "0"],
                          cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    with (tmp_path / "run_stats.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    by_name = {r["Name"]: r for r in rows}
    total = by_name["Aggregated"]
    assert int(total["Request Count"]) > 100
    assert int(total["Failure Count"]) == 0, (tmp_path / "run_failures.csv").read_text()
    bids = sum(int(r["Request Count"]) for r in rows if r["Name"].endswith("[bid]"))
    assert bids > 0, sorted(by_name)
    wins = by_name.get("/notice/win")
    assert wins is not None and int(wins["Request Count"]) > 0
    assert (tmp_path / "report.html").stat().st_size > 1000
    # The CSV is rewritten once a second and may miss the last moments; the JSON stats are final.
    final = json.loads((tmp_path / "final.json").read_text())
    bid_requests = sum(e["num_requests"] for e in final if e["name"].startswith("/bid/"))
    assert bid_requests >= sum(int(r["Request Count"]) for r in rows if r["Name"].startswith("/bid/"))
    assert _bid_requests_counted(url) - before == bid_requests


def _counted_by_exchange(url: str) -> dict[str, float]:
    with urllib.request.urlopen(getattr(url, "admin", url) + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "dsp_bid_requests_total":
                out[s.labels["exchange"]] = out.get(s.labels["exchange"], 0.0) + s.value
    return out


def test_distributed_locust_master_merges_two_workers(bidder: tuple[str, Path], tmp_path: Path) -> None:
    """Locust as it runs on a load fleet: a master (no load of its own) and two worker processes
    connected over its ZeroMQ port. Each worker is given its own exchange (``DSP_EXCHANGES``), so
    the master's final stats can only hold both routes if it merged both workers' reports; the
    bidder's own counters must match the merged counts exactly, per exchange."""
    url, ids = bidder
    before = _counted_by_exchange(url)
    from dsp.testing.redis_server import free_port

    port = free_port()
    base = {**os.environ, "DSP_IDS_FILE": str(ids), "DSP_KNOWN_SHARE": "0.9", "DSP_WIN_SHARE": "0.5",
            "PYTHONPATH": str(REPO)}
    locustfile = str(REPO / "loadtest" / "locustfile.py")
    master = subprocess.Popen(
        [str(LOCUST), "-f", locustfile, "--master", "--master-bind-host", "127.0.0.1",
         "--master-bind-port", str(port), "--expect-workers", "2", "--expect-workers-max-wait", "60",
         "--headless", "-u", "6", "-r", "6", "-t", "8s", "--host", url, "--stop-timeout", "2",
         "--json-file", str(tmp_path / "final"), "--csv", str(tmp_path / "fleet"),
         "--exit-code-on-error", "0"],
        cwd=tmp_path, env=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    workers = [subprocess.Popen(
        [str(LOCUST), "-f", locustfile, "--worker", "--master-host", "127.0.0.1",
         "--master-port", str(port)],
        cwd=tmp_path, env={**base, "DSP_EXCHANGES": exchange}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL) for exchange in ("generic=1", "smaato=1")]
    try:
        out, _ = master.communicate(timeout=120)
        for w in workers:
            w.wait(timeout=30)  # the master tells its workers to quit when the run ends
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
                p.wait()
    log = out.decode(errors="replace")
    assert master.returncode == 0, log[-3000:]
    final = json.loads((tmp_path / "final.json").read_text())
    by_route: dict[str, int] = {}
    for e in final:
        if e["name"].startswith("/bid/"):
            route = e["name"].split()[0].removeprefix("/bid/")
            by_route[route] = by_route.get(route, 0) + e["num_requests"]
    assert set(by_route) == {"generic", "smaato"}, by_route  # one route per worker: both merged
    assert all(n > 20 for n in by_route.values()), by_route
    assert sum(e["num_failures"] for e in final) == 0, log[-3000:]
    assert sum(e["num_requests"] for e in final if e["name"].endswith("[bid]")) > 0
    after = _counted_by_exchange(url)
    for route, n in by_route.items():
        assert after.get(route, 0.0) - before.get(route, 0.0) == n, (route, n, before, after)
