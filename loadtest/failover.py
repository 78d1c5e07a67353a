"""Latency while a Redis Cluster master fails over under steady load, over several runs.

    .venv/bin/python -m loadtest.failover --runs 5 --rate 200 --tmax-ms 100

Each run: a fresh 6-node cluster on loopback (dsp.testing.redis_cluster: 3 masters + 3 replicas,
cluster-node-timeout 1 s), 200 seeded users, ``dsp serve --redis-cluster`` (1 worker), and the
steady exchange of dsp.testing.exchange_sim (bids at ``--rate`` with tmax, win/bill/loss notices,
503s retried). After ``--before`` seconds the master holding the busiest campaign's books is
SIGKILLed; the run goes on for ``--after`` seconds. Reported per run: failover time (kill until
the cluster is ok again), p99 and max latency of bid requests sent from the kill to the end
(from their scheduled send time, so a stall shows), how many were answered after tmax, the
longest gap without any bid (degraded bidding), non-2xx answers, and whether the books were
exact afterwards (``spent`` equal to what was billed, ``out`` equal to live leases).

The generator runs in this process, so its own stalls would count as the bidder's latency. To
tell them apart the bidder's side is reported too, from its ``/metrics`` (admin port): the worst
event-loop lag it saw after the kill (``dsp_loop_lag_seconds``, polled every 0.25 s) and how many
requests it itself took longer than tmax over (``dsp_request_latency_seconds``, received to
answered, bucket edge at or under tmax).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from redis.cluster import RedisCluster

from dsp.budget.keys import campaign_day, day_key
from dsp.features.writer import write_rows
from dsp.testing.exchange_sim import CAMPAIGNS, USERS, ExchangeSim, ledger_check, sim_configs
from dsp.testing.redis_cluster import LocalCluster
from dsp.testing.serve import running_bidder
from dsp.testing.users import interested_user_row

REPO = Path(__file__).resolve().parent.parent


def server_view(admin_url: str, tmax_ms: int) -> tuple[float, float, float]:
    """(loop lag gauge in s, requests answered, requests slower than the largest bucket edge at or
    under tmax) from the bidder's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(admin_url + "/metrics", timeout=2) as r:
        text = r.read().decode()
    lag = total = within = 0.0
    edge = max((le for le in (0.05, 0.075, 0.1, 0.25, 0.5, 1.0) if le <= tmax_ms / 1000), default=0.05)
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if sample.name == "dsp_loop_lag_seconds":
                lag = max(lag, sample.value)
            elif sample.name == "dsp_request_latency_seconds_bucket":
                le = sample.labels.get("le", "")
                if le == "+Inf":
                    total += sample.value
                elif float(le) == edge:
                    within += sample.value
    return lag, total, total - within


async def poll_lag(admin_url: str, tmax_ms: int, worst: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            lag, _, _ = await asyncio.to_thread(server_view, admin_url, tmax_ms)
            worst[0] = max(worst[0], lag)
        except OSError:
            pass
        await asyncio.sleep(0.25)


async def one_run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with LocalCluster() as cluster:
        rc = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        write_rows(rc, USERS, np.repeat(interested_user_row(), len(USERS), axis=0))
        rc.close()
        configs = sim_configs(REPO / "bidder_configs", tmp / "configs")
        day = campaign_day(time.time(), 0)
        with running_bidder(cluster.url, tmp / "serve.log", configs=configs,
                            env={"DSP_REDIS_CLUSTER": "1"}) as url:
            sim = ExchangeSim(url, USERS, rate=args.rate, tmax_ms=args.tmax_ms)
            sim.start()
            await asyncio.sleep(args.before)
            victim = cluster.owner(day_key("quickloan-prime", day))
            admin = getattr(url, "admin", url)
            _, served0, slow0 = await asyncio.to_thread(server_view, admin, args.tmax_ms)
            worst_lag, stop = [0.0], asyncio.Event()
            poller = asyncio.create_task(poll_lag(admin, args.tmax_ms, worst_lag, stop))
            t_kill = time.monotonic()
            cluster.kill(victim)
            failover_s = await asyncio.to_thread(cluster.wait_failover, victim)
            await asyncio.sleep(max(0.0, args.after - (time.monotonic() - t_kill)))
            report = await sim.stop()
            stop.set()
            await poller
            _, served1, slow1 = await asyncio.to_thread(server_view, admin, args.tmax_ms)
        rc = RedisCluster(host="127.0.0.1", port=cluster.masters()[0])
        books = ledger_check(rc, CAMPAIGNS, day)
        rc.close()
    after = [ms for t, ms in report.latencies_ms if t >= t_kill]
    t_start = min((t for t, _ in report.latencies_ms), default=t_kill)
    before = [ms for t, ms in report.latencies_ms if t_start + 1 <= t < t_kill]
    bids = sorted(t for t in report.bid_times if t >= t_kill - 1)
    gap = max((b - a for a, b in itertools.pairwise(bids)), default=float("nan"))
    exact = all(books[c]["spent"] == report.expected_spend_micros[c]
                and books[c]["out"] == books[c]["leases"] for c in CAMPAIGNS)
    return {"failover_s": round(failover_s, 2),
            # the same run before the kill: what this machine gives without any failover
            "p99_before_ms": round(float(np.percentile(before, 99)), 1) if before else None,
            "max_before_ms": round(max(before), 1) if before else None,
            "p99_ms": round(float(np.percentile(after, 99)), 1) if after else None,
            "max_ms": round(max(after), 1) if after else None,
            "late": sum(1 for ms in after if ms > args.tmax_ms), "requests_after_kill": len(after),
            # the bidder's own view after the kill (module docstring)
            "server_max_lag_ms": round(worst_lag[0] * 1000, 1),
            "server_over_tmax": int(slow1 - slow0), "server_answered": int(served1 - served0),
            "longest_bid_gap_s": round(gap, 2),
            "non_2xx": sum(n for s, n in report.statuses.items() if s not in (200, 204)),
            "unanswered": report.connection_errors, "lost_notices": report.lost_notices,
            "books_exact": exact,
            # when not exact, what differs: Redis books against what the exchange was billed
            "books": {c: {**books[c], "billed": report.expected_spend_micros[c]} for c in CAMPAIGNS}
            if not exact else {}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loadtest.failover", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rate", type=float, default=200.0, help="bid requests per second")
    p.add_argument("--tmax-ms", type=int, default=100)
    p.add_argument("--before", type=float, default=5.0, help="seconds of load before the kill")
    p.add_argument("--after", type=float, default=12.0, help="seconds of load after the kill")
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args(argv)
    rows = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="dsp-failover-") as tmp:
            row = asyncio.run(one_run(args, Path(tmp)))
        rows.append(row)
        print(json.dumps({"run": i + 1, **row}), flush=True)
    print(f"\nmaster SIGKILLed under {args.rate:.0f} req/s (tmax {args.tmax_ms} ms), {args.runs} runs")
    print(f"{'run':>3} {'failover s':>10} {'p99/max before':>15} {'p99 ms':>7} {'max ms':>7} "
          f"{'> tmax':>9} {'server > tmax':>13} {'lag ms':>7} {'bid gap s':>9} {'non-2xx':>7} "
          f"{'books':>6}")
    for i, r in enumerate(rows, 1):
        print(f"{i:>3} {r['failover_s']:>10.2f} {r['p99_before_ms']:>7}/{r['max_before_ms']:<7} "
              f"{r['p99_ms']:>7} {r['max_ms']:>7} "
              f"{r['late']:>4}/{r['requests_after_kill']:<4} "
              f"{r['server_over_tmax']:>6}/{r['server_answered']:<6} {r['server_max_lag_ms']:>7} "
              f"{r['longest_bid_gap_s']:>7} "
              f"{r['non_2xx'] + r['unanswered']:>7} {'exact' if r['books_exact'] else 'OFF':>6}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["books_exact"] and r["non_2xx"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
